"""onnxruntime helpers for export: graph optimisation and throughput measurement."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from popbatch.core import DEFAULT_BATCH_SIZE

THREADS = 2
BATCH_SIZE = DEFAULT_BATCH_SIZE  # what popbatch score uses
# ORT_ENABLE_BASIC: constant folding and redundant-node removal only, so the saved file is
# plain ONNX that any onnxruntime build loads; EXTENDED adds onnxruntime-only fused ops and
# measured no faster on the tree-dominated stack (docs/performance.md, "Tree size and form").
OPTIMIZATION = "basic"


def session_options(threads: int = THREADS, optimization: str = "basic"):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    return options


def session(model_bytes: bytes, threads: int = THREADS, optimization: str = "basic"):
    import onnxruntime as ort

    return ort.InferenceSession(
        model_bytes,
        sess_options=session_options(threads, optimization),
        providers=["CPUExecutionProvider"],
    )


def optimize(model_bytes: bytes, level: str = OPTIMIZATION) -> bytes:
    """The graph as onnxruntime's optimiser leaves it at ``level``, as ONNX bytes."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "optimized.onnx"
        options = session_options(optimization=level)
        options.optimized_model_filepath = str(target)
        ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
        return target.read_bytes()


def predict(model_bytes: bytes, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``probability`` and ``label`` of the graph for the float32 matrix ``x``."""
    probability, label = session(model_bytes).run(
        ["probability", "label"], {"features": np.ascontiguousarray(x, np.float32)}
    )
    return probability, label


def tiled(x: np.ndarray, rows: int) -> np.ndarray:
    """``rows`` rows made by repeating ``x`` (the real test rows, no invented values)."""
    reps = -(-rows // len(x))
    return np.ascontiguousarray(np.tile(x, (reps, 1))[:rows], np.float32)


ROUNDS = 5  # the best of several short rounds: a neighbour's burst slows one, not all


def _best_rate(
    scorers: dict[str, Any], batch: np.ndarray, seconds: float
) -> dict[str, tuple[int, int]]:
    """Each scorer's best rows/s over :data:`ROUNDS` rounds of ``seconds / ROUNDS``,
    the scorers taking turns (so a slow moment of the shared machine hits one round of
    each, not one scorer), and the batches it ran; ``scorers[name]`` runs one batch."""
    best = dict.fromkeys(scorers, 0)
    runs = dict.fromkeys(scorers, 0)
    for run in scorers.values():
        run(batch)  # warm-up
    for _ in range(ROUNDS):
        for name, run in scorers.items():
            count, start = 0, time.perf_counter()
            while count < 1 or time.perf_counter() - start < seconds / ROUNDS:
                run(batch)
                count += 1
            rate = round(count * len(batch) / (time.perf_counter() - start))
            best[name] = max(best[name], rate)
            runs[name] += count
    return {name: (best[name], runs[name]) for name in scorers}


def measure_throughput(
    model_bytes: bytes,
    x: np.ndarray,
    threads: int = THREADS,
    batch_size: int = BATCH_SIZE,
    seconds: float = 2.0,
) -> dict[str, Any]:
    """Rows per second of ``popbatch score``'s inference (``batch.runner.OnnxScorer``)
    on batches tiled from ``x``: the best of :data:`ROUNDS` rounds over ``seconds``."""
    from popbatch.batch.runner import OnnxScorer

    from popbatch.core.bundle import ModelBundle

    manifest = {
        "input": {"name": "features", "width": x.shape[1]},
        "outputs": {"probability": "probability", "label": "label"},
    }
    batch = tiled(x, batch_size)
    with OnnxScorer(ModelBundle(Path("exported"), manifest, model_bytes), threads) as scorer:
        ((rate, runs),) = _best_rate({"popular": scorer.predict}, batch, seconds).values()
    return {
        "rows_per_second": rate,
        "threads": threads,
        "batch_size": batch_size,
        "batches": runs,
        "command": "popbatch export (popbatch.exporter.runtime.measure_throughput)",
        "how": (
            f"onnxruntime {_ort_version()} CPUExecutionProvider, as popbatch score runs it "
            f"({threads} threads each scoring {OnnxScorer.CHUNK_ROWS:,}-row slices on a "
            f"single-threaded session), the best of {ROUNDS} rounds ({runs} runs in all) of "
            f"a {batch_size:,}-row batch tiled from the test split's rows, in memory (no "
            "reading or writing), measured at export"
        ),
    }


def _ort_version() -> str:
    import onnxruntime as ort

    return ort.__version__


def measure_heads(
    model_bytes: bytes,
    x: np.ndarray,
    heads: dict[str, dict[str, Any]],
    head_files: dict[str, bytes],
    seconds: float = 2.0,
) -> dict[str, int]:
    """Rows/s of ``popbatch score``'s inference with each set of heads: popular alone,
    popular + each extra head, and every head (the default), as :func:`measure_throughput`."""
    from popbatch.batch.runner import OnnxScorer

    from popbatch.core.bundle import ModelBundle

    manifest = {
        "input": {"name": "features", "width": x.shape[1]},
        "outputs": {"probability": "probability", "label": "label"},
        "heads": heads,
    }
    from popbatch.exporter.all_heads import ALL_HEADS_FILE

    head_bytes = {name: head_files[entry["file"]] for name, entry in heads.items()}
    bundle = ModelBundle(
        Path("exported"),
        manifest,
        model_bytes,
        head_bytes,
        all_heads_bytes=head_files.get(ALL_HEADS_FILE),
    )
    batch = tiled(x, BATCH_SIZE)
    sets = [("popular",), *(("popular", h) for h in heads), ("popular", *heads)]
    scorers = {",".join(c): OnnxScorer(bundle, THREADS, heads=c) for c in dict.fromkeys(sets)}
    try:
        rates = _best_rate({n: s.predict_heads for n, s in scorers.items()}, batch, seconds)
    finally:
        for scorer in scorers.values():
            scorer.close()
    return {name: rate for name, (rate, _) in rates.items()}
