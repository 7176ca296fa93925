"""Fitting catalog priors (``popbatch.core.priors``) and making them honest on training rows.

- :func:`fit_table` counts each key's history in labelled rows: the table
  that ships in the model bundle (``priors.parquet``).
- :func:`native_features` turns rows into prior inputs with plain Python
  dictionaries, one row at a time: the definition the scorer's vectorised
  lookup (``batch/priors.py``) is proven equal to (export parity and tests);
  training itself uses the vectorised lookup (a 100k-row run would otherwise
  spend minutes in Python loops).
- :func:`out_of_fold_features` gives *training* rows their priors from tables
  fitted without their fold, so no row's own label reaches its prior. Folds
  group the rows of a ``track_id`` (a track's other genres leave with it);
  for a random share of primary artists (``artist_share``) all their rows form
  one group, so those rows see their artist as unseen, as a debut is: the
  models then learn what an unseen key means instead of trusting a prior that
  is always there.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from popbatch.core import files
from popbatch.core.priors import (
    CELL,
    KEY,
    LOG_FLOOR,
    PriorSpec,
    is_tail_feature,
    key_pairs,
)

COLUMN = "column"
#: the table's sufficient statistics per (column, key)
TABLE_SCHEMA = {
    COLUMN: pl.String,
    KEY: pl.String,
    "n": pl.Int64,
    "sum": pl.Float64,
    "popular": pl.Int64,
    "genre_index": pl.List(pl.Int32),
    "genre_count": pl.List(pl.Int64),
}
PRIOR_FOLDS = 5
#: share of primary artists whose rows leave a prior fold together (they look like debuts)
DEFAULT_ARTIST_SHARE = 0.25


@dataclass(frozen=True)
class Labels:
    """What a prior learns from, one entry per row."""

    track: np.ndarray  # track_id (object): a track counts once per key
    popularity: np.ndarray  # float64
    genre: np.ndarray | None  # int index into spec.genres, -1 = none
    popular_above: float = 71.0

    def take(self, rows: np.ndarray) -> Labels:
        genre = None if self.genre is None else self.genre[rows]
        return Labels(self.track[rows], self.popularity[rows], genre, self.popular_above)


def genre_indices(
    genres: list | np.ndarray | None, vocabulary: tuple[str, ...]
) -> np.ndarray | None:
    if genres is None:
        return None
    index = {g: i for i, g in enumerate(vocabulary)}
    return np.array([index.get(g, -1) for g in genres], np.int32)


def key_lists(frame: pl.DataFrame, column: str) -> pl.Series:
    """Each row's normalised keys of ``column`` (a list per row; empty = unknown)."""
    if column not in frame.columns:
        return pl.Series(column, [[]] * frame.height, pl.List(pl.String))
    pairs = key_pairs(frame[column], column)
    return pairs.group_by(CELL, maintain_order=True).agg(pl.col(KEY).drop_nulls())[KEY]


def track_means(labels: Labels) -> tuple[np.ndarray, np.ndarray]:
    """(each distinct track's mean popularity over its rows, each row's index into it):
    a track listed under several genres counts once. Added by numpy in row order, so
    the same rows give the same bits (a parallel group_by does not)."""
    _, index = np.unique(np.asarray(labels.track).astype(str), return_inverse=True)
    sums = np.bincount(index, weights=np.asarray(labels.popularity, np.float64))
    return sums / np.bincount(index), index


def fit_table(frame: pl.DataFrame, labels: Labels, spec: PriorSpec) -> pl.DataFrame:
    """Each key's history in ``frame``'s rows: distinct tracks ``n``, their summed
    (per-track mean) popularity, popular tracks and genre row counts (sparse),
    sorted by column and key (so the file's bytes are reproducible)."""
    parts = []
    genre = labels.genre if labels.genre is not None else np.full(frame.height, -1, np.int32)
    means, index = track_means(labels)
    for column in spec.columns:
        rows = (
            pl.DataFrame(
                {
                    KEY: key_lists(frame, column),
                    "t": labels.track.astype(str),
                    "y": means[index],
                    "g": genre,
                }
            )
            .explode(KEY)
            .drop_nulls(KEY)
        )
        # sorted, and summed group by group in that order: a parallel group_by adds a
        # key's floats in whatever order its threads meet them, and the table's bytes
        # moved by an ulp between identical trainings
        tracks = rows.group_by(KEY, "t").agg(pl.col("y").first()).sort(KEY, "t")
        stats = tracks.group_by(KEY, maintain_order=True).agg(
            pl.len().cast(pl.Int64).alias("n"),
            pl.col("y").sum().alias("sum"),
            (pl.col("y") > labels.popular_above).sum().cast(pl.Int64).alias("popular"),
        )
        counts = (
            rows.filter(pl.col("g") >= 0)
            .group_by(KEY, "g")
            .agg(pl.len().cast(pl.Int64).alias("c"))
            .sort(KEY, "g")
            .group_by(KEY, maintain_order=True)
            .agg(pl.col("g").cast(pl.Int32).alias("genre_index"), pl.col("c").alias("genre_count"))
        )
        table = stats.join(counts, on=KEY, how="left").with_columns(
            pl.col("genre_index").fill_null(pl.lit([], pl.List(pl.Int32))),
            pl.col("genre_count").fill_null(pl.lit([], pl.List(pl.Int64))),
            pl.lit(column).alias(COLUMN),
        )
        parts.append(table.select(list(TABLE_SCHEMA)))
    if not parts:
        return pl.DataFrame(schema=TABLE_SCHEMA)
    return pl.concat(parts).cast(TABLE_SCHEMA).sort(COLUMN, KEY)


def with_globals(spec: PriorSpec, labels: Labels) -> PriorSpec:
    """``spec`` with the global values of ``labels`` (what an unseen key falls back to):
    mean popularity and popular share over distinct tracks, genre shares over rows."""
    global_genre: tuple[float, ...] = ()
    if spec.genres and labels.genre is not None:
        known = labels.genre[labels.genre >= 0]
        counts = np.bincount(known, minlength=len(spec.genres)).astype(np.float64)
        global_genre = tuple(float(v) for v in counts / max(labels.genre.size, 1))
    per_track, _ = track_means(labels)
    return replace(
        spec,
        global_mean=float(per_track.mean()) if per_track.size else 0.0,
        global_share=float((per_track > labels.popular_above).mean()) if per_track.size else 0.0,
        global_genre=global_genre,
    )


def table_bytes(table: pl.DataFrame) -> bytes:
    """The table as Parquet bytes, the same bytes for the same table (no timestamps,
    fixed row groups and compression)."""
    sink = io.BytesIO()
    arrow = table.to_arrow().cast(
        pa.schema(
            [
                (COLUMN, pa.string()),
                (KEY, pa.string()),
                ("n", pa.int64()),
                ("sum", pa.float64()),
                ("popular", pa.int64()),
                ("genre_index", pa.list_(pa.int32())),
                ("genre_count", pa.list_(pa.int64())),
            ]
        )
    )
    pq.write_table(arrow, sink, compression="zstd", row_group_size=1 << 20, store_schema=False)
    return sink.getvalue()


def sealed(spec: PriorSpec, table: pl.DataFrame) -> tuple[PriorSpec, bytes]:
    """``spec`` with the sha256 of the table's Parquet bytes, and those bytes."""
    data = table_bytes(table)
    keys = {c: int((table[COLUMN] == c).sum()) for c in spec.columns}
    extra = {**dict(spec.extra), "keys": keys}
    return replace(spec, table_sha256=hashlib.sha256(data).hexdigest(), extra=extra), data


# ---------------------------------------------------------------- native lookup
def _history(table: pl.DataFrame, column: str) -> dict[str, tuple[int, float, int, dict[int, int]]]:
    rows = table.filter(pl.col(COLUMN) == column)
    return {
        key: (n, s, p, dict(zip(gi, gc, strict=True)))
        for key, n, s, p, gi, gc in zip(
            rows[KEY].to_list(),
            rows["n"].to_list(),
            rows["sum"].to_list(),
            rows["popular"].to_list(),
            rows["genre_index"].to_list(),
            rows["genre_count"].to_list(),
            strict=True,
        )
    }


def native_features(frame: pl.DataFrame, table: pl.DataFrame, spec: PriorSpec) -> np.ndarray:
    """[N, P] float32 prior inputs of ``frame``'s rows, in ``spec.feature_names()`` order.

    Plain Python per row and key (a dictionary lookup each): slow and obvious, the
    reference the scorer's vectorised lookup is proven equal to.
    """
    m = float(spec.smoothing)
    g_global = np.asarray(spec.global_genre, np.float64)
    blocks = []
    for column in spec.columns:
        history = _history(table, column)
        rows = []
        for keys in key_lists(frame, column).to_list():
            if spec.combine == "first":
                keys = keys[:1]
            known = [history[k] for k in keys if k in history]
            n = sum(h[0] for h in known)
            s = sum(h[1] for h in known)
            p = sum(h[2] for h in known)
            counts = np.zeros(len(spec.genres))
            for *_, genres in known:
                for index, count in genres.items():
                    counts[index] += count
            row: list[float] = []
            for statistic in spec.statistics:
                if statistic == "mean":
                    row.append((s + m * spec.global_mean) / (n + m))
                elif statistic == "share":
                    row.append((p + m * spec.global_share) / (n + m))
                elif statistic == "count":
                    row.append(float(np.log1p(n)))
                elif statistic == "max_mean":
                    means = [(h[1] + m * spec.global_mean) / (h[0] + m) for h in known]
                    row.append(max(means) if means else spec.global_mean)
                elif statistic == "genre":
                    row.extend((counts + m * g_global) / (counts.sum() + m))
                else:
                    share = (counts + m * g_global) / (counts.sum() + m)
                    row.extend(np.log(np.maximum(share, LOG_FLOOR)))
            rows.append(row)
        width = len(spec.feature_names()) // max(len(spec.columns), 1)
        blocks.append(np.asarray(rows, np.float64).reshape(frame.height, width))
    if not blocks:
        return np.zeros((frame.height, 0), np.float32)
    return np.hstack(blocks).astype(np.float32)


# ------------------------------------------------------------------ out of fold
def primary_keys(frame: pl.DataFrame, column: str = "artists") -> list[str | None]:
    """Each row's first normalised key of ``column`` (None when unknown)."""
    return [k[0] if k else None for k in key_lists(frame, column).to_list()]


def fold_ids(
    track: np.ndarray,
    primary_artist: list[str | None],
    k: int = PRIOR_FOLDS,
    artist_share: float = DEFAULT_ARTIST_SHARE,
    seed: int = 0,
    album: list[str | None] | None = None,
    album_share: float = 0.0,
) -> np.ndarray:
    """Each training row's prior fold: groups (a track; a whole primary artist for a
    random ``artist_share`` of artists; a whole album for a random ``album_share`` of the
    albums, so that training also sees new releases of known artists) spread over ``k``
    folds by a seeded permutation of the sorted groups (reproducible, independent of row
    order)."""
    rng = np.random.default_rng(seed)
    artists = sorted({a for a in primary_artist if a is not None})
    drawn = rng.random(len(artists)) < artist_share
    chosen = {a for a, d in zip(artists, drawn, strict=True) if d}
    albums: set[str] = set()
    if album is not None and album_share > 0:
        names = sorted({a for a in album if a is not None})
        albums = {a for a, d in zip(names, rng.random(len(names)) < album_share, strict=True) if d}
    album = album if album is not None else [None] * len(track)
    group = [
        ("a:" + a) if a in chosen else ("b:" + b) if b in albums else ("t:" + str(t))
        for a, b, t in zip(primary_artist, album, track, strict=True)
    ]
    unique = sorted(set(group))
    permutation = rng.permutation(len(unique))
    fold_of = {g: int(permutation[i] % k) for i, g in enumerate(unique)}
    return np.array([fold_of[g] for g in group], np.int64)


def out_of_fold_features(
    frame: pl.DataFrame,
    labels: Labels,
    spec: PriorSpec,
    seed: int = 0,
    k: int = PRIOR_FOLDS,
    artist_share: float = DEFAULT_ARTIST_SHARE,
    album_share: float = 0.0,
) -> np.ndarray:
    """[N, P] prior inputs of training rows, each from a table (and global values)
    fitted on the other folds of :func:`fold_ids` only: neither the row nor any row of
    its group (its track's other genres, its whole primary artist or album) reaches
    them."""
    album = primary_keys(frame, "album_name") if album_share > 0 else None
    folds = fold_ids(labels.track, primary_keys(frame), k, artist_share, seed, album, album_share)
    out = np.zeros((frame.height, len(spec.feature_names())), np.float32)
    for f in range(k):
        held = np.flatnonzero(folds == f)
        if held.size == 0:
            continue
        fit_rows = np.flatnonzero(folds != f)
        fit_labels = labels.take(fit_rows)
        fold_spec = with_globals(spec, fit_labels)
        table = fit_table(frame[fit_rows], fit_labels, fold_spec)
        out[held] = FittedPriors(fold_spec, table).features(frame[held])
    return out


# ------------------------------------------------------------ training recipe
@dataclass(frozen=True)
class PriorRecipe:
    """How ``popbatch train`` makes prior inputs (``--prior``, ``--no-priors``): the
    spec's parameters and the out-of-fold scheme. No columns: no priors."""

    columns: tuple[str, ...] = ()
    statistics: tuple[str, ...] = ("mean", "share", "count", "log_genre")
    smoothing: float = 5.0
    combine: str = "pooled"
    artist_share: float = DEFAULT_ARTIST_SHARE
    # albums grouped whole in the prior folds, so that training sees new releases of
    # known artists (an album never seen, its artist known) in realistic proportion
    album_share: float = 0.25
    folds: int = PRIOR_FOLDS
    ship_all_rows: bool = True

    def spec(self, genres: list[str] | tuple[str, ...] | None) -> PriorSpec:
        statistics = tuple(s for s in self.statistics if "genre" not in s or genres)
        return PriorSpec(
            columns=tuple(self.columns),
            statistics=statistics,
            smoothing=self.smoothing,
            combine=self.combine,
            genres=tuple(genres or ()) if {"genre", "log_genre"} & set(statistics) else (),
        )


def labels_of(frame: pl.DataFrame, spec: PriorSpec, popular_above: float) -> Labels:
    """A training frame's labels for priors (``models.data`` columns: track_id,
    popularity and the normalised genre when there is one)."""
    genre = frame["genre"].to_list() if "genre" in frame.columns and spec.genres else None
    return Labels(
        frame["track_id"].to_numpy().astype(object),
        frame["popularity"].to_numpy().astype(np.float64),
        genre_indices(genre, spec.genres),
        float(popular_above),
    )


@dataclass
class FittedPriors:
    """Priors fitted on some rows: the spec (with global values) and the table."""

    spec: PriorSpec
    table: pl.DataFrame

    def features(self, frame: pl.DataFrame) -> np.ndarray:
        """[N, P] prior inputs of ``frame``'s rows by the scorer's vectorised lookup,
        which export proves equal to :func:`native_features` (the plain definition)."""
        from popbatch.batch.priors import PriorLookup

        cells = {c: frame[c].to_arrow() if c in frame.columns else None for c in self.spec.columns}
        return PriorLookup(self.spec, self.table).features(cells, frame.height)

    def native(self, frame: pl.DataFrame) -> np.ndarray:
        """The plain-Python reference of :meth:`features`."""
        return native_features(frame, self.table, self.spec)


def fit_priors(frame: pl.DataFrame, spec: PriorSpec, popular_above: float) -> FittedPriors:
    """The table and global values of every row of ``frame`` (what a model ships)."""
    labels = labels_of(frame, spec, popular_above)
    spec = with_globals(spec, labels)
    return FittedPriors(spec, fit_table(frame, labels, spec))


def prior_inputs(
    fit: pl.DataFrame,
    others: list[pl.DataFrame],
    spec: PriorSpec,
    recipe: PriorRecipe,
    popular_above: float,
    seed: int,
) -> tuple[np.ndarray, list[np.ndarray], FittedPriors]:
    """Prior inputs of fitting rows (out of fold: :func:`out_of_fold_features`) and of
    ``others`` (from a table of all fitting rows), and that table."""
    labels = labels_of(fit, spec, popular_above)
    oof = out_of_fold_features(
        fit, labels, spec, seed, recipe.folds, recipe.artist_share, recipe.album_share
    )
    fitted = fit_priors(fit, spec, popular_above)
    return oof, [fitted.features(o) for o in others], fitted


def insert_priors(x: np.ndarray, block: np.ndarray, start: int, spec: PriorSpec) -> np.ndarray:
    """``x`` with the prior inputs ``block`` (:meth:`PriorSpec.feature_names` order) in
    their places (``popbatch.core.features.feature_names``): the lead ones as columns
    ``start..`` (after the audio features), the genre shares after everything."""
    names = spec.feature_names()
    lead = [names.index(n) for n in spec.lead_names()]
    tail = [names.index(n) for n in spec.tail_names()]
    block = np.asarray(block, np.float32)
    parts = [x[:, :start], block[:, lead], x[:, start:], block[:, tail]]
    return np.hstack(parts).astype(np.float32)


def unseen_copy(
    x: np.ndarray, names: list[str], column: str, rows: np.ndarray | None = None
) -> np.ndarray | None:
    """Rows ``x[rows]`` (default: all) as if their ``column`` key had never been
    labelled: its prior inputs set to what an unseen key gets (the values on the rows
    of ``x`` whose ``column:count`` is 0, the fallback of their out-of-fold table).
    None when ``x`` has no such inputs or no such rows.

    Why: a training row whose album is unseen out of fold is mostly a one-track album
    of the catalog, while at scoring an unseen album is also a whole new release (its
    artist's re-release, a compilation); a head trained on the rows alone learns the
    first and misjudges the second. Copies of training rows with the album unseen
    teach it both (docs/history.md, "New releases").
    """
    names = list(names)[: x.shape[1]]
    columns = [i for i, n in enumerate(names) if n.split(":", 1)[0] == column and ":" in n]
    count = f"{column}:count"
    if not columns or count not in names:
        return None
    unseen = x[:, names.index(count)] == 0
    if not unseen.any():
        return None
    copy = np.array(x if rows is None else x[rows], np.float32, copy=True)
    copy[:, columns] = x[unseen][:, columns].mean(axis=0)
    return copy


def with_unseen_copies(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    names: list[str],
    columns: tuple[str, ...],
    share: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The training rows and, per column of ``columns`` with prior inputs, a copy of a
    seeded random ``share`` of them with that key unseen (and the columns copied); a
    copy keeps its row's label and group (track_id), so the head's out-of-fold folds
    hold a row and its copies together. The popularity head and the popular stack
    both train on them (``unseen_copies`` of their parameters)."""
    groups = np.asarray(groups)
    xs, ys, gs, copied = [x], [y], [groups], []
    rng = np.random.default_rng(seed)
    for column in columns:
        rows = np.flatnonzero(rng.random(len(y)) < share)
        copy = unseen_copy(x, names, column, rows) if rows.size else None
        if copy is not None:
            xs.append(copy)
            ys.append(y[rows])
            gs.append(groups[rows])
            copied.append(column)
    if not copied:  # the rows themselves, not a copy of a 100 MB matrix
        return x, y, groups, copied
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(gs), copied


def shared_width(names: list[str]) -> int:
    """How many leading inputs the popular stack and the popularity head read: all but
    the priors' genre shares at the end."""
    return len(names) - sum(1 for n in names if is_tail_feature(n))


SPEC_FILE = "priors.json"


def save(directory: Path, fitted: FittedPriors) -> PriorSpec:
    """Write the table (``priors.parquet``) and its spec (``priors.json``, with the
    table's sha256) into a stack directory; returns the sealed spec."""
    spec, data = sealed(fitted.spec, fitted.table)
    directory = Path(directory)
    files.write_atomically(directory / spec.table_file, data)
    files.write_atomically(directory / SPEC_FILE, json.dumps(spec.to_manifest(), indent=2))
    return spec


def load(directory: Path) -> FittedPriors | None:
    """A stack directory's priors, or None for a stack trained without them."""
    path = Path(directory) / SPEC_FILE
    if not path.exists():
        return None
    spec = PriorSpec.from_manifest(json.loads(path.read_text(encoding="utf-8")))
    table = pl.read_parquet(Path(directory) / spec.table_file)
    return FittedPriors(spec, table)


@dataclass
class FoldPriors:
    """What a cross-validation fold needs to make its own priors: the rows' catalog
    columns (``frame``, row for row with the fold's matrix), the spec and the recipe."""

    frame: pl.DataFrame
    spec: PriorSpec
    recipe: PriorRecipe
    popular_above: float
    start: int

    def matrix(
        self,
        x: np.ndarray,
        names: list[str],
        fit: np.ndarray,
        others: np.ndarray,
        seed: int,
    ) -> tuple[np.ndarray, list[str]]:
        """``x`` with prior inputs for rows ``fit`` (out of fold among themselves) and
        ``others`` (from a table of the ``fit`` rows); other rows get zeros."""
        oof, (rest,), _ = prior_inputs(
            self.frame[fit], [self.frame[others]], self.spec, self.recipe,
            self.popular_above, seed,
        )  # fmt: skip
        block = np.zeros((len(x), oof.shape[1]), np.float32)
        block[fit], block[others] = oof, rest
        full = insert_priors(x, block, self.start, self.spec)
        spec = self.spec
        return full, [*names[: self.start], *spec.lead_names(), *names[self.start :],
                      *spec.tail_names()]  # fmt: skip


def evaluation_groups(frame: pl.DataFrame, groups: np.ndarray) -> dict[str, np.ndarray]:
    """What each honest evaluation keeps together in a fold: ``known`` (the catalog's
    own tracks: track_id), ``new_release`` (album) and ``debut`` (primary artist); a
    row without an album or artist is its own track's group."""
    track = np.asarray(groups, dtype=object)
    album = np.asarray([k[0] if k else None for k in key_lists(frame, "album_name").to_list()],
                       dtype=object)  # fmt: skip
    artist = np.asarray(primary_keys(frame), dtype=object)

    def grouped(keys: np.ndarray, prefix: str) -> np.ndarray:
        # a row without the key is its own track's group (plain Python: numpy 1 cannot
        # add string arrays)
        pairs = zip(keys, track, strict=True)
        return np.array([f"t:{t}" if k is None else f"{prefix}:{k}" for k, t in pairs])

    return {"known": track, "new_release": grouped(album, "a"), "debut": grouped(artist, "p")}
