"""Render today's figures of docs/performance.md from bench/results/run.json.

``bench/results/run.json`` is a copy of the ``bench/out/results.json`` that
``python bench/run.py`` wrote (the command it ran is in it; ``--take`` copies it, with
paths inside this checkout made relative to it); ``docs/generate.py``
fills docs/performance.md's ``performance`` block with this rendering (machine, load
average, goals and table, with ``bench/run.py``'s own table functions), so the page
cannot drift from the file; ``tests/test_docs.py`` fails when the page is stale.

    python docs/performance_card.py --take bench/out/results.json   # keep a new run's figures
    python docs/generate.py                                         # re-render the pages
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import goals_table, machine_line, model_line, table  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "run.json"


def current() -> str:
    """The performance block, from the results file."""
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    versions = results.get("versions", {})
    packages = ", ".join(
        f"{name} {versions[name]}"
        for name in ("onnxruntime", "polars", "pyarrow", "duckdb")
        if versions.get(name)
    )
    lines = [
        f"Command: `{_command(results['command'])}`, started {results['started_at']}, "
        f"{results['seconds_total']:.0f} s in all.",
        "",
        f"- {machine_line(results)}",
        f"- Python {results['machine']['python']}; {packages}",
        f"- {model_line(results['model'])}; heads {', '.join(results['model']['heads'])}; "
        f"catalog priors on {', '.join(results['model'].get('priors') or ['nothing'])}",
        "",
        goals_table(results["goals"]),
        "",
        table(results),
        "",
        *stages_block(),
        *levers_block(),
    ]
    return "\n".join(lines)


def stages_block() -> list[str]:
    """bench/results/stages.json (the last line ``bench/stages.py`` prints) as a table."""
    path = RESULTS.parent / "stages.json"
    if not path.exists():
        return []
    found = json.loads(path.read_text(encoding="utf-8"))
    rows, cpu = found["rows"], found["cpu"]
    total = sum(cpu.values())
    lines = [
        f"Where the CPU goes, stage by stage without the threads (`{found['command']}`, "
        f"{rows:,} rows, load average {found['load_average']}):",
        "",
        "| stage | CPU s | CPU µs per row | share |",
        "| --- | ---: | ---: | ---: |",
    ]
    for stage, seconds in cpu.items():
        lines.append(
            f"| {stage} | {seconds:.2f} | {seconds / rows * 1e6:.2f} | {seconds / total:.0%} |"
        )
    lines.append(f"| total | {total:.2f} | {total / rows * 1e6:.2f} | |")
    return [*lines, ""]


def _scores(diffs: dict) -> str:
    """The scores column: identical, or how far the score columns moved (a re-export's
    float order; the labels and genres must still be identical)."""
    if all(v == 0 or v is True for v in diffs.values()):
        return "identical"
    labels = [k.removesuffix(" identical") for k, v in diffs.items() if v is True]
    moved = ", ".join(f"{k} {v:.1e}" for k, v in diffs.items() if not isinstance(v, bool))
    broken = [k.removesuffix(" identical") for k, v in diffs.items() if v is False]
    if broken:
        return f"DIFFER: {', '.join(broken)}"
    return f"max diff {moved}; {', '.join(labels)} identical"


def levers_block() -> list[str]:
    """Every bench/results/ab_*.json (``bench/ab.py --json``) as one row of a table."""
    paths = sorted(RESULTS.parent.glob("ab_*.json"))
    if not paths:
        return []
    lines = [
        "| change (B) | A -> B | catalog | rounds | median wall s, A / B | median CPU s, A / B | "
        "B / A wall | B / A CPU | median peak RSS MB, A / B | scores |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for path in paths:
        r = json.loads(path.read_text(encoding="utf-8"))
        a, b = r["median"]["A"], r["median"]["B"]
        options = " ".join(r.get("score_options") or [])
        name = f"{r['name']} (`{options}`)" if options else r["name"]
        model = f"`--model {r['model']}`" if r.get("model") else "each side's embedded model"
        lines.append(
            f"| {name} | `{r['a']}` -> `{r['b']}` | `{Path(r['catalog']).name}`, {model} | "
            f"{r['rounds']} | {a['wall']:.2f} / {b['wall']:.2f} | "
            f"{a['cpu']:.2f} / {b['cpu']:.2f} | "
            f"{r['b_over_a']['wall']:.2f} | {r['b_over_a']['cpu']:.2f} | {_rss(r)} | "
            f"{_scores(r['score_differences'])} |"
        )
    lines += [
        "",
        "Each row: `python bench/ab.py CATALOG --a A --b B [--model MODEL] --rounds R "
        "--name NAME --json bench/results/ab_N.json [-- SCORE OPTIONS]` (alternating rounds "
        "of `popbatch score` with each revision's code, the score options in brackets after "
        "the change; the catalogs are `bench/out/catalogs/`).",
    ]
    return [*lines, ""]


def _rss(result: dict[str, Any]) -> str:
    """``A / B`` median peak RSS of an A/B run (recorded since bench/ab.py measured it)."""
    a, b = result["median"]["A"], result["median"]["B"]
    if "peak_rss_mb" not in a:
        return "-"
    return f"{a['peak_rss_mb']:.0f} / {b['peak_rss_mb']:.0f}"


def _command(command: str) -> str:
    """The command as a user types it: ``python`` for the interpreter's path."""
    first, _, rest = command.partition(" ")
    return f"python {rest}" if first.endswith(("python", "python3")) else command


def take(results: Path) -> None:
    """Copy a bench/run.py results file to :data:`RESULTS`, paths made relative to the
    checkout (a results file names the files it made)."""
    text = results.read_text(encoding="utf-8").replace(f"{ROOT}/", "")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(json.loads(text), indent=2) + "\n", encoding="utf-8")


def main() -> None:
    if sys.argv[1:2] != ["--take"] or len(sys.argv) != 3:
        sys.exit("usage: python docs/performance_card.py --take bench/out/results.json")
    take(Path(sys.argv[2]))
    print(f"wrote {RESULTS.relative_to(ROOT)}; now run: python docs/generate.py", file=sys.stderr)


if __name__ == "__main__":
    main()
