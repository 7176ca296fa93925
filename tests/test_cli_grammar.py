"""One CLI grammar: every error one line, --json for machine output, progress alike.

The convention is written down in popbatch/cli/commands/options.py's docstring.
"""

from __future__ import annotations

import io
import json
import re

import pytest
from conftest import TRACKS_2000

from popbatch.cli.commands.progress import Progress
from popbatch.cli.main import COMMANDS, cli

# Every command, and the subcommands of a group, as typed.
COMMAND_PATHS = sorted([[name] for name in COMMANDS if name != "model"] + [["model", "info"]])
ONE_LINE_USAGE = re.compile(r"^Error: [^\n]+ \(see popbatch( [a-z ]+)? --help\)\n$")


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=" ".join)
def test_an_unknown_option_is_one_line_exit_2(runner, path):
    result = runner.invoke(cli, [*path, "--no-such-option"])
    assert result.exit_code == 2
    # click's own words vary by release ("No such option: --x" in 8.2.0); the shape does not
    assert re.fullmatch(
        rf"Error: No such option:? '?--no-such-option'? \(see popbatch {' '.join(path)} --help\)\n",
        result.output,
    ), result.output


@pytest.mark.parametrize(
    "args",
    [
        ["score"],  # a missing argument
        ["score", "x.csv", "--batch-size", "0"],  # a value out of range
        ["score", "x.csv", "--fill", "tempo"],  # a value a callback refuses
        ["explain", "x.csv", "--head", "nope"],  # not one of the choices
        ["sql", "--param"],  # an option without its value (raised before sql's context)
        ["model"],  # a group without its subcommand... prints help, exit 2 in click
        ["nosuchcommand"],
        ["--no-such-option"],
    ],
    ids=lambda a: " ".join(a) or "(none)",
)
def test_usage_errors_are_one_line_naming_the_help_to_read(runner, args):
    result = runner.invoke(cli, args)
    if args == ["model"]:  # click shows a group's help (not an error) when nothing follows
        assert result.exit_code == 2 and "Usage: cli model" in result.output
        return
    assert result.exit_code == 2
    assert ONE_LINE_USAGE.match(result.output), result.output
    assert "Usage:" not in result.output and "Try '" not in result.output


# ------------------------------------------------------------------ --json
def test_every_command_with_machine_output_prints_json_on_stdout(runner, model_dir, tmp_path):
    """--json, the one spelling: stdout is one JSON document and nothing else."""
    model = ["--model", str(model_dir)]
    scored = tmp_path / "scored.parquet"
    runs = {
        "score": ["score", str(TRACKS_2000), "-o", str(scored), *model, "--json"],
        "drift": ["drift", str(TRACKS_2000), *model, "--json"],
        "explain": ["explain", str(TRACKS_2000), "--top", "2", *model, "--json"],
        "model info": ["model", "info", str(model_dir), "--json"],
        "sql": ["sql", "--scored", str(scored), "SELECT count(*) AS n FROM scored", "--json"],
    }
    documents = {}
    for name, args in runs.items():
        result = runner.invoke(cli, args)
        assert result.exit_code in (0, 3), (name, result.output)  # drift may find drift
        documents[name] = json.loads(result.stdout)
    assert documents["score"]["rows_scored"] == 2000
    assert documents["drift"]["rows"] == 2000
    assert {row["track_id"] for row in documents["explain"]} and len(
        {row["track_id"] for row in documents["explain"]}
    ) == 2
    assert documents["model info"]["model_id"] == documents["score"]["model_id"]
    assert documents["sql"] == [{"n": 2000}]
    # The names of commands with machine output are the ones this test covers.
    assert set(runs) == {"score", "drift", "explain", "model info", "sql"}


def test_old_spellings_still_work_with_a_one_line_deprecation_notice(runner, model_dir, tmp_path):
    summary = tmp_path / "run.json"
    args = ["score", str(TRACKS_2000), "-o", str(tmp_path / "s.parquet"), "-q"]
    result = runner.invoke(cli, [*args, "--model", str(model_dir), "--summary", str(summary)])
    assert result.exit_code == 0, result.output
    assert json.loads(summary.read_text())["rows_scored"] == 2000
    assert result.stderr == (
        "popbatch: --summary FILE is deprecated and goes in the next release; use --json > FILE\n"
    )
    drift = ["drift", str(TRACKS_2000), "--model", str(model_dir), "-q", "--format", "json"]
    result = runner.invoke(cli, drift)
    assert json.loads(result.stdout)["rows"] == 2000
    assert result.stderr == (
        "popbatch: --format json is deprecated and goes in the next release; use --json\n"
    )


def test_sql_json_and_another_format_are_refused_together(runner):
    result = runner.invoke(cli, ["sql", "SELECT 1", "--json", "--format", "csv"])
    assert result.exit_code == 2
    assert result.output == "Error: --json prints JSON; drop --format csv\n"


# ------------------------------------------------------------------ explain
def test_explain_without_output_prints_the_top_reasons(runner, model_dir, tmp_path):
    result = runner.invoke(
        cli, ["explain", str(TRACKS_2000), "--top", "3", "--model", str(model_dir)]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert all(re.match(r"^\S+ p=\d\.\d\d  .+ \([+-]\d+\.\d\d\)", line) for line in lines), lines
    assert "written to" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


# ------------------------------------------------------------------ sql
@pytest.mark.parametrize(
    "query,option",
    [
        ("SELECT count(*) FROM scored", "--scored FILE"),
        ("SELECT * FROM explanations", "--explanations FILE"),
        ("SELECT * FROM popbatch_runs", "--runs RUNS_JSONL"),
    ],
)
def test_sql_over_a_view_that_was_not_given_says_which_option_makes_it(runner, query, option):
    result = runner.invoke(cli, ["sql", query])
    assert result.exit_code == 2
    view = query.rsplit(" ", 1)[1]
    assert result.output.startswith(f"Error: SQL error: there is no table {view}; pass {option}")
    assert "pg_" not in result.output and result.output.count("\n") == 1


def test_a_report_without_scored_gets_the_same_hint(runner):
    result = runner.invoke(cli, ["sql", "--report", "top_predicted"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: SQL error: there is no table scored; pass --scored")


# ------------------------------------------------------------------ progress
def test_progress_in_a_log_is_stage_lines_and_on_a_terminal_a_bar():
    log = io.StringIO()
    progress = Progress("explain", stream=log, terminal=False)
    progress.stage("reading catalog.csv")
    progress("rows read", 100, 300)  # not LOG_SECONDS yet: a short run logs no counts
    progress.LOG_SECONDS = 0
    progress("rows read", 300, 300)
    progress("tracks", 5, None)
    lines = log.getvalue().splitlines()
    assert [re.sub(r"\[ *[\d.]+ s\]", "[t]", line) for line in lines] == [
        "explain: [t] reading catalog.csv",
        "explain: [t] 300 of 300 rows read",
        "explain: [t] 5 tracks",
    ]
    terminal = io.StringIO()
    progress = Progress("drift", stream=terminal, terminal=True)
    progress("rows read", 50, 100)
    progress.close()
    assert "\r[###############---------------]  50% 50/100 rows read" in terminal.getvalue()
    quiet = io.StringIO()
    progress = Progress("train", quiet=True, stream=quiet, terminal=False)
    progress.stage("fitting")
    progress("rows read", 1, 2)
    progress.stage("warning: SMOTE fell back")
    assert re.fullmatch(r"train: \[ *[\d.]+ s\] warning: SMOTE fell back\n", quiet.getvalue())


def test_drift_and_explain_write_stage_lines_to_a_log(runner, model_dir, monkeypatch):
    monkeypatch.setattr(Progress, "LOG_SECONDS", 0)  # a line per count, however short the run
    for args in (["drift", str(TRACKS_2000)], ["explain", str(TRACKS_2000), "--top", "2"]):
        result = runner.invoke(cli, [*args, "--model", str(model_dir)])
        assert result.exit_code in (0, 3), result.output
        line = rf"^{args[0]}: \[ *[\d.]+ s\] 2,000 (of 2,000 )?rows read$"
        assert re.search(line, result.stderr, re.M), result.stderr
