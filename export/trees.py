"""Binary tree-ensemble classifiers as one-score ONNX nodes.

skl2onnx and onnxmltools emit ``TreeEnsembleClassifier`` (ai.onnx.ml 3), which
computes a label and a [N, 2] probability matrix we then slice. The stack only
needs P(class 1) as [N, 1], so the same trees are re-emitted as:

- ``regressor3``: ``TreeEnsembleRegressor`` (ai.onnx.ml 3), one target,
  sum of leaf weights + base value, the classifier's post transform;
- ``ensemble5``: ``TreeEnsemble`` (ai.onnx.ml 5), one target, leaves held apart
  from the branch nodes; the base value and logistic are separate ops.

``bench/tree_sizes.py`` (removed; see git history) measured the three
(docs/performance.md, "Tree size and form").
"""

from __future__ import annotations

from typing import Any

import numpy as np

TREE_FORMS = ("classifier3", "regressor3", "ensemble5")
ML_OPSET = {"classifier3": 3, "regressor3": 3, "ensemble5": 5}
_MODES_V5 = {
    b"BRANCH_LEQ": 0,
    b"BRANCH_LT": 1,
    b"BRANCH_GTE": 2,
    b"BRANCH_GT": 3,
    b"BRANCH_EQ": 4,
    b"BRANCH_NEQ": 5,
}


def attributes(node) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _binary_checks(attrs: dict[str, Any]) -> None:
    labels = list(attrs.get("classlabels_int64s", []))
    if labels != [0, 1] or set(attrs["class_ids"]) != {0}:
        raise ValueError("only binary classifiers with one score per leaf are re-emitted")
    if attrs.get("post_transform", b"NONE") not in (b"NONE", b"LOGISTIC"):
        raise ValueError(f"unsupported post_transform {attrs['post_transform']!r}")


def score_nodes(node, form: str, source: str, output: str, prefix: str) -> tuple[list, list]:
    """Nodes and initializers computing P(class 1) [N, 1] of ``node`` into ``output``."""
    from onnx import helper, numpy_helper

    attrs = attributes(node)
    _binary_checks(attrs)
    base = float(attrs.get("base_values", [0.0])[0]) if attrs.get("base_values") else 0.0
    logistic = attrs.get("post_transform", b"NONE") == b"LOGISTIC"
    if form == "regressor3":
        keep = (
            "nodes_treeids",
            "nodes_nodeids",
            "nodes_featureids",
            "nodes_modes",
            "nodes_values",
            "nodes_truenodeids",
            "nodes_falsenodeids",
            "nodes_missing_value_tracks_true",
        )
        margin = f"{prefix}margin" if logistic else output
        regressor = helper.make_node(
            "TreeEnsembleRegressor",
            [source],
            [margin],
            domain="ai.onnx.ml",
            name=f"{prefix}TreeEnsembleRegressor",
            n_targets=1,
            aggregate_function="SUM",
            # onnxruntime's regressor ignores post_transform=LOGISTIC (measured: 6.65 off on
            # XGBoost), so the logistic is a separate Sigmoid.
            post_transform="NONE",
            base_values=[base],
            target_treeids=attrs["class_treeids"],
            target_nodeids=attrs["class_nodeids"],
            target_ids=[0] * len(attrs["class_ids"]),
            target_weights=attrs["class_weights"],
            **{k: attrs[k] for k in keep if k in attrs},
        )
        sigmoid = [helper.make_node("Sigmoid", [margin], [output])] if logistic else []
        return [regressor, *sigmoid], []
    if form != "ensemble5":
        raise ValueError(f"unknown tree form {form!r}")

    spec = _v5_arrays(attrs)
    raw = f"{prefix}score" if (base or logistic) else output
    nodes = [
        helper.make_node(
            "TreeEnsemble",
            [source],
            [raw],
            domain="ai.onnx.ml",
            name=f"{prefix}TreeEnsemble",
            n_targets=1,
            aggregate_function=1,  # SUM
            post_transform=0,  # NONE: base value first, then the logistic
            nodes_featureids=spec["featureids"],
            nodes_truenodeids=spec["true"],
            nodes_trueleafs=spec["trueleaf"],
            nodes_falsenodeids=spec["false"],
            nodes_falseleafs=spec["falseleaf"],
            nodes_missing_value_tracks_true=spec["missing"],
            leaf_targetids=[0] * len(spec["weights"]),
            tree_roots=spec["roots"],
            nodes_modes=numpy_helper.from_array(np.asarray(spec["modes"], np.uint8)),
            nodes_splits=numpy_helper.from_array(np.asarray(spec["splits"], np.float32)),
            leaf_weights=numpy_helper.from_array(np.asarray(spec["weights"], np.float32)),
        )
    ]
    inits = []
    current = raw
    if base:
        inits.append(numpy_helper.from_array(np.asarray([base], np.float32), f"{prefix}base"))
        current_next = f"{prefix}margin" if logistic else output
        nodes.append(helper.make_node("Add", [current, f"{prefix}base"], [current_next]))
        current = current_next
    if logistic:
        nodes.append(helper.make_node("Sigmoid", [current], [output]))
    return nodes, inits


def multiclass_as_regressor(node) -> Any:
    """A multi-class ``TreeEnsembleClassifier`` as a ``TreeEnsembleRegressor``, one
    target per class, writing the classifier's probability output.

    With no post transform the classifier's probabilities are the sums of the
    leaves' class weights, which is what the regressor computes, in the same
    tree order (identical floats); it skips the per-row label (an argmax over the
    classes nobody reads). Measured on the default genre forest (30 x depth 10,
    114 classes, 1 thread): 4.43 / 4.36 / 4.27 -> 4.32 / 4.14 / 4.13 µs per row
    for the head, three alternating rounds.
    """
    from onnx import helper

    attrs = attributes(node)
    if attrs.get("post_transform", b"NONE") != b"NONE" or attrs.get("base_values"):
        raise ValueError("only classifiers without a post transform or base values")
    keep = {k: v for k, v in attrs.items() if k.startswith("nodes_")}
    return helper.make_node(
        "TreeEnsembleRegressor",
        [node.input[0]],
        [node.output[1]],  # outputs: label, probabilities
        domain="ai.onnx.ml",
        name=node.name,
        n_targets=len(attrs.get("classlabels_int64s") or attrs["classlabels_strings"]),
        aggregate_function="SUM",
        post_transform="NONE",
        target_treeids=attrs["class_treeids"],
        target_nodeids=attrs["class_nodeids"],
        target_ids=attrs["class_ids"],
        target_weights=attrs["class_weights"],
        **keep,
    )


def _v5_arrays(attrs: dict[str, Any]) -> dict[str, list]:
    """Split the v3 node list into v5 branch nodes and leaves with global indices."""
    leaf_weight: dict[tuple[int, int], float] = {}
    for tree, node, weight in zip(
        attrs["class_treeids"], attrs["class_nodeids"], attrs["class_weights"], strict=True
    ):
        leaf_weight[(tree, node)] = leaf_weight.get((tree, node), 0.0) + weight
    missing = attrs.get("nodes_missing_value_tracks_true") or [0] * len(attrs["nodes_treeids"])
    rows = list(
        zip(
            attrs["nodes_treeids"],
            attrs["nodes_nodeids"],
            attrs["nodes_modes"],
            attrs["nodes_featureids"],
            attrs["nodes_values"],
            attrs["nodes_truenodeids"],
            attrs["nodes_falsenodeids"],
            missing,
            strict=True,
        )
    )
    branch_index: dict[tuple[int, int], int] = {}
    leaf_index: dict[tuple[int, int], int] = {}
    weights: list[float] = []
    for tree, node, mode, *_ in rows:
        if mode == b"LEAF":
            leaf_index[(tree, node)] = len(weights)
            weights.append(leaf_weight.get((tree, node), 0.0))
        else:
            branch_index[(tree, node)] = len(branch_index)
    keys = ("featureids", "true", "trueleaf", "false", "falseleaf", "missing", "modes", "splits")
    spec: dict[str, list] = {k: [] for k in keys}
    for tree, _node, mode, feature, value, true_id, false_id, tracks in rows:
        if mode == b"LEAF":
            continue
        spec["featureids"].append(feature)
        spec["modes"].append(_MODES_V5[mode])
        spec["splits"].append(value)
        spec["missing"].append(tracks)
        for side, child in (("true", true_id), ("false", false_id)):
            is_leaf = (tree, child) in leaf_index
            spec[side].append(leaf_index[(tree, child)] if is_leaf else branch_index[(tree, child)])
            spec[f"{side}leaf"].append(int(is_leaf))
    roots = []
    for tree in sorted({r[0] for r in rows}):
        root = min(node for t, node, *_ in rows if t == tree)
        if (tree, root) in branch_index:
            roots.append(branch_index[(tree, root)])
        else:  # a one-leaf tree: a branch whose both sides are that leaf
            roots.append(len(spec["featureids"]))
            leaf = leaf_index[(tree, root)]
            for key, value in (
                ("featureids", 0),
                ("modes", 0),
                ("splits", 0.0),
                ("missing", 0),
                ("true", leaf),
                ("trueleaf", 1),
                ("false", leaf),
                ("falseleaf", 1),
            ):
                spec[key].append(value)
    spec["roots"] = roots
    spec["weights"] = weights
    return spec
