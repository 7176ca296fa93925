"""The docs cannot drift: the generated CLI reference, the README's promises, the links."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from popbatch.cli.main import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_LIMIT = 15_000
# The README opens with exactly these (the second is what CI runs, .ci/run).
FIRST_COMMANDS = [
    "python3 -m venv .venv && .venv/bin/pip install -q . && "
    ".venv/bin/popbatch score batch/sample/catalog.csv -o scored.parquet",
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[train,test,app,spark]' && "
    ".venv/bin/python -m pytest -q",
]


def cli_reference():
    """docs/cli_reference.py, imported by path (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("cli_reference", DOCS / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def markdown_pages() -> list[Path]:
    return [README, ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]


def test_cli_reference_is_current():
    expected = cli_reference().render()
    current = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert current == expected, (
        "docs/cli.md differs from the commands' --help; run: python docs/cli_reference.py"
    )


def test_cli_reference_check_mode_reports_stale(tmp_path, monkeypatch):
    module = cli_reference()
    stale = tmp_path / "cli.md"
    stale.write_text("# CLI reference\n\nold\n", encoding="utf-8")
    monkeypatch.setattr(module, "CLI_MD", stale)
    assert module.main(["--check"]) == 1
    assert stale.read_text(encoding="utf-8") == "# CLI reference\n\nold\n"
    assert module.main([]) == 0
    assert module.main(["--check"]) == 0


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_in_the_cli_reference(name):
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert f"\n## popbatch {name}\n" in page, f"docs/cli.md has no section for {name}"
    assert f"Usage: popbatch {name} " in page, f"docs/cli.md lacks the --help of {name}"


def test_readme_is_a_short_front_page_that_starts_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text) <= README_LIMIT, f"README.md has {len(text):,} characters, at most 15,000"
    expected = "# popbatch\n\n```bash\n" + "\n".join(FIRST_COMMANDS) + "\n```\n"
    assert text.startswith(expected), "README.md must open with the two commands"


def test_ci_runs_the_readmes_second_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert FIRST_COMMANDS[1] in ci.splitlines()


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def anchors(page: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", prose(page.read_text()), re.M)}


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_existing_files_and_headings(page):
    broken = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


def test_priors_card_comes_from_the_default_manifest_and_the_bench():
    """docs/training.md's catalog-priors figures are docs/priors_card.py's rendering of
    popbatch/default_model/manifest.json and bench/results/heads_default.json, never typed."""
    spec = importlib.util.spec_from_file_location("priors_card", DOCS / "priors_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page = (DOCS / "training.md").read_text(encoding="utf-8")
    block = page[page.index(module.BEGIN) : page.index(module.END) + len(module.END)]
    assert block == module.current(), "docs/training.md is stale; run: python docs/priors_card.py"


def test_performance_figures_come_from_the_bench_results():
    """docs/performance.md's figures are docs/performance_card.py's rendering of
    bench/results/ (bench/run.py's output, bench/stages.py's, bench/ab.py's), never typed."""
    spec = importlib.util.spec_from_file_location("performance_card", DOCS / "performance_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page = (DOCS / "performance.md").read_text(encoding="utf-8")
    block = page[page.index(module.BEGIN) : page.index(module.END) + len(module.END)]
    assert block == module.current(), (
        "docs/performance.md is stale; run: python docs/performance_card.py"
    )
