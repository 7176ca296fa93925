"""``import popbatch.spark``: score Spark DataFrames with popbatch (needs the ``spark`` extra).

>>> from popbatch.spark import local_session, score_dataframe    # doctest: +SKIP
>>> spark = local_session("local[2]")                            # doctest: +SKIP
>>> scored, rejects = score_dataframe(spark.read.parquet("catalog.parquet"))  # doctest: +SKIP

popbatch's preprocessing and ONNX scoring inside Spark, through ``DataFrame.mapInArrow``.

Not a distributed runner: Spark reads, partitions and writes; each partition's
Arrow batches go through :func:`~popbatch.batch.batches.score_batches`, the
code ``popbatch score`` runs, so the scores, labels, ``features_hash`` and
``model_id`` are the ones ``popbatch score`` gives for the same rows.

- The model's manifest and ONNX bytes are broadcast once. Each executor
  process checks that the bytes hash to the model id the driver loaded
  before it builds its one onnxruntime session, which it keeps for every
  later batch and task of the job (Python workers are reused).
- Spark has no unsigned integers: ``features_hash`` (UBIGINT elsewhere) is a
  ``DECIMAL(20,0)`` here, the type Spark itself reads Parquet's UINT64 as;
  its values are the same. ``scored_at`` is a ``TIMESTAMP_NTZ`` (UTC), one
  value for the whole job.
- ``row`` in the rejects counts from 1 within a Spark partition (Spark does
  not keep a file's row numbers); the key column identifies the row.

Needs the ``spark`` extra (``pip install 'popbatch[spark]'``: pyspark, and the
pandas it requires for ``mapInArrow``) and a Java runtime. It sits on top of the
scoring path, beside the public API: this is the only module of popbatch that imports
pyspark (``tests/test_layers.py`` checks it), and nothing of popbatch imports it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from popbatch.batch.batches import (
    REJECTED,
    BatchOptions,
    check_heads,
    flag_batches,
    flagged_schema,
)
from popbatch.batch.runner import OnnxScorer
from popbatch.core.bundle import (
    ModelBundle,
    check_file_name,
    load_model,
    register_prior_table,
    verify_identity,
)
from popbatch.core.errors import InputError, ModelError
from popbatch.core.heads import mismatched_digest

try:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        f"popbatch.spark needs pyspark ({exc}); install it with: pip install 'popbatch[spark]'"
    ) from None

# pyspark warns on every pandas_udf (mapInArrow is one) that it does not fully
# support pandas 3; mapInArrow hands Arrow batches over and never uses pandas.
warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)

__all__ = ["local_session", "score_dataframe", "score_flagged", "split_flagged"]

#: Spark's type for the unsigned 64-bit ``features_hash`` (exact, as Spark reads Parquet UINT64).
HASH_TYPE = pa.decimal128(20, 0)


def local_session(master: str = "local[2]", **conf: str) -> SparkSession:
    """A Spark session on this machine, bound to 127.0.0.1, running this interpreter.

    Sets ``PYSPARK_PYTHON`` (workers run ``sys.executable``) and
    ``SPARK_LOCAL_IP`` unless they are set; ``conf`` adds Spark settings
    (``spark.sql.shuffle.partitions="4"``: use strings).
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    settings = {
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.host": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        **conf,
    }
    builder = SparkSession.builder.master(master).appName("popbatch")
    for name, value in settings.items():
        builder = builder.config(name, value)
    return builder.getOrCreate()


@dataclass(frozen=True)
class _Plan:
    """What each executor needs to score a partition (pickled into the task)."""

    model: Any  # a Broadcast of (manifest, model.onnx bytes, {head: ONNX bytes}, priors table)
    model_id: str
    schema: pa.Schema  # what the partitions yield, features_hash as HASH_TYPE
    scored_at: datetime
    threads: int
    options: BatchOptions = field(default_factory=BatchOptions)


def score_flagged(
    df: DataFrame,
    model: ModelBundle | str | Path | None = None,
    *,
    scored_at: datetime | None = None,
    threads: int = 1,
    **options: Any,
) -> DataFrame:
    """One row per input row: the scored-table columns and ``rejected`` (see
    :func:`~popbatch.batch.batches.score_batches`), lazily, by ``mapInArrow``.

    ``options`` are :func:`~popbatch.batch.batches.score_batches`'s ``key``,
    ``columns``, ``heads``, ``fills``, ``mapping`` and ``on_invalid``. The
    columns are checked on the driver, before any Spark job: a missing column
    raises :class:`~popbatch.core.errors.SchemaError` here. ``scored_at`` is
    one value for the whole job (default: now); ``threads`` is onnxruntime
    slices per task (Spark already runs a task per core). Persist the result
    to write both :func:`split_flagged` halves with one scoring pass.
    """
    bundle = model if isinstance(model, ModelBundle) else load_model(model)
    try:
        chosen = BatchOptions(**options)
    except TypeError as exc:
        raise InputError(f"score_dataframe(): {exc}") from None
    preprocessor = chosen.bind(bundle.manifest, _arrow_schema(df), "the DataFrame")
    # The heads are fixed here, on the driver, so every partition yields one schema.
    chosen = dataclasses.replace(chosen, heads=check_heads(chosen.heads, bundle.manifest))
    schema = _spark_arrow(flagged_schema(preprocessor, chosen.heads))
    shipped = (
        bundle.manifest,
        bundle.onnx_bytes,
        bundle.head_bytes,
        bundle.prior_bytes,
        bundle.all_heads_bytes,
    )
    plan = _Plan(
        model=df.sparkSession.sparkContext.broadcast(shipped),
        model_id=bundle.model_id,
        schema=schema,
        scored_at=scored_at or datetime.now(UTC),
        threads=threads,
        options=chosen,
    )
    return df.mapInArrow(functools.partial(_score_partition, plan), from_arrow_schema(schema))


def split_flagged(flagged: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(scored rows without ``rejected``, the rejects: ``row``, ``reason``, values as text)."""
    scored = flagged.where(F.col(REJECTED).isNull()).drop(REJECTED)
    rejects = flagged.where(F.col(REJECTED).isNotNull()).select(f"{REJECTED}.*")
    return scored, rejects


def score_dataframe(
    df: DataFrame, model: ModelBundle | str | Path | None = None, **options: Any
) -> tuple[DataFrame, DataFrame]:
    """Score a Spark DataFrame: ``(scored_df, rejects_df)``, both lazy.

    ``scored_df`` has the columns ``popbatch score`` writes (the key or
    ``columns``, ``popularity_prob``, ``popular``, ``model_id``, ``scored_at``,
    ``features_hash`` as DECIMAL(20,0)); ``rejects_df`` has ``row`` (within
    its partition), ``reason`` and the input values as text. Both come from
    one :func:`score_flagged`: each action scores again unless it is persisted
    (``examples/spark_score.py`` does). ``options`` are :func:`score_flagged`'s.

    >>> spark = local_session()                                    # doctest: +SKIP
    >>> scored, rejects = score_dataframe(spark.read.parquet("catalog.parquet"))  # doctest: +SKIP
    """
    return split_flagged(score_flagged(df, model, **options))


def _arrow_schema(df: DataFrame) -> pa.Schema:
    """The Arrow schema of the batches ``mapInArrow`` hands a partition of ``df``."""
    try:
        return to_arrow_schema(df.schema, timezone="UTC")
    except TypeError:  # pyspark 3.5 has no timezone argument: its timestamps are UTC already
        return to_arrow_schema(df.schema)


def _spark_arrow(schema: pa.Schema) -> pa.Schema:
    """``schema`` with Spark's type for every unsigned 64-bit column."""
    return pa.schema([f.with_type(HASH_TYPE) if pa.types.is_uint64(f.type) else f for f in schema])


# ------------------------------------------------------------------ executors
#: (model id, threads) -> the onnxruntime session of this executor process.
_SCORERS: dict[tuple[str, int], OnnxScorer] = {}


def _executor_scorer(plan: _Plan) -> OnnxScorer:
    """This process's session for the plan's model, built (and verified) once."""
    scorer = _SCORERS.get((plan.model_id, plan.threads))
    if scorer is None:
        manifest, onnx_bytes, head_bytes, prior_bytes, all_heads_bytes = plan.model.value
        where = f"the model shipped to this executor ({plan.model_id[:12]}…)"
        try:
            if manifest.get("model_id") != plan.model_id:
                raise ModelError(f"it is model {str(manifest.get('model_id'))[:12]}…")
            verify_identity(manifest, hashlib.sha256(onnx_bytes).hexdigest(), Path("."))
            for name, data in head_bytes.items():
                # The driver read these bytes under the bundle's file rule; a manifest
                # changed on the way names its files by the same rule or is refused.
                check_file_name(manifest["heads"][name].get("file"), f"heads.{name}.file")
                digest = mismatched_digest(data, manifest["heads"][name])
                if digest is not None:
                    raise ModelError(f"its {name} head is not the manifest's ({digest[:12]}…)")
            if all_heads_bytes is not None:  # every head in one graph
                check_file_name(manifest["all_heads"].get("file"), "all_heads.file")
                digest = mismatched_digest(all_heads_bytes, manifest["all_heads"])
                if digest is not None:
                    raise ModelError(f"its joint graph is not the manifest's ({digest[:12]}…)")
            if prior_bytes is not None:  # the catalog priors table, for the preprocessing
                digest = register_prior_table(prior_bytes)
                if digest != manifest["priors"]["table_sha256"]:
                    raise ModelError(f"its priors table is not the manifest's ({digest[:12]}…)")
        except ModelError as exc:
            raise ModelError(f"{where}: {exc}; resubmit the job") from None
        bundle = ModelBundle(
            Path("spark-broadcast"), manifest, onnx_bytes, head_bytes, prior_bytes, all_heads_bytes
        )
        scorer = _SCORERS[(plan.model_id, plan.threads)] = OnnxScorer(bundle, plan.threads)
    return scorer


def _score_partition(plan: _Plan, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``mapInArrow``'s function: one partition's batches, scored and flagged."""
    scorer = _executor_scorer(plan)
    for batch in flag_batches(batches, scorer, plan.options, plan.scored_at, "a Spark partition"):
        yield pa.RecordBatch.from_arrays(
            [
                column if column.type == f.type else column.cast(f.type)
                for column, f in zip(batch.columns, plan.schema, strict=True)
            ],
            schema=plan.schema,
        )
