"""The command group itself: version, help, help text for every command, lint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from popbatch.cli.main import COMMANDS, cli
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


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_registry_short_help_is_the_commands_own(name):
    """popbatch --help lists the registry's lines; they must be the commands' own."""
    command = cli.get_command(None, name)
    assert COMMANDS[name].short_help == command.get_short_help_str(limit=1_000)


@pytest.mark.parametrize("width", [60, 80, 100, 140])
def test_command_list_is_what_click_would_print(width):
    ctx = click.Context(cli, info_name="popbatch")
    ours, clicks = click.HelpFormatter(width=width), click.HelpFormatter(width=width)
    cli.format_commands(ctx, ours)
    click.Group.format_commands(cli, ctx, clicks)  # imports every command
    assert ours.getvalue() == clicks.getvalue()


# Modules a help page must not load: together they were ~0.9 s of a 1 s help.
HEAVY = ("polars", "pyarrow", "numpy", "onnxruntime", "duckdb", "pandas")
# Runs popbatch/__main__.py exactly as `python -m popbatch ARGS` does (runpy is what
# -m uses), then lists what it loaded.
HELP_PROBE = """\
import runpy, sys
sys.argv = ["popbatch", *{args!r}]
try:
    runpy.run_module("popbatch", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
print("\\nMODULES", *sorted(sys.modules))
"""


def help_and_modules(cwd: Path, *args: str) -> tuple[str, set[str]]:
    """(what ``python -m popbatch ARGS`` printed, the modules it had loaded by the end)."""
    code = HELP_PROBE.format(args=list(args))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    printed, _, modules = result.stdout.rpartition("\nMODULES ")
    return printed, set(modules.split())


@pytest.mark.parametrize(
    "args", [["--help"], ["score", "--help"], ["train", "--help"]], ids=" ".join
)
def test_help_loads_no_heavy_module(tmp_path, args):
    printed, modules = help_and_modules(tmp_path, *args)
    assert printed.startswith("Usage: popbatch"), printed
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert not heavy, f"popbatch {' '.join(args)} imported {heavy}"
    training = sorted(m for m in modules if m.startswith("popbatch.models"))
    assert not training, f"popbatch {' '.join(args)} imported {training}"


def test_top_level_help_imports_no_command(tmp_path):
    printed, modules = help_and_modules(tmp_path, "--help")
    assert not sorted(m for m in modules if m.startswith("popbatch.cli.commands."))
    for name, entry in COMMANDS.items():
        assert f"  {name} " in printed and entry.short_help[:30] in printed


def test_train_option_defaults_are_the_librarys():
    """popbatch train shows popbatch.core.train_defaults (light); training uses
    TrainConfig and LearnerParams: the same values."""
    from popbatch.models.pipeline import TrainConfig

    config = TrainConfig(data=Path("."), out=Path("."))
    learners = config.learners
    expected = {
        "popular_above": float(config.popular_above),
        "balance": config.balance,
        "outliers": config.outliers,
        "tune_budget": config.tune_budget,
        "seed": config.seed,
        "folds": config.folds,
        "cv_jobs": config.cv_jobs,
        "heads": ",".join(config.heads),
        "epochs": learners.max_epochs,  # not given: None, no cap on the heads
        "batch_size": learners.batch_size,
        "rf_trees": learners.rf["n_estimators"],
        "rf_depth": learners.rf["max_depth"],
        "xgb_rounds": learners.xgb["n_estimators"],
        "xgb_depth": learners.xgb["max_depth"],
        "learners": ",".join(learners.learners),
        "meta_input": learners.meta_input,
        "xgb_genre": "target" if learners.genre_encoding else "onehot",
    }
    options = {p.name: p for p in cli.get_command(None, "train").params}
    shown = {name: option.default for name, option in options.items()}
    assert {name: shown[name] for name in expected} == expected
    assert options["epochs"].show_default.startswith(f"{learners.epochs},")


def test_epochs_caps_the_heads_networks_only_when_given():
    """The popular stack's network trains --epochs (default 20); the heads' networks
    train their own defaults unless --epochs (or train(epochs=)) is given, which caps
    them for a quick run."""
    from popbatch.models import genre, popularity
    from popbatch.models.heads import genre_params, popularity_params
    from popbatch.models.pipeline import _config_from

    default = _config_from(Path("."), Path("."), {})
    assert default.learners.epochs == 20
    assert popularity_params(default).epochs == popularity.RegressorParams().epochs > 20
    assert genre_params(default).epochs == genre.ClassifierParams().epochs
    quick = _config_from(Path("."), Path("."), {"epochs": 3})
    assert quick.learners.epochs == 3
    assert popularity_params(quick).epochs == genre_params(quick).epochs == 3


def test_train_help_names_the_default_learners():
    """The prose of ``popbatch train --help`` says which base learners the stack has by
    default: exactly those of LearnerParams (it once named XGBoost after the default
    became the Keras network)."""
    import re

    from popbatch.models.learners import LearnerParams

    words = {"logistic": "logistic regression", "ann": "Keras network",
             "rf": "RandomForest", "xgb": "XGBoost"}  # fmt: skip
    text = " ".join(cli.get_command(None, "train").help.split())
    (said,) = re.findall(r"by default ([^)]*)\)", text)
    named = {name for name, phrase in words.items() if phrase in said}
    assert named == set(LearnerParams().learners), said


def test_scoring_package_imports_no_training_stack():
    """Importing the CLI and the scorer must not pull in TensorFlow, sklearn or xgboost."""
    code = (
        "import sys, popbatch, popbatch.cli.main, popbatch.batch.score, popbatch.core.bundle\n"
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


def test_model_info_throughput_names_the_heads_it_covers(runner):
    """The speed line must not present the popular head alone as the command's speed:
    it leads with every head (what `popbatch score` runs by default), names the heads of
    each figure and says the figure leaves out reading, preprocessing and writing."""
    from popbatch.core.bundle import load_model

    throughput = load_model().manifest["throughput"]
    result = runner.invoke(cli, ["model", "info"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("throughput"))
    by_heads = throughput["by_heads"]
    every = max(by_heads, key=lambda heads: len(heads.split(",")))
    assert line.startswith(
        f"throughput  model only, rows/s by heads: {every.replace(',', '+')} {by_heads[every]:,};"
    ), line
    assert f"popular {by_heads['popular']:,}" in line
    assert "reading, preprocessing and writing not counted" in line
