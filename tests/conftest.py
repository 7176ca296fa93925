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
