"""Why this score? Which tracks to explain, the run, and its output: ``popbatch.explain``.

>>> import popbatch
>>> result = popbatch.explain("catalog.csv", top=5)                 # doctest: +SKIP
>>> print(result.lines()[0])                                         # doctest: +SKIP
5Zxyz... p=0.41  danceability 0.82 (+0.61), genre pop (+0.55), energy 0.91 (+0.20)

The input is read exactly as ``popbatch score`` reads it (sources, ``--map``,
``--fill``, validation; rejected rows are never explained). Rows are selected by
key, by a ``--where`` clause or as the top scores. The model is the ONNX bundle
alone: no native model, no pickle, no ``shap`` import. Tracks are explained in
the model's raw space (:mod:`popbatch.batch.explain.space`: the 14 numeric inputs
plus the genre as one categorical feature). Contributions are Shapley values
estimated by :func:`popbatch.batch.explain.shapley.permutation_shap` against
background rows: the ~100 training rows ``popbatch export`` stores as
``background.parquet``, or, for a model exported without them (the embedded
default model), a random sample of the input's own valid rows (the result says
which).

They add up in the head's link space: ``base_value + sum(contribution) ==
prediction`` for each track, in log-odds of popular for the ``popular`` head
and in popularity points for the ``popularity`` head.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from popbatch.batch.explain.shapley import model_rows_per_row, permutation_shap
from popbatch.batch.explain.space import (
    BACKGROUND_ROWS,
    Head,
    LinkModel,
    RawSpace,
    model_head,
    stored_background,
)
from popbatch.batch.naming import refuse_overwriting_input, refuse_writing_input
from popbatch.batch.preprocess import Prepared, Preprocessor
from popbatch.batch.sinks import DuckDBSink, Sink, commit_all, is_duckdb_path, open_sink
from popbatch.batch.sources import Source, open_source

from popbatch.core import DEFAULT_BATCH_SIZE
from popbatch.core.bundle import ModelBundle, load_model
from popbatch.core.errors import InputError, one_line
from popbatch.core.features import normalize_column_name

__all__ = ["Explanations", "explain"]

#: ``progress(what, done, total_or_None)``, e.g. ("rows read", 65536, None).
Progress = Callable[[str, int, int | None], None]
DEFAULT_TOP = 20
DEFAULT_MAX_ROWS = 10_000
DEFAULT_PERMUTATIONS = 16
SHOWN_TRACKS = 20
SHOWN_FEATURES = 3
# Model rows per second of the raw -> link function on the default model, 2 threads,
# measured on the 2-core development machine (docs/explain.md, "Cost"); only used to
# say how long a run above --max-rows would take.
MEASURED_ROWS_PER_SECOND = 400_000
_ROW = "__popbatch_row__"


# ---------------------------------------------------------------- selection
@dataclass
class _Selected:
    """The rows chosen so far: keys, raw rows, and (top N) their link outputs."""

    keys: list[str] = field(default_factory=list)
    raw: list[np.ndarray] = field(default_factory=list)
    matched: int = 0

    def add(self, keys: Sequence[str], raw: np.ndarray, limit: int) -> None:
        self.matched += len(keys)
        room = limit + 1 - len(self.keys)  # one more than allowed: enough to refuse
        if room > 0:
            self.keys += list(keys[:room])
            self.raw.append(raw[:room])

    def matrix(self, width: int) -> np.ndarray:
        return np.vstack(self.raw) if self.raw else np.empty((0, width))


class _Top:
    """The ``n`` rows with the highest prediction, kept in a heap while streaming."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.heap: list[tuple[float, int, str, np.ndarray]] = []
        self.seen = 0

    def add(self, keys: Sequence[str], raw: np.ndarray, scores: np.ndarray) -> None:
        for i in np.argsort(-scores)[: self.n]:
            item = (float(scores[i]), -self.seen - int(i), keys[i], raw[i])
            if len(self.heap) < self.n:
                heapq.heappush(self.heap, item)
            elif item[:2] > self.heap[0][:2]:
                heapq.heapreplace(self.heap, item)
        self.seen += len(keys)

    def rows(self, width: int) -> tuple[list[str], np.ndarray]:
        best = sorted(self.heap, key=lambda item: item[:2], reverse=True)
        raw = np.vstack([item[3] for item in best]) if best else np.empty((0, width))
        return [item[2] for item in best], raw


class _Where:
    """A DuckDB WHERE clause over each batch: read-only, one statement, no file access."""

    def __init__(self, clause: str) -> None:
        import duckdb
        from popbatch.batch import sqlrun
        from popbatch.batch.lock import quiet

        self.clause = clause
        self.con = quiet(duckdb.connect(config={"enable_external_access": False}))
        self.con.execute("SET errors_as_json = true")
        self.sql = f"SELECT {_ROW} FROM input WHERE ({clause})"
        try:
            statements = self.con.extract_statements(self.sql)
        except duckdb.Error as exc:
            raise InputError(f"--where: {sqlrun.error_text(exc)}") from None
        if len(statements) != 1 or statements[0].type.name != "SELECT":
            raise InputError(f"--where {clause!r}: give one condition, not statements")

    def rows(self, table: pa.Table) -> np.ndarray:
        import duckdb
        from popbatch.batch import sqlrun

        table = table.append_column(_ROW, pa.array(np.arange(table.num_rows)))
        self.con.register("input", table)
        try:
            result = self.con.execute(self.sql).fetchnumpy()[_ROW]
        except duckdb.Error as exc:
            raise InputError(f"--where: {sqlrun.error_text(exc)}") from None
        finally:
            self.con.unregister("input")
        return np.asarray(result, np.int64)

    def close(self) -> None:
        self.con.close()


def _where_table(
    prepared: Prepared, pre: Preprocessor, space: RawSpace, raw: np.ndarray
) -> pa.Table:
    """The input's columns for WHERE: model inputs as the model sees them (numbers,
    the genre lowercased, ``__other__`` when unknown), other columns as read."""
    batch = prepared.passthrough
    arrays = [
        a if a.type == f.type else a.cast(f.type, safe=False)
        for a, f in zip(batch.columns, pre.output_schema, strict=True)
    ]
    table = pa.Table.from_arrays(arrays, schema=pre.output_schema)
    for i, spec in enumerate(pre.numeric):
        array = pa.array(raw[:, i], pa.float64())
        if spec.column in table.column_names:
            table = table.set_column(table.column_names.index(spec.column), spec.column, array)
        else:
            table = table.append_column(spec.column, array)
    if space.has_genre and pre.genre_column:
        array = pa.array([space.genre_of(p) for p in raw[:, -1]], pa.string())
        if pre.genre_column in table.column_names:
            index = table.column_names.index(pre.genre_column)
            table = table.set_column(index, pre.genre_column, array)
        else:
            table = table.append_column(pre.genre_column, array)
    return table


def read_keys(path: str | Path, key: str = "track_id") -> list[str]:
    """Keys from a text file, one per line (blank lines and a header line ``key`` skipped).

    Raises
    ------
    InputError
        The file cannot be read or lists no key.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"--keys {path}: no such file (one key per line)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--keys {path}: cannot read ({one_line(exc)})") from None
    keys = [line.strip() for line in lines if line.strip()]
    if keys and normalize_column_name(keys[0]) == key:
        keys = keys[1:]
    if not keys:
        raise InputError(f"--keys {path}: lists no key (one key per line)")
    return list(dict.fromkeys(keys))


# ---------------------------------------------------------------- the result


@dataclass
class Explanations:
    """What :func:`explain` found: one row per track and feature in :attr:`table`.

    Attributes
    ----------
    table
        ``<key>``, ``head``, ``feature``, ``value`` (numeric input as the model saw
        it), ``category`` (the genre as the model saw it), ``contribution``,
        ``rank`` (1 = largest |contribution| of the track), ``base_value``,
        ``prediction`` (link space: ``base_value + sum(contribution)``),
        ``score`` (the head's output as ``popbatch score`` writes it),
        ``model_id``, ``background`` (``model`` or ``input sample``).
    head, unit
        The head explained and the unit of the contributions.
    background
        ``model`` (the bundle's stored training rows) or ``input sample``.
    rows_read, rows_rejected, rows_matched
        Input rows read, rejected as invalid, and matching the selection.
    missing_keys
        Requested keys not found among the valid rows.
    seconds, model_rows
        Time spent explaining and model evaluations used.
    """

    table: pa.Table
    key: str
    head: str
    unit: str
    background: str
    rows_read: int = 0
    rows_rejected: int = 0
    rows_matched: int = 0
    missing_keys: list[str] = field(default_factory=list)
    seconds: float = 0.0
    model_rows: int = 0

    @property
    def tracks(self) -> int:
        return len(set(self.table.column(self.key).to_pylist())) if self.table.num_rows else 0

    def lines(self, tracks: int = SHOWN_TRACKS, features: int = SHOWN_FEATURES) -> list[str]:
        """``<key> p=0.41  danceability 0.82 (+0.61), genre pop (+0.55), ...`` per track."""
        rows = self.table.filter(pc.less_equal(self.table["rank"], features)).to_pylist()
        by_key: dict[str, list[dict]] = {}
        for row in rows:
            by_key.setdefault(row[self.key], []).append(row)
        out = []
        for key, reasons in list(by_key.items())[:tracks]:
            reasons.sort(key=lambda r: r["rank"])
            score = reasons[0]["score"]
            head = f"p={score:.2f}" if self.head == "popular" else f"popularity={score:.1f}"
            parts = [_reason_text(r) for r in reasons]
            out.append(f"{key} {head}  " + ", ".join(parts))
        return out

    def summary(self) -> str:
        rejected = (
            f"; {self.rows_rejected:,} of {self.rows_read:,} input rows rejected (invalid model "
            "inputs; popbatch score writes them with the reason)"
            if self.rows_rejected
            else ""
        )
        return (
            f"explained {self.tracks:,} tracks ({self.head} head, contributions in "
            f"{self.unit}) in {self.seconds:.1f} s; background: {self.background}{rejected}"
        )


def _reason_text(row: dict) -> str:
    """``danceability 0.82 (+0.61)``; a catalog prior in words: ``artist history: mean
    popularity 64 (+0.55)``."""
    from popbatch.core.priors import describe, is_prior_feature

    c = row["contribution"]
    if is_prior_feature(row["feature"]):
        text = describe(row["feature"], row["value"])
    else:
        value = row["category"] if row["category"] is not None else _number(row["value"])
        text = f"{row['feature']} {value}"
    return f"{text} ({c:+.2f})" if abs(c) >= 0.1 else f"{text} ({c:+.2g})"


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.2f}"


# ---------------------------------------------------------------- the job
def explain(
    source: Source | str | Path | Sequence[str | Path],
    model: ModelBundle | str | Path | None = None,
    *,
    head: str = "popular",
    top: int | None = None,
    keys: Iterable[str] | None = None,
    where: str | None = None,
    output: Sink | str | Path | None = None,
    into: str | None = None,
    overwrite_table: bool = False,
    key: str | None = None,
    table: str | None = None,
    query: str | None = None,
    delimiter: str = ",",
    maps: dict[str, str] | None = None,
    fills: dict[str, str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_rows: int = DEFAULT_MAX_ROWS,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    threads: int | None = None,
    progress: Progress | None = None,
) -> Explanations:
    """Explain the predictions of a few tracks: which features pushed each score up or down.

    >>> import popbatch
    >>> result = popbatch.explain("catalog.csv", top=3)           # doctest: +SKIP
    >>> result.table.column_names[:4]                            # doctest: +SKIP
    ['track_id', 'head', 'feature', 'value']
    >>> result = popbatch.explain("catalog.csv", keys=["5SuOikwiRyPMVoIQDJUgSV"])  # doctest: +SKIP

    Parameters
    ----------
    source
        As for :func:`popbatch.score`: a Source, path(s), a glob or a directory.
    model
        A bundle, a model directory, or None for the embedded default model.
    head
        ``popular`` (log-odds of popular) or ``popularity`` (points).
    top, keys, where
        At most one: the ``top`` highest predicted rows (default 20), the rows
        whose key is in ``keys``, or the rows a DuckDB ``where`` clause keeps
        (over the input's columns, model inputs as the model sees them).
    output
        Where to write the long table (``.parquet``, ``.csv``, ``.duckdb`` with
        ``into``, default table ``explanations``); None: only return it.
    overwrite_table
        Replace an existing ``into`` table popbatch did not write (otherwise
        refused, as is the input ``table``).
    max_rows
        Refuse (InputError) to explain more tracks than this.
    permutations, seed
        Feature orders per track, and their seed (same call, same values).
    progress
        Called as ``progress("rows read", n, total_or_None)`` while the input is
        read, then ``progress("tracks", done, tracks)`` while they are explained.

    Returns
    -------
    Explanations

    Raises
    ------
    InputError
        Bad options, no selected rows, more than ``max_rows`` tracks, a bad
        WHERE clause or keys file (exit code 2 in the CLI).
    """
    top = _checked_options(top, keys, where, max_rows, permutations)
    bundle = model if isinstance(model, ModelBundle) else load_model(model)
    space = RawSpace(bundle.manifest, head)
    explained = model_head(bundle, head)
    wanted = _wanted_keys(top, keys, max_rows, space, permutations)
    stored = stored_background(bundle, space)
    key = normalize_column_name(key or bundle.manifest.get("key") or "track_id")
    if output is not None and not isinstance(output, Sink):
        output = _open_output(output, into, key, overwrite_table, source, table, query)
    source = _open_input(source, table, query, delimiter)
    scan, link, sink = _select_rows(
        source, bundle, explained, space, key, where=where, maps=maps, fills=fills,
        output=output, into=into, threads=threads, batch_size=batch_size, top=top,
        wanted=wanted, max_rows=max_rows, sample=stored is None, seed=seed, progress=progress,
    )  # fmt: skip
    try:
        result = _explain_selected(
            scan, link, space, explained, bundle, key, stored, source.name,
            top=top, wanted=wanted, where=where, max_rows=max_rows,
            permutations=permutations, seed=seed, progress=progress,
        )  # fmt: skip
    finally:
        link.close()
    if sink is not None:
        _write(sink, result.table)
    return result


def _checked_options(
    top: int | None, keys: Any, where: str | None, max_rows: int, permutations: int
) -> int | None:
    """Refuse contradictory or out-of-range options (InputError). Returns ``top``, the
    default when no selection is given."""
    chosen = [name for name, v in (("top", top), ("keys", keys), ("where", where)) if v is not None]
    if len(chosen) > 1:
        raise InputError(f"give one of --top, --keys, --where, not {' and '.join(chosen)}")
    if max_rows < 1:
        raise InputError(f"--max-rows must be at least 1, got {max_rows}")
    if permutations < 2:
        raise InputError(f"permutations must be at least 2, got {permutations}")
    if top is None and keys is None and where is None:
        top = DEFAULT_TOP
    if top is not None and top < 1:
        raise InputError(f"--top must be at least 1, got {top}")
    return top


def _wanted_keys(
    top: int | None,
    keys: Iterable[str] | None,
    max_rows: int,
    space: RawSpace,
    permutations: int,
) -> list[str] | None:
    """Refuse a selection known to exceed ``max_rows`` before reading (InputError).
    Returns the distinct keys asked for, in order, or None when selecting otherwise."""
    if top is not None and top > max_rows:
        raise InputError(_too_many(top, max_rows, space, permutations))
    wanted = None if keys is None else list(dict.fromkeys(str(k) for k in keys))
    if wanted is not None and not wanted:
        raise InputError("--keys: no key given")
    if wanted is not None and len(wanted) > max_rows:
        raise InputError(_too_many(len(wanted), max_rows, space, permutations))
    return wanted


def _paths(source: str | Path | Sequence[str | Path]) -> list[str]:
    return [str(source)] if isinstance(source, str | Path) else [str(s) for s in source]


def _open_input(
    source: Source | str | Path | Sequence[str | Path],
    table: str | None,
    query: str | None,
    delimiter: str,
) -> Source:
    """Returns the input as a Source, opened as ``popbatch score`` opens it."""
    if isinstance(source, Source):
        return source
    return open_source(_paths(source), table=table, query=query, delimiter=delimiter)


def _select_rows(
    source: Source,
    bundle: ModelBundle,
    explained: Head,
    space: RawSpace,
    key: str,
    *,
    where: str | None,
    maps: dict[str, str] | None,
    fills: dict[str, str] | None,
    output: Sink | str | Path | None,
    into: str | None,
    threads: int | None,
    batch_size: int,
    top: int | None,
    wanted: list[str] | None,
    max_rows: int,
    sample: bool,
    seed: int,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], LinkModel, Sink | None]:
    """Read the input once, as ``popbatch score`` does, keeping the rows to explain (and a
    background sample when ``sample``). Returns the scan (see :func:`_scan`), the head on
    onnxruntime (the caller closes it) and the opened output sink, if any. The input is
    closed whatever happens."""
    sink = None
    link = None
    filt = None
    try:
        pre = Preprocessor(
            bundle.manifest,
            key=key,
            columns="all" if where is not None else "key",
            maps=maps or {},
            fills=fills or {},
        ).bind(source.schema, source.name)
        if where is not None:
            filt = _Where(where)
            # WHERE sees the input's columns typed as score writes them (a CSV's from a scan).
            pre.set_output_types(source.column_types(pre.passthrough_inputs))
        link = LinkModel(explained, space, threads)
        if output is not None:
            sink = output  # a Sink: explain() opened it
        scan = _scan(source, pre, space, link, batch_size, top, wanted, filt, max_rows,
                     sample, seed, progress)  # fmt: skip
    except BaseException:
        if link is not None:
            link.close()
        raise
    finally:
        source.close()
        if filt is not None:
            filt.close()
    return scan, link, sink


def _explain_selected(
    scan: dict[str, Any],
    link: LinkModel,
    space: RawSpace,
    explained: Head,
    bundle: ModelBundle,
    key: str,
    stored: np.ndarray | None,
    source_name: str,
    *,
    top: int | None,
    wanted: list[str] | None,
    where: str | None,
    max_rows: int,
    permutations: int,
    seed: int,
    progress: Progress | None = None,
) -> Explanations:
    """Estimate the Shapley contributions of the selected rows against the stored
    background (or the input's sample). Returns the explanations; raises InputError when
    nothing was selected or more than ``max_rows`` rows were."""
    keys_found, raw = scan["keys"], scan["raw"]
    missing = [] if wanted is None else [k for k in wanted if k not in set(keys_found)]
    if not keys_found:
        raise InputError(_nothing_selected(source_name, top, wanted, where, scan))
    if len(keys_found) > max_rows:
        raise InputError(_too_many(scan["matched"], max_rows, space, permutations))
    background = stored if stored is not None else scan["sample"]
    started = time.perf_counter()
    before = link.rows_evaluated
    tracks = None if progress is None else lambda done, n: progress("tracks", done, n)
    shap = permutation_shap(link, raw, background, permutations, seed, tracks)
    seconds = time.perf_counter() - started
    origin = "model" if stored is not None else "input sample"
    return Explanations(
        table=_long_table(key, keys_found, raw, shap, link, space, explained, bundle, origin),
        key=key,
        head=explained.name,
        unit=explained.unit,
        background=origin,
        rows_read=scan["read"],
        rows_rejected=scan["rejected"],
        rows_matched=scan["matched"],
        missing_keys=missing,
        seconds=seconds,
        model_rows=link.rows_evaluated - before,
    )


def _open_output(
    output: str | Path,
    into: str | None,
    key: str,
    overwrite: bool,
    source: Source | str | Path | Sequence[str | Path],
    table: str | None,
    query: str | None,
) -> Sink:
    """The sink for ``output``, refused when it would overwrite an input file or table."""
    sink = _output_sink(output, into, key, overwrite)
    if not isinstance(source, Source):
        refuse_overwriting_input(_paths(source), output, table, query)
        refuse_writing_input(_paths(source), table, sink)
    return sink


def _output_sink(output: str | Path, into: str | None, key: str, overwrite: bool) -> Sink:
    if is_duckdb_path(output):
        # Replaces only an explanations table (or any table with overwrite).
        return DuckDBSink(
            output,
            into or "explanations",
            key=key,
            overwrite=overwrite,
            written_by_popbatch=is_explanations_table,
        )
    return open_sink(output, into=into, mode="replace", key=key, overwrite=overwrite)


# The columns of every explanation after the key (written by _long_table).
EXPLANATION_COLUMNS = (
    "head", "feature", "value", "category", "contribution", "rank", "base_value",
    "prediction", "score", "model_id", "background",
)  # fmt: skip


def is_explanations_table(columns: Mapping[str, str]) -> bool:
    """Whether a table's ``{column: DuckDB type}`` holds every column of an explanation."""
    names = {name.lower() for name in columns}
    return all(name in names for name in EXPLANATION_COLUMNS)


def _write(sink: Sink, table: pa.Table) -> None:
    try:
        sink.open(table.schema)
        for batch in table.to_batches():
            sink.write(batch)
    except BaseException:
        sink.abort()
        raise
    commit_all([sink])


def _scan(
    source: Source,
    pre: Preprocessor,
    space: RawSpace,
    link: LinkModel,
    batch_size: int,
    top: int | None,
    wanted: list[str] | None,
    filt: _Where | None,
    max_rows: int,
    sample: bool,
    seed: int,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Read the input once: choose the rows, count rejects, sample a background."""
    rng = np.random.default_rng(seed)
    best = _Top(top) if top is not None else None
    picked = _Selected()
    wanted_set = set(wanted or ())
    reservoir: list[tuple[float, int, np.ndarray]] = []
    read = rejected = 0
    rejected_keys: dict[str, str] = {}
    for batch in source.batches(pre.read_columns, batch_size):
        prepared = pre.transform(batch, first_row=read + 1)
        read += prepared.rows
        if progress is not None:
            progress("rows read", read, source.total_rows)
        rejected += prepared.rows_rejected
        if prepared.rejects is not None and wanted_set and pre.key in pre.by_final:
            _note_rejected(prepared.rejects, pre, wanted_set, rejected_keys)
        raw = space.from_prepared(prepared)
        if not len(raw):
            continue
        keys = [str(k) for k in prepared.passthrough.column(pre.key).to_pylist()]
        if sample:
            priority = rng.random(len(raw))
            for i in np.argsort(priority)[:BACKGROUND_ROWS]:
                item = (-float(priority[i]), read + int(i), raw[i])
                if len(reservoir) < BACKGROUND_ROWS:
                    heapq.heappush(reservoir, item)
                elif item[0] > reservoir[0][0]:
                    heapq.heapreplace(reservoir, item)
        if best is not None:
            best.add(keys, raw, link(raw))
        elif filt is not None:
            rows = filt.rows(_where_table(prepared, pre, space, raw))
            picked.add([keys[i] for i in rows], raw[rows], max_rows)
        else:
            rows = np.array([i for i, k in enumerate(keys) if k in wanted_set], np.int64)
            picked.add([keys[i] for i in rows], raw[rows] if len(rows) else raw[:0], max_rows)
    if best is not None:
        chosen, raw_rows = best.rows(space.size)
        matched = len(chosen)
    else:
        chosen, raw_rows, matched = picked.keys, picked.matrix(space.size), picked.matched
        if wanted is not None:  # one row per key, in the order asked
            first = {}
            for i, k in enumerate(chosen):
                first.setdefault(k, i)
            order = [first[k] for k in wanted if k in first]
            chosen, raw_rows = [chosen[i] for i in order], raw_rows[order]
    background = np.vstack([item[2] for item in reservoir]) if reservoir else None
    return {
        "keys": chosen,
        "raw": raw_rows,
        "matched": matched,
        "read": read,
        "rejected": rejected,
        "rejected_keys": rejected_keys,
        "sample": background,
    }


def _note_rejected(
    rejects: pa.RecordBatch, pre: Preprocessor, wanted: set[str], found: dict[str, str]
) -> None:
    original = pre.by_final[pre.key]
    if original not in rejects.schema.names:
        return
    keys = rejects.column(original).to_pylist()
    for key, reason in zip(keys, rejects.column("reason").to_pylist(), strict=True):
        if str(key) in wanted:
            found.setdefault(str(key), reason)


def _nothing_selected(
    name: str, top: int | None, wanted: list[str] | None, where: str | None, scan: dict
) -> str:
    if wanted is not None:
        rejected = scan["rejected_keys"]
        if rejected:
            key, reason = next(iter(rejected.items()))
            return f"{name}: key {key} is in a rejected row ({reason}); fix the row to explain it"
        return (
            f"{name}: none of the {len(wanted)} keys is in the input (first: {wanted[0]!r}); "
            "check the key file and --key"
        )
    if where is not None:
        return f"{name}: --where {where!r} matches no valid row"
    return f"{name}: no valid row to explain ({scan['read']} read, {scan['rejected']} rejected)"


def _too_many(rows: int, max_rows: int, space: RawSpace, permutations: int) -> str:
    per_row = model_rows_per_row(space.size, permutations, BACKGROUND_ROWS)
    seconds = rows * per_row / MEASURED_ROWS_PER_SECOND
    return (
        f"explaining {rows:,} tracks would take about {_duration(seconds)} on 2 cores "
        f"(more than --max-rows {max_rows:,}); choose fewer tracks or raise --max-rows"
    )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _long_table(
    key: str,
    keys: list[str],
    raw: np.ndarray,
    shap: Any,
    link: LinkModel,
    space: RawSpace,
    head: Head,
    bundle: ModelBundle,
    background: str,
) -> pa.Table:
    """One row per (track, feature), ranked by |contribution| within the track."""
    n, m = shap.values.shape
    order = np.argsort(-np.abs(shap.values), axis=1, kind="stable")
    rank = np.empty_like(order)
    rank[np.arange(n)[:, None], order] = np.arange(1, m + 1)[None, :]
    numeric = len(space.numeric_positions)
    value = raw.copy()
    category: list[str | None] = [None] * (n * m)
    if space.has_genre:
        for i in range(n):
            category[i * m + m - 1] = space.genre_of(raw[i, -1])
    flat_value = value.reshape(-1).astype(np.float64)
    is_genre = np.tile(np.arange(m) >= numeric, n)
    score = head.from_link(shap.prediction)
    columns = {
        key: pa.array(np.repeat(np.array(keys, dtype=object), m).tolist(), pa.string()),
        "head": pa.array([head.name] * (n * m), pa.string()),
        "feature": pa.array(space.names * n, pa.string()),
        "value": pa.array(np.where(is_genre, np.nan, flat_value), pa.float64(), mask=is_genre),
        "category": pa.array(category, pa.string()),
        "contribution": pa.array(shap.values.reshape(-1), pa.float64()),
        "rank": pa.array(rank.reshape(-1), pa.int32()),
        "base_value": pa.array(np.full(n * m, shap.base_value), pa.float64()),
        "prediction": pa.array(np.repeat(shap.prediction, m), pa.float64()),
        "score": pa.array(np.repeat(score, m), pa.float64()),
        "model_id": pa.array([bundle.model_id] * (n * m), pa.string()),
        "background": pa.array([background] * (n * m), pa.string()),
    }
    return pa.table(columns)
