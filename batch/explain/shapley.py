"""Shapley values of one model output by permutation sampling, with a background sample.

The estimator behind ``popbatch explain`` (:mod:`popbatch.batch.explain.selection`), in
numpy only. For a model ``f`` over ``M`` features, a row ``x`` and background
rows ``B``, one feature order ``π`` turns the features of ``x`` on one at a
time, the others taken from each background row::

    v_0 = mean_b f(b)          (every feature from the background)
    v_j = mean_b f(x on π_1..π_j, b elsewhere)
    v_M = f(x)

and credits feature ``π_j`` with ``v_j - v_{j-1}``. The credits of every order
add up to ``f(x) - mean_b f(b)`` exactly (the sum telescopes), so each row's
values satisfy ``base_value + sum(values) == f(x)`` whatever the number of
orders; averaging over orders estimates the interventional Shapley values.
Orders come in antithetic pairs (an order and its reverse), as in the ``shap``
library's PermutationExplainer; when ``permutations >= M!`` every order is
used and the values are exact.

Why not ``shap`` itself: measured on the 2-core development machine,
``import shap`` took 9-14 s and its first explanation 27 s more (numba
compiles its maskers in every new process), and then 0.17 s per track with
its default 500 evaluations and 100 background rows. This estimator runs the
same kind of evaluations, batched over many tracks per onnxruntime call, with
no start-up cost (docs/explain.md, "Cost").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Model = Callable[[np.ndarray], np.ndarray]

# Rows per model call: large enough to amortise onnxruntime's per-call cost.
CALL_ROWS = 65_536


@dataclass(frozen=True)
class Shapley:
    """Per-row contributions ``values`` [N, M], the common ``base_value`` and the
    model's ``prediction`` [N]: ``base_value + values.sum(1) == prediction``."""

    values: np.ndarray
    base_value: float
    prediction: np.ndarray


def feature_orders(features: int, permutations: int, seed: int = 0) -> list[np.ndarray]:
    """``permutations`` orders of ``range(features)`` in antithetic pairs, or every
    order when there are at most ``permutations`` of them (exact Shapley values)."""
    if features <= 1 or math.factorial(features) <= permutations:
        return [np.array(p) for p in itertools.permutations(range(features))]
    rng = np.random.default_rng(seed)
    orders: list[np.ndarray] = []
    for _ in range(max(1, permutations // 2)):
        order = rng.permutation(features)
        orders += [order, order[::-1]]
    return orders


def model_rows_per_row(features: int, permutations: int, background: int) -> int:
    """Model evaluations one explained row costs (what bounds the run time)."""
    return len(feature_orders(features, permutations)) * max(features - 1, 0) * background


def permutation_shap(
    model: Model,
    x: np.ndarray,
    background: np.ndarray,
    permutations: int = 16,
    seed: int = 0,
) -> Shapley:
    """Shapley values of ``model`` at each row of ``x`` against ``background``.

    Parameters
    ----------
    model
        Maps a float64 [n, M] matrix to n outputs (in the space the values
        should add up in: log-odds, points).
    x
        [N, M] rows to explain.
    background
        [K, M] rows standing for "feature unknown" (a sample of training rows).
    permutations
        Feature orders averaged per row (rounded down to an even number).
    seed
        Seed of the orders: the same call gives the same values.

    Returns
    -------
    Shapley

    >>> import numpy as np
    >>> f = lambda z: 2.0 * z[:, 0] - z[:, 1]          # linear: exact values are known
    >>> s = permutation_shap(f, np.array([[3.0, 1.0]]), np.array([[1.0, 0.0], [1.0, 2.0]]))
    >>> s.values.round(6).tolist(), s.base_value, s.prediction.tolist()
    ([[4.0, 0.0]], 1.0, [5.0])
    """
    x = np.asarray(x, np.float64)
    background = np.asarray(background, np.float64)
    rows, features = x.shape
    base = float(np.mean(model(background)))
    prediction = np.asarray(model(x), np.float64).reshape(-1) if rows else np.empty(0)
    values = np.zeros((rows, features))
    orders = feature_orders(features, permutations, seed)
    steps = features - 1  # v_1 .. v_{M-1}; v_0 and v_M are shared by every order
    if rows == 0 or steps == 0:
        values[:, :] = (prediction - base)[:, None] if features else 0.0
        return Shapley(values, base, prediction)
    masks = np.zeros((len(orders), steps, features), bool)
    for o, order in enumerate(orders):
        for j in range(steps):
            masks[o, j, order[: j + 1]] = True
    per_row = steps * len(background)
    chunk = max(1, CALL_ROWS // per_row)
    for start in range(0, rows, chunk):
        part = x[start : start + chunk]
        n = len(part)
        first = np.full((n, 1), base)
        last = prediction[start : start + n, None]
        for o, order in enumerate(orders):
            hybrid = np.where(
                masks[o][None, :, None, :], part[:, None, None, :], background[None, None, :, :]
            )
            out = np.asarray(model(hybrid.reshape(-1, features)), np.float64)
            steps_out = out.reshape(n, steps, len(background)).mean(axis=2)
            v = np.concatenate([first, steps_out, last], axis=1)
            values[start : start + n, order] += np.diff(v, axis=1)
    values /= len(orders)
    return Shapley(values, base, prediction)
