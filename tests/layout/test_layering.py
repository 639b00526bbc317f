"""The layers of ``replication`` stay layers: no import reaches up, no import cycle, no I/O in the core.

The layers, lowest first, are listed in ``LAYERS`` (see ``replication/__init__.py``
and docs/architecture.md). Every import a module makes — at the top or inside
a function, since both run — is read from its source; imports only for the
type checker (under ``if TYPE_CHECKING:``) do not run and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "replication"
LAYERS = ["native", "protocol", "storage", "transport", "client", "testing", "ops"]
# What the sans-IO core may not import: sockets, processes, threads, clocks, randomness, files.
NOT_IN_PROTOCOL = {"zmq", "os", "socket", "subprocess", "threading", "time", "random", "shutil", "tempfile"}


def _module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(path: Path, root: Path = ROOT) -> list[str]:
    """Absolute names of every module ``path`` imports when it runs (not under TYPE_CHECKING)."""
    me = _module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append(mod)
            # ``from . import wire`` imports a module named by the alias.
            out.extend(f"{mod}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return out


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) > 1 and parts[0] == "replication" and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return None


def _graph() -> dict[str, set[str]]:
    sources = _sources()
    graph: dict[str, set[str]] = {}
    for name, path in sources.items():
        graph[name] = {m for m in _runtime_imports(path) if m in sources and m != name}
    return graph


def test_every_module_is_in_a_layer():
    # The package's faces sit above every layer: ``replication`` itself and ``replication.aio``
    # (the contract's name for the asyncio client, a re-export of client.aio_client).
    faces = {"replication", "replication.aio"}
    stray = [m for m in _sources() if m not in faces and _layer(m) is None]
    assert stray == []


def test_no_layer_imports_a_higher_one():
    upward = []
    for name, deps in _graph().items():
        mine = _layer(name)
        if mine is None:
            continue
        for dep in sorted(deps):
            theirs = _layer(dep)
            if theirs is not None and theirs > mine:
                upward.append(f"{name} imports {dep}")
    assert upward == []


def test_no_runtime_import_cycle():
    graph = _graph()
    # Package __init__ modules are imported on the way to any submodule: leave out the edge
    # from a submodule to its own packages, which is not a dependency in either direction.
    for name in graph:
        graph[name] = {d for d in graph[name] if not name.startswith(d + ".")}
    cycles = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                cycles.append(" -> ".join([*stack[stack.index(d) :], d]))
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert cycles == []


def test_the_protocol_core_does_no_io():
    found = []
    for name, path in _sources().items():
        if _layer(name) == LAYERS.index("protocol"):
            for mod in _runtime_imports(path):
                if mod.split(".")[0] in NOT_IN_PROTOCOL:
                    found.append(f"{name} imports {mod}")
    assert found == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from ..transport import driver\n", ["replication.transport", "replication.transport.driver"]),
        ("if TYPE_CHECKING:\n    from ..ops import cli\n", []),
        ("def f():\n    import zmq\n", ["zmq"]),
    ],
)
def test_the_import_reader_sees_what_runs(tmp_path, source, expected):
    # The checks above are only as good as this reader: relative, nested and type-only imports.
    pkg = tmp_path / "replication" / "protocol"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text(source)
    assert _runtime_imports(f, tmp_path / "replication") == expected
