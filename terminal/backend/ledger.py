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
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from terminal.core.money import Fen, require_fen
from terminal.core.ports import Account, PaymentDeclinedError
from terminal.core.session import PaymentReceipt, PaymentRequest

logger = logging.getLogger(__name__)

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
    account_id        TEXT NOT NULL REFERENCES accounts(account_id),
    method            TEXT NOT NULL,
    amount_fen        INTEGER NOT NULL CHECK (amount_fen >= 0),
    balance_after_fen INTEGER NOT NULL,
    lines_json        TEXT NOT NULL,
    created_at        REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS top_ups (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  TEXT NOT NULL REFERENCES accounts(account_id),
    amount_fen  INTEGER NOT NULL CHECK (amount_fen > 0),
    created_at  REAL NOT NULL
);
"""


class LedgerError(RuntimeError):
    """The ledger file cannot be used (unreadable, not a trayscan ledger, ...)."""


@dataclass(frozen=True)
class LedgerTransaction:
    """A recorded charge, as read back from the ledger."""

    transaction_id: str
    checkout_id: str
    terminal_id: str
    account_id: str
    method: str
    amount_fen: Fen
    balance_after_fen: Fen
    lines: list[dict[str, object]]
    created_at: float


class EmbeddedLedger:
    """Accounts and transactions in SQLite; implements ``PaymentBackend``.

    Args:
        path: the SQLite file; its folder is created when missing. ``":memory:"`` keeps
            nothing, for checks and tests.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"cannot open ledger {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

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
            row = db.execute(
                "SELECT balance_fen FROM accounts WHERE account_id = ?", (account_id,)
            ).fetchone()
        return int(row[0])

    # --- payment backend ------------------------------------------------------------------

    def lookup_card(self, card_id: str) -> Account | None:
        with self._lock:
            row = self._db.execute(
                "SELECT a.account_id, a.display_name, a.balance_fen FROM cards c "
                "JOIN accounts a ON a.account_id = c.account_id WHERE c.card_id = ?",
                (card_id,),
            ).fetchone()
        return Account(row[0], row[1], int(row[2])) if row else None

    def account(self, account_id: str) -> Account | None:
        with self._lock:
            row = self._db.execute(
                "SELECT account_id, display_name, balance_fen FROM accounts WHERE account_id = ?",
                (account_id,),
            ).fetchone()
        return Account(row[0], row[1], int(row[2])) if row else None

    def charge(self, request: PaymentRequest, account_id: str) -> PaymentReceipt:
        """Debit ``account_id`` by the request's amount, once per transaction id.

        Raises:
            PaymentDeclinedError: unknown or blocked account, or a balance that does not cover it.
        """
        require_fen(request.amount_fen, "amount")
        if request.amount_fen < 0:
            raise PaymentDeclinedError("negative amount", "invalid_amount")
        with self._write() as db:
            existing = db.execute(
                "SELECT account_id, method, amount_fen, balance_after_fen FROM transactions "
                "WHERE transaction_id = ?",
                (request.transaction_id,),
            ).fetchone()
            if existing:
                logger.info("transaction %s already charged", request.transaction_id)
                return PaymentReceipt(
                    request.transaction_id, existing[0], existing[1], existing[2], existing[3]
                )
            cursor = db.execute(
                "UPDATE accounts SET balance_fen = balance_fen - ? "
                "WHERE account_id = ? AND blocked = 0 AND balance_fen >= ?",
                (request.amount_fen, account_id, request.amount_fen),
            )
            if cursor.rowcount != 1:
                row = db.execute(
                    "SELECT balance_fen, blocked FROM accounts WHERE account_id = ?",
                    (account_id,),
                ).fetchone()
                if row is None:
                    raise PaymentDeclinedError("unknown account", "unknown_account")
                if row[1]:
                    raise PaymentDeclinedError("account blocked", "blocked")
                raise PaymentDeclinedError(
                    f"balance {row[0]} fen does not cover {request.amount_fen} fen",
                    "insufficient_balance",
                )
            balance_after = int(
                db.execute(
                    "SELECT balance_fen FROM accounts WHERE account_id = ?", (account_id,)
                ).fetchone()[0]
            )
            lines = [
                {
                    "item_id": line.item_id,
                    "grams": line.grams,
                    "price_fen": line.price_fen,
                    "pricing": line.pricing.value,
                }
                for line in request.priced.lines
            ]
            db.execute(
                "INSERT INTO transactions (transaction_id, checkout_id, terminal_id, account_id, "
                "method, amount_fen, balance_after_fen, lines_json, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    request.transaction_id,
                    request.checkout_id,
                    request.terminal_id,
                    account_id,
                    request.method,
                    request.amount_fen,
                    balance_after,
                    json.dumps(lines, ensure_ascii=False),
                    request.created_at,
                ),
            )
        return PaymentReceipt(
            request.transaction_id, account_id, request.method, request.amount_fen, balance_after
        )

    def transaction(self, transaction_id: str) -> LedgerTransaction | None:
        """The recorded transaction with this id, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT transaction_id, checkout_id, terminal_id, account_id, method, amount_fen, "
                "balance_after_fen, lines_json, created_at FROM transactions "
                "WHERE transaction_id = ?",
                (transaction_id,),
            ).fetchone()
        if row is None:
            return None
        return LedgerTransaction(
            transaction_id=row[0],
            checkout_id=row[1],
            terminal_id=row[2],
            account_id=row[3],
            method=row[4],
            amount_fen=int(row[5]),
            balance_after_fen=int(row[6]),
            lines=json.loads(row[7]),
            created_at=float(row[8]),
        )

    def transaction_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM transactions").fetchone()[0])
