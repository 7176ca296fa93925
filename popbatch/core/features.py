"""The one definition of popbatch's input features and column names.

Training, export and scoring all read this module (scoring reads it through
the manifest that export writes from it), so a feature is added or a range
changed in exactly one place.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from popbatch.core import train_defaults
from popbatch.core.errors import InputError, SchemaError

LABEL_COLUMN = "popularity"
KEY_COLUMN = "track_id"
GENRE_COLUMN = "track_genre"
OTHER_GENRE = "__other__"
# Defined with the other training defaults: plain constants that popbatch train --help
# reads without importing polars.
DEFAULT_POPULAR_ABOVE = train_defaults.DEFAULT_POPULAR_ABOVE


@dataclass(frozen=True)
class NumericFeature:
    """A numeric model input and the range of values that can be real.

    ``valid_min``/``valid_max`` bound what the audio analysis can produce
    (danceability is a share, durations are not negative); a value outside
    is a data error, not an unusual track. ``None`` means unbounded.
    """

    name: str
    valid_min: float | None
    valid_max: float | None
    description: str


# Order matters: it is the column order of the model's input matrix.
NUMERIC_FEATURES: tuple[NumericFeature, ...] = (
    NumericFeature("duration_ms", 0, None, "track length in milliseconds"),
    NumericFeature("explicit", 0, 1, "1 if the track has explicit lyrics"),
    NumericFeature("danceability", 0, 1, "how suitable for dancing, 0 to 1"),
    NumericFeature("energy", 0, 1, "perceived intensity, 0 to 1"),
    NumericFeature("key", -1, 11, "pitch class, -1 when no key was detected"),
    NumericFeature("loudness", -100, 10, "average loudness in dB"),
    NumericFeature("mode", 0, 1, "1 major, 0 minor"),
    NumericFeature("speechiness", 0, 1, "presence of spoken words, 0 to 1"),
    NumericFeature("acousticness", 0, 1, "confidence the track is acoustic, 0 to 1"),
    NumericFeature("instrumentalness", 0, 1, "likelihood of no vocals, 0 to 1"),
    NumericFeature("liveness", 0, 1, "presence of an audience, 0 to 1"),
    NumericFeature("valence", 0, 1, "musical positiveness, 0 to 1"),
    NumericFeature("tempo", 0, 1000, "beats per minute"),
    NumericFeature("time_signature", 0, 11, "beats per bar"),
)
NUMERIC_FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in NUMERIC_FEATURES)

_TRUE_WORDS = ("true", "1", "1.0")
_FALSE_WORDS = ("false", "0", "0.0")


def onehot_name(genre: str) -> str:
    """The model-input name of a genre's one-hot column."""
    return f"genre={genre}"


def feature_names(
    genres: Iterable[str] | None, priors: Iterable[str] = (), tail: Iterable[str] = ()
) -> list[str]:
    """Model input names in order: numeric features, the catalog priors' inputs
    (``artists:mean``, ...: :meth:`popbatch.core.priors.PriorSpec.lead_names`), the
    one-hot genres and "other", then the priors' genre shares (``tail``: read by the
    genre head only).

    ``genres`` is the training vocabulary, or ``None`` for a model trained
    without genre (``--no-genre``).
    """
    names = [*NUMERIC_FEATURE_NAMES, *priors]
    if genres is not None:
        names += [onehot_name(g) for g in genres] + [onehot_name(OTHER_GENRE)]
    return [*names, *tail]


_NON_WORD = re.compile(r"[^0-9a-zA-Z]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def normalize_column_name(name: str) -> str:
    """Turn a header into snake_case: ``"Duration (ms)"`` -> ``"duration_ms"``.

    ``"Track ID"`` -> ``"track_id"``, ``"trackGenre"`` -> ``"track_genre"``,
    ``"Unnamed: 0"`` -> ``"unnamed_0"``. A UTF-8 byte-order mark is dropped.
    """
    name = name.lstrip("\ufeff").strip()
    name = _CAMEL.sub("_", name)
    return _NON_WORD.sub("_", name).strip("_").lower()


def normalized_names(names: Iterable[str], source: str = "input") -> dict[str, str]:
    """Map each original column name to its normalised name.

    Raises
    ------
    SchemaError
        If two columns normalise to the same name (``"Track ID"`` and
        ``"track_id"``): which one to use would be a guess.
    """
    mapping: dict[str, str] = {}
    seen: dict[str, str] = {}
    for original in names:
        new = normalize_column_name(original)
        if new in seen:
            raise SchemaError(
                f"{source}: columns {seen[new]!r} and {original!r} both normalise to "
                f"{new!r}; rename or drop one of them"
            )
        seen[new] = original
        mapping[original] = new
    return mapping


def resolve_columns(
    names: Sequence[str], maps: Mapping[str, str] | None = None, source: str = "input"
) -> dict[str, str]:
    """Original column name -> the name popbatch uses: normalised, then ``--map NEW=OLD``.

    The one place scoring, drift and training turn an input's header into model
    column names, so ``--map`` means the same in every command.

    >>> resolve_columns(["Track ID", "Genre"], {"track_genre": "Genre"})
    {'Track ID': 'track_id', 'Genre': 'track_genre'}

    Raises
    ------
    InputError
        A ``--map`` names a column the input does not have.
    SchemaError
        Two columns would end up with one name (fix ``--map`` or drop one).
    """
    final = dict(normalized_names(names, source))
    for new, old in (maps or {}).items():
        new = normalize_column_name(new)
        hits = [o for o in names if o == old or final[o] == normalize_column_name(old)]
        if not hits:
            raise InputError(
                f"--map {new}={old}: {source} has no column {old!r}" + closest_text(old, names)
            )
        final[hits[0]] = new
    by_final: dict[str, str] = {}
    for original, name in final.items():
        if name in by_final:
            raise SchemaError(
                f"{source}: two columns would be named {name!r} "
                f"({by_final[name]!r} and {original!r}); fix --map or drop one column"
            )
        by_final[name] = original
    return final


def closest_text(name: str, present: Sequence[str]) -> str:
    """`` (closest present: 'a', 'b')`` for the names most like ``name``, or ``""``."""
    close = difflib.get_close_matches(name, list(present), n=3, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(
            normalize_column_name(name), [normalize_column_name(p) for p in present], 3, 0.6
        )
    if not close:
        return ""
    return f" (closest present: {', '.join(repr(c) for c in close)})"


def parse_explicit(column: str = "explicit") -> pl.Expr:
    """Polars expression parsing ``explicit`` from True/False/true/false/1/0 to 0.0/1.0.

    Anything else becomes null, so the caller can reject or drop the row.
    Booleans and numbers pass through as 1.0/0.0.
    """
    text = pl.col(column).cast(pl.String).str.strip_chars().str.to_lowercase()
    return (
        pl.when(text.is_in(_TRUE_WORDS))
        .then(1.0)
        .when(text.is_in(_FALSE_WORDS))
        .then(0.0)
        .otherwise(None)
        .alias(column)
    )
