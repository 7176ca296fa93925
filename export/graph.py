"""The native stack as ONE ONNX graph.

Graph (input ``features`` float32 [N, F]); each base learner of ``stack.learners``
gives one float64 [N, 1] column, as :meth:`models.stack.NativeStack.base_scores`::

    clipped  = Min(Max(features, clip_lower), clip_upper)      # skipped when unbounded
    logistic = float64(clipped) @ (coef / scale) + bias'       # scaler folded in, float64
    ann      = network((clipped - scaler_mean) / scaler_scale)  # tf2onnx, scaler folded in
    rf       = TreeEnsembleRegressor(clipped)                   # skl2onnx trees, one score
    xgb      = TreeEnsembleRegressor(xgb_input)                 # onnxmltools trees: margin
    xgb_input = Concat(clipped[:, :n], genre_encoding[genre])   # or clipped
    probability meta input: Sigmoid of logistic / xgb; ann, rf as they are
    logit meta input: logistic, the xgb margin; Log(q) - Log(1 - q) of ann, rf (q clipped)
    z       = Concat(columns) @ meta_coef + meta_intercept     # in float64, like the native
    probability = float32(Sigmoid(z))                          # [N]
    label       = int64(Sigmoid(z) >= threshold)               # [N]

With a genre one-hot block, everything that multiplies the block (the
logistic regression's weights, the network's first layer, the target
encoding) reads it as the genre's index instead: a ``Gather`` of one row per
input row in place of arithmetic on 115 columns of zeros (export/genre_block.py).

``onnx.compose.merge_models`` joins models output-to-input only, so the fan-out
of ``clipped`` to three sub-graphs is assembled here: each converter's graph is
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
from popbatch.exporter.trees import ML_OPSET
from popbatch.models.stack import LOGIT_EPS

INPUT = "features"
PROBABILITY = "probability"
LABEL = "label"
OPSET = 17
# How the forest and XGBoost are emitted (export/trees.py). Measured on the 10k sample
# (single-thread CPU rows/s, batch 65,536, RF 50x8 + XGB 300x4): classifier3 195k,
# regressor3 223k, ensemble5 (ai.onnx.ml 5 TreeEnsemble) 211-218k; RF 20x6 + XGB 100x3:
# 516k / 643k / 627k. regressor3 is fastest and needs only ai.onnx.ml 3.
TREE_FORM = "regressor3"
DOUBLE = 11  # onnx.TensorProto.DOUBLE, without importing onnx at module load


def _ann_graph(stack, width: int):
    """The Keras network as an ONNX model with input ``x`` [N, F] and one [N, 1] output."""
    import tensorflow as tf
    import tf2onnx

    network = stack.ann

    signature = [tf.TensorSpec([None, width], tf.float32, name="x")]

    @tf.function(input_signature=signature)
    def forward(x):
        # training=False: Dropout is the identity, as in predict().
        return network(x, training=False)

    model, _ = tf2onnx.convert.from_function(forward, input_signature=signature, opset=OPSET)
    return model


def fold_scaler(model, mean: Any, scale: Any) -> bool:
    """Fold ``(x - mean) / scale`` into the network's first ``MatMul`` + ``Add``, in place.

    Returns False (the model unchanged) unless the graph's input feeds exactly
    one ``MatMul`` with a constant [F, H] weight whose only consumer is an
    ``Add`` with a constant [H] bias. Computed in float64, stored as float32.
    """
    from onnx import numpy_helper

    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    (source,) = [i.name for i in graph.input if i.name not in constants]
    readers = [n for n in graph.node if source in n.input]
    if len(readers) != 1 or readers[0].op_type != "MatMul":
        return False
    matmul = readers[0]
    adds = [n for n in graph.node if matmul.output[0] in n.input]
    if len(adds) != 1 or adds[0].op_type != "Add" or list(matmul.input).index(source) != 0:
        return False
    weight_name = matmul.input[1]
    bias_name = next((i for i in adds[0].input if i != matmul.output[0]), None)
    if weight_name not in constants or bias_name not in constants:
        return False
    weight = numpy_helper.to_array(constants[weight_name]).astype(np.float64)
    bias = numpy_helper.to_array(constants[bias_name]).astype(np.float64)
    if weight.ndim != 2 or bias.shape != (weight.shape[1],):
        return False
    if sum(name in (weight_name, bias_name) for n in graph.node for name in n.input) != 2:
        return False  # the constants are shared with another node
    scale = np.asarray(scale, np.float64)
    offset = np.asarray(mean, np.float64) / scale
    folded = {
        weight_name: weight / scale[:, None],
        bias_name: bias - offset @ weight,
    }
    for name, value in folded.items():
        constants[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
    return True


def _tree_graph(estimator, width: int):
    """A RandomForest or XGBoost classifier as ONNX: input ``x``, ``probabilities`` [N, 2]."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    _register_xgboost()
    return convert_sklearn(
        estimator,
        initial_types=[("x", FloatTensorType([None, width]))],
        options={id(estimator): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 3},  # what the converters emit
    )


def _register_xgboost() -> None:
    """Let skl2onnx convert XGBClassifier with onnxmltools' converter (accepts opset 17)."""
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
    from xgboost import XGBClassifier

    update_registered_converter(
        XGBClassifier,
        "XGBoostXGBClassifier",
        calculate_linear_classifier_output_shapes,
        convert_xgboost,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )


def _embed(sub, prefix: str, new_input: str) -> tuple[list, list, str, dict[str, int]]:
    """Prefix a sub-model's names and wire its single input to ``new_input``.

    Returns its nodes, its initializers, the (prefixed) name of the output to
    use (the only output of the network, or ``probabilities`` of a classifier)
    and its opset imports.
    """
    from onnx import compose

    sub = compose.add_prefix(sub, prefix)
    graph = sub.graph
    constants = {t.name for t in graph.initializer}
    (old_input,) = [i.name for i in graph.input if i.name not in constants]
    outputs = [o.name for o in graph.output]
    output = next((o for o in outputs if o.endswith("probabilities")), outputs[0])
    nodes = []
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == old_input:
                node.input[k] = new_input
        nodes.append(node)
    return nodes, list(graph.initializer), output, _opsets(sub)


def _single_score(sub_nodes: list, tree_form: str, source: str, column: str, prefix: str):
    """Replace a converted classifier by its one-score form (export/trees.py)."""
    from popbatch.exporter.trees import score_nodes

    (classifier,) = [n for n in sub_nodes if n.op_type == "TreeEnsembleClassifier"]
    if list(classifier.input) != [source]:
        raise ValueError(f"{prefix}: the tree ensemble does not read the features directly")
    return score_nodes(classifier, tree_form, source, column, prefix)


def _opsets(model) -> dict[str, int]:
    return {o.domain or "": o.version for o in model.opset_import}


def _const(name: str, value: Any, dtype) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(value, dtype), name)


def _linear_score(stack, clipped: str, column: str, logit: bool) -> tuple[list, list]:
    """The logistic base learner with its scaler folded in, in float64: [N, 1].

    ``s . w + b`` with ``s = (c - mean) / scale`` is ``c . (w / scale) + (b - (mean / scale) . w)``.
    With a genre block, ``c . w`` is ``numeric . w[:n] + w[n + genre]`` (export/genre_block.py):
    only the numerics are cast to float64.
    """
    from onnx import helper

    coef = np.asarray(stack.logistic.coef, np.float64)
    scale = np.asarray(stack.scaler_scale, np.float64)
    weight = (coef / scale).reshape(-1, 1)
    bias = stack.logistic.intercept - float((np.asarray(stack.scaler_mean) / scale) @ coef)
    z = column if logit else "logistic/z"
    if stack.genre_vocabulary is None:
        inits = [_const("logistic/weight", weight, np.float64)]
        nodes = [
            helper.make_node("Cast", [clipped], ["logistic/input64"], to=DOUBLE),
            helper.make_node("MatMul", ["logistic/input64", "logistic/weight"], ["logistic/xw"]),
        ]
    else:
        n = stack.n_numeric
        lookup, inits = genre_block.rows_nodes(weight[n:], np.float64, "logistic/genre_part")
        inits.append(_const("logistic/weight", weight[:n], np.float64))
        nodes = [
            helper.make_node("Cast", [genre_block.NUMERIC], ["logistic/input64"], to=DOUBLE),
            helper.make_node("MatMul", ["logistic/input64", "logistic/weight"], ["logistic/xw0"]),
            *lookup,
            helper.make_node("Add", ["logistic/xw0", "logistic/genre_part"], ["logistic/xw"]),
        ]
    inits.append(_const("logistic/bias", [bias], np.float64))
    nodes.append(helper.make_node("Add", ["logistic/xw", "logistic/bias"], [z]))
    if not logit:
        nodes.append(helper.make_node("Sigmoid", [z], [column]))
    return nodes, inits


def _logit_nodes(p: str, column: str, prefix: str) -> list:
    """``log(q) - log(1 - q)``, ``q = clip(float64(p), eps, 1 - eps)``, as the native logit."""
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


def build_graph(stack, tree_form: str = TREE_FORM) -> Any:
    """Build the checked ``onnx.ModelProto`` that reproduces ``stack.predict_proba``.

    ``tree_form`` is one of :data:`export.trees.TREE_FORMS`.
    """
    import onnx
    from onnx import TensorProto, helper

    width = len(stack.feature_names)
    nodes, inits = [], []
    opsets: dict[str, int] = {"": OPSET}

    clipped = INPUT
    if any(v is not None for v in stack.clip_lower):
        lower = [np.finfo(np.float32).min if v is None else v for v in stack.clip_lower]
        inits.append(_const("clip_lower", lower, np.float32))
        nodes.append(helper.make_node("Max", [clipped, "clip_lower"], ["clipped_low"]))
        clipped = "clipped_low"
    if any(v is not None for v in stack.clip_upper):
        upper = [np.finfo(np.float32).max if v is None else v for v in stack.clip_upper]
        inits.append(_const("clip_upper", upper, np.float32))
        nodes.append(helper.make_node("Min", [clipped, "clip_upper"], ["clipped"]))
        clipped = "clipped"

    ann, ann_source = None, clipped
    if "ann" in stack.learners:
        ann = _ann_graph(stack, width)
    if ann is not None and not fold_scaler(ann, stack.scaler_mean, stack.scaler_scale):
        inits += [
            _const("scaler_mean", stack.scaler_mean, np.float32),
            _const("scaler_scale", stack.scaler_scale, np.float32),
        ]
        nodes += [
            helper.make_node("Sub", [clipped, "scaler_mean"], ["centred"]),
            helper.make_node("Div", ["centred", "scaler_scale"], ["scaled"]),
        ]
        ann_source = "scaled"

    if stack.genre_vocabulary is not None:
        nodes_, inits_ = genre_block.index_nodes(clipped, stack.n_numeric, width)
        nodes += nodes_
        inits += inits_

    logit = stack.meta_input == "logit"
    # Only the constants some node reads (onnxruntime warns about the others).
    if "ann" in stack.learners:
        inits.append(_const("ann_shape", [-1, 1], np.int64))
    if logit and {"ann", "rf"} & set(stack.learners):
        inits += [
            _const("logit_eps", LOGIT_EPS, np.float64),
            _const("logit_one_minus_eps", 1.0 - LOGIT_EPS, np.float64),
            _const("one", 1.0, np.float64),
        ]
    if tree_form == "classifier3" and {"rf", "xgb"} & set(stack.learners):
        inits.append(_const("column_1", [1], np.int64))
    columns = []
    for name in stack.learners:
        prefix = f"{name}/"
        column = f"{prefix}column"
        if name == "logistic":
            nodes_, inits_ = _linear_score(stack, clipped, column, logit)
            nodes += nodes_
            inits += inits_
            columns.append(column)
            continue
        if name == "ann":
            sub, source = ann, ann_source
        else:
            model = stack.rf if name == "rf" else stack.xgb
            source, width_in = clipped, width
            if name == "xgb" and stack.genre_encoding is not None:
                source, width_in = "xgb/input", stack.n_numeric + 1
                nodes_, inits_ = genre_block.encoded_input_nodes(
                    stack.genre_encoding, source, "xgb/"
                )
                nodes += nodes_
                inits += inits_
            sub = _tree_graph(model, width_in)
        sub_nodes, sub_inits, output, sub_opsets = _embed(sub, prefix, source)
        if name == "ann" and stack.genre_vocabulary is not None:
            genre_block.split_first_layer(sub_nodes, sub_inits, source, stack.n_numeric)
        p = f"{prefix}p"
        if name == "ann":
            sub_nodes.append(helper.make_node("Reshape", [output, "ann_shape"], [p]))
        elif tree_form == "classifier3":  # probability of class 1, kept 2-D: [N, 1]
            sub_nodes.append(helper.make_node("Gather", [output, "column_1"], [p], axis=1))
        else:
            sub_nodes, sub_inits = _single_score(sub_nodes, tree_form, source, p, prefix)
            sub_opsets["ai.onnx.ml"] = ML_OPSET[tree_form]
        if logit and name == "xgb":
            # The margin before XGBoost's Sigmoid is its logit, exactly as the native
            # stack reads it (predict(output_margin=True)).
            if tree_form == "classifier3":
                raise ValueError("a stack on logits needs the regressor3 or ensemble5 tree form")
            (sigmoid,) = [n for n in sub_nodes if n.op_type == "Sigmoid" and n.output[0] == p]
            sub_nodes.remove(sigmoid)
            sub_nodes.append(helper.make_node("Cast", [sigmoid.input[0]], [column], to=DOUBLE))
        elif logit:
            sub_nodes += _logit_nodes(p, column, prefix)
        else:
            sub_nodes.append(helper.make_node("Cast", [p], [column], to=DOUBLE))
        nodes += sub_nodes
        inits += sub_inits
        for domain, version in sub_opsets.items():
            opsets[domain] = max(opsets.get(domain, 0), version)
        columns.append(column)

    n_base = len(stack.learners)
    inits += [
        _const("meta_coef", np.asarray(stack.meta_coef).reshape(n_base, 1), np.float64),
        _const("meta_intercept", [stack.meta_intercept], np.float64),
        _const("threshold", stack.threshold, np.float64),
        _const("flat", [-1], np.int64),
    ]
    nodes += [
        # The native meta learner computes in float64; so does the graph, so labels
        # at the threshold agree.
        helper.make_node("Concat", columns, ["base64"], axis=1),
        helper.make_node("MatMul", ["base64", "meta_coef"], ["z0"]),
        helper.make_node("Add", ["z0", "meta_intercept"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["p64_2d"]),
        helper.make_node("Reshape", ["p64_2d", "flat"], ["p64"]),
        helper.make_node("Cast", ["p64"], [PROBABILITY], to=TensorProto.FLOAT),
        helper.make_node("GreaterOrEqual", ["p64", "threshold"], ["popular"]),
        helper.make_node("Cast", ["popular"], [LABEL], to=TensorProto.INT64),
    ]
    graph = helper.make_graph(
        nodes,
        "popbatch_stack",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", width])],
        [
            helper.make_tensor_value_info(PROBABILITY, TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info(LABEL, TensorProto.INT64, ["N"]),
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
        producer_name="popbatch",
    )
    model.ir_version = 8  # onnxruntime 1.31 reads IR 10; 8 keeps older runtimes working
    onnx.checker.check_model(model, full_check=True)
    return model
