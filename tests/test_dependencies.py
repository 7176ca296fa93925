"""pyproject.toml declares ranges; constraints.txt and constraints-lowest.txt hold what CI tests.

A range's floor is a promise that popbatch works on that version: it must be
the version CI's lowest-versions step installs (constraints-lowest.txt) for the
scoring dependencies and the spark extra, and no higher than the verified set
(constraints.txt) for every other extra.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
# What the lowest-versions step pins at the floor: what a user's environment fixes.
LOWEST_TESTED = ("dependencies", "spark")


def requirements(group: str) -> list[Requirement]:
    names = (
        PROJECT["dependencies"]
        if group == "dependencies"
        else PROJECT["optional-dependencies"][group]
    )
    return [Requirement(r) for r in names]


GROUPS = ["dependencies", *PROJECT["optional-dependencies"]]
ALL = [(group, r) for group in GROUPS for r in requirements(group)]


def pins(name: str) -> dict[str, Version]:
    """``name==version`` lines of a constraints file, by canonical name."""
    found = {}
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            package, _, version = line.partition("==")
            found[canonicalize_name(package)] = Version(version)
    return found


def floor(req: Requirement) -> Version:
    (low,) = [Version(s.version) for s in req.specifier if s.operator == ">="]
    return low


@pytest.mark.parametrize("group,req", ALL, ids=lambda x: str(x))
def test_every_dependency_is_a_range_with_a_floor_and_a_ceiling(group, req):
    operators = sorted(s.operator for s in req.specifier)
    assert operators == ["<", ">="], f"{group}: {req} is not '>=floor,<ceiling'"


@pytest.mark.parametrize("group,req", ALL, ids=lambda x: str(x))
def test_the_verified_set_is_inside_every_range(group, req):
    version = pins("constraints.txt").get(canonicalize_name(req.name))
    assert version is not None, f"constraints.txt has no {req.name}"
    assert req.specifier.contains(version), f"constraints.txt {req.name}=={version} not in {req}"
    if group not in LOWEST_TESTED:  # only the verified set tests these: it is their floor
        assert floor(req) == version, f"{group}: {req}'s floor is untested ({version} is)"


@pytest.mark.parametrize(
    "req", [r for g in LOWEST_TESTED for r in requirements(g)], ids=lambda r: r.name
)
def test_the_lowest_step_installs_each_floor(req):
    version = pins("constraints-lowest.txt").get(canonicalize_name(req.name))
    assert version == floor(req), f"constraints-lowest.txt has {req.name} {version}, not {req}"


def test_ci_installs_both_sets():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "-c constraints.txt -e '.[train,test,app,spark]'" in ci
    assert "-c constraints-lowest.txt -e '.[test,spark]'" in ci
