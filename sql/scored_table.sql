-- scored_table: the columns popbatch score writes for every scored row.
--
-- GENERATED from popbatch/core/scored.py (SCORE_COLUMNS), the one definition of
-- the scored-table schema; regenerate with
--     python -m popbatch.core.scored > sql/scored_table.sql
-- tests/test_scored_schema.py fails when this file differs from it.
--
-- {table} and {key} are placeholders for the target table and the key column;
-- batch.sqlrun.scored_table_ddl() validates both as identifiers and quotes them
-- before they are put in (identifiers cannot be prepared parameters).
--
-- The key column's type is VARCHAR (track ids are strings); with `--columns all`
-- the scorer adds the catalog's other columns (track_name, artists, track_genre,
-- ...) after the key, typed as in the input. There is no PRIMARY KEY: `--mode
-- append` keeps one row per key and run, which is the history the `label_changes`
-- report reads; `--mode upsert` keeps one row per key by updating it.
-- popularity_pred, genre_pred and genre_prob are written for the model heads a
-- run scores (popbatch score --heads) and are NULL in rows scored without them.
-- The latest row of a key is the one with the latest scored_at and, within a
-- run, the highest input_row (the row read last, as --mode upsert keeps it).
CREATE TABLE IF NOT EXISTS {table} (
    {key} VARCHAR NOT NULL,          -- catalog key, default track_id
    popularity_prob DOUBLE NOT NULL, -- P(popular) from the model, in [0, 1]
    popular BOOLEAN NOT NULL,        -- popularity_prob >= the manifest's threshold
    model_id VARCHAR NOT NULL,       -- the model's identity (popbatch model info)
    scored_at TIMESTAMP NOT NULL,    -- UTC time of the run that wrote it
    features_hash UBIGINT,           -- hash of the model inputs (--incremental)
    input_row BIGINT,                -- row number in the run's input, from 1: of a key's rows, the last read wins
    popularity_pred DOUBLE,          -- popularity head: prediction, 0-100
    genre_pred VARCHAR,              -- genre head: predicted genre
    genre_prob DOUBLE                -- genre head: its probability
);
