"""Feature statistics: computed on the training split, stored in the manifest,
and compared with a catalog's by ``popbatch drift``.

Both sides bin values the same way (:func:`bin_counts`), so a population
stability index compares like with like.
"""

from __future__ import annotations

from typing import Any

import numpy as np

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
DECILES = tuple(i / 10 for i in range(1, 10))


def bin_counts(values: np.ndarray, edges: list[float] | np.ndarray) -> np.ndarray:
    """Count values per bin: bin 0 is ``x <= edges[0]``, bin i is ``edges[i-1] < x <= edges[i]``,
    the last bin is ``x > edges[-1]``; ``len(edges) + 1`` bins. NaN is not counted.
    """
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    index = np.searchsorted(np.asarray(edges, np.float64), values, side="left")
    return np.bincount(index, minlength=len(edges) + 1)


def numeric_stats(values: np.ndarray) -> dict[str, Any]:
    """Statistics of one numeric feature (NaN ignored), as the manifest stores them.

    Returns a dict with ``min``, ``max``, ``mean``, ``std``, ``quantiles``
    (keys ``"0.01"`` … ``"0.99"``), ``bins`` (``edges``: deduplicated deciles,
    ``shares``: share of values per bin) and ``impute`` (the median).
    """
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        raise ValueError("no values to describe")
    edges = sorted(set(np.quantile(values, DECILES).tolist()))
    counts = bin_counts(values, edges)
    return {
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "quantiles": {
            str(q): float(v) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)
        },
        "bins": {"edges": edges, "shares": (counts / counts.sum()).tolist()},
        "impute": float(np.median(values)),
    }


def onehot_share(values: np.ndarray) -> dict[str, float]:
    """Share of rows whose one-hot column is set."""
    values = np.asarray(values, np.float64)
    return {"share": float(values.mean()) if values.size else 0.0}


def psi(expected_shares: np.ndarray, actual_counts: np.ndarray, floor: float = 1e-4) -> float:
    """Population stability index of actual counts against expected shares.

    Shares are floored at ``floor`` so an empty bin does not give an infinite index.
    """
    expected = np.maximum(np.asarray(expected_shares, np.float64), floor)
    total = actual_counts.sum()
    if total == 0:
        return 0.0
    actual = np.maximum(np.asarray(actual_counts, np.float64) / total, floor)
    return float(np.sum((actual - expected) * np.log(actual / expected)))
