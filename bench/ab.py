"""A/B of two versions of popbatch on the same ``popbatch score`` command, in alternating rounds.

Each side is a git revision of this repository, installed (without its dependencies)
into its own folder under ``--out``; every round runs ``popbatch score`` once with A's
code and once with B's, in fresh processes, alternately, so a shared, noisy machine
slows both alike. Prints each side's wall and CPU seconds per round, the medians, and
B's medians as a ratio to A's (below 1: B is faster), and each side's peak RSS. The
scores of the two sides are compared too (max |difference| of each score column, rows
matched by ``input_row``), so a lever that changes a score shows.

A DuckDB catalog (``.duckdb``) is scored table to table, as ``bench/run.py`` does: each
round copies it and scores ``--table TABLE`` (default ``tracks``) into ``--into scores``
of the copy.

    python bench/ab.py CATALOG --a f26df81 --b HEAD --model DIR --rounds 5
    python bench/ab.py CATALOG.duckdb --a f26df81 --b HEAD --rounds 3 --table tracks
    python bench/ab.py CATALOG --a HEAD --b HEAD --quick     # checks the script
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import QUICK_HELP  # noqa: E402
from bench.procstat import measure  # noqa: E402

SCORES = ("popularity_prob", "popularity_pred", "genre_prob")


def install(revision: str, folder: Path) -> Path:
    """``revision``'s popbatch, built from ``git archive``, in ``folder/site``."""
    site = folder / "site"
    if site.is_dir():
        return site
    source = folder / "source"
    source.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    shutil.rmtree(source)
    return site


def scored(path: Path):
    """The scored rows of one side's output, in input order (a table has no order)."""
    if path.suffix == ".duckdb":
        import duckdb

        with duckdb.connect(str(path), read_only=True) as con:
            return con.sql("SELECT * FROM scores ORDER BY input_row").to_arrow_table()
    import pyarrow.parquet as pq

    return pq.read_table(path).sort_by("input_row")


def differences(a: Path, b: Path) -> dict[str, float]:
    import numpy as np

    left, right = scored(a), scored(b)
    found = {}
    for column in SCORES:
        if column in left.column_names and column in right.column_names:
            x, y = left[column].to_numpy(), right[column].to_numpy()
            found[column] = float(np.abs(x - y).max()) if len(x) == len(y) else float("nan")
    for column in ("popular", "genre_pred", "features_hash"):
        if column in left.column_names:
            same = left[column].equals(right[column])
            found[f"{column} identical"] = bool(same)
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("catalog", type=Path, help="the input of popbatch score")
    parser.add_argument("--a", required=True, help="git revision of side A")
    parser.add_argument("--b", required=True, help="git revision of side B")
    parser.add_argument("--model", help="model directory (default: each side's embedded)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "ab")
    parser.add_argument("--name", default="", help="what B changes (kept in the JSON)")
    parser.add_argument("--json", type=Path, help="also write the JSON line to this file")
    parser.add_argument("--table", default="tracks", help="a DuckDB catalog's table")
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP + "; one round")
    parser.add_argument("score_options", nargs="*", help="after --: more popbatch score options")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        args.rounds = 1
    times: dict[str, dict[str, list[float]]] = {}
    outputs = {}
    sites = {}
    for side, revision in (("A", args.a), ("B", args.b)):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", revision],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        sites[side] = (commit, install(revision, args.out / commit))
        times[side] = {"wall": [], "cpu": [], "peak_rss_mb": []}
    duckdb_catalog = args.catalog.suffix == ".duckdb"
    for _ in range(args.rounds):
        for side, (commit, site) in sites.items():
            if duckdb_catalog:
                output = args.out / f"scored_{side}.duckdb"
                shutil.copyfile(args.catalog, output)  # each round scores a fresh copy
                command = [sys.executable, "-m", "popbatch", "score", str(output)]
                command += ["--table", args.table, "--into", "scores"]
            else:
                output = args.out / f"scored_{side}.parquet"
                command = [sys.executable, "-m", "popbatch", "score", str(args.catalog.resolve())]
            command += ["-o", str(output), "--quiet", *args.score_options]
            if args.model:
                command += ["--model", str(Path(args.model).resolve())]
            measured = measure(command, env={"PYTHONPATH": str(site)}, cwd=args.out)
            if not measured.ok:
                raise SystemExit(f"ab: side {side} ({commit}) failed")
            times[side]["wall"].append(round(measured.seconds, 2))
            times[side]["cpu"].append(round(measured.cpu_seconds, 2))
            times[side]["peak_rss_mb"].append(round(measured.peak_rss_mb))
            outputs[side] = output
    medians = {s: {k: statistics.median(v) for k, v in t.items()} for s, t in times.items()}
    result = {
        "name": args.name,
        "a": sites["A"][0],
        "b": sites["B"][0],
        "catalog": str(args.catalog),
        "score_options": list(args.score_options),
        "model": args.model,
        "rounds": args.rounds,
        "seconds": times,
        "median": medians,
        "b_over_a": {
            k: round(medians["B"][k] / medians["A"][k], 3) for k in ("wall", "cpu", "peak_rss_mb")
        },
        "score_differences": differences(outputs["A"], outputs["B"]),
    }
    for side in ("A", "B"):
        print(
            f"{side} {sites[side][0]}: wall {times[side]['wall']} CPU {times[side]['cpu']} "
            f"(medians {medians[side]['wall']:.2f} / {medians[side]['cpu']:.2f} s), "
            f"peak RSS {times[side]['peak_rss_mb']} MB"
        )
    ratios = result["b_over_a"]
    print(f"B / A: wall {ratios['wall']}, CPU {ratios['cpu']}, peak RSS {ratios['peak_rss_mb']}")
    print(json.dumps(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
