"""The scoring job as a Python API: :func:`score` and its :class:`ScoreOptions`.

>>> import popbatch
>>> summary = popbatch.score("catalog.csv", "scored.parquet")       # doctest: +SKIP
>>> summary.rows_scored, summary.rows_rejected                      # doctest: +SKIP
(1000, 0)

``popbatch score`` is a thin layer over :func:`score`: every guard the command
has (refusing to overwrite the input, the default output name, the key the
model names) lives here, so a Python caller gets the same. The batches
themselves flow through :class:`~popbatch.batch.stream.StreamingRun`.

Each run holds the target's lock (:mod:`~popbatch.batch.lock`) from start to
end and is recorded in the run log (:mod:`~popbatch.batch.runlog`), success or
failure. With ``incremental=True`` rows the target already holds for the same
key, feature values and model are skipped and carried over
(:mod:`~popbatch.batch.incremental_lookup`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from popbatch.batch.incremental_lookup import IncrementalRun, check_incremental
from popbatch.batch.lock import TargetLock
from popbatch.batch.naming import (
    default_output,
    refuse_overwriting_input,
    refuse_writing_input,
)
from popbatch.batch.preprocess import Preprocessor
from popbatch.batch.runlog import check_run_log, record_success, recorded_run
from popbatch.batch.runner import OnnxScorer, streaming_threads
from popbatch.batch.sinks import (
    DuckDBSink,
    DuckDBWriteBack,
    Sink,
    is_duckdb_path,
    open_sink,
    rejects_sink_for,
)
from popbatch.batch.sources import Source, open_source
from popbatch.batch.stream import StreamingRun
from popbatch.batch.summary import ProgressCallback, RunSummary

from popbatch.core import DEFAULT_BATCH_SIZE
from popbatch.core.bundle import ModelBundle, load_model
from popbatch.core.errors import InputError, OutputError
from popbatch.core.features import normalize_column_name
from popbatch.core.heads import choose_heads

__all__ = ["RunSummary", "ScoreOptions", "score"]

Inputs = Source | str | Path | Sequence[str | Path]


@dataclass
class ScoreOptions:
    """How :func:`score` reads, scores and writes; every field has the CLI's default.

    Reading (used when ``source`` is given as paths)
        ``table``, ``query``: a DuckDB input's table or SELECT; ``delimiter``: CSV.
    Writing (used when ``sink`` is given as a path or None)
        ``into``: the table of a DuckDB output (default ``scores``); ``mode``:
        ``replace`` (None), ``append`` or ``upsert`` by the key; ``write_back``: add
        the scores to ``table`` of the input database itself; ``overwrite_table``:
        let ``replace`` replace a table (or rejects table) popbatch did not write,
        which is otherwise refused. The input table is never a target: only
        ``write_back`` changes it.
    Scoring
        ``key``: the key column (default: the model's, ``track_id``);
        ``columns``: ``"key"``, ``"all"`` or a list of input columns to keep;
        ``maps`` ``{new: old}`` and ``fills`` ``{column: value}``: see
        :class:`~popbatch.batch.preprocess.Preprocessor`; ``on_invalid``:
        ``"reject"`` (rows go to ``rejects``) or ``"fail"``; ``rejects``: a
        Sink, path or table name (default ``<output stem>.rejects.<ext>``).
    Running
        ``batch_size``: rows per batch (memory grows with it, not with the
        input); ``threads``: onnxruntime threads (None: every core but one, which
        the reader thread keeps);
        ``incremental``: score only new or changed rows and carry the others
        over; ``wait``: seconds to wait for another run's lock; ``record``:
        write the run log (``popbatch_runs`` or ``runs.jsonl``); ``heads``:
        the model heads to score (``"popular,genre"`` or a list; None: every
        head the model has; ``popular`` is always scored);
        ``refuse_all_rejected``: when every row read was rejected, fail with
        InputError and write nothing (True, as ``popbatch score``; False when each
        row's reason is the result, as in the app).
    """

    table: str | None = None
    query: str | None = None
    delimiter: str = ","
    into: str | None = None
    mode: str | None = None
    write_back: bool = False
    overwrite_table: bool = False
    key: str | None = None
    columns: str | Sequence[str] = "key"
    maps: Mapping[str, str] = field(default_factory=dict)
    fills: Mapping[str, str] = field(default_factory=dict)
    on_invalid: str = "reject"
    rejects: Sink | str | Path | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    threads: int | None = None
    incremental: bool = False
    wait: float = 0
    record: bool = True
    heads: str | Sequence[str] | None = None
    refuse_all_rejected: bool = True


def score(
    source: Inputs,
    sink: Sink | str | Path | None = None,
    model: ModelBundle | str | Path | None = None,
    options: ScoreOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
    **overrides: Any,
) -> RunSummary:
    """Score a catalog and write the scores; nothing is visible until the run succeeds.

    >>> import popbatch
    >>> summary = popbatch.score("catalog.csv", "scored.parquet", columns="all")  # doctest: +SKIP
    >>> summary.rows_read == summary.rows_scored + summary.rows_rejected          # doctest: +SKIP
    True

    Parameters
    ----------
    source
        A :class:`~popbatch.batch.sources.Source`, or path(s), a glob or a
        directory for :func:`~popbatch.batch.sources.open_source`.
    sink
        A :class:`~popbatch.batch.sinks.Sink`, an output path (``.parquet``,
        ``.csv``, ``.duckdb``), or None for ``<input stem>.scored.parquet``
        beside the input (or the input database itself with ``write_back``).
    model
        A verified :class:`~popbatch.core.bundle.ModelBundle`, a model
        directory, or None for the embedded default model.
    options
        A :class:`ScoreOptions`; ``overrides`` replace its fields by name, so
        ``score(src, out, batch_size=1000)`` works without building one.
    progress
        Called as ``progress(rows_read_so_far, total_rows_or_None)`` after each batch.

    Returns
    -------
    RunSummary

    Raises
    ------
    InputError, SchemaError, InvalidRowError
        Bad input or options (exit code 2 in the CLI); nothing is written.
    ModelError, OutputError
        The model cannot be used or the output cannot be written (exit code 1).
    LockError
        Another run holds the target (exit code 75); this run is not recorded.
    """
    try:
        options = dataclasses.replace(options or ScoreOptions(), **overrides)
    except TypeError as exc:
        raise InputError(f"score(): {exc}") from None
    if options.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {options.batch_size}")
    if options.table is not None and options.query is not None:
        raise InputError("give --table or --query, not both")
    if options.write_back:  # the scores go beside the table's own columns
        options = dataclasses.replace(options, columns="key")
    started = time.perf_counter()
    bundle = model if isinstance(model, ModelBundle) else load_model(model)
    key = normalize_column_name(options.key or bundle.manifest.get("key") or "track_id")
    if not isinstance(sink, Sink):
        sink = _open_target(source, sink, options, key)
    rejects = options.rejects
    rejects_sink = rejects if isinstance(rejects, Sink) else rejects_sink_for(sink, rejects)
    if not isinstance(source, Source):
        refuse_writing_input(_as_paths(source), options.table, sink, rejects_sink)
    if options.record:
        check_run_log(sink.target)
    if not isinstance(source, Source):
        source = open_source(
            _as_paths(source),
            table=options.table,
            query=options.query,
            delimiter=options.delimiter,
            wait=options.wait,
        )
    try:
        if options.incremental:
            check_incremental(sink)
        lock = _lock_target(sink.target, options.wait)
    except BaseException:
        source.close()
        raise
    log: dict[str, Any] = {"input": source.name, "output": sink.name}
    try:
        with recorded_run(sink.target, log) if options.record else contextlib.nullcontext():
            summary = _score_locked(
                source, sink, rejects_sink, bundle, log, started, options, key, progress
            )
            log.update(summary.to_dict())
    finally:
        if lock is not None:
            lock.release()
    return summary


def _as_paths(source: str | Path | Sequence[str | Path]) -> list[str]:
    return [str(source)] if isinstance(source, str | Path) else [str(s) for s in source]


def _open_target(
    source: Inputs, output: str | Path | None, options: ScoreOptions, key: str
) -> Sink:
    """The sink for an output path (or None: the default), with the CLI's guards."""
    if options.write_back:
        return _write_back_sink(source, output, options, key)
    if isinstance(source, Source):
        if output is None:
            raise InputError(f"{source.name}: give an output to score a Source into")
        return _sink_for(output, options, key)
    inputs = _as_paths(source)
    if output is None:
        into_input_db = options.into and len(inputs) == 1 and is_duckdb_path(inputs[0])
        output = (
            inputs[0]
            if into_input_db
            else default_output(inputs, table=options.table, query=options.query)
        )
    refuse_overwriting_input(inputs, output, options.table, options.query)
    return _sink_for(output, options, key)


def _sink_for(output: str | Path, options: ScoreOptions, key: str) -> Sink:
    mode = options.mode or "replace"
    return open_sink(
        output, into=options.into, mode=mode, key=key, overwrite=options.overwrite_table
    )


def _write_back_sink(
    source: Inputs, output: str | Path | None, options: ScoreOptions, key: str
) -> DuckDBWriteBack:
    inputs = [] if isinstance(source, Source) else _as_paths(source)
    if options.table is None or len(inputs) != 1 or not is_duckdb_path(inputs[0]):
        raise InputError(
            "--write-back updates a DuckDB table: give one DATABASE.duckdb and --table"
        )
    if options.into is not None or options.mode is not None or options.overwrite_table:
        raise InputError(
            "--write-back updates --table itself; drop --into/--mode/--overwrite-table"
        )
    if output is not None and Path(output).resolve() != Path(inputs[0]).resolve():
        raise InputError("--write-back writes into the input database; drop -o")
    return DuckDBWriteBack(inputs[0], options.table, key=key)


def _lock_target(target: Path, wait: float) -> TargetLock | None:
    """Take the target's lock, creating the output folder first as a sink would.

    None when the folder cannot be made: nothing can be written there, and the
    sink says why when it opens (before any output).
    """
    directory = target.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    try:
        return TargetLock(target, wait).acquire()
    except OSError as exc:
        raise OutputError(
            f"{target}: cannot write in {directory} ({exc.strerror or exc})"
        ) from None


def _score_locked(
    source: Source,
    sink: Sink,
    rejects_sink: Sink,
    bundle: ModelBundle,
    log: dict[str, Any],
    started: float,
    options: ScoreOptions,
    key: str,
    progress: ProgressCallback | None,
) -> RunSummary:
    """The run itself, with the target locked (see :func:`score`)."""
    try:
        log["model_id"] = bundle.model_id
        preprocessor = Preprocessor(
            bundle.manifest,
            key=key,
            columns=options.columns,
            maps=options.maps or {},
            fills=options.fills or {},
            on_invalid=options.on_invalid,
        ).bind(source.schema, source.name)
        # Pass-through columns keep their types; a CSV's are inferred from a scan of the
        # whole input (its key stays text, as sql/scored_table.sql says).
        key_input = preprocessor.by_final.get(key)
        typed = [c for c in preprocessor.passthrough_inputs if c != key_input]
        preprocessor.set_output_types(source.column_types(typed))
        heads = choose_heads(options.heads, bundle.heads)
        log["heads"] = list(heads)
        scorer = OnnxScorer(bundle, options.threads or streaming_threads(), heads=heads)
    except BaseException:
        source.close()
        raise
    scored_at = datetime.now(UTC)
    summary = RunSummary(
        input=source.name,
        output=sink.name,
        rejects=rejects_sink.name,
        model_id=bundle.model_id,
        scored_at=scored_at.isoformat(),
        batch_size=options.batch_size,
        threads=scorer.threads,
        fills=preprocessor.fills_applied,
        incremental=options.incremental,
        heads=list(heads),
        columns_replaced=list(preprocessor.replaced),
    )
    run = StreamingRun(
        source, preprocessor, scorer, sink, rejects_sink, scored_at, summary, progress
    )
    run.wait = options.wait
    run.refuse_all_rejected = options.refuse_all_rejected
    if options.record and isinstance(sink, DuckDBSink):

        def record_in_transaction(con: Any) -> None:
            log.update(summary.to_dict())
            record_success(sink.target, log, con)

        run.in_transaction = record_in_transaction
    try:
        if options.incremental:
            run.up_to_date = IncrementalRun.load(
                sink, run.schema, key, bundle.model_id, options.wait
            )
        run.run(options.batch_size)
    except BaseException:
        source.close()
        log.update({k: getattr(summary, k) for k in _COUNTS})
        raise
    summary.rows_written = sink.rows_written
    summary.seconds = time.perf_counter() - started
    summary.rows_per_second = summary.rows_read / summary.seconds if summary.seconds else 0.0
    if summary.rows_rejected == 0 and rejects_sink.rows_written is None:
        summary.rejects = None  # nothing was written there
    assert summary.rows_read == summary.rows_scored + summary.rows_rejected + summary.rows_skipped
    return summary


_COUNTS = ("rows_read", "rows_scored", "rows_rejected", "rows_skipped")
