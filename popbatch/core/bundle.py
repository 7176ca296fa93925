"""Loading a model directory (``model.onnx`` + ``manifest.json``) safely.

The scorer never unpickles: a model is ONNX bytes plus a JSON manifest, and
the bytes must hash to the manifest's ``model_id`` before onnxruntime sees
them. The manifest's fields are documented in ``export/manifest_schema.json``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from popbatch.core.errors import ModelError

MANIFEST_FILE = "manifest.json"
SUPPORTED_FORMAT = 1
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".sav", ".dill")


def default_model_dir() -> Path:
    """The embedded default model shipped in ``models/default``."""
    return Path(str(resources.files("popbatch.models.default")))


@dataclass(frozen=True)
class ModelBundle:
    """A verified model: its manifest and the ONNX bytes that hash to its id."""

    directory: Path
    manifest: dict[str, Any]
    onnx_bytes: bytes

    @property
    def model_id(self) -> str:
        return self.manifest["model_id"]

    @property
    def feature_names(self) -> list[str]:
        return [f["name"] for f in self.manifest["features"]]

    @property
    def threshold(self) -> float:
        return float(self.manifest["threshold"])


def read_manifest(model_dir: Path) -> dict[str, Any]:
    """Read and minimally check ``manifest.json`` (no ONNX bytes are read)."""
    model_dir = Path(model_dir)
    if model_dir.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelError(
            f"{model_dir}: popbatch never loads pickled models; pass a model directory "
            "made by 'popbatch export' (model.onnx + manifest.json)"
        )
    if model_dir.is_file():
        raise ModelError(
            f"{model_dir}: --model takes a model directory holding model.onnx and "
            "manifest.json, not a file"
        )
    path = model_dir / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"{path}: no manifest; a model directory is made by 'popbatch export'"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: unreadable manifest ({exc})") from None
    _check_fields(manifest, path)
    return manifest


def _check_fields(manifest: Any, path: Path) -> None:
    required = ("format_version", "model_file", "model_id", "threshold", "input", "features")
    if not isinstance(manifest, dict):
        raise ModelError(f"{path}: manifest is not a JSON object")
    missing = [k for k in required if k not in manifest]
    if missing:
        raise ModelError(f"{path}: manifest lacks {', '.join(missing)}; re-export the model")
    if manifest["format_version"] != SUPPORTED_FORMAT:
        raise ModelError(
            f"{path}: manifest format {manifest['format_version']!r} is not supported "
            f"(this popbatch reads format {SUPPORTED_FORMAT}); upgrade popbatch or re-export"
        )
    width = manifest["input"].get("width")
    if width != len(manifest["features"]):
        raise ModelError(
            f"{path}: manifest lists {len(manifest['features'])} features but declares "
            f"input width {width}; the manifest does not match its model, re-export it"
        )


def load_model(model_dir: str | Path | None = None) -> ModelBundle:
    """Read a model directory and verify its ONNX bytes against the manifest.

    >>> import popbatch
    >>> model = popbatch.load_model()            # the embedded default model
    >>> len(model.model_id), "danceability" in model.feature_names
    (64, True)

    Parameters
    ----------
    model_dir
        A directory made by ``popbatch export``; ``None`` for the embedded
        default model.

    Raises
    ------
    ModelError
        If the manifest is missing or malformed, the path is a pickle, or the
        ONNX file's sha256 differs from the manifest's ``model_id``
        ("model.onnx does not match its manifest ... the file was changed").
    """
    directory = Path(model_dir) if model_dir is not None else default_model_dir()
    manifest = read_manifest(directory)
    onnx_path = directory / manifest["model_file"]
    try:
        onnx_bytes = onnx_path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{onnx_path}: cannot read the model ({exc.strerror})") from None
    return verified_bundle(directory, manifest, onnx_bytes, where=onnx_path)


def verified_bundle(
    directory: Path, manifest: dict[str, Any], onnx_bytes: bytes, where: Any = None
) -> ModelBundle:
    """A :class:`ModelBundle` of bytes read elsewhere (a file, or bytes shipped to a
    Spark executor), after checking they hash to the manifest's ``model_id``.

    Raises
    ------
    ModelError
        When the sha256 of ``onnx_bytes`` is not the manifest's ``model_id``.
    """
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    if digest != manifest["model_id"]:
        raise ModelError(
            f"{where or directory}: model.onnx does not match its manifest (sha256 "
            f"{digest[:12]}…, manifest model_id {str(manifest['model_id'])[:12]}…): the file "
            "was changed; re-export the model or restore the original file"
        )
    return ModelBundle(directory=directory, manifest=manifest, onnx_bytes=onnx_bytes)
