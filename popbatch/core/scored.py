"""The one definition of a scored table: the columns ``popbatch score`` adds to every row.

Every writer of scores reads this module: the Parquet, CSV and DuckDB sinks,
the DuckDB write-back, the incremental path, and ``sql/scored_table.sql``
(generated from :func:`scored_table_sql`; ``tests/test_scored_schema.py``
fails when the file, a sink or the write-back disagrees with it).

A scored table is the pass-through columns (the key first with the default
``--columns key``; with ``--columns all`` every input column, typed as in the
input) followed by :data:`SCORE_COLUMNS` in this order. An input column named
like a score column is replaced by the new score, never duplicated.

The extra model heads add their columns after those, in
:data:`HEAD_COLUMNS` order, for each head a run scores (``--heads``; default
every head the model has): ``popularity_pred`` for the popularity head,
``genre_pred`` and ``genre_prob`` for the genre head. Every sink, the
write-back and the SQL file follow (regenerate the file with
``python -m popbatch.core.scored > sql/scored_table.sql``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class ScoredColumn:
    """One column popbatch writes: its name, Arrow type, DuckDB type and meaning.

    ``nullable`` is False when every row a run writes has a value (the SQL
    file says ``NOT NULL``); tables written before a column existed hold NULL
    there, so only the SQL file's ``CREATE TABLE`` enforces it.
    """

    name: str
    arrow_type: pa.DataType
    sql_type: str
    nullable: bool
    description: str

    @property
    def field(self) -> pa.Field:
        return pa.field(self.name, self.arrow_type)


# Order matters: it is the order of the columns at the end of every scored output.
SCORE_COLUMNS: tuple[ScoredColumn, ...] = (
    ScoredColumn(
        "popularity_prob", pa.float64(), "DOUBLE", False, "P(popular) from the model, in [0, 1]"
    ),
    ScoredColumn(
        "popular", pa.bool_(), "BOOLEAN", False, "popularity_prob >= the manifest's threshold"
    ),
    ScoredColumn(
        "model_id", pa.string(), "VARCHAR", False, "the model's identity (popbatch model info)"
    ),
    ScoredColumn(
        "scored_at", pa.timestamp("us"), "TIMESTAMP", False, "UTC time of the run that wrote it"
    ),
    ScoredColumn(
        "features_hash", pa.uint64(), "UBIGINT", True, "hash of the model inputs (--incremental)"
    ),
)
# The extra heads' columns, after SCORE_COLUMNS, for each head a run scores. NULL in
# rows scored without that head (a table scored before, or by a model without it).
HEAD_COLUMNS: dict[str, tuple[ScoredColumn, ...]] = {
    "popularity": (
        ScoredColumn(
            "popularity_pred", pa.float64(), "DOUBLE", True, "popularity head: prediction, 0-100"
        ),
    ),
    "genre": (
        ScoredColumn("genre_pred", pa.string(), "VARCHAR", True, "genre head: predicted genre"),
        ScoredColumn("genre_prob", pa.float64(), "DOUBLE", True, "genre head: its probability"),
    ),
}
ALL_HEAD_COLUMNS: tuple[ScoredColumn, ...] = tuple(c for cs in HEAD_COLUMNS.values() for c in cs)
SCORE_NAMES: tuple[str, ...] = tuple(c.name for c in SCORE_COLUMNS)
SCORE_FIELDS: tuple[pa.Field, ...] = tuple(c.field for c in SCORE_COLUMNS)
SQL_TYPES: dict[str, str] = {c.name: c.sql_type for c in SCORE_COLUMNS}
BY_NAME: dict[str, ScoredColumn] = {c.name: c for c in (*SCORE_COLUMNS, *ALL_HEAD_COLUMNS)}

PROBABILITY_COLUMN = "popularity_prob"
LABEL_COLUMN = "popular"
MODEL_ID_COLUMN = "model_id"
SCORED_AT_COLUMN = "scored_at"
HASH_COLUMN = "features_hash"
# The key's type in sql/scored_table.sql (track ids are text; a Parquet or DuckDB
# input's key keeps its own type in outputs written by popbatch score).
KEY_SQL_TYPE = "VARCHAR"


def head_columns(heads: tuple[str, ...] | list[str]) -> list[ScoredColumn]:
    """The columns of the extra heads among ``heads`` (``popular`` adds none), in order."""
    return [c for head, columns in HEAD_COLUMNS.items() if head in heads for c in columns]


def scored_schema(
    passthrough: pa.Schema | list[pa.Field], heads: tuple[str, ...] | list[str] = ()
) -> pa.Schema:
    """The Arrow schema of a scored output: ``passthrough`` fields, the score columns,
    then the columns of the extra ``heads`` scored.

    Raises ``ValueError`` if a pass-through field is named like a score column
    (the preprocessor drops such input columns before this is called).
    """
    fields = list(passthrough)
    clash = [f.name for f in fields if f.name in BY_NAME]
    if clash:
        raise ValueError(f"pass-through columns named like score columns: {clash}")
    return pa.schema([*fields, *SCORE_FIELDS, *(c.field for c in head_columns(heads))])


def scored_table_sql() -> str:
    """The text of ``sql/scored_table.sql``, with ``{table}`` and ``{key}`` placeholders."""
    rows = [(f"    {{key}} {KEY_SQL_TYPE} NOT NULL,", "catalog key, default track_id")]
    written = (*SCORE_COLUMNS, *ALL_HEAD_COLUMNS)
    for index, column in enumerate(written):
        null = "" if column.nullable else " NOT NULL"
        comma = "," if index < len(written) - 1 else ""
        rows.append((f"    {column.name} {column.sql_type}{null}{comma}", column.description))
    width = max(len(text) for text, _ in rows)
    columns = "\n".join(f"{text.ljust(width)} -- {note}" for text, note in rows)
    return (
        "-- scored_table: the columns popbatch score writes for every scored row.\n"
        "--\n"
        "-- GENERATED from popbatch/core/scored.py (SCORE_COLUMNS), the one definition of\n"
        "-- the scored-table schema; regenerate with\n"
        "--     python -m popbatch.core.scored > sql/scored_table.sql\n"
        "-- tests/test_scored_schema.py fails when this file differs from it.\n"
        "--\n"
        "-- {table} and {key} are placeholders for the target table and the key column;\n"
        "-- batch.sqlrun.scored_table_ddl() validates both as identifiers and quotes them\n"
        "-- before they are put in (identifiers cannot be prepared parameters).\n"
        "--\n"
        "-- The key column's type is VARCHAR (track ids are strings); with `--columns all`\n"
        "-- the scorer adds the catalog's other columns (track_name, artists, track_genre,\n"
        "-- ...) after the key, typed as in the input. There is no PRIMARY KEY: `--mode\n"
        "-- append` keeps one row per key and run, which is the history the `label_changes`\n"
        "-- report reads; `--mode upsert` keeps one row per key by updating it.\n"
        "-- popularity_pred, genre_pred and genre_prob are written for the model heads a\n"
        "-- run scores (popbatch score --heads) and are NULL in rows scored without them.\n"
        "CREATE TABLE IF NOT EXISTS {table} (\n" + columns + "\n);\n"
    )


if __name__ == "__main__":
    print(scored_table_sql(), end="")
