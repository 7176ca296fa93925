"""``all_heads.onnx``: every head of a model in one graph, for ``popbatch score``'s default.

The default command scores every head. With one file per head it made three
onnxruntime calls per 1,024-row slice, each slicing the same input columns
(the numeric block, the genre one-hot read as an index) again. This file
holds the same heads' nodes side by side, each under its head's prefix, with
one ``features`` input, every head's outputs, and constants of equal value
shared, so that onnxruntime's common-subexpression elimination computes a
shared input block once. The per-head files stay: ``--heads`` scores a subset
with them (onnxruntime runs a whole graph even when asked for one output).

It is an export-time composition of the head files exactly as written, so its
outputs must equal theirs bit for bit; :func:`prove` checks that on the
parity rows before anything is written.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from popbatch.core.errors import ModelError

ALL_HEADS_FILE = "all_heads.onnx"
INPUT = "features"


def conflicting_opsets(graphs: dict[str, bytes]) -> list[str]:
    """The opset domains whose operators the graphs use at different versions (a model
    imports one version of a domain, and an operator of one version may be gone from
    another, as ``ai.onnx.ml``'s TreeEnsembleRegressor at 5): such graphs are not merged.
    A domain a graph imports but does not use (onnxruntime's optimiser imports many)
    does not count."""
    return sorted(d or "ai.onnx" for d, found in _used_versions(graphs).items() if len(found) > 1)


def _used_versions(graphs: dict[str, bytes]) -> dict[str, set[int]]:
    """Domain -> the versions the graphs that use its operators import."""
    import onnx

    used: dict[str, set[int]] = {}
    for data in graphs.values():
        model = onnx.load_from_string(data)
        versions = {o.domain: o.version for o in model.opset_import}
        for domain in {node.domain for node in model.graph.node}:
            used.setdefault(domain, set()).add(versions[domain])
    return used


def merge(graphs: dict[str, bytes]) -> bytes:
    """One ONNX model of ``graphs`` (head name -> bytes, each reading ``features``).

    Each head's node and constant names get a ``HEAD::`` prefix; the input and the
    outputs keep their names (they must not collide); a constant equal to one already
    taken (same type, shape and bytes) is read from that one instead. The graphs must
    import the same version of each domain they share (:func:`conflicting_opsets`).
    """
    import onnx
    from onnx import helper, numpy_helper

    models = {head: onnx.load_from_string(data) for head, data in graphs.items()}
    outputs: list[Any] = []
    for head, model in models.items():
        clash = {o.name for o in outputs} & {o.name for o in model.graph.output}
        if clash:
            raise ModelError(f"the {head} head's outputs {sorted(clash)} repeat another head's")
        outputs.extend(model.graph.output)
    nodes: list[Any] = []
    constants: list[Any] = []
    by_value: dict[tuple[str, tuple[int, ...], bytes], str] = {}
    for head, model in models.items():
        graph = model.graph
        kept = {INPUT, *(o.name for o in graph.output)}
        alias: dict[str, str] = {}
        for constant in graph.initializer:
            value = numpy_helper.to_array(constant)
            key = (value.dtype.str, value.shape, value.tobytes())
            if key not in by_value:
                by_value[key] = f"{head}::{constant.name}"
                renamed = onnx.TensorProto()
                renamed.CopyFrom(constant)
                renamed.name = by_value[key]
                constants.append(renamed)
            alias[constant.name] = by_value[key]
        for node in graph.node:
            for name in node.output:
                if name not in kept:
                    alias[name] = f"{head}::{name}"
        for node in graph.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.ClearField("input")
            copy.ClearField("output")
            copy.input.extend(alias.get(n, n) for n in node.input)
            copy.output.extend(alias.get(n, n) for n in node.output)
            copy.name = f"{head}::{node.name or len(nodes)}"
            nodes.append(copy)
    first = next(iter(models.values()))
    versions: dict[str, int] = {}  # a used domain's one version, else the highest imported
    for model in models.values():
        for opset in model.opset_import:
            versions[opset.domain] = max(versions.get(opset.domain, 0), opset.version)
    versions.update((d, min(found)) for d, found in _used_versions(graphs).items())
    merged = helper.make_model(
        helper.make_graph(nodes, "popbatch_all_heads", list(first.graph.input), outputs, constants),
        opset_imports=[helper.make_opsetid(d, v) for d, v in versions.items()],
        producer_name=first.producer_name,
    )
    merged.ir_version = max(m.ir_version for m in models.values())
    onnx.checker.check_model(merged, full_check=True)
    return merged.SerializeToString()


def prove(merged: bytes, graphs: dict[str, bytes], x: np.ndarray) -> dict[str, Any]:
    """Run ``merged`` and each head's graph on ``x``; every output must be equal, bit
    for bit. Returns the parity entry; raises ModelError (nothing is written) if not."""
    from popbatch.exporter import runtime

    x = np.ascontiguousarray(x, np.float32)
    session = runtime.session(merged)
    names = [o.name for o in session.get_outputs()]
    together = dict(zip(names, session.run(names, {INPUT: x}), strict=True))
    differing = []
    for data in graphs.values():
        alone = runtime.session(data)
        head_names = [o.name for o in alone.get_outputs()]
        for name, value in zip(head_names, alone.run(head_names, {INPUT: x}), strict=True):
            if not np.array_equal(value, together[name]):
                differing.append(name)
    if differing:
        raise ModelError(
            f"parity failed, nothing written: {ALL_HEADS_FILE} differs from the head files "
            f"in {', '.join(differing)}; report it with the run directory"
        )
    return {"rows": len(x), "identical": True}


def entry(merged: bytes, heads: list[str], parity: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``all_heads`` section."""
    return {
        "file": ALL_HEADS_FILE,
        "heads": heads,
        "sha256": hashlib.sha256(merged).hexdigest(),
        "bytes": len(merged),
        "parity": parity,
        "parity_line": (
            f"{ALL_HEADS_FILE} on {parity['rows']:,} rows: every output identical to the "
            "head files'"
        ),
    }
