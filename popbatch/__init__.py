"""popbatch: predict which music tracks will be popular, in batch.

The public API. Importing it is cheap: each name loads its module on first use,
so ``import popbatch`` pulls in neither onnxruntime nor any training library.

>>> import popbatch
>>> popbatch.__version__ == popbatch.core.__version__
True

``score``
    Score a catalog (CSV, Parquet, DuckDB) into Parquet, CSV or a DuckDB table.
``score_batches``
    Score an iterator of Arrow record batches (the block ``popbatch score``, Spark,
    Ray Data and Dask share); ``popbatch.spark`` does it for Spark DataFrames.
``load_model``
    Load and verify a model directory (``model.onnx`` + ``manifest.json``).
``train``
    Train the stacked model on labelled tracks (needs the ``train`` extra).
``export``
    Export a trained run to ONNX with proven parity (needs the ``train`` extra).
``drift``
    Compare a catalog's feature distributions with the model's training data.
``explain``
    Why a few tracks scored as they did: per-feature Shapley contributions.
"""

from __future__ import annotations

import os

# Arrow's allocator (mimalloc) keeps freed pages a while before returning them;
# with a new batch every few milliseconds that retention added ~100 MB of peak
# RSS (docs/performance.md, "Memory"). mimalloc reads this once, when pyarrow is
# first imported, so it is set here, before anything of popbatch imports it.
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "25")

from popbatch.core import __version__
from popbatch.core.errors import (
    InputError,
    LockError,
    ModelError,
    OutputError,
    PopbatchError,
    SchemaError,
)

__all__ = [
    "InputError",
    "LockError",
    "ModelError",
    "OutputError",
    "PopbatchError",
    "SchemaError",
    "__version__",
    "drift",
    "explain",
    "export",
    "load_model",
    "score",
    "score_batches",
    "train",
]

# name -> module that defines it; loaded on first attribute access (PEP 562).
_LAZY = {
    "score": "popbatch.batch.score",
    "score_batches": "popbatch.batch.batches",
    "drift": "popbatch.batch.drift",
    "explain": "popbatch.batch.explain.selection",
    "load_model": "popbatch.core.bundle",
    "train": "popbatch.models.pipeline",
    "export": "popbatch.exporter.build",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'popbatch' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), _PUBLIC_NAME.get(name, name))
    globals()[name] = value
    return value


_PUBLIC_NAME = {"drift": "check_drift", "export": "export_run"}


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
