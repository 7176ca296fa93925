-- Count and share of tracks predicted popular, and their mean predicted popularity, per genre (latest score per key).
-- param: table = scored (identifier) scored table or view to read
-- param: key = track_id (identifier) key column of the scored table
-- param: genre = track_genre (identifier) genre column; '(no genre)' when it is absent
--
-- A history table (one row per key and run) counts each key once, with its
-- latest score. A table without the genre column gives one '(no genre)' row;
-- mean_pred_popularity (the popularity head's 0-100 prediction) is NULL when
-- the table has no popularity_pred column.
WITH padded AS (
    SELECT * FROM {table}
    UNION ALL BY NAME
    SELECT NULL::VARCHAR AS {genre}, NULL::DOUBLE AS popularity_pred, NULL::BIGINT AS input_row
    WHERE false
),
latest AS (
    SELECT * FROM padded
    QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY scored_at DESC, input_row DESC NULLS LAST) = 1
)
SELECT
    coalesce(CAST({genre} AS VARCHAR), '(no genre)') AS genre,
    count(*) AS tracks,
    count(*) FILTER (WHERE popular) AS popular,
    round(count(*) FILTER (WHERE popular) / count(*), 4) AS share_popular,
    round(avg(popularity_prob), 4) AS mean_prob,
    round(avg(popularity_pred), 2) AS mean_pred_popularity
FROM latest
GROUP BY ALL
ORDER BY share_popular DESC, tracks DESC, genre;
