"""The popularity and genre heads as ONNX files of their own, each with a parity proof.

Every head file takes the same input as ``model.onnx`` (``features``, float32
[N, F] in the manifest's order), so the scorer feeds one matrix to every head
it runs. A separate file per head lets ``popbatch score --heads`` run only the
requested ones: onnxruntime runs a whole graph even when asked for one output.

``popularity.onnx`` (output ``popularity_pred``, float64 [N])::

    c    = clip(features)                                 # the stack's bounds, if any
    t    = Concat(c[:, :14], genre_encoding[genre])       # c itself without a genre
    base = [ann(c), rf(t), xgb(t)]                        # scaler folded into the ann
    # the genre block is read as an index (export/genre_block.py), also by ann's first layer
    popularity_pred = Clip(base @ meta_coef + meta_intercept, 0, 100)   # float64

``genre.onnx`` (outputs ``genre_index`` int64 [N], ``genre_prob`` float32 [N])::

    c = clip(features[:, :14])
    p = w * softmax_ann(c) + (1 - w) * rf.predict_proba(c)   # float32; a zero-weight
    # (the forest as a TreeEnsembleRegressor: the same sums, no label per row)
    genre_index = ArgMax(p), genre_prob = ReduceMax(p)       # learner is left out

The genre names are ``heads.genre.classes`` in the manifest (index -> name).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from popbatch.exporter import genre_block
from popbatch.exporter.toolkit import GraphBuilder, convert_estimator
from popbatch.exporter.trees import attributes, multiclass_as_regressor

from popbatch.core.errors import ModelError

POPULARITY_TOLERANCE = 1e-3  # popularity points
GENRE_TOLERANCE = 1e-5  # probability
HEAD_FILES = {"popularity": "popularity.onnx", "genre": "genre.onnx"}
HEAD_DIRS = {"popularity": "popularity", "genre": "genre"}
POPULARITY_OUTPUT = "popularity_pred"
GENRE_INDEX = "genre_index"
GENRE_PROB = "genre_prob"
# The [N, C] tensor inside genre.onnx that ranks the classes (not an output: onnxruntime
# computes every node of a graph, even one no output reads, so no Softmax is kept for it)
GENRE_LOGITS = "genre/logits"
GENRE_PROBABILITIES = "genre/probabilities"


def _convert(estimator: Any, width: int):
    """A head's forest or XGBoost as ONNX (:func:`~popbatch.exporter.toolkit.convert_estimator`),
    a multi-class forest compacted: zero class weights dropped, the classifier re-emitted as
    a regressor (export/trees.py). Returns the model."""
    model = convert_estimator(estimator, width)
    nodes = model.graph.node
    for at, node in enumerate(nodes):
        if node.op_type == "TreeEnsembleClassifier":
            drop_zero_class_weights(node)
            attrs = attributes(node)
            classes = attrs.get("classlabels_int64s") or attrs.get("classlabels_strings")
            if len(node.output) == 2 and len(classes) > 2:
                nodes[at].CopyFrom(multiclass_as_regressor(node))
    return model


def drop_zero_class_weights(node: Any) -> None:
    """Remove the leaves' zero class weights from a TreeEnsembleClassifier, in place.

    skl2onnx writes every class's weight at every leaf; with 114 genres almost all
    are 0, and a missing weight adds the same 0. Measured on a 60-tree, depth-12
    forest (18,414 nodes, trained on tests/data/tracks_2000.csv): 12.8 MB -> 1.06 MB,
    11k -> 102k rows/s on one thread, probabilities identical (max diff 0.0).
    """
    from onnx import helper

    attrs = {a.name: a for a in node.attribute}
    weights = list(attrs["class_weights"].floats)
    keep = [i for i, w in enumerate(weights) if w != 0.0]
    if len(keep) == len(weights):
        return
    for name in ("class_treeids", "class_nodeids", "class_ids"):
        values = list(attrs[name].ints)
        attrs[name].CopyFrom(helper.make_attribute(name, [values[i] for i in keep]))
    attrs["class_weights"].CopyFrom(
        helper.make_attribute("class_weights", [weights[i] for i in keep])
    )


def popularity_graph(head: Any, width: int) -> Any:
    """``onnx.ModelProto`` reproducing :meth:`models.popularity.PopularityHead.predict`."""
    from onnx import TensorProto

    n_numeric = head.n_numeric  # the audio features and any catalog priors
    b = GraphBuilder(width)
    clipped = b.clip("features", head.clip_lower, head.clip_upper)
    block = width > n_numeric  # the genre one-hot block follows the numerics
    if block:
        b.add(*genre_block.index_nodes(clipped, n_numeric, width))
    columns = []
    b.const("shape_n1", [-1, 1], np.int64)
    if head.ann is not None:
        ann = b.network(head.ann, width, head.scaler_mean, head.scaler_scale, clipped, "ann/")
        if block:
            genre_block.split_first_layer(b.nodes, b.inits, clipped, n_numeric)
        columns.append(b.node("Reshape", [ann, "shape_n1"], "ann/p"))
    trees, trees_width = _tree_input(b, head, clipped, width)
    for prefix, estimator in (("rf/", head.rf), ("xgb/", head.xgb)):
        if estimator is None:  # not one of this head's learners
            continue
        out = b.embed(_convert(estimator, trees_width), prefix, trees)
        columns.append(b.node("Reshape", [out, "shape_n1"], f"{prefix}p"))
    if len(columns) > 1:
        b.node("Concat", columns, "base", axis=1)
    else:
        b.node("Identity", columns, "base")
    b.node("Cast", ["base"], "base64", to=TensorProto.DOUBLE)
    coef = b.const("meta_coef", np.asarray(head.meta_coef).reshape(-1, 1), np.float64)
    b.node("MatMul", ["base64", coef], "z0")
    b.node("Add", ["z0", b.const("meta_intercept", [head.meta_intercept], np.float64)], "z")
    low = b.const("low", 0.0, np.float64)
    high = b.const("high", 100.0, np.float64)
    b.node("Clip", ["z", low, high], "z_clipped")
    b.node("Reshape", ["z_clipped", b.const("flat", [-1], np.int64)], POPULARITY_OUTPUT)
    return b.model("popbatch_popularity", [(POPULARITY_OUTPUT, TensorProto.DOUBLE)])


def _tree_input(b: GraphBuilder, head: Any, clipped: str, width: int) -> tuple[str, int]:
    """The popularity trees' input and its width: the clipped numerics and the genre's
    encoding, looked up by the genre's index (export/genre_block.py); ``clipped``
    itself for a head without an encoding."""
    if head.genre_encoding is None:
        return clipped, width
    b.add(*genre_block.encoded_input_nodes(head.genre_encoding, "trees/input", "trees/"))
    return "trees/input", head.n_numeric + 1


def _columns(b: GraphBuilder, source: str, columns: list[int], output: str) -> str:
    """``source[:, columns]``: a Slice when they are adjacent and in order, else a Gather."""
    if list(columns) == list(range(columns[0], columns[0] + len(columns))):
        bounds = {"s": [columns[0]], "e": [columns[0] + len(columns)], "a": [1]}
        names = [b.const(f"{output}_{k}", v, np.int64) for k, v in bounds.items()]
        return b.node("Slice", [source, *names], output)
    index = b.const(f"{output}_index", np.asarray(columns, np.int64), np.int64)
    return b.node("Gather", [source, index], output, axis=1)


def _softmax_nodes(b: GraphBuilder, model: dict[str, Any], clipped: str, name: str) -> str:
    """The genre head's softmax design (``models.genre.softmax_probabilities``): its
    logits ``c[:, z] @ W + b + sum_j A[j] * L_j``, ``L_j`` the prior's genre shares' logs
    (the inputs themselves with the ``log_genre`` statistic, else ``Log(Max(share,
    floor))``), named ``name``; returns it. :func:`genre_graph` turns them into outputs.

    ``c[:, z]`` is read as a Slice of the span ``z`` lies in, its W padded with zero rows,
    when that span is at most twice as wide: a Gather of columns cost as much as the
    Gemm and the Softmax together (``bench/graph_ab.py``)."""
    from popbatch.core.priors import LOG_FLOOR

    z = np.asarray(model["z"], np.int64)
    w = np.asarray(model["W"], np.float64)
    first, stop = int(z.min()), int(z.max()) + 1
    if stop - first <= 2 * len(z):
        padded = np.zeros((stop - first, w.shape[1]))
        padded[z - first] = w
        _columns(b, clipped, list(range(first, stop)), "softmax/z")
        w = padded
    else:
        b.node("Gather", [clipped, b.const("softmax/z_index", z, np.int64)], "softmax/z", axis=1)
    blocks = list(zip(model["genre"], model["A"], strict=True))
    # the last sum is the logits themselves, named ``name``
    sums = [f"softmax/l{j}" for j in range(len(blocks))] + [name]
    logits = b.node(
        "Gemm",
        [
            "softmax/z",
            b.const("softmax/W", w, np.float32),
            b.const("softmax/b", np.asarray(model["b"]), np.float32),
        ],
        sums[0],
    )
    for j, (columns, a) in enumerate(blocks):
        _columns(b, clipped, columns, f"softmax/g{j}")
        if model.get("logged"):
            b.node("Identity", [f"softmax/g{j}"], f"softmax/log{j}")
        else:
            floor = b.const(f"softmax/floor{j}", np.float32(LOG_FLOOR), np.float32)
            b.node("Max", [f"softmax/g{j}", floor], f"softmax/gf{j}")
            b.node("Log", [f"softmax/gf{j}"], f"softmax/log{j}")
        weight = b.const(f"softmax/a{j}", np.asarray(a), np.float32)
        b.node("Mul", [f"softmax/log{j}", weight], f"softmax/la{j}")
        logits = b.node("Add", [logits, f"softmax/la{j}"], sums[j + 1])
    return logits


def _top_genre_of_logits(b: GraphBuilder, logits: str, width: int) -> None:
    """``genre_index`` = argmax and ``genre_prob`` = max of ``Softmax(logits)``, without
    the Softmax: the largest logit ``m`` (one TopK gives it and its index) has the
    probability ``1 / sum(exp(logits - m))``. ArgMax alone cost a third of the head.
    ``width`` is the number of classes."""
    from onnx import helper

    k = b.const("top/k", [1], np.int64)
    b.nodes.append(helper.make_node("TopK", [logits, k], ["top/logit", "top/index"], axis=1))
    b.node("Sub", [logits, "top/logit"], "top/shifted")
    b.node("Exp", ["top/shifted"], "top/exp")
    # The row sums as a product with ones, not ReduceSum: onnxruntime's ReduceSum adds a
    # row in an order that depends on how many rows the batch has (a 97-row batch gave
    # other last bits than one of 1,000), the matrix product in the same order every time.
    classes = b.const("top/ones", np.ones((width, 1)), np.float32)
    b.node("MatMul", ["top/exp", classes], "top/sum")
    b.node("Reciprocal", ["top/sum"], "top/prob")
    b.node("Reshape", ["top/prob", b.const("top/flat", [-1], np.int64)], GENRE_PROB)
    b.node("Reshape", ["top/index", "top/flat"], GENRE_INDEX)  # int64, as ArgMax's


def genre_graph(head: Any, width: int) -> Any:
    """``onnx.ModelProto`` reproducing :meth:`models.genre.GenreHead.predict`."""
    from onnx import TensorProto

    inputs = head.width  # the audio features and any catalog priors, never the genre
    b = GraphBuilder(width)
    source = "features"
    if width != inputs:
        starts, ends, axes = (
            b.const(n, v, np.int64) for n, v in (("s0", [0]), ("s1", [inputs]), ("ax", [1]))
        )
        source = b.node("Slice", ["features", starts, ends, axes], "numeric")
    clipped = b.clip(source, head.clip_lower, head.clip_upper)
    used = head.used_learners()
    parts = {}
    if head.softmax is not None:
        parts["softmax"] = _softmax_nodes(b, head.softmax, clipped, GENRE_LOGITS)
    if "ann" in used:
        parts["ann"] = b.network(
            head.ann, inputs, head.scaler_mean, head.scaler_scale, clipped, "ann/"
        )
    if "rf" in used:
        parts["rf"] = b.embed(_convert(head.rf, inputs), "rf/", clipped)
    if list(parts) == ["softmax"]:
        _top_genre_of_logits(b, parts["softmax"], len(head.classes))
        return b.model(
            "popbatch_genre", [(GENRE_INDEX, TensorProto.INT64), (GENRE_PROB, TensorProto.FLOAT)]
        )
    if "softmax" in parts:
        parts["softmax"] = b.node("Softmax", [parts["softmax"]], "softmax/p", axis=1)
    if len(parts) == 2:
        w = np.float32(head.ann_weight)
        b.node("Mul", [parts["ann"], b.const("w_ann", w, np.float32)], "ann/weighted")
        b.node("Mul", [parts["rf"], b.const("w_rf", np.float32(1) - w, np.float32)], "rf/weighted")
        p = b.node("Add", ["ann/weighted", "rf/weighted"], GENRE_PROBABILITIES)
    else:
        (p,) = parts.values()
    b.node("ArgMax", [p], GENRE_INDEX, axis=1, keepdims=0)
    b.node("ReduceMax", [p], GENRE_PROB, axes=[1], keepdims=0)
    return b.model(
        "popbatch_genre", [(GENRE_INDEX, TensorProto.INT64), (GENRE_PROB, TensorProto.FLOAT)]
    )


def class_tensor(model_bytes: bytes) -> dict[str, str]:
    """The manifest's ``heads.genre.class_tensor``: the name of the [N, C] tensor that
    ranks the classes inside ``genre.onnx`` and whether it holds ``logits`` (apply a
    softmax) or ``probabilities`` (the input of the graph's ArgMax)."""
    import onnx

    nodes = onnx.load_from_string(model_bytes).graph.node
    if any(GENRE_LOGITS in n.output for n in nodes):
        return {"name": GENRE_LOGITS, "kind": "logits"}
    (argmax,) = [n for n in nodes if GENRE_INDEX in n.output]
    return {"name": argmax.input[0], "kind": "probabilities"}


@dataclass(frozen=True)
class HeadParity:
    head: str
    rows: int
    max_abs_diff: float
    tolerance: float
    labels_identical: bool | None = None
    label_mismatches: int = 0

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.labels_identical is not False

    def line(self) -> str:
        text = (
            f"{self.head} parity on {self.rows:,} test rows: max |native - onnx| = "
            f"{self.max_abs_diff:.3g} (tolerance {self.tolerance:g})"
        )
        if self.labels_identical is not None:
            same = "yes" if self.labels_identical else f"no ({self.label_mismatches} differ)"
            text += f", genres identical: {same}"
        return text

    def manifest(self) -> dict[str, Any]:
        out = {"rows": self.rows, "max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance}
        if self.labels_identical is not None:
            out["labels_identical"] = self.labels_identical
        return out


def _run(model_bytes: bytes, names: list[str], x: np.ndarray) -> list[np.ndarray]:
    from popbatch.exporter import runtime

    return runtime.session(model_bytes).run(
        names, {"features": np.ascontiguousarray(x, np.float32)}
    )


def popularity_parity(head: Any, model_bytes: bytes, x: np.ndarray) -> HeadParity:
    (onnx_pred,) = _run(model_bytes, [POPULARITY_OUTPUT], x)
    diff = np.abs(head.predict(x) - np.asarray(onnx_pred, np.float64))
    return HeadParity("popularity", len(x), float(diff.max()), POPULARITY_TOLERANCE)


def genre_parity(head: Any, model_bytes: bytes, x: np.ndarray) -> HeadParity:
    index, prob = _run(model_bytes, [GENRE_INDEX, GENRE_PROB], x)
    native = head.predict_proba(x)
    native_index = np.argmax(native, axis=1)
    diff = np.abs(native[np.arange(len(x)), native_index] - np.asarray(prob, np.float64))
    mismatches = int(np.sum(native_index != index))
    return HeadParity(
        "genre", len(x), float(diff.max()), GENRE_TOLERANCE, mismatches == 0, mismatches
    )


def load_heads(stack_dir: Path) -> dict[str, Any]:
    """The native heads a training run saved beside its stack (none for older runs)."""
    from popbatch.models.genre import SPEC_FILE as GENRE_SPEC
    from popbatch.models.genre import GenreHead
    from popbatch.models.popularity import SPEC_FILE as POPULARITY_SPEC
    from popbatch.models.popularity import PopularityHead

    heads: dict[str, Any] = {}
    if (stack_dir / HEAD_DIRS["popularity"] / POPULARITY_SPEC).is_file():
        heads["popularity"] = PopularityHead.load(stack_dir / HEAD_DIRS["popularity"])
    if (stack_dir / HEAD_DIRS["genre"] / GENRE_SPEC).is_file():
        heads["genre"] = GenreHead.load(stack_dir / HEAD_DIRS["genre"])
    return heads


def export_heads(
    stack_dir: Path, width: int, x: np.ndarray, say: Any
) -> tuple[dict[str, bytes], dict[str, dict[str, Any]]]:
    """Convert and prove every head saved in ``stack_dir``.

    Returns the head files' bytes by file name and their manifest entries
    (the ``heads`` section; each with its parity proof and ``parity_line``).

    Raises
    ------
    ModelError
        A head's graph does not reproduce its native model; nothing is written.
    """
    import hashlib

    from popbatch.exporter import runtime
    from popbatch.exporter.priors import widen_input

    native = load_heads(Path(stack_dir))
    blobs: dict[str, bytes] = {}
    entries: dict[str, dict[str, Any]] = {}
    for name, head in native.items():
        say(f"converting the {name} head and proving its parity")
        if name == "popularity":  # it reads the stack's inputs: not the genre shares
            graph = widen_input(popularity_graph(head, len(head.clip_lower)), width)
        else:
            graph = genre_graph(head, width)
        model_bytes = runtime.optimize(graph.SerializeToString())
        check = popularity_parity if name == "popularity" else genre_parity
        parity = check(head, model_bytes, x)
        if not parity.ok:
            raise ModelError(
                f"parity failed, nothing written: {parity.line()}; the {name} head's ONNX "
                "graph does not reproduce the native model, report it with the run directory"
            )
        say(parity.line())
        file = HEAD_FILES[name]
        blobs[file] = model_bytes
        entry: dict[str, Any] = {
            "file": file,
            "sha256": hashlib.sha256(model_bytes).hexdigest(),
            "bytes": len(model_bytes),
            "parity": parity.manifest(),
            "parity_line": parity.line(),
            "metrics": head.info.get("metrics", {}),
        }
        if name == "popularity":
            entry["outputs"] = {"prediction": POPULARITY_OUTPUT}
            entry["columns"] = {"popularity_pred": "DOUBLE"}
            entry["range"] = [0.0, 100.0]
        else:
            entry["outputs"] = {"index": GENRE_INDEX, "probability": GENRE_PROB}
            entry["class_tensor"] = class_tensor(model_bytes)
            entry["columns"] = {"genre_pred": "VARCHAR", "genre_prob": "DOUBLE"}
            entry["classes"] = list(head.classes)
            entry["learners"] = {"ann_weight": head.ann_weight, "used": head.used_learners()}
        entries[name] = entry
    return blobs, entries
