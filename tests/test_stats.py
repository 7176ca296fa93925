"""Feature statistics shared by training (manifest) and drift."""

from __future__ import annotations

import numpy as np
import pytest

from popbatch.core.stats import bin_counts, numeric_stats, psi


def test_bin_counts_edges_are_inclusive_on_the_right():
    counts = bin_counts(np.array([0.0, 1.0, 1.5, 2.0, 3.0, np.nan]), [1.0, 2.0])
    assert counts.tolist() == [2, 2, 1]


def test_numeric_stats_of_a_known_sample():
    stats = numeric_stats(np.arange(1, 101, dtype=float))
    assert stats["min"] == 1 and stats["max"] == 100
    assert stats["mean"] == pytest.approx(50.5)
    assert stats["impute"] == pytest.approx(50.5)
    assert len(stats["bins"]["shares"]) == len(stats["bins"]["edges"]) + 1
    assert sum(stats["bins"]["shares"]) == pytest.approx(1.0)
    # deciles of 1..100 split it into ten bins of ten values
    assert stats["bins"]["shares"] == pytest.approx([0.1] * 10)


def test_psi_is_zero_for_the_same_distribution_and_grows_with_shift():
    rng = np.random.default_rng(0)
    train = rng.normal(size=20_000)
    stats = numeric_stats(train)
    edges, shares = stats["bins"]["edges"], stats["bins"]["shares"]
    same = psi(shares, bin_counts(rng.normal(size=20_000), edges))
    shifted = psi(shares, bin_counts(rng.normal(loc=1.0, size=20_000), edges))
    assert same < 0.01
    assert shifted > 0.25
