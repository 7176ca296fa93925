"""onnxruntime inference over the verified bytes of a model bundle."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from popbatch.batch.heads import HeadSessions

from popbatch.core.bundle import ModelBundle
from popbatch.core.errors import ModelError, one_line


def available_cores() -> int:
    """Cores this process may use (respects CPU affinity, e.g. in containers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def streaming_threads() -> int:
    """Inference threads of a streaming run by default: every core but one, which the
    reader thread (reading, preprocessing and hashing, the run's longest serial stage)
    keeps to itself. On 2 cores, 1 inference thread instead of 2 scored 10M rows in
    0.88x the wall time and 0.93x the CPU, faster in each of 5 alternating rounds: the
    two inference threads were taking the reader's core (bench/results/ab_11_threads.json)."""
    return max(1, available_cores() - 1)


def single_thread_session(onnx_bytes: bytes, where: object, what: str = "the model"):
    """An onnxruntime session that runs the graph on the calling thread only (callers
    parallelise across slices); ``where`` and ``what`` name it in the ModelError."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the calling thread runs the graph
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(
            onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(
            f"{where}: onnxruntime cannot load {what} ({one_line(exc, 300)}); re-export it"
        ) from None


class OnnxScorer:
    """One onnxruntime session for a verified :class:`~popbatch.core.bundle.ModelBundle`.

    The session is created from the bytes whose sha256 ``load_model`` already
    checked, never from the path, so the file cannot change in between.

    Parallelism is across slices of a batch, not inside onnxruntime: the
    session runs single-threaded and ``threads`` Python threads each run one
    slice at a time (``InferenceSession.run`` is thread-safe and releases the
    GIL). For this tree-dominated stack that measured about 1.7x the rows/s
    of one call with ``threads`` intra-op threads (``bench/bare.py``; the
    tree ensembles parallelise poorly inside one call).

    Parameters
    ----------
    bundle
        From :func:`batch.manifest.load_model`.
    threads
        Slices scored at once; ``None`` uses every available core.
    """

    # Rows per onnxruntime call. Small slices keep a call's input and its
    # intermediate tensors in cache: measured 2 threads x 4,096 rows ~2.8-3.3M
    # rows/s, x 16,384 rows ~2.1M, x 65,536 rows slower still, and each call's
    # buffers grow with its rows (~35 MB at 16,384), so memory stays low too.
    CHUNK_ROWS = 1_024

    def __init__(
        self,
        bundle: ModelBundle,
        threads: int | None = None,
        heads: tuple[str, ...] | None = None,
    ) -> None:
        if threads is not None and threads < 1:
            raise ModelError(f"--threads must be at least 1, got {threads}")
        self.bundle = bundle
        self.threads = threads or available_cores()
        # None: every head the model has (popbatch score's default)
        self.heads = HeadSessions(bundle, bundle.heads if heads is None else heads)
        self.session = single_thread_session(bundle.onnx_bytes, bundle.directory)
        # Every head in one graph, when the model has it and every head is scored (the
        # default): one call per slice instead of one per head, the shared input blocks
        # sliced once (bench/results/ab_13_all_heads.json)
        self.all_heads = None
        if bundle.all_heads_bytes is not None and self._scores_every_head():
            self.all_heads = single_thread_session(
                bundle.all_heads_bytes, bundle.directory, "the heads' joint graph"
            )
        manifest = bundle.manifest
        self.input_name = manifest["input"]["name"]
        self.width = int(manifest["input"]["width"])
        self.probability_name = manifest["outputs"]["probability"]
        self.label_name = manifest["outputs"]["label"]
        self._check_signature()
        self._pool: ThreadPoolExecutor | None = None

    def _check_signature(self) -> None:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        where = self.bundle.directory
        if self.input_name not in inputs:
            raise ModelError(
                f"{where}: the model has no input {self.input_name!r} "
                f"(it has {', '.join(inputs)}); the manifest does not match its model"
            )
        shape = inputs[self.input_name].shape
        if len(shape) == 2 and isinstance(shape[1], int) and shape[1] != self.width:
            raise ModelError(
                f"{where}: the model takes {shape[1]} features but the manifest lists "
                f"{self.width}; the manifest does not match its model"
            )
        for name in (self.probability_name, self.label_name):
            if name not in outputs:
                raise ModelError(
                    f"{where}: the model has no output {name!r} (it has {', '.join(outputs)})"
                )

    def _scores_every_head(self) -> bool:
        return set(self.heads.heads) == set(self.bundle.heads[1:])

    @property
    def model_id(self) -> str:
        return self.bundle.model_id

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (float32 [N]) and labels (bool [N]) for a float32 [N, F] matrix."""
        probability, popular, _ = self.predict_heads(features)
        return probability, popular

    def predict_heads(
        self, features: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """:meth:`predict` plus the extra heads' outputs (``HeadSessions.columns``)."""
        rows = features.shape[0]
        probability = np.empty(rows, np.float32)
        popular = np.empty(rows, bool)
        extra = self.heads.empty(rows)

        # the scored heads can change after construction (BatchScorer's heads)
        joint = self.all_heads if self._scores_every_head() else None

        def run_slice(start: int) -> None:
            end = min(start + self.CHUNK_ROWS, rows)
            if joint is not None:
                probability[start:end], popular[start:end] = self._run_all_heads(
                    joint, features[start:end], extra, start, end
                )
                return
            probability[start:end], popular[start:end] = self._run(features[start:end])
            self.heads.run(features[start:end], extra, start, end)

        starts = range(0, rows, self.CHUNK_ROWS)
        if self.threads == 1 or len(starts) == 1:
            for start in starts:
                run_slice(start)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="popbatch-ort")
            list(self._pool.map(run_slice, starts))  # re-raises a slice's error here
        return probability, popular, extra

    def close(self) -> None:
        """Stop the slice threads (queued slices are dropped); the session stays usable."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> OnnxScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run_all_heads(
        self, session, features: np.ndarray, extra: dict[str, np.ndarray], start: int, end: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every head's outputs from the joint graph: the extra heads' into ``extra``,
        the popular head's returned as :meth:`_run` returns them."""
        names = [self.probability_name, self.label_name]
        for head in self.heads.heads:
            names += self.heads.outputs[head]
        try:
            values = session.run(names, {self.input_name: features})
        except Exception as exc:
            raise ModelError(
                f"{self.bundle.directory}: inference failed ({one_line(exc, 300)})"
            ) from None
        at = 2
        for head in self.heads.heads:
            width = len(self.heads.outputs[head])
            self.heads.store(head, values[at : at + width], extra, start, end)
            at += width
        return np.asarray(values[0]).reshape(-1), np.asarray(values[1]).reshape(-1)

    def _run(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            probability, label = self.session.run(
                [self.probability_name, self.label_name], {self.input_name: features}
            )
        except Exception as exc:
            raise ModelError(
                f"{self.bundle.directory}: inference failed ({one_line(exc, 300)})"
            ) from None
        return np.asarray(probability).reshape(-1), np.asarray(label).reshape(-1)
