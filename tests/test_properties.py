"""Property-based tests of the scoring job (hypothesis, derandomised for CI).

Tables with the input schema are generated with random values, nulls, extreme
floats, NaN/inf, odd strings in numeric columns (each numeric column is either
typed float, as in Parquet, or text, as every CSV column is read) and odd
genres. They go through the Python API (:func:`batch.score.score`) with an
in-memory source and sinks, so each example costs milliseconds. For every
table:

- every row is either scored, with a finite probability in [0, 1], or
  rejected with a non-empty reason, never both; rows read = scored + rejected;
- a row whose model inputs are all finite numbers in their valid range is
  scored, and a row with a missing, NaN, infinite, out-of-range, non-numeric
  or past-float32 (> 3.4e38, it would become inf in the float32 matrix: found
  by this test) input is rejected (the oracle below is independent of
  batch/preprocess.py);
- scoring the same rows with a different batch size gives identical results.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from popbatch.batch.score import score
from popbatch.batch.sinks import Sink
from popbatch.batch.sources import Source

from popbatch.core.bundle import load_model
from popbatch.core.features import NUMERIC_FEATURES

FLOAT32_MAX = float(np.finfo(np.float32).max)

EXAMPLES = 120
PROFILE = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same examples on every machine: CI is reproducible
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
GENRES = ["pop", "jazz", "JAZZ ", " Pop", "k-pop", "música", "", "__other__", "genre=pop", "🎵"]
NOT_NUMBERS = ["n/a", "loud", "", "   ", "1,5", "--1", "0x1p3", "NULL", "一", "1 2", "true"]
EXPLICIT_WORDS = {
    "True": 1.0, "false": 0.0, " TRUE ": 1.0, "1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0,
    "yes": None, "no": None, "2": None, "": None, "-1": None,
}  # fmt: skip


class TableSource(Source):
    """An in-memory Arrow table as a source."""

    kind = "memory"

    def __init__(self, table: pa.Table) -> None:
        super().__init__("generated")
        self.table = table

    @property
    def schema(self) -> pa.Schema:
        return self.table.schema

    @property
    def total_rows(self) -> int:
        return self.table.num_rows

    def batches(
        self, columns: Sequence[str] | None = None, batch_size: int = 65536
    ) -> Iterator[pa.RecordBatch]:
        table = self.table.select(list(columns)) if columns is not None else self.table
        yield from table.to_batches(max_chunksize=batch_size)


class MemorySink(Sink):
    """Collects the batches written, as a table once the run is done."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.name = "memory"
        # The run's lock and run log go beside the target: keep them out of the cwd.
        self.target = directory / "memory"
        self.batches: list[pa.RecordBatch] = []

    def open(self, schema: pa.Schema, input_names: Mapping[str, str] | None = None) -> None:
        self.schema = schema

    def _write(self, batch: pa.RecordBatch) -> None:
        self.batches.append(batch)

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        pass  # commit_all calls abort on every sink at the end; keep what was written

    def table(self) -> pa.Table:
        return pa.Table.from_batches(self.batches, schema=self.schema)


# ---------------------------------------------------------------- strategies
def in_range(spec) -> st.SearchStrategy[float]:
    """A valid value, including the bounds and, where there is no upper bound, huge ones."""
    high = spec.valid_max if spec.valid_max is not None else 1e6
    edges = [spec.valid_min, high, -0.0 if spec.valid_min == 0 else spec.valid_min]
    if spec.valid_max is None:
        edges += [1e30, FLOAT32_MAX]  # the feature matrix is float32
    return st.one_of(
        st.floats(spec.valid_min, high, allow_nan=False, allow_infinity=False),
        st.sampled_from(edges),
    )


def out_of_range(spec) -> st.SearchStrategy[float]:
    """An invalid float: NaN, inf, or outside the valid range."""
    bad = [math.nan, math.inf, -math.inf, spec.valid_min - 1e-9 * max(1, abs(spec.valid_min))]
    if spec.valid_max is not None:
        bad += [spec.valid_max + 0.5, 1e308]
    else:
        bad += [3.5e38, 1e308]  # finite, but past float32: would be inf in the matrix
    return st.one_of(
        st.sampled_from(bad),
        st.floats(max_value=spec.valid_min, exclude_max=True),
    )


TEXT_FORMATS = ["{!r}", " {} ", "{:.3e}", "{:.6f}", "{}\t"]


def as_text(number: st.SearchStrategy[float]) -> st.SearchStrategy[tuple[str, float]]:
    """A number written as text, and the number the text means."""
    return st.tuples(number, st.sampled_from(TEXT_FORMATS)).map(
        lambda p: (p[1].format(p[0]), float(p[1].format(p[0])))
    )


def valid_cell(spec, text: bool) -> st.SearchStrategy[tuple[object, float]]:
    if spec.name == "explicit" and text:
        words = sorted(w for w, v in EXPLICIT_WORDS.items() if v is not None)
        return st.sampled_from(words).map(lambda w: (w, EXPLICIT_WORDS[w]))
    if text:
        return as_text(in_range(spec))
    return in_range(spec).map(lambda v: (v, v))


def invalid_cell(spec, text: bool) -> st.SearchStrategy[tuple[object, float | None]]:
    """A value the row must be rejected for (null, NaN, inf, out of range, not a number)."""
    if spec.name == "explicit" and text:
        words = sorted(w for w, v in EXPLICIT_WORDS.items() if v is None)
        return st.one_of(st.none(), st.sampled_from(words)).map(lambda w: (w, None))
    if text:
        return st.one_of(
            st.one_of(st.none(), st.sampled_from(NOT_NUMBERS)).map(lambda w: (w, None)),
            # What the text means: "{:.6f}" of a value just below the minimum is the minimum.
            as_text(out_of_range(spec)),
        )
    return st.one_of(st.none(), out_of_range(spec)).map(lambda v: (v, None))


@st.composite
def catalogs(draw) -> tuple[pa.Table, list[bool]]:
    """A table with the input schema and, per row, whether it must be scored.

    Rows start valid; a drawn list of (row, column) cells is then broken, so
    both scored and rejected rows are common.
    """
    rows = draw(st.integers(0, 30))
    broken: set[tuple[int, str]] = set()
    if rows:
        cells = st.tuples(st.integers(0, rows - 1), st.sampled_from(NUMERIC_FEATURES))
        broken = {(r, spec.name) for r, spec in draw(st.lists(cells, max_size=rows))}
    columns: dict[str, pa.Array] = {"track_id": pa.array([f"t{i}" for i in range(rows)])}
    valid = [True] * rows
    for spec in NUMERIC_FEATURES:
        text = draw(st.booleans())  # a text column, as every CSV column is read, or floats
        values = [
            draw(invalid_cell(spec, text) if (i, spec.name) in broken else valid_cell(spec, text))
            for i in range(rows)
        ]
        columns[spec.name] = pa.array([v[0] for v in values], pa.string() if text else pa.float64())
        # What the cell means decides, not whether it was drawn broken: "{:.3e}" of a
        # valid bound may round past it.
        valid = [ok and acceptable(v[1], spec) for ok, v in zip(valid, values, strict=True)]
    genres = st.one_of(st.none(), st.sampled_from(GENRES))
    columns["track_genre"] = pa.array(
        draw(st.lists(genres, min_size=rows, max_size=rows)), pa.string()
    )
    order = draw(st.permutations(list(columns)))  # column order must not matter
    return pa.table({name: columns[name] for name in order}), valid


def acceptable(value: float | None, spec) -> bool:
    """The oracle: a finite number in the valid range that float32 can hold."""
    if value is None or not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        return False
    low_ok = spec.valid_min is None or value >= spec.valid_min
    return low_ok and (spec.valid_max is None or value <= spec.valid_max)


# --------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def bundle(model_dir):
    return load_model(model_dir)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("properties")


def run(table: pa.Table, bundle, batch_size: int, scratch: Path):
    scores, rejects = MemorySink(scratch), MemorySink(scratch)
    summary = score(
        TableSource(table),
        scores,
        bundle,
        batch_size=batch_size,
        threads=1,
        rejects=rejects,
        refuse_all_rejected=False,  # the counts are the subject, whatever the rows
    )
    return summary, scores.table(), rejects.table()


@PROFILE
@given(data=catalogs(), sizes=st.tuples(st.integers(1, 7), st.integers(8, 64)))
def test_every_row_is_scored_or_rejected_whatever_the_batch_size(bundle, scratch, data, sizes):
    table, must_score = data
    rows = table.num_rows
    results = [run(table, bundle, size, scratch) for size in sizes]
    summary, scored, rejected = results[0]

    assert summary.rows_read == rows == summary.rows_scored + summary.rows_rejected
    assert (scored.num_rows, rejected.num_rows) == (summary.rows_scored, summary.rows_rejected)
    probability = scored["popularity_prob"].to_numpy()
    assert np.isfinite(probability).all()
    assert ((probability >= 0) & (probability <= 1)).all()
    assert scored["popular"].to_pylist() == [p >= bundle.threshold for p in probability]
    assert all(reason for reason in rejected["reason"].to_pylist())

    # Every row exactly once, and the right ones scored.
    scored_rows = [int(key[1:]) + 1 for key in scored["track_id"].to_pylist()]
    rejected_rows = rejected["row"].to_pylist()
    assert sorted(scored_rows + rejected_rows) == list(range(1, rows + 1))
    expected = [i + 1 for i in range(rows) if must_score[i]]
    for row in sorted(set(scored_rows) ^ set(expected)):
        note(f"row {row}: {table.slice(row - 1, 1).to_pylist()[0]}")
    assert scored_rows == expected

    # The batch size changes nothing (scored_at is the run's time).
    for _, other_scored, other_rejected in results[1:]:
        assert other_scored.drop(["scored_at"]).equals(scored.drop(["scored_at"]))
        assert other_rejected.equals(rejected)
