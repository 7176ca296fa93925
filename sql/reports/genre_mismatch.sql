-- Tracks whose predicted genre is none of their catalog genres, most confident first (latest score per key).
-- param: table = scored (identifier) scored table or view to read
-- param: key = track_id (identifier) key column of the scored table
-- param: genre = track_genre (identifier) the catalog's genre column
-- param: min_prob = 0.0 (number) show only predictions with genre_prob at least this
-- param: limit = 100 (integer) number of tracks to show
--
-- Needs a table scored by a model with the genre head (genre_pred, genre_prob)
-- and written with `--columns all` (or a list holding the genre column). A
-- track listed under several genres (one row per genre, as the public dataset
-- has them) is a mismatch only when the prediction is none of them. Genres are
-- compared stripped and lower case, as the model reads them. The track's name
-- and prediction are those of its row read last in its latest run (input_row).
WITH padded AS (
    SELECT * FROM {table}
    UNION ALL BY NAME
    SELECT NULL::VARCHAR AS track_name, NULL::VARCHAR AS artists, NULL::BIGINT AS input_row
    WHERE false
),
latest AS (
    SELECT * FROM padded
    QUALIFY scored_at = max(scored_at) OVER (PARTITION BY {key})
),
per_track AS (
    SELECT
        {key},
        arg_max(track_name, coalesce(input_row, 0)) AS track_name,
        arg_max(artists, coalesce(input_row, 0)) AS artists,
        list_sort(list_distinct(list(lower(trim(CAST({genre} AS VARCHAR)))))) AS catalog_genres,
        arg_max(genre_pred, coalesce(input_row, 0)) AS genre_pred,
        arg_max(genre_prob, coalesce(input_row, 0)) AS genre_prob
    FROM latest
    GROUP BY {key}
)
SELECT
    {key},
    track_name,
    artists,
    array_to_string(catalog_genres, ', ') AS catalog_genres,
    genre_pred,
    round(genre_prob, 4) AS genre_prob
FROM per_track
WHERE genre_pred IS NOT NULL
  AND NOT list_contains(catalog_genres, genre_pred)
  AND genre_prob >= $min_prob
ORDER BY genre_prob DESC, {key}
LIMIT $limit;
