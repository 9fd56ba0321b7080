"""The audit log on disk only grows, survives a reopen, and shows any edit made behind its back."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from terminal.backend.audit_store import AuditStoreError, SqliteAuditLog
from terminal.core.audit import AuditLog, verify_chain


def filled(path: Path, count: int = 5) -> SqliteAuditLog:
    ticks = iter(range(10_000))
    log = SqliteAuditLog(path, terminal_id="t1", clock=lambda: 1_700_000_000.0 + next(ticks))
    for n in range(1, count + 1):
        log.append("c1", "refund", {"transaction_id": f"tx-{n}", "amount_fen": 100 * n})
    return log


def attacker(path: Path) -> sqlite3.Connection:
    """Someone with the file and the sqlite3 shell: drops the triggers first."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DROP TRIGGER audit_log_no_update")
    db.execute("DROP TRIGGER audit_log_no_delete")
    return db


def test_entries_survive_a_reopen_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "var" / "audit.db"
    log = filled(path)
    assert isinstance(log, AuditLog)
    head = log.head()
    log.close()
    reopened = SqliteAuditLog(path)
    entries = reopened.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[2].details == {"transaction_id": "tx-3", "amount_fen": 300}
    assert entries[2].terminal_id == "t1"
    assert reopened.verify() == [] and reopened.verify(anchor=head) == []
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_trayscan_itself_cannot_update_or_delete_an_entry(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    filled(path).close()
    with sqlite3.connect(path) as db:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE audit_log SET details_json = '{}' WHERE seq = 2")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM audit_log WHERE seq = 5")
    assert SqliteAuditLog(path).verify() == []


def test_an_edited_row_is_reported_with_its_seq(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    filled(path).close()
    db = attacker(path)
    db.execute(
        "UPDATE audit_log SET details_json = ? WHERE seq = 3",
        ('{"amount_fen": 1, "transaction_id": "tx-3"}',),
    )
    db.close()
    problems = SqliteAuditLog(path).verify()
    assert any(p.startswith("seq 3 altered") for p in problems), problems
    assert any("trigger" in p for p in problems), problems


def test_a_deleted_row_is_reported_with_its_seq(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    filled(path).close()
    db = attacker(path)
    db.execute("DELETE FROM audit_log WHERE seq = 2")
    db.close()
    problems = SqliteAuditLog(path).verify()
    assert any(p.startswith("seq 2 missing") for p in problems), problems


def test_a_row_rehashed_by_the_attacker_breaks_the_next_link(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    log = filled(path)
    forged = log.entries()[1]
    log.close()
    forged = replace(forged, details={"transaction_id": "tx-2", "amount_fen": 99999})
    db = attacker(path)
    db.execute(
        "UPDATE audit_log SET details_json = ?, entry_hash = ? WHERE seq = 2",
        ('{"amount_fen": 99999, "transaction_id": "tx-2"}', forged.computed_hash()),
    )
    db.close()
    problems = SqliteAuditLog(path).verify()
    assert any(p.startswith("seq 3 broken link") for p in problems), problems


def test_entries_cut_off_the_end_show_against_the_recorded_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    log = filled(path)
    head = log.head()
    assert head is not None and head[0] == 5
    log.close()
    db = attacker(path)
    db.execute("DELETE FROM audit_log WHERE seq >= 4")
    db.close()
    problems = SqliteAuditLog(path).verify(anchor=head)
    assert any(p.startswith("seq 5 missing") for p in problems), problems


def test_an_unreadable_row_is_named_and_logging_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    filled(path).close()
    db = attacker(path)
    db.execute("UPDATE audit_log SET details_json = 'not json' WHERE seq = 5")
    db.close()
    log = SqliteAuditLog(path)
    entry = log.append("c1", "login", {})
    assert entry.seq == 6
    problems = log.verify()
    assert any(p.startswith("seq 5 unreadable") for p in problems), problems


def test_appends_from_many_threads_and_two_connections_form_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    kiosk = SqliteAuditLog(path, terminal_id="t1")
    command_line = SqliteAuditLog(path, terminal_id="t1")

    def write(log: SqliteAuditLog, who: str) -> None:
        for n in range(15):
            log.append(who, "login", {"n": n})

    threads = [
        threading.Thread(target=write, args=(log, f"c{i}"))
        for i, log in enumerate([kiosk, kiosk, command_line, command_line])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = kiosk.entries()
    assert [e.seq for e in entries] == list(range(1, 61))
    assert verify_chain(entries) == [] and command_line.verify() == []


def test_a_file_that_is_not_a_database_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(AuditStoreError, match="cannot open audit log"):
        SqliteAuditLog(path)


def test_a_read_only_open_verifies_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    filled(path).close()
    reader = SqliteAuditLog(path, read_only=True)
    assert reader.verify() == [] and len(reader.entries()) == 5
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.append("c1", "login", {})
    with pytest.raises(AuditStoreError):
        SqliteAuditLog(tmp_path / "missing.db", read_only=True)
    assert not (tmp_path / "missing.db").exists()
