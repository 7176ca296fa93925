"""Drift check: does a catalog still look like the data the model was trained on?

For each numeric feature the catalog's values are binned on the training
deciles stored in the manifest (:func:`batch.stats.bin_counts`) and compared
with the training shares by the population stability index
(:func:`batch.stats.psi`); the share of values outside the training range
``[train.min, train.max]`` is counted too. For the genre, the share of
(non-null) genres the model never saw in training is counted. The catalog is
read in bounded batches; only bin counts are kept.

A check *drifts* when it reaches a threshold in :data:`THRESHOLDS` (the one
place they are defined; ``popbatch drift --help`` and docs/nightly.md quote them).
A feature the catalog lacks is reported as ``missing`` and is not drift
(``popbatch score`` would stop on it, or use ``--fill``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from popbatch.batch.sources import DUCKDB_SUFFIXES, open_source

from popbatch.core import DEFAULT_BATCH_SIZE
from popbatch.core.bundle import default_model_dir, read_manifest, read_prior_table
from popbatch.core.errors import InputError, ModelError, SchemaError
from popbatch.core.features import normalize_column_name, parse_explicit, resolve_columns
from popbatch.core.stats import bin_counts, psi


@dataclass(frozen=True)
class DriftThresholds:
    """A check drifts when its value is at or above its threshold."""

    psi: float = 0.2  # population stability index per numeric feature (>= 0.2: significant shift)
    out_of_range: float = 0.05  # share of values outside the training [min, max]
    unseen_genre: float = 0.10  # share of non-null genres not in the training vocabulary
    # catalog priors: the share of rows with a known artist (album) this far below training's
    known_drop: float = 0.25

    def describe(self) -> str:
        return (
            f"PSI >= {self.psi:g}, out-of-range share >= {self.out_of_range:.0%}, "
            f"unseen genre share >= {self.unseen_genre:.0%}, known artist/album share "
            f"{self.known_drop:.0%} or more below training's"
        )


THRESHOLDS = DriftThresholds()


# ---------------------------------------------------------------------------
# Reading the catalog in batches


def read_batches(
    inputs: Sequence[str | Path] | str | Path,
    table: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    query: str | None = None,
    delimiter: str = ",",
) -> Iterator[pl.DataFrame]:
    """Stream a catalog through :func:`~popbatch.batch.sources.open_source` as polars frames.

    The same reader as ``popbatch score``: CSV columns arrive as text (parsed
    per feature later, so one odd value does not stop the read), Parquet
    files, globs and hive directories, or a DuckDB table or query. Column
    names are as in the input.

    Raises
    ------
    InputError
        For a missing or unreadable input, an unknown format, or a DuckDB
        file without ``--table``.
    LockError
        If a DuckDB input is held by a writer.
    """
    paths = [str(inputs)] if isinstance(inputs, str | Path) else [str(i) for i in inputs]
    if paths and paths[0].lower().endswith(DUCKDB_SUFFIXES) and table is None and query is None:
        raise InputError(f"{paths[0]}: a DuckDB input needs --table NAME or --query SQL")
    with open_source(paths, table=table, query=query, delimiter=delimiter) as reader:
        for batch in reader.batches(None, batch_size):
            yield pl.from_arrow(batch)


# ---------------------------------------------------------------------------
# Results


@dataclass
class FeatureDrift:
    """Drift of one numeric feature."""

    feature: str
    values: int = 0  # non-null numeric values seen
    psi: float | None = None
    out_of_range_share: float | None = None
    status: str = "ok"  # ok | drift | missing | empty
    reasons: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return self.status == "drift"


@dataclass
class GenreDrift:
    """Share of genres the model never saw."""

    column: str
    values: int = 0
    unseen_share: float | None = None
    top_unseen: list[tuple[str, int]] = field(default_factory=list)
    status: str = "ok"  # ok | drift | missing | empty

    @property
    def drifted(self) -> bool:
        return self.status == "drift"


@dataclass
class PriorDrift:
    """Share of rows whose artist (album) the model's priors table knows."""

    column: str
    values: int = 0
    known_share: float | None = None
    train_known_share: float | None = None
    status: str = "ok"  # ok | drift | missing

    @property
    def drifted(self) -> bool:
        return self.status == "drift"


@dataclass
class DriftReport:
    """The whole check: one entry per numeric feature and the genre."""

    input: str
    model_id: str
    rows: int
    features: list[FeatureDrift]
    genre: GenreDrift | None
    thresholds: DriftThresholds = THRESHOLDS
    priors: list[PriorDrift] = field(default_factory=list)

    @property
    def drifted(self) -> list[str]:
        """Names of the checks that drifted (``genre`` for the genre check, ``known
        artists`` for a prior column)."""
        names = [f.feature for f in self.features if f.drifted]
        names += ["genre"] if self.genre is not None and self.genre.drifted else []
        return names + [f"known {p.column}" for p in self.priors if p.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "model_id": self.model_id,
            "rows": self.rows,
            "drift": bool(self.drifted),
            "drifted": self.drifted,
            "thresholds": asdict(self.thresholds),
            "features": [asdict(f) | {"drifted": f.drifted} for f in self.features],
            "genre": None if self.genre is None else asdict(self.genre),
            "priors": [asdict(p) | {"drifted": p.drifted} for p in self.priors],
        }


# ---------------------------------------------------------------------------
# Accumulating over batches


class DriftCheck:
    """Bin counts and range counts accumulated batch by batch against a manifest."""

    def __init__(
        self,
        manifest: dict[str, Any],
        thresholds: DriftThresholds = THRESHOLDS,
        maps: Mapping[str, str] | None = None,
        fills: Mapping[str, str] | None = None,
    ) -> None:
        self.manifest = manifest
        self.maps = dict(maps or {})
        self.thresholds = thresholds
        self.numeric = [f for f in manifest["features"] if f.get("kind") == "numeric"]
        for f in self.numeric:
            train = f.get("train") or {}
            if "bins" not in train or "min" not in train:
                raise ModelError(
                    f"manifest feature {f.get('name')!r} has no training statistics "
                    "(train.bins, train.min, train.max); re-export the model"
                )
        self.rows = 0
        self.columns: set[str] | None = None
        self.counts = {f["name"]: np.zeros(len(f["train"]["bins"]["shares"]), np.int64)
                       for f in self.numeric}  # fmt: skip
        self.outside = dict.fromkeys(self.counts, 0)
        self.values = dict.fromkeys(self.counts, 0)
        genre = manifest.get("genre")
        self.genre_column = genre["column"] if genre else None
        self.vocabulary = set(genre["vocabulary"]) if genre else set()
        self.genre_values = 0
        self.unseen: Counter[str] = Counter()
        self.priors = None
        if manifest.get("priors"):
            from popbatch.batch.priors import lookup_for

            self.priors = lookup_for(manifest)
        self.known: Counter[str] = Counter()
        self.fills = self._check_fills(fills or {})

    def _check_fills(self, fills: Mapping[str, str]) -> dict[str, str]:
        """``--fill`` as ``popbatch score`` takes it: model input columns only."""
        inputs = [f["column"] for f in self.numeric]
        if self.genre_column is not None:
            inputs.append(self.genre_column)
        if self.priors is not None:
            inputs += list(self.priors.spec.columns)
        checked = {normalize_column_name(k): v for k, v in fills.items()}
        for column, value in checked.items():
            if column not in inputs:
                raise InputError(
                    f"--fill {column}={value}: {column} is not a model input; "
                    f"model inputs: {', '.join(inputs)}"
                )
        return checked

    def update(self, batch: pl.DataFrame, source: str = "input") -> None:
        """Add one batch (original column names; they are resolved here, with --map and
        --fill applied as ``popbatch score`` applies them)."""
        batch = batch.rename(resolve_columns(batch.columns, self.maps, source))
        for column, value in self.fills.items():
            present = pl.col(column).cast(pl.String).fill_null(value)
            batch = batch.with_columns(
                present if column in batch.columns else pl.lit(value).alias(column)
            )
        if self.columns is None:
            self.columns = set(batch.columns)
        self.rows += batch.height
        for f in self.numeric:
            if f["column"] in batch.columns:
                self._update_numeric(f, batch)
        if self.priors is not None and "count" in self.priors.spec.statistics:
            self._update_priors(batch)
        if self.genre_column is not None and self.genre_column in batch.columns:
            genres = batch.get_column(self.genre_column).cast(pl.String).drop_nulls()
            self.genre_values += genres.len()
            unseen = genres.filter(~genres.is_in(list(self.vocabulary)))
            self.unseen.update(unseen.to_list())

    def _update_priors(self, batch: pl.DataFrame) -> None:
        """Count the rows whose key the priors table knows (its count input > 0)."""
        spec = self.priors.spec
        for column in spec.columns:
            if column not in batch.columns:
                continue
            block = self.priors.column_features(
                column, batch.get_column(column).cast(pl.String).to_arrow(), batch.height
            )
            count = [n for n in spec.feature_names() if n.startswith(f"{column}:")]
            known = block[:, count.index(f"{column}:count")] > 0
            self.known[column] += int(known.sum())

    def _update_numeric(self, feature: dict[str, Any], batch: pl.DataFrame) -> None:
        column = feature["column"]
        if column == "explicit":
            expr = parse_explicit(column)
        else:
            expr = pl.col(column).cast(pl.Float64, strict=False)
        values = batch.select(expr.cast(pl.Float64)).to_series().to_numpy().astype(np.float64)
        values = values[np.isfinite(values)]
        train = feature["train"]
        name = feature["name"]
        self.counts[name] += bin_counts(values, train["bins"]["edges"])
        self.outside[name] += int(
            np.count_nonzero((values < train["min"]) | (values > train["max"]))
        )
        self.values[name] += values.size

    def report(self, source: str = "input") -> DriftReport:
        """The result so far, with each check compared with its threshold."""
        if self.rows == 0:
            raise InputError(f"{source}: no rows to check")
        columns = self.columns or set()
        features = [self._feature_result(f, columns) for f in self.numeric]
        genre = None
        if self.genre_column is not None:
            genre = self._genre_result(columns)
        return DriftReport(
            input=source,
            model_id=str(self.manifest.get("model_id", "")),
            rows=self.rows,
            features=features,
            genre=genre,
            thresholds=self.thresholds,
            priors=self._prior_results(columns),
        )

    def _prior_results(self, columns: set[str]) -> list[PriorDrift]:
        if self.priors is None or "count" not in self.priors.spec.statistics:
            return []
        trained = (self.manifest["priors"].get("extra") or {}).get("known_share", {})
        results = []
        for column in self.priors.spec.columns:
            train = trained.get(column)
            if column not in columns:
                results.append(PriorDrift(column, train_known_share=train, status="missing"))
                continue
            share = self.known[column] / self.rows
            low = train is not None and share <= train - self.thresholds.known_drop
            results.append(PriorDrift(column, self.rows, share, train, "drift" if low else "ok"))
        return results

    def _feature_result(self, feature: dict[str, Any], columns: set[str]) -> FeatureDrift:
        name = feature["name"]
        if feature["column"] not in columns:
            return FeatureDrift(name, status="missing")
        n = self.values[name]
        if n == 0:
            return FeatureDrift(name, status="empty")
        index = psi(np.asarray(feature["train"]["bins"]["shares"]), self.counts[name])
        outside = self.outside[name] / n
        reasons = []
        if index >= self.thresholds.psi:
            reasons.append(f"PSI {index:.3f} >= {self.thresholds.psi:g}")
        if outside >= self.thresholds.out_of_range:
            reasons.append(
                f"{outside:.1%} out of training range >= {self.thresholds.out_of_range:.0%}"
            )
        status = "drift" if reasons else "ok"
        return FeatureDrift(name, n, index, outside, status, reasons)

    def _genre_result(self, columns: set[str]) -> GenreDrift:
        column = self.genre_column or ""
        if column not in columns:
            return GenreDrift(column, status="missing")
        if self.genre_values == 0:
            return GenreDrift(column, status="empty")
        share = sum(self.unseen.values()) / self.genre_values
        status = "drift" if share >= self.thresholds.unseen_genre else "ok"
        return GenreDrift(column, self.genre_values, share, self.unseen.most_common(5), status)


def check_drift(
    source: Sequence[str | Path] | str | Path,
    manifest: dict[str, Any] | None = None,
    table: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    thresholds: DriftThresholds = THRESHOLDS,
    *,
    query: str | None = None,
    delimiter: str = ",",
    maps: Mapping[str, str] | None = None,
    fills: Mapping[str, str] | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> DriftReport:
    """Compare a catalog with the training statistics in ``manifest``.

    >>> import popbatch
    >>> report = popbatch.drift("catalog.parquet")    # doctest: +SKIP
    >>> report.drifted                                # doctest: +SKIP
    False

    ``manifest`` defaults to the embedded default model's; ``source`` is one
    or more paths, a glob or a directory, read as ``popbatch score`` reads them
    (``table``/``query`` for DuckDB, ``delimiter`` for CSV, ``maps`` and
    ``fills`` as ``--map`` and ``--fill``). ``progress("rows read", n, None)`` is
    called after each batch.

    Raises
    ------
    InputError
        If the input cannot be read or has no rows.
    SchemaError
        If two columns normalise to the same name, or the catalog has none of
        the model's features.
    ModelError
        If the manifest holds no training statistics.
    """
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    if manifest is None:
        manifest = read_manifest(default_model_dir())
        read_prior_table(default_model_dir(), manifest)  # the known-artist check reads it
    check = DriftCheck(manifest, thresholds, maps=maps, fills=fills)
    name = str(source) if isinstance(source, str | Path) else ", ".join(map(str, source))
    rows = 0
    for batch in read_batches(source, table, batch_size, query=query, delimiter=delimiter):
        check.update(batch, name)
        rows += len(batch)
        if progress is not None:
            progress("rows read", rows, None)
    report = check.report(name)
    if all(f.status == "missing" for f in report.features):
        names = ", ".join(f.feature for f in report.features)
        raise SchemaError(
            f"{source}: none of the model's features ({names}) is a column of the input; "
            "is it a catalog?"
        )
    return report


# ---------------------------------------------------------------------------
# Text output


def format_report(report: DriftReport) -> str:
    """An aligned table, one line per check, and a closing verdict line."""

    def pct(share: float | None) -> str:
        return "-" if share is None else f"{share:.1%}"

    rows = [("check", "values", "psi", "outside", "status")]
    for f in report.features:
        psi_text = "-" if f.psi is None else f"{f.psi:.3f}"
        status = f.status.upper() if f.drifted else f.status
        rows.append((f.feature, str(f.values), psi_text, pct(f.out_of_range_share), status))
    if report.genre is not None:
        g = report.genre
        status = g.status.upper() if g.drifted else g.status
        rows.append((f"{g.column} (unseen)", str(g.values), "-", pct(g.unseen_share), status))
    for p in report.priors:
        status = p.status.upper() if p.drifted else p.status
        rows.append((f"{p.column} (known)", str(p.values), "-", pct(p.known_share), status))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join(
            cell.ljust(w) if i in (0, 4) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if report.genre is not None and report.genre.top_unseen:
        seen = ", ".join(f"{g} ({n})" for g, n in report.genre.top_unseen)
        lines.append(f"most common unseen genres: {seen}")
    for p in report.priors:
        if p.known_share is not None and p.train_known_share is not None:
            lines.append(
                f"{p.column}: {p.known_share:.1%} of rows have a key the model knows "
                f"(training's test rows: {p.train_known_share:.1%})"
                + ("; the priors help little here, expect audio-only quality" if p.drifted else "")
            )
    verdict = f"drift in {', '.join(report.drifted)}" if report.drifted else "no drift"
    lines.append(
        f"{verdict}: {report.rows} rows of {report.input} against model "
        f"{report.model_id[:12]} (thresholds: {report.thresholds.describe()})"
    )
    return "\n".join(lines) + "\n"
