"""``popbatch app`` in a real browser: the system's headless Chromium through playwright.

Starts ``popbatch app`` on a free port of 127.0.0.1, fills the form, clicks
Predict, reads the probability off the page and compares it with ``popbatch
score`` on a one-row CSV of the same values. Skips when no Chromium is
installed (playwright cannot download one here); ``.ci/run`` installs
Debian's chromium when it is missing, so CI runs it.

The screenshot docs/app.png is made by this test, and only on request:

    POPBATCH_UPDATE_SCREENSHOT=1 .venv/bin/python -m pytest tests/test_app_browser.py -k predict

It writes docs/app.png and its sidecar docs/app.png.json, which records the model
id the page showed (read off the page, and checked here to be the default model's).
Not on every run: the PNG's bytes differ from run to run (font rasterising, the
moment the reasons finish drawing), so writing it always would dirty the tree on
every test run. tests/test_docs.py fails when the sidecar's model id is not the
embedded default model's, so a retrained default cannot ship an old screenshot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from popbatch.cli import interactive
from popbatch.cli.commands.app import running_app
from popbatch.cli.main import cli
from popbatch.core.bundle import load_model

CHROMIUM = next(
    filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium installed (apt-get install chromium); .ci/run installs it in CI",
)
START_TIMEOUT = 90  # seconds for the server to answer its health check
# What the test types in; every other field keeps its default (the rounded median).
TYPED = {"danceability": "0.81", "energy": "0.72", "tempo": "128", "loudness": "-5.5"}
GENRE = "reggaeton"  # a name no other genre contains, so typing it selects it
DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture
def server(tmp_path):
    """``popbatch app`` on a free port of 127.0.0.1; always stopped, even on failure."""
    pytest.importorskip("streamlit", reason="needs the app extra: pip install -e '.[app]'")
    log = tmp_path / "server.log"
    try:
        with running_app(log=log, timeout=START_TIMEOUT) as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(f"{exc}: {log.read_text(errors='replace')}")


def test_predict_in_chromium_equals_popbatch_score(server, runner, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="needs the app extra")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1300})
            started = time.perf_counter()
            page.goto(server)
            predict = page.get_by_role("button", name="Predict")
            predict.wait_for(timeout=30_000)
            load_seconds = time.perf_counter() - started
            for column, text in TYPED.items():
                box = page.get_by_label(column, exact=True)
                box.fill(text)
                box.press("Tab")
            page.get_by_text("explicit", exact=True).click()  # the checkbox: on
            genre = page.get_by_test_id("stSelectbox").filter(has_text="track_genre")
            genre.locator("input").fill(GENRE)
            page.keyboard.press("Enter")
            predict.click()
            value = page.get_by_test_id("stMetricValue").first
            value.wait_for(timeout=30_000)
            shown = float(value.inner_text())
            if interactive.explain_available():  # the reasons follow the scores
                page.get_by_text("Top reasons").wait_for(timeout=60_000)
            page_text = page.locator("body").inner_text()
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        finally:
            browser.close()
    print(f"page load {load_seconds:.2f} s")  # shown with pytest -s

    model_id = load_model().manifest["model_id"]
    shown_id = re.search(r"Model ([0-9a-f]{12})", page_text)
    assert shown_id and shown_id.group(1) == model_id[:12], page_text[:300]

    row = {f.column: f.default for f in interactive.input_fields(load_model().manifest)}
    row.update({k: float(v) for k, v in TYPED.items()}, explicit=True, track_genre=GENRE)
    source = tmp_path / "one.csv"
    source.write_text(",".join(row) + "\n" + ",".join(map(str, row.values())) + "\n")
    out = tmp_path / "one.parquet"
    result = runner.invoke(cli, ["score", str(source), "-o", str(out), "--columns", "all"])
    assert result.exit_code == 0, result.output
    expected = pq.read_table(out).column("popularity_prob")[0].as_py()
    assert shown == float(f"{expected:.6f}")
    assert (tmp_path / "app.png").stat().st_size > 10_000
    if os.environ.get("POPBATCH_UPDATE_SCREENSHOT") == "1":  # only once everything held
        shutil.copyfile(tmp_path / "app.png", DOCS / "app.png")
        made_by = "POPBATCH_UPDATE_SCREENSHOT=1 pytest tests/test_app_browser.py"
        sidecar = {"model_id": model_id, "shown": shown_id.group(1), "made_by": made_by}
        (DOCS / "app.png.json").write_text(json.dumps(sidecar, indent=2) + "\n")


def test_evaluate_html_report_opens_in_chromium_with_its_plots(runner, tmp_path, priors_run):
    """``popbatch evaluate -o report.html``: Chromium renders the figures, the five kinds
    of plot as SVG with drawn marks, and the per-genre bars (no script, no network). The
    model is the small priors run's: most of the fixture's rows are new to it (the
    embedded default was trained on every one of them)."""
    playwright = pytest.importorskip("playwright.sync_api", reason="needs the app extra")
    from conftest import TRACKS_2000

    report = tmp_path / "report.html"
    result = runner.invoke(cli, ["evaluate", str(TRACKS_2000), "-o", str(report),
                                 "--model", str(priors_run / "model"), "--resamples", "50",
                                 "-q", "--json", "--no-log"])  # fmt: skip
    assert result.exit_code == 0, result.output
    # one point per row of the headline (the rows outside the model's training keys)
    evaluated = json.loads(result.stdout)["rows"]["evaluated"]
    assert 0 < evaluated <= 2000
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(report.as_uri())
            titles = page.locator("svg.plot").evaluate_all(
                "plots => plots.map(p => p.querySelector('title').textContent)"
            )
            for expected in ("ROC curve (popular)", "Precision-recall (popular)",
                             "Calibration (10 bins by probability)",
                             "Predicted vs actual popularity"):  # fmt: skip
                assert expected in titles
            assert any("by genre, 10 worst" in t for t in titles)
            # each curve is drawn: a polyline with many points, inside the visible page
            roc = page.locator("svg[aria-label='ROC curve (popular)'] polyline.line")
            assert len(roc.get_attribute("points").split()) > 50
            box = page.locator("svg[aria-label='ROC curve (popular)']").bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 250
            assert (
                page.locator("svg[aria-label='Predicted vs actual popularity'] circle").count()
                == evaluated
            )
            assert page.locator("svg.bars rect").count() >= 20
            text = page.locator("body").inner_text()
            assert "popular.roc_auc" in text and "2,000 scored" in text
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "report.png").stat().st_size > 10_000
