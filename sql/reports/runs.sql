-- Recent popbatch score runs from the run log, newest first.
-- param: table = popbatch_runs (identifier) run log table (a DuckDB target's, or --runs runs.jsonl)
-- param: limit = 20 (integer) number of runs to show
SELECT
    run_id,
    started_at,
    finished_at,
    round(epoch(finished_at - started_at), 1) AS seconds,
    status,
    input,
    output,
    rows_read,
    rows_scored,
    rows_rejected,
    rows_skipped,
    left(model_id, 12) AS model_id,
    error
FROM {table}
ORDER BY started_at DESC, run_id
LIMIT $limit;
