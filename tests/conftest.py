"""Shared fixtures. Test data is real: see tests/data/ATTRIBUTION.md."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

DATA = Path(__file__).parent / "data"
TRACKS_2000 = DATA / "tracks_2000.csv"
SMALL_TITLE_CASE = DATA / "spotify_data_small.csv"
# popbatch 0.1.0's embedded default: manifest format 1, no heads (see its README.md)
FORMAT1_MODEL = DATA / "format1_model"


ROOT = Path(__file__).resolve().parents[1]
# Made by the test run itself (pytest, hypothesis, the interpreter), not by popbatch.
RUNNER_FILES = {".pytest_cache", ".hypothesis", "__pycache__"}


@pytest.fixture(scope="session", autouse=True)
def repository_root_stays_clean():
    """No test may leave files in the repository root (a lock, a run log, an output)."""
    before = set(os.listdir(ROOT))
    yield
    new = set(os.listdir(ROOT)) - before - RUNNER_FILES
    assert not new, f"tests wrote into the repository root: {sorted(new)}"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory) -> Path:
    """A tiny real trained stack (tests/stack_factory.py), built once per session."""
    # Skipped, not failed, where only the scoring install is (CI's lowest-versions step).
    pytest.importorskip("sklearn", reason="training a stack needs the train extra")
    from stack_factory import build_stack  # tests/ is on sys.path (rootdir conftest)

    directory = tmp_path_factory.mktemp("run") / "stack"
    build_stack(TRACKS_2000, directory)
    return directory


@pytest.fixture(scope="session")
def exported_model(stack_dir, tmp_path_factory) -> tuple[Path, dict]:
    """``stack_dir`` exported through the Python API: (model directory, summary)."""
    from popbatch.exporter.build import export_run

    out = tmp_path_factory.mktemp("exported")
    return out, export_run(stack_dir.parent, out)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A small real ONNX model + valid manifest (tests/model_factory.py), built once."""
    from model_factory import build_model, validate_manifest

    directory = build_model(tmp_path_factory.mktemp("model") / "logistic")
    validate_manifest(directory)
    return directory


TRACKS_PRIORS = DATA / "tracks_priors.csv"
# sizes for tests: seconds of training, real model types
TINY_TRAIN = ["--epochs", "2", "--folds", "2", "--rf-trees", "3", "--rf-depth", "3",
              "--xgb-rounds", "5", "--xgb-depth", "2"]  # fmt: skip


@pytest.fixture(scope="session")
def priors_run(tmp_path_factory) -> Path:
    """A tiny run trained with catalog priors (the default) on tracks_priors.csv, whose
    artists and albums repeat; its exported model is ``priors_run / "model"``."""
    pytest.importorskip("sklearn", reason="training a model needs the train extra")
    from popbatch.cli.main import cli

    out = tmp_path_factory.mktemp("priors") / "run"
    args = ["train", "--data", str(TRACKS_PRIORS), "--out", str(out), *TINY_TRAIN]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out
