"""The built wheel installs into a clean virtual environment and runs (issue 16, packaging).

For: ``make wheel``, which builds ``dist/matchcore-*.whl`` and runs this file with
``MATCHCORE_WHEEL`` naming it. A fresh venv (no access to the checkout: every command
runs from a temporary directory) installs the wheel with its dependencies, and then
``matchcore --version`` prints the one version, ``matchcore replay`` of an example log
gives the events and digest the checkout's engine gives, the compiled engine is the one
in use, the ``py.typed`` markers are installed, and a short ``matchcore demo`` runs a
real group and loses nothing.
Not for: ``make test``, where no wheel is built (building one compiles the extensions
and installing it downloads the dependencies: minutes): there it is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

WHEEL = os.environ.get("MATCHCORE_WHEEL", "")
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(not WHEEL, reason="run by `make wheel` (MATCHCORE_WHEEL names the built wheel)"),
    pytest.mark.timeout(900),
]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean venv with the wheel installed; returns its bin directory."""
    home = tmp_path_factory.mktemp("wheelvenv")
    venv.EnvBuilder(with_pip=True, clear=True).create(home / "venv")
    bin_dir = home / "venv" / "bin"
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", str(Path(WHEEL).resolve())],
        check=True,
        env=env,
        cwd=home,
        timeout=600,
    )
    return bin_dir


def _run(bin_dir: Path, cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )


def test_version_is_the_one_version(installed: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from matching._version import __version__
    finally:
        sys.path.pop(0)
    r = _run(installed, tmp_path, "matchcore", "--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"matchcore {__version__}"
    probe = (
        "import matching, replication, pathlib;"
        "print(matching.__version__, replication.__version__, matching.Engine is not None,"
        " all((pathlib.Path(m.__file__).parent / 'py.typed').exists() for m in (matching, replication)),"
        " pathlib.Path(matching.__file__).is_relative_to(pathlib.Path(__import__('sys').prefix)))"
    )
    r = _run(installed, tmp_path, "python", "-c", probe)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [__version__, __version__, "True", "True", "True"]


def test_replay_of_an_example_log(installed: Path, tmp_path: Path) -> None:
    log = ROOT / "examples" / "iceberg_stp.jsonl"
    r = _run(installed, tmp_path, "matchcore", "replay", "--depth", str(log))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    # The checkout's engine on the same log: the same events and the same digest.
    here = subprocess.run(
        [sys.executable, "-m", "matching.cli", "replay", "--depth", str(log)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    assert lines == [json.loads(x) for x in here.stdout.splitlines()]
    assert "digest" in lines[-1]


def test_short_demo(installed: Path, tmp_path: Path) -> None:
    r = _run(installed, tmp_path, "matchcore", "demo", "--orders", "300", "--json", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["lost"] == 0 and result["duplicates"] == 0 and result["digest_equal"], result
    assert "Traceback" not in r.stderr
