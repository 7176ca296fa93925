"""The training keys' fingerprint: which tracks a model was trained on, in 8 bytes a track.

``popbatch evaluate`` must know which of the rows it scores the model has seen:
figures on those rows are inflated (and with catalog priors a row's own label
feeds its artist's and album's prior). Training writes the keys of the rows it
fitted on (training and validation parts; the test part is held out) as a
fingerprint, and export copies it beside ``model.onnx``:

- ``training_keys.u64``: the sorted, distinct 64-bit hashes of the keys
  (``track_id``), raw little-endian uint64, nothing else; 8 bytes a track, so
  the 90,000 keys of the full public dataset take about 0.7 MB.
- the manifest's ``training_keys`` entry: ``{"file", "sha256", "count",
  "hash"}``. :mod:`popbatch.core.identity` counts it in the scoring contract,
  so the model id covers the fingerprint and an edited file is refused.

A key's hash is the first 8 bytes of BLAKE2b over its UTF-8 text, read
little-endian (:func:`key_hashes`): stable across platforms and versions. Two
distinct keys share a hash with a chance of about n*m/2**64 for n scored and m
training keys: for millions of rows, nil.

Models exported before the fingerprint existed have no entry; evaluate then
says the in-sample share is unknown.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from popbatch.core.errors import ModelError

KEYS_FILE = "training_keys.u64"
HASH_NAME = "blake2b-64 of the key's UTF-8 text, little-endian"
_DTYPE = np.dtype("<u8")


def key_hashes(keys: Iterable[Any]) -> np.ndarray:
    """The 64-bit hash of each key (uint64, in order); a null key hashes like no key: 0.

    >>> key_hashes(["4ChVFOiAIPwnKLgWGUcErS"]).dtype
    dtype('uint64')
    """
    out = [
        0
        if key is None
        else int.from_bytes(hashlib.blake2b(str(key).encode("utf-8"), digest_size=8).digest(),
                            "little")
        for key in keys
    ]  # fmt: skip
    return np.asarray(out, np.uint64)


def fingerprint_bytes(keys: Iterable[Any]) -> bytes:
    """The file's bytes for the training ``keys``: sorted distinct hashes, little-endian."""
    hashes = np.unique(key_hashes(k for k in keys if k is not None))
    return hashes.astype(_DTYPE).tobytes()


def manifest_entry(data: bytes) -> dict[str, Any]:
    """The manifest's ``training_keys`` entry for a fingerprint file's ``data``."""
    return {
        "file": KEYS_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "count": len(data) // _DTYPE.itemsize,
        "hash": HASH_NAME,
    }


def read_fingerprint(directory: Path, manifest: Mapping[str, Any]) -> np.ndarray | None:
    """The sorted training-key hashes of a model, or None when it has no fingerprint.

    Raises
    ------
    ModelError
        The file is missing, or differs from the sha256 its manifest records.
    """
    entry = manifest.get("training_keys")
    if not entry:
        return None
    path = Path(directory) / str(entry.get("file", KEYS_FILE))
    if path.parent != Path(directory):
        raise ModelError(f"{directory}: manifest training_keys names no file beside the model")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(
            f"{path}: cannot read the training keys ({exc.strerror}); restore the file "
            "or re-export the model"
        ) from None
    if hashlib.sha256(data).hexdigest() != entry.get("sha256") or len(data) % 8:
        raise ModelError(
            f"{path}: {path.name} does not match its manifest: the file was changed; "
            "re-export the model or restore the original file"
        )
    return np.frombuffer(data, _DTYPE).astype(np.uint64)


def seen(hashes: np.ndarray, fingerprint: np.ndarray) -> np.ndarray:
    """Which of ``hashes`` are in the sorted ``fingerprint`` (bool, one per hash)."""
    if fingerprint.size == 0:
        return np.zeros(hashes.shape, bool)
    at = np.searchsorted(fingerprint, hashes)
    at[at == fingerprint.size] = 0
    return fingerprint[at] == hashes
