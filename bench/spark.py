"""Spark local[2] against popbatch score on the same Parquet catalogs, in one run.

For each catalog (fixture rows tiled with seeded jitter, ``bench/catalog.py``,
cached in ``bench/out/catalogs``):

1. ``popbatch score CATALOG -o scored.parquet`` in a fresh process: wall
   seconds, rows/s, peak RSS (``bench/procstat.py``);
2. the example job (``examples/spark_score.py``: read Parquet, score, write
   the scores and the rejects as Parquet) in ONE Spark ``local[2]`` process
   for all catalogs, so Spark's start-up (JVM, session, first Python
   workers) is measured apart from each job;
3. the two outputs compared: row count, sum of ``popularity_prob``, count of
   ``popular``, and the xor of every ``features_hash`` (DuckDB over both).

Needs the ``spark`` extra and Java. Writes ``bench/out/spark.json``.

    python bench/spark.py                     # 1M and 10M rows
    python bench/spark.py --rows 200000       # a smaller run
    python bench/spark.py --quick --catalogs DIR --work DIR --results FILE  # checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import QUICK_HELP  # noqa: E402
from bench.catalog import build_catalogs  # noqa: E402
from bench.procstat import measure  # noqa: E402
from bench.run import commit, load_average, machine  # noqa: E402

OUT = ROOT / "bench" / "out"
PYTHON = sys.executable


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--catalogs", type=Path, default=OUT / "catalogs")
    parser.add_argument("--work", type=Path, default=OUT / "spark")
    parser.add_argument("--model", help="model directory (default: the embedded default model)")
    parser.add_argument("--results", type=Path, default=OUT / "spark.json")
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP + ": 1,000 rows")
    parser.add_argument("--spark-jobs", nargs="+", help=argparse.SUPPRESS)  # the Spark child
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = [1_000]
    return args


def spark_jobs(args: argparse.Namespace) -> None:
    """In the child process: start Spark, run the example job on each catalog, print JSON."""
    sys.path.insert(0, str(ROOT / "examples"))
    import spark_score

    from popbatch.spark import local_session

    started = time.perf_counter()
    spark = local_session("local[2]", **{"spark.driver.memory": "2g"})
    session = time.perf_counter() - started
    # The first job also starts the Python workers: a tiny one, timed apart.
    started = time.perf_counter()
    spark.range(4, numPartitions=2).mapInArrow(lambda b: b, "id long").count()
    first = time.perf_counter() - started
    jobs = []
    for pair in args.spark_jobs:
        catalog, output = pair.split("=", 1)
        job = [catalog, output, "--mode", "overwrite"]
        job += ["--model", args.model] if args.model else []
        jobs.append(spark_score.run(spark, spark_score.parse_args(job)))
    spark.stop()
    print(json.dumps({"session_seconds": session, "first_job_seconds": first, "jobs": jobs}))


def checksum(path: Path) -> dict:
    """Row count, sum of probabilities, popular count and xor of hashes of a scored output."""
    import duckdb

    files = f"{path}/**/*.parquet" if path.is_dir() else str(path)
    with duckdb.connect() as con:
        row = con.execute(
            "SELECT count(*), round(sum(popularity_prob), 6), count(*) FILTER (popular), "
            f"bit_xor(CAST(features_hash AS UBIGINT)) FROM read_parquet('{files}')"
        ).fetchone()
    return dict(zip(("rows", "probability_sum", "popular", "hash_xor"), row, strict=True))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.spark_jobs:
        spark_jobs(args)
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    results = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": machine(),
        "load_average_start": load_average(),
        "popbatch": [],
    }
    catalogs = [build_catalogs(rows, args.catalogs, kinds=()) for rows in args.rows]
    model = ["--model", args.model] if args.model else []
    for catalog in catalogs:
        out = args.work / f"popbatch_{catalog.rows}.parquet"
        command = [PYTHON, "-m", "popbatch", "score", str(catalog.parquet), "-o", str(out)]
        measured = measure([*command, *model, "--quiet", "--threads", "2"])
        assert measured.ok, measured.stderr
        results["popbatch"].append(
            {
                "rows": catalog.rows,
                "seconds": round(measured.seconds, 2),
                "rows_per_second": round(catalog.rows / measured.seconds),
                "peak_rss_mb": round(measured.peak_rss_mb),
                "command": " ".join(command),
                "checksum": checksum(out),
            }
        )
        print(json.dumps(results["popbatch"][-1]), flush=True)
    pairs = [f"{c.parquet}={args.work / f'spark_{c.rows}.parquet'}" for c in catalogs]
    child = [PYTHON, str(Path(__file__).resolve()), "--spark-jobs", *pairs, *model]
    env = {**os.environ, "PYSPARK_PYTHON": PYTHON, "SPARK_LOCAL_IP": "127.0.0.1"}
    measured = measure(child, env=env)
    assert measured.ok, measured.stderr[-3000:]
    spark = json.loads(measured.stdout.strip().splitlines()[-1])
    spark.update(seconds=round(measured.seconds, 2), peak_rss_mb=round(measured.peak_rss_mb))
    for catalog, job in zip(catalogs, spark["jobs"], strict=True):
        job["rows"] = catalog.rows
        job["rows_per_second"] = round(catalog.rows / job["seconds"])
        job["checksum"] = checksum(Path(job["output"]))
        job["same_as_popbatch"] = job["checksum"] == checksum(
            args.work / f"popbatch_{catalog.rows}.parquet"
        )
    results["spark_local_2"] = spark
    results["load_average_end"] = load_average()
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    report(results)
    for path in args.work.glob("spark_*"):
        shutil.rmtree(path, ignore_errors=True)
    return 0


def report(results: dict) -> None:
    spark = results["spark_local_2"]
    print(f"load average {results['load_average_start']} -> {results['load_average_end']}")
    print(
        f"Spark local[2] start-up: session {spark['session_seconds']:.1f} s, "
        f"first job (Python workers) {spark['first_job_seconds']:.1f} s; "
        f"whole Spark process {spark['seconds']:.1f} s, peak RSS {spark['peak_rss_mb']} MB"
    )
    print("| rows | popbatch score s | rows/s | Spark local[2] job s | rows/s | same output |")
    print("| ---: | ---: | ---: | ---: | ---: | --- |")
    for mine, job in zip(results["popbatch"], spark["jobs"], strict=True):
        print(
            f"| {mine['rows']:,} | {mine['seconds']:.1f} | {mine['rows_per_second']:,} | "
            f"{job['seconds']:.1f} | {job['rows_per_second']:,} | {job['same_as_popbatch']} |"
        )


if __name__ == "__main__":
    sys.exit(main())
