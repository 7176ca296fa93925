"""Genre head designs under 5 grouped folds: accuracy and top-3 of forests, networks, pairs.

Fits each named design on 4/5 of the shared 10k sample (the test fixture when
it is absent) and scores the held-out fifth, folds grouped by track_id; the
networks stop early on a grouped sixth of their fitting rows. Prints each
fold and the mean and std over the folds, for every design and for the
average of the probabilities of every pair of designs.

    python bench/genre_designs.py rf et ann ann2      # what docs/training.md quotes
    python bench/genre_designs.py rf30 ann128         # the shipped default's sizes

Designs: rf (100 trees, depth 14), rf30 (30, depth 10), et (300 extra trees),
ann (256 units), ann128 (128), ann2 (512 + 256).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from popbatch.models.data import load_training_data  # noqa: E402
from popbatch.models.split import grouped_folds  # noqa: E402

from bench.run import training_data  # noqa: E402
from popbatch.core.features import NUMERIC_FEATURE_NAMES  # noqa: E402

FOREST = {"max_features": "sqrt", "n_jobs": 2, "random_state": 0}
FORESTS = {
    "rf": {"n_estimators": 100, "max_depth": 14, "min_samples_leaf": 2},
    "rf30": {"n_estimators": 30, "max_depth": 10, "min_samples_leaf": 3},
}
NETWORKS = {"ann": ((256,), 0.3), "ann128": ((128,), 0.3), "ann2": ((512, 256), 0.3)}


def network(s, y, s_val, y_val, hidden, dropout, classes: int):
    import keras

    keras.utils.set_random_seed(0)
    layers = [keras.Input(shape=(s.shape[1],))]
    for units in hidden:
        layers += [keras.layers.Dense(units, activation="relu"), keras.layers.Dropout(dropout)]
    model = keras.Sequential([*layers, keras.layers.Dense(classes, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    stop = keras.callbacks.EarlyStopping(patience=15, restore_best_weights=True)
    model.fit(s, y, validation_data=(s_val, y_val), epochs=150, batch_size=64, verbose=0,
              callbacks=[stop])  # fmt: skip
    return model


def design(name, x, y, fit, val, out, classes):
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.preprocessing import StandardScaler

    if name in FORESTS:
        model = RandomForestClassifier(**FORESTS[name], **FOREST).fit(x[fit], y[fit])
        return model.predict_proba(x[out])  # classes absent from fit: never predicted
    if name == "et":
        model = ExtraTreesClassifier(300, n_jobs=2, random_state=0).fit(x[fit], y[fit])
        return model.predict_proba(x[out])
    scaler = StandardScaler().fit(x[fit])
    s = {k: scaler.transform(x[rows]).astype(np.float32) for k, rows in
         (("fit", fit), ("val", val), ("out", out))}  # fmt: skip
    hidden, dropout = NETWORKS[name]
    model = network(s["fit"], y[fit], s["val"], y[val], hidden, dropout, classes)
    return model.predict(s["out"], verbose=0)


def scores(p: np.ndarray, classes_seen: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    top3 = classes_seen[np.argsort(-p, axis=1)[:, :3]]
    return float(np.mean(top3[:, 0] == y)), float(np.mean((top3 == y[:, None]).any(axis=1)))


def main() -> None:
    names = sys.argv[1:] or ["rf", "et", "ann", "ann2"]
    data = load_training_data(training_data(quick=False))
    frame = data.frame
    x = frame.select(NUMERIC_FEATURE_NAMES).to_numpy().astype(np.float32)
    genres = frame["genre"].to_numpy()
    classes = sorted(set(genres))
    y = np.searchsorted(classes, genres)
    groups = frame["track_id"].to_numpy()
    results: dict[str, list[tuple[float, float]]] = {}
    dummy = np.zeros(len(y), np.int64)  # strata: the folds only need the groups
    for k, (fit_all, out) in enumerate(grouped_folds(groups, dummy, 5, 7)):
        fit_part, val_part = next(grouped_folds(groups[fit_all], dummy[fit_all], 6, k))
        fit, val = fit_all[fit_part], fit_all[val_part]
        seen = np.unique(y[fit])
        # every design returns probabilities over the classes seen in fit (networks: all)
        probs = {}
        for n in names:
            p = design(n, x, y, fit, val, out, len(classes))
            probs[n] = p if p.shape[1] == seen.size else p[:, seen]
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                probs[f"{a}+{b}"] = (probs[a] + probs[b]) / 2
        for n, p in probs.items():
            results.setdefault(n, []).append(scores(p, seen, y[out]))
        print(f"fold {k + 1}: " + ", ".join(f"{n} {v[-1][0]:.3f}/{v[-1][1]:.3f}"
                                            for n, v in results.items()), flush=True)  # fmt: skip
    print("design: accuracy mean ± std, top-3 mean ± std over 5 folds")
    for n, v in results.items():
        a = np.array(v)
        print(f"{n}: {a[:, 0].mean():.4f} ± {a[:, 0].std(ddof=1):.4f}, "
              f"{a[:, 1].mean():.4f} ± {a[:, 1].std(ddof=1):.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
