"""``popbatch app`` in a real browser: the system's headless Chromium through playwright.

Starts ``popbatch app`` on a free port of 127.0.0.1, fills the form, clicks
Predict, reads the probability off the page and compares it with ``popbatch
score`` on a one-row CSV of the same values. Skips when no Chromium is
installed (playwright cannot download one here); ``.ci/run`` installs
Debian's chromium when it is missing, so CI runs it.

The screenshot in docs/app.png is made by this test:

    POPBATCH_SCREENSHOT=docs/app.png .venv/bin/python -m pytest tests/test_app_browser.py
"""

from __future__ import annotations

import os
import shutil
import time

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
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
            target = os.environ.get("POPBATCH_SCREENSHOT")
            if target:
                page.screenshot(path=target, full_page=True)
        finally:
            browser.close()
    print(f"page load {load_seconds:.2f} s")  # shown with pytest -s

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
