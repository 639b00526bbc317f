"""Packaging promises that need no build (issue 16): one version in one place, the typing
markers, the licence and changelog, and Python 3.10 syntax everywhere.

For: what ``pyproject.toml`` and the source tree declare. Not for: the built wheel
(``test_wheel_install.py``, run by ``make wheel``).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from matching._version import __version__

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_version_is_written_once() -> None:
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "matching._version.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    out = subprocess.run(
        [sys.executable, "-m", "matching.cli", "--version"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert out.stdout.strip() == f"matchcore {__version__}"
    import matching
    import replication

    assert matching.__version__ == replication.__version__ == __version__


def test_changelog_names_the_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (\S+)", text, flags=re.M)
    assert headings[0] == "Unreleased" or headings[0] == __version__
    assert __version__ in headings or headings[0] == "Unreleased"


def test_licence_typing_markers_and_metadata() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert project["requires-python"] == ">=3.10"
    assert "Typing :: Typed" in project["classifiers"]
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    for package in ("matching", "replication"):
        assert (ROOT / package / "py.typed").exists()
        assert "py.typed" in data[package]


def test_every_source_file_parses_as_python_3_10() -> None:
    bad = []
    for top in ("matching", "replication", "benchmarks", "examples", "tests"):
        for path in sorted((ROOT / top).rglob("*.py")):
            try:
                ast.parse(path.read_text(encoding="utf-8"), str(path), feature_version=(3, 10))
            except SyntaxError as exc:
                bad.append(f"{path.relative_to(ROOT)}:{exc.lineno}: {exc.msg}")
    assert bad == []


def test_shipped_text_points_only_inside_the_repository() -> None:
    # DESIGN.md is the team's, not the users': what ships (code, stubs, docs) points to docs/.
    where = [ROOT / "README.md", ROOT / "CHANGELOG.md"]
    for top in ("matching", "replication", "docs", "examples"):
        where += [p for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".pyx", ".pxi", ".pyi", ".md")]
    assert [str(p.relative_to(ROOT)) for p in where if "DESIGN.md" in p.read_text(encoding="utf-8")] == []
