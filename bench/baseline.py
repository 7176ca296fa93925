"""The notebook way of scoring a catalog, for comparison with ``popbatch score``.

What the original notebooks would do with the same trained model: pandas reads
the whole file, pandas builds the feature matrix (the same features, the same
genre one-hot over the training vocabulary with an "other" bucket), the native
Keras network, RandomForest, XGBoost and logistic-regression meta learner
predict on the whole frame (``models.stack.NativeStack.predict_proba``: the
same clipping and scaling as training), and pandas writes the result to
Parquet. Every library is held to ``--threads`` threads, as popbatch is.

Prints one JSON line with the seconds of each stage. Needs the training extras.

    python bench/baseline.py RUN_DIR/stack catalog.parquet baseline.parquet --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import QUICK_HELP  # noqa: E402


def limit_threads(threads: int) -> None:
    """Hold OpenMP/BLAS pools to ``threads`` (must run before numpy, TF, sklearn load)."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load_stack(stack_dir: Path, threads: int):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from popbatch.models.stack import NativeStack

    stack = NativeStack.load(stack_dir)
    # Only the learners the stack has: the default stack has no forest.
    for learner in (stack.rf, stack.xgb):
        if learner is not None:
            learner.set_params(n_jobs=threads)
    return stack


def read(path: Path):
    import pandas as pd

    if path.suffix == ".csv":
        return pd.read_csv(path)
    return pd.read_parquet(path)


def feature_matrix(frame, stack):
    """[N, F] float32 in the stack's feature order, built with pandas as a notebook would."""
    import numpy as np
    import pandas as pd

    from popbatch.core.features import GENRE_COLUMN, NUMERIC_FEATURE_NAMES, OTHER_GENRE, onehot_name

    numeric = frame[list(NUMERIC_FEATURE_NAMES)].astype("float32")
    parts = [numeric]
    vocabulary = stack.genre_vocabulary
    if vocabulary is not None:
        genre = frame[GENRE_COLUMN].astype("string").str.strip().str.lower()
        onehot = pd.get_dummies(pd.Categorical(genre, categories=vocabulary), dtype="float32")
        onehot.columns = [onehot_name(g) for g in vocabulary]
        onehot.index = frame.index
        onehot[onehot_name(OTHER_GENRE)] = (~genre.isin(vocabulary)).astype("float32")
        parts.append(onehot)
    features = pd.concat(parts, axis=1)[stack.feature_names]
    return np.ascontiguousarray(features.to_numpy(dtype="float32"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", type=Path, help="the stack directory (RUN_DIR/stack)")
    parser.add_argument("input", type=Path, help="catalog .parquet or .csv")
    parser.add_argument("output", type=Path, help="where the scores go (.parquet)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP + ": the first 200 rows")
    args = parser.parse_args(argv)

    limit_threads(args.threads)
    seconds: dict[str, float] = {}

    def stage(name: str, work):
        started = time.perf_counter()
        result = work()
        seconds[name] = round(time.perf_counter() - started, 3)
        return result

    stack = stage("load_model", lambda: load_stack(args.stack, args.threads))
    frame = stage("read", lambda: read(args.input))
    if args.quick:
        frame = frame.head(200)
    x = stage("preprocess", lambda: feature_matrix(frame, stack))
    probability = stage("predict", lambda: stack.predict_proba(x))

    def write() -> None:
        import pandas as pd

        pd.DataFrame(
            {
                "track_id": frame["track_id"].to_numpy(),
                "popularity_prob": probability,
                "popular": probability >= stack.threshold,
            }
        ).to_parquet(args.output, index=False)

    stage("write", write)
    print(json.dumps({"rows": len(frame), "seconds": seconds}))


if __name__ == "__main__":
    main()
