-- Recent popbatch evaluate runs from the evaluation log, newest first (headline figures).
-- param: table = popbatch_evaluations (identifier) evaluation log table (a DuckDB log's, or --evaluations evaluations.jsonl)
-- param: limit = 20 (integer) number of evaluations to show
SELECT
    evaluated_at,
    left(model_id, 12) AS model_id,
    input,
    rows_scored,
    rows_in_sample,
    rows_evaluated,
    round(popular_roc_auc, 4) AS roc_auc,
    round(popular_pr_auc, 4) AS pr_auc,
    round(popularity_r2, 4) AS r2,
    round(popularity_mae, 3) AS mae,
    round(genre_accuracy, 4) AS genre_accuracy,
    below_floor
FROM {table}
ORDER BY evaluated_at DESC, evaluation_id
LIMIT $limit;
