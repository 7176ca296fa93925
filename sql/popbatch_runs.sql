-- popbatch_runs: one row per `popbatch score` run on a DuckDB target, success
-- or failure (batch.runlog.record_run). File targets get the same fields as a
-- JSON line in runs.jsonl beside the output.
CREATE TABLE IF NOT EXISTS popbatch_runs (
    run_id VARCHAR PRIMARY KEY,  -- uuid4 hex of the run
    started_at TIMESTAMP NOT NULL, -- UTC
    finished_at TIMESTAMP,         -- UTC; NULL only if the run never finished
    input VARCHAR,                 -- the input(s) as given, comma-separated
    output VARCHAR,                -- the target file, or database and table
    rows_read BIGINT,
    rows_scored BIGINT,
    rows_rejected BIGINT,
    rows_skipped BIGINT,           -- incremental runs: rows already up to date
    model_id VARCHAR,
    status VARCHAR NOT NULL,       -- 'success' or 'failed' (or 'interrupted')
    error VARCHAR,                 -- the one-line error message of a failed run
    heads VARCHAR                  -- the heads scored, e.g. 'popular,popularity,genre'
);
-- Logs created before the heads column existed gain it (NULL for their old rows).
ALTER TABLE popbatch_runs ADD COLUMN IF NOT EXISTS heads VARCHAR;
