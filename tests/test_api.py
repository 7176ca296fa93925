"""The public API: ``import popbatch`` names, their docstrings, and the docs' examples run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest
from conftest import TRACKS_2000

import popbatch

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ("score", "score_batches", "load_model", "train", "export", "drift", "explain",
          "evaluate", "compare")  # fmt: skip


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_function_has_a_docstring_with_an_example(name):
    function = getattr(popbatch, name)
    assert name in popbatch.__all__
    assert function.__doc__ and ">>> " in function.__doc__, f"popbatch.{name} needs an example"


def test_import_popbatch_loads_no_engine():
    """``import popbatch`` is cheap: no onnxruntime, polars or training library until used."""
    code = (
        "import sys, popbatch\n"
        "print(popbatch.__version__)\n"
        "heavy = ('onnxruntime', 'polars', 'duckdb', 'tensorflow', 'sklearn', 'xgboost')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    version, loaded = out.stdout.splitlines()
    assert version == popbatch.__version__ and loaded == "[]"


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'scroe'"):
        popbatch.scroe  # noqa: B018


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def test_docs_api_examples_run(model_dir, tmp_path, monkeypatch):
    """Every ```python block of docs/api.md, in order, in a folder holding the files it
    names (the fixture's real rows; the test model for the model directories)."""
    blocks = _python_blocks(ROOT / "docs" / "api.md")
    assert len(blocks) >= 5
    shutil.copy(TRACKS_2000, tmp_path / "catalog.csv")
    shutil.copy(TRACKS_2000, tmp_path / "tracks.csv")
    pl.read_csv(TRACKS_2000, infer_schema_length=10000).write_parquet(tmp_path / "catalog.parquet")
    with duckdb.connect(str(tmp_path / "catalog.duckdb")) as con:
        con.sql(f"CREATE TABLE tracks AS SELECT * FROM read_csv_auto('{TRACKS_2000}')")
    shutil.copytree(model_dir, tmp_path / "exported")
    shutil.copytree(model_dir, tmp_path / "runs" / "default" / "model")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)
    assert (tmp_path / "scored.parquet").is_file()
    assert len((tmp_path / "evaluations.jsonl").read_text().splitlines()) == 1
    assert namespace["model"].model_id == popbatch.load_model("runs/mine/model").model_id
    with duckdb.connect(str(tmp_path / "catalog.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM scores").fetchone()[0] > 0


@pytest.mark.parametrize(
    "module",
    ["popbatch", "popbatch.core.errors", "popbatch.core.features", "popbatch.core.sqlquote",
     "popbatch.core.bundle"],
)  # fmt: skip
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
