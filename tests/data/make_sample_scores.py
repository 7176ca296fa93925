"""Write tests/data/sample_scores.csv: the embedded default model's scores of the sample
catalog, the reference ``tests/test_scored_sample.py`` holds every later scoring change to.

The file pins what the scoring path computes, so a change made for speed (batching,
threads, the priors lookup, how the heads' sessions run) that alters a score fails the
suite. It must therefore come from scoring code *before* such a change, and be
regenerated **only when the default model itself changes** (a retrained or re-exported
``popbatch/default_model/``; the test says so when the model_id differs). Regenerating
it after a speed change would bless whatever that change did.

Run it with the interpreter of the checkout whose scoring code is the reference (the
commit that changed the model), writing into this checkout::

    /path/to/reference/.venv/bin/python tests/data/make_sample_scores.py

It scores ``batch/sample/catalog.csv`` with ``popbatch.score`` (the popbatch that
interpreter imports, with that popbatch's embedded default model), one batch, one
thread, and keeps the key and every score column but ``scored_at``. Floats are written
in their shortest round-trip form, so the CSV holds every bit of them.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import polars as pl

import popbatch

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parents[1] / "batch" / "sample" / "catalog.csv"
OUT = HERE / "sample_scores.csv"
#: the score columns compared (scored_at is the run's clock)
COLUMNS = (
    "track_id", "popularity_prob", "popular", "model_id", "features_hash",
    "popularity_pred", "genre_pred", "genre_prob",
)  # fmt: skip


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        scored = Path(tmp) / "scored.parquet"
        popbatch.score(SAMPLE, scored, batch_size=10_000, threads=1, record=False)
        table = pl.read_parquet(scored)
    table.select([c for c in COLUMNS if c in table.columns]).write_csv(OUT)
    print(f"{OUT}: {table.height} rows, model {table['model_id'][0]}", file=sys.stderr)


if __name__ == "__main__":
    main()
