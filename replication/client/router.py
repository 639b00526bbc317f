"""``replication.Router``: one client for several groups, each command sent to the group of its instrument.

For: scale-out as docs/operations.md "Several groups: routing by instrument" describes it — every group (one
primary, its standbys, a witness) serves a set of instruments, and a client
routes each command by instrument. A small TOML *routes* file names the
groups and the instruments each serves::

    default = "g1"              # optional: the group of any instrument not listed
    [groups.g1]
    config = "g1.toml"          # the group file, relative to the routes file
    instruments = [1, 2, 3]
    [groups.g2]
    config = "g2.toml"
    instruments = [4, 5]

:func:`load_routes` reads and validates it; :class:`Router` has the call
surface of :class:`replication.Client` (blocking ``submit`` ... ``apply``,
pipelined ``send`` ... ``poll``) over one ``Client`` per group, made on first
use with the same client id.

Not for: atomicity across groups. A mass cancel without an instrument goes
to every group as one request each; each group executes its part on its own
sequence, so another client may see one group's orders cancelled and
another's not yet. Nor for moving an instrument between groups while it has
orders resting (stop the flow, move it, restart the clients), nor threads
(one ``Router`` per thread, like ``Client``).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from matching import codes, commands

from ..protocol import wire
from ..transport import group_file as config
from .calls import EngineCalls

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

_TOP_KEYS = {"groups", "default"}
_GROUP_KEYS = {"config", "instruments"}
# Field positions of a command record, for commands given as tuples or array rows.
_F_INSTRUMENT = commands.CommandRecord._fields.index("instrument")
_F_OP = commands.CommandRecord._fields.index("op")
_F_FLAGS = commands.CommandRecord._fields.index("flags")


# -- the routes file ---------------------------------------------------------------------


@dataclass(frozen=True)
class GroupRoute:
    """One group of a routes file: its name, its group file (absolute) and the instruments it serves."""

    name: str
    config: str
    instruments: tuple[int, ...]


@dataclass(frozen=True)
class Routes:
    """A validated routes file.

    ``groups`` keeps the file's order: that is the order a mass cancel to
    every group is sent in and its events are returned in.
    """

    path: str
    groups: dict[str, GroupRoute]
    default: str | None = None

    @property
    def table(self) -> dict[int, str]:
        """Instrument -> group name, for every instrument listed (not the default's catch-all)."""
        return {i: g.name for g in self.groups.values() for i in g.instruments}

    def group_of(self, instrument: int) -> str | None:
        """The group serving ``instrument`` (the default group if none lists it; ``None`` if no default). O(n)."""
        for g in self.groups.values():
            if instrument in g.instruments:
                return g.name
        return self.default


def _is_int(x: Any) -> bool:
    # TOML booleans load as bool, an int subclass; true is not instrument 1.
    return isinstance(x, int) and not isinstance(x, bool)


def parse_routes(doc: Mapping[str, Any], path: str = "routes.toml") -> Routes:
    """Validate an already-parsed routes document; relative ``config`` paths are taken from ``path``'s directory.

    Raises
    ------
    ValueError
        Naming the file and the offending group: no groups, an unknown key,
        a missing or non-string ``config``, instruments that are not a list
        of integers in 0..2**32-1, a group with no instruments (only the
        default group may have none), an instrument listed twice, two groups
        on the same group file, or a ``default`` that names no group.
    """
    where = os.fspath(path)
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(unknown)} (expected [groups.<name>] and default)"
        )
    groups_doc = doc.get("groups")
    if not isinstance(groups_doc, Mapping) or not groups_doc:
        raise ValueError(f"{where}: needs at least one [groups.<name>] table")
    default = doc.get("default")
    if default is not None and not isinstance(default, str):
        raise ValueError(f"{where}: default must be a group name (a string), not {default!r}")
    if default is not None and default not in groups_doc:
        raise ValueError(
            f"{where}: default names unknown group {default!r} (groups: {', '.join(groups_doc)})"
        )
    base = os.path.dirname(os.path.abspath(where))
    groups: dict[str, GroupRoute] = {}
    owner: dict[int, str] = {}
    by_config: dict[str, str] = {}
    for name, spec in groups_doc.items():
        label = f"{where}: [groups.{name}]"
        if not isinstance(spec, Mapping):
            raise ValueError(f"{label} must be a table with config and instruments")
        unknown = sorted(set(spec) - _GROUP_KEYS)
        if unknown:
            raise ValueError(f"{label}: unknown key(s) {', '.join(unknown)} (expected config, instruments)")
        cfg = spec.get("config")
        if not isinstance(cfg, str) or not cfg:
            raise ValueError(f"{label}: config must be the path of a group file, not {cfg!r}")
        cfg = os.path.normpath(cfg if os.path.isabs(cfg) else os.path.join(base, cfg))
        if cfg in by_config:
            raise ValueError(f"{label}: group file {cfg} is already group {by_config[cfg]!r}")
        by_config[cfg] = name
        instruments = spec.get("instruments", [])
        if not isinstance(instruments, list) or not all(_is_int(i) for i in instruments):
            raise ValueError(f"{label}: instruments must be a list of integers, not {instruments!r}")
        if not instruments and name != default:
            raise ValueError(f"{label}: serves no instruments (only the default group may list none)")
        for i in instruments:
            if not 0 <= i <= codes.UINT32_MAX:
                raise ValueError(f"{label}: instrument {i} is out of range 0..{codes.UINT32_MAX}")
            if i in owner:
                other = "it twice" if owner[i] == name else f"it too, and so does group {owner[i]!r}"
                raise ValueError(f"{label}: instrument {i} is in two places: this group lists {other}")
            owner[i] = name
        groups[name] = GroupRoute(name, cfg, tuple(instruments))
    return Routes(os.path.abspath(where), groups, default)


def load_routes(path: str, check_groups: bool = True) -> Routes:
    """Read and validate a routes file.

    Parameters
    ----------
    path : str
        The routes TOML file.
    check_groups : bool
        Also read every group file (``replication.transport.group_file.load``) and check
        that no two groups share a node endpoint, so a bad group file fails
        here rather than at the first order for one of its instruments.

    Raises
    ------
    ValueError
        On anything :func:`parse_routes` refuses, a TOML syntax error, or
        (with ``check_groups``) a missing or invalid group file.
    OSError
        If the routes file itself cannot be read.
    """
    with open(path, "rb") as f:
        try:
            doc = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from None
    routes = parse_routes(doc, path)
    if check_groups:
        load_groups(routes)
    return routes


def load_groups(routes: Routes) -> dict[str, config.GroupConfig]:
    """Read every group file of ``routes``: ``{group name: GroupConfig}``; ``ValueError`` names the group."""
    out: dict[str, config.GroupConfig] = {}
    seen: dict[str, str] = {}
    for g in routes.groups.values():
        try:
            cfg = config.load(g.config)
        except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{routes.path}: [groups.{g.name}] config {g.config}: {exc}") from None
        for node in cfg.nodes.values():
            if node.endpoint in seen:
                raise ValueError(
                    f"{routes.path}: groups {seen[node.endpoint]!r} and {g.name!r} both have a node "
                    f"at {node.endpoint}"
                )
            seen[node.endpoint] = g.name
        out[g.name] = cfg
    return out


def format_ranges(instruments: Iterable[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"`` (for printing a routing table)."""
    out: list[str] = []
    for _, run in itertools.groupby(enumerate(sorted(instruments)), lambda p: p[1] - p[0]):
        nums = [n for _, n in run]
        out.append(str(nums[0]) if len(nums) == 1 else f"{nums[0]}-{nums[-1]}")
    return ", ".join(out)


# -- the router --------------------------------------------------------------------------


class Router(EngineCalls):
    """A client of several groups; each command goes to the group serving its instrument.

    Same methods and events as :class:`replication.Client`. Request ids
    returned by ``send``/``send_many`` and seen in ``poll``/``poll_replies``
    are the router's own (1, 2, 3, ...): every group's ``Client`` numbers
    its wire requests itself, so two groups may use the same wire id, and
    each stays unique per (client id, group) as the groups' dedupe tables
    require. Do not send through :meth:`client` directly while requests of
    the router are in flight: the router collects every reply of its clients.

    Parameters
    ----------
    routes : Routes
        From :func:`load_routes`.
    client_id : int
        Positive; the same id is used in every group (each group keeps its
        own dedupe table and sessions, so that is safe), and must be this
        router's alone: the ``Client`` it opens in a group opens a session
        there, fencing any older live client of the id in that group.
    timeout : float
        Seconds a blocking call waits for its reply before ``TimeoutError``.
    **client_kw
        Passed to every group's ``Client.from_config`` (``retry_timeout``,
        ``first_request_id``, ``cert`` ...).
    """

    def __init__(self, routes: Routes, client_id: int, timeout: float = 10.0, **client_kw: Any) -> None:
        self.routes = routes
        self.client_id = client_id
        self.timeout = timeout
        self._client_kw = dict(client_kw, timeout=timeout)
        self._table = routes.table
        self._clients: dict[str, Any] = {}  # group name -> Client, in creation order
        self._ids = itertools.count(1)
        # router id -> {group: wire request id}; the parts still unanswered.
        self._waiting: dict[int, dict[str, int]] = {}
        self._parts: dict[int, dict[str, wire.Reply]] = {}  # router id -> answered parts
        self._owner: dict[tuple[str, int], int] = {}  # (group, wire request id) -> router id
        self._done: dict[int, list[wire.Reply]] = {}  # router id -> replies, in group order
        self._poller: Any = None  # zmq.Poller over every client's sockets (rebuilt when one is added)
        self.closed = False

    @classmethod
    def from_file(cls, path: str, client_id: int, **kw: Any) -> Router:
        """A router for the routes file ``path`` (validated, group files included; see :func:`load_routes`)."""
        return cls(load_routes(path), client_id, **kw)

    # -- routing -----------------------------------------------------------------------

    @property
    def groups(self) -> list[str]:
        """Group names in routes-file order."""
        return list(self.routes.groups)

    def group_of(self, instrument: int) -> str:
        """The group serving ``instrument``; ``ValueError`` if none does and there is no default. O(1)."""
        name = self._table.get(instrument, self.routes.default)
        if name is None:
            raise ValueError(
                f"instrument {instrument} is served by no group of {self.routes.path} "
                "(and it has no default group)"
            )
        return name

    def route(self, command: Mapping | tuple) -> str | None:
        """The group ``command`` goes to; ``None`` for a mass cancel without an instrument (every group).

        ``command`` is a command-log dict or a record tuple / array row as
        ``Client.send`` takes. ``ValueError`` if it names no instrument a
        group serves (a command without a valid instrument goes to the
        default group, whose engine rejects it with a reason).
        """
        if isinstance(command, Mapping):
            op = command.get("op")
            is_mass = isinstance(op, str) and op.lower() == "mass_cancel"  # the op names fold case
            instrument = command.get("instrument")
            if is_mass and instrument is None:
                return None
        else:
            is_mass = int(command[_F_OP]) == codes.OP_MASS_CANCEL
            if is_mass and not int(command[_F_FLAGS]) & codes.HAS_INSTRUMENT:
                return None
            instrument = int(command[_F_INSTRUMENT])
        if not _is_int(instrument):
            if self.routes.default is not None:
                return self.routes.default
            raise ValueError(
                f"command names no instrument to route by (and there is no default group): {command!r}"
            )
        return self.group_of(instrument)

    def client(self, group: str) -> Any:
        """The ``Client`` of ``group`` (made and connected on first use)."""
        c = self._clients.get(group)
        if c is None:
            from .group_client import Client

            if self.closed:
                raise RuntimeError("the router is closed")
            if group not in self.routes.groups:
                raise KeyError(f"no group {group!r} in {self.routes.path}")
            c = Client.from_config(self.routes.groups[group].config, self.client_id, **self._client_kw)
            self._clients[group] = c
            self._poller = None
        return c

    # -- plumbing ------------------------------------------------------------------------

    def _dispatch(self, commands_: list[Mapping | tuple]) -> list[int]:
        # Route everything and make every client first, so that a command no
        # group serves (or a group file that cannot be read) raises before
        # any command of the call is sent.
        targets = [self.route(c) for c in commands_]
        for g in dict.fromkeys(self.groups if None in targets else targets):
            self.client(g)
        per_group: dict[str, list[tuple[int, Mapping | tuple]]] = {}
        rids = [next(self._ids) for _ in commands_]
        for rid, cmd, target in zip(rids, commands_, targets, strict=True):
            self._waiting[rid] = {}
            for g in self.groups if target is None else (target,):
                per_group.setdefault(g, []).append((rid, cmd))
        for g, items in per_group.items():
            # One send_many per group: one frame per node, as Client batches it.
            wire_ids = self._clients[g].send_many([cmd for _, cmd in items])
            for (rid, _), wid in zip(items, wire_ids, strict=True):
                self._waiting[rid][g] = wid
                self._owner[(g, wid)] = rid
        return rids

    def _collect(self, timeout: float) -> None:
        """Wait up to ``timeout`` s (at most 5 ms) for any group to answer, then take every answer that arrived."""
        if timeout > 0 and self._waiting:
            self._wait_readable(timeout)
        for g, c in self._clients.items():
            for reply in c.poll_replies(0):
                rid = self._owner.pop((g, reply.request_id), None)
                if rid is None:
                    continue  # a request sent through client() directly: not ours
                parts = self._parts.setdefault(rid, {})
                parts[g] = dataclasses.replace(reply, request_id=rid)
                waiting = self._waiting[rid]
                if len(parts) == len(waiting):
                    del self._waiting[rid], self._parts[rid]
                    self._done[rid] = [parts[name] for name in self.groups if name in parts]

    def _wait_readable(self, timeout: float) -> None:
        # One poller over every group's sockets, so a reply from any group
        # wakes us at once instead of polling the groups in turn. Capped at
        # 5 ms so every Client's timers (re-sends on fail-over) keep ticking.
        import zmq

        if self._poller is None:
            self._poller = zmq.Poller()
            for c in self._clients.values():
                for sock, flags in getattr(getattr(c, "poller", None), "sockets", ()):
                    self._poller.register(sock, flags)
        if self._poller.sockets:
            self._poller.poll(min(timeout, 0.005) * 1000)
        else:  # a Client without a poller attribute: fall back to a short sleep
            time.sleep(min(timeout, 0.001))

    @staticmethod
    def _events(replies: list[wire.Reply]) -> list:
        from matching import EVENT_DTYPE, events_from_array

        from .group_client import RequestExpired

        out: list = []
        for r in replies:
            if r.status == wire.EXPIRED:
                raise RequestExpired(f"request {r.request_id} is older than the group's dedupe window")
            out += events_from_array(np.frombuffer(r.events, dtype=EVENT_DTYPE))
        return out

    # -- pipelined API -------------------------------------------------------------------

    def send(self, command: Mapping | tuple) -> int:
        """Send one command to its group without waiting; return the router's request id.

        A mass cancel without an instrument is sent to every group under one
        id: it is done when every group has answered.
        """
        return self._dispatch([command])[0]

    def send_many(self, commands: Iterable[Mapping | tuple]) -> list[int]:
        """Send several commands (one frame per node of each group); return their request ids in order.

        Raises ``ValueError`` before sending anything if one of them has no group.
        """
        return self._dispatch(list(commands))

    def poll(self, timeout: float = 0.0) -> list[tuple[int, list]]:
        """Collect finished requests from every group: ``[(request_id, events), ...]``.

        Waits up to ``timeout`` s for one. A mass cancel sent to every group
        appears once, with the events of all groups concatenated in group order.
        """
        taken = self._take(timeout)
        out = []
        for rid, replies in taken:
            try:
                out.append((rid, self._events(replies)))
            except Exception:
                # Report the expired request once; keep every other one for the next poll.
                self._done.update((r, reps) for r, reps in taken if r != rid)
                raise
        return out

    def poll_replies(self, timeout: float = 0.0) -> list[wire.Reply]:
        """Like :meth:`poll` but the raw ``wire.Reply`` objects, ``request_id`` set to the router's id.

        A mass cancel sent to every group gives one reply per group (same id, group order).
        """
        return [r for _, replies in self._take(timeout) for r in replies]

    def _take(self, timeout: float) -> list[tuple[int, list[wire.Reply]]]:
        if not self._waiting and not self._done:
            return []  # nothing in flight: nothing can arrive
        deadline = time.monotonic() + timeout
        self._collect(0.0)
        while not self._done and self._waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._collect(left)
        out = list(self._done.items())
        self._done.clear()
        return out

    def wait(self, request_id: int, timeout: float | None = None) -> list:
        """Block until ``request_id`` is answered (by every group it went to); return its events."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while request_id not in self._done:
            if request_id not in self._waiting:
                raise KeyError(f"request {request_id} is unknown or already collected")
            left = deadline - time.monotonic()
            if left <= 0:
                groups = ", ".join(self._clients) or "(none)"
                waited = self.timeout if timeout is None else timeout
                raise TimeoutError(
                    f"no reply to request {request_id} within {waited:g} s from its groups (connected: "
                    f"{groups}). Is each group running? `matchcore status --config GROUP.toml` shows its nodes"
                )
            self._collect(left)
        return self._events(self._done.pop(request_id))

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered by every group they went to."""
        return len(self._waiting)

    def mass_cancel(self, account: int | None = None, instrument: int | None = None) -> list:
        """Mass cancel on the group of ``instrument``, or on every group if ``instrument`` is None.

        Across groups this is *not atomic*: each group cancels on its own
        sequence, sent to all at once and answered independently; the events
        come back concatenated in routes-file group order.
        """
        return self.apply(commands.mass_cancel_dict(account, instrument))

    # -- execution reports and queries ---------------------------------------------------

    def executions(self, timeout: float = 0.0) -> list[dict]:
        """New execution reports from every group this router has opened a session in (each
        report with ``"group"``: its group's name), waiting up to ``timeout`` s for one.

        Each group's reports come in its own seq order, exactly once (seqs are per
        group); see ``Client.executions``. A group's ``ReportsGone`` is raised as it is.
        """
        deadline = time.monotonic() + timeout
        while True:
            out: list[dict] = []
            for g, c in self._clients.items():
                for d in c.executions():
                    d["group"] = g
                    out.append(d)
            left = deadline - time.monotonic()
            if out or left <= 0:
                return out
            self._wait_readable(min(left, 0.005))

    def order(self, instrument: int, id: int) -> dict:
        """The state of order ``id`` of ``instrument``, from the group serving it (``Client.order``)."""
        return self.client(self.group_of(instrument)).order(instrument=instrument, id=id)

    def open_orders(self, account: int | None = None) -> list[dict]:
        """This client id's open orders in every group, group by group in routes-file order (each
        with ``"group"``); ``account``: only that account's."""
        out: list[dict] = []
        for g in self.groups:
            for o in self.client(g).open_orders(account=account):
                o["group"] = g
                out.append(o)
        return out

    def close(self) -> None:
        """Close every group's client (unanswered requests are abandoned)."""
        if self.closed:
            return
        self.closed = True
        for c in self._clients.values():
            c.close()
        self._poller = None

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
