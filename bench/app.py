"""``popbatch app``: page-load time in headless Chromium and the time to score one track.

Starts ``popbatch app`` on a free port of 127.0.0.1, waits for its health
check, then loads the page ``--loads`` times in a fresh browser tab each
(navigation start to the Predict button drawn, the app's first script run
included) and clicks Predict ``--clicks`` times (click to the probability
drawn). In-process, it also times
:meth:`popbatch.cli.interactive.TrackScorer.score` (what Predict runs:
a one-row batch through popbatch score's preprocessing and session)
``--tracks`` times, in wall and CPU seconds (CPU time barely moves when other
jobs share the cores). Prints one JSON line of first, median and maximum
times. Needs the app extra and a system Chromium.

    python bench/app.py --model DIR --loads 5 --clicks 10 --tracks 50
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from popbatch.cli import interactive
from popbatch.cli.commands.app import running_app
from popbatch.core.bundle import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import QUICK_HELP


def summary(seconds: list[float]) -> dict[str, float]:
    return {
        "first_ms": round(seconds[0] * 1000, 1),
        "median_ms": round(statistics.median(seconds) * 1000, 1),
        "max_ms": round(max(seconds) * 1000, 1),
        "n": len(seconds),
    }


def track_times(model_dir: str | None, n: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each of ``n`` tracks scored as Predict scores them
    (one kept session, as the app's server keeps one)."""
    bundle = load_model(model_dir)
    scorer = interactive.TrackScorer(bundle)
    values = {f.column: f.default for f in interactive.input_fields(bundle.manifest)}
    scorer.score(values)  # warm: first imports
    wall, cpu = [], []
    for _ in range(n):
        started, started_cpu = time.perf_counter(), time.process_time()
        scorer.score(values)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return wall, cpu


def browser_times(model_dir: str | None, loads: int, clicks: int) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    args = ["--model", model_dir] if model_dir else []
    started = time.perf_counter()
    with running_app(*args, timeout=120) as url:
        start_seconds = time.perf_counter() - started
        load, click = [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True)
            for _ in range(loads):
                page = browser.new_page()
                t0 = time.perf_counter()
                page.goto(url)
                page.get_by_role("button", name="Predict").wait_for(timeout=60_000)
                load.append(time.perf_counter() - t0)
                page.close()
            page = browser.new_page()
            page.goto(url)
            button = page.get_by_role("button", name="Predict")
            button.wait_for(timeout=60_000)
            for i in range(clicks):
                box = page.get_by_label("tempo", exact=True)
                box.fill(str(100 + i))
                box.press("Tab")
                t0 = time.perf_counter()
                button.click()
                page.get_by_text(f"Prediction {i + 1}, scored in").wait_for(timeout=60_000)
                click.append(time.perf_counter() - t0)
            browser.close()
    return {"server_start_s": round(start_seconds, 2), "page_load": summary(load),
            "predict_click": summary(click)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--tracks", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP)
    args = parser.parse_args(argv)
    if args.quick:
        args.loads, args.clicks, args.tracks = 1, 1, 2
    wall, cpu = track_times(args.model, args.tracks)
    result = {"score_track": summary(wall), "score_track_cpu": summary(cpu)}
    result.update(browser_times(args.model, args.loads, args.clicks))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
