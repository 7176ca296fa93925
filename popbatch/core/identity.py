"""A model's identity covers everything that decides its predictions, not only ``model.onnx``.

The scoring contract is the part of ``manifest.json`` the scorer obeys: the
input name, dtype and width, the output names, the threshold, the key, the
genre column, vocabulary and "other" bucket, every feature entry (name, kind,
column, valid range, impute value, category, in input order) and, when a
model has them, its head definitions (``heads``) and its catalog priors
(``priors``: the key columns, statistics, smoothing, global values and the
sha256 of the lookup table file, so the table is covered too) and the one-graph file
of every head (``all_heads``: its file, heads and sha256). Editing any of it can change
a prediction, so it is part of the identity; so is the training-keys
fingerprint (``training_keys``), which decides what evaluation calls in-sample:

- **format 2** (written by ``popbatch export`` since 0.2.0): the manifest holds
  an ``identity`` block, ``{"scheme", "model_sha256", "contract"}``, where
  ``contract`` maps each contract part (``threshold``, ``genre.vocabulary``,
  ``features[3]``, ...) to the sha256 of its canonical JSON, and ``model_id``
  is the sha256 of the canonical JSON of that block. Changing the ONNX bytes,
  any contract part or the block itself changes or breaks the id.
- **format 1** (popbatch 0.1.0): ``model_id`` is the sha256 of ``model.onnx``
  alone. Such a bundle loads only when popbatch holds a record of its contract
  (:data:`popbatch.core.format1_models.CONTRACTS`, the embedded default
  model), checked part by part the same way; any other format-1 bundle is
  refused with the fix (re-export).

Descriptive fields (``created_at``, ``training_data``, ``label``, ``metrics``,
``params``, ``parity``, ``opsets``, ``packages``, ``throughput``, a feature's
``train`` statistics, used by ``popbatch drift``, a head's ``metrics`` and
``parity``) are not covered: editing
them changes no prediction and is allowed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

SCHEME = "popbatch-model-id-2"
CONTRACT_FORMAT = 2
#: top-level manifest fields that decide predictions ("heads": later model heads;
#: "priors": the catalog priors), and ``training_keys``, the fingerprint of the rows
#: the model was fitted on (:mod:`popbatch.core.fingerprint`): it decides no prediction
#: but which rows ``popbatch evaluate`` counts as in-sample, so the id covers it too;
#: "all_heads": the one-graph file of every head the default command runs
CONTRACT_FIELDS = (
    "input", "outputs", "threshold", "key", "genre", "features", "heads", "priors",
    "training_keys", "all_heads",
)  # fmt: skip
#: list fields checked entry by entry, so a message can name the entry
LISTS = ("features", "heads")
#: keys of a feature or head entry that describe it without changing predictions
#: (a head's test metrics and parity proof: two runs of one command can differ in
#: their last float digits while every ONNX byte is the same)
DESCRIPTIVE_KEYS = frozenset({"train", "description", "metrics", "parity", "parity_line", "extra"})


def canonical_json(value: Any) -> bytes:
    """One byte string per JSON value: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def digest(value: Any) -> str:
    """sha256 hex of a JSON value's canonical form."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


def contract_parts(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The scoring contract of a manifest as ``{part: value}``.

    Dicts are split by key (``genre.vocabulary``), :data:`LISTS` by entry
    (``features[3]``, plus ``features.count``), without :data:`DESCRIPTIVE_KEYS`.

    >>> contract_parts({"threshold": 0.5, "outputs": {"label": "label"}})
    {'outputs.label': 'label', 'threshold': 0.5}
    """
    parts: dict[str, Any] = {}
    for field in CONTRACT_FIELDS:
        if field not in manifest:
            continue
        value = manifest[field]
        if field in LISTS and isinstance(value, list):
            parts[f"{field}.count"] = len(value)
            for index, entry in enumerate(value):
                if isinstance(entry, dict):
                    entry = {k: v for k, v in entry.items() if k not in DESCRIPTIVE_KEYS}
                parts[f"{field}[{index}]"] = entry
        elif isinstance(value, dict) and value:
            for key, item in value.items():
                # facts of the table, the proof of the one-graph file
                if field in ("priors", "all_heads") and key in DESCRIPTIVE_KEYS:
                    continue
                if field in LISTS and isinstance(item, dict):  # a head entry, by name
                    item = {k: v for k, v in item.items() if k not in DESCRIPTIVE_KEYS}
                parts[f"{field}.{key}"] = item
        else:
            parts[field] = value
    return parts


def contract_digests(manifest: Mapping[str, Any]) -> dict[str, str]:
    """``{part: sha256 of its canonical JSON}`` for :func:`contract_parts`."""
    return {part: digest(value) for part, value in contract_parts(manifest).items()}


def identity_block(manifest: Mapping[str, Any], model_sha256: str) -> dict[str, Any]:
    """The format-2 ``identity`` block of a manifest whose ONNX file has ``model_sha256``."""
    return {
        "scheme": SCHEME,
        "model_sha256": model_sha256,
        "contract": contract_digests(manifest),
    }


def seal(manifest: dict[str, Any], onnx_bytes: bytes) -> dict[str, Any]:
    """Make ``manifest`` a format-2 manifest of ``onnx_bytes``: set ``format_version``,
    ``identity`` and ``model_id`` (in place; also returned). Export calls this last.
    """
    manifest["format_version"] = CONTRACT_FORMAT
    block = identity_block(manifest, hashlib.sha256(onnx_bytes).hexdigest())
    manifest["identity"] = block
    manifest["model_id"] = digest(block)
    return manifest


def differing_parts(expected: Mapping[str, str], manifest: Mapping[str, Any]) -> list[str]:
    """Contract parts whose digest differs from ``expected`` (missing or new ones too),
    in manifest order; an empty list when the contract is as recorded.
    """
    actual = contract_digests(manifest)
    changed = [p for p, d in actual.items() if expected.get(p) != d]
    changed += [p for p in expected if p not in actual]
    return changed


def describe_parts(parts: list[str], manifest: Mapping[str, Any], limit: int = 3) -> str:
    """``features[3] (energy), features[4] (key)`` for a message; names list entries."""
    shown = []
    for part in parts[:limit]:
        label = part
        if "[" in part:
            field, _, rest = part.partition("[")
            index = int(rest.rstrip("]"))
            entries = manifest.get(field)
            if isinstance(entries, list) and index < len(entries):
                name = entries[index].get("name") if isinstance(entries[index], dict) else None
                if name is not None:
                    label = f"{part} ({name})"
        elif part not in contract_parts(manifest):
            label = f"{part} (missing)"
        shown.append(label)
    more = len(parts) - limit
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def covered_fields(manifest: Mapping[str, Any]) -> list[str]:
    """The top-level contract fields this manifest has (what its id covers)."""
    return [f for f in CONTRACT_FIELDS if f in manifest]
