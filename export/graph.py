"""The native stack as ONE ONNX graph.

Graph (input ``features`` float32 [N, F]); each base learner of ``stack.learners``
gives one float64 [N, 1] column, as :meth:`models.stack.NativeStack.base_scores`::

    clipped  = Min(Max(features, clip_lower), clip_upper)      # skipped when unbounded
    logistic = float64(clipped) @ (coef / scale) + bias'       # scaler folded in, float64
                                                               # (bias in the genre's rows)
    ann      = network((clipped - scaler_mean) / scaler_scale)  # tf2onnx, scaler folded in
    rf       = TreeEnsembleRegressor(clipped)                   # skl2onnx trees, one score
    xgb      = TreeEnsembleRegressor(xgb_input)                 # onnxmltools trees: margin
    xgb_input = Concat(clipped[:, :n], genre_encoding[genre])   # or clipped
    probability meta input: Sigmoid of logistic / xgb; ann, rf as they are
    logit meta input: logistic, the xgb margin, the ann's input to its Sigmoid;
                      Log(q) - Log(1 - q) of rf (q clipped)
    z       = Gemm(Concat(columns), meta_coef, meta_intercept)  # in float64, like the native
    probability = float32(Sigmoid(z))                          # [N]
    label       = int64(Sigmoid(z) >= threshold)               # [N]

With a genre one-hot block, everything that multiplies the block (the
logistic regression's weights, the network's first layer, the target
encoding) reads it as the genre's index instead: a ``Gather`` of one row per
input row in place of arithmetic on 115 columns of zeros (export/genre_block.py).

``onnx.compose.merge_models`` joins models output-to-input only, so the fan-out
of ``clipped`` to three sub-graphs is assembled with
:class:`~popbatch.exporter.toolkit.GraphBuilder`: each converter's graph is
prefixed (``ann/``, ``rf/``, ``xgb/``), its input renamed to the tensor it reads,
and all nodes are concatenated in topological order.

The scaler is folded into the network's first layer (``x @ W + b`` with
``x = (c - mean) / scale`` is ``c @ (W / scale) + (b - (mean / scale) @ W)``):
two full passes over the [N, F] input fewer, measured +11% rows per CPU-second
for the default stack. When the first layer is not a MatMul + Add (another
converter version), the graph keeps explicit ``Sub``/``Div`` nodes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from popbatch.exporter import genre_block
from popbatch.exporter.toolkit import DOUBLE, GraphBuilder, const, convert_estimator, prefixed
from popbatch.exporter.trees import ML_OPSET, score_nodes
from popbatch.models.stack import LOGIT_EPS

INPUT = "features"
PROBABILITY = "probability"
LABEL = "label"
# How the forest and XGBoost are emitted (export/trees.py). Measured on the 10k sample
# (single-thread CPU rows/s, batch 65,536, RF 50x8 + XGB 300x4): classifier3 195k,
# regressor3 223k, ensemble5 (ai.onnx.ml 5 TreeEnsemble) 211-218k; RF 20x6 + XGB 100x3:
# 516k / 643k / 627k. regressor3 is fastest and needs only ai.onnx.ml 3.
TREE_FORM = "regressor3"


def build_graph(stack, tree_form: str = TREE_FORM) -> Any:
    """Build the checked ``onnx.ModelProto`` that reproduces ``stack.predict_proba``.

    ``tree_form`` is one of :data:`export.trees.TREE_FORMS`. The steps, in graph order:
    clip the input, read the genre block as an index, the constants the base columns
    share, one float64 column per base learner, the meta learner and the outputs.
    """
    from onnx import TensorProto

    b = GraphBuilder(len(stack.feature_names), INPUT)
    clipped = b.clip(INPUT, stack.clip_lower, stack.clip_upper)
    if stack.genre_vocabulary is not None:
        b.add(*genre_block.index_nodes(clipped, stack.n_numeric, b.width))
    logit = stack.meta_input == "logit"
    _shared_constants(b, stack, tree_form, logit)
    columns = [_base_column(b, stack, name, clipped, tree_form, logit) for name in stack.learners]
    _meta_learner(b, stack, columns)
    return b.model("popbatch_stack", [(PROBABILITY, TensorProto.FLOAT), (LABEL, TensorProto.INT64)])


def _shared_constants(b: GraphBuilder, stack, tree_form: str, logit: bool) -> None:
    """Add the constants several base columns read: only those some node reads
    (onnxruntime warns about the others). Returns nothing."""
    if "ann" in stack.learners:
        b.const("ann_shape", [-1, 1], np.int64)
    if logit and "rf" in stack.learners:
        b.const("logit_eps", LOGIT_EPS, np.float64)
        b.const("logit_one_minus_eps", 1.0 - LOGIT_EPS, np.float64)
        b.const("one", 1.0, np.float64)
    if tree_form == "classifier3" and {"rf", "xgb"} & set(stack.learners):
        b.const("column_1", [1], np.int64)


def _base_column(
    b: GraphBuilder, stack, name: str, clipped: str, tree_form: str, logit: bool
) -> str:
    """Add the base learner ``name``'s meta input; returns its float64 [N, 1] column's name
    (``{name}/column``), as :meth:`models.stack.NativeStack.base_scores` computes it."""
    prefix = f"{name}/"
    column = f"{prefix}column"
    if name == "logistic":
        b.add(*_linear_score(stack, clipped, column, logit))
        return column
    p = f"{prefix}p"
    if name == "ann":
        output = b.network(
            stack.ann, b.width, stack.scaler_mean, stack.scaler_scale, clipped, prefix
        )
        if stack.genre_vocabulary is not None:
            genre_block.split_first_layer(b.nodes, b.inits, clipped, stack.n_numeric)
        if logit:  # its pre-activation, as the native stack reads it (network_logit)
            z = b.node("Reshape", [_before_sigmoid(b, output), "ann_shape"], f"{prefix}z")
            b.node("Cast", [z], column, to=DOUBLE)
            return column
        b.node("Reshape", [output, "ann_shape"], p)
    else:
        _tree_probability(b, stack, name, clipped, tree_form, p)
    if logit and name == "xgb":
        # The margin before XGBoost's Sigmoid is its logit, exactly as the native
        # stack reads it (predict(output_margin=True)).
        if tree_form == "classifier3":
            raise ValueError("a stack on logits needs the regressor3 or ensemble5 tree form")
        b.node("Cast", [_before_sigmoid(b, p)], column, to=DOUBLE)
    elif logit:
        b.add(_logit_nodes(p, column, prefix), [])
    else:
        b.node("Cast", [p], column, to=DOUBLE)
    return column


def _before_sigmoid(b: GraphBuilder, output: str) -> str:
    """The input of the Sigmoid that makes ``output`` (a learner's probability); the
    Sigmoid (and any Identity after it) leave the graph. Returns the input's name."""
    producer = {name: node for node in b.nodes for name in node.output}
    chain = [producer[output]]
    while chain[-1].op_type == "Identity":
        chain.append(producer[chain[-1].input[0]])
    if chain[-1].op_type != "Sigmoid":
        raise ValueError(f"{output} comes from {chain[-1].op_type}, not a Sigmoid")
    for node in chain:
        b.nodes.remove(node)
    return chain[-1].input[0]


def _tree_probability(
    b: GraphBuilder, stack, name: str, clipped: str, tree_form: str, p: str
) -> None:
    """Add the forest or XGBoost (``name``) in ``tree_form``, its P(popular) as ``p``
    [N, 1] (XGBoost reads the numerics and the genre's encoding when the stack has one).
    Returns nothing."""
    model = stack.rf if name == "rf" else stack.xgb
    prefix = f"{name}/"
    source, width = clipped, b.width
    if name == "xgb" and stack.genre_encoding is not None:
        source, width = "xgb/input", stack.n_numeric + 1
        b.add(*genre_block.encoded_input_nodes(stack.genre_encoding, source, prefix))
    nodes, inits, output, used = prefixed(convert_estimator(model, width), prefix, source)
    if tree_form == "classifier3":  # probability of class 1, kept 2-D: [N, 1]
        b.add(nodes, inits)
        b.node("Gather", [output, "column_1"], p, axis=1)
    else:  # the converted classifier replaced by its one-score form (export/trees.py)
        (classifier,) = [n for n in nodes if n.op_type == "TreeEnsembleClassifier"]
        if list(classifier.input) != [source]:
            raise ValueError(f"{prefix}: the tree ensemble does not read the features directly")
        b.add(*score_nodes(classifier, tree_form, source, p, prefix))
        used = {**used, "ai.onnx.ml": ML_OPSET[tree_form]}
    b.use_opsets(used)


def _linear_score(stack, clipped: str, column: str, logit: bool) -> tuple[list, list]:
    """The logistic base learner with its scaler folded in, in float64: [N, 1].

    ``s . w + b`` with ``s = (c - mean) / scale`` is ``c . (w / scale) + (b - (mean / scale) . w)``.
    With a genre block, ``c . w`` is ``numeric . w[:n] + w[n + genre]`` (export/genre_block.py):
    only the numerics are cast to float64. Returns the nodes and initializers.
    """
    from onnx import helper

    coef = np.asarray(stack.logistic.coef, np.float64)
    scale = np.asarray(stack.scaler_scale, np.float64)
    weight = (coef / scale).reshape(-1, 1)
    bias = stack.logistic.intercept - float((np.asarray(stack.scaler_mean) / scale) @ coef)
    z = column if logit else "logistic/z"
    if stack.genre_vocabulary is None:
        inits = [const("logistic/weight", weight, np.float64)]
        inits.append(const("logistic/bias", [bias], np.float64))
        nodes = [
            helper.make_node("Cast", [clipped], ["logistic/input64"], to=DOUBLE),
            helper.make_node("MatMul", ["logistic/input64", "logistic/weight"], ["logistic/xw"]),
            helper.make_node("Add", ["logistic/xw", "logistic/bias"], [z]),
        ]
    else:
        # the bias rides in the genre's rows: one broadcast Add fewer (6% of the head)
        n = stack.n_numeric
        lookup, inits = genre_block.rows_nodes(
            weight[n:], np.float64, "logistic/genre_part", offset=bias
        )
        inits.append(const("logistic/weight", weight[:n], np.float64))
        nodes = [
            helper.make_node("Cast", [genre_block.NUMERIC], ["logistic/input64"], to=DOUBLE),
            helper.make_node("MatMul", ["logistic/input64", "logistic/weight"], ["logistic/xw0"]),
            *lookup,
            helper.make_node("Add", ["logistic/xw0", "logistic/genre_part"], [z]),
        ]
    if not logit:
        nodes.append(helper.make_node("Sigmoid", [z], [column]))
    return nodes, inits


def _logit_nodes(p: str, column: str, prefix: str) -> list:
    """``log(q) - log(1 - q)``, ``q = clip(float64(p), eps, 1 - eps)``, as the native logit;
    returns the nodes."""
    from onnx import helper

    return [
        helper.make_node("Cast", [p], [f"{prefix}p64"], to=DOUBLE),
        helper.make_node(
            "Clip", [f"{prefix}p64", "logit_eps", "logit_one_minus_eps"], [f"{prefix}q"]
        ),
        helper.make_node("Log", [f"{prefix}q"], [f"{prefix}log_q"]),
        helper.make_node("Sub", ["one", f"{prefix}q"], [f"{prefix}one_minus_q"]),
        helper.make_node("Log", [f"{prefix}one_minus_q"], [f"{prefix}log_one_minus_q"]),
        helper.make_node("Sub", [f"{prefix}log_q", f"{prefix}log_one_minus_q"], [column]),
    ]


def _meta_learner(b: GraphBuilder, stack, columns: list[str]) -> None:
    """Add the meta learner on the base columns and the two outputs, ``probability``
    float32 [N] and ``label`` int64 [N]. Returns nothing."""
    from onnx import TensorProto

    n_base = len(stack.learners)
    b.const("meta_coef", np.asarray(stack.meta_coef).reshape(n_base, 1), np.float64)
    b.const("meta_intercept", [stack.meta_intercept], np.float64)
    b.const("threshold", stack.threshold, np.float64)
    b.const("flat", [-1], np.int64)
    # The native meta learner computes in float64; so does the graph, so labels
    # at the threshold agree.
    b.node("Concat", columns, "base64", axis=1)
    b.node("Gemm", ["base64", "meta_coef", "meta_intercept"], "z")
    b.node("Sigmoid", ["z"], "p64_2d")
    b.node("Reshape", ["p64_2d", "flat"], "p64")
    b.node("Cast", ["p64"], PROBABILITY, to=TensorProto.FLOAT)
    b.node("GreaterOrEqual", ["p64", "threshold"], "popular")
    b.node("Cast", ["popular"], LABEL, to=TensorProto.INT64)
