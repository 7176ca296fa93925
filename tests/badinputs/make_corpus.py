"""Regenerate the static bad-input corpus from real rows (run from the repo root).

Every file starts from the first rows of batch/sample/catalog.csv (real
tracks, see tests/data/ATTRIBUTION.md) and breaks exactly one thing. The
expected outcome of each lives in tests/test_bad_inputs.py. Inputs that
are too large to commit or depend on the machine (a 10 MB field, a full
disk, a file deleted while read) are built by the test itself.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent
CATALOG = HERE.parents[1] / "batch" / "sample" / "catalog.csv"


def real_rows(n: int = 6) -> tuple[list[str], list[list[str]]]:
    with CATALOG.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, [next(reader) for _ in range(n)]


def to_csv(header: list[str], rows: list[list[str]], delimiter: str = ",") -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def with_value(header, rows, column, row, value):
    rows = [list(r) for r in rows]
    rows[row][header.index(column)] = value
    return rows


def drop_column(header, rows, column):
    i = header.index(column)
    return header[:i] + header[i + 1 :], [r[:i] + r[i + 1 :] for r in rows]


def main() -> None:
    header, rows = real_rows()
    text: dict[str, str] = {
        "header_only.csv": to_csv(header, []),
        "missing_column.csv": to_csv(*drop_column(header, rows, "danceability")),
        "misspelled_column.csv": to_csv(
            [("dancability" if h == "danceability" else h) for h in header], rows
        ),
        "duplicated_columns.csv": to_csv(
            [*header, "energy"], [[*r, r[header.index("energy")]] for r in rows]
        ),
        "strings_in_numeric.csv": to_csv(header, with_value(header, rows, "energy", 2, "loud")),
        "nan_inf_negative.csv": to_csv(
            header,
            with_value(
                header,
                with_value(
                    header, with_value(header, rows, "tempo", 1, "-120.5"), "loudness", 3, "inf"
                ),
                "valence",
                4,
                "NaN",
            ),
        ),
        "out_of_range.csv": to_csv(header, with_value(header, rows, "danceability", 0, "1.7")),
        "explicit_yes.csv": to_csv(header, with_value(header, rows, "explicit", 1, "yes")),
        "duplicate_keys.csv": to_csv(header, [*rows, rows[0]]),
        "quoted_newlines.csv": to_csv(
            header, with_value(header, rows, "track_name", 0, "Line one\nLine two, with a comma")
        ),
        "semicolon_delimiter.csv": to_csv(header, rows, delimiter=";"),
        # row 2 lost its last 16 fields, row 3 has one too many
        "ragged_rows.csv": to_csv(header, [rows[0], rows[1][:5], rows[2] + ["extra"], *rows[3:]]),
        "whitespace_only.csv": "   \n\n  \n",
    }
    for name, content in text.items():
        (HERE / name).write_text(content, encoding="utf-8")
    (HERE / "empty.csv").write_bytes(b"")
    (HERE / "utf8_bom.csv").write_bytes(b"\xef\xbb\xbf" + to_csv(header, rows).encode("utf-8"))
    latin = with_value(header, rows, "track_name", 0, "Caf\u00e9 Se\u00f1orita")
    (HERE / "latin1.csv").write_bytes(to_csv(header, latin).encode("latin-1", errors="replace"))
    (HERE / "binary_garbage.csv").write_bytes(bytes(range(256)) * 4)

    table = pa.Table.from_pylist([dict(zip(header, r, strict=True)) for r in rows])
    # Every column a string: "Parquet with wrong dtypes (strings for floats)".
    pq.write_table(table, HERE / "wrong_dtypes.parquet")
    frame = pl.read_csv(io.StringIO(to_csv(header, rows)))
    frame.write_parquet(HERE / "good.parquet")
    frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("energy")).write_parquet(
        HERE / "all_null_column.parquet"
    )
    data = (HERE / "good.parquet").read_bytes()
    (HERE / "truncated.parquet").write_bytes(data[: len(data) // 2])
    (HERE / "good.parquet").unlink()
    (HERE / "csv_named_parquet.parquet").write_text(to_csv(header, rows), encoding="utf-8")
    (HERE / "not_a_database.duckdb").write_text("this is not a DuckDB database\n", encoding="utf-8")


if __name__ == "__main__":
    main()
