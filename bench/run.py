"""popbatch's benchmark: train, export, score end to end, the I/O floor, the notebook baseline,
bare inference, help.

In one run on one machine (never in the test suite), for the embedded default
model unless ``--model``, ``--run`` or ``--train`` names another:

1. With ``--train``: ``popbatch train`` on the shared 10k sample (the fixture
   when it is absent), then ``popbatch export`` of that run: wall seconds each.
2. Catalogs of ``--rows`` rows (fixture rows tiled with seeded jitter) as
   Parquet, CSV and a DuckDB table (``bench/catalog.py``, cached by rows and seed).
3. ``popbatch score`` with the default command (every head the model has)
   Parquet -> Parquet, CSV -> Parquet and DuckDB table -> DuckDB table, each in
   a fresh process: wall seconds, rows/s, peak RSS (children included,
   ``bench/procstat.py``). Right after each Parquet run, the I/O floor of the
   same file (``bench/floor.py``: the same columns read, the priors' key
   columns included, and the same output schema written with constant
   scores): popbatch's time as a multiple of it, a ratio that holds when the
   machine is busy. For a model with extra heads, the popular head alone
   (``--heads popular``) on the largest Parquet catalog, against a floor
   writing that head's columns.
4. With ``--run`` (a trained stack without catalog priors): the notebook
   baseline on the same rows (``bench/baseline.py``), checked against popbatch.
5. Bare onnxruntime throughput on an in-memory matrix (``bench/bare.py``), so
   the cost of reading, preprocessing and writing shows as overhead.
6. ``popbatch --help`` and ``popbatch score --help``: the median of 5 fresh
   processes each; and which training packages a fresh ``popbatch.score()``
   imports (none, for the scoring install).

Prints the machine and its load average, then every goal (ratios first: measured,
target, met or not), then the table, and writes everything (machine, versions, exact
commands) to ``bench/out/results.json``.

    python bench/run.py                          # the default model, 1M and 10M rows
    python bench/run.py --quick                  # 2,000 rows: checks the script
    python bench/run.py --train                  # train on the shared sample and export first
    python bench/run.py --run runs/sample        # export and use an existing trained run
    python bench/run.py --model exported --run runs/sample   # an exported model (no export)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.catalog import Catalog, build_catalogs  # noqa: E402
from bench.procstat import Measured, measure  # noqa: E402
from popbatch.core import DEFAULT_BATCH_SIZE  # noqa: E402  (popbatch score's --batch-size)

SAMPLE_NAME = "spotify_tracks_PARTIAL_sample_10000.csv"
# ../shared/data beside a clone (CI), or two levels up (the development worktrees).
SAMPLE_CANDIDATES = (ROOT.parent / "shared/data", ROOT.parent.parent / "shared/data")
FIXTURE = ROOT / "tests" / "data" / "tracks_2000.csv"
PYTHON = sys.executable
PACKAGES = (
    "polars", "pyarrow", "duckdb", "numpy", "onnxruntime", "pandas", "scikit-learn",
    "xgboost-cpu", "tensorflow-cpu", "keras", "psutil",
)  # fmt: skip
BARE_BATCH_SIZES = (16_384, 32_768, 65_536, 262_144)
# The speed goals of the default command (every head the model has), stated for 10M rows
# on a quiet 2-core machine.
GOAL_ROWS = 10_000_000
GOAL_FLOOR_RATIO = 3.0
GOAL_HEADS_FLOOR_RATIO = 2.0  # --heads popular against its own floor
GOAL_PARQUET_RATE = 700_000
GOAL_CSV_RATE = 500_000
GOAL_DUCKDB_RATE = 800_000
GOAL_RSS_MB = 600
GOAL_RSS_GROWTH = 0.10
GOAL_HELP_SECONDS = 0.3
# Against the notebook baseline (with --run: the baseline needs the native stack).
GOAL_SPEEDUP = 5.0
GOAL_OVERHEAD = 0.20
# What the scoring install must never import (top-level module names). Not pandas: pyarrow's
# dataset module imports it whenever it is installed (as it is beside the training extras).
TRAINING = ("tensorflow", "keras", "sklearn", "xgboost", "onnx", "skl2onnx", "tf2onnx")
HELP_RUNS = 5
HELP_COMMANDS = (("--help",), ("score", "--help"))


@dataclass
class Bench:
    """One benchmark run: options, where files go, and everything measured so far."""

    args: argparse.Namespace
    out: Path
    started: float = field(default_factory=time.perf_counter)
    results: dict[str, Any] = field(default_factory=dict)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def run(self, what: str, command: list[str], env: dict[str, str] | None = None) -> Measured:
        """Measure ``command`` in a fresh process; record it; stop the benchmark if it fails."""
        say(f"{what}: {' '.join(command)}")
        load = load_average()
        measured = measure(command, env=env)
        self.results.setdefault("commands", []).append(
            {
                "what": what,
                "command": _shell(command),
                "env": env or {},
                "load_average_before": load,
                "seconds": round(measured.seconds, 2),
            }
        )
        if not measured.ok:
            raise SystemExit(f"bench: {what} failed with exit code {measured.returncode}")
        say(f"  {measured.seconds:.1f} s, peak RSS {measured.peak_rss_mb:.0f} MB")
        return measured

    def skip(self, what: str, why: str) -> None:
        say(f"skipped {what}: {why}")
        self.results.setdefault("skipped", []).append({"what": what, "why": why})


def say(line: str) -> None:
    print(f"[bench] {line}", file=sys.stderr, flush=True)


def _shell(command: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(str(part)) for part in command)


def _rel(path: Path) -> str:
    """Paths in recorded commands relative to the repository when they are inside it."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# -- the machine -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, load average, OS and Python: what the numbers depend on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def commit() -> str:
    """The measured code: ``git describe`` of the checkout (``-dirty`` with local changes)."""
    try:
        found = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return found.stdout.strip()


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    try:
        found["popbatch_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        found["popbatch_commit"] = None
    return found


# -- 1. training and export --------------------------------------------------------------------


def training_data(quick: bool) -> Path:
    if not quick:
        for folder in SAMPLE_CANDIDATES:
            if (folder / SAMPLE_NAME).is_file():
                return folder / SAMPLE_NAME
    return FIXTURE


def has_command(name: str) -> bool:
    from popbatch.cli.main import COMMANDS

    return name in COMMANDS


def train(bench: Bench) -> Path:
    """``popbatch train --no-export`` into OUT/train; returns the run directory."""
    run_dir = bench.out / "train"
    if not has_command("train"):
        raise SystemExit(
            "bench: this checkout has no 'popbatch train'; pass --run RUN_DIR (a trained run) "
            "or --model MODEL_DIR --run RUN_DIR"
        )
    data = training_data(bench.args.quick)
    command = [PYTHON, "-m", "popbatch", "train", "--data", _rel(data), "--out", _rel(run_dir)]
    command += ["--no-export", "--quiet"]
    if bench.args.quick:
        command += ["--epochs", "3", "--folds", "2"]
    shutil.rmtree(run_dir, ignore_errors=True)
    measured = bench.run("train", command)
    bench.results["train"] = {
        "data": str(data),
        "seconds": round(measured.seconds, 1),
        "cpu_seconds": round(measured.cpu_seconds, 1),
        "peak_rss_mb": round(measured.peak_rss_mb),
    }
    return run_dir


def export(bench: Bench, run_dir: Path) -> Path:
    """``popbatch export RUN_DIR`` into OUT/model; returns the model directory."""
    model_dir = bench.out / "model"
    command = [PYTHON, "-m", "popbatch", "export", _rel(run_dir), "--out", _rel(model_dir)]
    measured = bench.run("export", command)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    bench.results["export"] = {
        "run": str(run_dir),
        "seconds": round(measured.seconds, 1),
        "cpu_seconds": round(measured.cpu_seconds, 1),
        "peak_rss_mb": round(measured.peak_rss_mb),
        "model_bytes": (model_dir / "model.onnx").stat().st_size,
        "parity": manifest.get("parity"),
        "output": measured.stdout.strip().splitlines()[-2:],
    }
    return model_dir


def prepare_model(bench: Bench) -> tuple[Path, Path | None]:
    """(model directory, stack directory or None): the embedded default model unless
    ``--model``, ``--run`` or ``--train`` says otherwise (trained and exported then)."""
    args = bench.args
    run_dir = Path(args.run) if args.run else None
    if args.model:
        model_dir = Path(args.model)
    elif run_dir is None and not args.train and not args.skip_train:
        from popbatch.core.bundle import default_model_dir

        model_dir = default_model_dir()
    else:
        if run_dir is None and args.skip_train:
            run_dir = bench.out / "train"
            if not (run_dir / "stack").is_dir():
                raise SystemExit(f"bench: --skip-train, but {_rel(run_dir)} holds no trained run")
        elif run_dir is None:
            run_dir = train(bench)
        model_dir = export(bench, run_dir)
    stack_dir = None
    if run_dir is not None and (run_dir / "stack" / "stack.json").is_file():
        stack_dir = run_dir / "stack"
    manifest = json.loads((model_dir / "manifest.json").read_text())
    bench.results["model"] = {
        "dir": str(model_dir),
        "model_id": manifest["model_id"],
        "bytes": (model_dir / "model.onnx").stat().st_size,
        "inputs": manifest["input"]["width"],
        "threshold": manifest.get("threshold"),
        "stack": str(stack_dir) if stack_dir else None,
        "params": _tree_params(stack_dir),
        "heads": ["popular", *(h for h in manifest.get("heads") or {} if h != "popular")],
        "priors": (manifest.get("priors") or {}).get("columns", []),
    }
    return model_dir, stack_dir


def _tree_params(stack_dir: Path | None) -> dict[str, Any] | None:
    if stack_dir is None:
        return None
    info = json.loads((stack_dir / "stack.json").read_text()).get("info", {})
    learners = info.get("params", {}).get("learners", {})
    params = {"rf": learners.get("rf"), "xgb": learners.get("xgb")}
    try:  # early stopping decides how many rounds XGBoost really kept
        booster = json.loads((stack_dir / "xgb.json").read_text())["learner"]["gradient_booster"]
        params["xgb_trees"] = int(booster["model"]["gbtree_model_param"]["num_trees"])
    except (OSError, KeyError, ValueError):
        pass
    return params


# -- 2. catalogs -------------------------------------------------------------------------------


def catalog(bench: Bench, rows: int, kinds: tuple[str, ...]) -> Catalog:
    """The catalog of ``rows`` rows with ``kinds`` built (cached across runs)."""
    started = time.perf_counter()
    built = build_catalogs(rows, bench.out / "catalogs", seed=bench.args.seed, kinds=kinds)
    seconds = time.perf_counter() - started
    if seconds > 1:
        say(f"catalog of {rows:,} rows ({', '.join(kinds)}) built in {seconds:.0f} s")
    bench.results.setdefault("catalogs", {})[str(rows)] = {
        "parquet": str(built.parquet),
        "csv": str(built.csv) if built.csv.exists() else None,
        "duckdb": str(built.duckdb) if built.duckdb.exists() else None,
        "parquet_mb": round(built.parquet.stat().st_size / 2**20),
    }
    return built


# -- 3. popbatch score end to end --------------------------------------------------------------


def score(
    bench: Bench, model_dir: Path, built: Catalog, kind: str, heads: str | None = None
) -> dict[str, Any]:
    """``popbatch score`` of one input kind in a fresh process (``--heads heads`` if given)."""
    work = bench.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    tag = f"_{heads}" if heads else ""
    summary = work / f"summary_{kind}_{built.rows}{tag}.json"
    if kind == "duckdb":
        # Score into a copy, so the cached catalog stays as built.
        target = work / f"scored_{built.rows}.duckdb"
        shutil.copyfile(built.duckdb, target)
        io = [_rel(target), "--table", built.table, "-o", _rel(target)]
        io += ["--into", "scores", "--mode", "replace"]
    else:
        target = work / f"scored_{kind}_{built.rows}{tag}.parquet"
        io = [_rel(getattr(built, kind)), "-o", _rel(target)]
    command = [PYTHON, "-m", "popbatch", "score", *io, "--model", _rel(model_dir)]
    command += ["--quiet", "--summary", _rel(summary)]
    if bench.args.score_threads:  # otherwise popbatch's default, as users run it
        command += ["--threads", str(bench.args.score_threads)]
    if heads:
        command += ["--heads", heads]
    if bench.args.batch_size:
        command += ["--batch-size", str(bench.args.batch_size)]
    what = f"score {kind} {built.rows:,}" + (f" --heads {heads}" if heads else "")
    measured = bench.run(what, command)
    job = json.loads(summary.read_text())
    if kind == "duckdb":
        target.unlink(missing_ok=True)  # ~100 MB per million rows; the numbers are kept
    return {
        "kind": kind,
        "rows": built.rows,
        "rows_scored": job["rows_scored"],
        "rows_rejected": job["rows_rejected"],
        "seconds": round(measured.seconds, 2),
        "cpu_seconds": round(measured.cpu_seconds, 2),
        "job_seconds": round(job["seconds"], 2),
        "rows_per_second": round(built.rows / measured.seconds),
        "peak_rss_mb": round(measured.peak_rss_mb),
        "output": str(target) if kind != "duckdb" else None,
        "batch_size": job["batch_size"],
        "threads": job["threads"],
        "heads": heads or "all",
    }


def floor(
    bench: Bench, model_dir: Path, built: Catalog, popbatch: dict[str, Any]
) -> dict[str, Any]:
    """``bench/floor.py`` on the catalog just scored Parquet -> Parquet (``popbatch``: that
    run's results), in a fresh process; records popbatch's time as a multiple of the floor's."""
    heads = None if popbatch.get("heads", "all") == "all" else popbatch["heads"]
    output = bench.out / "work" / f"floor_{built.rows}.parquet"
    command = [PYTHON, _rel(ROOT / "bench" / "floor.py"), _rel(built.parquet), _rel(output)]
    command += ["--model", _rel(model_dir)]
    if heads:
        command += ["--heads", heads]
    if bench.args.batch_size:
        command += ["--batch-size", str(bench.args.batch_size)]
    measured = bench.run(
        f"I/O floor parquet {built.rows:,}{' --heads ' + heads if heads else ''}", command
    )
    job = json.loads(measured.stdout.strip().splitlines()[-1])
    output.unlink(missing_ok=True)  # constants: nothing to compare, ~10 MB per million rows
    return {
        "kind": "parquet",
        "rows": built.rows,
        "rows_written": job["rows"],
        "batches": job["batches"],
        "seconds": round(measured.seconds, 2),
        "cpu_seconds": round(measured.cpu_seconds, 2),
        "job_seconds": job["seconds"],
        "rows_per_second": round(built.rows / measured.seconds),
        "peak_rss_mb": round(measured.peak_rss_mb),
        "popbatch_ratio": round(popbatch["seconds"] / measured.seconds, 2),
        "popbatch_cpu_ratio": round(popbatch["cpu_seconds"] / measured.cpu_seconds, 2),
        "heads": popbatch.get("heads", "all"),
    }


# -- 4. the notebook baseline ------------------------------------------------------------------


def baseline(bench: Bench, stack_dir: Path, built: Catalog, kind: str) -> dict[str, Any]:
    """``bench/baseline.py``: pandas + the native stack on the whole file."""
    output = bench.out / "work" / f"baseline_{kind}_{built.rows}.parquet"
    command = [PYTHON, _rel(ROOT / "bench" / "baseline.py"), _rel(stack_dir)]
    command += [_rel(getattr(built, kind)), _rel(output), "--threads", str(bench.args.threads)]
    measured = bench.run(f"baseline {kind} {built.rows:,}", command)
    stages = json.loads(measured.stdout.strip().splitlines()[-1])["seconds"]
    return {
        "kind": kind,
        "rows": built.rows,
        "seconds": round(measured.seconds, 2),
        "cpu_seconds": round(measured.cpu_seconds, 2),
        "rows_per_second": round(built.rows / measured.seconds),
        "seconds_without_model_load": round(sum(stages.values()) - stages["load_model"], 2),
        "stages": stages,
        "peak_rss_mb": round(measured.peak_rss_mb),
        "output": str(output),
    }


def agreement(reference: Path, other: Path, threshold: float | None) -> dict[str, Any]:
    """Label mismatches and max |probability difference| between two outputs, row by row."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = ["track_id", "popularity_prob", "popular"]
    a, b = pq.read_table(reference, columns=columns), pq.read_table(other, columns=columns)
    same_keys = a.num_rows == b.num_rows and a["track_id"].cast(pa.large_string()).equals(
        b["track_id"].cast(pa.large_string())
    )  # a CSV input passes the key through as string, Parquet as large_string
    if not same_keys:
        return {"reference": str(reference), "other": str(other), "same_rows": False}
    pa_, pb = a["popularity_prob"].to_numpy(), b["popularity_prob"].to_numpy()
    differ = a["popular"].to_numpy() != b["popular"].to_numpy()
    result = {
        "reference": str(reference),
        "other": str(other),
        "same_rows": True,
        "rows": a.num_rows,
        "label_mismatches": int(differ.sum()),
        "max_abs_prob_diff": float(np.abs(pa_ - pb).max()),
    }
    if threshold is not None and differ.any():
        # A mismatch is a float edge when both probabilities sit within 1e-5 of the threshold.
        near = np.abs(pa_[differ] - threshold) <= 1e-5
        result["mismatches_within_1e-5_of_threshold"] = int(near.sum())
    return result


# -- 5. bare inference -------------------------------------------------------------------------


def bare(bench: Bench, model_dir: Path, built: Catalog) -> dict[str, Any]:
    command = [PYTHON, _rel(ROOT / "bench" / "bare.py"), _rel(model_dir), _rel(built.parquet)]
    command += ["--threads", str(bench.args.threads), "--seconds", str(bench.args.bare_seconds)]
    if bench.args.quick:
        command += ["--quick"]  # one small batch size
    else:
        sizes = sorted({*BARE_BATCH_SIZES, bench.args.batch_size or DEFAULT_BATCH_SIZE})
        command += ["--batch-sizes", *map(str, sizes)]
    measured = bench.run("bare onnxruntime", command)
    found = json.loads(measured.stdout.strip().splitlines()[-1])
    found["peak_rss_mb"] = round(measured.peak_rss_mb)
    return found


# -- 6. help -----------------------------------------------------------------------------------


def help_seconds(bench: Bench) -> dict[str, Any]:
    """Median wall seconds of ``HELP_RUNS`` fresh ``popbatch ... --help`` processes each.

    Timed here rather than with ``measure``, whose 20 ms polling is a third of a help run.
    The installed ``popbatch`` script beside this Python is what a user types; without
    it, ``python -m popbatch``.
    """
    script = Path(PYTHON).with_name("popbatch")
    base = [str(script)] if script.exists() else [PYTHON, "-m", "popbatch"]
    found = {}
    for args in HELP_COMMANDS:
        command = [*base, *args]
        say(f"help: {' '.join(command)} x {HELP_RUNS}")
        times = []
        for _ in range(1 if bench.args.quick else HELP_RUNS):
            started = time.perf_counter()
            subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
        found[" ".join(("popbatch", *args))] = {
            "command": _shell(command),
            "median_seconds": round(statistics.median(times), 3),
            "seconds": [round(t, 3) for t in times],
        }
    return found


IMPORTS_PROBE = """
import json, sys, tempfile
from pathlib import Path
import popbatch
with tempfile.TemporaryDirectory() as tmp:
    popbatch.score(sys.argv[1], Path(tmp) / "scored.parquet", model=sys.argv[2], record=False)
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[3:]))
print(json.dumps(loaded))
"""


def training_imports(bench: Bench, model_dir: Path) -> dict[str, Any]:
    """Which training packages a fresh process imports to score the sample catalog with
    the model (the scoring install must need none)."""
    sample = ROOT / "batch" / "sample" / "catalog.csv"
    command = [PYTHON, "-c", IMPORTS_PROBE, _rel(sample), _rel(model_dir), *TRAINING]
    measured = bench.run("imports of popbatch.score()", command)
    return {"training_modules": json.loads(measured.stdout.strip().splitlines()[-1])}


# -- goals and the table -----------------------------------------------------------------------


def goals(results: dict[str, Any], bare_batch: int) -> list[dict[str, Any]]:
    """Every goal, ratios first: each with the measured value, the goal, met / not met
    (None: not measured) and the detail behind it. The speed goals (:func:`speed_goals`)
    come first; the notebook-baseline goals follow when the baseline ran."""
    found = speed_goals(results)
    if results.get("baseline"):
        found += baseline_goals(results, bare_batch)
    return found


def _recorder(found: list[dict[str, Any]], kind: str) -> Any:
    """``goal(name, value, target, met, detail)``, appending one goal of set ``kind``."""

    def goal(name: str, value: Any, target: str, met: bool | None, detail: str) -> None:
        found.append(
            {"set": kind, "goal": name, "value": value, "target": target, "met": met,
             "detail": detail}
        )  # fmt: skip

    return goal


def speed_goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The speed goals of the default command (every head of the model), each on the
    largest run of its kind: they are stated for 10M rows on a quiet 2-core machine, and
    a smaller run says so in its detail. Ratios to the I/O floor come first (they hold on
    a busy machine), then rows/s, memory, help and imports."""
    found: list[dict[str, Any]] = []
    goal = _recorder(found, "speed")

    runs = {kind: _by_rows(results.get("e2e", []), kind) for kind in ("parquet", "csv", "duckdb")}
    heads_runs = _by_rows(results.get("e2e_heads", []), "parquet")
    for name, limit, run_list, floors in (
        ("default command, Parquet -> Parquet, vs its I/O floor", GOAL_FLOOR_RATIO,
         runs["parquet"], results.get("floor", [])),
        ("--heads popular, Parquet -> Parquet, vs its I/O floor", GOAL_HEADS_FLOOR_RATIO,
         heads_runs, results.get("floor_heads", [])),
    ):  # fmt: skip
        run = run_list[-1] if run_list else None
        floor_run = {f["rows"]: f for f in floors}.get(run["rows"]) if run else None
        if floor_run is None:
            goal(name, None, f"<= {limit:.1f}x", None, "no floor run")
            continue
        ratio = floor_run["popbatch_ratio"]
        goal(name, f"{ratio:.2f}x", f"<= {limit:.1f}x", ratio <= limit, _vs_floor(run, floor_run))
    rates = (
        ("default command, Parquet -> Parquet", "parquet", GOAL_PARQUET_RATE),
        ("CSV -> Parquet", "csv", GOAL_CSV_RATE),
        ("DuckDB table -> DuckDB table", "duckdb", GOAL_DUCKDB_RATE),
    )
    for name, kind, target in rates:
        if not runs[kind]:
            goal(f"{name}, rows/s", None, f">= {target:,}", None, "not run")
            continue
        run = runs[kind][-1]
        rate = run["rows_per_second"]
        goal(f"{name}, rows/s", rate, f">= {target:,}", rate >= target, _run_detail(run))
    every = [r for kind in runs.values() for r in kind] + heads_runs
    if every:
        top = max(every, key=lambda r: r["peak_rss_mb"])
        goal(
            "peak RSS, every path",
            f"{top['peak_rss_mb']} MB",
            f"< {GOAL_RSS_MB} MB",
            top["peak_rss_mb"] < GOAL_RSS_MB,
            f"largest: {_path_name(top)} at {top['rows']:,} rows",
        )
    _flat_goal(goal, runs)
    for command, timed in results.get("help", {}).items():
        median = timed["median_seconds"]
        runs_text = ", ".join(f"{t:.3f}" for t in timed["seconds"])
        goal(
            f"{command}",
            f"{median:.3f} s",
            f"< {GOAL_HELP_SECONDS:g} s",
            median < GOAL_HELP_SECONDS,
            f"median of {len(timed['seconds'])} fresh processes: {runs_text} s",
        )
    imports = results.get("imports")
    if imports is not None:
        loaded = imports["training_modules"]
        goal(
            "training packages imported by scoring",
            ", ".join(loaded) or "none",
            "none",
            not loaded,
            f"popbatch.score() of the sample in a fresh process; looked for {', '.join(TRAINING)}",
        )
    return found


def baseline_goals(results: dict[str, Any], bare_batch: int) -> list[dict[str, Any]]:
    """The goals against the notebook baseline and bare inference (only with ``--run``,
    whose native stack the baseline needs)."""
    e2e = {(r["kind"], r["rows"]): r for r in results.get("e2e", [])}
    parquet = sorted((r for (k, _), r in e2e.items() if k == "parquet"), key=lambda r: r["rows"])
    base = {(r["kind"], r["rows"]): r for r in results.get("baseline", [])}
    bare_rate = results.get("bare", {}).get("rows_per_second", {}).get(str(bare_batch))
    bare_cpu_rate = results.get("bare", {}).get("rows_per_cpu_second", {}).get(str(bare_batch))
    found: list[dict[str, Any]] = []
    goal = _recorder(found, "baseline")

    if not parquet:
        return found
    small, large = parquet[0], parquet[-1]
    reference = base.get(("parquet", small["rows"]))
    if reference:
        speedup = small["rows_per_second"] / reference["rows_per_second"]
        goal(
            "Parquet -> Parquet vs the notebook baseline's rows/s",
            f"{speedup:.2f}x",
            f">= {GOAL_SPEEDUP:g}x",
            speedup >= GOAL_SPEEDUP,
            f"{small['rows']:,} rows: {small['rows_per_second']:,} vs "
            f"{reference['rows_per_second']:,} rows/s (process wall time, both); CPU seconds "
            f"{small['cpu_seconds']} vs {reference['cpu_seconds']}: "
            f"{reference['cpu_seconds'] / small['cpu_seconds']:.2f}x",
        )
    if bare_rate:
        inference = large["rows"] / bare_rate
        overhead = large["seconds"] / inference - 1
        goal(
            "read + preprocess + write overhead over bare inference",
            f"{overhead:.0%}",
            f"<= {GOAL_OVERHEAD:.0%}",
            overhead <= GOAL_OVERHEAD,
            f"{large['rows']:,} rows: e2e {large['seconds']} s (job {large['job_seconds']} s) vs "
            f"bare inference {inference:.2f} s at {bare_rate:,} rows/s (batch {bare_batch:,})"
            + _cpu_overhead(large, bare_cpu_rate),
        )
    return found


def _by_rows(runs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return sorted((r for r in runs if r["kind"] == kind), key=lambda r: r["rows"])


def _run_detail(run: dict[str, Any]) -> str:
    detail = f"{run['rows']:,} rows in {run['seconds']} s, peak RSS {run['peak_rss_mb']} MB"
    if run["rows"] < GOAL_ROWS:
        detail += f"; the goal is stated for {GOAL_ROWS:,} rows"
    return detail


def _vs_floor(run: dict[str, Any], floor_run: dict[str, Any]) -> str:
    return (
        f"popbatch {run['seconds']} s vs the floor's {floor_run['seconds']} s in the same run; "
        f"CPU {run['cpu_seconds']} vs {floor_run['cpu_seconds']} s "
        f"({floor_run['popbatch_cpu_ratio']:.2f}x); " + _run_detail(run)
    )


def _flat_goal(goal: Any, runs: dict[str, list[dict[str, Any]]]) -> None:
    """Peak RSS flat in input size, on every path measured at two sizes: the largest
    run within GOAL_RSS_GROWTH of the smallest."""
    growths = []
    for kind, found in runs.items():
        if len(found) > 1:
            small, large = found[0], found[-1]
            growths.append((large["peak_rss_mb"] / small["peak_rss_mb"] - 1, kind, small, large))
    name = "peak RSS growth from the smallest to the largest run, every path"
    target = f"<= {GOAL_RSS_GROWTH:.0%}"
    if not growths:
        goal(name, None, target, None, "one size measured")
        return
    worst = max(growths, key=lambda g: g[0])
    detail = "; ".join(
        f"{kind} {small['rows']:,} -> {large['rows']:,} rows: "
        f"{small['peak_rss_mb']} -> {large['peak_rss_mb']} MB"
        for _, kind, small, large in growths
    )
    goal(name, f"{worst[0]:+.1%}", target, worst[0] <= GOAL_RSS_GROWTH, detail)


def _path_name(run: dict[str, Any]) -> str:
    arrow = {"parquet": "Parquet -> Parquet", "csv": "CSV -> Parquet"}.get(
        run["kind"], "DuckDB table -> DuckDB table"
    )
    return arrow + (f" --heads {run['heads']}" if run.get("heads", "all") != "all" else "")


def _cpu_overhead(run: dict[str, Any], bare_cpu_rate: int | None) -> str:
    """The same overhead in CPU seconds: robust to other jobs on the machine."""
    if not bare_cpu_rate:
        return ""
    inference_cpu = run["rows"] / bare_cpu_rate
    return (
        f"; in CPU seconds {run['cpu_seconds']} vs {inference_cpu:.2f}: "
        f"{run['cpu_seconds'] / inference_cpu - 1:.0%}"
    )


def table(results: dict[str, Any]) -> str:
    """The results as a Markdown table (docs/performance.md's format)."""
    lines = [
        "| step | rows | wall s | CPU s | rows/s | peak RSS MB | notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]

    def row(
        step: str, rows: Any, seconds: Any, cpu: Any, rate: Any, rss: Any, notes: str = ""
    ) -> None:
        cells = [
            step,
            f"{rows:,}" if isinstance(rows, int) else rows,
            f"{seconds:.1f}" if isinstance(seconds, float | int) else seconds,
            f"{cpu:.1f}" if isinstance(cpu, float | int) else cpu,
            f"{rate:,}" if isinstance(rate, int) else rate,
            f"{rss:,}" if isinstance(rss, int) else rss,
            notes,
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")

    if "train" in results:
        t = results["train"]
        row("popbatch train", "-", t["seconds"], t["cpu_seconds"], "-", t["peak_rss_mb"],
            Path(t["data"]).name)  # fmt: skip
    if "export" in results:
        e = results["export"]
        parity = e.get("parity") or {}
        note = f"{e['model_bytes']:,} bytes; parity max diff {parity.get('max_abs_diff', '?'):.2g}"
        row("popbatch export", "-", e["seconds"], e["cpu_seconds"], "-", e["peak_rss_mb"], note)
    bare_result = results.get("bare")
    if bare_result:
        per_cpu = bare_result.get("rows_per_cpu_second", {})
        for batch, rate in bare_result["rows_per_second"].items():
            note = f"{per_cpu[batch]:,} rows per CPU-second" if batch in per_cpu else ""
            row(f"bare onnxruntime, batch {int(batch):,}", "in memory", "-", "-", rate, "-", note)
    for r in results.get("e2e", []):
        arrow = {"parquet": "Parquet -> Parquet", "csv": "CSV -> Parquet"}.get(
            r["kind"], "DuckDB table -> DuckDB table"
        )
        note = f"job {r['job_seconds']} s"
        row(f"popbatch score {arrow}", r["rows"], r["seconds"], r["cpu_seconds"],
            r["rows_per_second"], r["peak_rss_mb"], note)  # fmt: skip
    for r in results.get("floor", []):
        note = f"popbatch score Parquet -> Parquet takes {r['popbatch_ratio']:.2f}x this"
        row("I/O floor Parquet -> Parquet (constant scores)", r["rows"], r["seconds"],
            r["cpu_seconds"], r["rows_per_second"], r["peak_rss_mb"], note)  # fmt: skip
    for r in results.get("e2e_heads", []):
        row(f"popbatch score Parquet -> Parquet --heads {r['heads']}", r["rows"], r["seconds"],
            r["cpu_seconds"], r["rows_per_second"], r["peak_rss_mb"],
            f"job {r['job_seconds']} s")  # fmt: skip
    for r in results.get("floor_heads", []):
        note = f"popbatch score --heads {r['heads']} takes {r['popbatch_ratio']:.2f}x this"
        row(f"I/O floor Parquet -> Parquet, {r['heads']} columns", r["rows"], r["seconds"],
            r["cpu_seconds"], r["rows_per_second"], r["peak_rss_mb"], note)  # fmt: skip
    for r in results.get("baseline", []):
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items())
        row(f"baseline pandas + native stack, {r['kind']}", r["rows"], r["seconds"],
            r["cpu_seconds"], r["rows_per_second"], r["peak_rss_mb"], stages)  # fmt: skip
    for command, timed in results.get("help", {}).items():
        note = f"median of {len(timed['seconds'])} fresh processes"
        row(command, "-", f"{timed['median_seconds']:.3f}", "-", "-", "-", note)
    return "\n".join(lines)


def model_line(model: dict[str, Any]) -> str:
    text = f"model {model['model_id'][:12]}: {model['inputs']} inputs, {model['bytes']:,} bytes"
    params = model.get("params") or {}
    rf, xgb = params.get("rf") or {}, params.get("xgb") or {}
    if rf and xgb:
        rounds = params.get("xgb_trees", xgb.get("n_estimators"))
        text += (
            f"; RandomForest {rf.get('n_estimators')} trees depth {rf.get('max_depth')}, "
            f"XGBoost {rounds} rounds depth {xgb.get('max_depth')}"
        )
    return text


def goals_table(found: list[dict[str, Any]]) -> str:
    """The goals as a Markdown table: goal, measured, target, verdict (ratios first)."""
    lines = ["| goal | measured | target | |", "| --- | ---: | ---: | --- |"]
    for g in found:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[g["met"]]
        value = f"{g['value']:,}" if isinstance(g["value"], int) else (g["value"] or "-")
        lines.append(f"| {g['goal']} | {value} | {g['target']} | {verdict} |")
    return "\n".join(lines)


def machine_line(results: dict[str, Any]) -> str:
    m = results["machine"]
    return (
        f"machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM; load average "
        f"{results['load_average']['start']} at start, {results['load_average']['end']} at end; "
        f"commit {results.get('commit', 'unknown')}"
    )


def report(results: dict[str, Any]) -> str:
    text = [
        machine_line(results),
        model_line(results["model"]),
        "",
        goals_table(results.get("goals", [])),
        "",
        table(results),
        "",
    ]
    for a in results.get("agreement", []):
        if a.get("same_rows"):
            text.append(
                f"agreement {Path(a['other']).name} vs {Path(a['reference']).name}: "
                f"{a['label_mismatches']} label mismatches in {a['rows']:,} rows, "
                f"max |prob diff| {a['max_abs_prob_diff']:.2e}"
            )
        else:
            text.append(
                f"agreement {Path(a['other']).name} vs {Path(a['reference']).name}: "
                "NOT the same rows in the same order"
            )
    for s in results.get("skipped", []):
        text.append(f"skipped: {s['what']} ({s['why']})")
    text.append("")
    for g in results.get("goals", []):
        verdict = {True: "met", False: "NOT met", None: "not measured"}[g["met"]]
        text.append(f"{g['goal']}: {verdict}; {g['detail']}")
    return "\n".join(text)


# -- the run -----------------------------------------------------------------------------------


def fits(bench: Bench, estimate: float) -> bool:
    return bench.elapsed() + estimate <= bench.args.budget_minutes * 60


def measure_all(bench: Bench, model_dir: Path, stack_dir: Path | None) -> None:
    args, results = bench.args, bench.results
    rows_list = sorted(args.rows)
    smallest = catalog(bench, rows_list[0], ("parquet", "csv", "duckdb"))
    results["bare"] = bare(bench, model_dir, smallest)
    e2e = results.setdefault("e2e", [])
    for kind in ("parquet", "csv", "duckdb"):
        score_and_floor(bench, model_dir, smallest, kind)
    if stack_dir is None:
        bench.skip("baseline", "no trained stack (pass --run RUN_DIR)")
    elif results["model"]["priors"]:
        bench.skip("baseline", "bench/baseline.py builds no catalog-prior inputs")
    else:
        threshold = results["model"]["threshold"]
        for kind in ("parquet", "csv"):
            done = baseline(bench, stack_dir, smallest, kind)
            results.setdefault("baseline", []).append(done)
            reference = Path(e2e[0]["output"])
            results.setdefault("agreement", []).append(
                agreement(reference, Path(done["output"]), threshold)
            )
        results["agreement"].append(agreement(Path(e2e[0]["output"]), Path(e2e[1]["output"]), None))
    per_row = {r["kind"]: r["seconds"] / r["rows"] for r in e2e}
    for rows in rows_list[1:]:
        bench.skip(f"baseline at {rows:,} rows", "pandas holds the whole file and matrix in memory")
        for kind in ("parquet", "csv", "duckdb"):
            # Scoring time plus about as much again to build a missing catalog file.
            estimate = per_row[kind] * rows * 2
            if kind != "parquet" and not fits(bench, estimate):
                bench.skip(
                    f"{kind} at {rows:,} rows",
                    f"~{estimate:.0f} s would exceed the {args.budget_minutes:g}-minute budget",
                )
                continue
            built = catalog(bench, rows, (kind,))
            score_and_floor(bench, model_dir, built, kind)
    if results["model"].get("heads", ["popular"]) != ["popular"] and not args.quick:
        # What the extra heads cost end to end: the popular head alone on the largest catalog.
        largest = catalog(bench, rows_list[-1], ("parquet",))
        score_and_floor(bench, model_dir, largest, "parquet", heads="popular")
    results["help"] = help_seconds(bench)
    results["imports"] = training_imports(bench, model_dir)


def score_and_floor(
    bench: Bench, model_dir: Path, built: Catalog, kind: str, heads: str | None = None
) -> None:
    """``popbatch score`` of one input kind; a Parquet run is followed by the I/O floor of
    the same file, so the two see the same moment of a busy machine. With ``heads`` (the
    popular head alone) the pair goes to ``e2e_heads`` / ``floor_heads``: the goals are
    stated for the default command, every head."""
    suffix = "_heads" if heads else ""
    done = score(bench, model_dir, built, kind, heads)
    bench.results.setdefault(f"e2e{suffix}", []).append(done)
    if kind == "parquet":
        found = floor(bench, model_dir, built, done)
        bench.results.setdefault(f"floor{suffix}", []).append(found)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2,000 rows, one of each measurement: checks the script "
        "(tests/test_bench.py runs it with --model)",
    )
    parser.add_argument(
        "--train", action="store_true", help="train on the shared sample and export, first"
    )
    parser.add_argument("--skip-train", action="store_true", help="reuse OUT/train (or --run)")
    parser.add_argument("--run", help="a trained run directory (holding stack/): not retrained")
    parser.add_argument(
        "--model", help="an exported model directory (default: the embedded default model)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--threads", type=int, default=2, help="the floor's and the baseline's")
    parser.add_argument(
        "--score-threads", type=int, help="popbatch score --threads (default: popbatch's own)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="popbatch's default if unset")
    parser.add_argument("--seed", type=int, default=0, help="catalog jitter seed")
    parser.add_argument("--bare-seconds", type=float, default=3.0)
    parser.add_argument(
        "--budget-minutes", type=float, default=19.0, help="skip optional large runs beyond this"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = [2_000]
        args.bare_seconds = 0.1
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, args.out)
    results = bench.results
    results.update(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        command=_shell([PYTHON, "bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
        commit=commit(),
        machine=machine(),
        versions=versions(),
        load_average={"start": load_average()},
    )
    model_dir, stack_dir = prepare_model(bench)
    measure_all(bench, model_dir, stack_dir)
    results["load_average"]["end"] = load_average()
    results["seconds_total"] = round(bench.elapsed(), 1)
    results["goals"] = goals(results, bare_batch=args.batch_size or DEFAULT_BATCH_SIZE)
    path = args.out / "results.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(report(results))
    print(f"\n{results['seconds_total']:.0f} s in all; results in {_rel(path)}")


if __name__ == "__main__":
    main()
