"""Catalog priors: honest out of fold, unseen and multi-valued keys, the scorer's lookup
equal to the plain-Python reference (tests/data/tracks_priors.csv: real rows whose
artists and albums repeat, see tests/data/ATTRIBUTION.md)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from conftest import DATA
from popbatch.batch.priors import PriorLookup
from popbatch.models import priors as mp

from popbatch.core.priors import PriorSpec, key_pairs

TRACKS_PRIORS = DATA / "tracks_priors.csv"
STATS = ("mean", "share", "count", "max_mean", "genre", "log_genre")


@pytest.fixture(scope="module")
def rows() -> pl.DataFrame:
    return pl.read_csv(TRACKS_PRIORS, infer_schema=False).with_columns(
        pl.col("popularity").cast(pl.Float64)
    )


def labels_of(frame: pl.DataFrame, genres: tuple[str, ...]) -> mp.Labels:
    return mp.Labels(
        frame["track_id"].to_numpy(),
        frame["popularity"].to_numpy().astype(np.float64),
        mp.genre_indices(frame["track_genre"].to_list(), genres),
    )


@pytest.fixture(scope="module")
def fitted(rows):
    genres = tuple(sorted(rows["track_genre"].unique().to_list()))
    labels = labels_of(rows, genres)
    spec = mp.with_globals(PriorSpec(statistics=STATS, genres=genres), labels)
    return spec, mp.fit_table(rows, labels, spec), labels


def features(spec, table, artists, albums):
    frame = pl.DataFrame(
        {"artists": artists, "album_name": albums},
        schema=[("artists", pl.String), ("album_name", pl.String)],
    )
    return mp.native_features(frame, table, spec), frame


def column(spec, name):
    return spec.feature_names().index(name)


def test_out_of_fold_priors_never_see_the_rows_own_label(rows):
    """Raising one row's popularity (and its track's other genre rows: they leave the
    fold together) must leave that row's priors as they were; a prior fitted with
    the row in it moves."""
    genres = tuple(sorted(rows["track_genre"].unique().to_list()))
    spec = PriorSpec(statistics=STATS, genres=genres)
    labels = labels_of(rows, genres)
    before = mp.out_of_fold_features(rows, labels, spec, seed=3)
    # rows whose artist has other tracks: their priors would move if their label leaked
    counts = rows.group_by("artists").len()
    repeated = set(counts.filter(pl.col("len") >= 5)["artists"].to_list())
    picked = [i for i, a in enumerate(rows["artists"].to_list()) if a in repeated][::97][:6]
    assert len(picked) >= 4
    for i in picked:
        popularity = labels.popularity.copy()
        genre = labels.genre.copy()
        same_track = labels.track == labels.track[i]
        popularity[same_track] = 100.0 if popularity[i] < 50 else 0.0
        genre[same_track] = (genre[i] + 1) % len(genres)
        changed = mp.Labels(labels.track, popularity, genre)
        after = mp.out_of_fold_features(rows, changed, spec, seed=3)
        np.testing.assert_array_equal(after[i], before[i])
        # the same change does reach a prior fitted on all rows (the test can see a leak)
        full = mp.fit_table(rows, changed, spec)
        leaky = mp.native_features(rows[[i]], full, mp.with_globals(spec, changed))
        assert np.abs(leaky[0] - before[i]).max() > 1e-3


def test_some_training_rows_see_their_artist_as_unseen(rows):
    """The fold scheme groups a share of primary artists whole, so their rows' artist
    prior is the unseen key's (count 0): training sees debuts."""
    spec = PriorSpec(statistics=("mean", "count"))
    labels = labels_of(rows, ())
    repeated = rows.group_by("artists").len().filter(pl.col("len") >= 5)["artists"]
    mask = rows["artists"].is_in(repeated.implode()).to_numpy()
    count = column(spec, "artists:count")
    none = mp.out_of_fold_features(rows, labels, spec, seed=1, artist_share=0.0)[:, count]
    some = mp.out_of_fold_features(rows, labels, spec, seed=1, artist_share=0.25)[:, count]
    assert (none[mask] == 0).mean() < 0.02
    assert 0.1 < (some[mask] == 0).mean() < 0.5


def test_an_unseen_copy_gives_rows_the_unseen_albums_inputs_and_keeps_the_rest(rows):
    """The popularity head's extra training rows (new releases): each row's album
    inputs become the unseen album's (those of the out-of-fold rows whose album count
    is 0: the fold's globals), everything else stays."""
    genres = tuple(sorted(rows["track_genre"].unique().to_list()))
    spec = PriorSpec(statistics=("mean", "share", "count", "log_genre"), genres=genres)
    x = mp.out_of_fold_features(rows, labels_of(rows, genres), spec, seed=2)
    names = spec.feature_names()
    album = [i for i, n in enumerate(names) if n.startswith("album_name:")]
    others = [i for i in range(len(names)) if i not in album]
    unseen = x[:, column(spec, "album_name:count")] == 0
    assert 0 < unseen.mean() < 1
    copy = mp.unseen_copy(x, names, "album_name")
    assert (copy[:, column(spec, "album_name:count")] == 0).all()
    unseen_values = x[unseen][:, album].mean(axis=0)
    np.testing.assert_allclose(copy[:, album], np.broadcast_to(unseen_values, copy[:, album].shape))
    np.testing.assert_array_equal(copy[:, others], x[:, others])
    # the unseen rows' values are the fold globals: close to what a fitted table gives
    mean = column(spec, "album_name:mean")
    assert abs(copy[0, mean] - mp.with_globals(spec, labels_of(rows, genres)).global_mean) < 2
    # a subset of rows gets the same values (the unseen values come from every row)
    some = np.arange(0, len(x), 3)
    np.testing.assert_array_equal(mp.unseen_copy(x, names, "album_name", some), copy[some])
    # no such inputs, or no unseen row: no copy
    assert mp.unseen_copy(x, names, "composer") is None
    assert mp.unseen_copy(x[~unseen], names, "album_name") is None


def test_unseen_copies_copy_a_seeded_share_of_rows_with_their_labels_and_tracks(rows):
    spec = PriorSpec(statistics=("mean", "count"))
    x = mp.out_of_fold_features(rows, labels_of(rows, ()), spec, seed=2)
    y = np.arange(len(x), dtype=np.float64)
    groups = rows["track_id"].to_numpy()
    names = spec.feature_names()
    xs, ys, gs, copied = mp.with_unseen_copies(x, y, groups, names, ("album_name",), 0.25, 7)
    assert copied == ["album_name"]
    extra = len(ys) - len(y)
    assert 0.2 * len(y) < extra < 0.3 * len(y)
    picked = ys[len(y) :].astype(int)  # each copy's label names its row
    np.testing.assert_array_equal(gs[len(y) :], groups[picked])
    np.testing.assert_array_equal(xs[len(y) :, 0], x[picked, 0])  # the artist's inputs
    assert (xs[len(y) :, names.index("album_name:count")] == 0).all()
    again = mp.with_unseen_copies(x, y, groups, names, ("album_name",), 0.25, 7)
    np.testing.assert_array_equal(again[1], ys)
    assert len(mp.with_unseen_copies(x, y, groups, names, (), 0.25, 7)[1]) == len(y)


def test_unseen_and_missing_keys_get_the_global_values_with_count_zero(fitted):
    spec, table, _ = fitted
    x, _ = features(
        spec, table, ["Nobody Ever Heard Of", None, "", " ; "], [None, "", "x y z", None]
    )
    for name, value in (
        ("artists:mean", spec.global_mean),
        ("artists:share", spec.global_share),
        ("artists:count", 0.0),
        ("artists:max_mean", spec.global_mean),
        ("album_name:mean", spec.global_mean),
        ("album_name:count", 0.0),
    ):
        np.testing.assert_allclose(x[:, column(spec, name)], value, rtol=1e-6)
    first_genre = column(spec, f"artists:genre={spec.genres[0]}")
    np.testing.assert_allclose(x[:, first_genre], spec.global_genre[0], rtol=1e-5)


def test_several_artists_pool_their_history(fitted, rows):
    spec, table, _ = fitted
    artists = table.filter(pl.col("column") == "artists").sort("n", descending=True)
    (a, na, sa), (b, nb, sb) = artists.select("key", "n", "sum").rows()[:2]
    m = spec.smoothing
    x, _ = features(
        spec, table, [f"{a};{b}", f"{b} ;{a}", f"{a};{a}", f"{a};Unheard Artist", a], [None] * 5
    )
    mean, count = column(spec, "artists:mean"), column(spec, "artists:count")
    best = column(spec, "artists:max_mean")
    pooled = (sa + sb + m * spec.global_mean) / (na + nb + m)
    np.testing.assert_allclose(x[:2, mean], pooled, rtol=1e-6)
    np.testing.assert_allclose(x[:2, count], np.log1p(na + nb), rtol=1e-6)
    alone = (sa + m * spec.global_mean) / (na + m)
    best_of_two = max(alone, (sb + m * spec.global_mean) / (nb + m))
    np.testing.assert_allclose(x[:2, best], best_of_two, rtol=1e-6)
    # a repeated artist counts once, and an unseen one adds nothing
    np.testing.assert_allclose(x[2:, mean], alone, rtol=1e-6)
    np.testing.assert_allclose(x[2:, count], np.log1p(na), rtol=1e-6)


def test_keys_fold_case_spaces_and_unicode_forms():
    values = pl.Series(
        ["  BEYONCÉ ; Jay-Z", "beyoncé;jay-z;", "Ｂeyoncé", "Beyonce\u0301", None, ";"]
    )
    keys = key_pairs(values, "artists").group_by("cell", maintain_order=True).agg("key")
    assert keys["key"].to_list() == [
        ["beyoncé", "jay-z"],
        ["beyoncé", "jay-z"],
        ["beyoncé"],
        ["beyoncé"],
        [None],
        [None],
    ]
    # an album name is one key, separators and all
    album = key_pairs(pl.Series(["A;B "]), "album_name")["key"].to_list()
    assert album == ["a;b"]


@pytest.mark.parametrize("combine", ["pooled", "first"])
def test_scorer_lookup_equals_the_python_reference(rows, combine, monkeypatch):
    # gathered a few rows at a time: several slices and a partial last one
    monkeypatch.setattr(PriorLookup, "GATHER_ROWS", 7)
    genres = tuple(sorted(rows["track_genre"].unique().to_list()))
    train, rest = rows[:900], rows[900:]
    labels = labels_of(train, genres)
    spec = mp.with_globals(PriorSpec(statistics=STATS, genres=genres, combine=combine), labels)
    table = mp.fit_table(train, labels, spec)
    odd = pl.DataFrame(
        {
            "artists": ["  " + a.upper() + " ;Unheard" for a in train["artists"].head(5).to_list()]
            + [None, "", ";;", "Ｔest"],
            "album_name": [a.lower() + "  " for a in train["album_name"].head(5).to_list()]
            + ["", None, "x", "Ｔest"],
        }
    )
    frame = pl.concat([rest.select("artists", "album_name"), odd])
    reference = mp.native_features(frame, table, spec)
    lookup = PriorLookup(spec, table).features(
        {c: frame[c].to_arrow() for c in spec.columns}, frame.height
    )
    np.testing.assert_array_equal(lookup, reference)
    # the variants found their keys (not the unseen key's zero count)
    assert (reference[-9:-4, column(spec, "album_name:count")] > 0).all()


def test_table_bytes_are_reproducible(fitted):
    spec, table, _ = fitted
    one = mp.sealed(spec, table)
    two = mp.sealed(spec, table.sample(fraction=1.0, shuffle=True, seed=5).sort("column", "key"))
    assert one[1] == two[1] and one[0].table_sha256 == two[0].table_sha256


def test_cross_validation_folds_make_priors_without_held_out_labels(rows):
    """Inside CV a fold fits its tables on its training rows only: changing every
    held-out row's label changes no row's priors (and changing a training row's does)."""
    from popbatch.models.data import load_training_data
    from popbatch.models.priors import FoldPriors, PriorRecipe

    data = load_training_data(TRACKS_PRIORS, prior_columns=("artists", "album_name"))
    frame = data.frame
    genres = sorted(frame["genre"].unique().to_list())
    recipe = PriorRecipe(("artists", "album_name"), ("mean", "share", "count", "genre"))
    spec = recipe.spec(genres)
    x = np.zeros((frame.height, 14), np.float32)
    names = [f"n{i}" for i in range(14)]
    groups = frame["track_id"].to_numpy()
    held = np.isin(groups, np.unique(groups)[::4])
    fit, others = np.flatnonzero(~held), np.flatnonzero(held)

    def matrix(popularity):
        changed = frame.with_columns(pl.Series("popularity", popularity))
        plan = FoldPriors(changed, spec, recipe, 71, 14)
        return plan.matrix(x, names, fit, others, seed=5)[0]

    base = frame["popularity"].to_numpy().copy()
    before = matrix(base)
    flipped = base.copy()
    flipped[held] = 100.0 - flipped[held]
    np.testing.assert_array_equal(matrix(flipped), before)
    moved = base.copy()
    moved[~held] = 100.0 - moved[~held]
    assert not np.array_equal(matrix(moved)[others], before[others])


def test_the_honest_evaluations_keep_albums_and_artists_on_one_side(rows):
    """new_release folds never split an album, debut folds never split a primary artist
    (so every held-out artist is unseen by the fold's priors and models); known folds
    keep a track's genre rows together."""
    from popbatch.models.priors import evaluation_groups, key_lists, primary_keys
    from popbatch.models.split import grouped_folds

    groups = rows["track_id"].to_numpy()
    y = (rows["popularity"].to_numpy() > 71).astype(np.int64)
    cut = evaluation_groups(rows, groups)
    album = [k[0] if k else None for k in key_lists(rows, "album_name").to_list()]
    artist = primary_keys(rows)
    for evaluation, keys in (("known", groups), ("new_release", album), ("debut", artist)):
        for fit, held in grouped_folds(cut[evaluation], y, 3, seed=2):
            seen = {keys[i] for i in fit} - {None}
            assert not seen & {keys[i] for i in held}, evaluation
    # and they are different cuts: the debut folds are coarser than the known ones
    assert len(set(cut["debut"])) < len(set(cut["new_release"])) < len(set(cut["known"]))


def test_album_share_makes_training_rows_see_new_releases_of_known_artists(rows):
    spec = PriorSpec(statistics=("count",))
    labels = labels_of(rows, ())
    album, artist = column(spec, "album_name:count"), column(spec, "artists:count")
    none = mp.out_of_fold_features(rows, labels, spec, seed=1, artist_share=0.0)
    some = mp.out_of_fold_features(rows, labels, spec, 1, artist_share=0.0, album_share=0.5)
    repeated = (
        rows["album_name"]
        .is_in(rows.group_by("album_name").len().filter(pl.col("len") >= 3)["album_name"].implode())
        .to_numpy()
    )
    unseen_album = some[:, album] == 0
    assert (unseen_album[repeated]).mean() > (none[:, album] == 0)[repeated].mean() + 0.2
    # ... while their artist stays known more often than not
    assert (some[unseen_album & repeated, artist] > 0).mean() > 0.5


def test_artists_written_as_a_list_of_quoted_names_are_split():
    values = pl.Series(
        ["['Alesso', 'Zara Larsson']", "[\"Guns N' Roses\", 'Slash']", " [ 'X' ,\"Y\" ] ",
         "['Solo']", "[]", "[Alexandros]"]
    )  # fmt: skip
    keys = key_pairs(values, "artists").group_by("cell", maintain_order=True).agg("key")
    assert keys["key"].to_list() == [
        ["alesso", "zara larsson"],
        ["guns n' roses", "slash"],
        ["x", "y"],
        ["solo"],
        [None],  # an empty list: no artist known
        ["[alexandros]"],  # brackets without quotes: an artist's name
    ]
    # only the artists column holds several keys; an album name stays one key
    assert key_pairs(pl.Series(["['A', 'B']"]), "album_name")["key"].to_list() == ["['a', 'b']"]
