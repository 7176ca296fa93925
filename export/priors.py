"""Catalog priors in the model bundle, and the parity proof of the scoring path.

A stack trained with priors holds ``priors.json`` (the spec) and
``priors.parquet`` (the table it ships) and ``test_rows.parquet`` (its test
rows as catalog columns). Export copies the table into the bundle, lists it in
the manifest's ``priors`` section with its sha256 (covered by ``model_id``), and
proves the *scoring path*: the scorer's polars preprocessing with its
vectorised priors lookup (``batch/preprocess.py``, ``batch/priors.py``) must
build exactly the matrix that the plain-Python priors
(:func:`popbatch.models.priors.native_features`) and the training code's
feature matrix build, on the test rows and on variants of them with unseen
keys, missing and empty cells, several artists in another order, upper case,
extra spaces and full-width Unicode letters. The models' parity is then proven
on that matrix, so native models with native priors and the ONNX graphs with the
scorer's lookup give the same predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from popbatch.core.errors import ModelError
from popbatch.core.features import GENRE_COLUMN, KEY_COLUMN, NUMERIC_FEATURE_NAMES
from popbatch.core.priors import PriorSpec

TEST_ROWS = "test_rows.parquet"
VARIANT_ROWS = 60  # test rows each variant is made from
TOLERANCE = 1e-5


@dataclass(frozen=True)
class PriorParity:
    rows: int
    unseen_rows: int
    max_abs_diff: float

    @property
    def ok(self) -> bool:
        # float32 inputs: one unit in the last place of a mean popularity near 100 is 7.6e-6
        return self.max_abs_diff <= TOLERANCE

    def line(self) -> str:
        return (
            f"priors parity on {self.rows:,} rows ({self.unseen_rows:,} with an unseen artist "
            f"or album, plus nulls, several artists, case and Unicode variants): max |native "
            f"- scorer| input = {self.max_abs_diff:.3g}"
        )

    def manifest(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "unseen_rows": self.unseen_rows,
            "max_abs_diff": self.max_abs_diff,
            "line": self.line(),
        }


def _fullwidth(text: str | None) -> str | None:
    """ASCII letters as their full-width forms (NFKC folds them back)."""
    if text is None:
        return None
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalpha() else c for c in text)


def parity_rows(test_rows: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    """The test rows and variants of the first :data:`VARIANT_ROWS` of them: the
    priors' hard cases, each a real row with its key columns changed."""
    base = test_rows.head(VARIANT_ROWS)
    text = {c: base[c].cast(pl.String) for c in columns if c in base.columns}
    variants = []
    artists, album = text.get("artists"), text.get("album_name")

    def variant(**changes: pl.Series | list) -> pl.DataFrame:
        return base.with_columns(
            [pl.Series(name, values, pl.String) for name, values in changes.items()]
        )

    if artists is not None:
        reversed_order = [";".join(reversed(a.split(";"))) if a else a for a in artists]
        variants += [
            variant(artists=["  " + a.upper() + " ; " if a else a for a in artists]),
            variant(artists=[(a or "") + ";Unheard Artist Ωmega" for a in artists]),
            variant(artists=reversed_order),
            variant(artists=[_fullwidth(a) for a in artists]),
            variant(artists=[None] * base.height),
            variant(artists=[""] * base.height),
        ]
    if album is not None:
        variants += [
            variant(album_name=[None] * base.height),
            variant(album_name=["Never Released " + str(i) for i in range(base.height)]),
            variant(album_name=[a.lower() + "  " if a else a for a in album]),
        ]
    return pl.concat([test_rows, *variants], how="vertical_relaxed")


def catalog_batch(rows: pl.DataFrame):
    """The rows as a catalog the scorer reads (``track_genre`` named as in a catalog)."""
    frame = rows.rename({"genre": GENRE_COLUMN}) if "genre" in rows.columns else rows
    return frame.rechunk().to_arrow().combine_chunks().to_batches()[0]


def native_matrix(rows: pl.DataFrame, fitted: Any, vocabulary: list[str] | None) -> np.ndarray:
    """The training code's matrix of ``rows`` with plain-Python priors."""
    from popbatch.models.data import feature_matrix
    from popbatch.models.priors import insert_priors

    base = feature_matrix(rows, vocabulary)
    start = len(NUMERIC_FEATURE_NAMES)
    return insert_priors(base, fitted.native(rows), start, fitted.spec)


def prove(stack_dir: Path, manifest: dict[str, Any], fitted: Any, vocabulary) -> tuple:
    """(native matrix, :class:`PriorParity`): the scorer's preprocessing of the parity
    rows against the native matrix. ``manifest`` must hold the ``priors`` section and
    the features the export writes; the table's bytes must be registered
    (:func:`popbatch.core.bundle.register_prior_table`).

    Raises
    ------
    ModelError
        No test rows, or the two matrices differ.
    """
    from popbatch.batch.preprocess import Preprocessor

    path = Path(stack_dir) / TEST_ROWS
    try:
        test_rows = pl.read_parquet(path)
    except FileNotFoundError:
        raise ModelError(f"{path}: no test rows to prove the priors on; re-run training") from None
    spec = PriorSpec.from_manifest(manifest["priors"])
    rows = parity_rows(test_rows, spec.columns)
    native = native_matrix(rows, fitted, vocabulary)
    batch = catalog_batch(rows)
    scorer = Preprocessor(manifest, key=KEY_COLUMN).bind(batch.schema, "test rows")
    prepared = scorer.transform(batch)
    if prepared.rows_rejected:
        raise ModelError(f"{path}: {prepared.rows_rejected} test rows rejected by the scorer")
    diff = float(np.abs(prepared.features - native).max()) if native.size else 0.0
    start = len(NUMERIC_FEATURE_NAMES)
    names = spec.feature_names()
    counts = [start + names.index(f"{c}:count") for c in spec.columns if "count" in spec.statistics]
    unseen = int((native[:, counts] == 0).any(axis=1).sum()) if counts else 0
    parity = PriorParity(rows.height, unseen, diff)
    if not parity.ok:
        raise ModelError(
            f"parity failed, nothing written: {parity.line()}; the scorer's priors lookup "
            "does not reproduce the training code's, report it with the run directory"
        )
    return native, parity


SHARED_INPUT = "features_shared"


def widen_input(model: Any, width: int) -> Any:
    """``model`` (an ``onnx.ModelProto`` reading ``features`` [N, k]) reading a wider
    ``features`` [N, width] instead: the popular stack and the popularity head do not
    read the priors' genre shares, which come last. A column Slice of the input within
    its first ``k`` columns reads the wide input directly; any other reader gets a
    Slice of the first ``k`` columns, made once. (The shared Slice copied 135 columns
    of every row only for two Slices to copy them again: ~0.05 µs a row a head,
    ``bench/graph_ab.py``.) Unchanged when the widths agree. In place; also returned."""
    from onnx import helper, numpy_helper

    graph = model.graph
    source = graph.input[0]
    dim = source.type.tensor_type.shape.dim[1]
    k = dim.dim_value
    if not k or k == width:
        return model
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    shared = False
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name != source.name:
                continue
            if not (i == 0 and _column_slice_within(node, constants, k)):
                node.input[i] = SHARED_INPUT
                shared = True
    if shared:
        bounds = {"slice/starts": [0], "slice/ends": [k], "slice/axes": [1]}
        graph.initializer.extend(
            numpy_helper.from_array(np.asarray(v, np.int64), n) for n, v in bounds.items()
        )
        graph.node.insert(
            0, helper.make_node("Slice", [source.name, *bounds], [SHARED_INPUT], name="shared")
        )
    dim.dim_value = width
    return model


def _column_slice_within(node: Any, constants: dict[str, np.ndarray], k: int) -> bool:
    """Whether ``node`` is a Slice of columns ``[start, end)``, ``0 <= start <= end <= k``,
    with constant bounds and step 1: it reads the same values from a wider input."""
    if node.op_type != "Slice" or len(node.input) not in (4, 5):
        return False
    if any(name not in constants for name in node.input[1:]):
        return False
    starts, ends, axes = (constants[name].tolist() for name in node.input[1:4])
    steps = constants[node.input[4]].tolist() if len(node.input) == 5 else [1]
    return axes == [1] and steps == [1] and 0 <= starts[0] <= ends[0] <= k
