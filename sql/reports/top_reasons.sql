-- Most frequent top-1 features among tracks predicted popular (popbatch explain joined to the scores).
-- param: table = scored (identifier) scored table or view to read
-- param: explanations = explanations (identifier) output of popbatch explain (table or view)
-- param: key = track_id (identifier) key column of both tables
--
-- Counts, per feature, the tracks whose largest |contribution| (rank 1) it is,
-- among the explained tracks that the scored table labels popular (latest
-- score per key): how often it pushed them up, its mean contribution (in the
-- explanation's unit: log-odds of popular for --head popular) and, for the
-- genre, the most frequent genre. Explain the tracks first, for example
--   popbatch explain catalog.parquet --top 500 -o explanations.parquet
--   popbatch sql --scored scored.parquet --explanations explanations.parquet --report top_reasons
WITH padded AS (
    SELECT * FROM {table}
    UNION ALL BY NAME
    SELECT NULL::BIGINT AS input_row WHERE false
),
latest AS (
    SELECT {key}, popular FROM padded
    QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY scored_at DESC, input_row DESC NULLS LAST) = 1
),
top1 AS (
    SELECT e.{key}, e.feature, e.category, e.contribution
    FROM {explanations} AS e
    WHERE e.rank = 1 AND e.head = 'popular'
)
SELECT
    top1.feature,
    count(*) AS tracks,
    round(count(*) / sum(count(*)) OVER (), 4) AS share,
    count(*) FILTER (WHERE top1.contribution > 0) AS pushed_up,
    round(avg(top1.contribution), 4) AS mean_contribution,
    mode(top1.category) AS top_genre
FROM top1
JOIN latest USING ({key})
WHERE latest.popular
GROUP BY top1.feature
ORDER BY tracks DESC, top1.feature;
