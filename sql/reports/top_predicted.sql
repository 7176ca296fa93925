-- Tracks with the highest popularity_prob, with track name and artists when the table has them.
-- param: table = scored (identifier) scored table or view to read
-- param: key = track_id (identifier) key column of the scored table
-- param: limit = 20 (integer) number of tracks to show
--
-- track_name and artists are NULL when the scored table was written with
-- `--columns key` (the default); score with `--columns all` to keep them.
WITH padded AS (
    SELECT * FROM {table}
    UNION ALL BY NAME
    SELECT NULL::VARCHAR AS track_name, NULL::VARCHAR AS artists, NULL::BIGINT AS input_row
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
    round(popularity_prob, 4) AS popularity_prob,
    popular,
    model_id,
    scored_at
FROM latest
ORDER BY latest.popularity_prob DESC, {key}
LIMIT $limit;
