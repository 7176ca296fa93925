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
    "python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt . && "
    ".venv/bin/popbatch score batch/sample/catalog.csv -o scored.parquet",
    "python3 -m venv .venv && "
    ".venv/bin/pip install -q -c constraints.txt -e '.[train,test,app,spark]' && "
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


def generator():
    """docs/generate.py, imported by path (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("generate", DOCS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_blocks_match_their_sources():
    """Every figure about the shipped model (sizes, heads, learners, metrics, id, training
    rows), the heads' defaults and the example outputs are filled by docs/generate.py from
    the manifest, the code or a real run: a page that differs from a fresh rendering is stale."""
    stale = generator().stale()
    assert not stale, (
        f"stale generated blocks in {[p.relative_to(ROOT).as_posix() for p in stale]}; "
        "run: python docs/generate.py"
    )


def test_the_pages_the_issue_found_stale_have_generated_blocks():
    """The statements that drifted before are generated now, not typed."""
    expected = {
        "README.md": ["training-command"],
        "docs/model-file.md": ["bundle-files", "learners", "model-card"],
        "docs/training.md": ["head-defaults", "learners", "priors-card"],
        "docs/performance.md": ["performance"],
        "docs/explain.md": ["command: popbatch explain"],
    }
    for page, names in expected.items():
        text = (ROOT / page).read_text(encoding="utf-8")
        for name in names:
            assert f"<!-- generated: {name}" in text, f"{page} has no generated block {name}"


def test_a_changed_manifest_makes_the_pages_stale():
    """The check compares with the source: a different model id or file size shows."""
    module = generator()
    m = module.manifest()
    m["model_id"] = "0" * 64
    assert set(module.stale(m)) >= {DOCS / "model-file.md"}


def test_generator_fills_only_between_markers():
    module = generator()
    page = "before\n<!-- generated: throughput -->\nold\n<!-- /generated -->\nafter\n"
    out = module.render_page(page, module.manifest())
    assert out.startswith("before\n<!-- generated: throughput -->\n| heads |")
    assert out.endswith("<!-- /generated -->\nafter\n")
    assert "old" not in out


def all_doc_pages() -> list[Path]:
    return [README, ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]


# A backticked repository path: starts with one of the repository's folders.
REPO_PATH = re.compile(
    r"`((?:batch|bench|docs|export|models|popbatch|sql|tests|examples|\.ci)/[\w./\-]*)`"
)


# Folders the repository ignores because commands write them (bench/out/, runs/):
# a page may name a file a documented command makes there.
OUTPUT_DIRS = tuple(
    line.strip() for line in (ROOT / ".gitignore").read_text().splitlines() if line.endswith("/")
)


@pytest.mark.parametrize("page", all_doc_pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_backticked_repository_paths_exist(page):
    """A path the docs name (`batch/...`, `popbatch/...`, `docs/...`) is in the tree.
    The changelog's release entries may name what a release removed, so it is left out."""
    if page.name == "CHANGELOG.md":
        pytest.skip("the changelog records paths of past releases")
    text = page.read_text(encoding="utf-8")
    missing = sorted(
        {p for p in REPO_PATH.findall(text)
         if not (ROOT / p.rstrip("/")).exists() and not p.startswith(OUTPUT_DIRS)}
    )  # fmt: skip
    assert not missing, f"{page.relative_to(ROOT)} names paths that do not exist: {missing}"


ISSUE_NUMBER = re.compile(r"\b[Ii]ssues? ?#?\d+\b|(?<![\w&/])#\d+\b")


@pytest.mark.parametrize("page", all_doc_pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_tmp_paths_or_issue_numbers(page):
    """Docs say why in words: a /tmp path is gone after a reboot and an issue number
    means nothing to a reader of the repository."""
    text = page.read_text(encoding="utf-8")
    assert "/tmp" not in text, f"{page.relative_to(ROOT)} names a /tmp path"
    found = ISSUE_NUMBER.findall(text)
    assert not found, f"{page.relative_to(ROOT)} names issue numbers: {found}"


def test_api_explain_example_prints_what_the_page_says():
    """docs/api.md's explain example, run with the embedded default model on the sample
    catalog: its comments are its real output (the default ships background rows, so
    `background` is `model`). tests/test_api.py runs every example as written."""
    import popbatch

    page = (DOCS / "api.md").read_text(encoding="utf-8")
    why = popbatch.explain(str(ROOT / "batch" / "sample" / "catalog.csv"), top=3)
    assert 'popbatch.explain("catalog.csv", top=3)' in page
    assert (
        f"print(why.head, why.unit, why.background)  # {why.head} {why.unit} {why.background}\n"
        in page
    )
    n = why.table.num_rows
    assert f"print(why.table.num_rows)  # 3 tracks x {n // 3} features = {n}\n" in page


def test_app_screenshot_shows_the_default_model():
    """docs/app.png is made by tests/test_app_browser.py (POPBATCH_UPDATE_SCREENSHOT=1),
    which records in docs/app.png.json the model id the page showed: after the default
    model changes, this fails until the screenshot is made again."""
    import json

    from popbatch.core.bundle import load_model

    sidecar = json.loads((DOCS / "app.png.json").read_text(encoding="utf-8"))
    model_id = load_model().manifest["model_id"]
    assert sidecar["model_id"] == model_id, (
        f"docs/app.png shows model {sidecar['shown']}, the default is {model_id[:12]}; run: "
        "POPBATCH_UPDATE_SCREENSHOT=1 python -m pytest tests/test_app_browser.py -k predict"
    )
    assert sidecar["shown"] == model_id[:12]


def test_the_readmes_defaults_are_the_codes():
    """The batch size and the sample's size the README and the scoring guide state are the
    code's default and the file's row count, so a changed default shows here."""
    import csv

    from popbatch.core import DEFAULT_BATCH_SIZE

    readme = README.read_text(encoding="utf-8")
    scoring = (DOCS / "scoring.md").read_text(encoding="utf-8")
    assert f"in batches of {DEFAULT_BATCH_SIZE:,} (`--batch-size`)" in readme
    assert f"(default {DEFAULT_BATCH_SIZE:,})" in scoring
    with open(ROOT / "batch" / "sample" / "catalog.csv", newline="", encoding="utf-8") as f:
        rows = sum(1 for _ in csv.reader(f)) - 1
    assert f"sample catalog ({rows:,} real tracks)" in readme


def test_the_training_guides_shares_are_the_codes():
    """The training guide states in words the shares the recipe uses (artists and albums
    held out of the prior folds, the popularity head's and the popular stack's unseen-album
    copies): a changed default fails here until the guide says it."""
    pytest.importorskip("sklearn", reason="the training recipe needs the train extra")
    from popbatch.models.learners import LearnerParams
    from popbatch.models.popularity import RegressorParams
    from popbatch.models.priors import PriorRecipe

    words = {0.1: "tenth", 0.25: "quarter", 0.5: "half"}
    text = " ".join((DOCS / "training.md").read_text(encoding="utf-8").split())
    recipe = PriorRecipe()
    assert f"for a random {words[recipe.artist_share]} of the primary artists" in text
    assert f"for a random {words[recipe.album_share]} of the remaining albums" in text
    assert f"seeded copy of a {words[RegressorParams().unseen_share]} of its training" in text
    assert f"seeded copy of a {words[LearnerParams().unseen_share]} of theirs" in text
