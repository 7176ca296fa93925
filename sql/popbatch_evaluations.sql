-- popbatch_evaluations: one row per `popbatch evaluate` run (batch.evaluation_log).
-- A DuckDB log gets this table; a file log gets the same fields as a JSON line
-- in evaluations.jsonl. Figures are the headline ones (rows not in the training
-- data when the model carries its training-keys fingerprint); NULL where a head
-- was not evaluated. `report` holds the whole JSON report (every figure,
-- interval and slice).
CREATE TABLE IF NOT EXISTS popbatch_evaluations (
    evaluation_id VARCHAR PRIMARY KEY, -- uuid4 hex
    evaluated_at TIMESTAMP NOT NULL,   -- UTC
    input VARCHAR,                     -- the labelled input as given
    model_id VARCHAR,
    rows_read BIGINT,
    rows_scored BIGINT,
    rows_rejected BIGINT,
    rows_in_sample BIGINT,             -- NULL: unknown (model without fingerprint)
    rows_evaluated BIGINT,             -- the headline rows
    heads VARCHAR,                     -- heads evaluated, e.g. 'popular,popularity,genre'
    popular_roc_auc DOUBLE,
    popular_pr_auc DOUBLE,
    popular_f1 DOUBLE,
    popular_brier DOUBLE,
    popularity_r2 DOUBLE,
    popularity_mae DOUBLE,
    genre_accuracy DOUBLE,
    genre_top3_accuracy DOUBLE,
    below_floor VARCHAR,               -- the --fail-under figures below their floor, or NULL
    report VARCHAR                     -- the JSON report
);
