"""The heads a model bundle can answer with, and the scored columns each one writes.

A model always has the ``popular`` head (``model.onnx``: ``popularity_prob``,
``popular``). A model exported with heads lists the others in its manifest's
``heads`` section, one ONNX file each, with the sha256 of the file::

    "heads": {"popularity": {"file": "popularity.onnx", "sha256": "...", ...},
              "genre": {"file": "genre.onnx", "sha256": "...", "classes": [...], ...}}

Models exported before heads existed have no such section and score the
popular head only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from popbatch.core import scored
from popbatch.core.bundle import bundle_file
from popbatch.core.errors import InputError, ModelError
from popbatch.core.scored import HEAD_COLUMNS

HEADS = ("popular", *HEAD_COLUMNS)


def head_columns(heads: Iterable[str]) -> list[tuple[str, str]]:
    """(column, DuckDB type) of the extra heads among ``heads``, in :data:`HEADS` order
    (the columns are defined once, in :mod:`popbatch.core.scored`)."""
    return [(c.name, c.sql_type) for c in scored.head_columns(tuple(heads))]


def read_head_files(directory: Path, manifest: dict[str, Any]) -> dict[str, bytes]:
    """The ONNX bytes of every head the manifest lists, each checked against its sha256.

    Raises
    ------
    ModelError
        A head file is missing or differs from the manifest (it was changed).
    """
    heads = manifest.get("heads") or {}
    if not isinstance(heads, dict):
        raise ModelError(f"{directory}: manifest 'heads' is not an object; re-export the model")
    found: dict[str, bytes] = {}
    for name in HEADS[1:]:
        entry = heads.get(name)
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise ModelError(f"{directory}: manifest head {name!r} is not an object; re-export")
        path = bundle_file(directory, entry.get("file"), f"heads.{name}.file")
        if not path.name.endswith(".onnx"):
            raise ModelError(f"{directory}: manifest head {name!r} names no ONNX file beside it")
        found[name] = _verified_bytes(path, entry, f"the {name} head")
    return found


def read_all_heads_file(directory: Path, manifest: dict[str, Any]) -> bytes | None:
    """The ONNX bytes of the manifest's ``all_heads`` file (every head in one graph, which
    ``popbatch score`` runs when it scores every head), checked against its sha256; None
    for a model without one.

    Raises
    ------
    ModelError
        The file is missing, changed, or lists heads the model does not have.
    """
    entry = manifest.get("all_heads")
    if entry is None:
        return None
    if not isinstance(entry, dict) or entry.get("heads") != list(
        ("popular", *(h for h in HEADS[1:] if h in (manifest.get("heads") or {})))
    ):
        raise ModelError(
            f"{directory}: manifest 'all_heads' does not list the model's heads; re-export it"
        )
    path = bundle_file(directory, entry.get("file"), "all_heads.file")
    return _verified_bytes(path, entry, "the heads' joint graph")


def _verified_bytes(path: Path, entry: dict[str, Any], what: str) -> bytes:
    """``path``'s bytes, checked against the sha256 of its manifest ``entry``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read {what} ({exc.strerror})") from None
    digest = mismatched_digest(data, entry)
    if digest is not None:
        raise ModelError(
            f"{path}: {path.name} does not match its manifest (sha256 {digest[:12]}…, "
            f"manifest {str(entry.get('sha256'))[:12]}…): the file was changed; "
            "re-export the model or restore the original file"
        )
    return data


def mismatched_digest(data: bytes, entry: dict[str, Any]) -> str | None:
    """The sha256 of a head file's ``data`` when it is not the one its manifest
    ``entry`` records; None when they match."""
    digest = hashlib.sha256(data).hexdigest()
    return None if digest == entry.get("sha256") else digest


def parse_heads(requested: str | Iterable[str]) -> tuple[str, ...]:
    """``"popular,genre"`` or a list -> the heads in :data:`HEADS` order, always with
    ``popular`` (the label every scored table holds).

    Raises
    ------
    InputError
        An empty list or an unknown head name.
    """
    names = [n.strip() for n in (requested.split(",") if isinstance(requested, str) else requested)]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in HEADS]
    if unknown or not names:
        raise InputError(
            f"--heads: unknown head {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(HEADS)}"
        )
    return tuple(h for h in HEADS if h in names or h == "popular")


def choose_heads(
    requested: str | Iterable[str] | None, available: Iterable[str]
) -> tuple[str, ...]:
    """The heads to score: ``requested`` (None: every head the model has), always with
    ``popular``.

    Raises
    ------
    InputError
        An unknown head, or one this model was exported without.
    """
    available = tuple(available)
    if requested is None:
        return available
    chosen = parse_heads(requested)
    missing = [n for n in chosen if n not in available]
    if missing:
        raise InputError(
            f"--heads {','.join(chosen)}: this model has no {', '.join(missing)} head "
            f"(it has {', '.join(available)}); re-export it from a run trained with --heads"
        )
    return chosen
