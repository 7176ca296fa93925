"""Issue 17's small levers, each an A/B in alternating rounds on the same batches.

Every lever here is measured against what ``popbatch score`` does today, with
popbatch's own pieces on real catalog rows, in CPU nanoseconds per row (the
machine is shared; alternating rounds slow both sides alike):

- ``genre``: each row's genre position by the text rules row by row (the
  polars expression) vs the rules on the column's distinct values, gathered
  (what ``Preprocessor`` does since issue 17);
- ``float32``: the CSV's number columns parsed from text straight to float32
  vs to float64 (what the range checks read), and how many values differ
  once both are float32;
- ``copy``: the feature matrix filled from one polars ``to_numpy`` of the
  numerics vs column by column;
- ``constants``: ``model_id`` and ``scored_at`` built per batch
  (``pa.repeat``) vs built once and sliced, through assembling and writing
  the Parquet output;
- ``forest``: the genre head's forest with one target per genre (as shipped)
  vs the same trees with one weight per leaf: what aggregating 114 targets
  costs inside onnxruntime's tree op;
- ``xgboost``: the popularity head's XGBoost trees as one op vs two ops of
  half the trees each (onnxruntime parallelises by tree above 80 trees), and
  called with 128, 1,024 or 4,096 rows.

    python bench/levers.py catalog.parquet catalog.csv [--model DIR] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from popbatch.batch import batches as batches_module  # noqa: E402
from popbatch.batch import preprocess  # noqa: E402
from popbatch.batch.batches import BatchScorer  # noqa: E402
from popbatch.batch.preprocess import FeatureBuffer, Preprocessor  # noqa: E402
from popbatch.batch.runner import OnnxScorer  # noqa: E402
from popbatch.batch.sinks import open_sink  # noqa: E402
from popbatch.batch.sources import open_source  # noqa: E402

from popbatch.core.bundle import load_model  # noqa: E402

BATCH = 32_768


def read(catalog: Path, preprocessor_of: Callable, batches: int) -> tuple[Preprocessor, list]:
    source = open_source([catalog])
    preprocessor = preprocessor_of(source)
    out = []
    for batch in source.batches(preprocessor.read_columns, BATCH):
        out.append(batch)
        if len(out) == batches:
            break
    source.close()
    return preprocessor, out


def ns_per_row(work: Callable, items: list, rows: int) -> float:
    start = time.process_time()
    for item in items:
        work(item)
    return (time.process_time() - start) / rows * 1e9


def ab(name: str, *variants: tuple[str, Callable], items, rows, rounds) -> None:
    """Each (label, work) variant over ``items``, in alternating rounds; prints ns per row."""
    times: dict[str, list[float]] = {label: [] for label, _ in variants}
    for _ in range(rounds):
        for label, work in variants:
            times[label].append(ns_per_row(work, items, rows))
    text = "  ".join(f"{k}: {' / '.join(f'{t:.0f}' for t in v)}" for k, v in times.items())
    print(f"{name:<10} {text}  ns per row")


def genre_lever(preprocessor: Preprocessor, items: list, rows: int, rounds: int) -> None:
    buffer = FeatureBuffer(BATCH, preprocessor.width)
    by_value = preprocessor._genre_positions_of

    def row_by_row(batch):
        preprocessor._genre_positions_of = lambda _: preprocessor._genre_position()
        preprocessor.transform(batch, 1, buffer)

    def distinct(batch):
        preprocessor._genre_positions_of = by_value
        preprocessor.transform(batch, 1, buffer)

    variants = ("row by row", row_by_row), ("distinct values", distinct)
    ab("genre", *variants, items=items, rows=rows, rounds=rounds)
    preprocessor._genre_positions_of = by_value


def float32_lever(preprocessor: Preprocessor, items: list, rows: int, rounds: int) -> None:
    columns = [n.column for n in preprocessor.numeric if n.column != "explicit"]

    def parse(target):
        return lambda batch: [pc.cast(batch.column(c), target) for c in columns]

    variants = ("text->f64", parse(pa.float64())), ("text->f32", parse(pa.float32()))
    ab("float32", *variants, items=items, rows=rows, rounds=rounds)
    differ = sum(
        int(
            (
                pc.cast(b.column(c), pa.float32()).to_numpy(zero_copy_only=False)
                != pc.cast(pc.cast(b.column(c), pa.float64()), pa.float32()).to_numpy(
                    zero_copy_only=False
                )
            ).sum()
        )
        for b in items
        for c in columns
    )
    print(f"{'':<10} values that differ as float32: {differ:,} of {rows * len(columns):,}")


def copy_lever(preprocessor: Preprocessor, items: list, rows: int, rounds: int) -> None:
    buffer = FeatureBuffer(BATCH, preprocessor.width)
    whole = Preprocessor._matrix

    def per_column(self, table, buffer):  # Preprocessor._matrix, the numerics one by one
        out = buffer.take(table.height)
        positions = None
        if self.genre_column:
            positions = table[preprocess._GENRE_POS].to_numpy()
            buffer.set_hot(np.arange(table.height), positions)
        for spec in self.numeric:
            out[:, spec.position] = table[spec.column].to_numpy()
        return out, positions

    def run(matrix):
        def work(batch):
            Preprocessor._matrix = matrix
            preprocessor.transform(batch, 1, buffer)

        return work

    reference = preprocessor.transform(items[0], 1, buffer).features.copy()
    run(per_column)(items[0])
    same = np.array_equal(reference, preprocessor.transform(items[0], 1, buffer).features)
    variants = ("to_numpy", run(whole)), ("per column", run(per_column))
    ab("copy", *variants, items=items, rows=rows, rounds=rounds)
    print(f"{'':<10} same matrix: {same}")
    Preprocessor._matrix = whole


def constants_lever(model: Path | None, catalog: Path, rounds: int) -> None:
    bundle = load_model(model)
    preprocessor, items = read(
        catalog, lambda s: Preprocessor(bundle.manifest).bind(s.schema, s.name), 15
    )
    scorer = OnnxScorer(bundle, 2)
    scoring = BatchScorer(preprocessor, scorer, datetime.now(UTC))
    scored = []
    for batch in items:
        prepared, hashes = scoring.prepare(batch, 1)
        scored.append((prepared, hashes, *scoring.predict(prepared)))
    scorer.close()
    rows = sum(len(s[1]) for s in scored)
    per_batch = pa.repeat
    cache: dict = {}

    def once(value, n):
        key = (str(value.type), value.as_py())
        if key not in cache or len(cache[key]) < n:
            cache[key] = per_batch(value, n)
        return cache[key].slice(0, n)

    def write(repeat):
        def work(_):
            batches_module.pa.repeat = repeat
            with tempfile.TemporaryDirectory() as tmp:
                sink = open_sink(Path(tmp) / "scored.parquet", key=preprocessor.key)
                sink.open(scoring.schema, preprocessor.by_final)
                for item in scored:
                    sink.write(scoring.assemble(*item))
                sink.finish()
                sink.commit()
            batches_module.pa.repeat = per_batch

        return work

    variants = ("per batch", write(per_batch)), ("once", write(once))
    ab("constants", *variants, items=[None], rows=rows, rounds=rounds)


def _tree_session(attrs: dict[str, Any], width: int):
    """A one-op model: a TreeEnsembleRegressor with ``attrs``, on one onnxruntime thread."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    targets = attrs.get("n_targets", 1)
    op = helper.make_node("TreeEnsembleRegressor", ["x"], ["y"], domain="ai.onnx.ml", **attrs)
    model = helper.make_model(
        helper.make_graph(
            [op],
            "trees",
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", width])],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", targets])],
        ),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
    )
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options)


def _only_trees(attrs: dict[str, Any], trees: set[int]) -> dict[str, Any]:
    """``attrs`` with the nodes and leaf weights of ``trees`` only."""
    nodes = [i for i, t in enumerate(attrs["nodes_treeids"]) if t in trees]
    leaves = [i for i, t in enumerate(attrs["target_treeids"]) if t in trees]
    out = dict(attrs)
    for name, value in attrs.items():
        if name.startswith("nodes_") and isinstance(value, list):
            out[name] = [value[i] for i in nodes]
        elif name.startswith("target_"):
            out[name] = [value[i] for i in leaves]
    return out


def forest_lever(model: Path | None, catalog: Path, rounds: int) -> None:
    import onnx
    from popbatch.exporter.trees import attributes

    bundle = load_model(model)
    if "genre" not in bundle.head_bytes:
        print("forest     the model has no genre head")
        return
    preprocessor, items = read(
        catalog, lambda s: Preprocessor(bundle.manifest).bind(s.schema, s.name), 2
    )
    x = np.concatenate([preprocessor.transform(b, 1).features for b in items])
    graph = onnx.load_from_string(bundle.head_bytes["genre"]).graph
    trees = [n for n in graph.node if n.op_type == "TreeEnsembleRegressor"]
    if not trees:
        print("forest     the genre head has no forest")
        return
    attrs = attributes(trees[0])
    width = max(attrs["nodes_featureids"]) + 1
    x = np.ascontiguousarray(x[:, :width])
    first: dict[tuple[int, int], float] = {}
    for tree, node, weight in zip(
        attrs["target_treeids"], attrs["target_nodeids"], attrs["target_weights"], strict=True
    ):
        first.setdefault((tree, node), weight)

    def session(targets: int, leaves: dict | None):
        spec = {k: v for k, v in attrs.items() if k.startswith("nodes_")}
        if leaves is None:
            spec.update({k: attrs[k] for k in attrs if k.startswith("target_")})
        else:
            spec["target_treeids"] = [t for t, _ in leaves]
            spec["target_nodeids"] = [n for _, n in leaves]
            spec["target_ids"] = [0] * len(leaves)
            spec["target_weights"] = list(leaves.values())
        return _tree_session({**spec, "n_targets": targets}, width)

    shipped = session(attrs["n_targets"], None)
    single = session(1, first)
    slices = [x[at : at + OnnxScorer.CHUNK_ROWS] for at in range(0, len(x), OnnxScorer.CHUNK_ROWS)]

    def run(s):
        return lambda rows: s.run(None, {"x": rows})

    variants = (f"{attrs['n_targets']} targets", run(shipped)), ("1 weight per leaf", run(single))
    ab("forest", *variants, items=slices * 8, rows=len(x) * 8, rounds=rounds)


def xgboost_lever(model: Path | None, catalog: Path, rounds: int) -> None:
    import onnx
    from popbatch.exporter.trees import attributes

    bundle = load_model(model)
    if "popularity" not in bundle.head_bytes:
        print("xgboost    the model has no popularity head")
        return
    graph = onnx.load_from_string(bundle.head_bytes["popularity"]).graph
    found = [n for n in graph.node if n.name == "xgb/TreeEnsembleRegressor"]
    if not found:
        print("xgboost    the popularity head has no XGBoost trees")
        return
    (node,) = found
    attrs = attributes(node)
    width = max(attrs["nodes_featureids"]) + 1
    # real numerics, and any value in the encoded-genre column: the walk's cost is the point
    preprocessor, items = read(
        catalog, lambda s: Preprocessor(bundle.manifest).bind(s.schema, s.name), 2
    )
    x = np.concatenate([preprocessor.transform(b, 1).features for b in items])
    x = np.ascontiguousarray(x[:, :width])
    trees = sorted(set(attrs["nodes_treeids"]))
    half = len(trees) // 2
    whole = _tree_session(attrs, width)
    first = _tree_session(_only_trees(attrs, set(trees[:half])), width)
    second = _tree_session(_only_trees(attrs, set(trees[half:])), width)

    def calls(rows: int, sessions: list) -> Callable:
        def work(_):
            for at in range(0, len(x), rows):
                for s in sessions:
                    s.run(None, {"x": x[at : at + rows]})

        return work

    print(f"{'xgboost':<10} {len(trees)} trees, {len(attrs['nodes_treeids']):,} nodes")
    variants = (
        ("one op, 128 rows", calls(128, [whole])),
        ("one op, 1,024", calls(1_024, [whole])),
        ("one op, 4,096", calls(4_096, [whole])),
        ("two ops, 1,024", calls(1_024, [first, second])),
    )
    ab("", *variants, items=[None], rows=len(x), rounds=rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parquet", type=Path, help="a Parquet catalog (bench/catalog.py)")
    parser.add_argument("csv", type=Path, help="the same catalog as CSV")
    parser.add_argument("--model", type=Path, help="model directory (default: the embedded)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bundle = load_model(args.model)

    def bound(source):
        return Preprocessor(bundle.manifest).bind(source.schema, source.name)

    preprocessor, items = read(args.parquet, bound, 15)
    rows = sum(b.num_rows for b in items)
    print(f"{rows:,} rows of {args.parquet.name} in batches of {BATCH:,}; CPU ns per row")
    genre_lever(preprocessor, items, rows, args.rounds)
    copy_lever(preprocessor, items, rows, args.rounds)
    csv_preprocessor, csv_items = read(args.csv, bound, 10)
    float32_lever(csv_preprocessor, csv_items, sum(b.num_rows for b in csv_items), args.rounds)
    constants_lever(args.model, args.parquet, args.rounds)
    forest_lever(args.model, args.parquet, args.rounds)
    xgboost_lever(args.model, args.parquet, args.rounds)


if __name__ == "__main__":
    main()
