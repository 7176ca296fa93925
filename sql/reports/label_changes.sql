-- Tracks whose predicted label changed between their two latest scorings (runs or models).
-- param: table = scored (identifier) scored history: an append-mode table, or --scored over one file per run
-- param: key = track_id (identifier) key column of the scored table
-- param: limit = 100 (integer) number of tracks to show
--
-- Reads a history: the same key scored by several runs, told apart by
-- scored_at. Use `popbatch score --mode append` into a DuckDB table, or keep
-- one output file per nightly run and pass them as a glob:
-- `popbatch sql --scored 'scores/*.parquet' --report label_changes`.
-- An upsert table or a single file has one run per key, so no changes. A key
-- repeated within one run stands for the run with its row read last (input_row).
WITH padded AS (
    SELECT * FROM {table}
    UNION ALL BY NAME
    SELECT NULL::VARCHAR AS track_name, NULL::VARCHAR AS artists, NULL::BIGINT AS input_row
    WHERE false
),
runs AS (
    SELECT *, dense_rank() OVER (PARTITION BY {key} ORDER BY scored_at DESC) AS run
    FROM padded
),
latest_per_run AS (
    SELECT * FROM runs
    QUALIFY row_number() OVER (PARTITION BY {key}, run ORDER BY scored_at DESC, input_row DESC NULLS LAST) = 1
),
current AS (SELECT * FROM latest_per_run WHERE run = 1),
previous AS (SELECT * FROM latest_per_run WHERE run = 2)
SELECT
    current.{key},
    current.track_name,
    current.artists,
    previous.popular AS previous_popular,
    current.popular AS popular,
    round(previous.popularity_prob, 4) AS previous_prob,
    round(current.popularity_prob, 4) AS popularity_prob,
    previous.model_id AS previous_model_id,
    current.model_id AS model_id,
    previous.scored_at AS previous_scored_at,
    current.scored_at AS scored_at
FROM current
JOIN previous USING ({key})
WHERE current.popular IS DISTINCT FROM previous.popular
ORDER BY abs(current.popularity_prob - previous.popularity_prob) DESC, current.{key}
LIMIT $limit;
