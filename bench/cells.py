"""What the genre head would cost reading its genre shares per distinct cell, not per row.

The next lever of docs/performance.md, measured before it is built. Today each row of
the feature matrix carries its artist's and album's smoothed genre shares (228 of the
default model's 363 inputs), gathered row by row by the preprocessor, and the genre
head slices them back out. This script rewrites the shipped genre head so that each
such ``Slice`` of the input (and the ``Mul`` by a constant that follows it) becomes a
``Gather`` from a per-batch table of the column's distinct cells, indexed by each row's
cell: the same arithmetic, so the same outputs bit for bit (checked). Then, in
alternating rounds over the same batches, both sides run as ``popbatch score`` would:
A preprocesses the full matrix and runs the shipped genre head; B leaves the genre
shares out of the matrix and runs the rewritten head on the per-cell tables. Prints
one JSON line: microseconds of CPU per row, preprocessing and genre inference, each
side's best round. Needs ``onnx`` (the test extra) and a model with genre shares.

    python bench/cells.py --catalog bench/out/catalogs/catalog_1000000_seed0.parquet
    python bench/cells.py --catalog batch/sample/catalog.csv --quick
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from popbatch.batch.preprocess import FeatureBuffer, Preprocessor  # noqa: E402
from popbatch.batch.runner import single_thread_session  # noqa: E402
from popbatch.batch.sources import open_source  # noqa: E402

from bench import QUICK_HELP  # noqa: E402
from popbatch.core.bundle import load_model  # noqa: E402

SLICE_ROWS = 1_024  # batch.runner.OnnxScorer.CHUNK_ROWS
OUTPUTS = ["genre_index", "genre_prob"]


def share_blocks(manifest: dict) -> dict[str, tuple[int, int]]:
    """``{prior column: (first, stop)}`` input positions of each column's genre shares."""
    blocks: dict[str, list[int]] = {}
    for position, feature in enumerate(manifest["features"]):
        column, _, statistic = feature["name"].partition(":")
        if feature["kind"] == "prior" and statistic.startswith("log_genre="):
            blocks.setdefault(column, []).append(position)
    return {c: (p[0], p[-1] + 1) for c, p in blocks.items()}


def per_cell_graph(data: bytes, blocks: dict[str, tuple[int, int]]) -> tuple[bytes, int]:
    """The genre head with each genre-share ``Slice`` of ``features`` (and a ``Mul`` by an
    initializer after it) turned into a ``Gather`` from ``COLUMN/shares`` [cells, G] by
    ``COLUMN/cell`` [rows]; and the width of the ``features`` it still reads."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(data)
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    by_block = {v: k for k, v in blocks.items()}
    sliced: dict[str, str] = {}  # slice output -> column
    kept, narrow = [], min(first for first, _ in blocks.values())
    for node in graph.node:
        if node.op_type == "Slice" and node.input[0] == "features":
            span = (int(constants[node.input[1]][0]), int(constants[node.input[2]][0]))
            if span in by_block:
                sliced[node.output[0]] = by_block[span]
                continue
            if span[1] > narrow:
                sys.exit(f"a Slice reads inputs {span}, past the row inputs: cannot rewrite")
        kept.append(node)
    nodes = []
    for node in kept:
        if node.op_type == "Mul" and node.input[0] in sliced and node.input[1] in constants:
            column = sliced.pop(node.input[0])
            scaled = f"{column}/scaled"
            nodes.append(helper.make_node("Mul", [f"{column}/shares", node.input[1]], [scaled]))
            nodes.append(
                helper.make_node("Gather", [scaled, f"{column}/cell"], node.output, axis=0)
            )
        else:
            nodes.append(node)
    for output, column in sliced.items():  # a slice read as it is
        nodes.insert(
            0, helper.make_node("Gather", [f"{column}/shares", f"{column}/cell"], [output], axis=0)
        )
    del graph.node[:]
    graph.node.extend(nodes)
    graph.input[0].type.tensor_type.shape.dim[1].dim_value = narrow
    for column, (first, stop) in blocks.items():
        graph.input.append(
            helper.make_tensor_value_info(f"{column}/cell", TensorProto.INT64, ["N"])
        )
        graph.input.append(
            helper.make_tensor_value_info(
                f"{column}/shares", TensorProto.FLOAT, [f"{column}_cells", stop - first]
            )
        )
    return model.SerializeToString(), narrow


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model directory (default: the embedded)")
    parser.add_argument("--catalog", type=Path, required=True, help="a catalog popbatch reads")
    parser.add_argument("--batches", type=int, default=16, help="32,768-row batches a round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP + "; one round")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.rounds = 1, 1
    bundle = load_model(args.model)
    blocks = share_blocks(bundle.manifest)
    if not blocks or "genre" not in bundle.head_bytes:
        sys.exit("the model has no genre head reading catalog priors' genre shares")
    rewritten, narrow = per_cell_graph(bundle.head_bytes["genre"], blocks)
    shipped = single_thread_session(bundle.head_bytes["genre"], "shipped genre head")
    cells = single_thread_session(rewritten, "per-cell genre head")
    source = open_source(args.catalog)
    batches = []
    for batch in source.batches(None, 32_768):
        batches.append(batch)
        if len(batches) == args.batches:
            break
    rows = sum(b.num_rows for b in batches)

    def full() -> tuple[float, float, list[np.ndarray]]:
        pre = Preprocessor(bundle.manifest).bind(source.schema, source.name)
        buffer = FeatureBuffer(32_768, pre.width)
        spent, outputs = [0.0, 0.0], []
        for batch in batches:
            start = time.process_time()
            x = pre.transform(batch, 1, buffer).features
            middle = time.process_time()
            out = [
                shipped.run(OUTPUTS, {"features": x[i : i + SLICE_ROWS]})
                for i in range(0, len(x), SLICE_ROWS)
            ]
            spent[0] += middle - start
            spent[1] += time.process_time() - middle
            outputs.append(np.concatenate([o[1] for o in out]))
        return spent[0], spent[1], outputs

    def per_cell() -> tuple[float, float, list[np.ndarray]]:
        pre = Preprocessor(bundle.manifest).bind(source.schema, source.name)
        pre.leave_out_genre_shares()
        buffer = FeatureBuffer(32_768, pre.width)
        spent, outputs = [0.0, 0.0], []
        lookup = pre.priors
        for batch in batches:
            start = time.process_time()
            x = pre.transform(batch, 1, buffer).features
            # the per-cell tables the preprocessor would hand over (private API: a sketch
            # of the design, computed once more here, so B's preprocessing is an upper bound)
            feeds = {}
            for column, (first, _) in blocks.items():
                names = lookup.spec.feature_names()
                offset = [n for n in names if n.startswith(f"{column}:")].index(
                    bundle.manifest["features"][first]["name"]
                )
                values = pre._prior_cells(batch, None)[column]
                table, index = lookup._per_cell(column, values, len(x), pre._prior_cache)
                feeds[f"{column}/shares"] = np.ascontiguousarray(table[:, offset:])
                feeds[f"{column}/cell"] = index.astype(np.int64)
            narrow_x = np.ascontiguousarray(x[:, :narrow])
            middle = time.process_time()
            out = []
            for i in range(0, len(x), SLICE_ROWS):
                feed = {"features": narrow_x[i : i + SLICE_ROWS]}
                for column in blocks:
                    feed[f"{column}/cell"] = feeds[f"{column}/cell"][i : i + SLICE_ROWS]
                    feed[f"{column}/shares"] = feeds[f"{column}/shares"]
                out.append(cells.run(OUTPUTS, feed))
            spent[0] += middle - start
            spent[1] += time.process_time() - middle
            outputs.append(np.concatenate([o[1] for o in out]))
        return spent[0], spent[1], outputs

    best = {"full": [np.inf, np.inf], "per_cell": [np.inf, np.inf]}
    identical = True
    for _ in range(args.rounds):
        a, b = full(), per_cell()
        for side, result in (("full", a), ("per_cell", b)):
            best[side] = [min(best[side][0], result[0]), min(best[side][1], result[1])]
        identical &= all(np.array_equal(x, y) for x, y in zip(a[2], b[2], strict=True))
    us = {
        side: {
            "preprocess": round(p / rows * 1e6, 3),
            "genre_inference": round(g / rows * 1e6, 3),
        }
        for side, (p, g) in best.items()
    }
    print(
        json.dumps(
            {
                "command": "python bench/cells.py " + " ".join(argv or sys.argv[1:]),
                "model_id": bundle.model_id,
                "rows": rows,
                "rounds": args.rounds,
                "row_inputs": narrow,
                "us_per_row_cpu": us,
                "genre_prob_identical": bool(identical),
            }
        )
    )


if __name__ == "__main__":
    main()
