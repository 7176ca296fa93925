"""The one toolkit every exported graph is built with.

- :data:`OPSETS`: the opsets popbatch's graphs import and asks the converters for;
- :func:`convert_network` (Keras, through tf2onnx) and :func:`convert_estimator`
  (scikit-learn and XGBoost, through skl2onnx and onnxmltools): a fitted learner
  as an ONNX model reading ``x`` [N, width];
- :class:`GraphBuilder`: collects the nodes, constants and opsets of one graph,
  embeds converted sub-models under a prefix, and makes the checked model.

``model.onnx`` (:mod:`popbatch.exporter.graph`) and the head files
(:mod:`popbatch.exporter.heads`) are both built with it. The converters are
imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

OPSET = 17
#: domain -> version of every graph popbatch writes, and what the converters emit
#: (the tree forms of export/trees.py may raise ``ai.onnx.ml``)
OPSETS = {"": OPSET, "ai.onnx.ml": 3}
DOUBLE = 11  # onnx.TensorProto.DOUBLE, without importing onnx at module load
IR_VERSION = 8  # onnxruntime 1.31 reads IR 10; 8 keeps older runtimes working


def const(name: str, value: Any, dtype: Any) -> Any:
    """An initializer ``name`` holding ``value`` as a ``dtype`` array."""
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(value, dtype), name)


def opsets(model: Any, default_domain: str = "") -> dict[str, int]:
    """The opsets a model imports: domain -> version, the default domain named
    ``default_domain`` (``""`` inside a graph, ``"ai.onnx"`` in the manifest)."""
    return {o.domain or default_domain: o.version for o in model.opset_import}


def convert_network(network: Any, width: int) -> Any:
    """A Keras network as an ONNX model with input ``x`` [N, width] and its one output."""
    import tensorflow as tf
    import tf2onnx

    signature = [tf.TensorSpec([None, width], tf.float32, name="x")]

    @tf.function(input_signature=signature)
    def forward(x):
        # training=False: Dropout is the identity, as in predict().
        return network(x, training=False)

    model, _ = tf2onnx.convert.from_function(forward, input_signature=signature, opset=OPSET)
    return model


def register_xgboost() -> None:
    """Let skl2onnx convert XGBClassifier and XGBRegressor with onnxmltools' converter
    (which accepts opset 17)."""
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from xgboost import XGBClassifier, XGBRegressor

    update_registered_converter(
        XGBClassifier,
        "XGBoostXGBClassifier",
        calculate_linear_classifier_output_shapes,
        convert_xgboost,
        options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
    )
    update_registered_converter(
        XGBRegressor,
        "XGBoostXGBRegressor",
        calculate_linear_regressor_output_shapes,
        convert_xgboost,
    )


def convert_estimator(estimator: Any, width: int) -> Any:
    """A RandomForest or XGBoost model as ONNX with input ``x`` [N, width]: a classifier's
    outputs are its label and ``probabilities`` [N, classes] (no zipmap), a regressor's
    its prediction."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    register_xgboost()
    options = {id(estimator): {"zipmap": False}} if hasattr(estimator, "classes_") else None
    return convert_sklearn(
        estimator,
        initial_types=[("x", FloatTensorType([None, width]))],
        options=options,
        target_opset=dict(OPSETS),
    )


def fold_scaler(model: Any, mean: Any, scale: Any) -> bool:
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


def prefixed(sub: Any, prefix: str, new_input: str) -> tuple[list, list, str, dict[str, int]]:
    """Prefix a converted sub-model's names and wire its single input to ``new_input``.

    ``onnx.compose.merge_models`` joins models output-to-input only; a graph that
    feeds one tensor to several sub-models assembles them with this instead.
    Returns its nodes, its initializers, the (prefixed) name of the output to use
    (the only output of a network, or ``probabilities`` of a classifier) and its
    opsets.
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
    return nodes, list(graph.initializer), output, opsets(sub)


class GraphBuilder:
    """Collects the nodes, initializers and opsets of one graph reading ``features``
    float32 [N, width], in the order they are added."""

    def __init__(self, width: int, input_name: str = "features") -> None:
        self.width = width
        self.input_name = input_name
        self.nodes: list = []
        self.inits: list = []
        self.opsets: dict[str, int] = {"": OPSET}

    def const(self, name: str, value: Any, dtype: Any) -> str:
        """Add an initializer; returns its name."""
        self.inits.append(const(name, value, dtype))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        """Add one node with one output; returns the output's name."""
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def add(self, nodes: list, inits: list) -> None:
        """Add nodes and initializers made elsewhere (export/genre_block.py, export/trees.py)."""
        self.nodes += nodes
        self.inits += inits

    def use_opsets(self, used: dict[str, int]) -> None:
        """Import at least these opset versions."""
        for domain, version in used.items():
            self.opsets[domain] = max(self.opsets.get(domain, 0), version)

    def clip(self, source: str, lower: list, upper: list) -> str:
        """``Min(Max(source, lower), upper)``, each side skipped when unbounded; returns
        the clipped tensor's name (``source`` when both are)."""
        if any(v is not None for v in lower):
            low = [np.finfo(np.float32).min if v is None else v for v in lower]
            source = self.node(
                "Max", [source, self.const("clip_lower", low, np.float32)], "clipped_low"
            )
        if any(v is not None for v in upper):
            up = [np.finfo(np.float32).max if v is None else v for v in upper]
            source = self.node("Min", [source, self.const("clip_upper", up, np.float32)], "clipped")
        return source

    def embed(self, sub: Any, prefix: str, source: str) -> str:
        """Add a converted sub-model reading ``source``; returns its output's name."""
        nodes, inits, output, used = prefixed(sub, prefix, source)
        self.add(nodes, inits)
        self.use_opsets(used)
        return output

    def network(self, ann: Any, width: int, mean: Any, scale: Any, source: str, prefix: str) -> str:
        """The Keras network, its scaler folded into the first layer (or explicit nodes);
        returns its output's name."""
        model = convert_network(ann, width)
        if not fold_scaler(model, mean, scale):
            centred = self.node(
                "Sub", [source, self.const(f"{prefix}mean", mean, np.float32)], f"{prefix}centred"
            )
            source = self.node(
                "Div", [centred, self.const(f"{prefix}scale", scale, np.float32)], f"{prefix}scaled"
            )
        return self.embed(model, prefix, source)

    def model(self, name: str, outputs: list[tuple[str, int]]) -> Any:
        """The checked ``onnx.ModelProto`` of everything added, with these [N] outputs."""
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info(self.input_name, TensorProto.FLOAT, ["N", self.width])],
            [helper.make_tensor_value_info(n, t, ["N"]) for n, t in outputs],
            initializer=self.inits,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(self.opsets.items())],
            producer_name="popbatch",
        )
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model, full_check=True)
        return model
