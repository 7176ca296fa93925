"""``export_run``: a trained run directory -> ``model.onnx`` + ``manifest.json``, parity proven.

Needs the training extras (TensorFlow, scikit-learn, xgboost, the converters);
``popbatch train`` calls :func:`export_run` at the end, ``popbatch export`` runs it alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from popbatch.exporter import all_heads as all_heads_graph
from popbatch.exporter import parity as parity_check
from popbatch.exporter import runtime
from popbatch.exporter.background import background_for, write_background
from popbatch.exporter.heads import export_heads
from popbatch.exporter.manifest import MODEL_FILE, build_manifest
from popbatch.exporter.priors import prove as prove_priors
from popbatch.exporter.priors import widen_input
from popbatch.exporter.toolkit import opsets
from popbatch.models.priors import load as load_priors
from popbatch.models.priors import sealed as sealed_priors
from popbatch.models.stack import STACK_FILE

from popbatch.core import files, fingerprint
from popbatch.core.bundle import MANIFEST_FILE, register_prior_table
from popbatch.core.errors import InputError, OutputError
from popbatch.core.heads import HEADS

STACK_DIR = "stack"
# onnxruntime holds tree ensembles at about 10x their file size; the scorer must stay < 600 MB.
SIZE_BUDGET = 20_000_000


def stack_directory(run_dir: Path) -> Path:
    """``RUN_DIR/stack`` (or ``run_dir`` itself when it is a stack directory)."""
    run_dir = Path(run_dir)
    for candidate in (run_dir / STACK_DIR, run_dir):
        if (candidate / STACK_FILE).is_file():
            return candidate
    raise InputError(
        f"{run_dir}: no {STACK_DIR}/{STACK_FILE}; pass the --out directory of 'popbatch train'"
    )


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    measure_throughput: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Export the stack of ``run_dir`` to ``out_dir/model.onnx`` and ``out_dir/manifest.json``.

    >>> import popbatch
    >>> manifest = popbatch.export("runs/mine", "runs/mine/model")   # doctest: +SKIP
    >>> manifest["parity"]["labels_identical"]                       # doctest: +SKIP
    True

    Parameters
    ----------
    run_dir
        The output directory of ``popbatch train`` (holding ``stack/``), or a stack directory.
    out_dir
        The model directory to write; created if missing, existing files replaced.
    measure_throughput
        Measure onnxruntime rows/s (2 threads, the scorer's default batch) for the
        manifest (~2 s).
    progress
        Called with one line per stage.

    Returns
    -------
    dict
        ``model_dir``, ``model_id``, ``model_bytes``, ``parity`` (rows, max_abs_diff,
        labels_identical), ``parity_line`` (the printed proof), ``rows_per_second`` and
        ``warnings`` (e.g. the file exceeds the 20 MB budget of the default model).

    Raises
    ------
    InputError
        ``run_dir`` holds no stack.
    ModelError
        Parity fails (max |diff| > 1e-5 or a label differs); nothing is written.
    OutputError
        ``out_dir`` cannot be written.
    """
    # TensorFlow's C++ start-up notices (oneDNN, CPU features) are noise for a user.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    say = progress or (lambda line: None)
    # A folder of someone else's could hold a model.onnx of the same name: refused.
    files.refuse_foreign_directory(Path(out_dir), (MANIFEST_FILE,), "--out")
    stack_dir = stack_directory(run_dir)
    stack, model_bytes = _popular_model(stack_dir, say)
    x = parity_check.split_matrix(stack_dir, stack.inputs)
    x, prior_section, prior_files = _prove_priors(stack, stack_dir, model_bytes, x, say)
    parity = _prove_parity(stack, model_bytes, x, say)
    head_files, heads = export_heads(stack_dir, len(stack.inputs), x, say)
    all_heads = _all_heads(model_bytes, heads, head_files, x, say)
    throughput = None
    if measure_throughput:
        throughput = _throughput(model_bytes, x, heads, head_files, say)
    if heads:
        heads = {"popular": _popular_head(), **heads}
    # The heads (with each file's sha256) are part of the scoring contract that model_id seals.
    keys = training_keys_for(stack_dir)  # the fingerprint evaluate reads, if trained with one
    if keys is not None:
        head_files = {**head_files, fingerprint.KEYS_FILE: keys}
    manifest = build_manifest(
        stack,
        model_bytes,
        parity.manifest(),
        _opsets(model_bytes),
        throughput,
        heads=heads or None,
        training_keys=None if keys is None else fingerprint.manifest_entry(keys),
        priors=prior_section,
        all_heads=all_heads,
    )
    out_dir = Path(out_dir)
    background = background_for(stack_dir, manifest)  # rows for popbatch explain
    if background is not None:
        write_background(out_dir, background)
    write_model(out_dir, model_bytes, manifest, {**head_files, **prior_files})
    onnx_files = {name: data for name, data in head_files.items() if name.endswith(".onnx")}
    return {
        "warnings": _size_warnings(model_bytes, onnx_files),
        "model_dir": str(out_dir),
        "model_id": manifest["model_id"],
        "model_bytes": len(model_bytes),
        "parity": parity.manifest(),
        "parity_line": parity.line(),
        "head_parity_lines": [
            h["parity_line"] for h in (*heads.values(), all_heads or {}) if "parity_line" in h
        ],
        "head_bytes": {
            name: h["bytes"]
            for name, h in (*heads.items(), ("all_heads", all_heads or {}))
            if "bytes" in h
        },
        "rows_per_second": throughput["rows_per_second"] if throughput else None,
    }


def training_keys_for(stack_dir: Path) -> bytes | None:
    """The stack's training-keys fingerprint (``stack/training_keys.u64``, written by
    training since evaluate exists), or None for a stack trained before it."""
    path = Path(stack_dir) / fingerprint.KEYS_FILE
    return path.read_bytes() if path.is_file() else None


def _popular_head() -> dict[str, Any]:
    """Returns the manifest's entry for model.onnx, listed first when the model has heads."""
    return {
        "file": MODEL_FILE,
        "outputs": {"probability": "probability", "label": "label"},
        "columns": {"popularity_prob": "DOUBLE", "popular": "BOOLEAN"},
        "metrics": "the manifest's metrics",
    }


def _popular_model(stack_dir: Path, say: Callable[[str], None]) -> tuple[Any, bytes]:
    """Load the native stack and build its graph. Returns the stack and ``model.onnx``'s
    bytes: optimised for onnxruntime, checked to be valid plain ONNX."""
    from popbatch.exporter.graph import build_graph
    from popbatch.models.stack import NativeStack

    say(f"loading the stack from {stack_dir}")
    stack = NativeStack.load(stack_dir)
    names = {"logistic": "the logistic regression", "ann": "the network", "rf": "the forest",
             "xgb": "XGBoost"}  # fmt: skip
    learners = ", ".join(names.get(n, n) for n in stack.learners)
    say(f"converting {learners} and the meta learner to one ONNX graph")
    # a model with the priors' genre shares reads more inputs than the stack: a Slice first
    model = widen_input(build_graph(stack), len(stack.inputs))
    model_bytes = runtime.optimize(model.SerializeToString())
    _check(model_bytes)
    return stack, model_bytes


def _prove_priors(
    stack: Any, stack_dir: Path, model_bytes: bytes, x: np.ndarray, say: Callable[[str], None]
) -> tuple[np.ndarray, dict[str, Any] | None, dict[str, bytes]]:
    """For a stack trained with catalog priors: prove the scorer's preprocessing and
    priors lookup build the training code's matrix (plain-Python priors) on the test
    rows and their hard variants. Returns that matrix (every model's parity is then
    proven on it), the manifest's ``priors`` section and the table file; ``x``, None and
    no file without priors. Raises ModelError when the two matrices differ."""
    fitted = load_priors(stack_dir)
    if fitted is None:
        return x, None, {}
    say("proving the catalog priors: the scorer's lookup against the training code's")
    spec, table_bytes = sealed_priors(fitted.spec, fitted.table)
    register_prior_table(table_bytes)
    section = spec.to_manifest()
    draft = build_manifest(stack, model_bytes, {}, _opsets(model_bytes), priors=section)
    x, proof = prove_priors(stack_dir, draft, fitted, stack.genre_vocabulary)
    section["extra"] = {**section["extra"], "parity": proof.manifest()}
    say(proof.line())
    return x, section, {spec.table_file: table_bytes}


def _all_heads(
    model_bytes: bytes,
    heads: dict[str, Any],
    head_files: dict[str, bytes],
    x: np.ndarray,
    say: Callable[[str], None],
) -> dict[str, Any] | None:
    """For a model with extra heads: ``all_heads.onnx`` (added to ``head_files``) and its
    manifest section, its outputs proven equal to the head files'; None without heads."""
    if not heads:
        return None
    graphs = {"popular": model_bytes}
    graphs.update((name, head_files[heads[name]["file"]]) for name in HEADS if name in heads)
    conflicts = all_heads_graph.conflicting_opsets(graphs)
    if conflicts:  # scoring runs a session per head, as for a model exported before it
        say(f"no joint graph of the heads: they import different versions of {conflicts}")
        return None
    say("joining every head into one graph for the default command, and proving it")
    merged = all_heads_graph.merge(graphs)
    section = all_heads_graph.entry(merged, list(graphs), all_heads_graph.prove(merged, graphs, x))
    head_files[all_heads_graph.ALL_HEADS_FILE] = merged
    say(section["parity_line"])
    return section


def _prove_parity(
    stack: Any, model_bytes: bytes, x: np.ndarray, say: Callable[[str], None]
) -> parity_check.Parity:
    """Compare the graph with the native stack on ``x`` (the test split, or with priors
    the priors' parity rows). Returns the proof; raises ModelError when parity fails."""
    say("proving parity on the test split")
    probability, label = runtime.predict(model_bytes, x)
    parity = parity_check.compare(stack.predict_proba(x), probability, label, stack.threshold)
    parity_check.require(parity)
    return parity


def _throughput(
    model_bytes: bytes,
    x: np.ndarray,
    heads: dict[str, Any],
    head_files: dict[str, bytes],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Measure onnxruntime on ``x``. Returns the manifest's ``throughput`` section
    (rows per second; ``by_heads`` with every head subset when the model has heads)."""
    say(f"measuring onnxruntime throughput (2 threads, batch {runtime.BATCH_SIZE:,})")
    throughput = runtime.measure_throughput(model_bytes, x)
    if heads:
        throughput["by_heads"] = runtime.measure_heads(model_bytes, x, heads, head_files)
    return throughput


def _size_warnings(model_bytes: bytes, head_files: dict[str, bytes]) -> list[str]:
    """Returns the warning when the ONNX files exceed the default model's size budget."""
    total = len(model_bytes) + sum(len(b) for b in head_files.values())
    if total <= SIZE_BUDGET:
        return []
    return [
        f"{'the ONNX files' if head_files else 'model.onnx'} {'are' if head_files else 'is'} "
        f"{total / 1e6:.1f} MB, over the {SIZE_BUDGET / 1e6:.0f} MB budget of the default "
        "model; train smaller trees (fewer, shallower) for scoring"
    ]


def _check(model_bytes: bytes) -> None:
    """The optimised file must still be valid plain ONNX (loadable outside onnxruntime)."""
    import onnx

    onnx.checker.check_model(onnx.load_from_string(model_bytes), full_check=True)


def _opsets(model_bytes: bytes) -> dict[str, int]:
    """The manifest's ``opsets``: domain (``ai.onnx`` for the default one) -> version."""
    import onnx

    return opsets(onnx.load_from_string(model_bytes), default_domain="ai.onnx")


def write_model(
    out_dir: Path,
    model_bytes: bytes,
    manifest: dict[str, Any],
    head_files: dict[str, bytes] | None = None,
) -> None:
    """Write the files via temporary names and renames, so no half-written model is seen.

    ``head_files`` also carries the training-keys fingerprint, if any.
    The models go first (head files, then model.onnx): a reader between the renames
    finds an old manifest whose hashes no longer match and refuses it, rather than
    scoring with a wrong manifest.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staged = []
        for name, data in (
            *(head_files or {}).items(),
            (MODEL_FILE, model_bytes),
            (MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode("utf-8")),
        ):
            temporary = files.temporary_path(out_dir / name)
            temporary.write_bytes(data)
            staged.append((temporary, out_dir / name))
        for temporary, final in staged:
            files.replace(temporary, final)
    except OSError as exc:
        for temporary, _ in locals().get("staged", []):
            temporary.unlink(missing_ok=True)
        raise OutputError(f"{out_dir}: cannot write the model ({exc.strerror})") from None
