"""manifest.json: what the scorer, ``popbatch model info`` and ``popbatch drift`` know
about a model, written from the native stack (schema: ``export/manifest_schema.json``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from popbatch.core import __version__
from popbatch.core.bundle import SUPPORTED_FORMAT
from popbatch.core.features import (
    GENRE_COLUMN,
    KEY_COLUMN,
    NUMERIC_FEATURES,
    OTHER_GENRE,
    onehot_name,
)
from popbatch.core.identity import seal
from popbatch.core.priors import describe_statistic, is_prior_feature
from popbatch.core.versions import package_versions

SCHEMA_FILE = Path(__file__).with_name("manifest_schema.json")
MODEL_FILE = "model.onnx"


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def model_inputs(stack) -> list[str]:
    """The model's input names: the stack's ``feature_names``, or every input when the
    model reads more (``input_names``: the catalog priors' genre shares come last)."""
    return list(getattr(stack, "input_names", None) or stack.feature_names)


def feature_entries(stack) -> list[dict[str, Any]]:
    """One manifest entry per model input, in input order."""
    numeric = {f.name: f for f in NUMERIC_FEATURES}
    stats = stack.info.get("feature_stats", {})
    genre_names = {onehot_name(g): g for g in (stack.genre_vocabulary or [])}
    genre_names[onehot_name(OTHER_GENRE)] = OTHER_GENRE
    entries = []
    for name in model_inputs(stack):
        train = dict(stats[name])
        if name in numeric:
            impute = train.pop("impute")
            entries.append(
                {
                    "name": name,
                    "kind": "numeric",
                    "column": name,
                    "valid_min": numeric[name].valid_min,
                    "valid_max": numeric[name].valid_max,
                    "impute": impute,
                    "train": train,
                }
            )
        elif name in genre_names:
            entries.append(
                {
                    "name": name,
                    "kind": "onehot",
                    "column": GENRE_COLUMN,
                    "category": genre_names[name],
                    "train": train,
                }
            )
        elif is_prior_feature(name):
            column, _, statistic = name.partition(":")
            train.pop("impute", None)
            entries.append(
                {
                    "name": name,
                    "kind": "prior",
                    "column": column,
                    "statistic": statistic,
                    "description": describe_statistic(statistic),
                    "train": train,
                }
            )
        else:
            raise ValueError(f"feature {name!r} is neither numeric nor a genre one-hot")
    return entries


def build_manifest(
    stack,
    onnx_bytes: bytes,
    parity: dict[str, Any],
    opsets: dict[str, int],
    throughput: dict[str, Any] | None = None,
    created_at: str | None = None,
    heads: dict[str, Any] | None = None,
    training_keys: dict[str, Any] | None = None,
    priors: dict[str, Any] | None = None,
    all_heads: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of ``onnx_bytes`` exported from ``stack`` (a ``models.stack.NativeStack``);
    ``heads``: the ``heads`` section of a model with extra heads (``exporter.heads``);
    ``training_keys``: the fingerprint's entry (:mod:`popbatch.core.fingerprint`);
    ``priors``: the catalog priors section (``exporter.priors``); ``all_heads``: the
    one-graph file of every head (``exporter.all_heads``)."""
    info = stack.info
    label = info["label"]
    data = info["training_data"]
    manifest = {
        "format_version": SUPPORTED_FORMAT,
        "model_file": MODEL_FILE,
        "model_id": None,  # set by seal(): covers the ONNX bytes and the scoring contract
        "model_bytes": len(onnx_bytes),
        "created_at": created_at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "popbatch_version": __version__,
        "training_data": {
            "file": data["file"],
            "table": data.get("table"),
            "sha256": data["sha256"],
            "rows": int(data["rows"]),
        },
        "label": {
            "column": label["column"],
            "popular_above": label["popular_above"],
            "definition": f"{label['column']} > {label['popular_above']}",
        },
        "threshold": float(stack.threshold),
        "input": {"name": "features", "dtype": "float32", "width": len(model_inputs(stack))},
        "outputs": {"probability": "probability", "label": "label"},
        "key": KEY_COLUMN,
        "genre": None
        if stack.genre_vocabulary is None
        else {
            "column": GENRE_COLUMN,
            "vocabulary": list(stack.genre_vocabulary),
            "other": OTHER_GENRE,
            "optional": True,
        },
        "features": feature_entries(stack),
        "metrics": info.get("metrics", {}),
        "params": info.get("params", {}),
        "parity": parity,
        "opsets": opsets,
        "packages": package_versions(),
    }
    # the popular head's CV estimate; every head's; the honest evaluations with priors
    for key in ("cv", "cv_heads", "cv_evaluations"):
        if key in info:
            manifest[key] = info[key]
    if throughput is not None:
        manifest["throughput"] = throughput
    if heads:
        manifest["heads"] = heads
    if all_heads:
        manifest["all_heads"] = all_heads
    if training_keys:
        manifest["training_keys"] = training_keys
    if priors:
        manifest["priors"] = priors
    return seal(manifest, onnx_bytes)
