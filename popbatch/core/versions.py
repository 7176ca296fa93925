"""The versions of the packages a model was trained, exported or scored with."""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata

# What a manifest or a training report records (the scoring install has the first six).
PACKAGES = (
    "polars",
    "duckdb",
    "pyarrow",
    "numpy",
    "onnxruntime",
    "click",
    "onnx",
    "skl2onnx",
    "onnxmltools",
    "tf2onnx",
    "tensorflow-cpu",
    "tensorflow",
    "keras",
    "scikit-learn",
    "xgboost-cpu",
    "xgboost",
    "imbalanced-learn",
    "matplotlib",
)


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """``{distribution: version}`` of the installed ones among ``names``, plus ``python``."""
    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    found["python"] = platform.python_version()
    return found
