"""``replication.client.router``: the routes file, its validation, and the Router's bookkeeping.

The routing logic runs here against in-process fake clients (one local
engine per group, replies handed back out of order and with the same wire
request ids in every group), so no socket is opened; the real groups are in
tests/system/test_router_process.py.
"""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

import matching
from matching import Cancelled, commands
from replication.client.router import Router, format_ranges, load_routes, parse_routes
from replication.protocol import wire
from replication.transport import group_file as config


def write(tmp_path, name: str, text: str) -> str:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return str(p)


def group_file(tmp_path, name: str, port: int) -> str:
    path = str(tmp_path / name)
    config.write(path, "sync", {"a": (f"tcp://127.0.0.1:{port}", f"var/{name}-a")}, None)
    return path


ROUTES = """\
    default = "g2"
    [groups.g1]
    config = "g1.toml"
    instruments = [1, 2, 3, 7]
    [groups.g2]
    config = "sub/g2.toml"
    instruments = [4]
"""


# -- the routes file ---------------------------------------------------------------------


def test_routes_file_parses_with_paths_relative_to_it(tmp_path):
    group_file(tmp_path, "g1.toml", 6001)
    (tmp_path / "sub").mkdir()
    group_file(tmp_path, "sub/g2.toml", 6002)
    r = load_routes(write(tmp_path, "routes.toml", ROUTES))
    assert list(r.groups) == ["g1", "g2"]
    assert r.groups["g1"].config == str(tmp_path / "g1.toml")
    assert r.groups["g2"].config == str(tmp_path / "sub" / "g2.toml")
    assert r.groups["g1"].instruments == (1, 2, 3, 7)
    assert r.default == "g2"
    assert r.table == {1: "g1", 2: "g1", 3: "g1", 7: "g1", 4: "g2"}
    assert r.group_of(7) == "g1" and r.group_of(4) == "g2" and r.group_of(99) == "g2"


def test_without_default_an_unlisted_instrument_has_no_group():
    r = parse_routes({"groups": {"g1": {"config": "/x/g1.toml", "instruments": [1]}}}, "/x/routes.toml")
    assert r.default is None and r.group_of(2) is None


def test_default_group_may_list_no_instruments():
    r = parse_routes(
        {
            "default": "rest",
            "groups": {"rest": {"config": "a.toml"}, "hot": {"config": "b.toml", "instruments": [9]}},
        }
    )
    assert r.groups["rest"].instruments == () and r.group_of(9) == "hot" and r.group_of(1) == "rest"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "at least one [groups.<name>]"),
        ({"groups": {}}, "at least one [groups.<name>]"),
        ({"groups": [1]}, "at least one [groups.<name>]"),
        ({"group": {}}, "unknown key(s) group"),
        ({"default": "nope", "groups": {"g1": {"config": "a", "instruments": [1]}}}, "unknown group 'nope'"),
        (
            {"default": 3, "groups": {"g1": {"config": "a", "instruments": [1]}}},
            "default must be a group name",
        ),
        ({"groups": {"g1": "a.toml"}}, "[groups.g1] must be a table"),
        ({"groups": {"g1": {"instruments": [1]}}}, "[groups.g1]: config must be"),
        ({"groups": {"g1": {"config": 5, "instruments": [1]}}}, "config must be"),
        ({"groups": {"g1": {"config": "a", "instrument": [1]}}}, "unknown key(s) instrument"),
        ({"groups": {"g1": {"config": "a"}}}, "[groups.g1]: serves no instruments"),
        ({"groups": {"g1": {"config": "a", "instruments": []}}}, "serves no instruments"),
        ({"groups": {"g1": {"config": "a", "instruments": 1}}}, "must be a list of integers"),
        ({"groups": {"g1": {"config": "a", "instruments": ["1"]}}}, "must be a list of integers"),
        ({"groups": {"g1": {"config": "a", "instruments": [True]}}}, "must be a list of integers"),
        ({"groups": {"g1": {"config": "a", "instruments": [1.0]}}}, "must be a list of integers"),
        ({"groups": {"g1": {"config": "a", "instruments": [-1]}}}, "instrument -1 is out of range"),
        ({"groups": {"g1": {"config": "a", "instruments": [1 << 32]}}}, "out of range"),
        ({"groups": {"g1": {"config": "a", "instruments": [1, 1]}}}, "lists it twice"),
        (
            {
                "groups": {
                    "g1": {"config": "a", "instruments": [1, 2]},
                    "g2": {"config": "b", "instruments": [2]},
                }
            },
            "[groups.g2]: instrument 2 is in two places: this group lists it too, and so does group 'g1'",
        ),
        (
            {
                "groups": {
                    "g1": {"config": "a", "instruments": [1]},
                    "g2": {"config": "./a", "instruments": [2]},
                }
            },
            "is already group 'g1'",
        ),
    ],
)
def test_bad_routes_are_refused_with_a_clear_error(doc, message):
    with pytest.raises(ValueError) as exc:
        parse_routes(doc, "routes.toml")
    assert message in str(exc.value)
    assert str(exc.value).startswith("routes.toml")


def test_load_routes_refuses_bad_toml_and_bad_group_files(tmp_path):
    bad = write(tmp_path, "bad.toml", "[groups.g1\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_routes(bad)
    missing = write(tmp_path, "missing.toml", '[groups.g1]\nconfig = "nope.toml"\ninstruments = [1]\n')
    with pytest.raises(ValueError, match=r"\[groups.g1\] config .*nope.toml"):
        load_routes(missing)
    assert load_routes(missing, check_groups=False).groups["g1"].instruments == (1,)
    write(tmp_path, "broken.toml", "mode = 'sync'\n")  # no [nodes.*]
    broken = write(tmp_path, "r2.toml", '[groups.g1]\nconfig = "broken.toml"\ninstruments = [1]\n')
    with pytest.raises(ValueError, match=r"\[groups.g1\].*missing required key 'nodes'"):
        load_routes(broken)


def test_two_groups_on_one_endpoint_are_refused(tmp_path):
    group_file(tmp_path, "g1.toml", 6001)
    group_file(tmp_path, "g2.toml", 6001)
    routes = """\
        [groups.g1]
        config = "g1.toml"
        instruments = [1]
        [groups.g2]
        config = "g2.toml"
        instruments = [2]
    """
    with pytest.raises(ValueError, match="groups 'g1' and 'g2' both have a node at tcp://127.0.0.1:6001"):
        load_routes(write(tmp_path, "routes.toml", routes))


def test_format_ranges():
    assert format_ranges([7, 1, 3, 2, 9, 10]) == "1-3, 7, 9-10"
    assert format_ranges([]) == ""


# -- the router, over fake clients -------------------------------------------------------


class FakeClient:
    """A ``Client`` stand-in: one local engine per group, replies held until polled, newest first."""

    made: dict[str, FakeClient] = {}

    def __init__(self, path: str) -> None:
        self.path = path
        self.engine = matching.ReferenceEngine()
        self.next_id = 100  # the same wire ids in every group, as real clients may well have
        self.held: list[wire.Reply] = []
        self.sent: list[dict] = []
        self.closed = False

    @classmethod
    def from_config(cls, path: str, client_id: int, **kw) -> FakeClient:
        c = cls(path)
        cls.made[path] = c
        return c

    def send_many(self, cmds) -> list[int]:
        rids = []
        for cmd in cmds:
            d = cmd if isinstance(cmd, dict) else commands.command_dict(cmd)
            self.sent.append(d)
            events = self.engine.apply_batch(matching.command_array([d])).tobytes()
            self.held.append(wire.Reply(7, self.next_id, wire.OK, 1, len(self.sent), "a", events))
            rids.append(self.next_id)
            self.next_id += 1
        return rids

    def poll_replies(self, timeout: float = 0.0) -> list[wire.Reply]:
        out, self.held = self.held[::-1], []
        return out

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def router(tmp_path, monkeypatch):
    import replication.client.group_client

    FakeClient.made = {}
    monkeypatch.setattr(replication.client.group_client, "Client", FakeClient)
    doc = {
        "groups": {
            "g1": {"config": "g1.toml", "instruments": [1, 2]},
            "g2": {"config": "g2.toml", "instruments": [3]},
        }
    }
    r = Router(parse_routes(doc, str(tmp_path / "routes.toml")), client_id=7, timeout=1.0)
    r.fakes = lambda: {name: FakeClient.made[g.config] for name, g in r.routes.groups.items()}
    yield r
    r.close()


def local(cmds: list[dict]) -> list:
    e = matching.ReferenceEngine()
    return [e.apply(c) for c in cmds]


def test_each_command_goes_to_its_group_with_the_events_of_an_engine(router):
    assert (
        router.submit(instrument=1, id=1, side="sell", price=100, qty=5)
        == local([commands.new_order_dict(1, 1, "sell", 100, 5)])[0]
    )
    trade = router.submit(instrument=1, id=2, side="buy", price=100, qty=2)
    assert [type(e).__name__ for e in trade] == ["Accepted", "Trade"]
    router.submit(instrument=3, id=1, side="buy", price=50, qty=1)  # same order id, other group
    fakes = router.fakes()
    assert [d["instrument"] for d in fakes["g1"].sent] == [1, 1]
    assert [d["instrument"] for d in fakes["g2"].sent] == [3]
    assert router.replace(instrument=3, id=1, qty=0) == [Cancelled(3, 1, 1, "user")]
    assert router.cancel(instrument=1, id=1) == [Cancelled(1, 1, 3, "user")]


def test_clients_are_made_on_first_use(router):
    assert FakeClient.made == {}
    router.submit(instrument=3, id=1, side="buy", price=50, qty=1)
    assert [p.rsplit("/", 1)[-1] for p in FakeClient.made] == ["g2.toml"]


def test_unrouted_instrument_raises_before_anything_is_sent(router):
    with pytest.raises(ValueError, match="instrument 9 is served by no group"):
        router.send_many([commands.cancel_dict(1, 1), commands.cancel_dict(9, 1)])
    with pytest.raises(ValueError, match="served by no group"):
        router.mass_cancel(account=1, instrument=9)
    with pytest.raises(ValueError, match="names no instrument"):
        router.send({"op": "cancel", "id": 1})
    assert FakeClient.made == {} and router.in_flight == 0


def test_default_group_takes_the_rest(tmp_path, monkeypatch):
    import replication.client.group_client

    FakeClient.made = {}
    monkeypatch.setattr(replication.client.group_client, "Client", FakeClient)
    doc = {"default": "g2", "groups": {"g1": {"config": "a", "instruments": [1]}, "g2": {"config": "b"}}}
    with Router(parse_routes(doc, str(tmp_path / "r.toml")), 7) as r:
        assert r.route(commands.cancel_dict(55, 1)) == "g2"
        assert r.route({"op": "cancel", "id": 1}) == "g2"  # the default group's engine rejects it
        assert r.route(commands.cancel_dict(1, 1)) == "g1"
        assert r.cancel(instrument=55, id=1)[0].reason == "unknown_order"


def test_records_route_like_dicts(router):
    rec = commands.command_record(commands.cancel_dict(3, 4))
    assert router.route(rec) == "g2" and router.route(tuple(rec)) == "g2"
    row = matching.command_array([commands.cancel_dict(2, 4)])[0]
    assert router.route(row) == "g1"
    assert router.route(commands.command_record(commands.mass_cancel_dict(account=1))) is None
    assert router.route(commands.command_record(commands.mass_cancel_dict(instrument=3))) == "g2"
    assert router.route({"op": "MASS_CANCEL", "account": 1}) is None  # op names fold case, as in the engine


def test_router_ids_are_unique_across_groups_and_poll_collects_from_all(router):
    cmds = [commands.new_order_dict(1 + i % 3, i, "buy", 10, 1) for i in range(1, 7)]
    rids = router.send_many(cmds)
    assert rids == list(range(1, 7)) and router.in_flight == 6
    got = dict(router.poll(0.5))
    assert sorted(got) == rids and router.in_flight == 0
    assert all(evs[0].id == i for i, evs in zip(range(1, 7), [got[r] for r in rids], strict=True))
    # both groups used wire ids 100, 101, ...: the router's ids kept them apart
    fakes = router.fakes()
    assert (fakes["g1"].next_id, fakes["g2"].next_id) == (104, 102)  # wire ids 100, 101 in both
    assert router.poll(0.5) == []  # nothing in flight: returns at once


def test_poll_replies_carry_router_ids(router):
    rid = router.send(commands.new_order_dict(3, 1, "buy", 10, 1))
    replies = router.poll_replies(0.5)
    assert [r.request_id for r in replies] == [rid] and replies[0].status == wire.OK


def test_wait_and_submit_many_keep_order(router):
    cmds = [commands.new_order_dict(1 + i % 3, i, "sell" if i % 2 else "buy", 10, 1) for i in range(1, 40)]
    out = router.submit_many(cmds, window=5)
    per_group = {1: [], 2: [], 3: []}
    for c in cmds:
        per_group[c["instrument"]].append(c)
    g1 = local([c for c in cmds if c["instrument"] in (1, 2)])
    g3 = local(per_group[3])
    expect, i1, i3 = [], iter(g1), iter(g3)
    for c in cmds:
        expect.append(next(i3) if c["instrument"] == 3 else next(i1))
    assert out == expect
    a, b = router.send(commands.cancel_dict(1, 2)), router.send(commands.cancel_dict(3, 3))
    assert router.wait(b)[0].id == 3 and router.wait(a)[0].id == 2
    with pytest.raises(KeyError):
        router.wait(a)


def test_mass_cancel_without_instrument_goes_to_every_group_in_group_order(router):
    router.submit(instrument=3, id=1, side="buy", price=10, qty=1, account=5)
    router.submit(instrument=1, id=2, side="buy", price=10, qty=1, account=5)
    router.submit(instrument=2, id=3, side="buy", price=10, qty=1, account=6)
    events = router.mass_cancel(account=5)
    assert [(e.instrument, e.id, e.reason) for e in events] == [(1, 2, "mass_cancel"), (3, 1, "mass_cancel")]
    fakes = router.fakes()
    assert fakes["g1"].sent[-1] == fakes["g2"].sent[-1] == {"op": "mass_cancel", "account": 5}
    # pipelined: one id, answered once every group has answered
    rid = router.send(commands.mass_cancel_dict())
    assert router.in_flight == 1
    assert router.poll(0.5) == [(rid, [Cancelled(2, 3, 1, "mass_cancel")])]
    rid = router.send(commands.mass_cancel_dict(account=6))
    assert [r.request_id for r in router.poll_replies(0.5)] == [rid, rid]


def test_mass_cancel_with_instrument_goes_to_one_group(router):
    router.mass_cancel(account=1, instrument=3)
    assert [d["op"] for d in FakeClient.made[router.routes.groups["g2"].config].sent] == ["mass_cancel"]
    assert router.routes.groups["g1"].config not in FakeClient.made


def test_close_closes_every_client_and_refuses_new_ones(router):
    router.submit(instrument=1, id=1, side="buy", price=10, qty=1)
    router.close()
    assert FakeClient.made and all(c.closed for c in FakeClient.made.values())
    with pytest.raises(RuntimeError, match="closed"):
        router.submit(instrument=3, id=1, side="buy", price=10, qty=1)


# -- matchcore route check ---------------------------------------------------------------


def test_route_check_prints_the_table(tmp_path, capsys):
    from replication.ops.cli import main

    group_file(tmp_path, "g1.toml", 6001)
    (tmp_path / "sub").mkdir()
    group_file(tmp_path, "sub/g2.toml", 6002)
    assert main(["route", "check", write(tmp_path, "routes.toml", ROUTES)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["group", "instruments", "config", "nodes"]
    assert lines[1].split()[:3] == ["g1", "1-3,", "7"] and lines[1].endswith("a=tcp://127.0.0.1:6001")
    assert "4 + the rest" in lines[2] and lines[2].endswith("a=tcp://127.0.0.1:6002")


def test_route_check_refuses_a_bad_file(tmp_path, capsys):
    from replication.ops.cli import main

    path = write(tmp_path, "routes.toml", '[groups.g1]\nconfig = "g1.toml"\ninstruments = [1]\n')
    assert main(["route", "check", path]) == 2
    assert "[groups.g1] config" in capsys.readouterr().err
    assert main(["route", "check", str(tmp_path / "absent.toml")]) == 2


def test_an_expired_request_is_reported_once_and_the_others_kept(router):
    from replication.client.group_client import RequestExpired

    a = router.send(commands.new_order_dict(1, 1, "buy", 10, 1))
    b = router.send(commands.new_order_dict(3, 1, "buy", 10, 1))
    g2 = router.fakes()["g2"]
    g2.held = [dataclasses.replace(g2.held[0], status=wire.EXPIRED, events=b"")]
    with pytest.raises(RequestExpired):
        router.poll(0.5)
    assert [rid for rid, _ in router.poll(0.5)] == [a] and b not in dict(router.poll(0.5))
