"""``trayscan cashier`` and ``trayscan audit``: the technician's commands for PINs and the log.

- ``trayscan cashier add ID --name NAME [--role R] [--pin-stdin]`` enrols a cashier; the PIN is
  typed twice without echo, or read from one line of stdin for scripts.
- ``trayscan cashier list`` shows who is enrolled, their role and whether they are locked.
- ``trayscan cashier unlock ID`` lifts a lockout before it runs out.
- ``trayscan audit verify`` re-reads the whole audit log and prints OK, or every problem and
  exits 1.

The files default to ``var/cashiers.db`` and ``var/audit.db`` under the trayscan home; every
change made here is itself written to the audit log, by ``technician:<login name>``.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def default_cashier_db() -> Path:
    """Where the terminal keeps its cashier records."""
    from terminal.config import trayscan_home

    return trayscan_home() / "var" / "cashiers.db"


def default_audit_db() -> Path:
    """Where the terminal keeps its audit log."""
    from terminal.config import trayscan_home

    return trayscan_home() / "var" / "audit.db"


def _actor() -> str:
    try:
        return f"technician:{getpass.getuser()}"
    except (KeyError, OSError):
        return "technician"


def _read_pin(from_stdin: bool) -> str | None:
    """The new PIN, or None (with a message) when it was not given the same way twice."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("PIN (4-8 digits): ")
    second = getpass.getpass("PIN again: ")
    if first != second:
        print("trayscan cashier add: the two PINs differ; nothing changed", file=sys.stderr)
        return None
    return first


def cmd_cashier_add(args: argparse.Namespace) -> int:
    """Enrol a cashier."""
    from terminal.backend.audit_store import AuditStoreError, SqliteAuditLog
    from terminal.backend.cashier_store import CashierStoreError, SqliteCashierStore
    from terminal.core.cashier import enrol_cashier

    pin = _read_pin(args.pin_stdin)
    if pin is None:
        return 1
    try:
        store = SqliteCashierStore(args.db)
        audit = SqliteAuditLog(args.audit_db)
        record = enrol_cashier(
            store,
            args.cashier_id,
            args.name,
            pin,
            args.role,
            audit=audit,
            actor=_actor(),
            replace_existing=args.replace,
        )
    except (CashierStoreError, AuditStoreError, ValueError) as exc:
        print(f"trayscan cashier add: {exc}", file=sys.stderr)
        return 1
    print(f"{record.cashier_id}: enrolled as {record.role.value} ({record.name})")
    return 0


def cmd_cashier_list(args: argparse.Namespace) -> int:
    """Show every enrolled cashier."""
    from terminal.backend.cashier_store import CashierStoreError, SqliteCashierStore
    from terminal.core.cashier import is_locked

    try:
        records = SqliteCashierStore(args.db).cashiers()
    except CashierStoreError as exc:
        print(f"trayscan cashier list: {exc}", file=sys.stderr)
        return 1
    if not records:
        print(f"no cashiers enrolled in {args.db}")
        return 0
    now = time.time()
    for record in records:
        if is_locked(record, now):
            assert record.locked_until is not None
            until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.locked_until))
            state = f"locked until {until}"
        elif record.failures and record.locked_until is None:
            state = f"{record.failures} wrong PIN(s)"
        else:
            state = "ok"
        print(f"{record.cashier_id}\t{record.role.value}\t{state}\t{record.name}")
    return 0


def cmd_cashier_unlock(args: argparse.Namespace) -> int:
    """Lift a cashier's lockout."""
    from terminal.backend.audit_store import AuditStoreError, SqliteAuditLog
    from terminal.backend.cashier_store import CashierStoreError, SqliteCashierStore
    from terminal.core.cashier import UnknownCashierError, unlock_cashier

    try:
        store = SqliteCashierStore(args.db)
        audit = SqliteAuditLog(args.audit_db)
        unlock_cashier(store, args.cashier_id, audit=audit, actor=_actor())
    except (CashierStoreError, AuditStoreError, UnknownCashierError) as exc:
        print(f"trayscan cashier unlock: {exc}", file=sys.stderr)
        return 1
    print(f"{args.cashier_id}: unlocked")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Check the audit log's chain; exit 1 on any sign of tampering."""
    from terminal.backend.audit_store import AuditStoreError, SqliteAuditLog

    if not Path(args.db).is_file():
        print(f"trayscan audit verify: no audit log at {args.db}", file=sys.stderr)
        return 2
    anchor: tuple[int, str] | None = None
    if args.anchor:
        seq, _, entry_hash = args.anchor.partition(":")
        if not seq.isdigit() or len(entry_hash) != 64:
            print(
                "trayscan audit verify: --anchor is SEQ:SHA256 (as printed by OK)", file=sys.stderr
            )
            return 2
        anchor = (int(seq), entry_hash.lower())
    try:
        log = SqliteAuditLog(args.db, read_only=True)
        problems = log.verify(anchor=anchor)
        head = log.head()
    except AuditStoreError as exc:
        print(f"trayscan audit verify: {exc}", file=sys.stderr)
        return 2
    if problems:
        print(f"{args.db}: TAMPERED ({len(problems)} problem(s))")
        for problem in problems:
            print(f"  {problem}")
        return 1
    where = f", head {head[0]}:{head[1]}" if head else ""
    count = head[0] if head else 0
    print(f"{args.db}: OK ({count} entries{where})")
    return 0


def add_parsers(sub: Any) -> None:
    """Add ``cashier`` and ``audit`` to the ``trayscan`` parser."""
    from terminal.core.cashier import Role

    cashier_db, audit_db = default_cashier_db(), default_audit_db()

    cashier = sub.add_parser("cashier", help="enrol, list and unlock cashiers")
    actions = cashier.add_subparsers(dest="cashier_command", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="enrol a cashier with a PIN")
    add.add_argument("cashier_id", metavar="ID", help="the id typed on the PIN pad")
    add.add_argument("--name", required=True, help="the person's name")
    add.add_argument("--role", choices=[role.value for role in Role], default=Role.CASHIER.value)
    add.add_argument("--pin-stdin", action="store_true", help="read the PIN from one stdin line")
    add.add_argument("--replace", action="store_true", help="re-enrol an id (a forgotten PIN)")
    add.add_argument("--db", type=Path, default=cashier_db, help=f"(default {cashier_db})")
    add.add_argument("--audit-db", type=Path, default=audit_db, help=f"(default {audit_db})")
    add.set_defaults(func=cmd_cashier_add)

    listing = actions.add_parser("list", help="who is enrolled, and who is locked")
    listing.add_argument("--db", type=Path, default=cashier_db, help=f"(default {cashier_db})")
    listing.set_defaults(func=cmd_cashier_list)

    unlock = actions.add_parser("unlock", help="lift a lockout after too many wrong PINs")
    unlock.add_argument("cashier_id", metavar="ID")
    unlock.add_argument("--db", type=Path, default=cashier_db, help=f"(default {cashier_db})")
    unlock.add_argument("--audit-db", type=Path, default=audit_db, help=f"(default {audit_db})")
    unlock.set_defaults(func=cmd_cashier_unlock)

    audit = sub.add_parser("audit", help="the cashier audit log")
    audit_actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_actions.add_parser("verify", help="check the hash chain; exit 1 if tampered")
    verify.add_argument("--db", type=Path, default=audit_db, help=f"(default {audit_db})")
    verify.add_argument(
        "--anchor",
        metavar="SEQ:SHA256",
        help="a head printed by an earlier OK: also catches entries cut off the end",
    )
    verify.set_defaults(func=cmd_audit_verify)
