"""The audit chain: every entry hashes its predecessor, so any edit or deletion shows."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import replace

import pytest

from terminal.core.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditError,
    AuditLog,
    MemoryAuditLog,
    make_entry,
    verify_chain,
)


def clock_from(start: float = 1_700_000_000.0) -> MemoryAuditLog:
    ticks = iter(range(1000))
    return MemoryAuditLog(terminal_id="t1", clock=lambda: start + next(ticks))


def five_entries() -> list[AuditEntry]:
    log = clock_from()
    log.append("c1", "login", {"role": "cashier"})
    log.append("c1", "dish_added", {"item_id": "rice", "total_after_fen": 150})
    log.append("c1", "price_override", {"line": 0, "old_price_fen": 150, "new_price_fen": 100})
    log.append("c2", "refund", {"transaction_id": "tx-1", "amount_fen": 100})
    log.append("c2", "checkout_voided", {"reason": "diner left"})
    return log.entries()


def test_entries_are_numbered_and_chained_from_the_genesis_hash() -> None:
    entries = five_entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.entry_hash
    assert len({e.entry_hash for e in entries}) == 5
    assert entries[1].terminal_id == "t1" and entries[1].actor == "c1"
    assert verify_chain(entries) == []


def test_the_hash_is_sha256_of_prev_hash_and_sorted_key_json() -> None:
    """The format is documented so that a tool outside trayscan can check a log."""
    entry = five_entries()[1]
    body = {
        "action": "dish_added",
        "actor": "c1",
        "details": {"item_id": "rice", "total_after_fen": 150},
        "seq": 2,
        "terminal_id": "t1",
        "timestamp": entry.timestamp,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hashlib.sha256(entry.prev_hash.encode() + canonical.encode("utf-8")).hexdigest()
    assert entry.entry_hash == expected


def test_details_are_stored_as_they_read_back_and_non_json_is_refused() -> None:
    entry = make_entry(
        None,
        actor="c1",
        terminal_id="t1",
        action="dish_removed",
        details={"items": ("rice", "pork"), "reason": "饭撒了"},
        timestamp=1.0,
    )
    assert entry.details == {"items": ["rice", "pork"], "reason": "饭撒了"}
    with pytest.raises(AuditError):
        make_entry(None, actor="c1", terminal_id="", action="x", details={"x": {1, 2}}, timestamp=1)
    with pytest.raises(AuditError):
        make_entry(
            None, actor="c1", terminal_id="", action="x", details={"x": float("nan")}, timestamp=1
        )
    with pytest.raises(AuditError):
        make_entry(None, actor="", terminal_id="", action="x", details={}, timestamp=1)


def altered_details(entries: list[AuditEntry]) -> list[AuditEntry]:
    entries[3] = replace(entries[3], details={"transaction_id": "tx-1", "amount_fen": 1})
    return entries


def altered_and_rehashed(entries: list[AuditEntry]) -> list[AuditEntry]:
    forged = replace(entries[3], actor="c1")
    entries[3] = replace(forged, entry_hash=forged.computed_hash())
    return entries


def deleted(entries: list[AuditEntry]) -> list[AuditEntry]:
    del entries[2]
    return entries


def deleted_two(entries: list[AuditEntry]) -> list[AuditEntry]:
    del entries[1:3]
    return entries


def renumbered(entries: list[AuditEntry]) -> list[AuditEntry]:
    entries[1], entries[2] = replace(entries[1], seq=3), replace(entries[2], seq=2)
    return entries


def inserted(entries: list[AuditEntry]) -> list[AuditEntry]:
    fake = make_entry(
        (entries[1].seq, entries[1].entry_hash),
        actor="c9",
        terminal_id="t1",
        action="refund",
        details={"amount_fen": 9999},
        timestamp=entries[1].timestamp,
    )
    entries.insert(2, fake)
    return entries


TAMPERING = [
    ("details edited", altered_details, ["seq 4 altered"]),
    ("edited and its own hash recomputed", altered_and_rehashed, ["seq 5 broken link"]),
    ("one entry deleted", deleted, ["seq 3 missing"]),
    ("two entries deleted", deleted_two, ["seq 2..3 missing"]),
    ("two entries renumbered", renumbered, ["seq 2 altered", "seq 3 altered"]),
    ("an entry slipped in", inserted, ["seq 3 appears more than once"]),
]


@pytest.mark.parametrize(
    ("case", "tamper", "expected"), TAMPERING, ids=[row[0] for row in TAMPERING]
)
def test_tampering_is_named_by_seq(case: str, tamper: object, expected: list[str]) -> None:
    assert callable(tamper)
    problems = verify_chain(tamper(five_entries()))
    assert problems, case
    for fragment in expected:
        assert any(problem.startswith(fragment) for problem in problems), (fragment, problems)


def test_the_order_entries_are_listed_in_does_not_matter() -> None:
    entries = five_entries()
    assert verify_chain(list(reversed(entries))) == []


def test_entries_cut_off_the_end_show_only_against_a_recorded_head() -> None:
    entries = five_entries()
    head = (entries[-1].seq, entries[-1].entry_hash)
    assert verify_chain(entries, anchor=head) == []
    cut = entries[:3]
    assert verify_chain(cut) == []  # a shorter chain is still a chain...
    problems = verify_chain(cut, anchor=head)  # ...but not the one seen earlier
    assert len(problems) == 1 and problems[0].startswith("seq 5 missing")


def test_a_log_rewritten_from_scratch_differs_from_the_recorded_head() -> None:
    entries = five_entries()
    head = (entries[-1].seq, entries[-1].entry_hash)
    rewritten = clock_from(start=1_800_000_000.0)
    for entry in entries:
        rewritten.append(entry.actor, entry.action, {**entry.details, "amount_fen": 0})
    problems = verify_chain(rewritten.entries(), anchor=head)
    assert problems == ["seq 5 differs from the head recorded earlier (the log was rewritten)"]


def test_memory_log_is_an_audit_log_and_verifies() -> None:
    log = clock_from()
    assert isinstance(log, AuditLog)
    assert log.verify() == []
    log.append("c1", "login", {})
    assert log.verify() == [] and len(log.entries()) == 1
