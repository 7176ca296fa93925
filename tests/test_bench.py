"""The benchmark's command stays runnable (its numbers are never asserted: see bench/run.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_run_help_lists_its_options():
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    for option in ("--rows", "--quick", "--skip-train", "--model", "--run"):
        assert option in result.stdout
