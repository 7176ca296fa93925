"""DuckDB query results as a stream of Arrow record batches, on every DuckDB popbatch supports.

DuckDB 1.5 named a relation's streaming reader ``to_arrow_reader`` and later
releases deprecate the older names; DuckDB 1.1 to 1.4 (still what many
notebooks and clusters have) only have ``fetch_arrow_reader``. Both return a
``pyarrow.RecordBatchReader`` of at most ``batch_size`` rows a batch.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa


def arrow_reader(result: Any, batch_size: int) -> pa.RecordBatchReader:
    """Stream ``result`` (a DuckDB relation) as Arrow batches."""
    reader = getattr(result, "to_arrow_reader", None)
    if reader is None:  # DuckDB before 1.5
        reader = result.fetch_arrow_reader
    return reader(batch_size)
