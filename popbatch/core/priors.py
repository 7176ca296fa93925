"""Catalog priors: what a model knows of a track's artists and album from its training rows.

A *prior column* is a text column of the catalog (``artists``, ``album_name``)
whose values are keys. For each key the labelled training rows give its
history: how many distinct tracks it has (``n``; a track listed under several
genres counts once, at its mean popularity), their summed popularity, how many
of them are popular, and how many rows fall in each genre. A model with priors
reads, per row and prior column, numbers made from that history, smoothed
towards the global values with strength ``m`` (pseudo-tracks):

=============  ==============================================================
``mean``       ``(S + m * global_mean) / (N + m)``: smoothed mean popularity
``share``      ``(P + m * global_share) / (N + m)``: smoothed share popular
``count``      ``log1p(N)``: how much history there is (0: never seen)
``max_mean``   the largest smoothed mean of the row's single keys (the best
               known artist of a collaboration); the global mean if none is known
``genre``      ``(C_g + m * global_genre_g) / (C + m)``: smoothed genre
               distribution, one column per training genre
``log_genre``  ``log(max(genre_g, LOG_FLOOR))``: the same, as logs (what the
               genre head reads; worked out once per distinct cell here
               instead of once per row in the graph)
=============  ==============================================================

A multi-valued column (``artists``: ``;``-separated) is split; each distinct
key of a row counts. With ``combine = "pooled"`` the known keys' histories are
summed (``N``, ``S``, ``P``, ``C`` over them, as if one key); with ``"first"``
only the first key counts. A key never seen in training adds nothing, so a row
whose keys are all unseen gets the global values with count 0.

This module is the one definition of key normalisation (:func:`key_pairs`) and
of the feature names and their order, for training (``models/priors.py``), the
scorer (``batch/priors.py``) and the manifest, which carries a :class:`PriorSpec`
as ``priors`` (covered by ``model_id``, as is the table file's sha256).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from popbatch.core import train_defaults

DEFAULT_PRIOR_COLUMNS = train_defaults.PRIOR_COLUMNS
#: columns whose cells hold several keys, and the separator
MULTI_VALUED = {"artists": ";"}
STATISTICS = ("mean", "share", "count", "max_mean", "genre", "log_genre")
#: a genre share is logged as log(max(share, LOG_FLOOR)): a genre no labelled row of a
#: (tiny) training set had has share 0
LOG_FLOOR = 1e-6
COMBINE_RULES = ("pooled", "first")
TABLE_FILE = "priors.parquet"
#: names in the manifest's feature list: ``artists:mean``, ``album_name:genre=pop``
FEATURE_KIND = "prior"


CELL = "cell"
KEY = "key"


def key_text(expr: pl.Expr) -> pl.Expr:
    """Text as priors compare it: Unicode NFKC (full-width and composed forms fold
    together) and lower case; :func:`key_pairs` strips each key."""
    return expr.cast(pl.String).str.normalize("NFKC").str.to_lowercase()


def key_pairs(values: pl.Series, column: str) -> pl.DataFrame:
    """Each cell's normalised keys as rows ``(cell, key)``, in cell order.

    A multi-valued column (:data:`MULTI_VALUED`) is split; parts are stripped,
    empty parts dropped and a repeated key counted once per cell (first kept). Its
    cells may also be written as a list, ``['A', "B's"]`` (as the Spotify 1921-2020
    dataset's are): the quoted items are its keys. A cell without any key (null,
    empty, only separators, ``[]``) gets one row with a null key: the unseen key.
    Training and scoring both read keys through this.
    """
    sep = MULTI_VALUED.get(column)
    text = key_text(pl.col(KEY))
    if sep:
        text = _list_items_separated(text, sep)
    frame = pl.DataFrame({KEY: values.cast(pl.String)}).with_row_index(CELL)
    frame = frame.with_columns((text.str.split(sep) if sep else pl.concat_list(text)).alias(KEY))
    # an empty list becomes a null one, which explodes to one null row in every polars
    # (polars 1 did so for an empty list too; polars 2 drops it unless empty_as_null)
    lists = pl.col(KEY)
    frame = frame.with_columns(pl.when(lists.list.len() > 0).then(lists).alias(KEY))
    pairs = frame.explode(KEY).with_columns(pl.col(KEY).str.strip_chars().replace("", None))
    pairs = pairs.unique([CELL, KEY], keep="first", maintain_order=True)
    # a cell with keys loses its null parts; one without keeps a single null
    has_key = pl.col(KEY).is_not_null().any().over(CELL)
    pairs = pairs.filter(pl.col(KEY).is_not_null() | ~has_key)
    return pairs.with_columns(pl.col(CELL).cast(pl.Int64))


_LIST_OPEN = r"^\s*\[\s*['\"]"  # [' or ["
_LIST_CLOSE = r"['\"]\s*\]\s*$"  # '] or "]
_LIST_BETWEEN = r"['\"]\s*,\s*['\"]"  # ', ' and its variants
_EMPTY_LIST = r"^\s*\[\s*\]\s*$"


def _list_items_separated(text: pl.Expr, sep: str) -> pl.Expr:
    """A cell written as a list of quoted names, ``['a', "b's"]``, as ``a<sep>b's``;
    any other cell as it is (``[alexandros]`` is an artist's name)."""
    quoted_list = text.str.contains(_LIST_OPEN) & text.str.contains(_LIST_CLOSE)
    items = (
        text.str.replace(_LIST_OPEN, "")
        .str.replace(_LIST_CLOSE, "")
        .str.replace_all(_LIST_BETWEEN, sep)
    )
    empty_list = text.str.contains(_EMPTY_LIST)
    return pl.when(quoted_list).then(items).when(empty_list).then(pl.lit("")).otherwise(text)


@dataclass(frozen=True)
class PriorSpec:
    """How prior features are made: the recipe's parameters, as the manifest stores them.

    ``genres`` is the genre vocabulary of the ``genre`` statistic (the training
    genres, in the genre head's class order); ``global_*`` are the training
    rows' values an unseen key falls back to.
    """

    columns: tuple[str, ...] = DEFAULT_PRIOR_COLUMNS
    statistics: tuple[str, ...] = ("mean", "share", "count")
    smoothing: float = 5.0
    combine: str = "pooled"
    genres: tuple[str, ...] = ()
    global_mean: float = 0.0
    global_share: float = 0.0
    global_genre: tuple[float, ...] = ()
    table_file: str = TABLE_FILE
    table_sha256: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Descriptive facts (keys per column, training rows): not part of the contract."""

    def __post_init__(self) -> None:
        unknown = [s for s in self.statistics if s not in STATISTICS]
        if unknown:
            raise ValueError(f"unknown prior statistic {unknown}; choose from {STATISTICS}")
        if self.combine not in COMBINE_RULES:
            raise ValueError(f"unknown combine rule {self.combine!r}; choose {COMBINE_RULES}")

    def feature_names(self) -> list[str]:
        """The prior inputs as the lookup makes them: per column, per statistic."""
        return [name for column in self.columns for name in column_feature_names(self, column)]

    def lead_names(self) -> list[str]:
        """The inputs every head reads, right after the audio features (all but the
        genre shares)."""
        return [n for n in self.feature_names() if not is_tail_feature(n)]

    def tail_names(self) -> list[str]:
        """The genre shares: the last inputs, after the genre one-hot block, read by the
        genre head only (the other heads' graphs drop them first: they are wide)."""
        return [n for n in self.feature_names() if is_tail_feature(n)]

    def to_manifest(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("columns", "statistics", "genres", "global_genre"):
            data[key] = list(data[key])
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_manifest(cls, data: Mapping[str, Any]) -> PriorSpec:
        data = dict(data)
        for key in ("columns", "statistics", "genres", "global_genre"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)


def column_feature_names(spec: PriorSpec, column: str) -> list[str]:
    names = []
    for statistic in spec.statistics:
        if statistic in ("genre", "log_genre"):
            names += [f"{column}:{statistic}={g}" for g in spec.genres]
        else:
            names.append(f"{column}:{statistic}")
    return names


_STATISTIC_TEXT = {
    "mean": "smoothed mean popularity of the key's labelled tracks",
    "share": "smoothed share of popular tracks among the key's labelled tracks",
    "count": "log1p of the key's labelled tracks (0: never seen in training)",
    "max_mean": "largest smoothed mean popularity among the row's keys",
}


def describe_statistic(statistic: str) -> str:
    """One line on what a prior input means, for the manifest."""
    if statistic.startswith("genre="):
        return f"smoothed share of the key's labelled rows in genre {statistic[6:]}"
    if statistic.startswith("log_genre="):
        return f"log of the smoothed share of the key's labelled rows in genre {statistic[10:]}"
    return _STATISTIC_TEXT.get(statistic, statistic)


def is_tail_feature(name: str) -> bool:
    """A prior genre share (``artists:genre=pop``, ``artists:log_genre=pop``): an input
    after the one-hot block."""
    return ":genre=" in name or ":log_genre=" in name


def is_prior_feature(name: str) -> bool:
    return ":" in name and name.split(":", 1)[0] != "genre"


def describe(name: str, value: float) -> str:
    """A prior input's value in words, for explanations: ``artist history: mean
    popularity 64``; ``count`` is shown as tracks (the input is ``log1p``)."""
    import math

    column, _, statistic = name.partition(":")
    who = {"artists": "artist", "album_name": "album"}.get(column, column)
    if statistic == "mean":
        return f"{who} history: mean popularity {value:.0f}"
    if statistic == "share":
        return f"{who} history: {100 * value:.0f}% popular"
    if statistic == "count":
        tracks = round(math.expm1(value))
        return f"{who} history: {tracks} tracks" if tracks else f"{who} history: never seen"
    if statistic == "max_mean":
        return f"{who} history: best mean popularity {value:.0f}"
    if statistic.startswith("log_genre="):
        return f"{who} history: genre {statistic[10:]} share {math.exp(value):.2f}"
    return f"{who} history: {statistic.replace('genre=', 'genre ')} share {value:.2f}"


def fill_hint(columns: Sequence[str]) -> str:
    """How to score a catalog that lacks prior columns, for one-line errors."""
    first = columns[0]
    return (
        f"name the column with --map {first}=COLUMN, or pass --fill {first}= "
        "(empty: every key unknown, the model then uses only what it knows of the audio)"
    )
