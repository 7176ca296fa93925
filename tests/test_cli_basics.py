"""The command group itself: version, help, help text for every command, lint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from popbatch.batch.cli import COMMANDS, cli

from popbatch.core import __version__

ROOT = Path(__file__).resolve().parents[1]


def test_version(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"popbatch, version {__version__}"


def test_help_lists_exit_codes(runner):
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "75 target locked by another run" in result.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(runner, name):
    result = runner.invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    command = cli.get_command(None, name)
    assert command.help and len(command.help.strip()) > 20, f"{name} needs help text"


def test_scoring_package_imports_no_training_stack():
    """Importing the CLI and the scorer must not pull in TensorFlow, sklearn or xgboost."""
    code = (
        "import sys, popbatch, popbatch.batch.cli, popbatch.batch.score, popbatch.core.bundle\n"
        "bad = [m for m in ('tensorflow', 'sklearn', 'xgboost', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_ruff_clean():
    """ruff comes with the test extras; the project is kept lint-clean."""
    ruff = str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        ruff = shutil.which("ruff") or pytest.fail("ruff is not installed (test extras)")
    # --no-cache: the suite may not leave a .ruff_cache in the repository root.
    command = [ruff, "check", "--no-cache", "."]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
