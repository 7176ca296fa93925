"""The bad-input corpus: every way a nightly catalog, model or target can be wrong.

One parametrised test runs ``popbatch score`` over each case in ``CASES`` (the
22 static files in ``tests/badinputs/``, made from real rows by
``tests/badinputs/make_corpus.py``, plus inputs the test builds: a 10 MB field,
SQL injection in ``--table``/``--into``/``--key``/``--query``, broken models,
unwritable and full outputs, an input deleted while it is read). Each case says
what must happen: either the run scores the valid rows and rejects the others
with the listed reasons (``scored``/``rejected``/``reasons``), or it stops with
the documented exit code and a one-line message naming the file, column or row
and the fix (``code``/``message``). For every case:

- no traceback reaches the user;
- a failed run leaves no output (the path does not exist, no temporary file is
  left) and, run again over a previous output, leaves that output byte for byte;
- the inputs (files, DuckDB databases, the model) are unchanged, and the
  tables of a DuckDB input still exist.

Decisions recorded here:

- ragged CSV rows stop the run (exit 2) naming the first such row: a row with
  missing or extra fields cannot be trusted to put values in the right columns;
- a Latin-1 file fails only when a column that is read holds non-UTF-8 bytes
  (with the key only, the track name is never decoded), naming the line and an
  ``iconv`` command;
- an input deleted while it is read: on Linux the open handle keeps the data,
  so the run completes with every row.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from badinputs.make_corpus import real_rows, to_csv, with_value
from conftest import TRACKS_2000

from popbatch.cli.main import cli
from popbatch.core.identity import seal

ROOT = Path(__file__).resolve().parents[1]
BAD = Path(__file__).parent / "badinputs"
ONE_LINE_FIX = "rename a column with --map NAME=COLUMN or supply a constant with --fill NAME=VALUE"
ALL_NUMERIC = (
    "duration_ms, explicit, danceability, energy, key, loudness, mode, speechiness, "
    "acousticness, instrumentalness, liveness, valence, tempo, time_signature"
)


@dataclass(frozen=True)
class Case:
    """One bad input and its documented outcome.

    ``args`` are formatted with the paths the case's ``build`` made (``{bad}``
    for tests/badinputs, ``{tmp}``, ``{out}`` the default output, ``{db}``
    a DuckDB catalog with tables ``tracks`` and ``t``, ``{model}``).
    """

    name: str
    args: tuple[str, ...]
    code: int = 0
    message: str | None = None  # fragment of the one-line error (failures)
    scored: int | None = None  # successes
    rejected: int = 0
    reasons: tuple[str, ...] = ()
    output: str = "{out}"
    inputs: tuple[str, ...] = ()  # files/directories that must not change
    build: str | None = None  # name of a builder below
    how: str = "cli"  # cli | process (a real process, e.g. with a file size limit) | delete
    model: str = "{model}"
    extra: dict = field(default_factory=dict)


def static(name: str, *more: str, **kwargs) -> Case:
    return Case(name, (f"{{bad}}/{name}", *more), inputs=(f"{{bad}}/{name}",), **kwargs)


CASES: list[Case] = [
    # ---------------------------------------------------------------- static
    static("empty.csv", code=2, message="{bad}/empty.csv: the file is empty (no header row)"),
    static(
        "whitespace_only.csv",
        code=2,
        message="{bad}/whitespace_only.csv: the first line is blank; the file needs a header row",
    ),
    static("header_only.csv", scored=0),
    static(
        "missing_column.csv",
        code=2,
        message=f"{{bad}}/missing_column.csv: missing required column danceability; {ONE_LINE_FIX}",
    ),
    static(
        "misspelled_column.csv",
        code=2,
        message="{bad}/misspelled_column.csv: missing required column danceability "
        f"(closest present: 'dancability'); {ONE_LINE_FIX}",
    ),
    static(
        "duplicated_columns.csv",
        code=2,
        message="{bad}/duplicated_columns.csv: columns 'energy' and 'energy' both normalise "
        "to 'energy'; rename or drop one of them",
    ),
    static(
        "strings_in_numeric.csv",
        scored=5,
        rejected=1,
        reasons=("energy loud is not a number",),
    ),
    static(
        "strings_in_numeric.csv",
        "--on-invalid",
        "fail",
        code=2,
        message="{bad}/strings_in_numeric.csv: row 3 (track_id ",
        extra={"also": "energy loud is not a number; fix the row, or use --on-invalid reject"},
    ),
    static(
        "nan_inf_negative.csv",
        scored=3,
        rejected=3,
        reasons=(
            "tempo -120.5 is outside [0, 1000]",
            "loudness inf is infinite",
            "valence is NaN",
        ),
    ),
    static(
        "out_of_range.csv",
        scored=5,
        rejected=1,
        reasons=("danceability 1.7 is outside [0, 1]",),
    ),
    static(
        "explicit_yes.csv",
        scored=5,
        rejected=1,
        reasons=("explicit yes is not true/false/1/0",),
    ),
    static("duplicate_keys.csv", scored=7),  # a file output keeps every row
    static("utf8_bom.csv", scored=6),  # the BOM is not part of the first column's name
    static("latin1.csv", scored=6),  # the Latin-1 track name is not read with --columns key
    static(
        "latin1.csv",
        "--columns",
        "all",
        code=2,
        message="{bad}/latin1.csv: the file is not valid UTF-8 (line 2); re-save it as UTF-8, "
        "for example 'iconv -f latin1 -t utf-8 IN.csv > OUT.csv'",
    ),
    static(
        "ragged_rows.csv",
        code=2,
        message="{bad}/ragged_rows.csv: row 2 has 5 fields but the header has 21; fix or remove "
        "that row, or check --delimiter and quoting",
    ),
    static("quoted_newlines.csv", "--columns", "all", scored=6),
    static(
        "semicolon_delimiter.csv",
        code=2,
        message="{bad}/semicolon_delimiter.csv: the header is one column holding ';'; "
        "pass --delimiter ';' if the file is ';'-separated",
    ),
    static("semicolon_delimiter.csv", "--delimiter", ";", scored=6),
    static(
        "binary_garbage.csv",
        code=2,
        message="{bad}/binary_garbage.csv: holds binary data (NUL bytes), not CSV text",
    ),
    static(
        "truncated.parquet",
        code=2,
        message="{bad}/truncated.parquet: not readable as Parquet (",
    ),
    static(
        "csv_named_parquet.parquet",
        code=2,
        message="{bad}/csv_named_parquet.parquet: not readable as Parquet (",
    ),
    static("wrong_dtypes.parquet", scored=6),  # numbers stored as text still parse
    # Every row rejected: a failed run (a nightly job keeps yesterday's scores), its reason named.
    static(
        "all_null_column.parquet",
        code=2,
        message="{bad}/all_null_column.parquet: all 6 rows were rejected (energy is missing); "
        "nothing was written.",
    ),
    static(
        "not_a_database.duckdb",
        "--table",
        "tracks",
        code=2,
        message="{bad}/not_a_database.duckdb: cannot open as DuckDB (",
    ),
    # ------------------------------------------------------ built by the test
    Case(
        "10MB field",
        ("{tmp}/wide.csv", "--columns", "all"),
        scored=6,
        inputs=("{tmp}/wide.csv",),
        build="wide_field",
    ),
    Case(
        "a number float32 cannot hold",
        ("{tmp}/huge.csv",),
        scored=5,
        rejected=1,
        reasons=("duration_ms 1e+39 is too large for the model (float32)",),
        inputs=("{tmp}/huge.csv",),
        build="huge_number",
    ),
    Case(
        "missing DuckDB table",
        ("{db}", "--table", "trax"),
        code=2,
        message="{db}: no table 'trax'; tables present: t, tracks",
        inputs=("{db}",),
        build="catalog_db",
    ),
    *[
        Case(
            f"--table {name}",
            ("{db}", "--table", name),
            code=2,
            message=f"table name {name!r} is not a plain SQL identifier; use letters",
            inputs=("{db}",),
            build="catalog_db",
        )
        for name in ("x; DROP TABLE t", 't"; DROP TABLE t; --', "`t`", "tracks' OR '1'='1")
    ],
    *[
        Case(
            f"--into {name}",
            ("{tmp}/in.csv", "-o", "{db}", "--into", name),
            code=2,
            message=f"--into table name {name!r} is not a plain SQL identifier; use letters",
            output="{db}",
            inputs=("{tmp}/in.csv",),
            build="catalog_db",
        )
        for name in ("x; DROP TABLE t", 'scores"; DROP TABLE t; --', "`scores`")
    ],
    Case(
        "--key injection",
        ("{db}", "--table", "tracks", "--key", 'track_id"; DROP TABLE t; --'),
        code=2,
        message="{db}:tracks: no key column 'track_id_drop_table_t'",
        inputs=("{db}",),
        build="catalog_db",
    ),
    Case(
        "--key injection into a DuckDB target",
        ("{tmp}/in.csv", "-o", "{db}", "--into", "t", "--mode", "upsert", "--key", "`x` OR 1"),
        code=2,
        message="{tmp}/in.csv: no key column 'x_or_1'",
        output="{db}",
        inputs=("{tmp}/in.csv",),
        build="catalog_db",
    ),
    Case(
        "--query that writes",
        ("{db}", "--query", "DROP TABLE t"),
        code=2,
        message="{db}: --query failed (",
        inputs=("{db}",),
        build="catalog_db",
    ),
    Case(
        "model that is not ONNX",
        ("{tmp}/in.csv",),
        code=1,
        message="{tmp}/garbage_model: onnxruntime cannot load the model (",
        model="{tmp}/garbage_model",
        inputs=("{tmp}/in.csv", "{tmp}/garbage_model"),
        build="garbage_model",
    ),
    Case(
        "tampered model",
        ("{tmp}/in.csv",),
        code=1,
        message="{tmp}/tampered/model.onnx: model.onnx does not match its manifest (sha256 ",
        model="{tmp}/tampered",
        inputs=("{tmp}/in.csv", "{tmp}/tampered"),
        build="tampered_model",
    ),
    Case(
        "manifest width does not match its features",
        ("{tmp}/in.csv",),
        code=1,
        message="{tmp}/wide_manifest/manifest.json: manifest lists ",
        extra={"also": "the manifest does not match its model, re-export it"},
        model="{tmp}/wide_manifest",
        inputs=("{tmp}/in.csv", "{tmp}/wide_manifest"),
        build="wide_manifest",
    ),
    Case(
        "manifest with one feature fewer than the model",
        ("{tmp}/in.csv",),
        code=1,
        message="{tmp}/short_manifest: the model takes ",
        model="{tmp}/short_manifest",
        inputs=("{tmp}/in.csv", "{tmp}/short_manifest"),
        build="short_manifest",
    ),
    Case(
        ".pkl that does not exist",
        ("{tmp}/in.csv",),
        code=1,
        message="{tmp}/model.pkl: popbatch never loads pickled models; pass a model directory",
        model="{tmp}/model.pkl",
        inputs=("{tmp}/in.csv",),
        build="input_csv",
    ),
    Case(
        ".joblib whose unpickling would leave a mark",
        ("{tmp}/in.csv",),
        code=1,
        message="{tmp}/model.joblib: popbatch never loads pickled models; pass a model directory",
        model="{tmp}/model.joblib",
        inputs=("{tmp}/in.csv", "{tmp}/model.joblib"),
        build="pickle_bomb",
    ),
    Case(
        "output directory is a file",
        ("{tmp}/in.csv", "-o", "{tmp}/in.csv/scored.parquet"),
        code=1,
        message="{tmp}/in.csv: a file is in the way of the output directory; choose another -o",
        output="{tmp}/in.csv/scored.parquet",
        inputs=("{tmp}/in.csv",),
        build="input_csv",
    ),
    Case(
        "output in /proc",
        ("{tmp}/in.csv", "-o", "/proc/popbatch.parquet"),
        code=1,
        message="/proc/popbatch.parquet: cannot write in /proc (",
        output="/proc/popbatch.parquet",
        inputs=("{tmp}/in.csv",),
        build="input_csv",
    ),
    Case(
        "full disk (file size limit)",
        ("{tmp}/in.csv", "-o", "{tmp}/out/scored.csv", "--columns", "all"),
        code=1,
        message="{tmp}/out/scored.csv: writing failed (",
        extra={"also": "File too large"},
        output="{tmp}/out/scored.csv",
        inputs=("{tmp}/in.csv",),
        build="input_csv",
        how="process",
    ),
    Case(
        "input deleted while read",
        ("{tmp}/large.csv", "--batch-size", "5000"),
        scored=200_000,
        build="large_csv",
        how="delete",
    ),
]


# ------------------------------------------------------------------ builders
def build_input_csv(tmp: Path) -> None:
    shutil.copy(TRACKS_2000, tmp / "in.csv")


def build_catalog_db(tmp: Path) -> None:
    build_input_csv(tmp)
    con = duckdb.connect(str(tmp / "catalog.duckdb"))
    con.execute(f"CREATE TABLE tracks AS SELECT * FROM read_csv('{TRACKS_2000}')")
    con.execute("CREATE TABLE t AS SELECT 1 AS a")
    con.close()


def build_wide_field(tmp: Path) -> None:
    header, rows = real_rows()
    rows = with_value(header, rows, "track_name", 2, "x" * (10 << 20))
    (tmp / "wide.csv").write_text(to_csv(header, rows), encoding="utf-8")


def build_huge_number(tmp: Path) -> None:
    header, rows = real_rows()
    rows = with_value(header, rows, "duration_ms", 3, "1e39")  # finite, past float32
    (tmp / "huge.csv").write_text(to_csv(header, rows), encoding="utf-8")


def _model_copy(tmp: Path, name: str, model_dir: Path) -> Path:
    target = tmp / name
    shutil.copytree(model_dir, target)
    return target


def _rewrite_manifest(directory: Path, change) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def build_garbage_model(tmp: Path, model_dir: Path) -> None:
    build_input_csv(tmp)
    target = _model_copy(tmp, "garbage_model", model_dir)
    garbage = b"this is not an ONNX model\n" * 10
    (target / "model.onnx").write_bytes(garbage)
    # The identity matches (sealed as export would): only onnxruntime can tell.
    _rewrite_manifest(target, lambda m: seal(m, garbage))


def build_tampered_model(tmp: Path, model_dir: Path) -> None:
    build_input_csv(tmp)
    path = _model_copy(tmp, "tampered", model_dir) / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def build_wide_manifest(tmp: Path, model_dir: Path) -> None:
    build_input_csv(tmp)
    target = _model_copy(tmp, "wide_manifest", model_dir)
    _rewrite_manifest(target, lambda m: m["input"].update(width=m["input"]["width"] + 1))


def build_short_manifest(tmp: Path, model_dir: Path) -> None:
    build_input_csv(tmp)
    target = _model_copy(tmp, "short_manifest", model_dir)

    def drop_last_genre(manifest):
        manifest["features"].pop()
        manifest["input"]["width"] -= 1
        # Sealed again, as a faulty export would write it: the model's signature refuses it.
        seal(manifest, (target / "model.onnx").read_bytes())

    _rewrite_manifest(target, drop_last_genre)


class LeavesAMark:
    """Unpickling this creates ``path``: proof that something unpickled it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def build_pickle_bomb(tmp: Path) -> None:
    build_input_csv(tmp)
    (tmp / "model.joblib").write_bytes(pickle.dumps(LeavesAMark(tmp / "UNPICKLED")))


def build_large_csv(tmp: Path) -> None:
    frame = pl.read_csv(TRACKS_2000, infer_schema=False)
    pl.concat([frame] * 100).write_csv(tmp / "large.csv")


BUILDERS = {
    "input_csv": build_input_csv,
    "catalog_db": build_catalog_db,
    "wide_field": build_wide_field,
    "huge_number": build_huge_number,
    "pickle_bomb": build_pickle_bomb,
    "large_csv": build_large_csv,
}
MODEL_BUILDERS = {
    "garbage_model": build_garbage_model,
    "tampered_model": build_tampered_model,
    "wide_manifest": build_wide_manifest,
    "short_manifest": build_short_manifest,
}


# ------------------------------------------------------------------- helpers
# The run log (batch/runlog.py) records every run, failed ones too: it is not output.
RUN_LOG_TABLE, RUN_LOG_FILE = "popbatch_runs", "runs.jsonl"


def digest(path: Path) -> str:
    """sha256 of a file, or of every file under a directory (names and bytes); for a
    DuckDB database, of every table's rows except the run log's."""
    if path.suffix == ".duckdb" and path.is_file():
        try:
            return table_digest(path)
        except duckdb.Error:
            pass  # not a database: its bytes, below
    hasher = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        hasher.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        hasher.update(file.read_bytes())
    return hasher.hexdigest()


def ours(output: Path) -> list[str]:
    """Files beside the output that a run could have made (its name is in theirs;
    /proc's other entries come and go with processes). The target's lock file
    (``<target>.lock``, batch/lock.py) is not output: it may stay."""
    stem = output.name.split(".")[0]
    return sorted(
        p.name
        for p in output.parent.iterdir()
        if (stem in p.name or p.suffix == ".tmp") and p.suffix != ".lock" and p.name != RUN_LOG_FILE
    )


def tables(db: Path) -> list[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = sorted(r[0] for r in con.sql("SHOW TABLES").fetchall())
    finally:
        con.close()
    return [n for n in names if n != RUN_LOG_TABLE]


def table_digest(db: Path) -> str:
    hasher = hashlib.sha256()
    con = duckdb.connect(str(db), read_only=True)
    try:
        for (name,) in sorted(con.sql("SHOW TABLES").fetchall()):
            if name == RUN_LOG_TABLE:
                continue
            rows = con.sql(f'SELECT * FROM "{name}"').fetchall()
            hasher.update(repr((name, sorted(map(repr, rows)))).encode())
    finally:
        con.close()
    return hasher.hexdigest()


def limit_file_size() -> None:
    """In the child: a 64 KB file size limit, as on a nearly full disk.

    SIGXFSZ is ignored (Python does this at start-up too; set here so the test
    does not depend on it), so a write past the limit fails with EFBIG.
    """
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))


def run_process(args: list[str], limit: bool) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "popbatch", "score", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size if limit else None,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


def run_deleting_input(args: list[str], victim: Path, output: Path) -> tuple[int, str]:
    """Start a run, delete ``victim`` once the first scored batch is on disk, wait."""
    process = subprocess.Popen(
        [sys.executable, "-m", "popbatch", "score", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    deleted = False
    while process.poll() is None and time.monotonic() < deadline:
        # The temporary output has data: the reader holds the input open.
        temps = list(output.parent.glob(f".{output.name}.*.tmp"))
        if any(t.stat().st_size > 4 for t in temps if t.exists()):
            victim.unlink()
            deleted = True
            break
        time.sleep(0.005)
    out, _ = process.communicate(timeout=120)
    assert deleted, f"the run ended before the input could be deleted: {out}"
    return process.returncode, out


def invoke(runner, case: Case, args: list[str], output: Path) -> tuple[int, str]:
    if case.how == "cli":
        result = runner.invoke(cli, ["score", *args])
        return result.exit_code, result.output
    if case.how == "process":
        return run_process(args, limit=True)
    return run_deleting_input(args, Path(args[0]), output)


# ---------------------------------------------------------------------- test
@pytest.mark.parametrize("case", CASES, ids=[f"{i:02d}-{c.name}" for i, c in enumerate(CASES)])
def test_bad_input(case: Case, runner, model_dir, tmp_path):
    tmp = tmp_path
    (tmp / "out").mkdir()
    if case.build in BUILDERS:
        BUILDERS[case.build](tmp)
    elif case.build in MODEL_BUILDERS:
        MODEL_BUILDERS[case.build](tmp, model_dir)
    names = {
        "bad": str(BAD),
        "tmp": str(tmp),
        "out": str(tmp / "out" / "scored.parquet"),
        "db": str(tmp / "catalog.duckdb"),
        "model": str(model_dir),
    }

    def fill(text: str) -> str:
        return text.format(**names)

    output = Path(fill(case.output))
    args = [fill(a) for a in case.args]
    if "-o" not in args:
        args += ["-o", str(output)]
    # --summary (deprecated, still working this release): the file is written only on success.
    args += ["--model", fill(case.model), "--summary", str(tmp / "out" / "summary.json")]
    watched = [Path(fill(p)) for p in case.inputs]
    if case.build == "catalog_db":
        watched.append(tmp / "catalog.duckdb")
    before = {p: digest(p) for p in watched}
    target_before = digest(output) if output.exists() else None
    listing_before = ours(output) if output.parent.is_dir() else None

    code, text = invoke(runner, case, args, output)

    assert "Traceback" not in text, text
    assert code == case.code, text
    for path, sha in before.items():
        assert digest(path) == sha, f"{path} changed"
    if case.build == "catalog_db":
        assert tables(tmp / "catalog.duckdb") == ["t", "tracks"]
    assert not (tmp / "UNPICKLED").exists()  # nothing was ever unpickled

    if case.code != 0:
        assert text.startswith("Error: " + fill(case.message)), text
        assert text.count("\n") == 1, text  # one line
        if "also" in case.extra:
            assert case.extra["also"] in text
        if target_before is None:
            assert not output.exists()
        else:
            assert digest(output) == target_before  # a DuckDB target: untouched
        if listing_before is not None:
            assert ours(output) == listing_before  # no temp files
        assert not (tmp / "out" / "summary.json").exists()
        if target_before is None and output.parent.is_dir() and output.parent != Path("/proc"):
            # Again over a previous good output: it is kept byte for byte.
            previous = pa.table({"track_id": ["previous"]})
            pq.write_table(previous, output)
            kept = digest(output)
            code, text = invoke(runner, case, args, output)
            assert code == case.code and "Traceback" not in text, text
            assert digest(output) == kept
        return

    summary = json.loads((tmp / "out" / "summary.json").read_text())
    assert (summary["rows_scored"], summary["rows_rejected"]) == (case.scored, case.rejected)
    assert summary["rows_read"] == case.scored + case.rejected
    scored = pl.read_parquet(output)
    assert scored.height == case.scored
    assert scored["popularity_prob"].is_between(0, 1).all()
    rejects_path = output.with_name("scored.rejects.parquet")
    if case.rejected:
        assert pl.read_parquet(rejects_path)["reason"].to_list() == list(case.reasons)
        # the run says why without the file: each reason counted, the most common one named
        assert summary["reject_reasons"] == dict(Counter(case.reasons))
        reason, rows = min(Counter(case.reasons).items(), key=lambda kv: (-kv[1], kv[0]))
        named = reason if rows == case.rejected else f"{reason}: {rows:,} row" + "s" * (rows > 1)
        assert f"{case.rejected:,} rejected ({named})" in text
    else:
        assert not rejects_path.exists()
    assert not list(output.parent.glob(".*.tmp"))
