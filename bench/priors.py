"""What the catalog priors lookup costs per row, and what the in-graph design would.

Two ways to turn a batch's album names into prior inputs, timed on the same rows
(CPU seconds, so other jobs on the machine count less):

- ``scorer``: what ``popbatch score`` does (``batch/priors.py``): dictionary-encode
  the column, normalise and split the distinct cells, join them against the
  table, combine, gather by row; for every prior column of the model (artists
  split on ';' and album), all its statistics.
- ``graph``: the issue's in-graph alternative for the one column it can handle
  without splitting text: ``ai.onnx.ml`` ``CategoryMapper`` (string -> index) and
  a ``Gather`` of the precomputed album inputs, in onnxruntime, on album names
  already normalised (the graph has no NFKC; ``StringNormalizer`` only folds case).

    python bench/priors.py MODEL_DIR CATALOG.csv --rows 65536
    python bench/priors.py MODEL_DIR CATALOG.csv --quick   # 1,024 rows, a blink each

Prints one JSON line: microseconds of CPU per row for each, the rows, the distinct
albums and artists in them, and the load average.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from popbatch.batch.priors import lookup_for  # noqa: E402

from bench import model_catalog_parser  # noqa: E402
from popbatch.core.bundle import load_model  # noqa: E402
from popbatch.core.priors import key_pairs  # noqa: E402


def cpu_per_row(run, rows: int, seconds: float) -> float:
    run()  # warm up
    runs, started, cpu = 0, time.perf_counter(), time.process_time()
    while runs < 3 or time.perf_counter() - started < seconds:
        run()
        runs += 1
    return (time.process_time() - cpu) / runs / rows * 1e6


def album_graph(lookup, column: str = "album_name"):
    """CategoryMapper + Gather over the album keys' precomputed inputs (count, mean)."""
    from onnx import TensorProto, helper, numpy_helper

    table = lookup.columns[column]
    keys = table.keys["key"].to_list()
    values = np.stack([np.log1p(table.n), table.sum / np.maximum(table.n, 1)], axis=1)
    mapper = helper.make_node(
        "CategoryMapper", ["album"], ["index"], domain="ai.onnx.ml",
        cats_strings=keys, cats_int64s=list(range(len(keys))), default_int64=len(keys),
    )  # fmt: skip
    gather = helper.make_node("Gather", ["values", "index"], ["inputs"], axis=0)
    graph = helper.make_graph(
        [mapper, gather],
        "album_lookup",
        [helper.make_tensor_value_info("album", TensorProto.STRING, ["N"])],
        [helper.make_tensor_value_info("inputs", TensorProto.FLOAT, ["N", 2])],
        initializer=[numpy_helper.from_array(values.astype(np.float32), "values")],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    model.ir_version = 8  # what onnxruntime 1.31 reads (popbatch's graphs say the same)
    return model.SerializeToString()


def main(argv: list[str] | None = None) -> None:
    parser = model_catalog_parser(__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=65_536)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.seconds = 1_024, 0.05
    bundle = load_model(args.model)
    lookup = lookup_for(bundle.manifest)
    if lookup is None:
        raise SystemExit(f"{args.model}: the model has no catalog priors")
    frame = pl.read_csv(args.catalog, infer_schema=False)
    frame = pl.concat([frame] * (-(-args.rows // frame.height)))[: args.rows]
    cells = {c: frame[c].to_arrow() for c in lookup.spec.columns}
    scorer = cpu_per_row(lambda: lookup.features(cells, frame.height), frame.height, args.seconds)

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(album_graph(lookup), options, providers=["CPUExecutionProvider"])
    pairs = key_pairs(frame["album_name"], "album_name")["key"].fill_null("")
    albums = np.asarray(pairs.to_list(), dtype=object)
    graph = cpu_per_row(lambda: session.run(None, {"album": albums}), frame.height, args.seconds)
    only_album = cpu_per_row(
        lambda: lookup.column_features("album_name", cells["album_name"], frame.height),
        frame.height,
        args.seconds,
    )
    print(
        json.dumps(
            {
                "model": str(args.model),
                "catalog": str(args.catalog),
                "rows": frame.height,
                "distinct": {c: frame[c].n_unique() for c in lookup.spec.columns},
                "us_per_row_cpu": {
                    "scorer_all_prior_columns": round(scorer, 3),
                    "scorer_album_only": round(only_album, 3),
                    "graph_album_categorymapper_gather": round(graph, 3),
                },
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
