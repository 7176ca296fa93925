"""``popbatch app`` without a browser: Streamlit's AppTest runs popbatch/cli/app.py in-process.

The app must say what ``popbatch score`` says: each test scores the same
values through the command and compares. Needs the app extra (Streamlit);
without it these tests skip locally and fail in CI (CI=true).
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import TRACKS_2000, TRACKS_PRIORS

from popbatch.cli import interactive
from popbatch.cli.main import cli
from popbatch.core.bundle import load_model

if os.environ.get("CI") != "true":
    pytest.importorskip("streamlit", reason="needs the app extra: pip install -e '.[app]'")
from streamlit.testing.v1 import AppTest

import popbatch
import popbatch.cli

APP = Path(popbatch.cli.__file__).parent / "app.py"
# Rows of tests/data/tracks_2000.csv: several genres, explicit and not, popular and not.
ROWS = (0, 1, 7, 42, 1999)


def fixture_rows() -> list[dict[str, str]]:
    with TRACKS_2000.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def cli_score(runner, tmp_path: Path, row: dict[str, str], name: str = "one"):
    """``popbatch score`` on a CSV of ``row``: (its scored row, its rejects row or None).

    A valid row follows it: ``popbatch score`` fails a run that rejects every row."""
    source = tmp_path / f"{name}.csv"
    padding = dict(fixture_rows()[0], track_id="padding-row")
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        writer.writeheader()
        writer.writerows([row, padding])
    out = tmp_path / f"{name}.scored.parquet"
    result = runner.invoke(cli, ["score", str(source), "-o", str(out), "--columns", "all"])
    assert result.exit_code == 0, result.output
    scored = [r for r in pq.read_table(out).to_pylist() if r["track_id"] != "padding-row"]
    rejects = tmp_path / f"{name}.scored.rejects.parquet"
    rejected = pq.read_table(rejects).to_pylist() if rejects.exists() else []
    assert all(r["row"] == 1 for r in rejected)  # the padding row is valid
    return (scored[0] if scored else None), (rejected[0] if rejected else None)


@pytest.fixture
def app(monkeypatch):
    """A fresh AppTest of the app on the embedded default model, run once."""
    monkeypatch.delenv("POPBATCH_APP_MODEL", raising=False)
    monkeypatch.delenv("POPBATCH_APP_RUN", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def fill(at: AppTest, row: dict[str, str]) -> None:
    """Set every form field to the row's value (numbers as the CSV holds them)."""
    for item in interactive.input_fields(load_model().manifest):
        text = row[item.column]
        widget_key = f"in_{item.column}"
        if item.kind == "flag":
            box = at.checkbox(key=widget_key)
            box.check() if text.strip().lower() in ("true", "1", "1.0") else box.uncheck()
        elif item.kind == "choice":
            genre = text if text in item.options else item.options[-1]
            at.selectbox(key=widget_key).select(genre)
        elif item.kind == "integer":
            at.number_input(key=widget_key).set_value(int(float(text)))
        elif item.kind == "text":  # a catalog prior column (artists, album_name)
            at.text_input(key=widget_key).input(text)
        else:
            at.number_input(key=widget_key).set_value(float(text))


def predict(at: AppTest) -> None:
    [button] = [b for b in at.button if b.label == "Predict"]
    button.click().run()
    assert not at.exception, at.exception


@pytest.mark.parametrize("index", ROWS)
def test_one_track_equals_popbatch_score(app, runner, tmp_path, index):
    row = fixture_rows()[index]
    fill(app, row)
    predict(app)
    result = app.session_state["track_result"]
    expected, rejected = cli_score(runner, tmp_path, row)
    assert rejected is None
    assert result.probability == expected["popularity_prob"]
    assert result.popular == expected["popular"]
    assert app.metric[0].value == f"{expected['popularity_prob']:.6f}"
    assert app.metric[1].value == ("popular" if expected["popular"] else "not popular")
    for column, shown in (("popularity_pred", "popularity"), ("genre_pred", "genre")):
        assert getattr(result, shown) == expected.get(column)  # None without the head


def paste(at: AppTest, row: dict[str, str]) -> None:
    lines = io.StringIO()
    writer = csv.DictWriter(lines, fieldnames=list(row))
    writer.writeheader()
    writer.writerow(row)
    at.text_area(key="pasted").input(lines.getvalue())
    [button] = [b for b in at.button if b.label == "Predict the pasted row"]
    button.click().run()
    assert not at.exception, at.exception


@pytest.mark.parametrize(
    ("column", "value"),
    [("danceability", "1.5"), ("tempo", "-3.5"), ("energy", "loud"), ("explicit", "maybe")],
)
def test_invalid_value_shows_the_scorers_message(app, runner, tmp_path, column, value):
    """The form's bounds keep a typed value in range; a pasted row can hold anything,
    and the page then says exactly what popbatch score's rejects file says."""
    predict(app)
    assert "track_result" in app.session_state
    row = dict(fixture_rows()[0], **{column: value})
    paste(app, row)
    _, rejected = cli_score(runner, tmp_path, row)
    assert rejected["reason"].startswith(f"{column} {value}")
    assert [e.value for e in app.error] == [rejected["reason"]]
    assert "track_result" not in app.session_state  # the old result is not shown as if current


@pytest.mark.parametrize("index", ROWS[:2])
def test_pasted_row_equals_popbatch_score(app, runner, tmp_path, index):
    row = fixture_rows()[index]
    paste(app, row)
    expected, _ = cli_score(runner, tmp_path, row)
    assert app.session_state["track_result"].probability == expected["popularity_prob"]


def test_out_of_range_typed_value_never_reaches_the_scorer(app):
    """Streamlit holds a number input to its bounds, which are the manifest's valid range."""
    app.number_input(key="in_danceability").set_value(1.5)
    predict(app)
    assert app.number_input(key="in_danceability").value <= 1
    assert not app.error


def test_form_defaults_are_rounded_training_medians(app):
    manifest = load_model().manifest
    speechiness = next(f for f in manifest["features"] if f["name"] == "speechiness")
    median = speechiness["train"]["quantiles"]["0.5"]
    assert app.number_input(key="in_speechiness").value == round(median, 4)
    assert app.number_input(key="in_speechiness").max == 1
    assert app.number_input(key="in_key").value == 5
    assert app.checkbox(key="in_explicit").value is False
    assert app.selectbox(key="in_track_genre").options[-1] == manifest["genre"]["other"]


def test_every_page_names_the_model(app):
    model = load_model()
    caption = app.caption[0].value
    assert model.model_id[:12] in caption
    assert model.manifest["training_data"]["file"] in caption
    assert [t.label for t in app.tabs] == ["One track", "A file", "The model"]


def upload(at: AppTest, name: str, data: bytes, mime: str) -> None:
    at.file_uploader(key="upload").set_value((name, data, mime))
    at.run()
    assert not at.exception, at.exception


def test_upload_scores_a_fixture_file_as_popbatch_score_does(app, runner, tmp_path):
    lines = TRACKS_2000.read_text(encoding="utf-8").splitlines()
    bad = lines[3].split(",")
    bad[8] = "1.5"  # danceability
    text = "\n".join([*lines[:3], ",".join(bad), *lines[4:300]]) + "\n"
    source = tmp_path / "tracks.csv"
    source.write_text(text, encoding="utf-8")
    out = tmp_path / "cli.parquet"
    result = runner.invoke(cli, ["score", str(source), "-o", str(out), "--columns", "all"])
    assert result.exit_code == 0, result.output
    expected = pq.read_table(out)

    upload(app, "tracks.csv", text.encode(), "text/csv")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Scored"] == f"{expected.num_rows:,}" == "298"
    assert metrics["Rejected"] == "1"
    assert app.table[0].value["reason"].tolist() == ["danceability 1.5 is outside [0, 1]"]
    shown = app.dataframe[0].value
    assert shown["popularity_prob"].tolist() == expected.column("popularity_prob").to_pylist()
    assert [b.label for b in app.get("download_button")] or True  # drawn without error
    scored = app.session_state["upload_scored"][1].table
    assert scored.column("track_id").to_pylist() == expected.column("track_id").to_pylist()


def test_upload_parquet(app, tmp_path):
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(TRACKS_2000).slice(0, 50)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    upload(app, "tracks.parquet", buffer.getvalue(), "application/octet-stream")
    assert {m.label: m.value for m in app.metric}["Scored"] == "50"


def test_upload_over_the_row_limit_is_refused(app, monkeypatch):
    monkeypatch.setattr(interactive, "UPLOAD_ROW_LIMIT", 10)
    text = "\n".join(TRACKS_2000.read_text().splitlines()[:21])  # 20 rows, no final newline
    upload(app, "big.csv", text.encode(), "text/csv")
    assert [e.value for e in app.error] == [
        "big.csv: 20 rows; the app scores at most 10, use popbatch score for larger files"
    ]


def test_upload_missing_columns_shows_the_scorers_message(app):
    upload(app, "bad.csv", b"track_id,danceability\nx,0.5\n", "text/csv")
    [error] = app.error
    assert error.value.startswith("bad.csv: missing required columns duration_ms")


def test_model_page_shows_the_card_and_the_runs_plots(monkeypatch, tmp_path):
    run = tmp_path / "run"
    (run / "plots").mkdir(parents=True)
    (run / "plots" / "roc_curves.png").write_bytes(PNG_1X1)
    monkeypatch.setenv("POPBATCH_APP_RUN", str(run))
    monkeypatch.delenv("POPBATCH_APP_MODEL", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    card = at.code[0].value
    model = load_model()
    assert f"id          {model.model_id}" in card
    assert f"threshold   {model.threshold:.6g} (probability >= threshold is popular)" in card
    assert "metrics     test stack: roc_auc" in card
    assert [i.captions for i in at.get("image")] == [["roc_curves.png"]]


def test_a_bad_model_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("POPBATCH_APP_MODEL", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert [e.value for e in at.error] == [
        f"{tmp_path}/manifest.json: no manifest; a model directory is made by 'popbatch export'"
    ]


def test_score_and_help_never_import_streamlit():
    """The scoring install has no Streamlit: popbatch score must not need it."""
    code = (
        "import sys, tempfile, os\n"
        "from popbatch.cli.main import cli\n"
        "out = os.path.join(tempfile.mkdtemp(), 'out.parquet')\n"
        f"cli(['score', r'{TRACKS_2000}', '-o', out], standalone_mode=False)\n"
        "cli(['app', '--help'], standalone_mode=False)\n"
        "assert 'streamlit' not in sys.modules, 'popbatch score imported streamlit'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_app_without_streamlit_says_how_to_install_it(runner, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "streamlit" else real(name)
    )
    result = runner.invoke(cli, ["app"])
    assert result.exit_code == 2
    assert "install the app extra: pip install 'popbatch[app]'" in result.output


# The smallest valid PNG (1x1, grey), for the run-directory plot test.
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010800000000"
    "3a7e9b550000000a49444154789c6360000000020001e221bc330000000049454e44ae426082"
)


def test_reasons_come_from_popbatch_explain_when_it_is_there(app):
    """Top reasons appear with popbatch.explain (issue: explain), a note without it."""
    predict(app)
    if not interactive.explain_available():
        assert "Reasons appear when this popbatch has popbatch explain." in [
            c.value for c in app.caption
        ]
        return
    reasons = app.session_state["track_reasons"]
    assert [s.value for s in app.subheader] == ["Top reasons"]
    assert len(reasons) == 5
    magnitudes = [abs(r.contribution) for r in reasons]
    assert magnitudes == sorted(magnitudes, reverse=True)
    inputs = {f.column for f in interactive.input_fields(load_model().manifest)} | {"genre"}
    # a catalog prior ("artists:mean") is a reason about its input column
    assert {r.feature.split(":")[0] for r in reasons} <= inputs
    listed = next(m.value for m in app.markdown if m.value.startswith("- "))
    assert listed.splitlines()[0] == f"- {reasons[0].text()}"


@pytest.fixture
def launched(monkeypatch):
    """Captures what ``popbatch app`` would exec instead of starting Streamlit."""
    calls = []
    monkeypatch.setattr(os, "execve", lambda path, args, env: calls.append((args, env)))
    return calls


def test_app_binds_127_0_0_1_unless_told(runner, launched, tmp_path):
    result = runner.invoke(cli, ["app", "--port", "8765", "--run", str(tmp_path)])
    assert result.exit_code == 0, result.output
    [(args, env)] = launched
    assert args[args.index("--server.address") + 1] == "127.0.0.1"
    assert args[args.index("--server.port") + 1] == "8765"
    assert env["POPBATCH_APP_MODEL"] == str(load_model().directory.resolve())
    assert env["POPBATCH_APP_RUN"] == str(tmp_path.resolve())
    result = runner.invoke(cli, ["app", "--host", "0.0.0.0"])
    assert launched[1][0][launched[1][0].index("--server.address") + 1] == "0.0.0.0"


def test_app_refuses_a_bad_model_or_run_before_starting(runner, launched, tmp_path):
    result = runner.invoke(cli, ["app", "--model", str(tmp_path)])
    assert result.exit_code == 1
    assert "no manifest; a model directory is made by 'popbatch export'" in result.output
    result = runner.invoke(cli, ["app", "--run", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert f"--run {tmp_path / 'nope'}: no such run directory" in result.output
    assert launched == []


def test_artist_and_album_inputs_and_a_waterfall_of_the_reasons(priors_run, monkeypatch):
    """With a model that reads catalog priors, the form asks for the artists and the
    album, the score is popbatch score's, and the reasons are drawn as a waterfall from
    the average track to this one (the steps add up)."""
    model = priors_run / "model"
    monkeypatch.setenv("POPBATCH_APP_MODEL", str(model))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert at.text_input(key="in_artists").value == ""
    assert at.text_input(key="in_album_name").value == ""
    import polars as pl

    row = pl.read_csv(TRACKS_PRIORS, infer_schema=False).row(0, named=True)
    fields = interactive.input_fields(load_model(model).manifest)
    for item in fields:
        text = row[item.column]
        key = f"in_{item.column}"
        if item.kind == "flag":
            box = at.checkbox(key=key)
            box.check() if text.strip().lower() in ("true", "1") else box.uncheck()
        elif item.kind == "choice":
            at.selectbox(key=key).select(text if text in item.options else item.options[-1])
        elif item.kind == "text":
            at.text_input(key=key).input(text)
        elif item.kind == "integer":
            at.number_input(key=key).set_value(int(float(text)))
        else:
            at.number_input(key=key).set_value(float(text))
    predict(at)
    result = at.session_state["track_result"]
    expected = popbatch_row(model, row)
    assert result.probability == expected["popularity_prob"]
    steps = at.session_state["track_waterfall"]
    assert steps[0][0] == "average track" and steps[-1][0] == "this track"
    middle = steps[:-1]  # the last step is the total, drawn from zero
    for index in range(1, len(middle)):
        assert middle[index][1] == pytest.approx(
            middle[index - 1][2]
        )  # starts where the last ended
    assert steps[-2][2] == pytest.approx(steps[-1][2])  # ... and the last reaches the score
    assert any("history" in label for label, _, _ in steps)


def popbatch_row(model, row) -> dict:
    import tempfile

    import polars as pl

    with tempfile.TemporaryDirectory() as work:
        source, out = Path(work) / "one.csv", Path(work) / "one.parquet"
        pl.DataFrame([row]).write_csv(source)
        popbatch.score(str(source), out, model=model, record=False, columns="all")
        return pq.read_table(out).to_pylist()[0]
