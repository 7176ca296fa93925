"""Shared fixtures. Test data is real: see tests/data/ATTRIBUTION.md."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

DATA = Path(__file__).parent / "data"
TRACKS_2000 = DATA / "tracks_2000.csv"
SMALL_TITLE_CASE = DATA / "spotify_data_small.csv"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A small real ONNX model + valid manifest (tests/model_factory.py), built once."""
    from model_factory import build_model, validate_manifest

    directory = build_model(tmp_path_factory.mktemp("model") / "logistic")
    validate_manifest(directory)
    return directory
