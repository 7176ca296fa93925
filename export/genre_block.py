"""The genre one-hot block read as an index inside the graph: one definition for every head.

The input ``features`` is [N, F]: ``n`` numerics, then the genre's one-hot block
(one column per genre, ``other`` included). The preprocessor writes exactly one
1.0 per row there and 0.0 elsewhere, so every product of the block with a
constant matrix is one row of that matrix:

    index = int64(block @ [1, 2, ..., k])     # 1 + the row's genre; 0 if the block is empty
    block @ table == Gather(zero row + table, index)

(the float32 sum of zeros and one integer up to k is exact). Reading the block
this way keeps the input contract (old and new models take the same matrix)
while the graph stops doing arithmetic on 115 columns of zeros: before it,
the popular head's logistic regression cast the whole [N, 129] input to float64
and the popularity network's first layer multiplied all of it. Measured with
``bench/ab_models.py`` (removed; see git history) on the default model: the
popular head 0.79 -> 0.68 µs per row, outputs bit-identical (docs/performance.md,
"The small levers, measured").
"""

from __future__ import annotations

from typing import Any

import numpy as np
from popbatch.exporter.toolkit import const

INDEX = "genre/index"
NUMERIC = "numeric"


def index_nodes(source: str, n: int, width: int) -> tuple[list, list]:
    """``numeric`` = source[:, :n] (float32 [N, n]) and :data:`INDEX` (int64 [N])."""
    from onnx import TensorProto, helper

    k = width - n
    nodes = [
        helper.make_node("Slice", [source, "genre/start", "genre/end", "genre/axis"], [NUMERIC]),
        helper.make_node(
            "Slice", [source, "genre/end", "genre/width", "genre/axis"], ["genre/block"]
        ),
        helper.make_node("MatMul", ["genre/block", "genre/positions"], ["genre/position"]),
        helper.make_node("Cast", ["genre/position"], ["genre/position64"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["genre/position64", "genre/flat"], [INDEX]),
    ]
    inits = [
        const("genre/start", [0], np.int64),
        const("genre/end", [n], np.int64),
        const("genre/width", [width], np.int64),
        const("genre/axis", [1], np.int64),
        const("genre/positions", np.arange(1, k + 1).reshape(k, 1), np.float32),
        const("genre/flat", [-1], np.int64),
    ]
    return nodes, inits


def rows_nodes(table: Any, dtype: Any, name: str, offset: Any = 0.0) -> tuple[list, list]:
    """``name`` = block @ table + offset ([N, H]) as a Gather of ``table``'s rows (each
    plus ``offset``, e.g. a bias the next step would add) by :data:`INDEX`."""
    from onnx import helper

    table = np.asarray(table, np.float64)
    rows = (np.vstack([np.zeros((1, table.shape[1])), table]) + offset).astype(dtype)
    return (
        [helper.make_node("Gather", [f"{name}/table", INDEX], [name], axis=0)],
        [const(f"{name}/table", rows, dtype)],
    )


def encoded_input_nodes(encoding: Any, output: str, prefix: str) -> tuple[list, list]:
    """``output`` = Concat(numerics, the genre's target encoding), [N, n + 1]: the trees'
    input (``models.encoding.with_encoded_genre`` in the graph)."""
    from onnx import helper

    column = np.asarray(encoding, np.float64).astype(np.float32).reshape(-1, 1)
    nodes, inits = rows_nodes(column, np.float32, f"{prefix}encoded")
    nodes.append(helper.make_node("Concat", [NUMERIC, f"{prefix}encoded"], [output], axis=1))
    return nodes, inits


def split_first_layer(nodes: list, inits: list, source: str, n: int) -> bool:
    """Rewrite ``MatMul(source, W)`` as ``MatMul(numeric, W[:n]) + Gather(W[n:], index)``.

    ``nodes`` and ``inits`` are a graph's lists, changed in place; the graph must
    already compute :data:`NUMERIC` and :data:`INDEX` (:func:`index_nodes`). Returns
    False, changing nothing, unless exactly one ``MatMul`` reads ``source`` with a
    constant [F, H] weight read by no other node (the Keras network's first layer).
    """
    from onnx import helper, numpy_helper

    constants = {t.name: t for t in inits}
    readers = [m for m in nodes if source in m.input]
    matmuls = [m for m in readers if m.op_type == "MatMul" and m.input[0] == source]
    if len(matmuls) != 1 or matmuls[0].input[1] not in constants:
        return False
    matmul = matmuls[0]
    weight_name = matmul.input[1]
    if sum(weight_name in m.input for m in nodes) != 1:
        return False
    weight = numpy_helper.to_array(constants[weight_name])
    if weight.ndim != 2 or weight.shape[0] <= n:
        return False
    out = matmul.output[0]
    prefix = f"{weight_name}/"
    numeric_part, genre_part = f"{prefix}numeric_part", f"{prefix}genre_part"
    lookup, lookup_inits = rows_nodes(weight[n:], weight.dtype, genre_part)
    at = nodes.index(matmul)
    nodes[at : at + 1] = [
        helper.make_node("MatMul", [NUMERIC, f"{prefix}numeric"], [numeric_part]),
        *lookup,
        # numerics first, then the genre's row: the order the full MatMul summed them in
        helper.make_node("Add", [numeric_part, genre_part], [out]),
    ]
    inits.remove(constants[weight_name])
    inits += [const(f"{prefix}numeric", weight[:n], weight.dtype), *lookup_inits]
    _fold_bias_into_rows(nodes, inits, out, genre_part)
    return True


def _fold_bias_into_rows(nodes: list, inits: list, summed: str, genre_part: str) -> None:
    """When the layer's only next step is ``Add(summed, bias)`` with a constant [H] bias,
    add the bias to every row of the genre table instead and drop that Add: one pass
    over [N, H] fewer (the sum's float order changes, within parity)."""
    from onnx import numpy_helper

    constants = {t.name: t for t in inits}
    readers = [m for m in nodes if summed in m.input]
    if len(readers) != 1 or readers[0].op_type != "Add" or readers[0].input[0] != summed:
        return
    add = readers[0]
    bias_name = add.input[1]
    if bias_name not in constants or sum(bias_name in m.input for m in nodes) != 1:
        return
    bias = numpy_helper.to_array(constants[bias_name])
    table_init = constants[f"{genre_part}/table"]
    table = numpy_helper.to_array(table_init)
    if bias.shape != (table.shape[1],):
        return
    folded = (table.astype(np.float64) + bias.astype(np.float64)).astype(table.dtype)
    inits[inits.index(table_init)] = const(table_init.name, folded, table.dtype)
    inits.remove(constants[bias_name])
    (adder,) = [m for m in nodes if m.output[0] == summed]
    adder.output[0] = add.output[0]
    nodes.remove(add)
