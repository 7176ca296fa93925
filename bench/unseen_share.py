"""The popularity head's new-release trade: cross-validated quality by share of unseen-album copies.

The head fits, beside its training rows, copies of a share of them whose album is
unseen (``RegressorParams.unseen_share``, ``models.priors.unseen_copy``): new
releases gain, the known catalog's one-track albums lose. For each ``--shares``
value this runs the training recipe's grouped cross-validation (popular and
popularity heads, with priors, every fold making its own) for each of
``--evaluations`` (``known``: folds by track_id, ``new_release``: by album,
``debut``: by primary artist) and prints the popularity head's R² and MAE and the
popular stack's ROC-AUC and PR-AUC. ``--artist-shares`` adds the other unseen-key
axis: the share of primary artists held out whole in the prior folds
(``PriorRecipe.artist_share``, default the recipe's), so that training rows see their
artist as a debut's would; ``--genre`` cross-validates the genre head too (top-1 and
top-3 accuracy), which the artist share moves as well.

A share other than the recipe's is set by replacing ``models.heads.popularity_params``
in this process, so its folds run one at a time (about 90 s per fold of the 100k rows
on the 2-core machine); the recipe's share runs its folds in two processes.

    python bench/unseen_share.py --data spotify_tracks_dev.csv --shares 0 0.25 0.5 1
    python bench/unseen_share.py --data spotify_tracks_dev.csv --shares 0.25 \\
        --artist-shares 0 0.25 --evaluations known debut
    python bench/unseen_share.py --quick     # the committed fixture, 2 folds, tiny nets

Prints one JSON line per (share, evaluation) and, last, all of them with the load
average; ``--json FILE`` also writes that.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import QUICK_HELP, head_params, report  # noqa: E402

FIXTURE = ROOT / "tests" / "data" / "tracks_priors.csv"
HEADS = ("popular", "popularity")


def folds_input(data: Path, cv: str, epochs: int | None, heads: tuple[str, ...] = HEADS):
    """Everything ``cross_validate`` needs for ``heads``, made as ``popbatch train``
    makes it (``models.pipeline.cross_validate_splits``)."""
    from popbatch.models import pipeline
    from popbatch.models.priors import FoldPriors, evaluation_groups

    from popbatch.core.features import NUMERIC_FEATURE_NAMES

    options = {"cv": cv, "heads": heads, **({"epochs": epochs} if epochs else {})}
    config = pipeline._config_from(data, ROOT / "bench" / "out" / "unseen_share", options)
    config.learners.n_jobs = 1
    frame_data = pipeline._load(config, lambda _: None)
    splits, names, vocabulary = pipeline._split(frame_data, config, lambda _: None)
    parts = ("train", "validation")
    frame = pl.concat([splits.frames[p] for p in parts], how="vertical_relaxed")
    x = np.concatenate([splits.x[p] for p in parts])
    groups = np.concatenate([splits.groups[p] for p in parts])
    # the folds make their own priors: drop the split's (as cross_validate_splits does)
    start, spec = len(NUMERIC_FEATURE_NAMES), splits.priors.spec
    lead, tail = len(spec.lead_names()), len(spec.tail_names())
    keep = np.r_[0:start, start + lead : len(names) - tail]
    priors = FoldPriors(
        frame, config.priors.spec(vocabulary), config.priors, config.popular_above, start
    )
    targets = {"popularity": frame[pipeline.LABEL_COLUMN].to_numpy().astype(np.float64)}
    if "genre" in heads:
        targets["genre"] = np.asarray(frame["genre"].to_list(), dtype=object)
    return {
        "heads": heads,
        "x": x[:, keep],
        "y": np.concatenate([splits.y[p] for p in parts]),
        "groups": groups,
        "names": [names[i] for i in keep],
        "vocabulary": vocabulary,
        "config": config,
        "targets": targets,
        "priors": priors,
        "cut": evaluation_groups(frame, groups),
    }


def measure(
    inputs: dict, share: float, evaluation: str, cv: str, artist_share: float | None = None
) -> dict:
    """The popularity head's (and the popular stack's) cross-validated figures with
    ``share`` of its rows copied with the album unseen and, when given, ``artist_share``
    of the primary artists held out whole in the prior folds (``PriorRecipe``)."""
    from dataclasses import replace

    from popbatch.models.cv import CvSpec, cross_validate
    from popbatch.models.popularity import RegressorParams

    priors = inputs["priors"]
    if artist_share is not None:
        priors = replace(priors, recipe=replace(priors.recipe, artist_share=artist_share))
    # a share other than the recipe's is set in this process: its folds run here
    default = share == RegressorParams().unseen_share
    start = time.perf_counter()
    with head_params("popularity", {} if default else {"unseen_share": share}):
        sections = cross_validate(
            inputs["x"], inputs["y"], inputs["groups"], inputs["names"], inputs["vocabulary"],
            inputs["config"], CvSpec.parse(cv), n_jobs=2 if default else 1, heads=inputs["heads"],
            targets=inputs["targets"], priors=priors,
            split_groups=None if evaluation == "known" else inputs["cut"][evaluation],
        )  # fmt: skip
    stack = sections["popularity"]["models"]["stack"]
    popular = sections["popular"]["models"]["stack"]
    return {
        "share": share,
        "artist_share": priors.recipe.artist_share,
        "evaluation": evaluation,
        "cv": cv,
        "r2": round(stack["r2"]["mean"], 4),
        "r2_std": round(stack["r2"]["std"], 4),
        "mae": round(stack["mae"]["mean"], 3),
        "popular_roc_auc": round(popular["roc_auc"]["mean"], 4),
        "popular_pr_auc": round(popular["pr_auc"]["mean"], 4),
        **genre_figures(sections),
        "seconds": round(time.perf_counter() - start, 1),
    }


def genre_figures(sections: dict) -> dict:
    """The genre head's top-1 and top-3 accuracy when it was cross-validated too."""
    if "genre" not in sections:
        return {}
    model = sections["genre"]["models"]["combined"]
    return {
        "genre_accuracy": round(model["accuracy"]["mean"], 4),
        "genre_top3_accuracy": round(model["top3_accuracy"]["mean"], 4),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=FIXTURE, help="labelled tracks")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0])
    parser.add_argument(
        "--artist-shares", type=float, nargs="+", default=[None],
        help="shares of primary artists held out whole in the prior folds (default: the recipe's)",
    )  # fmt: skip
    parser.add_argument(
        "--evaluations", nargs="+", default=["known", "new_release"],
        choices=["known", "new_release", "debut"],
    )  # fmt: skip
    parser.add_argument("--genre", action="store_true", help="cross-validate the genre head too")
    parser.add_argument("--cv", default="5x1")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP)
    args = parser.parse_args(argv)
    epochs = None
    if args.quick:
        args.data, args.shares, args.evaluations = FIXTURE, [0.0, 1.0], ["new_release"]
        args.cv, epochs = "2x1", 2
    inputs = folds_input(args.data, args.cv, epochs, (*HEADS, "genre") if args.genre else HEADS)
    results = []
    for share in args.shares:
        for artist_share in args.artist_shares:
            for evaluation in args.evaluations:
                results.append(measure(inputs, share, evaluation, args.cv, artist_share))
                print(json.dumps(results[-1]), flush=True)
    report({"data": args.data.name, "rows": int(inputs["y"].size), "results": results}, args.json)


if __name__ == "__main__":
    main()
