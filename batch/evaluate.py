"""``popbatch evaluate`` as a Python API: score labelled rows, compare with the labels.

>>> import popbatch
>>> result = popbatch.evaluate("labelled.csv", log="evaluations.jsonl")   # doctest: +SKIP
>>> result.to_dict()["heads"]["popular"]["metrics"]["roc_auc"]             # doctest: +SKIP
0.83

The rows are scored exactly as ``popbatch score`` scores them: the same
:class:`~popbatch.batch.sources.Source`, the same
:class:`~popbatch.batch.preprocess.Preprocessor` (so ``--map``, ``--fill``
and the rejects are the same) and the same
:class:`~popbatch.batch.batches.BatchScorer`. The labels are read beside the
scores:

- ``popularity`` (0-100): the popular label through the model's own rule
  (the manifest's ``label``, e.g. ``popularity > 71``) for the popular head, and
  the target of the popularity head;
- ``track_genre``: the target of the genre head. Top-3 accuracy needs every
  class's probability, which the scored table does not hold: they come from
  the model's genre head itself (:mod:`~popbatch.batch.genre_probabilities`).

A head whose label is absent is skipped with a note; a column only given by
``--fill`` is a constant, not a label. Rows whose key is in the model's
training-keys fingerprint (:mod:`popbatch.core.fingerprint`) are counted as
in-sample and left out of the headline figures.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from popbatch.batch import evaluate_heads as eh
from popbatch.batch.batches import BatchScorer
from popbatch.batch.evaluate_slices import SLICES, group_table, slice_columns
from popbatch.batch.preprocess import Preprocessor
from popbatch.batch.runner import OnnxScorer
from popbatch.batch.sources import Source, open_source
from popbatch.batch.summary import ProgressCallback

from popbatch.core import DEFAULT_BATCH_SIZE, __version__, fingerprint
from popbatch.core.bundle import ModelBundle, load_model
from popbatch.core.errors import InputError
from popbatch.core.features import (
    DEFAULT_POPULAR_ABOVE,
    GENRE_COLUMN,
    LABEL_COLUMN,
    normalize_column_name,
    resolve_columns,
)
from popbatch.core.scored import LABEL_COLUMN as POPULAR_COLUMN
from popbatch.core.scored import PROBABILITY_COLUMN

__all__ = ["EvaluateOptions", "Evaluation", "evaluate", "parse_floors"]

Inputs = str | Path | Sequence[str | Path]
Say = Callable[[str], None]
#: the label column each head is compared with
HEAD_LABELS = {"popular": LABEL_COLUMN, "popularity": LABEL_COLUMN, "genre": GENRE_COLUMN}


@dataclass
class EvaluateOptions:
    """How :func:`evaluate` reads, scores and reports; every field has the CLI's default.

    ``table``, ``query``, ``delimiter``, ``maps``, ``fills``, ``key``,
    ``batch_size``, ``threads``: as for :class:`~popbatch.batch.score.ScoreOptions`.
    ``resamples``: bootstrap resamples per interval (0: no intervals);
    ``seed``: their seed. ``fail_under``: ``{"popular.roc_auc": 0.9}``, floors
    the figures are checked against (a ceiling for figures where lower is
    better: brier, mae, rmse). ``log``: where the evaluation is recorded (see
    :func:`~popbatch.batch.evaluation_log.log_target`); ``record=False``
    records nothing.
    """

    table: str | None = None
    query: str | None = None
    delimiter: str = ","
    maps: Mapping[str, str] = field(default_factory=dict)
    fills: Mapping[str, str] = field(default_factory=dict)
    key: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    threads: int | None = None
    resamples: int = eh.DEFAULT_RESAMPLES
    seed: int = eh.DEFAULT_SEED
    fail_under: Mapping[str, float] = field(default_factory=dict)
    log: str | Path | None = None
    record: bool = True
    wait: float = 0


# ---------------------------------------------------------------------------
# Scoring the labelled rows


ROW_ARRAYS = (
    "row",
    "probability",
    "popular",
    "popularity_pred",
    "genre_pred",
    "genre_top3",
    "key_hashes",
)


@dataclass
class Scored:
    """One model's scores of the labelled rows, with the input columns read beside them."""

    input: str
    bundle: ModelBundle
    rows_read: int
    rows_rejected: int
    row: np.ndarray  # input row number (from 1) of each scored row
    probability: np.ndarray
    popular: np.ndarray
    heads: tuple[str, ...]
    popularity_pred: np.ndarray | None = None
    genre_pred: np.ndarray | None = None  # class index
    genre_top3: np.ndarray | None = None  # the label among the 3 most probable classes
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    key_hashes: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> Scored:
        values = {}
        for name in ROW_ARRAYS:
            array = getattr(self, name)
            values[name] = None if array is None else array[rows]
        columns = {n: v[rows] for n, v in self.columns.items()}
        return dataclasses.replace(self, columns=columns, **values)


def _as_paths(inputs: Inputs) -> list[str]:
    return [str(inputs)] if isinstance(inputs, str | Path) else [str(i) for i in inputs]


def label_plan(
    schema: pa.Schema, bundle: ModelBundle, options: EvaluateOptions, name: str
) -> tuple[list[str], dict[str, str], str | None]:
    """(columns to read beside the scores, {skipped head: why}, key column or None).

    Raises
    ------
    InputError
        The input has neither label: nothing to evaluate.
    """
    final = set(resolve_columns(list(schema.names), options.maps, name).values())
    key = normalize_column_name(options.key or bundle.manifest.get("key") or "track_id")
    skipped: dict[str, str] = {}
    for head in bundle.heads:
        label = HEAD_LABELS[head]
        if label not in final:
            filled = " (a --fill constant is not a label)" if label in options.fills else ""
            skipped[head] = f"the input has no {label} column{filled}"
    if len(skipped) == len(bundle.heads):
        raise InputError(
            f"{name}: no label to evaluate against: the input needs {LABEL_COLUMN} (0-100) "
            f"or {GENRE_COLUMN}; name yours with --map {LABEL_COLUMN}=COLUMN"
        )
    wanted = [key, LABEL_COLUMN, GENRE_COLUMN, *slice_columns()]
    return (
        [c for c in dict.fromkeys(wanted) if c in final],
        skipped,
        (key if key in final else None),
    )


def score_labelled(
    inputs: Inputs | Source,
    bundle: ModelBundle,
    options: EvaluateOptions,
    progress: ProgressCallback | None = None,
    say: Say | None = None,
) -> tuple[Scored, dict[str, str], str | None]:
    """Score the rows as ``popbatch score`` does and read the labels beside the scores.

    Returns the scores, the skipped heads with the reason, and the key column.
    ``say`` gets one line once the input's columns are checked.
    """
    source = (
        inputs
        if isinstance(inputs, Source)
        else open_source(
            _as_paths(inputs),
            table=options.table,
            query=options.query,
            delimiter=options.delimiter,
            wait=options.wait,
        )
    )
    try:
        columns, skipped, key = label_plan(source.schema, bundle, options, source.name)
        heads = tuple(h for h in bundle.heads if h not in skipped or h == "popular")
        preprocessor = Preprocessor(
            bundle.manifest,
            key=key,
            columns=columns or "key",
            maps=options.maps or {},
            fills=options.fills or {},
            on_invalid="reject",
        ).bind(source.schema, source.name)
        if say is not None:
            say(f"scoring {source.name} with model {bundle.model_id[:12]} ({', '.join(heads)})")
        genre_probs = None
        if "genre" in heads:
            from popbatch.batch.genre_probabilities import GenreProbabilities

            genre_probs = GenreProbabilities(bundle)
        with OnnxScorer(bundle, options.threads, heads=heads) as scorer:
            scoring = BatchScorer(preprocessor, scorer, datetime.now(UTC), heads)
            parts: dict[str, list[np.ndarray]] = {}
            read = rejected = 0
            total = source.total_rows
            for batch in source.batches(preprocessor.read_columns, options.batch_size):
                prepared, hashes = scoring.prepare(batch, read + 1)
                probability, popular, extra = scoring.predict(prepared)
                scored = scoring.assemble(prepared, hashes, probability, popular, extra)
                valid = np.ones(batch.num_rows, bool)
                if prepared.rejects is not None:
                    valid[prepared.rejects.column(0).to_numpy() - read - 1] = False
                _add(parts, "row", np.flatnonzero(valid) + read + 1)
                _add(parts, "probability", scored.column(PROBABILITY_COLUMN).to_numpy())
                _add(parts, "popular", scored.column(POPULAR_COLUMN).to_numpy(False))
                if "popularity" in heads:
                    _add(parts, "popularity_pred", extra["popularity_pred"])
                for name in columns:
                    _add(parts, "col:" + name, _values(scored.column(name)))
                if genre_probs is not None:
                    _, matrix = genre_probs(prepared.features)
                    _add(parts, "genre_pred", extra["genre_index"])
                    _add(
                        parts,
                        "genre_top3",
                        _top3(matrix, scored.column(GENRE_COLUMN), genre_probs.classes),
                    )
                read += batch.num_rows
                rejected += prepared.rows_rejected
                if progress is not None:
                    progress(read, total)
    finally:
        source.close()
    joined = {n: np.concatenate(v) if v else np.zeros(0) for n, v in parts.items()}
    result = Scored(
        input=source.name,
        bundle=bundle,
        rows_read=read,
        rows_rejected=rejected,
        row=joined.get("row", np.zeros(0, np.int64)).astype(np.int64),
        probability=joined.get("probability", np.zeros(0)).astype(np.float64),
        popular=joined.get("popular", np.zeros(0, bool)).astype(bool),
        heads=heads,
        popularity_pred=joined.get("popularity_pred"),
        genre_pred=joined.get("genre_pred"),
        genre_top3=joined.get("genre_top3"),
        columns={n: joined.get("col:" + n, np.zeros(0, object)) for n in columns},
    )
    if key is not None:
        result.key_hashes = fingerprint.key_hashes(result.columns[key].tolist())
    return result, skipped, key


def _add(parts: dict[str, list[np.ndarray]], name: str, values: np.ndarray) -> None:
    parts.setdefault(name, []).append(np.asarray(values))


def _values(column: pa.Array) -> np.ndarray:
    return np.array(column.to_pylist(), dtype=object)


def _genre_labels(values: np.ndarray) -> np.ndarray:
    """The genre label as the preprocessor reads a genre: stripped, lower case; None kept."""
    return np.array(
        [
            None if v is None or str(v).strip() == "" else str(v).strip().lower()
            for v in values.tolist()
        ],
        dtype=object,
    )


def _top3(matrix: np.ndarray, genres: pa.Array, classes: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(classes)}
    labels = _genre_labels(_values(genres))
    truth = np.array([index.get(g, -1) if g is not None else -1 for g in labels], np.int64)
    best = np.argsort(matrix, axis=1, kind="mergesort")[:, ::-1][:, :3]
    return np.any(best == truth[:, None], axis=1)


def popularity_labels(scored: Scored) -> np.ndarray:
    """The ``popularity`` label as float64 (NaN where missing or not a number)."""
    values = scored.columns.get(LABEL_COLUMN)
    if values is None:
        return np.full(len(scored.row), np.nan)
    series = pl.Series(values.tolist(), dtype=pl.String, strict=False).str.strip_chars()
    return series.cast(pl.Float64, strict=False).fill_null(float("nan")).to_numpy()


def head_rows(scored: Scored, head: str) -> tuple[eh.HeadRows, np.ndarray]:
    """A head's rows with their labels, and which scored rows they are (bool mask)."""
    manifest = scored.bundle.manifest
    if head in ("popular", "popularity"):
        y = popularity_labels(scored)
        labelled = ~np.isnan(y)
        if head == "popular":
            above = float((manifest.get("label") or {}).get("popular_above", DEFAULT_POPULAR_ABOVE))
            rows = eh.PopularRows(
                y[labelled] > above, scored.probability[labelled], scored.popular[labelled]
            )
        else:
            rows = eh.PopularityRows(y[labelled], scored.popularity_pred[labelled])
        return rows, labelled
    genres = _genre_labels(scored.columns[GENRE_COLUMN])
    labelled = np.array([g is not None for g in genres], bool)
    classes = list(manifest["heads"]["genre"].get("classes", []))
    index = {name: i for i, name in enumerate(classes)}
    unknown: dict[str, int] = {}
    codes = np.array(
        [
            index[g] if g in index else unknown.setdefault(g, len(classes) + len(unknown))
            for g in genres[labelled].tolist()
        ],
        np.int64,
    )
    rows = eh.GenreRows(codes, scored.genre_pred[labelled], scored.genre_top3[labelled])
    return rows, labelled


def label_definition(manifest: Mapping[str, Any], head: str) -> str:
    if head == "popular":
        label = manifest.get("label") or {}
        return str(label.get("definition") or f"{LABEL_COLUMN} > {DEFAULT_POPULAR_ABOVE}")
    return HEAD_LABELS[head]


# ---------------------------------------------------------------------------
# The evaluation


@dataclass
class Evaluation:
    """The figures of one evaluation: :meth:`to_dict` is what ``--json`` prints.

    ``plots`` holds the headline rows' arrays the HTML report draws from.
    """

    report: dict[str, Any]
    plots: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return self.report

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The ``--fail-under`` checks that did not pass."""
        return [c for c in self.report.get("fail_under", []) if not c["passed"]]

    def lines(self) -> list[str]:
        """A few lines for a terminal: rows, in-sample share, each head's main figures."""
        r = self.report
        rows = r["rows"]
        sample = r["in_sample"]
        share = (
            "unknown" if sample["rows"] is None else f"{sample['rows']:,} ({sample['share']:.1%})"
        )
        out = [
            f"evaluated {r['input']} with model {r['model']['id'][:12]}: "
            f"{rows['read']:,} rows read, "
            f"{rows['scored']:,} scored, {rows['rejected']:,} rejected; in the training data: "
            f"{share}; headline on {r['headline']}",
        ]
        for head, section in r["heads"].items():
            shown = []
            for name in SUMMARY_METRICS[head]:
                value = section["metrics"].get(name)
                interval = section["intervals"].get(name)
                text = "n/a" if value is None else f"{value:.4f}"
                if interval:
                    text += f" [{interval[0]:.4f}, {interval[1]:.4f}]"
                shown.append(f"{name} {text}")
            out.append(f"  {head:<10} ({section['counts']['rows']:,} rows) " + ", ".join(shown))
        inside = r.get("in_sample_metrics") or {}
        for head, why in r["skipped"].items():
            out.append(f"  {head:<10} skipped: {why}")
            if head in inside:  # no headline rows: the in-sample figures, said to be such
                figures = inside[head]["metrics"]
                shown = ", ".join(f"{n} {_fmt(figures.get(n))}" for n in SUMMARY_METRICS[head])
                rows_in = inside[head]["rows"]
                out.append(f"  {'':<10} in-sample only ({rows_in:,} rows, inflated): {shown}")
        for check in r.get("fail_under", []):
            if not check["passed"]:
                sign = ">" if check["lower_is_better"] else "<"
                value = _fmt(check["value"])
                out.append(f"  below floor: {check['metric']} {value} {sign} {check['floor']}")
        return out


SUMMARY_METRICS = {
    "popular": ("roc_auc", "pr_auc", "f1"),
    "popularity": ("r2", "mae"),
    "genre": ("accuracy", "top3_accuracy"),
}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def clean(value: Any) -> Any:
    """NaN -> None (JSON null), numpy scalars -> Python, recursively."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def parse_floors(floors: Mapping[str, float | str]) -> dict[str, float]:
    """Check ``{"popular.roc_auc": 0.9}`` names real figures; returns the floats.

    Raises
    ------
    InputError
        An unknown head or figure, or a value that is not a number.
    """
    out = {}
    for name, value in floors.items():
        head, _, figure = str(name).partition(".")
        known = [f"{h}.{m.name}" for h in eh.METRICS for m in eh.METRICS[h]]
        if f"{head}.{figure}" not in known:
            raise InputError(f"--fail-under {name}: no such figure; choose from {', '.join(known)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise InputError(f"--fail-under {name}={value}: the floor is not a number") from None
    return out


def in_sample_rows(scored: Scored, key: str | None) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Which scored rows the model was trained on (None: unknown), and how that was decided."""
    keys = fingerprint.read_fingerprint(scored.bundle.directory, scored.bundle.manifest)
    if keys is None:
        return None, {
            "known": False,
            "rows": None,
            "share": None,
            "how": "unknown: the model carries no training-keys fingerprint "
            "(exported before evaluate existed)",
        }
    if key is None or scored.key_hashes is None:
        return None, {
            "known": False,
            "rows": None,
            "share": None,
            "how": "unknown: the input has no key column to match",
        }
    seen = fingerprint.seen(scored.key_hashes, keys)
    n = int(seen.sum())
    return seen, {
        "known": True,
        "rows": n,
        "share": n / len(seen) if len(seen) else 0.0,
        "how": f"{key} matched against the model's fingerprint of {keys.size:,} training keys",
    }


def figures_of(
    heads: Mapping[str, eh.HeadRows], resamples: int, seed: int, say: Say
) -> dict[str, dict[str, Any]]:
    """Per head: counts, exact figures and bootstrap intervals."""
    if resamples and heads:
        sizes = ", ".join(f"{h} {len(r):,} rows" for h, r in heads.items())
        say(f"bootstrap: {resamples:,} resamples (seed fixed) of {sizes}")
    intervals = eh.bootstrap(heads, resamples, seed)
    return {
        head: {"counts": rows.counts, "metrics": rows.figures(), "intervals": intervals[head]}
        for head, rows in heads.items()
    }


def slices_of(
    scored: Scored, heads: Mapping[str, tuple[eh.HeadRows, np.ndarray]]
) -> dict[str, Any]:
    """Every registered slice: per head, each group's main figure and counts."""
    out: dict[str, Any] = {}
    for name, spec in SLICES.items():
        columns = {c: scored.columns[c] for c in spec.columns if c in scored.columns}
        groups, why = spec.groups(columns, scored.bundle.manifest)
        if groups is None:
            out[name] = {"description": spec.description, "skipped": why}
            continue
        section: dict[str, Any] = {"description": spec.description, "heads": {}}
        for head, (rows, labelled) in heads.items():
            main = eh.MAIN_METRIC[head]
            direction = eh.metric(head, main).higher_is_better

            def figure(at: np.ndarray, rows=rows, main=main):
                part = rows.take(at)
                return part.figures()[main], part.counts

            table = group_table(groups[labelled], figure, direction, spec.ranked)
            section["heads"][head] = {"metric": main, "higher_is_better": direction, **table}
        out[name] = section
    return out


def evaluate(
    source: Inputs | Source,
    model: ModelBundle | str | Path | None = None,
    options: EvaluateOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
    say: Say | None = None,
    **overrides: Any,
) -> Evaluation:
    """Score labelled rows with a model and measure it against the labels.

    >>> import popbatch
    >>> result = popbatch.evaluate("labelled.parquet", "models/candidate",   # doctest: +SKIP
    ...                            fail_under={"popular.roc_auc": 0.8})
    >>> result.failed                                                       # doctest: +SKIP
    []

    Parameters
    ----------
    source
        Labelled rows: path(s) as for ``popbatch score``, or a
        :class:`~popbatch.batch.sources.Source`.
    model
        A model directory, a :class:`~popbatch.core.bundle.ModelBundle`, or None
        for the embedded default.
    options
        An :class:`EvaluateOptions`; ``overrides`` replace its fields by name.
    progress
        ``progress(rows_read_so_far, total_or_None)`` after each batch.
    say
        Called with one line per stage (scoring, bootstrap, recording).

    Returns
    -------
    Evaluation
        ``to_dict()`` is the JSON of ``popbatch evaluate --json``.

    Raises
    ------
    InputError, SchemaError
        Unreadable input, a missing model input column, no label column, a bad
        ``fail_under`` name (exit code 2 in the CLI).
    ModelError, OutputError
        The model cannot be used; the log cannot be written (exit code 1).
    """
    try:
        options = dataclasses.replace(options or EvaluateOptions(), **overrides)
    except TypeError as exc:
        raise InputError(f"evaluate(): {exc}") from None
    say = say or (lambda line: None)
    if options.resamples < 0:
        raise InputError(f"--resamples must be 0 or more, got {options.resamples}")
    floors = parse_floors(options.fail_under)
    started = time.perf_counter()
    bundle = model if isinstance(model, ModelBundle) else load_model(model)
    scored, skipped, key = score_labelled(source, bundle, options, progress, say)
    in_sample, sample_info = in_sample_rows(scored, key)
    headline = scored if in_sample is None else scored.take(np.flatnonzero(~in_sample))
    # a head left without headline rows because every labelled row is in-sample says so
    # (not "no label"), and its in-sample figures are still measured below
    inside_only = None
    if in_sample is not None and len(scored.row) and in_sample.all():
        inside_only = "every scored row is in the model's training data"
    evaluation = build_report(headline, dict(skipped), options, say, inside_only)
    report = evaluation.report
    report["rows"] = {
        "read": scored.rows_read,
        "scored": len(scored.row),
        "rejected": scored.rows_rejected,
        "in_sample": sample_info["rows"],
        "evaluated": len(headline.row),
    }
    report["in_sample"] = sample_info
    report["headline"] = (
        f"the {len(headline.row):,} scored rows not in the training data"
        if in_sample is not None
        else f"all {len(scored.row):,} scored rows (in-sample share unknown)"
    )
    if in_sample is not None and in_sample.any():
        inside = scored.take(np.flatnonzero(in_sample))
        report["in_sample_metrics"] = {
            head: {"rows": len(rows), "metrics": rows.figures()}
            for head, (rows, _) in _heads_of(inside, skipped).items()
            if len(rows)
        }
    report["fail_under"] = check_floors(report, floors)
    report["seconds"] = round(time.perf_counter() - started, 3)
    report = clean(report)
    evaluation.report = report
    if options.record:
        from popbatch.batch.evaluation_log import log_target, record_evaluation

        target = log_target(source, options)
        say(f"recording the evaluation in {target}")
        report["log"] = str(target)
        record_evaluation(target, report, wait=options.wait)
    return evaluation


def _heads_of(scored: Scored, skipped: Mapping[str, str]) -> dict[str, tuple[eh.HeadRows, Any]]:
    return {h: head_rows(scored, h) for h in scored.heads if h not in skipped}


def build_report(
    scored: Scored,
    skipped: dict[str, str],
    options: EvaluateOptions,
    say: Say,
    empty_why: str | None = None,
) -> Evaluation:
    """The report of the headline rows (without rows, in-sample and floors, set by the
    caller); a head without rows is skipped, saying ``empty_why`` when given."""
    heads = _heads_of(scored, skipped)
    empty = [h for h, (rows, _) in heads.items() if len(rows) == 0]
    for head in empty:
        skipped[head] = empty_why or f"no row has a {HEAD_LABELS[head]} label"
        del heads[head]
    manifest = scored.bundle.manifest
    figures = figures_of(
        {h: r for h, (r, _) in heads.items()}, options.resamples, options.seed, say
    )
    for head, (_, labelled) in heads.items():
        figures[head] = {
            "label": label_definition(manifest, head),
            "main": eh.MAIN_METRIC[head],
            **figures[head],
            "unlabelled_rows": int((~labelled).sum()),
        }
    notes = []
    if "genre" in heads:
        rows = heads["genre"][0]
        unseen = int(np.sum(rows.y >= len(manifest["heads"]["genre"].get("classes", []))))
        if unseen:
            notes.append(f"{unseen:,} rows have a genre the genre head never saw (always wrong)")
    report = {
        "popbatch_version": __version__,
        "evaluated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "input": scored.input,
        "model": {"id": scored.bundle.model_id, "dir": str(scored.bundle.directory)},
        "bootstrap": {
            "resamples": options.resamples,
            "seed": options.seed,
            "level": eh.LEVEL,
            "method": "percentile intervals of row resamples with replacement",
        },
        "heads": figures,
        "skipped": skipped,
        "slices": slices_of(scored, heads),
        "notes": notes,
    }
    plots: dict[str, Any] = {}
    if "popular" in heads:
        rows = heads["popular"][0]
        plots["popular"] = (rows.y, rows.probability)
    if "popularity" in heads:
        rows = heads["popularity"][0]
        plots["popularity"] = (rows.y, rows.predicted)
    return Evaluation(report=report, plots=plots)


def check_floors(report: Mapping[str, Any], floors: Mapping[str, float]) -> list[dict[str, Any]]:
    """One entry per floor: the figure, its floor, whether it passed.

    Raises
    ------
    InputError
        A floor names a head this evaluation skipped (no label, or no such head).
    """
    out = []
    for name, floor in floors.items():
        head, _, figure = name.partition(".")
        section = report["heads"].get(head)
        if section is None:
            why = report["skipped"].get(head, "the model has no such head")
            raise InputError(f"--fail-under {name}: the {head} head was not evaluated ({why})")
        value = section["metrics"].get(figure)
        lower = not eh.metric(head, figure).higher_is_better
        passed = (
            value is not None
            and not math.isnan(value)
            and (value <= floor if lower else value >= floor)
        )
        out.append(
            {
                "metric": name,
                "floor": floor,
                "value": value,
                "lower_is_better": lower,
                "passed": bool(passed),
            }
        )
    return out
