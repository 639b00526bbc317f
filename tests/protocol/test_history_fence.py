"""Fencing a joiner against an epoch history with holes below the journal's base, and trimming it.

A node's epoch history holds every epoch that began above its journal's
base, but not always those that began at or below it: a snapshot it
installed skipped them, and ``NodeMachine.trimmed_history`` drops them. The
primary's ``common_prefix`` must then not trust the history for a joiner
whose epoch began there (it could agree past where that epoch really
ended, and the joiner's stale suffix would sit under the entries it is sent
next): it cuts the joiner to below the base, whose catch-up is a snapshot.
"""

from __future__ import annotations

from replication.protocol.node.machine import NodeMachine
from replication.protocol.node.primary import PrimaryRole
from replication.protocol.wire import Entry
from replication.storage.journal import MemoryJournal

BASE = 50


def entry(epoch: int, seq: int) -> Entry:
    return Entry(epoch, seq, 7, seq, seq * 31 + epoch, bytes([seq % 256]) * 80)


def primary_over(journal: MemoryJournal, history: list[tuple[int, int]]) -> NodeMachine:
    m = NodeMachine("a", ["a", "b"], MemoryJournal())
    m.journal, m.history = journal, list(history)
    m._enter(PrimaryRole(m))  # (common_prefix is the primary's: it answers Joins)
    return m


def journal_from_base() -> MemoryJournal:
    """Entries 51..60 of epoch 5 and 61..70 of epoch 6 over a snapshot at 50."""
    j = MemoryJournal()
    j.reset(BASE, 5, b"snapshot")
    j.append([entry(5, s) for s in range(51, 61)] + [entry(6, s) for s in range(61, 71)])
    return j


def test_a_joiner_from_an_epoch_the_history_may_miss_is_cut_below_the_base():
    # Truly: epoch 3 ended at 40 and epoch 4 ran 41..50, all under the snapshot we installed,
    # so our history lacks epochs 3 and 4. The joiner is epoch 3's deposed primary, whose
    # unacknowledged suffix runs to 55.
    m = primary_over(journal_from_base(), [(1, 1), (2, 11), (5, 51), (6, 61)])
    t = m.current_role.catch_up.common_prefix(3, 55)
    assert t < BASE  # so its catch-up (from t + 1 <= BASE) is a snapshot, replacing its journal


def test_a_joiner_from_an_epoch_that_began_above_the_base_is_fenced_exactly():
    # Epoch 5 began at 51 (above the base): the history knows where it ended for us (60).
    m = primary_over(journal_from_base(), [(1, 1), (5, 51), (6, 61)])
    assert m.current_role.catch_up.common_prefix(5, 65) == 60
    assert m.current_role.catch_up.common_prefix(6, 70) == 70
    assert m.current_role.catch_up.common_prefix(5, 58) == 58


def test_a_joiner_below_the_base_is_unchanged():
    m = primary_over(journal_from_base(), [(1, 1), (2, 11), (5, 51), (6, 61)])
    assert m.current_role.catch_up.common_prefix(2, 30) == 30  # below the base either way: a snapshot follows
    assert m.current_role.catch_up.common_prefix(1, 12) == 10


def test_without_a_base_the_history_is_whole_and_trusted():
    j = MemoryJournal()
    j.append([entry(1, s) for s in range(1, 11)] + [entry(3, s) for s in range(11, 21)])
    m = primary_over(j, [(1, 1), (3, 11)])
    assert (
        m.current_role.catch_up.common_prefix(1, 14) == 10
    )  # epoch 1 ended at 10 for us: our epoch 3 began at 11
    assert m.current_role.catch_up.common_prefix(3, 15) == 15


def test_a_joiner_from_an_epoch_our_line_skipped_keeps_nothing():
    """sim seeds 26, 3284, 6066, 6418, 7149, 9143 (async, overlapping faults): a healthy node diverged.

    Our line went from epoch 1 (1..10) to epoch 3 (11..20): we were granted epoch 3
    holding none of epoch 2. The joiner led epoch 2, which may have begun anywhere up to
    its seq 15: say at 5, if it held epoch 1 only up to 4 when granted (5..10 of epoch 1
    were never acknowledged, then ours became part of epoch 3's line). Trusting "our next
    epoch began at 11" kept its epoch-2 entries 5..10 under ours.
    """
    j = MemoryJournal()
    j.append([entry(1, s) for s in range(1, 11)] + [entry(3, s) for s in range(11, 21)])
    m = primary_over(j, [(1, 1), (3, 11)])
    assert m.current_role.catch_up.common_prefix(2, 15) == 0  # catch-up from 1 replaces its whole journal


def test_saved_history_keeps_only_the_epochs_from_the_journal_base_on():
    j = journal_from_base()
    m = primary_over(j, [(1, 1), (2, 11), (3, 30), (4, 41), (5, 51), (6, 61)])
    m.save_meta()
    assert m.history == [(5, 51), (6, 61)]
    assert j.load_meta()["history"] == [[5, 51], [6, 61]]
    # The epoch holding the base's next entry stays even if it began below the base.
    j2 = MemoryJournal()
    j2.reset(55, 5, b"snapshot")
    j2.append([entry(5, s) for s in range(56, 61)] + [entry(6, s) for s in range(61, 71)])
    m2 = primary_over(j2, [(1, 1), (4, 41), (5, 51), (6, 61)])
    m2.save_meta()
    assert m2.history == [(5, 51), (6, 61)]
    # And a joiner from a trimmed epoch is cut below the base (a snapshot).
    assert m2.current_role.catch_up.common_prefix(4, 58) < 55


def test_a_joiner_whose_last_entry_is_of_our_snapshots_epoch_keeps_its_journal():
    """sim seed 2074 (--max-faults 10): an in-sync node lost a committed entry to a fence.

    Our journal starts at a snapshot whose last entry is (5, 50). A joiner at (5, 50), or
    at (5, 45), holds a prefix of our history: epoch 5's primary sequenced both. Cutting
    it below the base (as for a joiner we cannot vouch for) took entry 50 from a node the
    witness counted in sync; had we then died, it could have been promoted without it.
    """
    # We caught up by that snapshot, then were promoted into epoch 6 at 51: our history
    # holds only epoch 6.
    j = MemoryJournal()
    j.reset(BASE, 5, b"snapshot")
    j.append([entry(6, s) for s in range(51, 61)])
    m = primary_over(j, [(6, 51)])
    assert m.current_role.catch_up.common_prefix(5, 50) == 50
    assert m.current_role.catch_up.common_prefix(5, 45) == 45
    assert (
        m.current_role.catch_up.common_prefix(4, 50) < BASE
    )  # another epoch at the base: cut below it, as before
