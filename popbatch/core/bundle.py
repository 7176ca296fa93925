"""Loading a model directory (``model.onnx`` + ``manifest.json``) safely.

The scorer never unpickles: a model is ONNX bytes plus a JSON manifest, and
before onnxruntime sees the bytes, the ONNX bytes and the manifest's scoring
contract (feature order, ranges, vocabulary, threshold, output names, ...)
must both be what the manifest's ``model_id`` was made from
(:mod:`popbatch.core.identity`). The manifest's fields are documented in
``export/manifest_schema.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from popbatch.core import identity
from popbatch.core.errors import ModelError
from popbatch.core.format1_models import CONTRACTS as FORMAT1_CONTRACTS

MANIFEST_FILE = "manifest.json"
#: the format popbatch export writes (model_id covers model.onnx and the scoring contract)
SUPPORTED_FORMAT = identity.CONTRACT_FORMAT
#: formats this popbatch reads (format 1 only for models it holds a contract record of)
READABLE_FORMATS = (1, SUPPORTED_FORMAT)
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".sav", ".dill")


def default_model_dir() -> Path:
    """The embedded default model: package data in ``popbatch/default_model``.

    A data folder of the ``popbatch`` package (already imported, as this module's
    parent), so finding it imports nothing of the training package."""
    return Path(str(resources.files("popbatch") / "default_model"))


@dataclass(frozen=True)
class ModelBundle:
    """A verified model: its manifest and the ONNX bytes that hash to its id."""

    directory: Path
    manifest: dict[str, Any]
    onnx_bytes: bytes
    head_bytes: dict[str, bytes] = field(default_factory=dict)
    """ONNX bytes of the extra heads (``popularity``, ``genre``), each verified
    against its sha256 in the manifest's ``heads`` section (see :mod:`popbatch.core.heads`)."""
    prior_bytes: bytes | None = None
    """The catalog priors table (Parquet), verified against the sha256 in the
    manifest's ``priors`` section; None for a model without priors."""
    all_heads_bytes: bytes | None = None
    """Every head in one ONNX graph (``all_heads.onnx``), verified against the sha256
    in the manifest's ``all_heads`` section; None for a model without it."""

    @property
    def heads(self) -> tuple[str, ...]:
        """The heads this model can score: ``popular`` plus those it has files for."""
        return ("popular", *self.head_bytes)

    @property
    def model_id(self) -> str:
        return self.manifest["model_id"]

    @property
    def feature_names(self) -> list[str]:
        return [f["name"] for f in self.manifest["features"]]

    @property
    def threshold(self) -> float:
        return float(self.manifest["threshold"])


def bundle_file(directory: str | Path, name: Any, field_name: str) -> Path:
    """The path of a file the manifest names, after checking it is the bundle's own.

    A bundle is untrusted input, like a zip archive: every file its manifest names
    (``model_file``, each head's ``file``, the ``background`` rows, any lookup table a
    later format adds) must be a plain file name inside the bundle directory. Every
    loader asks this function before it opens such a file, so nothing outside the
    directory is read, not even to hash it.

    Parameters
    ----------
    directory
        The bundle directory.
    name
        The value the manifest gives.
    field_name
        Where the manifest gives it (``model_file``, ``heads.genre.file``), for the message.

    Raises
    ------
    ModelError
        One line naming the field, when ``name`` is not text, is empty, absolute, ``.``
        or ``..``, holds a path separator or a NUL, or is a symlink whose target is
        outside the directory. Checked before a byte of the file is read.
    """
    check_file_name(name, field_name, directory)
    path = Path(directory) / name
    if path.is_symlink():
        inside = Path(os.path.realpath(directory))
        if Path(os.path.realpath(path)).parent != inside:
            raise ModelError(
                f"{Path(directory) / MANIFEST_FILE}: {field_name} {name!r} is a symlink to a "
                "file outside the model directory; a bundle may only name its own files: "
                "copy the file into the directory or re-export the model"
            )
    return path


def check_file_name(name: Any, field_name: str, directory: str | Path = ".") -> str:
    """``name`` when it is a plain file name (no directory part); see :func:`bundle_file`.

    Needs no file system: the Spark executors check the names of a shipped manifest.

    Raises
    ------
    ModelError
        The name is not text, is empty, absolute, ``.``/``..``, or holds a separator or NUL.
    """
    plain = (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
    )
    if not plain:
        raise ModelError(
            f"{Path(directory) / MANIFEST_FILE}: {field_name} must be a plain file name inside "
            f"the model directory, not {name!r}; a bundle may only name its own files: "
            "re-export the model (popbatch export)"
        )
    return name


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
    if manifest["format_version"] not in READABLE_FORMATS:
        raise ModelError(
            f"{path}: manifest format {manifest['format_version']!r} is not supported "
            f"(this popbatch reads formats {', '.join(map(str, READABLE_FORMATS))}); "
            "upgrade popbatch or re-export"
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
        If the manifest is missing or malformed, the path is a pickle, the
        ONNX file's sha256 differs from what ``model_id`` was made from
        ("model.onnx does not match its manifest ... the file was changed"),
        or a part of the scoring contract differs ("manifest.json: features[3]
        (energy) differs from what model_id ... was made from ... re-export").
    """
    directory = Path(model_dir) if model_dir is not None else default_model_dir()
    manifest = read_manifest(directory)
    onnx_path = bundle_file(directory, manifest["model_file"], "model_file")
    try:
        onnx_bytes = onnx_path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{onnx_path}: cannot read the model ({exc.strerror})") from None
    verify_identity(manifest, hashlib.sha256(onnx_bytes).hexdigest(), directory)
    # The heads' files are checked against their sha256 in "heads", which model_id covers.
    from popbatch.core.heads import read_all_heads_file, read_head_files

    head_bytes = read_head_files(directory, manifest)
    all_heads_bytes = read_all_heads_file(directory, manifest)
    prior_bytes = read_prior_table(directory, manifest)
    return ModelBundle(
        directory=directory,
        manifest=manifest,
        onnx_bytes=onnx_bytes,
        head_bytes=head_bytes,
        prior_bytes=prior_bytes,
        all_heads_bytes=all_heads_bytes,
    )


#: verified priors tables by sha256: a manifest's priors section names its table by
#: hash, so the scorer finds the bytes ``load_model`` checked (see ``batch/priors.py``)
_PRIOR_TABLES: dict[str, bytes] = {}


def read_prior_table(directory: Path, manifest: dict[str, Any]) -> bytes | None:
    """The priors table a manifest names, checked against its sha256 (which model_id
    covers), or None for a model without priors.

    Raises
    ------
    ModelError
        The manifest names no plain file beside it, or the file is missing or changed.
    """
    section = manifest.get("priors")
    if not section:
        return None
    name = str(section.get("table_file", ""))
    # TODO: the shared "plain file name inside the bundle" check, once it is in core
    if not name or Path(name).name != name or name in (".", ".."):
        raise ModelError(
            f"{directory}: manifest priors table {name!r} is not a plain file name inside "
            "the model directory; re-export the model"
        )
    path = Path(directory) / name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the priors table ({exc.strerror})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != section.get("table_sha256"):
        raise ModelError(
            f"{path}: {name} does not match its manifest (sha256 {digest[:12]}…, manifest "
            f"{str(section.get('table_sha256'))[:12]}…): the file was changed; re-export "
            "the model or restore the original file"
        )
    _PRIOR_TABLES[digest] = data
    return data


def register_prior_table(data: bytes) -> str:
    """Make a priors table's bytes known to the scorer (export does, before it proves
    parity on a bundle not yet written); returns their sha256."""
    digest = hashlib.sha256(data).hexdigest()
    _PRIOR_TABLES[digest] = data
    return digest


def prior_table(sha256: str) -> bytes | None:
    """The verified bytes of a priors table ``load_model`` read, by its sha256."""
    return _PRIOR_TABLES.get(sha256)


def verify_identity(manifest: dict[str, Any], onnx_sha256: str, directory: Path) -> None:
    """Check that ``model_id`` covers these ONNX bytes and this scoring contract.

    Raises
    ------
    ModelError
        One line naming what differs (the ONNX file, the identity block, or the
        contract parts) and the fix.
    """
    onnx_path = directory / manifest["model_file"]
    manifest_path = directory / MANIFEST_FILE
    model_id = str(manifest["model_id"])
    if manifest["format_version"] == 1:
        expected_onnx, recorded = model_id, FORMAT1_CONTRACTS.get(model_id)
    else:
        block = manifest.get("identity")
        if not isinstance(block, dict) or not isinstance(block.get("contract"), dict):
            raise ModelError(
                f"{manifest_path}: manifest format 2 lacks its identity block; the manifest "
                "was edited: re-export the model (popbatch export) or restore the original"
            )
        expected_onnx, recorded = block.get("model_sha256"), block["contract"]
    if onnx_sha256 != expected_onnx:
        raise ModelError(
            f"{onnx_path}: model.onnx does not match its manifest (sha256 {onnx_sha256[:12]}…, "
            f"manifest model_id {model_id[:12]}…): the file was changed; "
            "re-export the model or restore the original file"
        )
    if recorded is None:
        raise ModelError(
            f"{manifest_path}: manifest format 1 ties model_id to model.onnx only, so an edit "
            "to its scoring contract (features, threshold, ...) would go unnoticed; re-export "
            "the model with this popbatch (popbatch export RUN_DIR --out DIR) to get format 2"
        )
    if manifest["format_version"] != 1 and identity.digest(block) != model_id:
        raise ModelError(
            f"{manifest_path}: model_id {model_id[:12]}… is not the hash of the manifest's "
            "identity block: the manifest was edited; re-export the model (popbatch export) "
            "or restore the original manifest.json"
        )
    changed = identity.differing_parts(recorded, manifest)
    if changed:
        raise ModelError(
            f"{manifest_path}: {identity.describe_parts(changed, manifest)} "
            f"differ{'s' if len(changed) == 1 else ''} from what model_id {model_id[:12]}… "
            "was made from: this edit can change predictions under the same model_id, so it "
            "is refused; re-export the model (popbatch export) or restore the original "
            "manifest.json"
        )
