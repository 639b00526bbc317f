"""What ``pip install .`` puts into site-packages, and where ``matchcore bench`` writes its results.

For: the packaging promises — the harnesses install as ``matchcore_benchmarks`` (never a generic
top-level ``benchmarks`` that would collide with other projects), every package directory of
``matching/`` and ``replication/`` is installed, the installed copy's ``matchcore`` still has
``bench`` and the node commands, and results land under the current directory, never beside
the installed files.
Not for: the compiled extensions (building them takes minutes); the installed tree here is what
setuptools' ``build_py`` copies from ``pyproject.toml``'s configuration, the same step a wheel
build runs for the pure-Python part.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import common

ROOT = Path(__file__).resolve().parents[2]

# setuptools, configured from pyproject.toml alone, copying the packages into argv[1]. Its
# egg-info scratch goes to argv[2], so the checkout is left untouched.
_BUILD_PY = """\
import sys
from setuptools.config.pyprojecttoml import apply_configuration
from setuptools.dist import Distribution

dist = Distribution({"script_name": "setup.py"})
apply_configuration(dist, "pyproject.toml")
dist.get_command_obj("egg_info").egg_base = sys.argv[2]
build_py = dist.get_command_obj("build_py")
build_py.build_lib = sys.argv[1]
build_py.compile = 0
dist.run_command("build_py")
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The pure-Python tree a non-editable install puts into site-packages."""
    lib = tmp_path_factory.mktemp("site-packages")
    scratch = tmp_path_factory.mktemp("egg-base")
    subprocess.run(
        [sys.executable, "-c", _BUILD_PY, str(lib), str(scratch)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return lib


def _python_files(top: Path) -> set[str]:
    return {str(p.relative_to(top)) for p in top.rglob("*.py") if "__pycache__" not in p.parts}


def test_install_has_no_top_level_benchmarks_package(installed):
    top_level = {p.name for p in installed.iterdir()}
    assert "benchmarks" not in top_level
    assert top_level == {"matching", "replication", "matchcore_benchmarks"}
    # The harnesses are all there under their installed name, and nothing from results/.
    assert _python_files(installed / "matchcore_benchmarks") == _python_files(ROOT / "benchmarks")
    assert not (installed / "matchcore_benchmarks" / "results").exists()


@pytest.mark.parametrize("package", ["matching", "replication"])
def test_install_has_every_package_directory(package, installed):
    """A subpackage added to the tree but not to pyproject.toml's list fails here."""
    assert _python_files(installed / package) == _python_files(ROOT / package)


def _run_installed(installed: Path, cwd: Path, *code_or_args: str) -> subprocess.CompletedProcess:
    """Python with the installed tree first on the path, started outside the checkout."""
    env = dict(os.environ, PYTHONPATH=str(installed))
    return subprocess.run(
        [sys.executable, *code_or_args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_installed_matchcore_has_bench_from_the_installed_name(installed, tmp_path):
    code = (
        "import json, sys\n"
        "from matching.cli import build_parser\n"
        "parser = build_parser()\n"
        "args = parser.parse_args(['bench', 'engine', '--quick'])\n"
        "bench = sorted(m for m in sys.modules if m.split('.')[0].endswith('benchmarks'))\n"
        "print(json.dumps({'bench': bench, 'out': args.out, 'cli': sys.modules['matching.cli'].__file__}))\n"
    )
    p = _run_installed(installed, tmp_path, "-c", code)
    assert p.returncode == 0, p.stderr
    seen = json.loads(p.stdout)
    assert Path(seen["cli"]).is_relative_to(installed)
    assert "matchcore_benchmarks.cli" in seen["bench"]
    assert all(m.startswith("matchcore_benchmarks") for m in seen["bench"]), seen["bench"]
    assert Path(seen["out"]) == tmp_path / "bench-results"


@pytest.mark.parametrize(
    "argv",
    [("-m", "matching.cli", "primary", "--help"), ("-m", "replication.ops.cli", "--help")],
)
def test_installed_node_commands_start(argv, installed, tmp_path):
    p = _run_installed(installed, tmp_path, *argv)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage:"), p.stdout[:300]


def test_subcommands_fall_back_to_the_checkout_name():
    from matching import cli

    found = cli._subcommand_module(("no_such_matchcore_package.cli", "benchmarks.cli"))
    assert found is not None and found.__name__ == "benchmarks.cli"
    assert cli._subcommand_module(("no_such_matchcore_package.cli",)) is None


def test_results_default_under_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert common.default_out() == tmp_path / "bench-results"
    # Run from a checkout's root, the results go to its (git-ignored) benchmarks/results.
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    assert common.default_out() == tmp_path / "benchmarks" / "results"


def test_a_harness_without_out_writes_under_the_current_directory(tmp_path, monkeypatch):
    pytest.importorskip("hdrh")
    from benchmarks import engine

    monkeypatch.chdir(tmp_path)
    argv = ["--commands", "200", "--reference-commands", "50", "--repeat", "1", "--instruments", "1"]
    assert engine.main([*argv, "--no-plot"]) == 0
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["bench-results/engine.json"]
