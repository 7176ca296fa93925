"""The default model's scores of the sample catalog are exactly the reference scores
(``tests/data/sample_scores.csv``, see ``tests/data/make_sample_scores.py``), bit for bit,
however the run is batched and threaded: a change made for speed may not change a score.

The reference is regenerated only when the default model changes; the first test says
so when it is out of date."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

import popbatch
from popbatch.core.bundle import load_model

DATA = Path(__file__).parent / "data"
SAMPLE = Path(__file__).resolve().parents[1] / "batch" / "sample" / "catalog.csv"
REFERENCE = DATA / "sample_scores.csv"


def reference() -> pl.DataFrame:
    return pl.read_csv(REFERENCE, schema_overrides={"features_hash": pl.UInt64})


def test_the_reference_is_the_default_models():
    model_id = load_model().model_id
    assert reference()["model_id"].unique().to_list() == [model_id], (
        "the embedded default model changed: regenerate tests/data/sample_scores.csv with "
        "tests/data/make_sample_scores.py, run by the interpreter of the commit that changed "
        "the model (never to bless a scoring change)"
    )


@pytest.mark.parametrize(
    ("batch_size", "threads"),
    [(10_000, 1), (97, 2), (256, None)],
    ids=["one batch, one thread", "odd batches, two threads", "small batches, default threads"],
)
def test_scores_equal_the_reference_bit_for_bit(tmp_path, batch_size, threads):
    expected = reference()
    out = tmp_path / "scored.parquet"
    popbatch.score(SAMPLE, out, batch_size=batch_size, threads=threads, record=False)
    scored = pl.read_parquet(out).select(expected.columns)
    assert scored.height == expected.height == 1_000
    for column in expected.columns:  # one column at a time: the failure names it
        assert scored[column].equals(expected[column]), column


def test_score_batches_equal_the_reference(tmp_path):
    """The engines' path (popbatch.score_batches: Spark, Ray, Dask) gives the same scores."""
    import pyarrow.csv as pacsv

    expected = reference()
    batches = pacsv.read_csv(SAMPLE).to_batches(max_chunksize=300)
    flagged = pl.concat(
        pl.from_arrow(b).select(expected.columns) for b in popbatch.score_batches(batches)
    )
    for column in expected.columns:
        assert flagged[column].equals(expected[column]), column


@pytest.mark.parametrize("heads", ["popular", "popular,popularity"])
def test_a_subset_of_heads_scores_the_same_bits(tmp_path, heads):
    """Without the genre head the preprocessing leaves the priors' genre shares out (only
    that head reads them): the heads that run must still give the reference's bits."""
    expected = reference()
    out = tmp_path / "scored.parquet"
    popbatch.score(SAMPLE, out, heads=heads, record=False)
    scored = pl.read_parquet(out)
    assert "genre_pred" not in scored.columns
    for column in [c for c in expected.columns if c in scored.columns]:
        assert scored[column].equals(expected[column]), column
    assert "popularity_prob" in scored.columns and "features_hash" in scored.columns


def test_a_negative_prior_position_is_left_unwritten():
    """The lever itself: the lookup writes no input whose position is negative (what a run
    without the genre head gives the genre shares), and every other input as before."""
    import pyarrow.csv as pacsv
    from popbatch.batch.priors import lookup_for

    from popbatch.core.priors import is_tail_feature

    lookup = lookup_for(load_model().manifest)
    table = pacsv.read_csv(SAMPLE)
    cells = {c: table.column(c) for c in lookup.spec.columns}
    names = lookup.spec.feature_names()
    everything = np.arange(len(names))
    full = np.full((table.num_rows, len(names)), 7.0, np.float32)
    lookup.fill(cells, full, everything)
    skipped = np.array([-1 if is_tail_feature(n) else i for i, n in enumerate(names)])
    part = np.full_like(full, 7.0)
    lookup.fill(cells, part, skipped)
    tail = skipped < 0
    assert tail.sum() == 228 and not (full[:, tail] == 7.0).any()
    assert (part[:, tail] == 7.0).all()  # never written
    assert np.array_equal(part[:, ~tail], full[:, ~tail])
