"""popbatch.score_batches: the Arrow block popbatch score, Spark, Ray Data and Dask share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from bad_rows import bad_catalog
from conftest import FORMAT1_MODEL
from popbatch.batch.batches import REJECTED, BatchScorer
from popbatch.batch.sources import CsvSource

import popbatch
from popbatch.core.errors import InputError, SchemaError

BAD = {
    5: {"danceability": "1.7"},
    301: {"tempo": "n/a"},
    302: {"energy": ""},
    1999: {"explicit": "maybe"},
}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return bad_catalog(tmp_path_factory.mktemp("catalog"), BAD)


@pytest.fixture(scope="module")
def scored_by_cli(catalog, tmp_path_factory):
    """What popbatch score writes for the catalog: (scored table, rejects table)."""
    out = tmp_path_factory.mktemp("cli") / "scored.parquet"
    summary = popbatch.score(catalog, out, batch_size=700, record=False)
    assert summary.rows_rejected == len(BAD)
    return pq.read_table(out), pq.read_table(out.with_name("scored.rejects.parquet"))


def batches(path, rows=256):
    """The CSV as text in Arrow batches of ``rows`` rows (as popbatch score reads it)."""
    return list(CsvSource([path]).batches(None, rows))


def test_scores_and_rejects_equal_popbatch_score(catalog, scored_by_cli):
    expected, expected_rejects = scored_by_cli
    out = pa.Table.from_batches(list(popbatch.score_batches(batches(catalog))))
    assert out.num_rows == 2000  # one output row per input row
    scored = out.filter(pc.is_null(out[REJECTED])).drop_columns([REJECTED])
    assert scored.schema == expected.schema
    assert scored.drop_columns(["scored_at"]).equals(expected.drop_columns(["scored_at"]))
    rejected = out.filter(pc.is_valid(out[REJECTED]))
    rejects = pa.Table.from_batches(
        [pa.RecordBatch.from_struct_array(c) for c in rejected[REJECTED].chunks]
    )
    # row numbers count over the batches of one call
    assert rejects.to_pylist() == expected_rejects.to_pylist()
    assert rejects["row"].to_pylist() == sorted(BAD)


def test_rows_keep_input_order_and_rejected_rows_keep_their_key(catalog):
    source = batches(catalog, 300)
    out = pa.Table.from_batches(list(popbatch.score_batches(source)))
    assert out["track_id"].equals(pa.Table.from_batches(source)["track_id"])
    flagged = np.flatnonzero(pc.is_valid(out[REJECTED]).to_numpy(zero_copy_only=False)) + 1
    assert flagged.tolist() == sorted(BAD)
    bad = out.take(flagged - 1)
    assert bad["popularity_prob"].null_count == bad.num_rows
    assert [r["reason"] for r in bad[REJECTED].to_pylist()] == [
        "danceability 1.7 is outside [0, 1]",
        "tempo n/a is not a number",
        "energy is missing",
        "explicit maybe is not true/false/1/0",
    ]


def test_scored_at_is_the_given_moment_in_utc(catalog):
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    out = pa.Table.from_batches(list(popbatch.score_batches(batches(catalog), scored_at=moment)))
    assert set(out["scored_at"].drop_null().to_pylist()) == {datetime(2026, 1, 2, 1, 4, 5)}


def test_heads_are_checked_against_the_model(catalog):
    (first,) = popbatch.score_batches(batches(catalog, 2000)[:1], heads=["popular"])
    assert first.num_rows == 2000
    with pytest.raises(InputError, match=r"this model has no genre head \(it has popular\)"):
        # popbatch 0.1.0's default model has the popular head only
        next(popbatch.score_batches(batches(catalog), FORMAT1_MODEL, heads=["popular", "genre"]))
    with pytest.raises(InputError, match=r"unknown head \(none given\)"):
        next(popbatch.score_batches(batches(catalog), heads=[]))


def test_options_and_missing_columns(catalog, model_dir):
    source = pacsv.read_csv(catalog).drop_columns(["tempo"]).rename_columns({"energy": "power"})
    with pytest.raises(SchemaError, match="batches: missing required columns energy, tempo"):
        next(popbatch.score_batches(source.to_batches()))
    (out,) = popbatch.score_batches(
        source.to_batches(2000),
        fills={"tempo": "120"},
        mapping={"energy": "power"},
        columns=["track_id", "track_name"],
    )
    assert out.schema.names[:3] == ["track_id", "track_name", "popularity_prob"]
    assert list(popbatch.score_batches(iter([]))) == []


def test_popbatch_score_runs_through_batch_scorer(catalog, tmp_path, monkeypatch):
    """One implementation: popbatch score's numbers come from BatchScorer.predict."""

    def constant(self, prepared):
        n = prepared.features.shape[0]
        return np.full(n, 0.25, np.float32), np.zeros(n, bool), {}  # no extra heads

    monkeypatch.setattr(BatchScorer, "predict", constant)
    popbatch.score(catalog, tmp_path / "s.parquet", record=False, heads="popular")
    assert set(pq.read_table(tmp_path / "s.parquet")["popularity_prob"].to_pylist()) == {0.25}
    (out,) = popbatch.score_batches(batches(catalog, 2000)[:1], heads=["popular"])
    assert set(out["popularity_prob"].drop_null().to_pylist()) == {0.25}


def test_a_scorer_passed_in_is_reused_and_left_open(catalog):
    from popbatch.batch.runner import OnnxScorer

    scorer = OnnxScorer(popbatch.load_model(None), threads=2)
    now = datetime.now(UTC)
    first = list(popbatch.score_batches(batches(catalog, 2000), scorer, scored_at=now))
    second = list(popbatch.score_batches(batches(catalog, 2000), scorer, scored_at=now))
    assert pa.Table.from_batches(first).equals(pa.Table.from_batches(second))
    assert scorer._pool is not None  # still usable: its threads were not shut down
    scorer.close()
