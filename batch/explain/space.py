"""The model side of an explanation: a head as a function of raw rows, and the raw space.

A track is explained in the model's *raw* space: the numeric inputs plus the
genre as one categorical feature (the one-hot block is built for each
evaluation), so "genre" gets one contribution. :class:`LinkModel` evaluates a
:class:`Head` of the ONNX bundle on raw rows in the head's link space (log-odds
of popular, or popularity points), where Shapley contributions add up.
:func:`stored_background` reads the background rows ``popbatch export`` stores
beside a model. The scorer, training's report and export all import this module.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from popbatch.batch.preprocess import Prepared
from popbatch.batch.runner import available_cores, single_thread_session

from popbatch.core.bundle import ModelBundle, bundle_file
from popbatch.core.errors import InputError, ModelError, one_line
from popbatch.core.priors import is_tail_feature

__all__ = ["BACKGROUND_FILE", "HEADS", "Head", "LinkModel", "RawSpace", "model_head"]

HEADS = ("popular", "popularity")
#: background rows drawn from the input when the model stores none
BACKGROUND_ROWS = 100
BACKGROUND_FILE = "background.parquet"
_EPS = 1e-7


# ---------------------------------------------------------------- the heads
@dataclass(frozen=True)
class Head:
    """One model output to explain and the space its contributions add up in."""

    name: str
    onnx_bytes: bytes
    input_name: str
    output: str
    link: str  # "logit": log-odds of a probability; "identity": the output itself
    unit: str

    def to_link(self, output: np.ndarray) -> np.ndarray:
        output = np.asarray(output, np.float64).reshape(-1)
        if self.link == "logit":
            p = np.clip(output, _EPS, 1 - _EPS)
            return np.log(p / (1 - p))
        return output

    def from_link(self, value: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-value)) if self.link == "logit" else value


def model_head(bundle: ModelBundle, head: str = "popular") -> Head:
    """The :class:`Head` ``head`` of ``bundle``: ``popular`` (``model.onnx``'s probability,
    explained in log-odds) or ``popularity`` (a regression head listed in the manifest's
    ``heads``, explained in points).

    Raises
    ------
    InputError
        An unknown head, or one the model was exported without.
    """
    input_name = bundle.manifest["input"]["name"]
    if head == "popular":
        output = bundle.manifest["outputs"]["probability"]
        return Head(head, bundle.onnx_bytes, input_name, output, "logit", "log-odds of popular")
    if head not in HEADS:
        raise InputError(f"--head {head}: choose from {', '.join(HEADS)}")
    entry = (bundle.manifest.get("heads") or {}).get(head)
    data = (getattr(bundle, "head_bytes", None) or {}).get(head)
    if entry is None or data is None:
        raise InputError(
            f"--head {head}: this model has no {head} head (it was exported without it); "
            "explain --head popular, or re-export a run trained with the popularity head"
        )
    output = (entry.get("outputs") or {}).get("prediction", "prediction")
    return Head(head, data, input_name, output, "identity", "popularity points")


class LinkModel:
    """A head as a function of raw rows, in its link space, on onnxruntime.

    Raw rows are float64 [n, M]: the numeric inputs in manifest order, then
    (with a genre) the feature position of the row's one-hot genre column.
    Slices of a call run on ``threads`` threads (onnxruntime releases the GIL).
    """

    SLICE_ROWS = 8_192

    def __init__(self, head: Head, space: RawSpace, threads: int | None = None) -> None:
        self.head = head
        self.space = space
        self.threads = threads or available_cores()
        self.session = single_thread_session(head.onnx_bytes, "--model", f"the {head.name} head")
        self.pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        self.rows_evaluated = 0

    def output(self, raw: np.ndarray) -> np.ndarray:
        """The head's output as scored (probability or points) for raw rows."""
        return self.head.from_link(self(raw))

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        rows = len(raw)
        self.rows_evaluated += rows
        result = np.empty(rows, np.float64)

        def run(start: int) -> None:
            features = self.space.matrix(raw[start : start + self.SLICE_ROWS])
            try:
                (out,) = self.session.run([self.head.output], {self.head.input_name: features})
            except Exception as exc:
                raise ModelError(
                    f"the {self.head.name} head failed ({one_line(exc, 300)})"
                ) from None
            result[start : start + len(features)] = self.head.to_link(out)

        starts = range(0, rows, self.SLICE_ROWS)
        if self.pool is None or len(starts) == 1:
            for start in starts:
                run(start)
        else:
            list(self.pool.map(run, starts))
        return result

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


# ---------------------------------------------------------------- raw space
class RawSpace:
    """The model's inputs as explained features: numeric inputs plus one ``genre``."""

    def __init__(self, manifest: dict[str, Any], head: str = "popular") -> None:
        self.width = int(manifest["input"]["width"])
        features = manifest["features"]
        # catalog priors (artists:mean, ...) are numbers like the audio features; the
        # priors' genre shares are read by the genre head only (the others' graphs slice
        # them off), so for the others they are no feature and their inputs stay zero
        shares = head == "genre"
        self.numeric_positions = [
            i
            for i, f in enumerate(features)
            if f["kind"] in ("numeric", "prior") and (shares or not is_tail_feature(f["name"]))
        ]
        self.names = [features[i]["name"] for i in self.numeric_positions]
        self.categories = {
            i: f["category"] for i, f in enumerate(features) if f["kind"] == "onehot"
        }
        self.has_genre = bool(self.categories)
        if self.has_genre:
            self.names.append("genre")
        genre = manifest.get("genre") or {}
        other = genre.get("other")
        self.positions = {c: i for i, c in self.categories.items()}
        self.other_position = self.positions.get(other)

    @property
    def size(self) -> int:
        return len(self.names)

    def from_prepared(self, prepared: Prepared) -> np.ndarray:
        """Raw rows of a preprocessed batch's valid rows."""
        numeric = prepared.features[:, self.numeric_positions].astype(np.float64)
        if not self.has_genre:
            return numeric
        return np.hstack([numeric, prepared.genre_positions.astype(np.float64)[:, None]])

    def matrix(self, raw: np.ndarray) -> np.ndarray:
        """float32 [n, width] model input for raw rows (the one-hot block set)."""
        out = np.zeros((len(raw), self.width), np.float32)
        out[:, self.numeric_positions] = raw[:, : len(self.numeric_positions)]
        if self.has_genre:
            out[np.arange(len(raw)), raw[:, -1].astype(np.int64)] = 1.0
        return out

    def genre_of(self, position: float) -> str:
        return str(self.categories.get(int(position), "?"))

    def background_rows(self, table: pa.Table) -> np.ndarray:
        """Raw rows of a stored ``background.parquet`` (numeric columns + ``genre`` text)."""
        columns = [np.asarray(table.column(n).to_numpy(), np.float64) for n in self.names
                   if n != "genre"]  # fmt: skip
        if self.has_genre:
            genres = table.column("genre").to_pylist()
            columns.append(
                np.array([self.positions.get(g, self.other_position) for g in genres], np.float64)
            )
        return np.column_stack(columns)


def stored_background(bundle: ModelBundle, space: RawSpace) -> np.ndarray | None:
    """The background rows ``popbatch export`` stored beside the model, or None."""
    entry = bundle.manifest.get("background")
    if not entry:
        return None
    if not isinstance(entry, dict):
        raise ModelError(f"{bundle.directory}: manifest 'background' is not an object; re-export")
    path = bundle_file(bundle.directory, entry.get("file"), "background.file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the background rows ({exc.strerror})") from None
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise ModelError(
            f"{path}: does not match its manifest (sha256); re-export the model or restore it"
        )
    return space.background_rows(pq.read_table(pa.BufferReader(data)))
