"""Genre target encoding, fitted on training rows only.

The genre one-hot block (vocabulary + ``__other__``) becomes one number per
row: the smoothed share of popular rows of its genre,
``(positives + m * prior) / (rows + m)``. Because the encoding is a vector
with one entry per one-hot column, applying it is ``onehot @ encoding``: the
ONNX graph does exactly that (a MatMul of the one-hot block with a constant),
so scoring needs no lookup table of strings.

The rows an encoder is fitted on must not be encoded by it (their own labels
would leak into their feature), so training rows get an out-of-fold encoding
(:func:`out_of_fold_encoding`) and every other row the encoding fitted on all
training rows (:func:`fit_encoding`).
"""

from __future__ import annotations

import numpy as np
from popbatch.models.split import grouped_folds

SMOOTHING = 20.0  # pseudo-rows of the prior per genre
ENCODING_FOLDS = 5


def fit_encoding(onehot: np.ndarray, y: np.ndarray, smoothing: float = SMOOTHING) -> np.ndarray:
    """One smoothed popular share per one-hot column, from rows ``onehot`` [N, G] and ``y``.

    A column with no rows gets the prior (the share of popular rows overall).
    """
    onehot = np.asarray(onehot, np.float64)
    y = np.asarray(y, np.float64)
    prior = float(y.mean()) if y.size else 0.0
    rows = onehot.sum(axis=0)
    positives = onehot.T @ y
    return (positives + smoothing * prior) / (rows + smoothing)


def out_of_fold_encoding(
    onehot: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    seed: int,
    smoothing: float = SMOOTHING,
    k: int = ENCODING_FOLDS,
    strata: np.ndarray | None = None,
) -> np.ndarray:
    """Each row's encoding from an encoder fitted without its (track_id-grouped) fold: [N].

    The folds are stratified by ``strata`` (0/1 per row; default ``y``, which must
    then be 0/1 too: a regression target passes e.g. ``y > median``).
    """
    encoded = np.zeros(onehot.shape[0], np.float64)
    for fit_rows, held_out in grouped_folds(groups, y if strata is None else strata, k, seed):
        encoding = fit_encoding(onehot[fit_rows], y[fit_rows], smoothing)
        encoded[held_out] = np.asarray(onehot[held_out], np.float64) @ encoding
    return encoded


def with_encoded_genre(c: np.ndarray, n_numeric: int, encoding: list[float]) -> np.ndarray:
    """``c``'s first ``n_numeric`` columns and its genre one-hot block (the rest) as one
    encoded column: float32 [N, n_numeric + 1], what the graph's MatMul lookup gives."""
    block = np.asarray(c[:, n_numeric:], np.float64)
    encoded = (block @ np.asarray(encoding, np.float64)).astype(np.float32)
    return np.column_stack([c[:, :n_numeric], encoded])
