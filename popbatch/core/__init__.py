"""The shared bottom layer of popbatch: it imports nothing else of popbatch.

Errors and exit codes (:mod:`.errors`), the feature contract (:mod:`.features`),
the model bundle (:mod:`.bundle`) and what its id covers (:mod:`.identity`), the
scored-table schema (:mod:`.scored`), feature statistics (:mod:`.stats`), SQL
quoting (:mod:`.sqlquote`), atomic file replacement (:mod:`.files`) and package
versions (:mod:`.versions`). Scoring, training, export and the CLI all build on
it; nothing here may import from ``popbatch.batch``, ``popbatch.models`` or
``popbatch.exporter`` (``tests/test_layers.py`` checks it).
"""

__version__ = "0.2.0"

# Rows per batch of popbatch score and drift (their --batch-size default). Chosen by
# measurement (docs/performance.md, "Batch size"): the 10M-row bench catalog, Parquet ->
# Parquet, 2 cores: 65,536 rows 9.0/9.6 s and 559/555 MB peak RSS; 32,768 rows 9.0/9.5 s
# and 468/469 MB; 16,384 rows 10.1/10.5 s and 429/433 MB.
DEFAULT_BATCH_SIZE = 32_768

# How a DuckDB target table changes (popbatch score --mode). Here rather than in
# popbatch.batch.sinks so that ``popbatch score --help`` lists them without importing
# pyarrow and the sinks.
WRITE_MODES = ("replace", "append", "upsert")
