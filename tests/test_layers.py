"""The package's shape: one import name, each folder one layer, imports pointing one way.

The folders are read from pyproject.toml (``packages`` and ``package-dir``): each
package is a folder, and every module belongs to the layer of its folder. Layers,
bottom to top (a module may import its own layer and those below):

0. sql       popbatch.sql (sql/): the scored table's DDL and the named reports, as data
1. core      popbatch.core: errors, feature contract, bundle, quoting, files, versions
2. scoring   popbatch.batch (batch/): sources, preprocess, runner, sinks, the explainer
3. training  popbatch.models (models/)
4. export    popbatch.exporter (export/; popbatch.export is the API function)
5. cli       popbatch.cli: the command, its options and progress, the Streamlit app
6. api       popbatch itself: the public API (lazy names), ``__main__``, popbatch.spark

The check reads the source: every ``import``, also inside functions, and every
string that names one of our modules (``importlib.import_module`` targets such as
the CLI's command registry), so a lazy import that breaks the layering fails here
even when no test runs that line.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = (
    "popbatch.sql", "popbatch.core", "popbatch.batch", "popbatch.models",
    "popbatch.exporter", "popbatch.cli", "popbatch",
)  # fmt: skip
TRAINING_LIBRARIES = {
    "tensorflow", "keras", "sklearn", "xgboost", "imblearn", "onnx", "skl2onnx",
    "onnxmltools", "tf2onnx", "pickle", "joblib", "cloudpickle",
}  # fmt: skip
#: the one module that may import pyspark: on top, beside the public API
SPARK_MODULE = "popbatch.spark"


def folders() -> dict[str, Path]:
    """Installed package -> its folder in the repository, as pyproject.toml ships them."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = setuptools.get("package-dir", {})
    found = {}
    for package in setuptools["packages"]:
        # the nearest mapped ancestor decides the folder (setuptools' own rule)
        parts = package.split(".")
        for n in range(len(parts), 0, -1):
            ancestor = ".".join(parts[:n])
            if ancestor in mapped:
                found[package] = ROOT / mapped[ancestor] / Path(*parts[n:])
                break
        else:
            found[package] = ROOT / Path(*parts)
    return found


def layer_of(module: str) -> str:
    """The layer of a module: the nearest enclosing package named in LAYERS."""
    return max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)


def folder_of(module: str, packages: dict[str, Path]) -> str:
    """The package (folder) a module lives in."""
    return max((p for p in packages if module == p or module.startswith(p + ".")), key=len)


def modules() -> dict[str, Path]:
    """Installed module name -> source file, for every module of popbatch."""
    found = {}
    for package, folder in folders().items():
        for path in folder.glob("*.py"):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            found[name] = path
    return found


def imports_of(module: str, path: Path, known: set[str] | frozenset = frozenset()) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved), and
    every string constant that names a module in ``known`` (``"module"`` or
    ``"module:attribute"``: what ``importlib.import_module`` is handed)."""
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
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            target = node.value.partition(":")[0]
            if "." in target and target in known:  # a bare "popbatch" is mostly the name
                names.add(target)
    return names


def internal_edges() -> list[tuple[str, str]]:
    known = modules()
    edges = []
    for module, path in known.items():
        for name in imports_of(module, path, set(known)):
            if name in known and name != module:
                edges.append((module, name))
    return edges


def test_modules_are_found_in_every_folder():
    found = modules()
    assert {"popbatch.core.errors", "popbatch.batch.score", "popbatch.models.pipeline",
            "popbatch.exporter.build", "popbatch.cli.main", "popbatch.cli.commands.score",
            "popbatch.batch.explain.space", "popbatch.spark"} <= set(found)  # fmt: skip
    # every folder of Python files under a shipped package is itself shipped (a folder
    # missing from pyproject.toml would escape this test and the wheel)
    packages = folders()
    shipped = set(packages.values())
    unlisted = sorted(
        str(path.parent.relative_to(ROOT))
        for folder in shipped
        for path in folder.rglob("*.py")
        if path.parent not in shipped and "__pycache__" not in path.parts
    )
    assert not unlisted, f"folders with modules that pyproject.toml does not ship: {unlisted}"


def test_the_layer_test_would_catch_an_upward_import(tmp_path):
    """A lazy import inside a function, and a module named in a string, both count."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n    import popbatch.cli.main\nTARGET = 'popbatch.models.pipeline:train'\n",
        encoding="utf-8",
    )
    names = imports_of("popbatch.batch.probe", probe, set(modules()))
    assert {"popbatch.cli.main", "popbatch.models.pipeline"} <= names
    for name in ("popbatch.cli.main", "popbatch.models.pipeline"):
        assert LAYERS.index(layer_of(name)) > LAYERS.index(layer_of("popbatch.batch.probe"))


def test_imports_point_down_the_layers():
    upward = [
        f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})"
        for a, b in internal_edges()
        if LAYERS.index(layer_of(b)) > LAYERS.index(layer_of(a))
    ]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


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


def test_no_import_cycle_between_any_two_folders():
    """Folder to folder (every package, subpackages included), imports form no cycle."""
    packages = folders()
    edges = [(folder_of(a, packages), folder_of(b, packages)) for a, b in internal_edges()]
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle between folders: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle([("core", "scoring"), ("scoring", "core")]) == ["core", "scoring", "core"]
    assert find_cycle([("cli", "scoring"), ("scoring", "core")]) is None


def test_core_and_scoring_never_import_training_libraries_or_pickle():
    bad = []
    for module, path in modules().items():
        if layer_of(module) in ("popbatch.sql", "popbatch.core", "popbatch.batch"):
            roots = {name.split(".")[0] for name in imports_of(module, path)}
            bad += [f"{module} imports {name}" for name in sorted(roots & TRAINING_LIBRARIES)]
    assert not bad, bad


def test_only_popbatch_spark_imports_pyspark():
    """The scoring path (and everything else of popbatch) never imports pyspark."""
    bad = [
        module
        for module, path in modules().items()
        if module != SPARK_MODULE
        and any(name.split(".")[0] == "pyspark" for name in imports_of(module, path))
    ]
    assert not bad, f"import pyspark outside {SPARK_MODULE}: {bad}"
    assert "pyspark" in {n.split(".")[0] for n in imports_of(SPARK_MODULE, modules()[SPARK_MODULE])}


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
        "import sys\n"
        "assert 'popbatch.models' not in sys.modules, 'the default model imported training'\n"
    )
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    rows, reports = map(int, out.stdout.split())
    assert rows == 1000 and reports >= 5
