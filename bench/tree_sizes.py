"""Tree size vs ONNX size, onnxruntime speed and quality: which RF/XGB sizes fit the budget.

Fits the stack's base learners on the shared 10k sample (grouped 70/15/15 split by
track_id), one Keras network for all rows of the table, then for each RandomForest /
XGBoost size: ROC-AUC and PR-AUC on the test split (meta learner fitted on the
validation split), the exported graph's bytes and onnxruntime rows/s (2 threads, batch
export.runtime.BATCH_SIZE) for each tree form of export/trees.py. Never run by the test suite.

    python bench/tree_sizes.py [--data ../shared/data/spotify_tracks_PARTIAL_sample_10000.csv]
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
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from popbatch.exporter import runtime  # noqa: E402
from popbatch.exporter.graph import build_graph  # noqa: E402
from popbatch.exporter.trees import TREE_FORMS  # noqa: E402
from popbatch.models.stack import NativeStack  # noqa: E402
from stack_factory import _fit_ann, feature_matrix  # noqa: E402

from popbatch.core.features import GENRE_COLUMN, KEY_COLUMN, LABEL_COLUMN  # noqa: E402

DEFAULT_DATA = ROOT.parent.parent / "shared/data/spotify_tracks_PARTIAL_sample_10000.csv"
# (rf trees, rf depth, rf min_samples_leaf, xgb rounds, xgb depth)
SIZES = (
    (200, 16, 1, 400, 6),  # the prototype's sizes
    (100, 12, 2, 300, 5),
    (50, 8, 5, 300, 4),  # popbatch train's first defaults (before early stopping)
    (30, 8, 5, 150, 4),
    (20, 6, 5, 100, 3),
    (10, 6, 5, 50, 3),
)


def grouped_split(frame: pl.DataFrame, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """70/15/15 by track_id: returns a split code per row (0 train, 1 validation, 2 test)."""
    ids = frame[KEY_COLUMN].unique().sort().to_numpy()
    rng = np.random.default_rng(seed)
    rng.shuffle(ids)
    code = np.zeros(len(ids), np.int8)
    code[int(0.7 * len(ids)) :] = 1
    code[int(0.85 * len(ids)) :] = 2
    lookup = dict(zip(ids, code, strict=True))
    return np.array([lookup[t] for t in frame[KEY_COLUMN].to_list()])


def best_rate(model_bytes: bytes, x: np.ndarray) -> int:
    """Wall-clock rows/s on 2 threads, best of two 2-second runs (other jobs share the cores)."""
    return max(runtime.measure_throughput(model_bytes, x)["rows_per_second"] for _ in range(2))


def cpu_rate(model_bytes: bytes, x: np.ndarray, runs: int = 5) -> int:
    """Rows per CPU-second on one thread: the work itself, robust to a busy machine."""
    session = runtime.session(model_bytes, threads=1)
    batch = {"features": runtime.tiled(x, runtime.BATCH_SIZE)}
    session.run(None, batch)
    start = time.process_time()
    for _ in range(runs):
        session.run(None, batch)
    return round(runs * runtime.BATCH_SIZE / (time.process_time() - start))


def main() -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, roc_auc_score
    from xgboost import XGBClassifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument("--forms", default=",".join(TREE_FORMS), help="tree forms to measure")
    args = parser.parse_args()

    frame = pl.read_csv(args.data).unique(maintain_order=True)  # same rows, same order, same fits
    split = grouped_split(frame)
    genres = sorted(frame.filter(pl.Series(split == 0))[GENRE_COLUMN].unique().to_list())
    x_all = feature_matrix(frame, genres)
    y_all = (frame[LABEL_COLUMN] > 71).to_numpy().astype(np.int32)
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (
        (x_all[split == k], y_all[split == k]) for k in range(3)
    )
    mean, scale = x_tr.mean(0), x_tr.std(0)
    scale[scale == 0] = 1.0
    started = time.perf_counter()
    ann = _fit_ann((x_tr - mean) / scale, y_tr, epochs=15)
    print(
        f"rows {len(x_all)} (test {len(x_te)}, {y_te.sum()} popular); "
        f"ann {time.perf_counter() - started:.0f} s"
    )
    header = (
        "rf trees/depth | xgb rounds/depth | AUC rf  xgb  stack | PR-AUC rf  xgb  stack | MB | "
        + " | ".join(f"{f} rows/s 2 threads (1-thread CPU)" for f in args.forms.split(","))
    )
    print(header)
    rows = []
    for trees, depth, leaf, rounds, xdepth in SIZES:
        rf = RandomForestClassifier(
            n_estimators=trees,
            max_depth=depth,
            min_samples_leaf=leaf,
            max_features="sqrt",
            n_jobs=2,
            random_state=42,
        ).fit(x_tr, y_tr)
        xgb = XGBClassifier(
            n_estimators=rounds,
            max_depth=xdepth,
            learning_rate=0.05,
            tree_method="hist",
            random_state=42,
            n_jobs=2,
        ).fit(x_tr, y_tr)
        width = x_all.shape[1]
        stack = NativeStack(
            feature_names=[f"f{i}" for i in range(width)],
            genre_vocabulary=genres,
            clip_lower=[None] * width,
            clip_upper=[None] * width,
            scaler_mean=mean.tolist(),
            scaler_scale=scale.tolist(),
            meta_coef=[0.0, 0.0, 0.0],
            meta_intercept=0.0,
            threshold=0.5,
            ann=ann,
            rf=rf,
            xgb=xgb,
        )
        meta = LogisticRegression().fit(stack.base_probabilities(x_va), y_va)
        stack.meta_coef, stack.meta_intercept = meta.coef_[0].tolist(), float(meta.intercept_[0])
        base = stack.base_probabilities(x_te)
        p = stack.predict_proba(x_te)
        row = {
            "rf": [trees, depth, leaf],
            "xgb": [rounds, xdepth],
            "roc_auc": {
                k: float(roc_auc_score(y_te, v))
                for k, v in (
                    ("ann", base[:, 0]),
                    ("rf", base[:, 1]),
                    ("xgb", base[:, 2]),
                    ("stack", p),
                )
            },
            "pr_auc": {
                k: float(average_precision_score(y_te, v))
                for k, v in (
                    ("ann", base[:, 0]),
                    ("rf", base[:, 1]),
                    ("xgb", base[:, 2]),
                    ("stack", p),
                )
            },
            "rows_per_second": {},
        }
        for form in args.forms.split(","):
            model_bytes = runtime.optimize(build_graph(stack, form).SerializeToString())
            prob, _ = runtime.predict(model_bytes, x_te)
            row["bytes"] = len(model_bytes)
            row.setdefault("max_abs_diff", {})[form] = float(np.abs(prob - p).max())
            row["rows_per_second"][form] = best_rate(model_bytes, x_te)
            row.setdefault("cpu_rows_per_second_1_thread", {})[form] = cpu_rate(model_bytes, x_te)
        rows.append(row)
        a, r = row["roc_auc"], row["pr_auc"]
        print(
            f"{trees}/{depth} | {rounds}/{xdepth} | "
            f"{a['rf']:.3f} {a['xgb']:.3f} {a['stack']:.3f} | "
            f"{r['rf']:.3f} {r['xgb']:.3f} {r['stack']:.3f} | {row['bytes'] / 1e6:.2f} | "
            + " | ".join(
                f"{row['rows_per_second'][f]:,} ({row['cpu_rows_per_second_1_thread'][f]:,})"
                for f in row["rows_per_second"]
            ),
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
