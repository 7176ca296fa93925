"""The heads' frontier: cross-validated quality of each design against its inference cost.

A design is one head's learners (``DESIGNS``: the default of each head and the
alternatives measured against it). For each design of ``--designs`` this

1. runs the training recipe's grouped cross-validation on ``--data`` (``--cv``, the
   known-catalog evaluation: folds by track_id, every fold making its own catalog
   priors, as ``popbatch train --cv`` does) and keeps the head's figures, the design's
   combined model and every base learner of it;
2. trains the design on ``--cost-data`` without cross-validation and measures each head's
   inference CPU per row on ``--catalog`` with ``bench/heads.py``'s measurement (the
   cost is the graph's, which the design's sizes fix; the training rows only choose the
   weights, and early-stopped trees their count, which the result records).

A popular-head design changes the stack's learners (``LearnerParams``), which the
cross-validation's worker processes receive; a popularity or genre design replaces
``models.heads.popularity_params`` / ``genre_params`` in this process, so its folds run
one at a time here (``--jobs`` applies to the popular designs).

    python bench/frontier.py --data spotify_tracks_dev.csv --json bench/results/frontier.json
    python bench/frontier.py --quick     # the committed fixture, 2 folds, tiny nets

Cost is CPU time per row, which a busy machine moves; ``--quality-from FILE``
re-measures only the cost of an earlier run's designs, on a quiet machine, keeping its
cross-validated figures.

Prints one JSON line per design and, last, all of them with the machine's load average;
``--json FILE`` also writes that (``docs/generate.py`` renders it in docs/training.md).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import QUICK_HELP, head_params, report  # noqa: E402

FIXTURE = ROOT / "tests" / "data" / "tracks_priors.csv"
SAMPLE = ROOT / "batch" / "sample" / "catalog.csv"
#: what each head's figures are called in the cross-validation's sections
METRICS = {
    "popular": ("roc_auc", "pr_auc"),
    "popularity": ("r2", "mae"),
    "genre": ("accuracy", "top3_accuracy"),
}


@dataclass(frozen=True)
class Design:
    head: str
    about: str
    learners: tuple[str, ...] | None = None  # the popular stack's (LearnerParams.learners)
    meta_input: str | None = None
    # the head's Params (the popular stack's LearnerParams), set after the defaults
    params: dict[str, Any] = field(default_factory=dict)
    default: bool = False


NO_COPIES = {"unseen_copies": ()}  # the popular designs measured before the stack had them

DESIGNS = {
    "popular/logistic+ann": Design(
        "popular", "stack: logistic regression + network (64-32), on probabilities",
        ("logistic", "ann"), "probability", params=NO_COPIES,
    ),
    "popular/logistic+ann+xgb": Design(
        "popular", "stack: + XGBoost (at most 30 rounds of depth 2, rate 0.3), on logits",
        ("logistic", "ann", "xgb"), "logit", params=NO_COPIES,
    ),
    "popular/logistic+ann+xgb 150x3": Design(
        "popular", "stack: + XGBoost (at most 150 rounds of depth 3, rate 0.1), on logits",
        ("logistic", "ann", "xgb"), "logit",
        params={"xgb": {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.1}, **NO_COPIES},
    ),
    "popular/logistic+ann+xgb copies": Design(
        "popular", "stack: + XGBoost (30 rounds of depth 2), on logits, + unseen-album copies "
        "of a tenth of the rows", ("logistic", "ann", "xgb"), "logit", default=True,
    ),
    "popularity/ann": Design(
        "popularity", "network 64-32, at most 60 epochs", default=True
    ),
    "popularity/ann 20 epochs": Design(
        "popularity", "network 64-32, at most 20 epochs", params={"epochs": 20}
    ),
    "genre/softmax": Design(
        "genre", "softmax regression on audio, counts and log genre shares", default=True
    ),
}  # fmt: skip


def heads_of(design: Design) -> tuple[str, ...]:
    return ("popular",) if design.head == "popular" else ("popular", design.head)


@contextlib.contextmanager
def designed(design: Design, config: Any):
    """Within the block, ``popbatch train`` and its cross-validation use ``design``."""
    learners = config.learners
    saved = copy.deepcopy(learners)
    if design.learners:
        learners.learners = design.learners
    if design.meta_input:
        learners.meta_input = design.meta_input
    try:
        if design.head != "popular" and design.params:
            with head_params(design.head, design.params):
                yield
        else:
            for name, value in design.params.items():  # the stack's LearnerParams
                merged = {**getattr(learners, name), **value} if isinstance(value, dict) else value
                setattr(learners, name, merged)
            yield
    finally:
        config.learners = saved


@functools.cache
def _folds_input(data: Path, cv: str, epochs: int | None, heads: tuple[str, ...]) -> dict:
    """The CV's rows, loaded and split once per set of heads (designs only change learners)."""
    from bench.unseen_share import folds_input

    return folds_input(data, cv, epochs, heads)


def quality(design: Design, data: Path, cv: str, epochs: int | None, jobs: int) -> dict:
    """The head's cross-validated figures, its combined model's and each learner's."""
    from popbatch.models.cv import CvSpec, cross_validate

    inputs = _folds_input(data, cv, epochs, heads_of(design))
    patched = design.head != "popular" and design.params
    with designed(design, inputs["config"]):
        sections = cross_validate(
            inputs["x"], inputs["y"], inputs["groups"], inputs["names"], inputs["vocabulary"],
            inputs["config"], CvSpec.parse(cv), n_jobs=1 if patched else jobs,
            heads=heads_of(design), targets=inputs["targets"], priors=inputs["priors"],
        )  # fmt: skip
    section = sections[design.head]
    wanted = METRICS[design.head]
    return {
        "combined": section.get("combined", "stack"),
        "rows": int(inputs["y"].size),
        "models": {
            model: {m: round(v[m]["mean"], 4) for m in wanted if m in v}
            | {f"{m}_std": round(v[m]["std"], 4) for m in wanted if m in v}
            for model, v in section["models"].items()
        },
    }


def cost(design: Design, data: Path, catalog: Path, epochs: int | None, quick: bool) -> dict:
    """Train the design on ``data`` and measure its heads' inference CPU per row."""
    from popbatch.exporter.build import export_run
    from popbatch.models import pipeline

    from bench.heads import measure

    run = Path(tempfile.mkdtemp(prefix="popbatch-frontier-"))
    try:
        options: dict[str, Any] = {"heads": heads_of(design)}
        if epochs:
            options["epochs"] = epochs
        config = pipeline._config_from(data, run / "run", options)
        start = time.perf_counter()
        with designed(design, config):
            pipeline.train(config)
        seconds = time.perf_counter() - start
        export_run(run / "run", run / "model", measure_throughput=False)
        batch, span, rounds = (1_024, 0.05, 1) if quick else (65_536, 5.0, 5)
        done = measure(run / "model", catalog, 2, batch, span, rounds)
    finally:
        shutil.rmtree(run, ignore_errors=True)
    head_bytes = {"popular": done["model_bytes"], **done["head_bytes"]}
    return {
        "us_per_row_cpu": done["us_per_row_cpu"]["heads"][design.head],
        "head_bytes": head_bytes[design.head],
        "train_seconds": round(seconds, 1),
        "load_average": round(done["load_average"], 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=FIXTURE, help="labelled tracks (quality)")
    parser.add_argument(
        "--cost-data", type=Path, default=FIXTURE,
        help="labelled tracks the cost is measured on a model trained on",
    )  # fmt: skip
    parser.add_argument("--catalog", type=Path, default=SAMPLE, help="rows the cost is timed on")
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=list(DESIGNS))
    parser.add_argument("--cv", default="5x1")
    parser.add_argument("--jobs", type=int, default=2, help="fold processes (popular designs)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--quality-from", type=Path, metavar="FILE",
        help="take each design's cross-validated figures from this earlier --json of the "
        "same --data, --cv and design, and measure only the cost (a quiet re-measurement)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP)
    args = parser.parse_args(argv)
    epochs = None
    if args.quick:
        args.data = args.cost_data = FIXTURE
        args.cv, epochs = "2x1", 2
    earlier = earlier_quality(args.quality_from, args.data, args.cv) if args.quality_from else {}
    results = []
    for name in args.designs:
        design = DESIGNS[name]
        if name in earlier:
            measured = reused_quality(earlier[name], design)
        else:
            start = time.perf_counter()
            measured = quality(design, args.data, args.cv, epochs, args.jobs)
            measured["cv_seconds"] = round(time.perf_counter() - start, 1)
        spent = cost(design, args.cost_data, args.catalog, epochs, args.quick)
        results.append({"design": name, "head": design.head, "about": design.about,
                        "default": design.default, **measured, **spent})  # fmt: skip
        print(json.dumps(results[-1]), flush=True)
    done = {
        "data": args.data.name,
        "cost_data": args.cost_data.name,
        "cv": args.cv,
        "evaluation": "known catalog (folds by track_id)",
        "results": results,
        **({"quality_from": args.quality_from.as_posix()} if args.quality_from else {}),
    }
    report(done, args.json)


def earlier_quality(path: Path, data: Path, cv: str) -> dict[str, dict]:
    """An earlier run's rows by design, refused unless it cross-validated the same data
    the same way (its figures would not be this run's)."""
    earlier = json.loads(path.read_text(encoding="utf-8"))
    if (earlier["data"], earlier["cv"]) != (data.name, cv):
        raise SystemExit(
            f"{path}: cross-validated {earlier['data']} with --cv {earlier['cv']}, "
            f"not {data.name} with --cv {cv}"
        )
    return {r["design"]: r for r in earlier["results"]}


def reused_quality(row: dict, design: Design) -> dict:
    """A design's figures from an earlier run, if that run's design was this one (its
    ``about`` names it; which design is the default may have changed since)."""
    if row["about"] != design.about:
        raise SystemExit(f"{row['design']}: the earlier run measured another design")
    return {k: row[k] for k in ("combined", "rows", "models", "cv_seconds")}


if __name__ == "__main__":
    main()
