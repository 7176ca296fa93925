"""Slices of the evaluated rows, so that where a model is wrong shows: a small registry.

A slice splits the rows into named groups (one group name per row) from the
input's columns and the model's manifest; evaluate gives each head's main
figure (:data:`~popbatch.batch.evaluate_heads.MAIN_METRIC`) and the row
counts per group. A group with fewer than :data:`SMALL_ROWS` rows (or, for the
popular head, fewer than :data:`SMALL_CLASS` popular or unpopular rows) is
flagged ``small``: its figure is shown, but it says little.

Adding a slice is one :func:`register_slice` call: the input columns it needs
(read beside the scores, as ``popbatch score --columns`` would) and a function
from those columns and the manifest to one group name per row, or None with
the reason it does not apply. Known vs unknown artist and album for a model
with catalog priors is such a slice: its function reads the manifest's prior
columns and says whether each row's artist (album) had a prior.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from popbatch.core.features import GENRE_COLUMN

SMALL_ROWS = 50
SMALL_CLASS = 5
SHOWN = 10  # best and worst groups of a ranked slice

#: (the input's columns read for slices, by normalised name; the manifest) ->
#: (group name per row, or None and why the slice does not apply)
Grouper = Callable[[Mapping[str, np.ndarray], Mapping[str, Any]], tuple[np.ndarray | None, str]]


@dataclass(frozen=True)
class Slice:
    """A way to split the evaluated rows into groups."""

    name: str
    description: str
    columns: tuple[str, ...]
    """Input columns (normalised names) the grouper reads; absent ones are not passed."""
    groups: Grouper
    ranked: bool = False
    """Many groups: show the :data:`SHOWN` best and worst by the main figure."""


SLICES: dict[str, Slice] = {}


def register_slice(spec: Slice) -> Slice:
    """Add (or replace) a slice; evaluate reports every registered slice that applies."""
    SLICES[spec.name] = spec
    return spec


def _by_genre(columns: Mapping[str, np.ndarray], manifest: Mapping[str, Any]):
    genres = columns.get(GENRE_COLUMN)
    if genres is None:
        return None, f"the input has no {GENRE_COLUMN} column"
    return np.array(
        [("(missing)" if g is None else str(g).strip().lower()) for g in genres], dtype=object
    ), ""


_TRUE = {"true", "1", "1.0", "yes", "t"}
_FALSE = {"false", "0", "0.0", "no", "f"}


def _by_explicit(columns: Mapping[str, np.ndarray], manifest: Mapping[str, Any]):
    values = columns.get("explicit")
    if values is None:
        return None, "the input has no explicit column"
    out = []
    for value in values:
        text = str(value).strip().lower() if value is not None else ""
        out.append(
            "explicit" if text in _TRUE else "not explicit" if text in _FALSE else "(missing)"
        )
    return np.array(out, dtype=object), ""


register_slice(
    Slice("genre", "per genre (the label track_genre)", (GENRE_COLUMN,), _by_genre, ranked=True)
)
register_slice(Slice("explicit", "explicit vs not", ("explicit",), _by_explicit))

KNOWN_CATALOG = "known artist and album"
NEW_RELEASE = "known artist, new album"
DEBUT = "new artist"


def _by_catalog_history(columns: Mapping[str, np.ndarray], manifest: Mapping[str, Any]):
    """The three honest evaluations of a model with catalog priors, as groups of rows:
    whether the model's priors table knows the row's artist (any of them) and album."""
    section = manifest.get("priors") or {}
    wanted = ("artists", "album_name")
    if not set(wanted) <= set(section.get("columns") or ()):
        return None, "the model has no catalog priors on artists and album_name"
    if "count" not in (section.get("statistics") or ()):
        return None, "the model's priors hold no track counts"
    missing = [c for c in wanted if c not in columns]
    if missing:
        return None, f"the input has no {', '.join(missing)} column"
    import pyarrow as pa
    from popbatch.batch.priors import lookup_for

    from popbatch.core.priors import column_feature_names

    lookup = lookup_for(dict(manifest))
    known = {}
    for column in wanted:
        values = pa.array([None if v is None else str(v) for v in columns[column]], pa.string())
        block = lookup.column_features(column, values, len(values))
        at = column_feature_names(lookup.spec, column).index(f"{column}:count")
        known[column] = block[:, at] > 0
    groups = np.where(
        ~known["artists"], DEBUT, np.where(known["album_name"], KNOWN_CATALOG, NEW_RELEASE)
    ).astype(object)
    return groups, ""


register_slice(
    Slice(
        "catalog history",
        "whether the model's catalog priors know the artist and the album",
        ("artists", "album_name"),
        _by_catalog_history,
    )
)


def slice_columns() -> list[str]:
    """Every input column some registered slice reads."""
    return list(dict.fromkeys(c for spec in SLICES.values() for c in spec.columns))


def group_table(
    groups: np.ndarray,
    figure: Callable[[np.ndarray], tuple[float, dict[str, int]]],
    higher_is_better: bool,
    ranked: bool,
) -> dict[str, Any]:
    """Per group: its figure and counts; ranked slices keep the best and worst :data:`SHOWN`.

    ``figure(rows)`` gives the main figure and the counts of the rows at indices ``rows``.
    """
    entries = []
    for name in sorted(set(groups.tolist())):
        value, counts = figure(np.flatnonzero(groups == name))
        small = counts["rows"] < SMALL_ROWS or (
            "positives" in counts
            and min(counts["positives"], counts["rows"] - counts["positives"]) < SMALL_CLASS
        )
        entries.append(
            {
                "group": name,
                "value": None if np.isnan(value) else value,
                **counts,
                "small": bool(small),
            }
        )
    defined = [e for e in entries if e["value"] is not None]
    undefined = [e for e in entries if e["value"] is None]
    defined.sort(key=lambda e: (-e["value"] if higher_is_better else e["value"], e["group"]))
    out: dict[str, Any] = {"groups": len(entries)}
    if ranked:
        out["best"] = defined[:SHOWN]
        out["worst"] = defined[::-1][:SHOWN]
    else:
        out["all"] = defined
    out["undefined"] = undefined
    return out
