"""The package's shape: one import name, layers whose imports point one way, no cycles.

Layers, bottom to top (a module may import its own layer and those below):

0. core      popbatch.core: errors, feature contract, bundle, quoting, files, versions
1. scoring   popbatch.batch (but its CLI modules): sources, preprocess, runner, sinks
2. training  popbatch.models
3. export    popbatch.exporter (the folder export/; popbatch.export is the API function)
4. cli       popbatch.batch.cli, .commands, .options, .progress, .app, popbatch.__main__

The check reads the source (every ``import``, also inside functions), so a lazy
import that breaks the layering fails here even when no test runs that line.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# repository folder -> the import package it becomes (pyproject's package-dir)
FOLDERS = {
    "popbatch": "popbatch",
    "batch": "popbatch.batch",
    "models": "popbatch.models",
    "export": "popbatch.exporter",
}
LAYERS = ("core", "scoring", "training", "export", "cli")
# popbatch.batch.app is the Streamlit script: an edge like the CLI (it draws and reports).
CLI_MODULES = ("popbatch.batch.cli", "popbatch.batch.commands", "popbatch.batch.options",
               "popbatch.batch.progress", "popbatch.batch.app", "popbatch.__main__")  # fmt: skip
TRAINING_LIBRARIES = {
    "tensorflow", "keras", "sklearn", "xgboost", "imblearn", "onnx", "skl2onnx",
    "onnxmltools", "tf2onnx", "pickle", "joblib", "cloudpickle",
}  # fmt: skip


# The public API: lazy names and re-exports only, they may point anywhere.
PUBLIC_API = ("popbatch", "popbatch.spark")


def layer_of(module: str) -> str | None:
    if module in PUBLIC_API:
        return None
    if module.startswith(CLI_MODULES):
        return "cli"
    for prefix, layer in (
        ("popbatch.core", "core"),
        ("popbatch.batch", "scoring"),
        ("popbatch.models", "training"),
        ("popbatch.exporter", "export"),
    ):
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return None


def modules() -> dict[str, Path]:
    """Installed module name -> source file, for every module of popbatch."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imports_of(module: str, path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    names = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def internal_edges() -> list[tuple[str, str]]:
    known = modules()
    edges = []
    for module, path in known.items():
        for name in imports_of(module, path):
            if name in known and name != module:
                edges.append((module, name))
    return edges


def test_modules_are_found():
    found = modules()
    assert {"popbatch.core.errors", "popbatch.batch.score", "popbatch.models.pipeline",
            "popbatch.exporter.build", "popbatch.batch.cli"} <= set(found)  # fmt: skip
    assert all(layer_of(m) is not None for m in found if m not in PUBLIC_API)


def test_imports_point_down_the_layers():
    upward = [
        f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})"
        for a, b in internal_edges()
        if None not in (layer_of(a), layer_of(b))
        and LAYERS.index(layer_of(b)) > LAYERS.index(layer_of(a))
    ]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def subpackage_of(module: str) -> str:
    layer = layer_of(module)
    return "popbatch" if layer is None else layer


def find_cycle(edges: list[tuple[str, str]]) -> list[str] | None:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        if a != b:
            graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_between_subpackages():
    edges = [(subpackage_of(a), subpackage_of(b)) for a, b in internal_edges()]
    edges = [(a, b) for a, b in edges if "popbatch" not in (a, b)]
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle([("core", "scoring"), ("scoring", "core")]) == ["core", "scoring", "core"]
    assert find_cycle([("cli", "scoring"), ("scoring", "core")]) is None


def test_core_and_scoring_never_import_training_libraries_or_pickle():
    bad = []
    for module, path in modules().items():
        if layer_of(module) in ("core", "scoring"):
            roots = {name.split(".")[0] for name in imports_of(module, path)}
            bad += [f"{module} imports {name}" for name in sorted(roots & TRAINING_LIBRARIES)]
    assert not bad, bad


def test_tests_and_bench_import_the_installed_names():
    """``import batch`` would load the repository folder as a second, separate module."""
    bare = []
    for folder in ("tests", "bench", "examples", "docs"):
        for path in (ROOT / folder).rglob("*.py"):
            for name in imports_of("x", path):
                if name.split(".")[0] in ("batch", "models", "export"):
                    bare.append(f"{path.relative_to(ROOT)}: {name}")
    assert not bare, bare


def test_pip_install_adds_one_import_package(tmp_path):
    """``pip install .`` (not editable) puts exactly one import name into site-packages,
    ``popbatch``, with its data (sample, SQL, default model) inside."""
    # From a copy: building in place would leave build/ in the repository root.
    source = tmp_path / "source"
    skip = (".git", ".venv", "build", "*.egg-info", "__pycache__", "runs", "out", ".*_cache")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*skip))
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
    subprocess.run([*pip, str(source)], check=True, capture_output=True)
    importable = sorted(
        p.name.removesuffix(".py")
        for p in target.iterdir()
        if not p.name.endswith((".dist-info", ".egg-info")) and p.name not in ("bin",)
    )
    assert importable == ["popbatch"]
    code = (
        "import popbatch, pathlib\n"
        "from popbatch.batch import sqlrun\n"
        f"assert pathlib.Path(popbatch.__file__).is_relative_to(pathlib.Path(r'{target}'))\n"
        "summary = popbatch.score(pathlib.Path(popbatch.batch.__file__).parent / 'sample' /"
        " 'catalog.csv', 'out.parquet')\n"
        "print(summary.rows_scored, len(sqlrun.list_reports()))\n"
    )
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    rows, reports = map(int, out.stdout.split())
    assert rows == 1000 and reports >= 5
