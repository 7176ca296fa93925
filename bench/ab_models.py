"""Two exports of a model, head by head: CPU per row in alternating rounds, and how far apart.

Preprocesses the catalog's rows once with popbatch's own ``Preprocessor``, then
for each head runs both models' onnxruntime sessions (1 thread, the scorer's
1,024-row slices) in alternating rounds on the same matrix, so a noisy machine
slows both alike. Prints µs of CPU per row per head and round, the ratio of
the medians, and the largest difference between the two models' outputs.

    python bench/ab_models.py OLD_MODEL_DIR NEW_MODEL_DIR catalog.csv [--rows 65536] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from popbatch.batch.preprocess import Preprocessor  # noqa: E402
from popbatch.batch.runner import OnnxScorer, single_thread_session  # noqa: E402
from popbatch.batch.sources import open_source  # noqa: E402

from popbatch.core.bundle import load_model  # noqa: E402


def features(model_dir: Path, catalog: Path, rows: int) -> np.ndarray:
    """The catalog's preprocessed rows, tiled to ``rows``."""
    bundle = load_model(model_dir)
    source = open_source([catalog])
    preprocessor = Preprocessor(bundle.manifest).bind(source.schema, source.name)
    batches = source.batches(preprocessor.read_columns, 65_536)
    x = np.concatenate([preprocessor.transform(b, 1).features for b in batches])
    source.close()
    return np.ascontiguousarray(np.resize(x, (rows, x.shape[1])))


def head_sessions(model_dir: Path) -> dict:
    bundle = load_model(model_dir)
    sessions = {"popular": single_thread_session(bundle.onnx_bytes, model_dir)}
    for head, data in bundle.head_bytes.items():
        sessions[head] = single_thread_session(data, model_dir, head)
    return sessions


def cpu_us_per_row(session, x: np.ndarray) -> float:
    start = time.process_time()
    for at in range(0, len(x), OnnxScorer.CHUNK_ROWS):
        session.run(None, {"features": x[at : at + OnnxScorer.CHUNK_ROWS]})
    return (time.process_time() - start) / len(x) * 1e6


def max_difference(old, new, x: np.ndarray) -> str:
    out_old = old.run(None, {"features": x})
    out_new = new.run(None, {"features": x})
    parts = []
    for meta, a, b in zip(old.get_outputs(), out_old, out_new, strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        differ = int((a != b).sum())
        parts.append(f"{meta.name} max|diff| {np.abs(a - b).max():.3g}, {differ} differ")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("catalog", type=Path)
    parser.add_argument("--rows", type=int, default=65_536)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    x = features(args.old, args.catalog, args.rows)
    old, new = head_sessions(args.old), head_sessions(args.new)
    print(f"{len(x):,} rows of {args.catalog.name}, width {x.shape[1]}, 1 thread")
    totals = {"old": [], "new": []}
    for head in old.keys() & new.keys():
        times: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(args.rounds):
            for label, sessions in (("old", old), ("new", new)):
                times[label].append(cpu_us_per_row(sessions[head], x))
        for label in times:
            totals[label].append(statistics.median(times[label]))
        ratio = statistics.median(times["old"]) / statistics.median(times["new"])
        print(
            f"{head:<11} old {' '.join(f'{t:.2f}' for t in times['old'])}  "
            f"new {' '.join(f'{t:.2f}' for t in times['new'])}  µs/row; "
            f"old/new {ratio:.2f}x"
        )
        print(f"{'':<11} {max_difference(old[head], new[head], x)}")
    print(
        f"all heads   old {sum(totals['old']):.2f}  new {sum(totals['new']):.2f} µs/row "
        f"(sum of medians); old/new {sum(totals['old']) / sum(totals['new']):.2f}x"
    )


if __name__ == "__main__":
    main()
