"""The embedded ledger: accounts, cards and transactions in one SQLite file.

With no backend configured, this is the backend: one terminal works alone. It follows the rules
of the payment path. A charge is one database transaction that debits the balance only if it
covers the amount (the check is in SQL, not in Python) and records the transaction under its
idempotency key; it is committed with ``synchronous=FULL`` in WAL mode before the receipt is
returned, so a diner is told "paid" only for a charge that survives a power cut. Charging the same
transaction id again returns the first receipt and takes nothing.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from terminal.backend import face_ledger
from terminal.backend.durable import DurableSqlite
from terminal.backend.face_sync import FaceConsent, FaceEnrolmentReceipt, FaceTemplateChanges
from terminal.backend.wire import ACCOUNT_METHODS, METHODS, transaction_body
from terminal.core.money import Fen, require_fen
from terminal.core.ports import (
    Account,
    PaymentDeclinedError,
    RefundReceipt,
    RefundRequest,
    TransactionRecord,
    VoidResult,
)
from terminal.core.session import PaymentReceipt, PaymentRequest

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account_id   TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    balance_fen  INTEGER NOT NULL CHECK (balance_fen >= 0),
    blocked      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS cards (
    card_id    TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(account_id)
);
CREATE TABLE IF NOT EXISTS transactions (
    transaction_id    TEXT PRIMARY KEY,
    checkout_id       TEXT NOT NULL,
    terminal_id       TEXT NOT NULL,
    account_id        TEXT REFERENCES accounts(account_id),
    method            TEXT NOT NULL,
    amount_fen        INTEGER NOT NULL CHECK (amount_fen >= 0),
    balance_after_fen INTEGER,
    lines_json        TEXT NOT NULL,
    created_at        REAL NOT NULL,
    status            TEXT NOT NULL DEFAULT 'charged' CHECK (status IN ('charged', 'voided')),
    refunded_fen      INTEGER NOT NULL DEFAULT 0 CHECK (refunded_fen >= 0),
    offline           INTEGER NOT NULL DEFAULT 0,
    CHECK (refunded_fen <= amount_fen)
);
CREATE TABLE IF NOT EXISTS refunds (
    refund_id      TEXT PRIMARY KEY,
    transaction_id TEXT NOT NULL REFERENCES transactions(transaction_id),
    amount_fen     INTEGER NOT NULL CHECK (amount_fen > 0),
    reason         TEXT NOT NULL,
    cashier_id     TEXT NOT NULL,
    balance_after_fen INTEGER,
    created_at     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS top_ups (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  TEXT NOT NULL REFERENCES accounts(account_id),
    amount_fen  INTEGER NOT NULL CHECK (amount_fen > 0),
    created_at  REAL NOT NULL
);
"""
# Face templates and their enrolment/deletion record (terminal.backend.face_ledger).
SCHEMA += face_ledger.FACE_SCHEMA

# Version 1 ledgers had no voids, refunds or tender without an account.
_MIGRATE_FROM_1 = (
    """
ALTER TABLE transactions RENAME TO transactions_v1;
"""
    + SCHEMA
    + """
INSERT INTO transactions (transaction_id, checkout_id, terminal_id, account_id, method,
    amount_fen, balance_after_fen, lines_json, created_at)
SELECT transaction_id, checkout_id, terminal_id, account_id, method, amount_fen,
    balance_after_fen, lines_json, created_at FROM transactions_v1;
DROP TABLE transactions_v1;
"""
)

_RECORD_COLUMNS = (
    "transaction_id, checkout_id, terminal_id, account_id, method, amount_fen, "
    "balance_after_fen, status, refunded_fen, offline, created_at"
)


class LedgerError(RuntimeError):
    """The ledger file cannot be used (unreadable, not a trayscan ledger, ...)."""


class EmbeddedLedger(DurableSqlite):
    """Accounts and transactions in SQLite; implements ``LedgerBackend``.

    Args:
        path: the SQLite file; its folder is created when missing. ``":memory:"`` keeps
            nothing, for checks and tests.
    """

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, what="ledger", error=LedgerError)
        try:
            self._db.execute("PRAGMA foreign_keys=ON")
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(transactions)")}
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"cannot open ledger {self.path}: {exc}") from exc
        # Version 1 ledgers predate user_version: they are the ones without a status column.
        legacy = bool(columns) and "status" not in columns
        self._install_schema(
            SCHEMA, SCHEMA_VERSION, migrate_from={0: _MIGRATE_FROM_1} if legacy else None
        )

    # --- administration -------------------------------------------------------------------

    def create_account(self, account_id: str, display_name: str, balance_fen: Fen = 0) -> None:
        """Open an account; an existing id is left as it is."""
        require_fen(balance_fen, "opening balance")
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO accounts (account_id, display_name, balance_fen) "
                "VALUES (?, ?, ?)",
                (account_id, display_name, balance_fen),
            )

    def add_card(self, card_id: str, account_id: str) -> None:
        """Link a card (canonical id) to an account, replacing any previous link of that card."""
        with self._write() as db:
            db.execute(
                "INSERT INTO cards (card_id, account_id) VALUES (?, ?) "
                "ON CONFLICT(card_id) DO UPDATE SET account_id = excluded.account_id",
                (card_id, account_id),
            )

    def set_blocked(self, account_id: str, blocked: bool) -> None:
        """Block an account (a lost card) or unblock it."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE accounts SET blocked = ? WHERE account_id = ?", (int(blocked), account_id)
            )
            if cursor.rowcount != 1:
                raise KeyError(f"no account {account_id!r}")

    def top_up(self, account_id: str, amount_fen: Fen) -> Fen:
        """Add money to an account; returns the new balance."""
        require_fen(amount_fen, "top-up")
        if amount_fen <= 0:
            raise ValueError("a top-up must be positive")
        with self._write() as db:
            cursor = db.execute(
                "UPDATE accounts SET balance_fen = balance_fen + ? WHERE account_id = ?",
                (amount_fen, account_id),
            )
            if cursor.rowcount != 1:
                raise KeyError(f"no account {account_id!r}")
            db.execute(
                "INSERT INTO top_ups (account_id, amount_fen, created_at) VALUES (?, ?, ?)",
                (account_id, amount_fen, time.time()),
            )
            return _balance(db, account_id)

    def cards(self) -> tuple[list[tuple[str, Account]], float]:
        """Every card with its account, and when this snapshot was taken (for a cache)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT c.card_id, a.account_id, a.display_name, a.balance_fen, a.blocked "
                "FROM cards c JOIN accounts a ON a.account_id = c.account_id ORDER BY c.card_id"
            ).fetchall()
        cards = [(row[0], Account(row[1], row[2], int(row[3]), bool(row[4]))) for row in rows]
        return cards, time.time()

    # --- the backend contract -------------------------------------------------------------

    def lookup_card(self, card_id: str) -> Account | None:
        with self._lock:
            row = self._db.execute(
                "SELECT a.account_id, a.display_name, a.balance_fen, a.blocked FROM cards c "
                "JOIN accounts a ON a.account_id = c.account_id WHERE c.card_id = ?",
                (card_id,),
            ).fetchone()
        return Account(row[0], row[1], int(row[2]), bool(row[3])) if row else None

    def lookup_account(self, account_id: str) -> Account | None:
        with self._lock:
            row = self._db.execute(
                "SELECT account_id, display_name, balance_fen, blocked FROM accounts "
                "WHERE account_id = ?",
                (account_id,),
            ).fetchone()
        return Account(row[0], row[1], int(row[2]), bool(row[3])) if row else None

    def account(self, account_id: str) -> Account | None:
        """The same as :meth:`lookup_account`."""
        return self.lookup_account(account_id)

    def charge(self, request: PaymentRequest, account_id: str) -> PaymentReceipt:
        """Record the request's transaction, debiting ``account_id``, once per transaction id.

        Cash and other tender move no balance (``account_id`` is ignored for them).

        Raises:
            PaymentDeclinedError: unknown or blocked account, a balance that does not cover it,
                an id voided before it was charged, or an id reused for another amount.
        """
        target = account_id if request.method in ACCOUNT_METHODS else None
        return self.post_transaction(transaction_body(request, target))

    def post_transaction(self, body: dict[str, Any]) -> PaymentReceipt:
        """Record a transaction body (``wire.transaction_body``); idempotent by its id."""
        transaction_id = str(body["transaction_id"])
        amount = body["amount_fen"]
        require_fen(amount, "amount")
        if amount < 0:
            raise PaymentDeclinedError("negative amount", "invalid_amount")
        method = str(body["method"])
        if method not in METHODS:
            raise PaymentDeclinedError(f"unknown payment method {method!r}", "rejected")
        debit = method in ACCOUNT_METHODS
        account_id = str(body.get("account_id") or "")
        target = account_id if debit else None
        offline = bool(body.get("offline", False))
        with self._write() as db:
            existing = db.execute(
                "SELECT account_id, method, amount_fen, balance_after_fen, status, offline "
                "FROM transactions WHERE transaction_id = ?",
                (transaction_id,),
            ).fetchone()
            if existing:
                return _repeat(transaction_id, (target, method, amount), existing)
            balance_after: int | None = None
            if debit:
                cursor = db.execute(
                    "UPDATE accounts SET balance_fen = balance_fen - ? "
                    "WHERE account_id = ? AND blocked = 0 AND balance_fen >= ?",
                    (amount, account_id, amount),
                )
                if cursor.rowcount != 1:
                    raise _decline(db, account_id, amount)
                balance_after = _balance(db, account_id)
            db.execute(
                "INSERT INTO transactions (transaction_id, checkout_id, terminal_id, account_id, "
                "method, amount_fen, balance_after_fen, lines_json, created_at, offline) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    transaction_id,
                    str(body.get("checkout_id", "")),
                    str(body.get("terminal_id", "")),
                    target,
                    method,
                    amount,
                    balance_after,
                    json.dumps(body.get("lines", []), ensure_ascii=False),
                    float(body.get("created_at") or time.time()),
                    int(offline),
                ),
            )
        return PaymentReceipt(transaction_id, target or "", method, amount, balance_after, offline)

    def void(self, transaction_id: str, reason: str) -> VoidResult:
        """Cancel a transaction in full, giving back what was not refunded yet; idempotent.

        An id never charged gets a tombstone, so that a late charge of it is refused.
        """
        with self._write() as db:
            row = db.execute(
                "SELECT account_id, method, amount_fen, status, refunded_fen "
                "FROM transactions WHERE transaction_id = ?",
                (transaction_id,),
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO transactions (transaction_id, checkout_id, terminal_id, "
                    "account_id, method, amount_fen, balance_after_fen, lines_json, created_at, "
                    "status) VALUES (?, '', '', NULL, 'void', 0, NULL, '[]', ?, 'voided')",
                    (transaction_id, time.time()),
                )
                logger.info(
                    "void of unknown transaction %s: tombstone (%s)", transaction_id, reason
                )
                return VoidResult(transaction_id, 0, None)
            account_id, method, amount, status, refunded = row
            if status == "voided":
                # A repeat answers as the first void did: what it gave back.
                refunds = db.execute(
                    "SELECT COALESCE(SUM(amount_fen), 0) FROM refunds WHERE transaction_id = ?",
                    (transaction_id,),
                ).fetchone()[0]
                balance = _balance(db, account_id) if account_id else None
                return VoidResult(transaction_id, int(amount) - int(refunds), balance)
            give_back = int(amount) - int(refunded)
            db.execute(
                "UPDATE transactions SET status = 'voided', refunded_fen = amount_fen "
                "WHERE transaction_id = ?",
                (transaction_id,),
            )
            balance_after: int | None = None
            if account_id and method in ACCOUNT_METHODS:
                db.execute(
                    "UPDATE accounts SET balance_fen = balance_fen + ? WHERE account_id = ?",
                    (give_back, account_id),
                )
                balance_after = _balance(db, account_id)
            logger.info("voided %s (%s): %d fen back", transaction_id, reason, give_back)
            return VoidResult(transaction_id, give_back, balance_after)

    def refund(self, request: RefundRequest) -> RefundReceipt:
        """Give back part or all of a charged transaction; idempotent by ``refund_id``."""
        require_fen(request.amount_fen, "refund")
        if request.amount_fen <= 0:
            raise PaymentDeclinedError("a refund must be positive", "invalid_amount")
        with self._write() as db:
            done = db.execute(
                "SELECT transaction_id, amount_fen, balance_after_fen FROM refunds "
                "WHERE refund_id = ?",
                (request.refund_id,),
            ).fetchone()
            if done:
                if done[0] != request.transaction_id or int(done[1]) != request.amount_fen:
                    raise PaymentDeclinedError(
                        f"refund id {request.refund_id} was used for another refund", "conflict"
                    )
                balance = int(done[2]) if done[2] is not None else None
                return RefundReceipt(request.refund_id, done[0], int(done[1]), balance)
            row = db.execute(
                "SELECT account_id, method, amount_fen, status, refunded_fen "
                "FROM transactions WHERE transaction_id = ?",
                (request.transaction_id,),
            ).fetchone()
            if row is None:
                raise PaymentDeclinedError(
                    f"no transaction {request.transaction_id}", "unknown_transaction"
                )
            account_id, method, amount, status, refunded = row
            if status == "voided":
                raise PaymentDeclinedError(
                    f"transaction {request.transaction_id} is voided", "voided"
                )
            left = int(amount) - int(refunded)
            if request.amount_fen > left:
                raise PaymentDeclinedError(
                    f"refund of {request.amount_fen} fen exceeds the {left} fen left of "
                    f"transaction {request.transaction_id}",
                    "refund_exceeds",
                )
            db.execute(
                "UPDATE transactions SET refunded_fen = refunded_fen + ? WHERE transaction_id = ?",
                (request.amount_fen, request.transaction_id),
            )
            balance_after: int | None = None
            if account_id and method in ACCOUNT_METHODS:
                db.execute(
                    "UPDATE accounts SET balance_fen = balance_fen + ? WHERE account_id = ?",
                    (request.amount_fen, account_id),
                )
                balance_after = _balance(db, account_id)
            db.execute(
                "INSERT INTO refunds (refund_id, transaction_id, amount_fen, reason, cashier_id, "
                "balance_after_fen, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    request.refund_id,
                    request.transaction_id,
                    request.amount_fen,
                    request.reason,
                    request.cashier_id,
                    balance_after,
                    time.time(),
                ),
            )
        return RefundReceipt(
            request.refund_id, request.transaction_id, request.amount_fen, balance_after
        )

    def transaction(self, transaction_id: str) -> TransactionRecord | None:
        """The recorded transaction (or tombstone) with this id, or None."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_RECORD_COLUMNS} FROM transactions WHERE transaction_id = ?",
                (transaction_id,),
            ).fetchone()
        return _record(row) if row else None

    def transactions(self) -> list[TransactionRecord]:
        """Every transaction and tombstone, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_RECORD_COLUMNS} FROM transactions ORDER BY created_at, transaction_id"
            ).fetchall()
        return [_record(row) for row in rows]

    def transaction_lines(self, transaction_id: str) -> list[dict[str, object]]:
        """The priced lines recorded with a transaction (empty for a tombstone)."""
        with self._lock:
            row = self._db.execute(
                "SELECT lines_json FROM transactions WHERE transaction_id = ?", (transaction_id,)
            ).fetchone()
        return list(json.loads(row[0])) if row else []

    # --- face accounts (terminal.backend.face_ledger) ---------------------------------------

    def enrol_face(
        self,
        account_id: str,
        templates: npt.NDArray[np.float32],
        model: str,
        consent: FaceConsent,
        *,
        card_id: str | None = None,
        actor: str = "terminal",
    ) -> FaceEnrolmentReceipt:
        """Store an account's face templates (replacing earlier ones) with the consent record.

        Raises:
            FaceEnrolmentError: unknown account, a card of another account, no consent, bad
                templates.
        """
        with self._write() as db:
            return face_ledger.enrol(
                db, account_id, templates, model, consent, card_id=card_id, actor=actor
            )

    def delete_face(
        self,
        account_id: str,
        *,
        card_id: str | None = None,
        reason: str = "",
        actor: str = "terminal",
    ) -> int:
        """Delete every face template of the account; returns how many there were."""
        with self._write() as db:
            return face_ledger.delete(db, account_id, card_id=card_id, reason=reason, actor=actor)

    def face_templates_since(self, cursor: int) -> FaceTemplateChanges:
        """The accounts whose face templates changed or were deleted after ``cursor``."""
        with self._lock:
            return face_ledger.changes_since(self._db, cursor)

    def transaction_count(self) -> int:
        """How many transactions were charged (tombstones and voids not counted)."""
        with self._lock:
            return int(
                self._db.execute(
                    "SELECT COUNT(*) FROM transactions WHERE status = 'charged'"
                ).fetchone()[0]
            )


def _balance(db: sqlite3.Connection, account_id: str) -> int:
    return int(
        db.execute(
            "SELECT balance_fen FROM accounts WHERE account_id = ?", (account_id,)
        ).fetchone()[0]
    )


def _decline(db: sqlite3.Connection, account_id: str, amount_fen: int) -> PaymentDeclinedError:
    row = db.execute(
        "SELECT balance_fen, blocked FROM accounts WHERE account_id = ?", (account_id,)
    ).fetchone()
    if row is None:
        return PaymentDeclinedError("unknown account", "unknown_account")
    if row[1]:
        return PaymentDeclinedError("account blocked", "blocked")
    return PaymentDeclinedError(
        f"balance {row[0]} fen does not cover {amount_fen} fen", "insufficient_balance"
    )


def _repeat(
    transaction_id: str, asked: tuple[str | None, str, int], existing: tuple[object, ...]
) -> PaymentReceipt:
    """The answer to a transaction id seen before: its first receipt, or a refusal."""
    stored_account, method, amount, balance_after, status, offline = existing
    if status == "voided":
        raise PaymentDeclinedError(f"transaction {transaction_id} was voided", "voided")
    if (stored_account, method, amount) != asked:
        raise PaymentDeclinedError(
            f"transaction id {transaction_id} was used for another payment", "conflict"
        )
    logger.info("transaction %s already charged", transaction_id)
    return PaymentReceipt(
        transaction_id,
        str(stored_account or ""),
        str(method),
        int(str(amount)),
        int(str(balance_after)) if balance_after is not None else None,
        bool(offline),
    )


def _record(row: tuple[object, ...]) -> TransactionRecord:
    balance = row[6]
    return TransactionRecord(
        transaction_id=str(row[0]),
        checkout_id=str(row[1]),
        terminal_id=str(row[2]),
        account_id=str(row[3]) if row[3] is not None else None,
        method=str(row[4]),
        amount_fen=int(str(row[5])),
        balance_after_fen=int(str(balance)) if balance is not None else None,
        status=str(row[7]),
        refunded_fen=int(str(row[8])),
        offline=bool(row[9]),
        created_at=float(str(row[10])),
    )
