"""SHAP section of the training report: why the stack predicts what it does, on test rows.

The same estimator as ``popbatch explain`` (:mod:`popbatch.batch.explain.shapley`), on the
native stack in the raw space of the 14 numeric inputs plus the genre as one
feature, in log-odds of popular (:func:`head_shap` takes any head, e.g. the
popularity regression in points, once training produces one). Kept cheap:
200 test rows, 50 training rows as background, 8 feature orders (~1.1M stack
evaluations).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from popbatch.batch.explain.shapley import permutation_shap
from popbatch.batch.explain.space import RawSpace

from popbatch.core.features import NUMERIC_FEATURE_NAMES, OTHER_GENRE

SAMPLE_ROWS = 200
BACKGROUND_ROWS = 50
PERMUTATIONS = 8
MEANING = {
    "popular": (
        "A SHAP value is how much a feature moved this track's prediction away from the "
        "average prediction over training rows, in log-odds of popular (+0.7 roughly doubles "
        "the odds); a track's values add up to its prediction minus that average."
    ),
    "popularity": (
        "A SHAP value is how many popularity points a feature moved this track's predicted "
        "popularity away from the average prediction over training rows; a track's values "
        "add up to its prediction minus that average."
    ),
}
UNITS = {"popular": "log-odds of popular", "popularity": "popularity points"}


def raw_space(feature_names: list[str]) -> RawSpace:
    """The explainer's raw space for a stack's feature names (no manifest at training)."""
    from popbatch.core.priors import is_prior_feature

    features = [
        {"name": n, "kind": "numeric"}
        if n in NUMERIC_FEATURE_NAMES
        else {"name": n, "kind": "prior"}
        if is_prior_feature(n)
        else {"name": n, "kind": "onehot", "category": n.partition("=")[2]}
        for n in feature_names
    ]
    manifest = {"input": {"width": len(features)}, "features": features}
    return RawSpace({**manifest, "genre": {"other": OTHER_GENRE}})


def to_raw(space: RawSpace, x: np.ndarray) -> np.ndarray:
    """Raw rows (numeric inputs + genre position) of model-order feature rows."""
    numeric = x[:, space.numeric_positions].astype(np.float64)
    if not space.has_genre:
        return numeric
    block = np.array(sorted(space.categories))
    genre = block[np.argmax(x[:, block], axis=1)].astype(np.float64)
    return np.hstack([numeric, genre[:, None]])


def stack_shap(stack: Any, splits: Any, seed: int) -> dict[str, Any]:
    """SHAP values of the popular head's stack on a sample of the test split."""
    return head_shap(stack.predict_proba, list(stack.feature_names), splits, seed, "popular")


def head_shap(
    predict: Any, feature_names: list[str], splits: Any, seed: int, head: str
) -> dict[str, Any]:
    """SHAP values of one head (``predict``: model-order float32 rows -> probability of
    popular, or popularity points) on a sample of the test split, in the head's unit."""
    space = raw_space(feature_names)
    rng = np.random.default_rng(seed)
    x_test, x_train = splits.x["test"], splits.x["train"]
    sample = to_raw(space, x_test[rng.choice(len(x_test), min(SAMPLE_ROWS, len(x_test)), False)])
    background = to_raw(
        space, x_train[rng.choice(len(x_train), min(BACKGROUND_ROWS, len(x_train)), False)]
    )

    def link(raw: np.ndarray) -> np.ndarray:
        out = np.asarray(predict(space.matrix(raw)), np.float64).reshape(-1)
        if head != "popular":
            return out
        p = np.clip(out, 1e-7, 1 - 1e-7)
        return np.log(p / (1 - p))

    started = time.perf_counter()
    shap = permutation_shap(link, sample, background, PERMUTATIONS, seed)
    mean_abs = np.abs(shap.values).mean(axis=0)
    order = np.argsort(-mean_abs)
    return {
        "space": space,
        "raw": sample,
        "values": shap.values,
        "summary": {
            "unit": UNITS[head],
            "meaning": MEANING[head],
            "rows": len(sample),
            "background_rows": len(background),
            "permutations": PERMUTATIONS,
            "base_value": shap.base_value,
            "max_additivity_error": float(
                np.abs(shap.base_value + shap.values.sum(1) - shap.prediction).max()
            ),
            "seconds": round(time.perf_counter() - started, 2),
            "mean_abs": {space.names[i]: float(mean_abs[i]) for i in order},
        },
    }


def draw(
    plt: Any, plots: Path, result: dict[str, Any], save: Any, prefix: str = ""
) -> dict[str, str]:
    """The bar chart, the beeswarm and the dependence plots; ``{key: relative path}``
    (keys and file names start with ``prefix``, e.g. ``popularity_`` for that head)."""
    space, raw, values = result["space"], result["raw"], result["values"]
    names = space.names
    mean_abs, unit = result["summary"]["mean_abs"], result["summary"]["unit"]
    ranked = list(mean_abs)[::-1]  # least important at the bottom
    drawn = {}

    fig, ax = plt.subplots(figsize=(7, 5))
    ax.barh(ranked, [mean_abs[n] for n in ranked], color="#4c72b0")
    ax.set(xlabel=f"mean |SHAP| ({unit})", title="Feature importance (SHAP)")
    drawn[f"{prefix}shap_bar"] = save(plt, fig, plots, f"{prefix}shap_bar")

    fig, ax = plt.subplots(figsize=(8, 6))
    rng = np.random.default_rng(0)
    for row, name in enumerate(ranked):
        i = names.index(name)
        jitter = rng.uniform(-0.3, 0.3, len(values))
        if name == "genre":  # no order among genres: one colour
            ax.scatter(values[:, i], row + jitter, color="#999999", s=8)
            continue
        v = raw[:, i]
        spread = v.max() - v.min()
        colour = (v - v.min()) / spread if spread else np.zeros_like(v)
        points = ax.scatter(
            values[:, i], row + jitter, c=colour, cmap="coolwarm", s=8, vmin=0, vmax=1
        )
    ax.set_yticks(range(len(ranked)), ranked)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set(xlabel=f"SHAP value ({unit})", title="SHAP values, test sample")
    fig.colorbar(points, ax=ax, label="feature value (low to high; genre grey)")
    drawn[f"{prefix}shap_beeswarm"] = save(plt, fig, plots, f"{prefix}shap_beeswarm")

    numeric = [n for n in mean_abs if n != "genre"][:3]
    fig, axes = plt.subplots(1, max(len(numeric), 1), figsize=(13, 4), squeeze=False)
    for ax, name in zip(axes[0], numeric, strict=False):
        i = names.index(name)
        ax.scatter(raw[:, i], values[:, i], s=8, color="#c44e52")
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set(xlabel=name, ylabel=f"SHAP value ({unit})", title=f"Dependence: {name}")
    drawn[f"{prefix}shap_dependence"] = save(plt, fig, plots, f"{prefix}shap_dependence")
    return drawn
