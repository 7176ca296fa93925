"""popbatch.spark on a local[2] Spark session: the same scores as popbatch score.

Skipped, with the reason, when pyspark (the ``spark`` extra) or a Java runtime
is missing; ``.ci/run`` installs both, so CI runs it. One session serves the
module (its start-up is most of the time).
"""

from __future__ import annotations

import copy
import importlib.util
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from bad_rows import bad_catalog
from popbatch.batch.sources import CsvSource

import popbatch

if shutil.which("java") is None:
    pytest.skip("no Java runtime on PATH (Spark needs one: apt-get install default-jre-headless)",
                allow_module_level=True)  # fmt: skip
pytest.importorskip("pyspark", reason="pyspark is not installed: pip install -e '.[spark]'")

import popbatch.spark as popbatch_spark
from popbatch.core import identity
from popbatch.core.errors import ModelError, SchemaError
from popbatch.spark import local_session, score_dataframe

ROOT = Path(__file__).resolve().parents[1]
# pyspark warns about pandas 3 on each mapInArrow; popbatch.spark never uses pandas
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")
BAD = {7: {"danceability": "-0.5"}, 900: {"tempo": "fast"}, 1500: {"loudness": ""}}


@pytest.fixture(scope="module")
def spark():
    session = local_session("local[2]", **{"spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return bad_catalog(tmp_path_factory.mktemp("catalog"), BAD)


def by_key(table: pa.Table) -> pa.Table:
    """Rows in a fixed order (Spark's order depends on its partitions)."""
    keys = [(n, "ascending") for n in table.column_names]
    return table.sort_by(keys)


def popbatch_score(source, tmp_path) -> tuple[pa.Table, pa.Table]:
    out = tmp_path / "cli" / "scored.parquet"
    popbatch.score(source, out, record=False)
    return pq.read_table(out), pq.read_table(out.with_name("scored.rejects.parquet"))


def to_arrow(df) -> pa.Table:
    """``df`` collected as Arrow (``DataFrame.toArrow`` is Spark 4's; 3.5 has the private one)."""
    if hasattr(df, "toArrow"):
        return df.toArrow()
    from pyspark.sql.pandas.types import to_arrow_schema

    table = pa.Table.from_batches(df._collect_as_arrow(), schema=to_arrow_schema(df.schema))
    # Spark 4's toArrow gives timestamps as naive UTC; 3.5's batches carry the zone.
    naive = [
        pa.field(f.name, pa.timestamp(f.type.unit)) if pa.types.is_timestamp(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(naive))


def as_popbatch(table: pa.Table) -> pa.Table:
    """Spark's features_hash (DECIMAL(20,0)) back to popbatch's UBIGINT."""
    index = table.schema.get_field_index("features_hash")
    return table.set_column(index, "features_hash", table["features_hash"].cast(pa.uint64()))


def test_scores_in_four_partitions_equal_popbatch_score(spark, catalog, tmp_path):
    expected, expected_rejects = popbatch_score(catalog, tmp_path)
    df = spark.read.csv(str(catalog), header=True, escape='"', multiLine=True).repartition(4)
    assert df.rdd.getNumPartitions() == 4
    moment = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    scored, rejects = score_dataframe(df, scored_at=moment)
    got = as_popbatch(to_arrow(scored))
    assert got.num_rows == 2000 - len(BAD)
    assert set(got["scored_at"].to_pylist()) == {moment.replace(tzinfo=None)}
    drop = ["scored_at", "input_row"]  # input_row counts within a Spark partition
    assert by_key(got.drop_columns(drop)).equals(by_key(expected.drop_columns(drop)))
    # rejects: the same rows, reasons and values; row counts within a Spark partition
    got_rejects = to_arrow(rejects)
    assert by_key(got_rejects.drop_columns(["row"])).equals(
        by_key(expected_rejects.drop_columns(["row"]))
    )
    assert sorted(expected_rejects["row"].to_pylist()) == sorted(BAD)


def test_example_job_scores_a_parquet_catalog_like_popbatch_score(spark, catalog, tmp_path):
    parquet = tmp_path / "catalog.parquet"
    pq.write_table(pa.Table.from_batches(CsvSource([catalog]).batches(None, 500)), parquet)
    expected, expected_rejects = popbatch_score(parquet, tmp_path)
    job = _example_job()
    out = tmp_path / "spark" / "scored.parquet"
    counts = job.run(spark, job.parse_args([str(parquet), str(out), "--partition-by", "popular"]))
    assert (counts["rows_scored"], counts["rows_rejected"]) == (2000 - len(BAD), len(BAD))
    assert sorted(p.name for p in out.glob("popular=*")) == ["popular=false", "popular=true"]
    got = to_arrow(spark.read.parquet(str(out)))
    # The partition column comes back last, and as text (Spark infers no booleans).
    got = got.select(expected.column_names)
    got = got.set_column(2, "popular", pc.equal(got["popular"], "true"))
    drop = ["scored_at", "input_row"]  # input_row counts within a Spark partition
    assert by_key(as_popbatch(got).drop_columns(drop)).equals(by_key(expected.drop_columns(drop)))
    rejects = to_arrow(spark.read.parquet(str(tmp_path / "spark" / "scored.rejects.parquet")))
    assert by_key(rejects.drop_columns(["row"])).equals(
        by_key(expected_rejects.drop_columns(["row"]))
    )


def test_missing_column_is_refused_on_the_driver(spark, catalog):
    df = spark.read.csv(str(catalog), header=True).drop("tempo")
    with pytest.raises(SchemaError, match="the DataFrame: missing required column tempo"):
        score_dataframe(df)


class Shipped:
    """Stands in for a Broadcast: what an executor reads from ``.value``."""

    def __init__(self, manifest, onnx_bytes, head_bytes, prior_bytes=None, all_heads_bytes=None):
        self.value = (manifest, onnx_bytes, head_bytes, prior_bytes, all_heads_bytes)


def plan_for(model, onnx_bytes=None, threads=1, head_bytes=None, all_heads_bytes=None):
    heads = model.head_bytes if head_bytes is None else head_bytes
    joint = model.all_heads_bytes if all_heads_bytes is None else all_heads_bytes
    return popbatch_spark._Plan(
        model=Shipped(
            model.manifest, onnx_bytes or model.onnx_bytes, heads, model.prior_bytes, joint
        ),
        model_id=model.model_id,
        schema=pa.schema([]),
        scored_at=datetime.now(UTC),
        threads=threads,
    )


def test_one_verified_session_per_executor_process(monkeypatch):
    model = popbatch.load_model(None)
    monkeypatch.setattr(popbatch_spark, "_SCORERS", {})
    first = popbatch_spark._executor_scorer(plan_for(model))
    assert popbatch_spark._executor_scorer(plan_for(model)) is first  # not one per batch
    with pytest.raises(ModelError, match="the model shipped to this executor"):
        popbatch_spark._executor_scorer(plan_for(model, model.onnx_bytes + b"x", threads=2))
    changed = {**model.head_bytes, "genre": model.head_bytes["genre"] + b"x"}
    with pytest.raises(ModelError, match="its genre head is not the manifest's"):
        popbatch_spark._executor_scorer(plan_for(model, threads=3, head_bytes=changed))
    assert first.heads.heads == ("popularity", "genre")  # the shipped heads run there
    assert first.all_heads is not None  # in one graph, as popbatch score runs them
    with pytest.raises(ModelError, match="its joint graph is not the manifest's"):
        popbatch_spark._executor_scorer(
            plan_for(model, threads=4, all_heads_bytes=model.all_heads_bytes + b"x")
        )


def test_an_executor_refuses_a_shipped_manifest_naming_a_file_outside_its_bundle(monkeypatch):
    # Sealed again, so only the bundle's file-name rule stands between it and a session.
    model = popbatch.load_model(None)
    manifest = copy.deepcopy(model.manifest)
    manifest["heads"]["genre"]["file"] = "../elsewhere/genre.onnx"
    identity.seal(manifest, model.onnx_bytes)
    plan = popbatch_spark._Plan(
        model=Shipped(manifest, model.onnx_bytes, model.head_bytes, model.prior_bytes),
        model_id=manifest["model_id"],
        schema=pa.schema([]),
        scored_at=datetime.now(UTC),
        threads=1,
    )
    monkeypatch.setattr(popbatch_spark, "_SCORERS", {})
    with pytest.raises(ModelError, match=r"executor.*heads\.genre\.file must be a plain file"):
        popbatch_spark._executor_scorer(plan)


def _example_job():
    path = ROOT / "examples" / "spark_score.py"
    spec = importlib.util.spec_from_file_location("spark_score", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("spark_score", module)
    spec.loader.exec_module(module)
    return module


def test_no_pyspark_in_the_scoring_path(tmp_path):
    """popbatch score and score_batches never import pyspark (only popbatch.spark does):
    the sample catalog scored through popbatch.score_batches and the CLI, in a fresh
    process, leaves pyspark unimported (even though it is installed here)."""
    import subprocess

    sample = ROOT / "batch" / "sample" / "catalog.csv"
    code = (
        "import sys, pyarrow.csv, popbatch\n"
        "from popbatch.cli.main import cli\n"
        f"table = pyarrow.csv.read_csv({str(sample)!r})\n"
        "out = list(popbatch.score_batches(table.to_batches(max_chunksize=256)))\n"
        "scored = sum(b.filter(b['rejected'].is_null()).num_rows for b in out)\n"
        "assert scored == table.num_rows == 1000, scored\n"
        f"cli(['score', {str(sample)!r}, '-o', sys.argv[1], '-q'], standalone_mode=False)\n"
        "assert 'pyspark' not in sys.modules, 'pyspark imported'\n"
        "assert 'popbatch.spark' not in sys.modules\n"
    )
    out = tmp_path / "scored.parquet"
    result = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert pq.read_metadata(out).num_rows == 1000


def test_scores_with_catalog_priors_equal_popbatch_score(spark, priors_run, tmp_path):
    """A model with catalog priors: the executors get the priors table with the model
    (verified against the manifest) and score as popbatch score does."""
    from conftest import TRACKS_PRIORS

    model = priors_run / "model"
    out = tmp_path / "cli" / "scored.parquet"
    popbatch.score(str(TRACKS_PRIORS), out, model=model, record=False)
    expected = pq.read_table(out)
    df = spark.read.csv(str(TRACKS_PRIORS), header=True, escape='"', multiLine=True)
    scored, rejects = score_dataframe(df.repartition(3), model, scored_at=datetime(2026, 12, 5))
    got = as_popbatch(scored.toArrow())
    assert rejects.count() == 0
    drop = ["scored_at", "input_row"]  # input_row counts within a Spark partition
    assert by_key(got.drop_columns(drop)).equals(by_key(expected.drop_columns(drop)))
    assert "popularity_pred" in got.column_names
