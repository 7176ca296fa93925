-- Tracks with the largest gap between predicted (popularity_pred) and actual popularity (latest score per key).
-- param: table = scored (identifier) scored table or view to read
-- param: key = track_id (identifier) key column of the scored table
-- param: actual = popularity (identifier) column holding the actual popularity (0-100)
-- param: limit = 20 (integer) number of tracks to show
--
-- Needs a table scored by a model with the popularity head and holding the
-- actual column (score with `--columns all`); without the actual column it
-- shows no rows. gap = predicted - actual: positive means the model expects
-- more than the track has.
WITH padded AS (
    SELECT * FROM {table}
    UNION ALL BY NAME
    SELECT NULL::VARCHAR AS track_name, NULL::VARCHAR AS artists, NULL::DOUBLE AS {actual},
        NULL::BIGINT AS input_row
    WHERE false
),
latest AS (
    SELECT * FROM padded
    QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY scored_at DESC, input_row DESC NULLS LAST) = 1
)
SELECT
    {key},
    track_name,
    artists,
    CAST({actual} AS DOUBLE) AS actual,
    round(popularity_pred, 2) AS predicted,
    round(popularity_pred - CAST({actual} AS DOUBLE), 2) AS gap
FROM latest
WHERE popularity_pred IS NOT NULL AND {actual} IS NOT NULL
ORDER BY abs(popularity_pred - CAST({actual} AS DOUBLE)) DESC, {key}
LIMIT $limit;
