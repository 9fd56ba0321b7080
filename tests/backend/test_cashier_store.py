"""Cashier records on disk: PIN hashes only, and a lockout that a power cut does not lift."""

from __future__ import annotations

import argparse
import contextlib
import io
import sqlite3
import sys
from pathlib import Path

import pytest

from terminal.backend.audit_store import SqliteAuditLog
from terminal.backend.cashier_store import CashierStoreError, SqliteCashierStore
from terminal.backend.ledger import EmbeddedLedger
from terminal.cashier_cli import add_parsers
from terminal.core.cashier import (
    CashierDesk,
    CashierLockedError,
    CashierRecord,
    CashierStore,
    PinPolicy,
    PinRejectedError,
    Role,
    check_pin,
    enrol_cashier,
)
from terminal.core.menu import Menu
from terminal.core.session import CheckoutSession


def test_records_round_trip_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "var" / "cashiers.db"
    store = SqliteCashierStore(path)
    assert isinstance(store, CashierStore)
    assert store.get("c1") is None
    enrol_cashier(store, "c2", "张强", "97531", Role.SUPERVISOR)
    enrol_cashier(store, "c1", "李娜", "2468")
    locked = CashierRecord("c3", "赵工", "scrypt$x", Role.TECHNICIAN, 5, 1_700_000_300.5)
    store.put(locked)
    store.close()

    reopened = SqliteCashierStore(path)
    assert [r.cashier_id for r in reopened.cashiers()] == ["c1", "c2", "c3"]
    assert reopened.get("c3") == locked
    c2 = reopened.get("c2")
    assert c2 is not None and c2.role is Role.SUPERVISOR and c2.name == "张强"
    assert check_pin("97531", c2.pin_hash)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        stored = db.execute("SELECT group_concat(pin_hash) FROM cashiers").fetchone()[0]
    assert "97531" not in stored and "2468" not in stored


def test_put_replaces_a_record(tmp_path: Path) -> None:
    store = SqliteCashierStore(tmp_path / "cashiers.db")
    enrol_cashier(store, "c1", "李娜", "2468")
    record = store.get("c1")
    assert record is not None
    store.put(CashierRecord("c1", "李娜", record.pin_hash, Role.SUPERVISOR, 2, None))
    again = store.get("c1")
    assert again is not None and again.role is Role.SUPERVISOR and again.failures == 2
    assert len(store.cashiers()) == 1


def test_a_lockout_survives_a_restart_of_the_terminal(tmp_path: Path, menu: Menu) -> None:
    """Pulling the plug after four wrong PINs must not give a thief five more."""
    path = tmp_path / "cashiers.db"
    now = [1_700_000_000.0]

    def desk() -> CashierDesk:
        session = CheckoutSession(menu, "t1")
        audit = SqliteAuditLog(tmp_path / "audit.db", terminal_id="t1")
        store = SqliteCashierStore(path)
        return CashierDesk(session, EmbeddedLedger(":memory:"), store, audit, clock=lambda: now[0])

    enrol_cashier(SqliteCashierStore(path), "c1", "李娜", "2468")
    first = desk()
    for _ in range(4):
        with pytest.raises(PinRejectedError):
            first.login("c1", "0000")
    second = desk()  # the terminal restarted
    with pytest.raises(CashierLockedError):
        second.login("c1", "0000")
    with pytest.raises(CashierLockedError):
        second.login("c1", "2468")
    now[0] += PinPolicy().lockout_s
    assert second.login("c1", "2468").failures == 0
    actions = [entry.action for entry in second.audit.entries()]
    assert actions == ["pin_rejected"] * 4 + ["cashier_locked", "locked_out", "login"]
    assert second.audit.verify() == []


def test_a_file_that_is_not_a_database_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "cashiers.db"
    path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(CashierStoreError, match="cannot open cashier file"):
        SqliteCashierStore(path)


def run_cli(argv: list[str], stdin: str = "") -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="trayscan")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out = io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out):
            code: int = args.func(args)
    finally:
        sys.stdin = old_stdin
    return code, out.getvalue()


def test_technician_commands_enrol_unlock_and_verify(tmp_path: Path) -> None:
    db, audit = str(tmp_path / "cashiers.db"), str(tmp_path / "audit.db")
    files = ["--db", db, "--audit-db", audit]
    code, out = run_cli(["cashier", "add", "c1", "--name", "李娜", "--pin-stdin", *files], "2468\n")
    assert code == 0 and "enrolled as cashier" in out
    assert run_cli(["cashier", "add", "c1", "--name", "x", "--pin-stdin", *files], "1357\n")[0] == 1
    store = SqliteCashierStore(db)
    record = store.get("c1")
    assert record is not None and check_pin("2468", record.pin_hash)
    store.put(CashierRecord("c1", "李娜", record.pin_hash, Role.CASHIER, 5, 4_000_000_000.0))
    code, out = run_cli(["cashier", "list", "--db", db])
    assert code == 0 and "locked until" in out
    assert run_cli(["cashier", "unlock", "c1", *files])[0] == 0
    assert "\tok\t" in run_cli(["cashier", "list", "--db", db])[1]

    code, out = run_cli(["audit", "verify", "--db", audit])
    assert code == 0 and "OK (2 entries" in out
    head = out.split("head ")[1].rstrip(")\n")
    assert run_cli(["audit", "verify", "--db", audit, "--anchor", head])[0] == 0
    with sqlite3.connect(audit) as raw:
        raw.execute("DROP TRIGGER audit_log_no_update")
        raw.execute("UPDATE audit_log SET actor = 'someone' WHERE seq = 1")
    code, out = run_cli(["audit", "verify", "--db", audit])
    assert code == 1 and "seq 1 altered" in out
    assert run_cli(["audit", "verify", "--db", str(tmp_path / "none.db")])[0] == 2
