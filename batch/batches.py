"""One Arrow batch in, its scores and rejects out: the block every engine shares.

:class:`BatchScorer` owns a bound :class:`~popbatch.batch.preprocess.Preprocessor`,
an :class:`~popbatch.batch.runner.OnnxScorer` and the ``features_hash``
layout, and turns one input ``RecordBatch`` into (scored batch, rejects batch)
in three steps: :meth:`~BatchScorer.prepare` (preprocess and hash),
:meth:`~BatchScorer.predict` (onnxruntime) and :meth:`~BatchScorer.assemble`
(the scored-table columns). ``popbatch score``
(:class:`~popbatch.batch.stream.StreamingRun`) runs the three steps on its
reader, inference and writer threads; :func:`score_batches` runs them one
after the other over any iterator of batches, which is what Spark
(:mod:`popbatch.spark`), Ray Data and Dask call.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from popbatch.batch.heads import HeadSessions
from popbatch.batch.incremental import as_columns, features_hash
from popbatch.batch.preprocess import FeatureBuffer, Prepared, Preprocessor
from popbatch.batch.runner import OnnxScorer

from popbatch.core.bundle import ModelBundle, load_model
from popbatch.core.errors import InputError, one_line
from popbatch.core.heads import HEADS, choose_heads
from popbatch.core.scored import (
    BY_NAME,
    HASH_COLUMN,
    INPUT_ROW_COLUMN,
    LABEL_COLUMN,
    MODEL_ID_COLUMN,
    PROBABILITY_COLUMN,
    SCORE_COLUMNS,
    SCORED_AT_COLUMN,
    scored_schema,
)

__all__ = [
    "REJECTED",
    "BatchOptions",
    "BatchScorer",
    "check_heads",
    "flag_batches",
    "flagged_schema",
    "score_batches",
]

#: The column of :func:`score_batches` that flags a rejected row: null on a
#: scored row; on a rejected row a struct of the rejects output's columns
#: (``row``, ``reason``, the row's values as text), and its score columns null.
REJECTED = "rejected"
#: The heads of today's models: ``popular`` gives ``popularity_prob`` and ``popular``.


def check_heads(heads: str | Sequence[str] | None, manifest: Mapping) -> tuple[str, ...]:
    """The heads to score: all the model's for None, else ``heads`` (``popular`` always).

    Raises
    ------
    InputError
        When ``heads`` is empty, unknown, or names a head the model does not have.
    """
    listed = manifest.get("heads") or {}
    return choose_heads(heads, ("popular", *(h for h in HEADS[1:] if h in listed)))


def _utc_naive(moment: datetime) -> datetime:
    """UTC wall time without a zone, as ``scored_at`` is stored (naive means UTC)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


class BatchScorer:
    """Scores one input batch at a time: preprocess, hash, infer, assemble.

    Parameters
    ----------
    preprocessor
        Bound to the input's schema (:meth:`Preprocessor.bind`).
    scorer
        The onnxruntime session; the caller closes it.
    scored_at
        The run's one timestamp (every row of a run has the same).
    heads
        Heads to score (:func:`check_heads`); None for all the model's.
    """

    def __init__(
        self,
        preprocessor: Preprocessor,
        scorer: OnnxScorer,
        scored_at: datetime,
        heads: str | Sequence[str] | None = None,
    ) -> None:
        self.preprocessor = preprocessor
        self.scorer = scorer
        running = ("popular", *scorer.heads.heads)
        self.heads = running if heads is None else check_heads(heads, scorer.bundle.manifest)
        if self.heads != running:  # the scorer runs exactly the heads scored here
            scorer.heads = HeadSessions(scorer.bundle, self.heads)
        if "genre" not in self.heads:  # nothing else reads the priors' genre shares
            preprocessor.leave_out_genre_shares()
        self.model_id = pa.scalar(scorer.model_id, pa.string())
        self.scored_at = pa.scalar(_utc_naive(scored_at), BY_NAME[SCORED_AT_COLUMN].arrow_type)
        self.schema = scored_schema(preprocessor.output_schema, self.heads)
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

    @property
    def rejects_schema(self) -> pa.Schema:
        return self.preprocessor.rejects_schema

    def prepare(
        self, batch: pa.RecordBatch, first_row: int = 1, buffer: FeatureBuffer | None = None
    ) -> tuple[Prepared, np.ndarray]:
        """Preprocess a batch whose first row is row ``first_row``, and hash its valid rows."""
        prepared = self.preprocessor.transform(batch, first_row=first_row, buffer=buffer)
        positions = prepared.genre_positions
        hot = None if positions is None else self.block_index[positions]
        return prepared, features_hash(prepared.features, *self.hash_columns, hot=hot)

    def predict(self, prepared: Prepared) -> tuple[np.ndarray, np.ndarray, dict]:
        """Probabilities (float32), labels (bool) and the extra heads' outputs of the
        prepared valid rows."""
        return self.scorer.predict_heads(prepared.features)

    def assemble(
        self,
        prepared: Prepared,
        hashes: np.ndarray,
        probability: np.ndarray,
        popular: np.ndarray,
        heads: dict[str, np.ndarray] | None = None,
    ) -> pa.RecordBatch:
        """The scored batch: passthrough columns, then the score columns (:attr:`schema`),
        then the extra heads' columns from ``heads`` (:meth:`predict`'s third value)."""
        n = len(probability)
        # One value per score column of popbatch.core.scored, put in its order by name.
        scores = {
            PROBABILITY_COLUMN: pa.array(probability.astype(np.float64), pa.float64()),
            LABEL_COLUMN: pa.array(popular, pa.bool_()),
            MODEL_ID_COLUMN: pa.repeat(self.model_id, n),
            SCORED_AT_COLUMN: pa.repeat(self.scored_at, n),
            HASH_COLUMN: pa.array(hashes, pa.uint64()),
            INPUT_ROW_COLUMN: pa.array(prepared.input_rows, pa.int64()),
        }
        arrays = [
            *prepared.passthrough.columns,
            *(scores[c.name] for c in SCORE_COLUMNS),
            *self.scorer.heads.arrays(heads or self.scorer.heads.empty(0)),
        ]
        # An input may hand a later batch a slightly different type (e.g. a Parquet
        # file whose column is int32 where the first was int64): conform to the output.
        try:
            arrays = [
                a if a.type == f.type else a.cast(f.type)
                for a, f in zip(arrays, self.schema, strict=True)
            ]
        except pa.ArrowException as exc:
            raise InputError(
                f"{self.preprocessor.source_name}: a column changed type part-way through "
                f"the input ({one_line(exc, 200)}); pass fewer --columns"
            ) from None
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def score(
        self, batch: pa.RecordBatch, first_row: int = 1
    ) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
        """(scored batch, rejects batch or None) for one input batch, in one go."""
        prepared, hashes = self.prepare(batch, first_row)
        probability, popular, heads = self.predict(prepared)
        return self.assemble(prepared, hashes, probability, popular, heads), prepared.rejects

    def flagged(self, batch: pa.RecordBatch, first_row: int = 1) -> pa.RecordBatch:
        """One output row per input row, in input order, with the :data:`REJECTED` flag."""
        scored, rejects = self.score(batch, first_row)
        schema = flagged_schema(self.preprocessor, self.heads)
        flag_type = schema.field(REJECTED).type
        columns = [*scored.columns, pa.nulls(scored.num_rows, flag_type)]
        valid = pa.RecordBatch.from_arrays(columns, schema=schema)
        if rejects is None:
            return valid
        where = rejects.column(0).to_numpy() - first_row  # row numbers -> batch positions
        kept = self.preprocessor.passthrough_of(batch).take(pa.array(where))
        empty = [pa.nulls(len(where), f.type) for f in self.schema][len(kept.columns) :]
        flag = pa.StructArray.from_arrays(rejects.columns, fields=list(rejects.schema))
        bad = pa.RecordBatch.from_arrays([*kept.columns, *empty, flag], schema=schema)
        rejected = np.zeros(batch.num_rows, bool)
        rejected[where] = True
        order = np.argsort(np.concatenate([np.flatnonzero(~rejected), where]), kind="stable")
        both = pa.Table.from_batches([valid, bad]).take(pa.array(order))
        return both.combine_chunks().to_batches()[0]


def flagged_schema(preprocessor: Preprocessor, heads: Sequence[str] = ()) -> pa.Schema:
    """The schema :func:`score_batches` yields for a bound preprocessor and heads."""
    flag = pa.struct(list(preprocessor.rejects_schema))
    scored = scored_schema(preprocessor.output_schema, tuple(heads))
    return pa.schema([*scored, pa.field(REJECTED, flag)])


def score_batches(
    batches: Iterable[pa.RecordBatch],
    model: ModelBundle | OnnxScorer | str | Path | None = None,
    *,
    key: str | None = None,
    columns: str | Sequence[str] = "key",
    heads: str | Sequence[str] | None = None,
    fills: Mapping[str, str] | None = None,
    mapping: Mapping[str, str] | None = None,
    on_invalid: str = "reject",
    scored_at: datetime | None = None,
    threads: int | None = None,
    name: str = "batches",
) -> Iterator[pa.RecordBatch]:
    """Score Arrow record batches: one output batch per input batch, row for row.

    >>> import pyarrow.csv, popbatch
    >>> batches = pyarrow.csv.read_csv("catalog.csv").to_batches()     # doctest: +SKIP
    >>> for batch in popbatch.score_batches(batches):                  # doctest: +SKIP
    ...     scored = batch.filter(batch["rejected"].is_null())

    Each output batch has the scored-table columns (the passthrough columns,
    ``popularity_prob``, ``popular``, ``model_id``, ``scored_at``,
    ``features_hash``, ``input_row``; as ``popbatch score`` writes them) and one more,
    ``rejected`` (:data:`REJECTED`): null on a scored row; on a rejected row a
    struct holding what the rejects output holds (``row``, ``reason`` and the
    row's input values as text), with the score columns null. So
    ``batch.filter(batch["rejected"].is_null()).drop_columns(["rejected"])`` is
    exactly the scored table, and one map over a distributed engine's
    partitions gives both outputs.

    Parameters
    ----------
    batches
        Record batches with the catalog's columns; the first one's schema binds
        the columns (a later batch may differ only in types that cast).
    model
        A verified :class:`~popbatch.core.bundle.ModelBundle`, a model
        directory, None for the embedded default model, or an
        :class:`~popbatch.batch.runner.OnnxScorer` to reuse its session (not
        closed here).
    key, columns, fills, mapping, on_invalid
        As ``popbatch score``'s ``--key``, ``--columns``, ``--fill``, ``--map``
        (``{new: old}``) and ``--on-invalid``.
    heads
        Heads to score, checked against the model's (today only ``"popular"``).
    scored_at
        The ``scored_at`` of every row (default: now); give one value to all
        the partitions of one job.
    threads
        onnxruntime slices scored at once (None: every core).
    name
        What error messages call the input.

    Row numbers (``row`` in ``rejected``) count from 1 over the batches of one call.

    Raises
    ------
    SchemaError, InputError
        A missing column, a bad option, or with ``on_invalid="fail"`` a bad row.
    ModelError
        The model cannot be loaded or run.
    """
    options = BatchOptions(key, columns, heads, dict(fills or {}), dict(mapping or {}), on_invalid)
    if isinstance(model, OnnxScorer):
        yield from flag_batches(batches, model, options, scored_at, name)
        return
    bundle = model if isinstance(model, ModelBundle) else load_model(model)
    with OnnxScorer(bundle, threads) as scorer:
        yield from flag_batches(batches, scorer, options, scored_at, name)


@dataclass(frozen=True)
class BatchOptions:
    """:func:`score_batches`'s column and row options (``popbatch score``'s flags)."""

    key: str | None = None
    columns: str | Sequence[str] = "key"
    heads: str | Sequence[str] | None = None
    fills: Mapping[str, str] = field(default_factory=dict)
    mapping: Mapping[str, str] = field(default_factory=dict)
    on_invalid: str = "reject"

    def bind(self, manifest: Mapping[str, Any], schema: pa.Schema, name: str) -> Preprocessor:
        """A preprocessor bound to ``schema``; raises before any row if a column is missing."""
        check_heads(self.heads, manifest)
        return Preprocessor(
            manifest,
            key=self.key,
            columns=self.columns,
            maps=self.mapping,
            fills=self.fills,
            on_invalid=self.on_invalid,
        ).bind(schema, name)


def flag_batches(
    batches: Iterable[pa.RecordBatch],
    scorer: OnnxScorer,
    options: BatchOptions,
    scored_at: datetime | None = None,
    name: str = "batches",
) -> Iterator[pa.RecordBatch]:
    """:func:`score_batches` with a session the caller owns (and closes)."""
    iterator = iter(batches)
    first = next(iterator, None)
    if first is None:
        return
    preprocessor = options.bind(scorer.bundle.manifest, first.schema, name)
    scoring = BatchScorer(preprocessor, scorer, scored_at or datetime.now(UTC), options.heads)
    next_row = 1
    for batch in _chain(first, iterator):
        yield scoring.flagged(batch, next_row)
        next_row += batch.num_rows


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest
