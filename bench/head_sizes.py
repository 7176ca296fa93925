"""Quality of smaller heads, by truncating a trained run's forests and booster.

Rebuilds the run's grouped split of the training data (same seed), then
scores the validation split with the first k trees of each forest and the
first n rounds of the popularity XGBoost, keeping the meta learner and the
genre weight as trained (so the figures are a lower bound for a refit).

    python bench/head_sizes.py runs/heads ../shared/data/spotify_tracks_PARTIAL_sample_10000.csv
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from popbatch.models.data import load_training_data  # noqa: E402
from popbatch.models.genre import GenreHead, classification_metrics  # noqa: E402
from popbatch.models.pipeline import labels, make_splits  # noqa: E402
from popbatch.models.popularity import PopularityHead, regression_metrics  # noqa: E402


def _first(forest, k: int):
    smaller = copy.copy(forest)
    smaller.estimators_ = forest.estimators_[:k]
    smaller.n_estimators = k
    return smaller


def main() -> None:
    run, data_path = Path(sys.argv[1]), sys.argv[2]
    data = load_training_data(data_path)
    splits, _ = make_splits(data, labels(data.frame, 71), 42)
    x, frame = splits.x["validation"], splits.frames["validation"]
    pop = PopularityHead.load(run / "stack" / "popularity")
    y = frame["popularity"].to_numpy()
    base = pop.base_predictions(x)
    rounds = pop.xgb.get_booster().num_boosted_rounds()
    print("popularity as trained", regression_metrics(y, pop.combine(base)), rounds, "rounds")
    clipped = pop.tree_input(pop.clip(x))
    for trees, n in ((10, rounds), (10, 200), (10, 100)):
        smaller = base.copy()
        smaller[:, 1] = _first(pop.rf, trees).predict(clipped)
        smaller[:, 2] = pop.xgb.predict(clipped, iteration_range=(0, min(n, rounds)))
        print(
            f"popularity rf {trees} trees, xgb {n} rounds",
            regression_metrics(y, pop.combine(smaller)),
        )
    genre = GenreHead.load(run / "stack" / "genre")
    genres = frame["genre"].to_list()
    parts = genre.learner_probabilities(x)
    for trees in (20, 40, 60, len(genre.rf.estimators_) if genre.rf is not None else 0):
        if genre.rf is None:
            break
        parts_k = {**parts, "rf": _first(genre.rf, trees).predict_proba(genre.clip(x))}
        m = classification_metrics(genre.combine(parts_k), genres, genre.classes)
        print(f"genre rf {trees} trees", m["accuracy"], m["top3_accuracy"])


if __name__ == "__main__":
    main()
