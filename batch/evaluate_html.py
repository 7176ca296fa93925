"""The HTML report of ``popbatch evaluate -o report.html``: figures, slices and plots.

One self-contained file: the plots are inline SVG drawn here from the
headline rows (ROC and precision-recall curves, calibration, predicted vs
actual popularity, per-genre bars), so the scoring install needs no
matplotlib and the file needs no network or script to read.
"""

from __future__ import annotations

import html
import json
from typing import Any

import numpy as np
from popbatch.batch import metrics

WIDTH, HEIGHT, PAD = 380, 300, 52
MAX_POINTS = 2_000  # a scatter plot draws at most this many (evenly spaced) rows


def _x(value: float, low: float, high: float) -> float:
    return PAD + (value - low) / ((high - low) or 1) * (WIDTH - 1.5 * PAD)


def _y(value: float, low: float, high: float) -> float:
    return HEIGHT - PAD - (value - low) / ((high - low) or 1) * (HEIGHT - 1.5 * PAD)


def _frame(title: str, xlabel: str, ylabel: str, xr: tuple, yr: tuple, body: str) -> str:
    ticks = []
    for i in range(5):
        xv = xr[0] + (xr[1] - xr[0]) * i / 4
        yv = yr[0] + (yr[1] - yr[0]) * i / 4
        xp, yp = _x(xv, *xr), _y(yv, *yr)
        ticks.append(
            f'<text x="{xp:.1f}" y="{HEIGHT - PAD + 14}" text-anchor="middle">{xv:.2g}</text>'
            f'<text x="{PAD - 4}" y="{yp + 4:.1f}" text-anchor="end">{yv:.2g}</text>'
            f'<line x1="{PAD}" x2="{WIDTH - PAD / 2}" y1="{yp:.1f}" y2="{yp:.1f}" class="grid"/>'
        )
    return (
        f'<svg class="plot" role="img" aria-label="{html.escape(title)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}">'
        f"<title>{html.escape(title)}</title>"
        f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" class="title">'
        f"{html.escape(title)}</text>{''.join(ticks)}"
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD / 2}" y2="{HEIGHT - PAD}" '
        'class="axis"/>'
        f'<line x1="{PAD}" y1="{PAD / 2}" x2="{PAD}" y2="{HEIGHT - PAD}" class="axis"/>'
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" text-anchor="middle">{html.escape(xlabel)}</text>'
        f'<text x="12" y="{HEIGHT / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {HEIGHT / 2})">{html.escape(ylabel)}</text>'
        f"{body}</svg>"
    )


def _path(xs: np.ndarray, ys: np.ndarray, xr: tuple, yr: tuple, cls: str = "line") -> str:
    points = " ".join(f"{_x(x, *xr):.1f},{_y(y, *yr):.1f}" for x, y in zip(xs, ys, strict=True))
    return f'<polyline class="{cls}" points="{points}"/>'


def _thin(*arrays: np.ndarray, limit: int = MAX_POINTS) -> list[np.ndarray]:
    n = len(arrays[0])
    if n <= limit:
        return list(arrays)
    pick = np.linspace(0, n - 1, limit).astype(int)
    return [a[pick] for a in arrays]


def roc_svg(y: np.ndarray, p: np.ndarray) -> str:
    fpr, tpr = _thin(*metrics.roc_curve(y, p))
    unit = (0.0, 1.0)
    body = _path(np.array([0, 1]), np.array([0, 1]), unit, unit, "chance") + _path(
        fpr, tpr, unit, unit
    )
    return _frame(
        "ROC curve (popular)", "false positive rate", "true positive rate", unit, unit, body
    )


def pr_svg(y: np.ndarray, p: np.ndarray) -> str:
    recall, precision = _thin(*metrics.pr_curve(y, p))
    unit = (0.0, 1.0)
    base = float(np.mean(y))
    body = _path(np.array([0, 1]), np.array([base, base]), unit, unit, "chance")
    body += _path(recall, precision, unit, unit)
    return _frame("Precision-recall (popular)", "recall", "precision", unit, unit, body)


def calibration_svg(y: np.ndarray, p: np.ndarray) -> str:
    bins = metrics.calibration(y, p)
    top = max([0.05, *(b["predicted"] for b in bins), *(b["observed"] for b in bins)])
    rng = (0.0, float(min(1.0, top * 1.05)))
    xs = np.array([b["predicted"] for b in bins])
    ys = np.array([b["observed"] for b in bins])
    body = _path(np.array(rng), np.array(rng), rng, rng, "chance") + _path(xs, ys, rng, rng)
    body += "".join(
        f'<circle class="dot" cx="{_x(x, *rng):.1f}" cy="{_y(v, *rng):.1f}" r="3"/>'
        for x, v in zip(xs, ys, strict=True)
    )
    return _frame(
        "Calibration (10 bins by probability)",
        "mean predicted probability",
        "observed popular share",
        rng,
        rng,
        body,
    )


def scatter_svg(y: np.ndarray, predicted: np.ndarray) -> str:
    ys, ps = _thin(np.asarray(y, float), np.asarray(predicted, float))
    rng = (0.0, 100.0)
    body = _path(np.array(rng), np.array(rng), rng, rng, "chance")
    body += "".join(
        f'<circle class="point" cx="{_x(a, *rng):.1f}" cy="{_y(b, *rng):.1f}" r="1.6"/>'
        for a, b in zip(ys, ps, strict=True)
    )
    return _frame(
        "Predicted vs actual popularity", "actual popularity", "popularity_pred", rng, rng, body
    )


def bars_svg(title: str, entries: list[dict[str, Any]], metric: str) -> str:
    """Horizontal bars, one per group: its figure, row count beside it, small ones faded."""
    row_height = 16
    height = 30 + row_height * len(entries)
    values = [e["value"] for e in entries]
    top = max([1e-9, *values]) if metric in ("mae", "rmse", "brier") else 1.0
    width = 680
    bars = []
    for i, entry in enumerate(entries):
        y = 24 + i * row_height
        length = entry["value"] / top * 300
        cls = "bar small" if entry["small"] else "bar"
        bars.append(
            f'<text x="150" y="{y + 11}" text-anchor="end">'
            f"{html.escape(str(entry['group']))}</text>"
            f'<rect class="{cls}" x="156" y="{y}" width="{length:.1f}" height="{row_height - 3}"/>'
            f'<text x="{160 + length:.1f}" y="{y + 11}">{entry["value"]:.3f} '
            f"({entry['rows']:,} rows{', small' if entry['small'] else ''})</text>"
        )
    return (
        f'<svg class="plot bars" role="img" aria-label="{html.escape(title)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
        f"<title>{html.escape(title)}</title>"
        f'<text x="{width / 2}" y="14" text-anchor="middle" class="title">'
        f"{html.escape(title)}</text>"
        f"{''.join(bars)}</svg>"
    )


CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
td, th { border-bottom: 1px solid #ddd; padding: .2em .8em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
svg .title { font-weight: 600; font-size: 12px; }
svg .axis { stroke: #333; } svg .grid { stroke: #eee; }
svg .line { fill: none; stroke: #1f6feb; stroke-width: 2; }
svg .chance { fill: none; stroke: #999; stroke-dasharray: 4 3; }
svg .dot { fill: #1f6feb; } svg .point { fill: #1f6feb; fill-opacity: .35; }
svg .bar { fill: #1f6feb; } svg .bar.small { fill: #9bbcf5; }
.note { color: #555; }
"""


def _figures_table(report: dict[str, Any]) -> str:
    rows = []
    for head, section in report["heads"].items():
        for name, value in section["metrics"].items():
            interval = section["intervals"].get(name)
            shown = "" if interval is None else f"[{interval[0]:.4f}, {interval[1]:.4f}]"
            rows.append(
                f"<tr><td>{head}.{name}</td><td>{'n/a' if value is None else f'{value:.4f}'}</td>"
                f"<td>{shown}</td></tr>"
            )
    return (
        "<table><tr><th>figure</th><th>value</th><th>95% interval</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _slice_section(name: str, section: dict[str, Any]) -> str:
    if "skipped" in section:
        return f"<h3>{html.escape(name)}</h3><p class='note'>not shown: {html.escape(section['skipped'])}</p>"  # noqa: E501
    parts = [f"<h3>{html.escape(name)}: {html.escape(section['description'])}</h3>"]
    for head, table in section["heads"].items():
        metric = table["metric"]
        if "best" in table:
            for which in ("best", "worst"):
                if table[which]:
                    parts.append(
                        bars_svg(
                            f"{head}: {metric} by {name}, {len(table[which])} {which}",
                            table[which],
                            metric,
                        )
                    )
        elif table.get("all"):
            parts.append(bars_svg(f"{head}: {metric} by {name}", table["all"], metric))
        if table["undefined"]:
            shown = ", ".join(f"{e['group']} ({e['rows']})" for e in table["undefined"][:40])
            parts.append(
                f"<p class='note'>{head}: {metric} undefined (one class only) for "
                f"{len(table['undefined'])} groups: {html.escape(shown)}</p>"
            )
    return "".join(parts)


def render(report: dict[str, Any], plots: dict[str, Any]) -> str:
    """The whole HTML page of an evaluation."""
    rows = report["rows"]
    sample = report["in_sample"]
    share = "unknown" if sample["rows"] is None else f"{sample['rows']:,} ({sample['share']:.1%})"
    svgs = []
    if "popular" in plots:
        y, p = plots["popular"]
        if y.any() and not y.all():
            svgs += [roc_svg(y, p), pr_svg(y, p)]
        svgs.append(calibration_svg(y, p))
    if "popularity" in plots:
        svgs.append(scatter_svg(*plots["popularity"]))
    skipped = "".join(f"<li>{h}: {html.escape(w)}</li>" for h, w in report["skipped"].items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.get("notes", []))
    floors = "".join(
        f"<li>{c['metric']}: {c['value']} vs floor {c['floor']}: "
        f"{'passed' if c['passed'] else 'BELOW'}</li>"
        for c in report.get("fail_under", [])
    )
    boot = report["bootstrap"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>popbatch evaluate: {html.escape(report["input"])}</title>
<style>{CSS}</style></head><body>
<h1>popbatch evaluate</h1>
<p>Model <code>{report["model"]["id"]}</code> on <code>{html.escape(report["input"])}</code>,
{report["evaluated_at"]}: {rows["read"]:,} rows read, {rows["scored"]:,} scored,
{rows["rejected"]:,} rejected. In the training data: {share}
({html.escape(sample["how"])}). Headline figures on {html.escape(report["headline"])}.</p>
<p class="note">Intervals: {boot["level"]:.0%} bootstrap, {boot["resamples"]:,} resamples,
seed {boot["seed"]}.</p>
<h2>Figures</h2>{_figures_table(report)}
{f"<ul>{skipped}</ul>" if skipped else ""}{f"<ul>{notes}</ul>" if notes else ""}
{f"<h2>Floors</h2><ul>{floors}</ul>" if floors else ""}
<h2>Plots</h2><div class="plots">{"".join(svgs)}</div>
<h2>Slices</h2>
<p class="note">Pale bars: small groups (fewer than 50 rows, or fewer than 5 of a class).</p>
{"".join(_slice_section(n, s) for n, s in report["slices"].items())}
<h2>JSON</h2><details><summary>the whole report</summary>
<pre>{html.escape(json.dumps(report, indent=2))}</pre></details>
</body></html>
"""
