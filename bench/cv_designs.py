"""Compare stack designs under repeated grouped CV, from one set of fitted base learners.

Runs ``models.cv`` once with every base learner (logistic, ann, rf, xgb) and keeps,
per fold, the learners' out-of-fold scores on the fold's training rows and their
scores on its validation and held-out rows. A design (a subset of learners, meta on
probabilities or logits) is then the recipe's own last step — ``fit_meta`` on those
out-of-fold scores, threshold on validation — replayed for each subset: the base
learners do not depend on which others are in the stack (same rows, same seeds).

    nice -n 10 python bench/cv_designs.py run DATA.csv OUT.pkl     # ~25 min on 2 cores
    python bench/cv_designs.py compare OUT.pkl                    # seconds

Cheaper variants of some learners (other tree sizes) run without the network and
merge with a full run: the folds, inner splits and seeds are the same, so
``compare FULL.pkl SMALL.pkl`` adds SMALL's learners as ``name@SMALL``::

    python bench/cv_designs.py run DATA.csv SMALL.pkl logistic,xgb '{"n_estimators": 60}'
"""

from __future__ import annotations

import itertools
import pickle
import sys
import time
from pathlib import Path

import numpy as np


def run(
    data_path: str, out: str, learners: str = "logistic,ann,rf,xgb", xgb: str = "{}", rf: str = "{}"
) -> None:
    import json

    from popbatch.models.cv import CvSpec, fold_tasks, run_folds
    from popbatch.models.data import load_training_data
    from popbatch.models.learners import LearnerParams
    from popbatch.models.pipeline import TrainConfig, labels, make_splits
    from popbatch.models.quiet import import_keras_quietly

    from popbatch.core.features import feature_names

    import_keras_quietly()
    params = LearnerParams(learners=tuple(learners.split(",")))
    params.rf.update(n_estimators=50, max_depth=8, min_samples_leaf=3)
    params.xgb.update(json.loads(xgb))
    params.rf.update(json.loads(rf))
    config = TrainConfig(data=Path(data_path), out=Path("/dev/null"), learners=params)
    data = load_training_data(config.data)
    y_all = labels(data.frame, config.popular_above)
    splits, vocabulary = make_splits(data, y_all, config.seed)
    parts = ("train", "validation")
    x = np.concatenate([splits.x[p] for p in parts])
    y = np.concatenate([splits.y[p] for p in parts])
    groups = np.concatenate([splits.groups[p] for p in parts])
    tasks = list(
        fold_tasks(x, y, groups, CvSpec(5, 3), config.seed, names=feature_names(vocabulary),
                   vocabulary=vocabulary, config=config, keep_scores=True)
    )  # fmt: skip
    if "ann" not in params.learners:
        for task in tasks:  # seconds per fold: one process is enough, leaves a core free
            task.config.learners.n_jobs = 1
    start = time.perf_counter()
    jobs = 2 if "ann" in params.learners else 1
    results = run_folds(tasks, jobs, lambda line: print(line, flush=True))
    print(f"{time.perf_counter() - start:.0f} s", flush=True)
    Path(out).write_bytes(pickle.dumps(results))


def merge(paths: list[str]) -> list:
    """Fold results of several runs with their learners side by side (same folds)."""
    runs = [pickle.loads(Path(p).read_bytes()) for p in paths]
    merged = runs[0]
    for path, results in zip(paths[1:], runs[1:], strict=True):
        tag = Path(path).stem
        for base, extra in zip(merged, results, strict=True):
            a, b = base.details, extra.details
            assert (base.repeat, base.fold) == (extra.repeat, extra.fold)
            assert np.array_equal(a["y_train"], b["y_train"])
            assert np.array_equal(a["y_out"], b["y_out"])
            a["learners"] = a["learners"] + [f"{n}@{tag}" for n in b["learners"]]
            for part in ("oof", "val", "out"):
                for kind in ("probability", "logit"):
                    a[part][kind] = np.column_stack([a[part][kind], b[part][kind]])
            for name, scores in extra.scores["popular"].items():
                if name not in ("stack", "majority", "logistic"):
                    base.scores["popular"][f"{name}@{tag}"] = scores
    return merged


def replay(result, subset: tuple[str, ...], kind: str, seed: int = 42, k: int = 5):
    """The stack's held-out ROC-AUC and PR-AUC for one design, as fit_stack would fit it
    (with the fold's seed, models.cv.inner_split)."""
    from popbatch.models.stacking import fit_meta
    from sklearn.metrics import average_precision_score, roc_auc_score

    seed = seed + 1000 * (result.repeat + 1) + result.fold
    d = result.details
    cols = [d["learners"].index(n) for n in subset]
    meta, _ = fit_meta(d["oof"][kind][:, cols], d["y_train"], d["groups_train"], seed, k)
    p = meta.predict_proba(d["out"][kind][:, cols])[:, 1]
    return roc_auc_score(d["y_out"], p), average_precision_score(d["y_out"], p)


def compare(*paths: str) -> None:
    results = merge(list(paths))
    learners = results[0].details["learners"]
    print(f"{'model':34} ROC-AUC          PR-AUC")
    for name in results[0].scores["popular"]:  # the popular head's models (FoldTask.heads)
        roc = [r.scores["popular"][name]["roc_auc"] for r in results]
        pr = [r.scores["popular"][name]["pr_auc"] for r in results]
        print(f"{name:34} {np.mean(roc):.4f} ± {np.std(roc, ddof=1):.4f}  "
              f"{np.mean(pr):.4f} ± {np.std(pr, ddof=1):.4f}")  # fmt: skip
    for size in range(2, min(len(learners), 4) + 1):
        for subset in itertools.combinations(learners, size):
            if len({n.split("@")[0] for n in subset}) < size:
                continue  # two variants of one learner
            for kind in ("probability", "logit"):
                scores = np.array([replay(r, subset, kind) for r in results])
                m, s = scores.mean(axis=0), scores.std(axis=0, ddof=1)
                label = f"stack[{'+'.join(subset)}] {kind}"
                print(f"{label:34} {m[0]:.4f} ± {s[0]:.4f}  {m[1]:.4f} ± {s[1]:.4f}")


if __name__ == "__main__":
    {"run": run, "compare": compare}[sys.argv[1]](*sys.argv[2:])
