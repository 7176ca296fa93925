"""What the genre head's forest costs: its ONNX graph as trained against network only.

Exports the genre head of a trained run twice, as trained (the validation
split's ``ann_weight``) and with ``ann_weight`` 1.0 (the exporter then leaves
the forest out), and times each on one onnxruntime thread over real rows of
the catalog, preprocessed as ``popbatch score`` does, in 1,024-row calls as
the scorer makes them. Rows per CPU second, two alternating rounds.

    python bench/genre_cost.py RUN_DIR batch/sample/catalog.csv [MODEL_DIR]

MODEL_DIR (default RUN_DIR/model) is the exported model whose preprocessing
builds the rows.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from popbatch.exporter.heads import genre_graph  # noqa: E402
from popbatch.models.genre import GenreHead  # noqa: E402

from bench.bare import catalog_matrix  # noqa: E402
from popbatch.core.bundle import load_model  # noqa: E402

CALL_ROWS = 1_024
SECONDS = 3.0


def rows_per_cpu_second(model, x) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options)
    session.run(None, {"features": x[:CALL_ROWS]})
    start, rows = time.process_time(), 0
    while time.process_time() - start < SECONDS:
        for i in range(0, len(x), CALL_ROWS):
            session.run(None, {"features": x[i : i + CALL_ROWS]})
            rows += CALL_ROWS
    return rows / (time.process_time() - start)


def main() -> None:
    run, catalog = Path(sys.argv[1]), Path(sys.argv[2])
    head = GenreHead.load(run / "stack" / "genre")
    model_dir = Path(sys.argv[3]) if len(sys.argv) > 3 else run / "model"
    x = catalog_matrix(load_model(model_dir), catalog, 65_536)
    trained = head.ann_weight
    for round_ in (1, 2):
        for weight in (trained, 1.0):
            head.ann_weight = weight
            rate = rows_per_cpu_second(genre_graph(head, x.shape[1]), x)
            print(f"round {round_}: ann_weight {weight}: {rate:,.0f} rows per CPU second")


if __name__ == "__main__":
    main()
