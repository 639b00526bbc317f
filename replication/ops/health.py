"""What ``matchcore status`` prints and whether the group is healthy (its exit code).

For: :func:`problems` (what is wrong with a group, by every node's and the witness's
status: no primary, a node that does not answer, a primary running solo, a diverged
node, a failed or damaged journal) and :func:`table` (the status as lines: role,
epoch, seq, digest, lag, in-sync set, solo, auth and divergence per node). Not for:
asking the nodes (``client.admin.group_status``) or the command line (``ops.cli``).
"""

from __future__ import annotations

from typing import Any

# ``matchcore status`` exit codes: healthy; something is wrong (each problem printed); the
# group file cannot be used (``ops.cli.EXIT_BAD_CONFIG``).
EXIT_HEALTHY, EXIT_UNHEALTHY = 0, 1

SERVING = ("primary", "draining")


def problems(st: dict[str, dict[str, Any]]) -> list[str]:
    """Each thing wrong with the group, one line each; [] when it is healthy."""
    out: list[str] = []
    nodes = {n: s for n, s in st.items() if n != "witness"}
    for name, s in st.items():
        if s.get("role") == "unreachable":
            out.append(f"{name} does not answer")
    primaries = [n for n, s in nodes.items() if s.get("role") in SERVING]
    if not primaries:
        out.append("no primary: the group accepts no orders")
    elif len(primaries) > 1:
        epochs = ", ".join(f"{n} (epoch {nodes[n].get('epoch')})" for n in primaries)
        out.append(f"more than one node says it is primary: {epochs} (the older is about to step down)")
    for name in primaries:
        s = nodes[name]
        if s.get("solo"):
            out.append(f"primary {name} runs solo: no standby is in sync, one more fault loses orders")
        if s.get("lease") == "expired":
            out.append(f"primary {name}'s lease has expired: it stops acknowledging")
    for name, s in nodes.items():
        if s.get("role") == "diverged" or s.get("diverged_at"):
            out.append(f"{name} has diverged at seq {s.get('diverged_at')}: rebuild it (docs/operations.md)")
        if s.get("error"):
            out.append(f"{name}'s journal failed: {s['error']}")
        if s.get("damaged"):
            out.append(f"{name}'s journal is damaged: {s['damaged']}")
    return out


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "(none)"
    return str(value)


def table(st: dict[str, dict[str, Any]], counters: bool = True) -> list[str]:
    """The status as lines of text: one row per node and the witness, then the problems."""
    head = (
        f"{'node':<10}{'role':<12}{'epoch':>6}{'last_seq':>10}  {'digest':<17}{'lag':>6}  "
        f"{'in-sync':<12}{'solo':<6}{'auth':<7}{'diverged':<9}"
    )
    lines = [head + ("counters" if counters else "")]
    for name, s in st.items():
        serving = s.get("role") in SERVING
        row = (
            f"{name:<10}{s.get('role', '?'):<12}{_cell(s.get('epoch')):>6}{_cell(s.get('last_seq')):>10}  "
            f"{_cell(s.get('digest')):<17}{_cell(s.get('lag')):>6}  "
            f"{_cell(s.get('isr')) if serving else '-':<12}{_cell(s.get('solo')) if serving else '-':<6}"
            f"{_cell(s.get('auth')):<7}{_cell(s.get('diverged_at') or None):<9}"
        )
        if counters:
            row += " ".join(f"{k}={v}" for k, v in s.get("counters", {}).items())
        lines.append(row.rstrip())
        for key in ("error", "damaged"):  # a failed or damaged journal: why this node does not serve
            if s.get(key):
                lines.append(f"{'':<10}{key}: {s[key]}")
    found = problems(st)
    lines.append("health: ok" if not found else "health: " + "; ".join(found))
    return lines
