-- Histogram of popularity_prob in equal-width bins over [0, 1] (latest score per key).
-- param: table = scored (identifier) scored table or view to read
-- param: key = track_id (identifier) key column of the scored table
-- param: bins = 10 (integer) number of bins
--
-- Bin i holds lower <= popularity_prob < upper; the last bin includes 1.0.
-- Empty bins are listed with 0 tracks.
WITH padded AS (
    SELECT * FROM {table}
    UNION ALL BY NAME
    SELECT NULL::BIGINT AS input_row WHERE false
),
latest AS (
    SELECT * FROM padded
    QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY scored_at DESC, input_row DESC NULLS LAST) = 1
),
binned AS (
    SELECT
        least(CAST(floor(popularity_prob * $bins) AS BIGINT), $bins - 1) AS bin,
        popular
    FROM latest
),
all_bins AS (
    SELECT range AS bin FROM range(CAST($bins AS BIGINT))
)
SELECT
    all_bins.bin,
    round(all_bins.bin / $bins, 4) AS lower,
    round((all_bins.bin + 1) / $bins, 4) AS upper,
    count(binned.bin) AS tracks,
    count(*) FILTER (WHERE binned.popular) AS popular,
    round(coalesce(count(binned.bin) / nullif(sum(count(binned.bin)) OVER (), 0), 0), 4) AS share
FROM all_bins
LEFT JOIN binned USING (bin)
GROUP BY all_bins.bin
ORDER BY all_bins.bin;
