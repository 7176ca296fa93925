"""Catalog batches -> the model's float32 feature matrix, with per-row validation.

A :class:`Preprocessor` is built from a model manifest and the user's column
options (``--map``, ``--fill``, ``--key``, ``--columns``), then bound to an
input's schema with :meth:`Preprocessor.bind`, which checks every required
column is there *before* any row is read or any output opened. Each batch then
goes through polars expressions only (no per-row Python):

- column names normalised exactly as in training
  (:func:`models.features.normalized_names`), then ``--map`` renames;
- numbers parsed (text is stripped and cast; ``explicit`` accepts
  True/False/true/false/1/0 via :func:`models.features.parse_explicit`);
- a row is invalid when a model input is null, NaN, infinite, not a number,
  or outside the manifest's ``valid_min``/``valid_max``; invalid rows are
  returned separately with a reason and their original values;
- the genre is stripped and lowercased and one-hot encoded over the manifest
  vocabulary; unknown or missing genres go to the "other" bucket;
- a model with catalog priors (manifest ``priors``) gets its prior inputs from
  the artist and album columns through :mod:`popbatch.batch.priors` (an empty or
  missing key is an unseen key, never an invalid row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from popbatch.batch.priors import CellCache, lookup_for

from popbatch.core.errors import InputError, InvalidRowError, SchemaError, one_line
from popbatch.core.features import (
    closest_text,
    normalize_column_name,
    parse_explicit,
    resolve_columns,
)
from popbatch.core.priors import fill_hint, is_tail_feature
from popbatch.core.scored import (
    ALL_HEAD_COLUMNS,
    REJECTS_REASON_COLUMN,
    REJECTS_ROW_COLUMN,
    SCORE_NAMES,
)

# Columns the scorer adds (popbatch.core.scored, the heads' too): an input column of the
# same name (a scored file scored again) is replaced by the new score, never passed through.
OUTPUT_COLUMNS = (*SCORE_NAMES, *(c.name for c in ALL_HEAD_COLUMNS))
ROW_COLUMN = REJECTS_ROW_COLUMN
REASON_COLUMN = REJECTS_REASON_COLUMN
_BAD = "__popbatch_bad__"
_GENRE_POS = "__popbatch_genre_position__"
_EXPLICIT = "explicit"
_EXPLICIT_PARSED = "__popbatch_explicit__"
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class NumericInput:
    """One numeric model input as the manifest describes it."""

    name: str
    column: str
    position: int
    valid_min: float | None
    valid_max: float | None


class FeatureBuffer:
    """A reusable float32 [rows, F] matrix for :meth:`Preprocessor.transform`.

    Allocating a fresh ~35 MB matrix per 65,536-row batch costs page faults
    and lets the allocator's footprint drift; reusing a few buffers keeps
    memory flat. Only the one-hot cells set last time are cleared: the numeric
    columns are overwritten anyway.
    """

    def __init__(self, rows: int, width: int) -> None:
        self.array = np.zeros((rows, width), np.float32)
        self._hot: tuple[np.ndarray, np.ndarray] | None = None

    def take(self, rows: int) -> np.ndarray:
        """The first ``rows`` rows, with no one-hot cell left set."""
        if rows > self.array.shape[0]:
            self.array = np.zeros((rows, self.array.shape[1]), np.float32)
            self._hot = None
        if self._hot is not None:
            self.array[self._hot] = 0.0
            self._hot = None
        return self.array[:rows]

    def set_hot(self, rows: np.ndarray, positions: np.ndarray) -> None:
        self.array[rows, positions] = 1.0
        self._hot = (rows, positions)


@dataclass
class Prepared:
    """One preprocessed batch.

    Attributes
    ----------
    features
        float32 [n_valid, F] in the manifest's feature order, C-contiguous.
    passthrough
        The output's input columns (normalised names) for the valid rows.
    rejects
        ``row``, ``reason`` and the original values (as text) of invalid rows,
        or None when every row is valid.
    rows
        Rows in the input batch (valid + rejected).
    genre_positions
        For each valid row, the feature position of its genre's one-hot
        column; None without a genre vocabulary.
    input_rows
        For each valid row, its row number in the input (from 1, as ``row`` in
        the rejects).
    """

    features: np.ndarray
    passthrough: pa.RecordBatch
    rejects: pa.RecordBatch | None
    rows: int
    genre_other: int = 0
    buffer: FeatureBuffer | None = None
    genre_positions: np.ndarray | None = None
    input_rows: np.ndarray | None = None

    @property
    def rows_rejected(self) -> int:
        return 0 if self.rejects is None else self.rejects.num_rows


@dataclass
class Preprocessor:
    """Turns input batches into the model's feature matrix, as the manifest says.

    Parameters
    ----------
    manifest
        The model manifest (``ModelBundle.manifest``).
    key
        Key column (normalised name); defaults to the manifest's ``key``.
    columns
        ``"key"`` (default), ``"all"``, or a list of column names to pass
        through to the output beside the scores.
    maps
        ``{new: old}``: read model column ``new`` from input column ``old``.
    fills
        ``{column: value}``: a constant for a column the input lacks (or for
        its nulls when it has the column).
    on_invalid
        ``"reject"`` returns invalid rows in :attr:`Prepared.rejects`;
        ``"fail"`` raises :class:`~popbatch.core.errors.InvalidRowError` at the first.
    """

    manifest: Mapping[str, Any]
    key: str | None = None
    columns: str | Sequence[str] = "key"
    maps: Mapping[str, str] = field(default_factory=dict)
    fills: Mapping[str, str] = field(default_factory=dict)
    on_invalid: str = "reject"

    def __post_init__(self) -> None:
        if self.on_invalid not in ("reject", "fail"):
            raise InputError(f"--on-invalid must be reject or fail, not {self.on_invalid!r}")
        self.key = normalize_column_name(self.key or self.manifest.get("key") or "track_id")
        self.width = int(self.manifest["input"]["width"])
        self.numeric: list[NumericInput] = []
        self.genre_positions: dict[str, int] = {}
        prior_positions: dict[str, int] = {}
        for position, feature in enumerate(self.manifest["features"]):
            if feature["kind"] == "prior":
                prior_positions[feature["name"]] = position
            elif feature["kind"] == "numeric":
                self.numeric.append(
                    NumericInput(
                        feature["name"],
                        normalize_column_name(feature["column"]),
                        position,
                        feature.get("valid_min"),
                        feature.get("valid_max"),
                    )
                )
            else:
                self.genre_positions[_genre_text(feature["category"])] = position
        genre = self.manifest.get("genre")
        positions = [n.position for n in self.numeric]
        start = positions[0] if positions else 0
        # A slice (the usual layout: numeric inputs first) copies ~3x faster than a list.
        self._numeric_index: slice | list[int] = (
            slice(start, start + len(positions))
            if positions == list(range(start, start + len(positions)))
            else positions
        )
        # Text columns Arrow may cast to float directly (explicit has its own words).
        self._text_numeric = {n.column for n in self.numeric if n.column != _EXPLICIT}
        self.genre_column = normalize_column_name(genre["column"]) if genre else None
        self.genre_optional = bool(genre and genre.get("optional", False))
        self.other_position = (
            self.genre_positions.get(_genre_text(genre["other"])) if genre else None
        )
        # catalog priors, from the prior columns' text: the lookup's columns (spec order)
        # go to their input positions (the genre shares come last, after the one-hot)
        self.priors = lookup_for(self.manifest)
        self.prior_columns = list(self.priors.spec.columns) if self.priors else []
        # the cells this preprocessor's batches have had, worked out once each
        self._prior_cache = CellCache() if self.priors else None
        self._prior_index = (
            np.array([prior_positions[n] for n in self.priors.spec.feature_names()], np.intp)
            if self.priors
            else None
        )
        self.maps = {normalize_column_name(k): v for k, v in self.maps.items()}
        self.fills = {normalize_column_name(k): v for k, v in self.fills.items()}
        self._fill_values = self._parse_fills()
        self.source_name = "input"
        #: input columns named like score columns, replaced by this run's scores
        self.replaced: list[str] = []
        self._bound = False

    # ----------------------------------------------------------------- binding
    def _parse_fills(self) -> dict[str, Any]:
        inputs = {n.column: n for n in self.numeric}
        values: dict[str, Any] = {}
        for column, text in self.fills.items():
            if column in inputs:
                spec = inputs[column]
                if column == _EXPLICIT:
                    parsed = pl.DataFrame({"v": [text]}).select(parse_explicit("v"))["v"][0]
                else:
                    try:
                        parsed = float(text)
                    except ValueError:
                        parsed = None
                if parsed is None or not np.isfinite(parsed) or not _in_range(parsed, spec):
                    raise InputError(
                        f"--fill {column}={text}: not a valid {column} value"
                        + f" (a number{_range_text(spec)})"
                    )
                values[column] = float(parsed)
            elif column == self.genre_column or column in self.prior_columns:
                values[column] = str(text)
            else:
                model_columns = [n.column for n in self.numeric]
                if self.genre_column:
                    model_columns.append(self.genre_column)
                model_columns += self.prior_columns
                raise InputError(
                    f"--fill {column}={text}: {column} is not a model input; "
                    f"model inputs: {', '.join(model_columns)}"
                )
        return values

    def bind(self, schema: pa.Schema, source_name: str = "input") -> Preprocessor:
        """Resolve the input's columns; raise before any output if one is missing.

        Raises
        ------
        SchemaError
            Missing required columns (listing the closest names present), two
            columns normalising to one name, or an unknown ``--columns`` name.
        InputError
            A ``--map`` naming a column the input does not have.
        """
        self.source_name = source_name
        originals = list(schema.names)
        final = resolve_columns(originals, self.maps, source_name)  # original -> final name
        by_final = {name: original for original, name in final.items()}
        self.by_final = by_final
        self.input_types = {final[o]: schema.field(o).type for o in originals}

        missing = [
            n.column
            for n in self.numeric
            if n.column not in by_final and n.column not in self.fills
        ]
        genre_present = self.genre_column in by_final or self.genre_column in self.fills
        if self.genre_column and not genre_present and not self.genre_optional:
            missing.append(self.genre_column)
        absent = [c for c in self.prior_columns if c not in by_final and c not in self.fills]
        # Every missing column in one message: a catalog of another schema is fixed in one
        # go, not one rerun per column.
        present = list(by_final)
        problems = []
        if missing:
            listed = ", ".join(f"{m}{closest_text(m, present)}" for m in missing)
            problems.append(
                f"missing required column{'s' if len(missing) > 1 else ''} {listed}; rename a "
                "column with --map NAME=COLUMN or supply a constant with --fill NAME=VALUE"
            )
        if absent:
            listed = ", ".join(f"{m}{closest_text(m, present)}" for m in absent)
            problems.append(
                f"missing column{'s' if len(absent) > 1 else ''} {listed}, which this model "
                f"reads artist and album history from; {fill_hint(absent)}"
            )
        if self.columns == "key" and self.key not in by_final:
            problems.append(
                f"no key column {self.key!r}{closest_text(self.key, present)}; name the key "
                "with --key COLUMN, or pass --columns all"
            )
        if problems:
            raise SchemaError(f"{source_name}: " + "; also ".join(problems))
        self.genre_source = self.genre_column if self.genre_column in by_final else None
        self.passthrough = self._passthrough(by_final)

        feature_columns = [n.column for n in self.numeric if n.column in by_final]
        if self.genre_source:
            feature_columns.append(self.genre_source)
        self.prior_sources = [c for c in self.prior_columns if c in by_final]
        needed = set(feature_columns) | set(self.passthrough) | set(self.prior_sources)
        # Read in input order: the rejects output then shows columns as the input has them.
        self.read_columns = [o for o in originals if final[o] in needed]
        self.feature_columns = feature_columns
        self._bound = True
        return self

    def _passthrough(self, by_final: Mapping[str, str]) -> list[str]:
        if self.columns == "key":  # present: bind checked it
            return [self.key]
        if self.columns == "all":
            return self._without_score_columns(list(by_final))
        wanted = [normalize_column_name(c) for c in self.columns]
        unknown = [c for c in wanted if c not in by_final]
        if unknown:
            raise SchemaError(
                f"{self.source_name}: --columns names unknown column(s) {', '.join(unknown)}"
                + closest_text(unknown[0], list(by_final))
            )
        return self._without_score_columns(list(dict.fromkeys(wanted)))

    def _without_score_columns(self, names: list[str]) -> list[str]:
        """``names`` less the score columns, which the new scores replace (kept in
        :attr:`replaced` for the run summary)."""
        self.replaced = [n for n in names if n in OUTPUT_COLUMNS]
        return [n for n in names if n not in OUTPUT_COLUMNS]

    @property
    def passthrough_inputs(self) -> list[str]:
        """The input (original) names of the pass-through columns, in output order."""
        self._require_bound()
        return [self.by_final[c] for c in self.passthrough]

    def set_output_types(self, types: Mapping[str, pa.DataType]) -> None:
        """Give pass-through columns (input names) other output types than the input's,
        e.g. a CSV column of integers read as text
        (:meth:`~popbatch.batch.sources.Source.column_types`); the run casts each batch.
        """
        self._require_bound()
        final = {o: f for f, o in self.by_final.items()}
        for original, dtype in types.items():
            self.input_types[final[original]] = dtype

    @property
    def output_schema(self) -> pa.Schema:
        """Schema of the passthrough columns (normalised names, output types)."""
        self._require_bound()
        return pa.schema([(c, self.input_types[c]) for c in self.passthrough])

    @property
    def rejects_schema(self) -> pa.Schema:
        """``row``, ``reason``, then every column read, as text with its input name."""
        self._require_bound()
        fields = [(ROW_COLUMN, pa.int64()), (REASON_COLUMN, pa.string())]
        fields += [
            (o, pa.string()) for o in self.read_columns if o not in (ROW_COLUMN, REASON_COLUMN)
        ]
        return pa.schema(fields)

    def leave_out_genre_shares(self) -> None:
        """Do not write the priors' genre shares: for a run without the genre head, the
        only head that reads them (the others' graphs slice them off), they were a third
        of the preprocessing's CPU. Their inputs keep whatever the buffer held."""
        if self.priors is None:
            return
        names = self.priors.spec.feature_names()
        self._prior_index = np.array(
            [
                -1 if is_tail_feature(n) else p
                for n, p in zip(names, self._prior_index, strict=True)
            ],
            np.intp,
        )

    @property
    def fills_applied(self) -> dict[str, dict[str, Any]]:
        """What ``--fill`` did: ``{column: {"value": v, "column_absent": bool}}``."""
        by_final = getattr(self, "by_final", {})
        return {
            c: {"value": v, "column_absent": c not in by_final}
            for c, v in self._fill_values.items()
        }

    def _require_bound(self) -> None:
        if not self._bound:
            raise RuntimeError("Preprocessor.bind(schema) must be called first")

    # --------------------------------------------------------------- transform
    def transform(
        self, batch: pa.RecordBatch, first_row: int = 1, buffer: FeatureBuffer | None = None
    ) -> Prepared:
        """Preprocess one batch whose first row is row number ``first_row`` (1-based).

        With ``buffer`` the feature matrix is a view into it (valid until the
        buffer is reused); otherwise a new array.

        Raises
        ------
        InvalidRowError
            With ``on_invalid="fail"``, at the first invalid row.
        InputError
            When a model input column has a type that cannot hold numbers
            (a list or struct column, for example).
        """
        try:
            return self._transform(batch, first_row, buffer)
        except (pl.exceptions.PolarsError, pa.ArrowException) as exc:
            raise InputError(
                f"{self.source_name}: cannot read the model inputs from rows {first_row}-"
                f"{first_row + batch.num_rows - 1} ({one_line(exc, 200)}); "
                "check the column types"
            ) from None

    def _transform(
        self, batch: pa.RecordBatch, first_row: int, buffer: FeatureBuffer | None
    ) -> Prepared:
        self._require_bound()
        n = batch.num_rows
        renamed = _renamed(
            batch, [self.by_final[c] for c in self.feature_columns], self.feature_columns
        )
        frame = pl.from_arrow(_plain_numbers(renamed, self._text_numeric))
        if frame.width == 0:  # every model input comes from --fill
            frame = pl.DataFrame({_BAD: np.zeros(n, bool)})
        explicit = _explicit_by_distinct_value(renamed)
        if explicit is not None:
            frame = frame.with_columns(explicit)
        parsed = {spec.column: self._parsed(frame, spec) for spec in self.numeric}
        # Parse once, then validate the parsed columns: eager polars does not
        # eliminate common subexpressions, so reusing the parse expressions in
        # the checks would parse every text column four times.
        ok = [_valid(pl.col(spec.column), spec) for spec in self.numeric]
        exprs: list[pl.Expr | pl.Series] = [(~pl.all_horizontal(ok)).alias(_BAD)]
        if self.genre_column:
            exprs.append(self._genre_positions_of(renamed))
        names = [*parsed, _BAD, *([_GENRE_POS] if self.genre_column else [])]
        # with_columns broadcasts --fill literals to the batch's height; select would not.
        table = (
            frame.with_columns([expr.alias(column) for column, expr in parsed.items()])
            .with_columns(exprs)
            .select(names)
        )
        bad = table[_BAD].to_numpy()
        n_bad = int(bad.sum())

        rejects = None
        passthrough = self.passthrough_of(batch)
        if n_bad:
            rejects = self._rejects(batch, frame, parsed, bad, first_row)
            keep = pa.array(~bad)
            passthrough = passthrough.filter(keep)
            table = table.filter(~pl.col(_BAD))
        features, genre_positions = self._matrix(table, buffer)
        if self.priors is not None:
            cells = self._prior_cells(batch, None if not n_bad else pa.array(~bad))
            self.priors.fill(cells, features, self._prior_index, self._prior_cache)
        genre_other = 0
        if genre_positions is not None:
            genre_other = int((genre_positions == self.other_position).sum())
        rows = first_row + (np.flatnonzero(~bad) if n_bad else np.arange(n))
        return Prepared(
            features, passthrough, rejects, n, genre_other, buffer, genre_positions, rows
        )

    def _prior_cells(self, batch: pa.RecordBatch, keep: pa.Array | None) -> dict[str, Any]:
        """Each prior column's cells for the kept rows; ``--fill`` for a column the
        input lacks (or for its nulls); None (every key unknown) when neither."""
        cells: dict[str, Any] = {}
        rows = batch.num_rows if keep is None else int(pc.sum(keep).as_py() or 0)
        for column in self.prior_columns:
            fill = self._fill_values.get(column)
            if column in self.prior_sources:
                values = batch.column(self.by_final[column])
                if keep is not None:
                    values = values.filter(keep)
                if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
                    values = values.cast(pa.string())
                if fill is not None:
                    values = pc.fill_null(values, fill)
                cells[column] = values
            else:
                cells[column] = None if not fill else pa.array([fill] * rows, pa.string())
        return cells

    def passthrough_of(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch's passthrough columns under their output names (every row)."""
        return _renamed(batch, [self.by_final[c] for c in self.passthrough], self.passthrough)

    def _parsed(self, frame: pl.DataFrame, spec: NumericInput) -> pl.Expr:
        """A Float64 expression for one model input (null where it is not a number)."""
        column = spec.column
        if column not in frame.columns:
            return pl.lit(self._fill_values[column], dtype=pl.Float64)
        dtype = frame.schema[column]
        if dtype.is_numeric() or dtype == pl.Boolean:
            expr = pl.col(column).cast(pl.Float64)
        elif column == _EXPLICIT:
            parsed = _EXPLICIT_PARSED in frame.columns
            expr = pl.col(_EXPLICIT_PARSED) if parsed else parse_explicit(column)
        else:
            text = pl.col(column) if dtype == pl.String else pl.col(column).cast(pl.String)
            expr = text.str.strip_chars().cast(pl.Float64, strict=False)
        if column in self._fill_values:
            expr = pl.when(pl.col(column).is_null()).then(self._fill_values[column]).otherwise(expr)
        return expr

    def _genre_positions_of(self, batch: pa.RecordBatch) -> pl.Expr | pl.Series:
        """Each row's genre position: :meth:`_genre_position`'s rules applied to the
        column's distinct values only (a batch holds ~100 genres), then gathered by
        row. Measured ~125 -> ~25 ns per row on the bench's catalog."""
        if self.genre_source is None:
            return self._genre_position()
        column = batch.column(self.genre_source)
        try:
            values, rows = _distinct_values(column)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
            return self._genre_position()  # a type Arrow cannot encode: the rules row by row
        lookup = (
            pl.from_arrow(pa.record_batch([values], names=[self.genre_source]))
            .select(self._genre_position())
            .to_series()
            .to_numpy()
        )
        return pl.Series(_GENRE_POS, lookup[rows], pl.Int32)

    def _genre_position(self) -> pl.Expr:
        if self.genre_source is None:
            fill = self._fill_values.get(self.genre_column)
            position = self.genre_positions.get(_genre_text(fill), self.other_position)
            return pl.lit(position if fill is not None else self.other_position, pl.Int32).alias(
                _GENRE_POS
            )
        text = pl.col(self.genre_source).cast(pl.String).str.strip_chars().str.to_lowercase()
        fill = self._fill_values.get(self.genre_column)
        if fill is not None:
            text = text.fill_null(_genre_text(fill))
        return text.replace_strict(
            list(self.genre_positions),
            list(self.genre_positions.values()),
            default=self.other_position,
            return_dtype=pl.Int32,
        ).alias(_GENRE_POS)

    def _matrix(
        self, table: pl.DataFrame, buffer: FeatureBuffer | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The feature matrix, and each row's genre position (None without a genre)."""
        rows = table.height
        buffer = buffer or FeatureBuffer(rows, self.width)
        out = buffer.take(rows)
        if not self.genre_column:
            positions = None
        elif rows == 0:
            positions = np.empty(0, np.int32)
        else:
            positions = table[_GENRE_POS].to_numpy()
            buffer.set_hot(np.arange(rows), positions)
        if rows:
            numeric = table.select([s.column for s in self.numeric]).to_numpy(order="c")
            out[:, self._numeric_index] = numeric
        return out, positions

    def _rejects(
        self,
        batch: pa.RecordBatch,
        frame: pl.DataFrame,
        parsed: Mapping[str, pl.Expr],
        bad: np.ndarray,
        first_row: int,
    ) -> pa.RecordBatch:
        bad_frame = frame.filter(pl.Series(bad))
        reasons = [
            _reason(spec, parsed[spec.column], spec.column in bad_frame.columns)
            for spec in self.numeric
        ]
        reason = bad_frame.select(pl.concat_str(reasons, separator="; ", ignore_nulls=True))
        rows = first_row + np.flatnonzero(bad)
        if self.on_invalid == "fail":
            key = ""
            if self.key in self.by_final:
                value = batch.column(self.by_final[self.key])[int(rows[0] - first_row)].as_py()
                key = f" ({self.key} {value})"
            raise InvalidRowError(
                f"{self.source_name}: row {rows[0]}{key}: {reason.to_series()[0]}; fix the row, "
                "or use --on-invalid reject to write such rows to the rejects output"
            )
        originals = batch.select(self.read_columns).filter(pa.array(bad))
        arrays = [pa.array(rows, pa.int64()), reason.to_series().to_arrow().cast(pa.string())]
        arrays += [_as_text(originals.column(i)) for i in range(originals.num_columns)]
        return pa.RecordBatch.from_arrays(arrays, schema=self.rejects_schema)


def _plain_numbers(batch: pa.RecordBatch, columns: set[str]) -> pa.RecordBatch:
    """Cast text columns that hold only plain numbers with Arrow (~3x faster than
    polars' strip-and-cast); a column with anything else ("12 ", "n/a") is left
    as text for the polars path, which finds the bad rows and their reasons.
    """
    arrays = batch.columns
    cast = False
    for index, column in enumerate(batch.schema):
        if column.name in columns and (
            pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        ):
            try:
                arrays[index] = pc.cast(arrays[index], pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            cast = True
    # from_arrays, not RecordBatch.set_column: pyarrow before 16 has no set_column.
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names) if cast else batch


def _explicit_by_distinct_value(batch: pa.RecordBatch) -> pl.Series | None:
    """A text ``explicit`` column parsed once per distinct value (a catalog has a handful:
    "true", "False", ...) and gathered by row, as :func:`parse_explicit` would give row by
    row: its string operations cost ~200 ns a row, the dictionary ~10 (CSV inputs, whose
    ``explicit`` arrives as text). None when the column is absent or not text."""
    if _EXPLICIT not in batch.schema.names:
        return None
    column = batch.column(_EXPLICIT)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return None
    values, rows = _distinct_values(column)
    parsed = pl.from_arrow(pa.record_batch([values], names=[_EXPLICIT])).select(
        parse_explicit(_EXPLICIT)
    )
    return parsed.to_series().gather(rows).alias(_EXPLICIT_PARSED)


def _distinct_values(column: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """``column``'s distinct values with a null last, and each row's index into them (the
    null's for a row without a value): work done per distinct value, gathered by row.
    Raises Arrow's error for a type it cannot dictionary-encode."""
    encoded = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
    values = pa.concat_arrays([encoded.dictionary, pa.nulls(1, encoded.dictionary.type)])
    return values, encoded.indices.fill_null(len(values) - 1).to_numpy()


def _renamed(batch: pa.RecordBatch, columns: Sequence[str], names: Sequence[str]) -> pa.RecordBatch:
    """``batch``'s ``columns`` under ``names`` (select + rename, on pyarrow before 16 too)."""
    return pa.RecordBatch.from_arrays([batch.column(c) for c in columns], names=list(names))


def _valid(expr: pl.Expr, spec: NumericInput) -> pl.Expr:
    # The feature matrix is float32: a larger value would silently become inf.
    ok = expr.is_finite() & (expr.abs() <= FLOAT32_MAX)
    if spec.valid_min is not None:
        ok = ok & (expr >= spec.valid_min)
    if spec.valid_max is not None:
        ok = ok & (expr <= spec.valid_max)
    return ok.fill_null(False)


def _reason(spec: NumericInput, parsed: pl.Expr, present: bool) -> pl.Expr:
    """Why one value is invalid (null when it is fine): one short phrase."""
    name = spec.column
    original = pl.col(name).cast(pl.String) if present else pl.lit(None, pl.String)
    not_a = "true/false/1/0" if name == _EXPLICIT else "a number"
    value = parsed.cast(pl.String)
    expr = (
        pl.when(parsed.is_null() & original.is_null())
        .then(pl.lit(f"{name} is missing"))
        .when(parsed.is_null())
        .then(pl.format(f"{name} {{}} is not {not_a}", original))
        .when(parsed.is_nan())
        .then(pl.lit(f"{name} is NaN"))
        .when(parsed.is_infinite())
        .then(pl.format(f"{name} {{}} is infinite", value))
        .when(parsed.abs() > FLOAT32_MAX)
        .then(pl.format(f"{name} {{}} is too large for the model (float32)", value))
    )
    if spec.valid_min is not None:
        expr = expr.when(parsed < spec.valid_min).then(
            pl.format(f"{name} {{}} is outside{_range_text(spec)}", value)
        )
    if spec.valid_max is not None:
        expr = expr.when(parsed > spec.valid_max).then(
            pl.format(f"{name} {{}} is outside{_range_text(spec)}", value)
        )
    return expr.otherwise(pl.lit(None, pl.String))


def _in_range(value: float, spec: NumericInput) -> bool:
    return (spec.valid_min is None or value >= spec.valid_min) and (
        spec.valid_max is None or value <= spec.valid_max
    )


def _range_text(spec: NumericInput) -> str:
    if spec.valid_min is None and spec.valid_max is None:
        return ""
    low = "-inf" if spec.valid_min is None else f"{spec.valid_min:g}"
    high = "inf" if spec.valid_max is None else f"{spec.valid_max:g}"
    return f" [{low}, {high}]"


def _genre_text(value: Any) -> str:
    return str(value).strip().lower() if value is not None else ""


def _as_text(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    try:
        return array.cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return pa.array([None if v is None else str(v) for v in array.to_pylist()], pa.string())
