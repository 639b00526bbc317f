"""The node driver's release order around the journal's sync: what a pass made while every append
was durable (an ack's replies) leaves before the pass's tick (the next batch: its journal write and
sync); what was made after an append waits for the sync; a client's reports never overtake the
replies made before them.

Without sockets: ``_Sock`` stand-ins record each frame together with whether the journal still
had unsynced appends when it left; a ``MemoryJournal`` with ``defer_sync`` is the journal.
"""

from __future__ import annotations

from replication.protocol import trust, wire
from replication.storage.journal import MemoryJournal
from replication.transport import node_driver as node
from tests.transport.test_driver_replies import _driver, _Inbound, _reply

ENTRY = wire.Entry(3, 1, 7, 1, 1, bytes(56))


def _hb(seq: int) -> wire.Heartbeat:
    return wire.Heartbeat(3, seq, "a", wire.ROLE_PRIMARY)


class _Watched:
    """A socket stand-in that records (what left, was the journal dirty then)."""

    def __init__(self, journal: MemoryJournal, log: list) -> None:
        self.journal, self.log = journal, log

    def send(self, frame, flags=0) -> None:
        self.log.append((wire.decode(frame), self.journal.dirty))

    def send_multipart(self, parts, flags=0) -> None:
        self.log.append((parts[0], wire.decode(parts[1]), self.journal.dirty))


def _watched_driver() -> tuple[node.NodeDriver, MemoryJournal, list]:
    journal = MemoryJournal("batch")
    journal.defer_sync = True
    log: list = []
    d = _driver()
    d.journal = journal
    d.router, d.dealers = _Watched(journal, log), {"b": _Watched(journal, log)}
    return d, journal, log


def test_covered_outputs_leave_without_syncing_the_journal():
    d, journal, log = _watched_driver()
    journal.append([ENTRY])  # appended after the outputs were made (the pass's next batch)
    d.perform([wire.Send(b"c1", _reply(1, 1)), wire.Send("b", _hb(1))], covered=True)
    assert log == [(_hb(1), True), (b"c1", _reply(1, 1), True)] and journal.dirty
    d.perform([wire.Send(b"c1", _reply(1, 2))])  # the rest of the pass: after the sync
    assert log[-1] == (b"c1", _reply(1, 2), False) and not journal.dirty


def test_without_covered_everything_that_needs_the_sync_waits_for_it():
    d, journal, log = _watched_driver()
    journal.append([ENTRY])
    d.perform([wire.Send(b"c1", _reply(1, 1)), wire.Send("b", _hb(1))])
    assert log == [(_hb(1), False), (b"c1", _reply(1, 1), False)] and not journal.dirty


def test_a_failed_journal_lets_no_covered_reply_out():
    d, journal, log = _watched_driver()
    journal.failed = "journal: EIO syncing"
    refusal = wire.Reply(1, 2, wire.UNAVAILABLE, 0, 0, "a", b"")
    d.perform([wire.Send(b"c1", _reply(1, 1)), wire.Send(b"c1", refusal)], covered=True)
    assert log == [(b"c1", refusal, False)]


def test_a_clients_reports_do_not_overtake_the_replies_made_before_them():
    d, journal, log = _watched_driver()
    journal.append([ENTRY])
    reports = wire.Reports(1, 0, wire.OK, 1)
    d.perform(
        [
            wire.Send(b"c1", _reply(1, 1)),
            wire.Send(b"c2", _reply(2, 1)),
            wire.Send(b"c1", reports),
            wire.Send(b"c1", _reply(1, 2)),
        ]
    )
    assert log == [
        (b"c1", _reply(1, 1), False),  # before c1's reports, after the sync
        (b"c1", reports, False),
        (b"c2", _reply(2, 1), False),  # the other bundles go last, as always
        (b"c1", _reply(1, 2), False),
    ]


class _Machine:
    """A primary's shape in one pass: a peer's message releases a reply (an ack), the tick
    appends the next batch and makes its Entries (no sync needed) and a reply (async's shape),
    or a message that appends (a standby's Entries) makes an ack that needs the sync."""

    is_primary = True
    pending = ()

    def __init__(self, journal: MemoryJournal, log: list, appends_on_message: bool) -> None:
        self.journal, self.log, self.appends_on_message = journal, log, appends_on_message
        self.replica = None

    def handle(self, src, msg, now):
        if self.appends_on_message:
            self.journal.append([wire.Entry(3, self.journal.last_seq + 1, 7, 1, 1, bytes(56))])
            return [wire.Send("b", _hb(msg.seq))]  # the standby's ack: needs the sync
        return [wire.Send(b"c1", _reply(1, msg.seq))]  # an ack's release: its batch is durable

    def tick(self, now):
        self.log.append(("tick",))
        self.journal.append([wire.Entry(3, self.journal.last_seq + 1, 7, 1, 1, bytes(56))])
        return [wire.Send("b", _hb(100), needs_sync=False), wire.Send(b"c1", _reply(1, 100))]


def _pass(appends_on_message: bool) -> list:
    d, journal, log = _watched_driver()
    d.router = _Inbound([[b"peer:a", wire.encode(_hb(1))], [b"peer:a", wire.encode(_hb(2))]])
    d.router.send_multipart = _Watched(journal, log).send_multipart  # type: ignore[method-assign]
    d.machine, d.monitors, d.md = _Machine(journal, log, appends_on_message), {}, None
    d.policy = trust.Policy("b", ["a", "b"])

    class _Poller:
        def poll(self, timeout):
            return [(d.router, 1)]

    d.poller = _Poller()
    d.run_once(0)
    assert not journal.dirty
    return log


def test_a_pass_sends_an_acks_replies_before_its_tick_sequences_the_next_batch():
    assert _pass(appends_on_message=False) == [
        (b"c1", wire.Replies((_reply(1, 1), _reply(1, 2))), False),  # the acks' releases, bundled
        ("tick",),  # the next batch: appended, its Entries out before the sync, the rest after it
        (_hb(100), True),
        (b"c1", _reply(1, 100), False),
    ]


def test_what_a_pass_made_after_its_first_append_waits_for_the_sync():
    """A standby's Entries append as they are handled: both acks wait for the sync, the
    second though its own message appended after the first's, and so after the tick."""
    assert _pass(appends_on_message=True) == [
        ("tick",),
        (_hb(1), False),
        (_hb(2), False),
        (_hb(100), False),  # behind b's acks
        (b"c1", _reply(1, 100), False),
    ]
