"""``popbatch model compare A B``: two models on the same labelled rows, and a verdict.

Both models score the input as ``popbatch evaluate`` scores it
(:func:`~popbatch.batch.evaluate.score_labelled`); only rows both scored (a
row one model rejects is left out for both) and neither was trained on (when
their fingerprints say so) are compared. Per head both evaluate: each figure
for A and B, the difference B - A, and its 95% paired bootstrap interval
(the same resampled rows for both models). The head's verdict follows its
main figure (:data:`~popbatch.batch.evaluate_heads.MAIN_METRIC`): "B better"
when the interval lies wholly on the better side of 0, "B worse" when wholly
on the worse side, otherwise "no measurable difference".

The overall verdict is "B worse" if any head is worse, else "B better" if any
head is better, else "no measurable difference"; :data:`VERDICT_EXIT` gives
its exit code, so a retraining script promotes B only on exit code 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from popbatch.batch import evaluate_heads as eh
from popbatch.batch.evaluate import (
    EvaluateOptions,
    Scored,
    clean,
    head_rows,
    in_sample_rows,
    score_labelled,
)
from popbatch.batch.summary import ProgressCallback

from popbatch.core import __version__
from popbatch.core.bundle import ModelBundle, load_model
from popbatch.core.errors import EXIT_B_WORSE, EXIT_NO_DIFFERENCE, EXIT_OK, InputError

BETTER, SAME, WORSE = "B better", "no measurable difference", "B worse"
VERDICT_EXIT = {BETTER: EXIT_OK, SAME: EXIT_NO_DIFFERENCE, WORSE: EXIT_B_WORSE}


@dataclass
class Comparison:
    """The figures of one comparison: :meth:`to_dict` is what ``--json`` prints."""

    report: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.report

    @property
    def verdict(self) -> str:
        return self.report["verdict"]

    @property
    def exit_code(self) -> int:
        return VERDICT_EXIT[self.verdict]

    def lines(self) -> list[str]:
        """A table of each head's figures (A, B, B - A and its interval), then the verdict."""
        r = self.report
        out = [
            f"A {r['a']['model_id'][:12]} vs B {r['b']['model_id'][:12]} on "
            f"{r['rows']['compared']:,} rows of {r['input']} (both scored, neither trained on; "
            f"{r['bootstrap']['resamples']:,} paired resamples)",
            f"  {'figure':<26}{'A':>9}{'B':>9}{'B - A':>9}  95% interval",
        ]
        for head, section in r["heads"].items():
            for name, row in section["metrics"].items():
                interval = row["interval"]
                shown = "n/a" if interval is None else f"[{interval[0]:+.4f}, {interval[1]:+.4f}]"
                mark = " *" if name == section["main"] else ""
                out.append(
                    f"  {head + '.' + name + mark:<26}{_num(row['a']):>9}{_num(row['b']):>9}"
                    f"{_num(row['diff'], signed=True):>9}  {shown}"
                )
            out.append(f"  {head}: {section['verdict']} (on {section['main']})")
        for head, why in r["skipped"].items():
            out.append(f"  {head}: not compared ({why})")
        out.append(f"verdict: {r['verdict']}")
        return out


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def head_verdict(interval: list[float] | None, higher_is_better: bool) -> str:
    """B better / no measurable difference / B worse, from the interval of B - A."""
    if interval is None:
        return SAME
    low, high = interval
    if (low > 0 and higher_is_better) or (high < 0 and not higher_is_better):
        return BETTER
    if (high < 0 and higher_is_better) or (low > 0 and not higher_is_better):
        return WORSE
    return SAME


def overall_verdict(verdicts: Sequence[str]) -> str:
    if WORSE in verdicts:
        return WORSE
    return BETTER if BETTER in verdicts else SAME


def compare(
    data: str | Path | Sequence[str | Path],
    model_a: ModelBundle | str | Path | None,
    model_b: ModelBundle | str | Path | None,
    options: EvaluateOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
    say: Callable[[str], None] | None = None,
    **overrides: Any,
) -> Comparison:
    """Evaluate models A and B on the same labelled rows; B - A per figure, and a verdict.

    >>> import popbatch
    >>> result = popbatch.compare("labelled.parquet", "live/", "new/")   # doctest: +SKIP
    >>> result.verdict, result.exit_code                                 # doctest: +SKIP
    ('B better', 0)

    Parameters are as for :func:`~popbatch.batch.evaluate.evaluate` (``model_a``,
    ``model_b``: model directories, bundles, or None for the embedded default);
    ``fail_under``, ``log`` and ``record`` are not used.

    Raises
    ------
    InputError
        Unreadable input, no label, or no head that both models have and the input
        labels.
    ModelError
        A model cannot be used.
    """
    try:
        options = dataclasses.replace(options or EvaluateOptions(), **overrides)
    except TypeError as exc:
        raise InputError(f"compare(): {exc}") from None
    say = say or (lambda line: None)
    bundles = [m if isinstance(m, ModelBundle) else load_model(m) for m in (model_a, model_b)]
    scored: list[Scored] = []
    skipped: dict[str, str] = {}
    for letter, bundle in zip("AB", bundles, strict=True):
        one, why, key = score_labelled(data, bundle, options, progress, _prefixed(say, letter))
        for head, reason in why.items():
            skipped.setdefault(head, f"{reason}")
        in_sample, _ = in_sample_rows(one, key)
        one.columns["__in_sample__"] = (
            np.zeros(len(one.row), bool) if in_sample is None else in_sample
        )
        scored.append(one)
    a, b = scored
    common = np.intersect1d(a.row, b.row)
    a = a.take(np.searchsorted(a.row, common))
    b = b.take(np.searchsorted(b.row, common))
    outside = ~(a.columns["__in_sample__"].astype(bool) | b.columns["__in_sample__"].astype(bool))
    excluded = int((~outside).sum())
    a, b = a.take(np.flatnonzero(outside)), b.take(np.flatnonzero(outside))
    heads = [h for h in ("popular", "popularity", "genre") if h in a.heads and h in b.heads]
    for head in ("popularity", "genre"):
        if head not in heads and head not in skipped:
            which = "A" if head not in a.heads else "B"
            skipped[head] = f"model {which} has no {head} head"
    heads = [h for h in heads if h not in skipped]
    if not heads:
        raise InputError(f"{a.input}: no head both models have and the input labels")
    say(f"paired bootstrap: {options.resamples:,} resamples (seed fixed) of {len(a.row):,} rows")
    sections: dict[str, Any] = {}
    for head in heads:
        rows_a, _ = head_rows(a, head)
        rows_b, _ = head_rows(b, head)
        if len(rows_a) == 0:
            skipped[head] = "no compared row has its label"
            continue
        names = [m.name for m in eh.METRICS[head] if m.interval]
        intervals = eh.paired_bootstrap(rows_a, rows_b, names, options.resamples, options.seed)
        fa, fb = rows_a.figures(), rows_b.figures()
        main = eh.MAIN_METRIC[head]
        table = {
            name: {
                "a": fa[name],
                "b": fb[name],
                "diff": fb[name] - fa[name],
                "interval": intervals[name],
                "higher_is_better": eh.metric(head, name).higher_is_better,
            }
            for name in names
        }
        sections[head] = {
            "main": main,
            "rows": len(rows_a),
            "metrics": table,
            "verdict": head_verdict(intervals[main], eh.metric(head, main).higher_is_better),
        }
    verdict = overall_verdict([s["verdict"] for s in sections.values()])
    report = {
        "popbatch_version": __version__,
        "input": a.input,
        "a": _model(bundles[0], scored[0]),
        "b": _model(bundles[1], scored[1]),
        "rows": {
            "read": scored[0].rows_read,
            "scored_by_both": len(common),
            "in_sample_excluded": excluded,
            "compared": len(a.row),
        },
        "bootstrap": {
            "resamples": options.resamples,
            "seed": options.seed,
            "level": eh.LEVEL,
            "method": "paired: the same resampled rows for A and B",
        },
        "heads": sections,
        "skipped": skipped,
        "verdict": verdict,
        "exit_code": VERDICT_EXIT[verdict],
    }
    return Comparison(clean(report))


def _prefixed(say: Callable[[str], None], letter: str) -> Callable[[str], None]:
    return lambda line: say(f"model {letter}: {line}")


def _model(bundle: ModelBundle, scored: Scored) -> dict[str, Any]:
    keys = scored.columns["__in_sample__"]
    known = bundle.manifest.get("training_keys") is not None
    return {
        "model_id": bundle.model_id,
        "dir": str(bundle.directory),
        "rows_rejected": scored.rows_rejected,
        "rows_in_sample": int(keys.sum()) if known else None,
    }
