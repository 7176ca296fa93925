"""Scoring a typed-in track or a small uploaded file, for ``popbatch app``.

Nothing here has a scoring implementation of its own. An upload goes through
:func:`popbatch.batch.score.score`, the function behind ``popbatch score``;
a typed-in track is a one-row Arrow batch through
:class:`~popbatch.batch.batches.BatchScorer`, the block ``popbatch score``
runs on each batch (:class:`TrackScorer`), with the same model bundle. So the app and
the command cannot disagree: same checks, same reject reasons, same ONNX
session options, and the heads' ``popularity_pred``, ``genre_pred``,
``genre_prob`` when the model has them. This module imports no Streamlit;
``popbatch/cli/app.py`` draws it.

>>> from popbatch.core.bundle import load_model
>>> model = load_model()
>>> fields = input_fields(model.manifest)
>>> [f.column for f in fields][:3], fields[2].default      # danceability's median, rounded
(['duration_ms', 'explicit', 'danceability'], 0.578)
>>> result = score_track({f.column: f.default for f in fields}, model)
>>> 0 <= result.probability <= 1, result.popular == (result.probability >= model.threshold)
(True, True)
"""

from __future__ import annotations

import csv
import functools
import inspect
import math
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from popbatch.batch.batches import BatchScorer
from popbatch.batch.preprocess import REASON_COLUMN, Preprocessor
from popbatch.batch.runner import OnnxScorer
from popbatch.batch.score import score
from popbatch.core.bundle import ModelBundle, load_model
from popbatch.core.errors import InputError

#: Rows an upload may have: the app is for a quick look, ``popbatch score`` for catalogs.
UPLOAD_ROW_LIMIT = 10_000
#: Head columns shown when the scored table has them (``popbatch score`` writes them).
HEAD_COLUMNS = ("popularity_pred", "genre_pred", "genre_prob")
EXPLICIT = "explicit"


@dataclass(frozen=True)
class InputField:
    """One model input as a form field: bounds from the manifest, default its median."""

    column: str
    kind: str  # "number", "integer", "flag" (explicit), "choice" (genre), "text" (priors)
    default: Any
    valid_min: float | None = None
    valid_max: float | None = None
    decimals: int = 0
    options: tuple[str, ...] = ()
    help: str = ""

    @property
    def step(self) -> float | int:
        return 1 if self.kind == "integer" else 10.0 ** (-self.decimals)

    @property
    def number_format(self) -> str:
        return "%d" if self.kind == "integer" else f"%.{self.decimals}f"


def input_fields(manifest: Mapping[str, Any]) -> list[InputField]:
    """Every model input, in the manifest's order, then the genre when the model uses one."""
    fields: list[InputField] = []
    for feature in manifest["features"]:
        if feature["kind"] != "numeric":
            continue
        column = feature["column"]
        low, high = feature.get("valid_min"), feature.get("valid_max")
        median = _median(feature)
        bounds = f"valid {_bound(low, '-inf')} to {_bound(high, 'inf')}"
        if column == EXPLICIT:
            fields.append(InputField(column, "flag", bool(median >= 0.5), low, high, help=bounds))
            continue
        integer = _integral(feature)
        decimals = 0 if integer else _decimals(median, low, high)
        default = round(median, decimals)
        if low is not None:
            default = max(default, low)
        if high is not None:
            default = min(default, high)
        fields.append(
            InputField(
                column,
                "integer" if integer else "number",
                int(default) if integer else float(default),
                low,
                high,
                decimals,
                help=f"training median {_plain(median)}; {bounds}",
            )
        )
    genre = manifest.get("genre")
    if genre:
        vocabulary = tuple(genre["vocabulary"])
        shares = {
            f.get("category"): f.get("train", {}).get("share", 0.0)
            for f in manifest["features"]
            if f["kind"] == "onehot"
        }
        common = max(vocabulary, key=lambda g: shares.get(g, 0.0)) if vocabulary else genre["other"]
        fields.append(
            InputField(
                genre["column"],
                "choice",
                common,
                options=(*vocabulary, genre["other"]),
                help=f"{len(vocabulary)} genres the model knows; any other genre is "
                f"{genre['other']}",
            )
        )
    for column in (manifest.get("priors") or {}).get("columns", []):
        several = "; several artists separated by ';'" if column == "artists" else ""
        fields.append(
            InputField(
                column,
                "text",
                "",
                help=f"the model reads this {column.replace('_', ' ')}'s history in its "
                f"training rows{several}; empty: unknown",
            )
        )
    return fields


def _median(feature: Mapping[str, Any]) -> float:
    train = feature.get("train") or {}
    value = (train.get("quantiles") or {}).get("0.5", feature.get("impute"))
    if value is None:
        low, high = feature.get("valid_min"), feature.get("valid_max")
        value = (low + high) / 2 if low is not None and high is not None else (low or 0.0)
    return float(value)


def _integral(feature: Mapping[str, Any]) -> bool:
    """Whole numbers only in training (key, mode, time_signature): the range, the
    median and the drift bins' edges (quantiles are interpolated, so not those)."""
    train = feature.get("train") or {}
    edges = (train.get("bins") or {}).get("edges") or []
    median = (train.get("quantiles") or {}).get("0.5")
    values = [*edges, median, train.get("min"), train.get("max")]
    values = [v for v in values if v is not None]
    return bool(values) and all(float(v).is_integer() for v in values)


def _decimals(median: float, low: float | None, high: float | None) -> int:
    """Three significant figures of the median, never fewer than units."""
    if median == 0:
        return 3 if high is not None and low is not None and high - low <= 1 else 0
    return max(0, min(7, 2 - math.floor(math.log10(abs(median)))))


def _bound(value: float | None, infinite: str) -> str:
    return infinite if value is None else _plain(value)


def _plain(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1e5 else f"{value:,.0f}"


# ------------------------------------------------------------------ scoring
@dataclass
class Scored:
    """What ``popbatch score`` wrote for an input: the scored table and the rejects."""

    table: pa.Table
    rejects: pa.Table | None
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def heads(self) -> list[str]:
        """The head columns present (popularity_pred, genre_pred, genre_prob)."""
        return [c for c in HEAD_COLUMNS if c in self.table.column_names]

    def reject_reasons(self) -> list[tuple[str, int]]:
        """(reason, count), most frequent first; each row's reasons split at '; '."""
        if self.rejects is None or self.rejects.num_rows == 0:
            return []
        counts: dict[str, int] = {}
        for text in self.rejects.column("reason").to_pylist():
            for reason in str(text).split("; "):
                counts[reason] = counts.get(reason, 0) + 1
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


@dataclass(frozen=True)
class TrackResult:
    """One track's scores, as ``popbatch score`` writes them."""

    probability: float
    popular: bool
    threshold: float
    popularity: float | None = None
    genre: str | None = None
    genre_probability: float | None = None
    seconds: float = 0.0


def score_file(path: str | Path, model: ModelBundle, limit: int = UPLOAD_ROW_LIMIT) -> Scored:
    """Score a CSV or Parquet file of at most ``limit`` rows with ``popbatch score``.

    Raises
    ------
    InputError
        More than ``limit`` rows, or whatever ``popbatch score`` refuses
        (unknown type, missing columns, ...), with its one-line message.
    """
    path = Path(path)
    rows = count_rows(path)
    if rows > limit:
        raise InputError(
            f"{path.name}: {rows:,} rows; the app scores at most {limit:,}, "
            "use popbatch score for larger files"
        )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="popbatch-app-") as work:
        out = Path(work) / "scored.parquet"
        rejects = Path(work) / "rejects.parquet"
        summary = score(
            path,
            out,
            model=model,
            columns="all",
            rejects=rejects,
            record=False,
            threads=1,
            refuse_all_rejected=False,  # a row's reason is what the page shows
        )
        table = pq.read_table(out)
        rejected = pq.read_table(rejects) if rejects.exists() else None
    return Scored(table, rejected, time.perf_counter() - started, summary.to_dict())


def count_rows(path: Path) -> int:
    """Rows of a Parquet file (from its footer) or a CSV file (lines after the header)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (OSError, pa.ArrowException):
            return 0  # popbatch score says what is wrong with it
    lines, last = 0, b"\n"
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1  # the last line has no newline
    return max(0, lines - 1)


class TrackScorer:
    """Scores one typed-in track at a time, as ``popbatch score`` scores a batch.

    A track is a one-row Arrow batch that goes through
    :class:`~popbatch.batch.batches.BatchScorer`, the per-batch block of
    ``popbatch score`` (and ``popbatch.score_batches``): the same
    :class:`~popbatch.batch.preprocess.Preprocessor` checks and reject
    reasons, the same :class:`~popbatch.batch.runner.OnnxScorer` session
    options, the same scored-table columns, on the same verified bundle. Only
    the session is kept between tracks: making it costs about 130 ms, a track
    about 4 ms. The heads' columns (popularity, genre) are read when the
    scored row has them.
    """

    def __init__(self, model: ModelBundle) -> None:
        self.model = model
        options: dict[str, Any] = {"threads": 1}
        if "heads" in inspect.signature(OnnxScorer).parameters:
            options["heads"] = tuple(getattr(model, "heads", ("popular",)))
        self.scorer = OnnxScorer(model, **options)

    def score(self, values: Mapping[str, Any]) -> TrackResult:
        """Score ``{column: value}`` (the :func:`input_fields` columns).

        Raises
        ------
        InputError
            The scorer's own reason when it rejects the row (for example
            ``danceability 1.5 is outside [0, 1]``).
        """
        started = time.perf_counter()
        batch = one_row(values).to_batches()[0]
        preprocessor = Preprocessor(self.model.manifest, columns="all").bind(batch.schema, "track")
        scored, rejects = BatchScorer(preprocessor, self.scorer, datetime.now(UTC)).score(batch)
        if rejects is not None and rejects.num_rows:
            raise InputError(str(rejects.column(REASON_COLUMN)[0].as_py()))
        row = scored.to_pylist()[0]
        return TrackResult(
            probability=float(row["popularity_prob"]),
            popular=bool(row["popular"]),
            threshold=self.model.threshold,
            popularity=_maybe_float(row.get("popularity_pred")),
            genre=row.get("genre_pred"),
            genre_probability=_maybe_float(row.get("genre_prob")),
            seconds=time.perf_counter() - started,
        )


@functools.lru_cache(maxsize=4)
def cached_model(directory: str | None) -> ModelBundle:
    """The verified bundle of ``directory`` (None: the embedded model), loaded once per process."""
    return load_model(directory)


@functools.lru_cache(maxsize=4)
def cached_track_scorer(directory: str | None) -> TrackScorer:
    """A :class:`TrackScorer` of ``directory``, made once per process (the app's server
    makes it before the first page is asked for, see ``popbatch.cli.app.serve``)."""
    return TrackScorer(cached_model(directory))


def score_track(values: Mapping[str, Any], model: ModelBundle) -> TrackResult:
    """:meth:`TrackScorer.score` with a new session (keep a :class:`TrackScorer` to reuse one)."""
    return TrackScorer(model).score(values)


def pasted_row(text: str) -> dict[str, str]:
    """``{column: text}`` of a pasted CSV header line and one row (values stay text,
    as ``popbatch score`` reads a CSV file, so its checks and messages apply).

    Raises
    ------
    InputError
        Not exactly one row under the header, or a row longer than the header.
    """
    lines = [line for line in text.strip().splitlines() if line.strip()]
    delimiter = "\t" if lines and "\t" in lines[0] else ","
    rows = list(csv.reader(lines, delimiter=delimiter))
    if len(rows) != 2:
        raise InputError(
            f"pasted text: {max(len(rows) - 1, 0)} rows; paste a header line and one row"
        )
    header, values = rows
    if len(values) != len(header):
        raise InputError(
            f"pasted text: the row has {len(values)} fields but the header {len(header)}"
        )
    return dict(zip(header, values, strict=True))


def one_row(values: Mapping[str, Any]) -> pa.Table:
    """A one-row table: numbers as float64, ``explicit`` as a boolean, text as text."""
    columns = {}
    for column, value in values.items():
        if isinstance(value, bool):
            columns[column] = pa.array([value], pa.bool_())
        elif isinstance(value, int | float):
            columns[column] = pa.array([float(value)], pa.float64())
        else:
            columns[column] = pa.array([None if value is None else str(value)], pa.string())
    return pa.table(columns)


def _maybe_float(value: Any) -> float | None:
    return None if value is None else float(value)


# ------------------------------------------------------------------ explain
#: The key a typed-in track gets when it is explained (popbatch explain selects by key).
TRACK_KEY = "(this track)"
#: Real tracks shipped with popbatch: the background popbatch explain samples when a
#: model stores none of its own (the embedded default model stores none).
SAMPLE_CATALOG = Path(str(resources.files("popbatch.batch"))) / "sample" / "catalog.csv"


@dataclass(frozen=True)
class Reason:
    """One feature's Shapley contribution to a track's score (``popbatch explain``)."""

    feature: str
    value: str
    contribution: float
    unit: str
    label: str = ""
    """The feature and its value in words (a catalog prior: ``artist history: mean
    popularity 64``); empty: ``feature value``."""

    def text(self) -> str:
        way = "raises" if self.contribution > 0 else "lowers"
        what = self.label or f"{self.feature} {self.value}"
        return f"{what} {way} it by {abs(self.contribution):.3f} {self.unit}"


class Reasons(list):
    """The top :class:`Reason` s, largest first, and the explanation's ends: the base
    value (the average over the background) and the track's prediction, both in the
    reasons' unit, for a waterfall from one to the other."""

    base_value: float = 0.0
    prediction: float = 0.0

    def steps(self) -> list[tuple[str, float, float]]:
        """``(label, start, end)``: the base value, each reason, the other features
        together, and the prediction."""
        steps = [("average track", 0.0, self.base_value)]
        level = self.base_value
        for reason in self:
            steps.append((reason.label or f"{reason.feature} {reason.value}", level,
                          level + reason.contribution))  # fmt: skip
            level += reason.contribution
        if abs(self.prediction - level) > 1e-12:
            steps.append(("all other features", level, self.prediction))
        steps.append(("this track", 0.0, self.prediction))
        return steps


def explain_available() -> bool:
    """Whether this popbatch has ``popbatch.explain`` (importing it if so)."""
    try:
        from popbatch.batch.explain import selection  # noqa: F401
    except ImportError:
        return False
    return True


def explain_track(values: Mapping[str, Any], model: ModelBundle, top: int = 5) -> Reasons | None:
    """The ``top`` features that moved this track's score most, largest first, from
    ``popbatch.explain`` (per-feature Shapley contributions of the popular head).

    The track is explained beside the sample catalog's real tracks, which are the
    background when the model stores none. None when this popbatch has no
    ``popbatch.explain``.
    """
    if not explain_available():
        return None
    from popbatch.batch.explain.selection import explain

    key = str(model.manifest.get("key") or "track_id")
    row = one_row({**values, key: TRACK_KEY})
    table = pa.concat_tables([row, _background(row.schema)])
    with tempfile.TemporaryDirectory(prefix="popbatch-app-") as work:
        path = Path(work) / "track.parquet"
        pq.write_table(table, path)
        result = explain(str(path), model=model, keys=[TRACK_KEY], key=key)
    from popbatch.core.priors import describe, is_prior_feature

    rows = [r for r in result.table.to_pylist() if r[key] == TRACK_KEY]
    rows.sort(key=lambda r: r["rank"])
    reasons = Reasons(
        Reason(
            r["feature"],
            str(r["category"]) if r.get("category") is not None else _plain(r["value"]),
            float(r["contribution"]),
            result.unit,
            describe(r["feature"], r["value"]) if is_prior_feature(r["feature"]) else "",
        )
        for r in rows[:top]
    )
    if rows:
        reasons.base_value = float(rows[0]["base_value"])
        reasons.prediction = float(rows[0]["prediction"])
    return reasons


@functools.lru_cache(maxsize=8)
def _background(schema: pa.Schema) -> pa.Table:
    """The sample catalog's rows in ``schema`` (none when it lacks one of its columns)."""
    import pyarrow.csv as pacsv

    catalog = pacsv.read_csv(SAMPLE_CATALOG)
    if not set(schema.names) <= set(catalog.column_names):
        return schema.empty_table()
    columns = [catalog.column(f.name).cast(f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)
