"""The deployment files (issue 16): systemd units for the three roles and the Dockerfile.

For: that each unit parses, runs the right ``matchcore`` subcommand with arguments the real
CLI accepts, restarts as its role allows (a primary never restarts as primary; a standby and
the witness do), and caps BLAS threads; ``systemd-analyze verify`` accepts the units where
it is installed. The Dockerfile is multi-stage (a build stage with a compiler makes the
wheel, the runtime stage installs only it), copies files that exist, and runs ``matchcore``
as an unprivileged user.
Not for: building the image (no container daemon in CI) or running a unit.
"""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from matching.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
EXPECTED = {
    "matchcore-primary@.service": "primary",
    "matchcore-standby@.service": "standby",
    "matchcore-witness.service": "witness",
}


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((UNITS / name).read_text(encoding="utf-8"))
    return parser


def test_one_unit_per_role() -> None:
    assert sorted(p.name for p in UNITS.glob("*.service")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_unit_runs_its_role(name: str) -> None:
    unit = _unit(name)
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"].replace("%i", "a").replace("$MATCHCORE_ARGS", ""))
    assert argv[0].endswith("/matchcore")
    args = build_parser().parse_args(argv[1:])  # the real CLI accepts the command line
    assert args.command == EXPECTED[name]
    assert args.config == "/etc/matchcore/group.toml"
    if EXPECTED[name] != "witness":
        assert args.node == "a"
    assert "OPENBLAS_NUM_THREADS=1" in service["Environment"]
    assert service["KillSignal"] == "SIGTERM"
    assert service["User"] == "matchcore"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    # A crashed primary comes back as a standby (docs/operations.md), never by itself as primary.
    assert service["Restart"] == ("no" if EXPECTED[name] == "primary" else "on-failure")
    if EXPECTED[name] == "primary":
        assert unit["Unit"]["Conflicts"] == "matchcore-standby@%i.service"


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    # The units name the installed command; point them at this checkout's so verify finds it.
    matchcore = shutil.which("matchcore") or str(ROOT / ".venv" / "bin" / "matchcore")
    if not Path(matchcore).exists():
        pytest.skip("no matchcore command installed")
    for name in EXPECTED:
        text = (UNITS / name).read_text(encoding="utf-8").replace("/usr/local/bin/matchcore", matchcore)
        (tmp_path / name).write_text(text, encoding="utf-8")
    targets = [str(tmp_path / n.replace("@.", "@a.")) for n in EXPECTED]
    r = subprocess.run([tool, "verify", *targets], capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and "Failed to" in r.stderr and "bus" in r.stderr.lower():
        pytest.skip(f"systemd-analyze cannot run here: {r.stderr.strip()[:200]}")
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_dockerfile_is_multi_stage_and_runs_matchcore() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    build_part = lines[lines.index(stages[0]) : lines.index(stages[1])]
    runtime_part = lines[lines.index(stages[1]) :]
    assert any("gcc" in line for line in build_part)  # the extensions are compiled there
    assert any("pip wheel" in line for line in build_part)
    assert not any("gcc" in line for line in runtime_part)
    assert "COPY --from=build /wheels /wheels" in runtime_part
    for line in build_part:
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), f"the Dockerfile copies {src}, which is not in the repository"
    assert 'ENTRYPOINT ["matchcore"]' in runtime_part
    assert "USER matchcore" in runtime_part
    assert any(line.startswith("ENV ") and "OPENBLAS_NUM_THREADS=1" in line for line in runtime_part)
