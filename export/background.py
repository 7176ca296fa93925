"""Background rows for ``popbatch explain``: a training sample stored beside the model.

Training saves ~100 random rows of the training split as ``stack/background.parquet``
(model feature columns); export turns them into the raw space the explainer
uses (the numeric inputs and the genre as text) and writes them as
``background.parquet`` beside ``model.onnx``, listed in the manifest with its
sha256 so the explainer can refuse a changed file. Runs trained before this
file existed export without it; the explainer then samples the input.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from popbatch.batch.explain.space import BACKGROUND_FILE, RawSpace

from popbatch.core import files


def background_for(stack_dir: Path, manifest: dict[str, Any]) -> bytes | None:
    """Parquet bytes of the stack's background rows in raw space; None when it has none.

    Adds the ``background`` entry (file, sha256, rows, source) to ``manifest``.
    """
    path = Path(stack_dir) / BACKGROUND_FILE
    if not path.is_file():
        return None
    names = [f["name"] for f in manifest["features"]]
    table = pq.read_table(path, columns=names)
    matrix = np.column_stack([table.column(n).to_numpy().astype(np.float64) for n in names])
    space = RawSpace(manifest, head="genre")  # every input: each head explains a subset
    raw = np.asarray(matrix[:, space.numeric_positions])
    columns = {name: pa.array(raw[:, i]) for i, name in enumerate(space.names[: raw.shape[1]])}
    if space.has_genre:
        block = sorted(space.categories)
        hot = np.asarray(block)[np.argmax(matrix[:, block], axis=1)]
        columns["genre"] = pa.array([space.genre_of(p) for p in hot], pa.string())
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    data = buffer.getvalue()
    manifest["background"] = {
        "file": BACKGROUND_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "rows": int(matrix.shape[0]),
        "source": "random rows of the training split",
    }
    return data


def write_background(out_dir: Path, data: bytes) -> None:
    """Write ``background.parquet`` (before the manifest that lists it)."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    files.write_atomically(Path(out_dir) / BACKGROUND_FILE, data)
