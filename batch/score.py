"""The scoring job as a Python API: source -> preprocess -> infer -> sink.

>>> from popbatch.batch.score import score
>>> summary = score("catalog.csv", "scored.parquet", model="runs/x/model")  # doctest: +SKIP
>>> summary.rows_scored, summary.rows_rejected                              # doctest: +SKIP
(1000, 0)

``popbatch score`` is a thin layer over :func:`score`. Batches flow through a
small pipeline: a reader thread reads and preprocesses the next batch and a
writer thread writes the previous one while onnxruntime (which releases the
GIL) scores the current one. Queues between the stages hold at most a couple
of batches, so memory stays flat in the size of the input.

Each run holds the target's lock (:mod:`batch.lock`) from start to end and is
recorded in the run log (:mod:`batch.runlog`), success or failure. With
``incremental=True`` rows the target already holds for the same key, feature
values and model are skipped and carried over (:mod:`batch.incremental`).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from popbatch.batch.incremental import (
    HASH_COLUMN,
    CarryOver,
    SkippedRows,
    UpToDate,
    as_columns,
    features_hash,
)
from popbatch.batch.lock import TargetLock
from popbatch.batch.preprocess import FeatureBuffer, Prepared, Preprocessor
from popbatch.batch.runlog import record_success, recorded_run
from popbatch.batch.runner import OnnxScorer
from popbatch.batch.sinks import (
    COMMIT_WAIT_SECONDS,
    SCORE_FIELDS,
    DuckDBSink,
    DuckDBWriteBack,
    ParquetSink,
    Sink,
    commit_all,
    open_sink,
    rejects_sink_for,
)
from popbatch.batch.sources import GLOB_CHARS, Source, open_source

from popbatch.core import DEFAULT_BATCH_SIZE
from popbatch.core.bundle import ModelBundle, load_model
from popbatch.core.errors import InputError, OutputError, one_line
from popbatch.core.features import normalize_column_name
from popbatch.core.sqlquote import quote_column, quote_string

ProgressCallback = Callable[[int, int | None], None]


@dataclass
class RunSummary:
    """What a run did. Always ``rows_read == rows_scored + rows_rejected + rows_skipped``."""

    input: str
    output: str
    rejects: str | None
    model_id: str
    scored_at: str
    rows_read: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    rows_skipped: int = 0
    rows_written: int | None = None
    incremental: bool = False
    rows_genre_other: int = 0
    seconds: float = 0.0
    rows_per_second: float = 0.0
    batch_size: int = DEFAULT_BATCH_SIZE
    threads: int = 1
    fills: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """The one summary line printed on stderr at the end of a run."""
        rejected = f", {self.rows_rejected:,} rejected" if self.rows_rejected else ""
        if self.incremental:
            rejected += f", {self.rows_skipped:,} up to date"
        rejects = f" (rejects: {self.rejects})" if self.rows_rejected and self.rejects else ""
        if self.incremental and self.rows_written is not None:
            rejects += f", {self.rows_written:,} rows in the target"
        elif self.rows_written is not None and self.rows_written != self.rows_scored:
            rejects += f", {self.rows_written:,} rows written (one per key)"
        return (
            f"scored {self.rows_scored:,} of {self.rows_read:,} rows{rejected} from {self.input} "
            f"into {self.output}{rejects} in {self.seconds:.2f} s "
            f"({self.rows_per_second:,.0f} rows/s), model {self.model_id[:12]}"
        )


def score(
    source: Source | str | Path | Sequence[str | Path],
    sink: Sink | str | Path,
    model: ModelBundle | str | Path | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    threads: int | None = None,
    on_invalid: str = "reject",
    rejects: Sink | str | Path | None = None,
    key: str | None = None,
    columns: str | Sequence[str] = "key",
    maps: Mapping[str, str] | None = None,
    fills: Mapping[str, str] | None = None,
    progress: ProgressCallback | None = None,
    incremental: bool = False,
    wait: float = 0,
    record: bool = True,
) -> RunSummary:
    """Score a catalog and write the scores; nothing is visible until the run succeeds.

    Parameters
    ----------
    source
        A :class:`~batch.sources.Source`, or path(s) for :func:`~batch.sources.open_source`.
    sink
        A :class:`~batch.sinks.Sink`, or an output path for :func:`~batch.sinks.open_sink`.
    model
        A verified :class:`~batch.manifest.ModelBundle`, a model directory, or
        ``None`` for the embedded default model.
    batch_size
        Rows per batch (memory grows with it, not with the input).
    threads
        Threads running onnxruntime on slices of each batch at once; ``None`` for
        every available core.
    on_invalid
        ``"reject"`` writes invalid rows to ``rejects`` and goes on; ``"fail"``
        stops at the first (and writes nothing).
    rejects
        Rejects target; default ``<output stem>.rejects.<ext>`` (or table
        ``<table>_rejects``), written when a row is rejected.
    key, columns, maps, fills
        See :class:`~batch.preprocess.Preprocessor`.
    progress
        Called as ``progress(rows_read_so_far, total_rows_or_None)`` after each batch.
    incremental
        Skip rows the target (a Parquet file or DuckDB table, ``replace``
        mode) already holds with the same key, features and model; they are
        carried over, so the result equals a full run.
    wait
        Seconds to wait for another run's lock on the target (then
        :class:`~batch.errors.LockError`, exit code 75).
    record
        Record the run in the target's run log (``popbatch_runs`` or ``runs.jsonl``).

    Returns
    -------
    RunSummary

    Raises
    ------
    InputError, SchemaError, InvalidRowError
        Bad input (exit code 2 in the CLI); nothing is written.
    ModelError, OutputError
        The model cannot be used or the output cannot be written (exit code 1).
    LockError
        Another run holds the target (exit code 75); this run is not recorded.
    """
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    started = time.perf_counter()
    bundle = model if isinstance(model, ModelBundle) else load_model(model)
    source = source if isinstance(source, Source) else open_source(source)
    try:
        key = normalize_column_name(key or bundle.manifest.get("key") or "track_id")
        sink = sink if isinstance(sink, Sink) else open_sink(sink, key=key)
        if incremental:
            _check_incremental(sink)
        lock = _lock_target(sink.target, wait)
    except BaseException:
        source.close()
        raise
    log: dict[str, Any] = {"input": source.name, "output": sink.name}
    try:
        with recorded_run(sink.target, log) if record else contextlib.nullcontext():
            summary = _score_locked(
                source, sink, bundle, log, started,
                batch_size=batch_size, threads=threads, on_invalid=on_invalid,
                rejects=rejects, key=key, columns=columns, maps=maps, fills=fills,
                progress=progress, incremental=incremental, wait=wait, record=record,
            )  # fmt: skip
            log.update(summary.to_dict())
    finally:
        if lock is not None:
            lock.release()
    return summary


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


def _check_incremental(sink: Sink) -> None:
    if isinstance(sink, DuckDBWriteBack) or not isinstance(sink, ParquetSink | DuckDBSink):
        raise InputError(
            "--incremental needs a Parquet output or a DuckDB table (-o FILE.parquet, "
            "or -o FILE.duckdb --into TABLE)"
        )
    if isinstance(sink, DuckDBSink) and sink.mode != "replace":
        raise InputError(
            f"--incremental keeps the target equal to a full --mode replace run; drop --mode "
            f"{sink.mode}"
        )


def _score_locked(
    source: Source,
    sink: Sink,
    bundle: ModelBundle,
    log: dict[str, Any],
    started: float,
    *,
    batch_size: int,
    threads: int | None,
    on_invalid: str,
    rejects: Sink | str | Path | None,
    key: str,
    columns: str | Sequence[str],
    maps: Mapping[str, str] | None,
    fills: Mapping[str, str] | None,
    progress: ProgressCallback | None,
    incremental: bool,
    wait: float,
    record: bool,
) -> RunSummary:
    """The run itself, with the target locked (see :func:`score`)."""
    try:
        log["model_id"] = bundle.model_id
        preprocessor = Preprocessor(
            bundle.manifest,
            key=key,
            columns=columns,
            maps=maps or {},
            fills=fills or {},
            on_invalid=on_invalid,
        ).bind(source.schema, source.name)
        rejects_sink = rejects if isinstance(rejects, Sink) else rejects_sink_for(sink, rejects)
        scorer = OnnxScorer(bundle, threads)
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
        batch_size=batch_size,
        threads=scorer.threads,
        fills=preprocessor.fills_applied,
        incremental=incremental,
    )
    job = _Job(source, preprocessor, scorer, sink, rejects_sink, scored_at, summary, progress)
    job.wait = wait
    if record and isinstance(sink, DuckDBSink):

        def record_in_transaction(con: Any) -> None:
            log.update(summary.to_dict())
            record_success(sink.target, log, con)

        job.in_transaction = record_in_transaction
    try:
        if incremental:
            job.up_to_date = _Incremental.load(sink, job.schema, key, bundle.model_id, wait)
        job.run(batch_size)
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


class _Incremental:
    """An incremental run's lookup of up-to-date rows and its staged skipped rows."""

    def __init__(self, lookup: UpToDate, skipped: SkippedRows, key: str) -> None:
        self.lookup = lookup
        self.skipped = skipped
        self.key = key

    @classmethod
    def load(
        cls, sink: Sink, schema: pa.Schema, key: str, model_id: str, wait: float
    ) -> _Incremental | None:
        """Read the target's (key, features_hash) of ``model_id``; None when there is
        nothing to compare with (no target yet, or its columns differ from this run's:
        then every row is scored, which is what a full run would write).
        """
        if key not in schema.names:
            raise InputError(
                f"--incremental matches rows by the key column {key!r}; keep it with --columns"
            )
        if isinstance(sink, DuckDBSink):
            lookup = _duckdb_lookup(sink, schema, key, model_id, wait)
        else:
            lookup = _parquet_lookup(sink.path, schema, key, model_id)
        if lookup is None:
            return None
        target = sink.target
        staged = target.parent / f".{target.name}.{os.getpid()}.skipped.parquet"
        skipped = SkippedRows(staged, schema.field(key))
        sink.carry_over = CarryOver(skipped, key, model_id)
        return cls(lookup, skipped, key)


def _parquet_lookup(path: Path, schema: pa.Schema, key: str, model_id: str) -> UpToDate | None:
    import pyarrow.dataset as ds

    if not path.is_file():
        return None
    try:
        stored = ds.dataset(path, format="parquet")
        if not stored.schema.remove_metadata().equals(schema.remove_metadata()):
            return None
        batches = stored.to_batches(
            columns=[key, HASH_COLUMN], filter=ds.field("model_id") == model_id
        )
        return UpToDate.from_batches(batches, key)
    except (pa.ArrowException, OSError) as exc:
        raise OutputError(
            f"{path}: cannot read the previous output for --incremental "
            f"({one_line(exc, 200)}); remove it or run without --incremental"
        ) from None


def _duckdb_lookup(
    sink: DuckDBSink, schema: pa.Schema, key: str, model_id: str, wait: float
) -> UpToDate | None:
    import duckdb
    from popbatch.batch.lock import connect_duckdb
    from popbatch.batch.sinks import table_exists

    if not sink.path.is_file():
        return None
    # Read-only: analysts' readers may stay; a writer makes this wait, then exit 75.
    con = None
    try:
        con = connect_duckdb(sink.path, read_only=True, wait=max(wait, COMMIT_WAIT_SECONDS))
        if not table_exists(con, sink.table):
            return None
        columns = [row[0] for row in con.sql(f"DESCRIBE {sink.table_sql}").fetchall()]
        if columns != schema.names:
            return None
        model = quote_string(model_id)
        reader = con.sql(
            f"SELECT {quote_column(key)}, {HASH_COLUMN} FROM {sink.table_sql} "
            f"WHERE model_id = {model}"
        ).to_arrow_reader(1 << 16)
        return UpToDate.from_batches(reader, key)
    except duckdb.Error as exc:
        raise OutputError(
            f"{sink.name}: cannot read the stored scores for --incremental "
            f"({one_line(exc, 200)}); run once without --incremental"
        ) from None
    finally:
        if con is not None:
            con.close()


def default_output(
    inputs: Sequence[str | Path] | str | Path, table: str | None = None, query: str | None = None
) -> Path:
    """Where scores go without ``-o``: ``<input stem>.scored.parquet`` beside the input.

    ``catalog.csv`` -> ``catalog.scored.parquet``; a directory ``catalog/`` ->
    ``catalog.scored.parquet`` beside it; a DuckDB table ``db.duckdb --table
    tracks`` -> ``db.tracks.scored.parquet``.

    Raises
    ------
    InputError
        For several inputs, a glob or a ``--query``: there is no obvious name.
    """
    if isinstance(inputs, str | Path):
        inputs = [inputs]
    if len(inputs) != 1 or query is not None or GLOB_CHARS.search(str(inputs[0])):
        raise InputError("give -o OUTPUT when scoring several inputs, a glob or a --query")
    path = Path(inputs[0])
    stem = path.name.rstrip("/")
    for suffix in (".gz", ".bz2", ".zst"):
        stem = stem.removesuffix(suffix)
    stem = Path(stem).stem if not path.is_dir() else stem
    if table is not None:
        stem = f"{stem}.{table}"
    return path.parent / f"{stem}.scored.parquet"


class _Job:
    """One run's pipeline: reader thread -> inference (this thread) -> writer thread."""

    # One batch waiting on each side of inference: enough to overlap (measured no
    # slower than 2) and each waiting batch costs ~35 MB at 65,536 rows x 129 inputs.
    QUEUE_DEPTH = 1

    def __init__(
        self,
        source: Source,
        preprocessor: Preprocessor,
        scorer: OnnxScorer,
        sink: Sink,
        rejects_sink: Sink,
        scored_at: datetime,
        summary: RunSummary,
        progress: ProgressCallback | None,
    ) -> None:
        self.source = source
        self.preprocessor = preprocessor
        self.scorer = scorer
        self.sink = sink
        self.rejects_sink = rejects_sink
        self.summary = summary
        self.progress = progress
        self.model_id = pa.scalar(scorer.model_id, pa.string())
        self.scored_at = pa.scalar(scored_at.replace(tzinfo=None), SCORE_FIELDS[3].type)
        self.schema = pa.schema([*preprocessor.output_schema, *SCORE_FIELDS])
        self.stop = threading.Event()
        self.buffers: queue.Queue[FeatureBuffer] = queue.Queue()
        self.wait = 0.0
        self.in_transaction: Callable[[Any], None] | None = None
        self.up_to_date: _Incremental | None = None
        # features_hash: numeric inputs by value, the genre one-hot block by position
        block = sorted(preprocessor.genre_positions.values())
        self.hash_columns = (
            as_columns([n.position for n in preprocessor.numeric]),
            as_columns(block) or None,
        )
        # feature position -> index in the one-hot block: the preprocessor already
        # knows which genre column it set, so the hash needs no argmax over the block.
        self.block_index = np.zeros(preprocessor.width, np.int64)
        self.block_index[block] = np.arange(len(block))

    def run(self, batch_size: int) -> None:
        opened: list[Sink] = []
        try:
            for sink, schema in (
                (self.sink, self.schema),
                (self.rejects_sink, self.preprocessor.rejects_schema),
            ):
                # Listed before open: a Ctrl-C inside open still gets its temp file removed.
                opened.append(sink)
                sink.open(schema, self.preprocessor.by_final)
            reader = _Reader(self._prepare(batch_size), self.QUEUE_DEPTH, self.stop)
            with reader, _Writer(self._write, self.QUEUE_DEPTH, self.stop) as writer:
                for prepared, hashes, skipped in reader:
                    probability, popular = self.scorer.predict(prepared.features)
                    self.buffers.put(prepared.buffer)  # the matrix is no longer needed
                    prepared.features = None
                    writer.put((prepared, hashes, probability, popular))
                    self._count(prepared, skipped)
            # The source may be the database we write to: close it before committing.
            self.source.close()
            commit_all(opened, wait=self.wait, in_transaction=self.in_transaction)
        except BaseException:
            self.stop.set()
            self.source.close()
            for sink in opened:
                sink.abort()
            raise
        finally:
            self.scorer.close()
            if self.up_to_date is not None:
                self.up_to_date.skipped.remove()

    def _prepare(self, batch_size: int) -> Iterator[tuple[Prepared, np.ndarray, int]]:
        # One feature matrix being built, one queued, one in inference: three
        # buffers, handed back by the inference loop, so none is ever allocated
        # per batch (created lazily; untouched pages cost no memory).
        width = self.preprocessor.width
        for _ in range(self.QUEUE_DEPTH + 2):
            self.buffers.put(FeatureBuffer(min(batch_size, 1 << 20), width))
        next_row = 1
        for batch in self.source.batches(self.preprocessor.read_columns, batch_size):
            buffer = self._free_buffer()
            if buffer is None:
                return  # the run is stopping
            prepared = self.preprocessor.transform(batch, first_row=next_row, buffer=buffer)
            next_row += batch.num_rows
            hashes = self._hash(prepared)
            skipped = 0
            if self.up_to_date is not None:
                hashes, skipped = self._skip_up_to_date(prepared, hashes)
            yield prepared, hashes, skipped

    def _hash(self, prepared: Prepared) -> np.ndarray:
        positions = prepared.genre_positions
        hot = None if positions is None else self.block_index[positions]
        return features_hash(prepared.features, *self.hash_columns, hot=hot)

    def _skip_up_to_date(self, prepared: Prepared, hashes: np.ndarray) -> tuple[np.ndarray, int]:
        """Drop the rows the target already holds (staging their key and hash)."""
        incremental = self.up_to_date
        keys = prepared.passthrough.column(incremental.key)
        skip = incremental.lookup.skip(keys, hashes)
        skipped = int(skip.sum())
        if skipped:
            incremental.skipped.write(keys.filter(pa.array(skip)), hashes[skip])
            keep = ~skip
            prepared.features = np.ascontiguousarray(prepared.features[keep])
            prepared.passthrough = prepared.passthrough.filter(pa.array(keep))
            hashes = hashes[keep]
        return hashes, skipped

    def _free_buffer(self) -> FeatureBuffer | None:
        while not self.stop.is_set():
            try:
                return self.buffers.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def _count(self, prepared: Prepared, skipped: int) -> None:
        summary = self.summary
        summary.rows_read += prepared.rows
        summary.rows_rejected += prepared.rows_rejected
        summary.rows_skipped += skipped
        summary.rows_scored += prepared.rows - prepared.rows_rejected - skipped
        summary.rows_genre_other += prepared.genre_other
        if self.progress is not None:
            self.progress(summary.rows_read, self.source.total_rows)

    def _write(self, item: tuple[Prepared, np.ndarray, np.ndarray, np.ndarray]) -> None:
        prepared, hashes, probability, popular = item
        n = len(probability)
        arrays = [
            *prepared.passthrough.columns,
            pa.array(probability.astype(np.float64), pa.float64()),
            pa.array(popular, pa.bool_()),
            pa.repeat(self.model_id, n),
            pa.repeat(self.scored_at, n),
            pa.array(hashes, pa.uint64()),
        ]
        # A source may hand a later batch a slightly different type (e.g. a Parquet
        # file whose column is int32 where the first was int64): conform to the output.
        try:
            arrays = [
                a if a.type == f.type else a.cast(f.type)
                for a, f in zip(arrays, self.schema, strict=True)
            ]
        except pa.ArrowException as exc:
            raise InputError(
                f"{self.source.name}: a column changed type part-way through the input "
                f"({one_line(exc, 200)}); pass fewer --columns"
            ) from None
        if n:
            self.sink.write(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        if prepared.rejects is not None:
            self.rejects_sink.write(prepared.rejects)


_DONE = object()


@dataclass
class _Failure:
    exc: BaseException


def _put(channel: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put unless the run is stopping (so a thread never blocks on a dead consumer)."""
    while not stop.is_set():
        try:
            channel.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class _Reader:
    """Runs an iterator in a thread, at most ``depth`` items ahead of the consumer.

    Errors raised in the thread are re-raised in the consumer. Leaving the
    ``with`` block stops the thread and waits for it, so nothing reads the
    source after the job closes it.
    """

    def __init__(self, items: Iterator[Any], depth: int, stop: threading.Event) -> None:
        self.items = items
        self.stop = stop
        self.channel: queue.Queue = queue.Queue(maxsize=depth)
        self.thread = threading.Thread(target=self._produce, name="popbatch-reader", daemon=True)
        self.entered = threading.Event()
        self.finished = threading.Event()

    def _produce(self) -> None:
        self.entered.set()
        try:
            if self.stop.is_set():
                return  # start() was interrupted: never touch the source
            for item in self.items:
                if not _put(self.channel, item, self.stop):
                    return
            _put(self.channel, _DONE, self.stop)
        except BaseException as exc:
            _put(self.channel, _Failure(exc), self.stop)
        finally:
            self.finished.set()

    def __enter__(self) -> _Reader:
        try:
            self.thread.start()
        except BaseException:
            # Ctrl-C inside start(): the thread may run with no __exit__ to stop it,
            # and a thread still reading while the interpreter shuts down aborts
            # the process ("terminate called", exit -6) instead of exiting 130.
            self._stop_and_wait()
            raise
        return self

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self.channel.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item

    def _stop_and_wait(self) -> None:
        self.stop.set()
        if self.entered.is_set():  # otherwise it sees `stop` first thing and returns
            self.finished.wait()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._stop_and_wait()


class _Writer:
    """A thread that writes items through ``write`` while the caller computes the next."""

    def __init__(self, write: Callable[[Any], None], depth: int, stop: threading.Event) -> None:
        self.write = write
        self.stop = stop
        self.channel: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="popbatch-writer", daemon=True)

    def __enter__(self) -> _Writer:
        try:
            self.thread.start()
        except BaseException:  # Ctrl-C inside start(): let a started thread end
            self.stop.set()
            self.channel.put(_DONE)
            raise
        return self

    def _loop(self) -> None:
        while True:
            item = self.channel.get()
            if item is _DONE:
                return
            if self.error is None and not self.stop.is_set():
                try:
                    self.write(item)
                except BaseException as exc:
                    self.error = exc

    def put(self, item: Any) -> None:
        if self.error is not None:
            raise self.error
        self.channel.put(item)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.stop.set()  # the run failed: do not write what is still queued
        self.channel.put(_DONE)
        self.thread.join()
        if exc_type is None and self.error is not None:
            raise self.error
