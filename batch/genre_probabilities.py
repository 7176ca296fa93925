"""Every class's probability from a model's genre head, for top-k accuracy.

``genre.onnx`` outputs only the winning class and its probability
(``genre_index``, ``genre_prob``): that is all a scored table needs. The
[N, C] matrix that ranks the classes is a named tensor inside the graph, which
no output reads: the manifest's ``heads.genre.class_tensor`` names it and says
whether it holds logits (a softmax here turns them into probabilities) or
probabilities (models exported before that key: the input of the ``ArgMax``
node that makes ``genre_index``). :func:`expose` adds that tensor to the
graph's outputs by editing the protobuf wire format of the verified bytes in
memory, so the probabilities come from the model itself, with no onnx package
(the scoring install has none) and no change on disk.

The wire format edit: a ``ModelProto`` holds its ``GraphProto`` in field 7; a
graph holds its nodes in field 1 (``NodeProto``: inputs 1, outputs 2) and its
outputs in field 12 (``ValueInfoProto``: name 1, type 2). Appending one field
12 entry (name, float tensor type) to the graph is the whole change.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from popbatch.batch.runner import single_thread_session

from popbatch.core.bundle import ModelBundle
from popbatch.core.errors import ModelError, one_line

_GRAPH, _NODE, _NODE_INPUT, _NODE_OUTPUT, _GRAPH_OUTPUT = 7, 1, 1, 2, 12
_LENGTH_DELIMITED, _FLOAT = 2, 1
CHUNK_ROWS = 1_024


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _fields(data: bytes) -> Iterator[tuple[int, bytes | None, bytes]]:
    """(field number, payload of a length-delimited field or None, raw bytes) per field."""
    at = 0
    while at < len(data):
        start = at
        tag, at = _varint(data, at)
        number, wire = tag >> 3, tag & 7
        payload = None
        if wire == 0:
            _, at = _varint(data, at)
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        elif wire == _LENGTH_DELIMITED:
            size, at = _varint(data, at)
            payload, at = data[at : at + size], at + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, payload, data[start:at]


def _field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _LENGTH_DELIMITED) + _encode_varint(len(payload)) + payload


def _strings(message: bytes, number: int) -> list[str]:
    return [p.decode("utf-8") for n, p, _ in _fields(message) if n == number and p is not None]


def expose(onnx_bytes: bytes, index_output: str, tensor: str | None = None) -> tuple[bytes, str]:
    """The model with ``tensor`` (None: the input of the node producing ``index_output``)
    as one more output; returns (new bytes, that tensor's name).

    Raises
    ------
    ValueError
        No node produces ``tensor`` (or ``index_output``).
    """
    out = bytearray()
    name = None
    for number, payload, raw in _fields(onnx_bytes):
        if number != _GRAPH or payload is None:
            out += raw
            continue
        for graph_field, node, _ in _fields(payload):
            if node is None or graph_field != _NODE:
                continue
            outputs = _strings(node, _NODE_OUTPUT)
            if tensor is not None and tensor in outputs:
                name = tensor
            elif tensor is None and index_output in outputs:
                name = _strings(node, _NODE_INPUT)[0]
        if name is None:
            raise ValueError(f"no node produces {tensor or index_output!r}")
        elem_type = _encode_varint(1 << 3) + _encode_varint(_FLOAT)  # TensorProto.FLOAT
        value_info = _field(1, name.encode("utf-8")) + _field(2, _field(1, elem_type))
        out += _field(_GRAPH, payload + _field(_GRAPH_OUTPUT, value_info))
    if name is None:
        raise ValueError("no graph in the model")
    return bytes(out), name


class GenreProbabilities:
    """The genre head's [N, C] class probabilities (float32), C = ``classes``."""

    def __init__(self, bundle: ModelBundle) -> None:
        entry = (bundle.manifest.get("heads") or {}).get("genre")
        if entry is None or "genre" not in bundle.head_bytes:
            raise ModelError(f"{bundle.directory}: the model has no genre head")
        self.classes = list(entry.get("classes", []))
        self.index_output = entry["outputs"]["index"]
        tensor = entry.get("class_tensor") or {}
        self.logits = tensor.get("kind") == "logits"
        try:
            data, self.output = expose(
                bundle.head_bytes["genre"], self.index_output, tensor.get("name")
            )
        except (ValueError, IndexError) as exc:
            raise ModelError(
                f"{bundle.directory}: cannot read the genre head's class probabilities "
                f"({one_line(exc)}); re-export the model"
            ) from None
        self.session = single_thread_session(data, bundle.directory, "the genre head")
        self.where = bundle.directory

    def __call__(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class index int64 [N], probabilities float32 [N, C]) of a feature matrix."""
        rows = features.shape[0]
        matrix = np.empty((rows, len(self.classes)), np.float32)
        index = np.empty(rows, np.int64)
        for start in range(0, rows, CHUNK_ROWS):
            end = min(start + CHUNK_ROWS, rows)
            try:
                chosen, probabilities = self.session.run(
                    [self.index_output, self.output], {"features": features[start:end]}
                )
            except Exception as exc:
                raise ModelError(
                    f"{self.where}: the genre head failed ({one_line(exc, 300)})"
                ) from None
            matrix[start:end] = np.asarray(probabilities).reshape(end - start, -1)
            index[start:end] = np.asarray(chosen).reshape(-1)
        return index, _softmax(matrix) if self.logits else matrix


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax (float32 [N, C]), computed in float64 from the row's largest logit."""
    shifted = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
