"""popbatch's benchmarks (not installed). Each maintained tool has ``--quick``: a tiny
run that checks the script still works, which ``tests/test_bench.py`` runs."""

import contextlib

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


@contextlib.contextmanager
def head_params(head: str, overrides: dict):
    """Within the block, ``popbatch train`` and its cross-validation in this process give
    the ``popularity`` or ``genre`` head its default parameters with ``overrides`` set
    (``models.heads.popularity_params`` / ``genre_params`` replaced). Worker processes
    do not see it: cross-validate such a design with ``n_jobs=1``."""
    from popbatch.models import heads

    name = f"{head}_params"
    default = getattr(heads, name)

    def params(config):
        made = default(config)
        for key, value in overrides.items():
            setattr(made, key, value)
        return made

    setattr(heads, name, params)
    try:
        yield
    finally:
        setattr(heads, name, default)


def report(done: dict, json_path=None) -> None:
    """Print a tool's whole result as the last JSON line, with the machine's load average
    at the end, and also write it to ``json_path`` when given (``--json FILE``)."""
    import json
    import os

    done["load_average"] = [round(v, 2) for v in os.getloadavg()]
    if json_path:
        json_path.write_text(json.dumps(done, indent=1) + "\n")
    print(json.dumps(done))
