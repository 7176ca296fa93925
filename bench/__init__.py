"""popbatch's benchmarks (not installed). Each maintained tool has ``--quick``: a tiny
run that checks the script still works, which ``tests/test_bench.py`` runs."""

QUICK_HELP = "a tiny run that checks the script works (tests/test_bench.py runs it)"


def model_catalog_parser(description: str):
    """An ``argparse`` parser for a tool that measures MODEL on CATALOG, with ``--quick``."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("model", type=Path)
    parser.add_argument("catalog", type=Path)
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP)
    return parser


def report(done: dict, json_path=None) -> None:
    """Print a tool's whole result as the last JSON line, with the machine's load average
    at the end, and also write it to ``json_path`` when given (``--json FILE``)."""
    import json
    import os

    done["load_average"] = [round(v, 2) for v in os.getloadavg()]
    if json_path:
        json_path.write_text(json.dumps(done, indent=1) + "\n")
    print(json.dumps(done))
