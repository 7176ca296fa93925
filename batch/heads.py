"""onnxruntime sessions of a model's extra heads (popularity, genre) and their columns.

:class:`~popbatch.batch.runner.OnnxScorer` runs the popular head and, for each
slice of a batch, the requested extra heads from their own verified ONNX
bytes (``ModelBundle.head_bytes``), so a head that is not requested costs
nothing. Every head reads the same ``features`` matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from popbatch.core.bundle import ModelBundle
from popbatch.core.errors import ModelError, one_line
from popbatch.core.scored import head_columns


def head_fields(heads: tuple[str, ...]) -> list[pa.Field]:
    """The Arrow fields the extra heads among ``heads`` add to the scored table."""
    return [c.field for c in head_columns(heads)]


class HeadSessions:
    """The requested extra heads' sessions; ``popular`` is the scorer's own."""

    def __init__(self, bundle: ModelBundle, heads: tuple[str, ...]) -> None:
        self.bundle = bundle
        self.heads = tuple(h for h in heads if h != "popular")
        self.fields = head_fields(self.heads)
        entries = bundle.manifest.get("heads") or {}
        self.sessions: dict[str, Any] = {}
        self.outputs: dict[str, list[str]] = {}
        for head in self.heads:
            if head not in bundle.head_bytes:
                raise ModelError(f"{bundle.directory}: the model has no {head} head")
            outputs = entries[head]["outputs"]
            self.outputs[head] = (
                [outputs["prediction"]]
                if head == "popularity"
                else [outputs["index"], outputs["probability"]]
            )
            self.sessions[head] = _session(bundle, head)
        genre = entries.get("genre") or {}
        self.classes = pa.array(genre.get("classes", []), pa.string())

    def empty(self, rows: int) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if "popularity" in self.sessions:
            out["popularity_pred"] = np.empty(rows, np.float64)
        if "genre" in self.sessions:
            out["genre_index"] = np.empty(rows, np.int64)
            out["genre_prob"] = np.empty(rows, np.float32)
        return out

    def run(self, features: np.ndarray, out: dict[str, np.ndarray], start: int, end: int) -> None:
        """Score rows ``features`` (a slice) into ``out[...][start:end]``."""
        for head, session in self.sessions.items():
            try:
                values = session.run(self.outputs[head], {"features": features})
            except Exception as exc:
                raise ModelError(
                    f"{self.bundle.directory}: the {head} head failed ({one_line(exc, 300)})"
                ) from None
            self.store(head, values, out, start, end)

    def store(
        self,
        head: str,
        values: list[np.ndarray],
        out: dict[str, np.ndarray],
        start: int,
        end: int,
    ) -> None:
        """Write one head's output tensors (in :attr:`outputs` order) for rows
        ``start:end`` into ``out``."""
        if head == "popularity":
            out["popularity_pred"][start:end] = np.asarray(values[0]).reshape(-1)
        else:
            out["genre_index"][start:end] = np.asarray(values[0]).reshape(-1)
            out["genre_prob"][start:end] = np.asarray(values[1]).reshape(-1)

    def arrays(self, out: dict[str, np.ndarray]) -> list[pa.Array]:
        """Arrow arrays in :attr:`fields` order (``genre_pred`` names the class)."""
        arrays: list[pa.Array] = []
        if "popularity" in self.sessions:
            arrays.append(pa.array(out["popularity_pred"], pa.float64()))
        if "genre" in self.sessions:
            arrays.append(self.classes.take(pa.array(out["genre_index"])))
            arrays.append(pa.array(out["genre_prob"].astype(np.float64), pa.float64()))
        return arrays


def _session(bundle: ModelBundle, head: str):
    from popbatch.batch.runner import single_thread_session  # runner imports this module

    # parallel across slices, as the popular head
    return single_thread_session(bundle.head_bytes[head], bundle.directory, f"the {head} head")
