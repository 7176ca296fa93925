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
