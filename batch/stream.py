"""The streaming run: source -> preprocess -> infer -> sink, one bounded batch at a time.

A source thread reads the next batch while a reader thread preprocesses the
one before, and a writer thread writes the previous one while onnxruntime
(which releases the GIL) scores the current one. Queues between the stages
hold at most a couple of batches, so memory stays flat in the size of the
input. :func:`popbatch.batch.score.score` sets a run up (model, lock, run log)
and hands it to :class:`StreamingRun`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from popbatch.batch.batches import BatchScorer
from popbatch.batch.incremental_lookup import IncrementalRun
from popbatch.batch.preprocess import FeatureBuffer, Prepared, Preprocessor
from popbatch.batch.runner import OnnxScorer
from popbatch.batch.sinks import Sink, check_tables, commit_all
from popbatch.batch.sources import Source
from popbatch.batch.summary import ProgressCallback, RunSummary

from popbatch.core.errors import InputError


class StreamingRun:
    """One run's pipeline: reader thread -> inference (this thread) -> writer thread.

    The per-batch work is :class:`~popbatch.batch.batches.BatchScorer`'s (the same
    as :func:`~popbatch.batch.batches.score_batches`): its ``prepare`` runs on the
    reader thread, ``predict`` here, ``assemble`` on the writer thread.
    """

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
        self.scoring = BatchScorer(preprocessor, scorer, scored_at)
        self.schema = self.scoring.schema
        self.stop = threading.Event()
        self.buffers: queue.Queue[FeatureBuffer] = queue.Queue()
        self.wait = 0.0
        self.refuse_all_rejected = True
        self.in_transaction: Callable[[Any], None] | None = None
        self.up_to_date: IncrementalRun | None = None

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
            check_tables(opened)  # a table this run may not write: refused before scoring
            reader = _Reader(self._prepare(batch_size), self.QUEUE_DEPTH, self.stop)
            with reader, _Writer(self._write, self.QUEUE_DEPTH, self.stop) as writer:
                for prepared, hashes, skipped in reader:
                    probability, popular, heads = self.scoring.predict(prepared)
                    self.buffers.put(prepared.buffer)  # the matrix is no longer needed
                    prepared.features = None
                    writer.put((prepared, hashes, probability, popular, heads))
                    self._count(prepared, skipped)
            self._refuse_nothing_scored()
            # The source may be the database we write to: close it before committing.
            self.source.close()
            self._release()  # a DuckDB commit needs memory the scoring no longer does
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

    def _refuse_nothing_scored(self) -> None:
        """Fail, before committing anything, a run that rejected every row it read: a
        nightly job must not replace yesterday's scores with none and report success."""
        summary = self.summary
        if self.refuse_all_rejected and summary.every_row_rejected:
            reason, _ = summary.most_common_reason() or ("see --on-invalid fail", 0)
            n = summary.rows_read
            rows = f"all {n:,} rows were" if n > 1 else "its row was"
            raise InputError(
                f"{summary.input}: {rows} rejected ({reason}); "
                "nothing was written. Fix those rows, or run with --on-invalid fail to stop "
                "at the first one"
            )

    def _release(self) -> None:
        """Free the feature matrices and the inference threads before the commit."""
        self.scorer.close()
        while not self.buffers.empty():
            self.buffers.get_nowait()
        # Arrow's allocator keeps freed pages for reuse; the commit will not reuse them
        pa.default_memory_pool().release_unused()

    def _prepare(self, batch_size: int) -> Iterator[tuple[Prepared, np.ndarray, int]]:
        # One feature matrix being built or waiting, one in inference: two buffers,
        # handed back by the inference loop, so none is ever allocated per batch
        # (created lazily; untouched pages cost no memory). A third, so that one
        # more batch could wait, cost 47 MB at 363 inputs and bought no speed
        # (bench/results/ab_9_two_buffers.json).
        width = self.preprocessor.width
        for _ in range(self.QUEUE_DEPTH + 1):
            self.buffers.put(FeatureBuffer(min(batch_size, 1 << 20), width))
        next_row = 1
        # Reading (decoding Parquet, parsing CSV, a DuckDB scan) runs one batch ahead
        # in a thread of its own, so it overlaps the preprocessing of the batch before:
        # 10M rows in 0.91x the wall time with --heads popular and from CSV, 0.98x from
        # DuckDB, 1.02x with every head, whose two cores were already busy
        # (bench/results/ab_14_readahead_*.json). Its own stop: leaving this block stops
        # it, not the run (the run's stop makes this generator leave the block).
        batches = self.source.batches(self.preprocessor.read_columns, batch_size)
        with _Reader(batches, self.QUEUE_DEPTH, threading.Event(), "popbatch-source") as read:
            for batch in read:
                buffer = self._free_buffer()
                if buffer is None:
                    return  # the run is stopping
                prepared, hashes = self.scoring.prepare(batch, next_row, buffer)
                next_row += batch.num_rows
                skipped = 0
                if self.up_to_date is not None:
                    hashes, skipped = self._skip_up_to_date(prepared, hashes)
                yield prepared, hashes, skipped

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
            prepared.input_rows = prepared.input_rows[keep]
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
        if prepared.rows_rejected:
            counts = pc.value_counts(prepared.rejects.column("reason"))
            reasons, rows = counts.field("values"), counts.field("counts")
            summary.count_reasons(zip(reasons.to_pylist(), rows.to_pylist(), strict=True))
        summary.rows_skipped += skipped
        summary.rows_scored += prepared.rows - prepared.rows_rejected - skipped
        summary.rows_genre_other += prepared.genre_other
        if self.progress is not None:
            self.progress(summary.rows_read, self.source.total_rows)

    def _write(self, item: tuple[Prepared, np.ndarray, np.ndarray, np.ndarray, dict]) -> None:
        prepared, hashes, probability, popular, heads = item
        scored = self.scoring.assemble(prepared, hashes, probability, popular, heads)
        if scored.num_rows:
            self.sink.write(scored)
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

    def __init__(
        self,
        items: Iterator[Any],
        depth: int,
        stop: threading.Event,
        name: str = "popbatch-reader",
    ) -> None:
        self.items = items
        self.stop = stop
        self.channel: queue.Queue = queue.Queue(maxsize=depth)
        self.thread = threading.Thread(target=self._produce, name=name, daemon=True)
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
            # A generator left early (the run stops) runs its own clean-up now, in
            # this thread, before the consumer can close what it reads
            close = getattr(self.items, "close", None)
            if close is not None:
                close()
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
