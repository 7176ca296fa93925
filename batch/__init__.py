"""popbatch scoring: sources, polars preprocessing, onnxruntime inference, sinks.

This package is the scoring path. It must never import TensorFlow,
scikit-learn or xgboost: a scoring install has none of them.
"""

import os

__version__ = "0.1.0"

# Arrow's allocator (mimalloc) keeps freed pages a while before returning them;
# with a new batch every few milliseconds that retention added ~100 MB of peak
# RSS (6M rows Parquet -> Parquet, 2 cores: default ~740 MB; 25 ms ~645 MB at
# ~10% more time; 0 ms ~630 MB at ~25% more time). mimalloc reads this once,
# when pyarrow is first imported, so it is set here, before any import of it.
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "25")

# Rows per batch of popbatch score and drift (their --batch-size default). Chosen by
# measurement: `popbatch score` of the 10M-row bench catalog, Parquet -> Parquet, 2
# cores, under /usr/bin/time, two rounds: 65,536 rows 9.0/9.6 s and 559/555 MB peak
# RSS; 32,768 rows 9.0/9.5 s and 468/469 MB; 16,384 rows 10.1/10.5 s and 429/433 MB.
DEFAULT_BATCH_SIZE = 32_768
