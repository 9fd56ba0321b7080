"""The outbox: every payment the terminal takes, written durably before the diner is told "paid".

One SQLite file (WAL, ``synchronous=FULL``: a committed row survives a power cut) holds

- **entries**: one per transaction, refund or void the backend must hear about, keyed by its
  idempotency id, with the exact body to post and where it stands;
- **the account cache**: the balances last seen from the backend, which offline mode pays
  against.

A transaction entry moves through these states::

    charging ──(backend answered: charged)──► posted            the diner is told "paid"
       │      ──(backend declined)──────────► declined          nothing was taken
       │      ──(backend unreachable, within the offline limit)─► pending ─(worker)─► posted
       │                                                          └─(backend refuses)─► rejected*
       └──────(unreachable and refused offline, or a crash)──► cancelling ─(worker)─► cancelled

``charging`` is written before the first byte goes to the backend. If the terminal dies there, the
diner was never told "paid", so :meth:`Outbox.recover` turns it into ``cancelling`` and the worker
posts a void: the backend gives the money back if the charge had landed, or keeps a tombstone so
a late copy of the post charges nothing. ``rejected`` (an offline payment the backend refused, say
the diner spent the balance elsewhere meanwhile) and ``failed`` (the backend called the request
malformed) are *flagged*: they stay until a cashier or technician acknowledges them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from terminal.backend.durable import DurableSqlite
from terminal.core.money import Fen
from terminal.core.ports import Account, RefundRequest
from terminal.core.session import PaymentReceipt

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    entry_id        TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('transaction', 'refund')),
    transaction_id  TEXT NOT NULL,
    body_json       TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('charging', 'posted', 'declined', 'pending',
                        'cancelling', 'cancelled', 'rejected', 'failed')),
    offline         INTEGER NOT NULL DEFAULT 0,
    account_id      TEXT,
    card_id         TEXT,
    amount_fen      INTEGER NOT NULL,
    day             TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error      TEXT,
    receipt_json    TEXT,
    flagged         INTEGER NOT NULL DEFAULT 0,
    acknowledged_by TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_status ON entries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS entries_account_day ON entries (account_id, day);
CREATE TABLE IF NOT EXISTS cached_accounts (
    account_id   TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    balance_fen  INTEGER NOT NULL,
    blocked      INTEGER NOT NULL,
    synced_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cached_cards (
    card_id    TEXT PRIMARY KEY,
    account_id TEXT NOT NULL
);
"""

#: States the worker still has to post.
TO_POST = ("pending", "cancelling")
#: States of a transaction the diner was told is paid.
PAID = ("posted", "pending", "rejected")


class OutboxError(RuntimeError):
    """The outbox file cannot be used."""


@dataclass(frozen=True)
class OutboxEntry:
    """One row of the outbox."""

    entry_id: str
    kind: str
    transaction_id: str
    body: dict[str, Any]
    status: str
    offline: bool
    account_id: str | None
    card_id: str | None
    amount_fen: Fen
    day: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    flagged: bool
    acknowledged_by: str | None
    created_at: float


@dataclass(frozen=True)
class CachedAccount:
    """An account as last seen from the backend."""

    account: Account
    synced_at: float


def local_day(timestamp: float) -> str:
    """The terminal's local calendar day of ``timestamp``: offline limits reset at midnight."""
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d")


_COLUMNS = (
    "entry_id, kind, transaction_id, body_json, status, offline, account_id, card_id, "
    "amount_fen, day, attempts, next_attempt_at, last_error, flagged, acknowledged_by, created_at"
)


class Outbox(DurableSqlite):
    """The durable queue between the payment path and the backend, and the account cache.

    Thread-safe: the payment path and the outbox worker share one instance.

    Args:
        path: the SQLite file (its folder is created), or ``":memory:"``.
        clock: seconds since the epoch.
    """

    def __init__(self, path: Path | str, *, clock: Any = time.time) -> None:
        super().__init__(path, what="outbox", error=OutboxError, reentrant=True)
        self._clock = clock
        self._install_schema(SCHEMA, SCHEMA_VERSION)

    # --- transactions ---------------------------------------------------------------------

    def begin(
        self,
        body: dict[str, Any],
        *,
        card_id: str | None = None,
    ) -> None:
        """Record a transaction as ``charging`` before it is sent anywhere.

        Raises:
            OutboxError: the id is already in the outbox (a second attempt must use a new id).
        """
        now = self._clock()
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO entries (entry_id, kind, transaction_id, body_json, status, "
                    "account_id, card_id, amount_fen, day, created_at, updated_at) "
                    "VALUES (?, 'transaction', ?, ?, 'charging', ?, ?, ?, ?, ?, ?)",
                    (
                        body["transaction_id"],
                        body["transaction_id"],
                        json.dumps(body, ensure_ascii=False),
                        body.get("account_id"),
                        card_id,
                        int(body["amount_fen"]),
                        local_day(now),
                        now,
                        now,
                    ),
                )
        except sqlite3.IntegrityError:
            raise OutboxError(
                f"transaction {body['transaction_id']} is already in the outbox"
            ) from None

    def finish(
        self,
        entry_id: str,
        status: str,
        *,
        receipt: PaymentReceipt | None = None,
        error: str | None = None,
        body: dict[str, Any] | None = None,
        offline: bool | None = None,
        flagged: bool = False,
    ) -> None:
        """Move an entry to ``status`` (durably, before the caller tells anyone)."""
        now = self._clock()
        with self._write() as db:
            sets = ["status = ?", "updated_at = ?", "flagged = ?"]
            values: list[Any] = [status, now, int(flagged)]
            if receipt is not None:
                sets.append("receipt_json = ?")
                values.append(json.dumps(receipt.__dict__))
            if error is not None:
                sets.append("last_error = ?")
                values.append(error)
            if body is not None:
                sets.append("body_json = ?")
                values.append(json.dumps(body, ensure_ascii=False))
            if offline is not None:
                sets.append("offline = ?")
                values.append(int(offline))
            if status in TO_POST:
                sets.append("next_attempt_at = ?")
                values.append(now)
            cursor = db.execute(
                f"UPDATE entries SET {', '.join(sets)} WHERE entry_id = ?", (*values, entry_id)
            )
            if cursor.rowcount != 1:
                raise OutboxError(f"no outbox entry {entry_id}")

    def retry_later(self, entry_id: str, error: str, delay_s: float) -> None:
        """Count a failed post and set when to try again."""
        now = self._clock()
        with self._write() as db:
            db.execute(
                "UPDATE entries SET attempts = attempts + 1, last_error = ?, "
                "next_attempt_at = ?, updated_at = ? WHERE entry_id = ?",
                (error, now + delay_s, now, entry_id),
            )

    def recover(self) -> int:
        """After a restart: transactions left ``charging`` were never confirmed to the diner,
        so they are voided. Returns how many."""
        now = self._clock()
        with self._write() as db:
            cursor = db.execute(
                "UPDATE entries SET status = 'cancelling', next_attempt_at = ?, updated_at = ?, "
                "last_error = 'terminal stopped before the answer' WHERE status = 'charging'",
                (now, now),
            )
            count = int(cursor.rowcount)
        if count:
            logger.warning("%d payment(s) interrupted by a stop will be voided", count)
        return count

    # --- refunds --------------------------------------------------------------------------

    def queue_refund(self, request: RefundRequest) -> None:
        """Keep a refund the backend could not take now; the worker posts it later."""
        now = self._clock()
        body = {
            "refund_id": request.refund_id,
            "transaction_id": request.transaction_id,
            "amount_fen": request.amount_fen,
            "reason": request.reason,
            "cashier_id": request.cashier_id,
        }
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO entries (entry_id, kind, transaction_id, body_json, "
                "status, amount_fen, day, next_attempt_at, created_at, updated_at) "
                "VALUES (?, 'refund', ?, ?, 'pending', ?, ?, ?, ?, ?)",
                (
                    request.refund_id,
                    request.transaction_id,
                    json.dumps(body, ensure_ascii=False),
                    request.amount_fen,
                    local_day(now),
                    now,
                    now,
                    now,
                ),
            )

    # --- reading --------------------------------------------------------------------------

    def entry(self, entry_id: str) -> OutboxEntry | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM entries WHERE entry_id = ?", (entry_id,)
            ).fetchone()
        return _entry(row) if row else None

    def entries(self, *statuses: str) -> list[OutboxEntry]:
        """Entries in any of ``statuses`` (all when none are given), oldest first."""
        query = f"SELECT {_COLUMNS} FROM entries"
        if statuses:
            query += f" WHERE status IN ({', '.join('?' * len(statuses))})"
        with self._lock:
            rows = self._db.execute(query + " ORDER BY created_at, entry_id", statuses).fetchall()
        return [_entry(row) for row in rows]

    def due(self, limit: int = 50) -> list[OutboxEntry]:
        """Entries the worker should post now, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM entries WHERE status IN ('pending', 'cancelling') "
                "AND next_attempt_at <= ? ORDER BY created_at, entry_id LIMIT ?",
                (self._clock(), limit),
            ).fetchall()
        return [_entry(row) for row in rows]

    def next_due_at(self) -> float | None:
        """When the next entry is due, or None when nothing waits."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_attempt_at) FROM entries WHERE status IN ('pending', 'cancelling')"
            ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def depth(self) -> int:
        """How many entries the backend has not heard about yet."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM entries WHERE status IN ('charging', 'pending', 'cancelling')"
            ).fetchone()
        return int(row[0])

    def flagged(self) -> list[OutboxEntry]:
        """Entries a cashier or technician must look at, not yet acknowledged."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM entries WHERE flagged = 1 AND acknowledged_by IS NULL "
                "ORDER BY created_at"
            ).fetchall()
        return [_entry(row) for row in rows]

    def acknowledge(self, entry_id: str, by: str) -> None:
        """A cashier has dealt with a flagged entry (it stays in the outbox as a record)."""
        with self._write() as db:
            db.execute(
                "UPDATE entries SET acknowledged_by = ?, updated_at = ? WHERE entry_id = ?",
                (by, self._clock(), entry_id),
            )

    def offline_spent(self, account_id: str, day: str) -> Fen:
        """What was paid offline from ``account_id`` on ``day``: the offline limit's use."""
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(SUM(amount_fen), 0) FROM entries WHERE kind = 'transaction' "
                "AND offline = 1 AND account_id = ? AND day = ? "
                "AND status IN ('pending', 'posted', 'rejected')",
                (account_id, day),
            ).fetchone()
        return int(row[0])

    def unposted_spent(self, account_id: str) -> Fen:
        """What was paid offline from ``account_id`` that the backend has not heard about."""
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(SUM(amount_fen), 0) FROM entries WHERE kind = 'transaction' "
                "AND account_id = ? AND status = 'pending'",
                (account_id,),
            ).fetchone()
        return int(row[0])

    # --- the account cache ----------------------------------------------------------------

    def cache_account(self, account: Account, card_id: str | None = None) -> None:
        """Remember an account as the backend showed it just now."""
        now = self._clock()
        with self._write() as db:
            _put_account(db, account, now)
            if card_id is not None:
                db.execute(
                    "INSERT INTO cached_cards (card_id, account_id) VALUES (?, ?) "
                    "ON CONFLICT(card_id) DO UPDATE SET account_id = excluded.account_id",
                    (card_id, account.account_id),
                )

    def cache_balance(self, account_id: str, balance_fen: Fen) -> None:
        """The balance after a charge the backend confirmed."""
        with self._write() as db:
            db.execute(
                "UPDATE cached_accounts SET balance_fen = ?, synced_at = ? WHERE account_id = ?",
                (balance_fen, self._clock(), account_id),
            )

    def replace_cache(self, cards: list[tuple[str, Account]], synced_at: float) -> None:
        """A full snapshot of every card from the backend."""
        with self._write() as db:
            db.execute("DELETE FROM cached_cards")
            for card_id, account in cards:
                _put_account(db, account, synced_at)
                db.execute(
                    "INSERT OR REPLACE INTO cached_cards (card_id, account_id) VALUES (?, ?)",
                    (card_id, account.account_id),
                )

    def cached_card(self, card_id: str) -> CachedAccount | None:
        with self._lock:
            row = self._db.execute(
                "SELECT account_id FROM cached_cards WHERE card_id = ?", (card_id,)
            ).fetchone()
        return self.cached_account(str(row[0])) if row else None

    def cached_account(self, account_id: str) -> CachedAccount | None:
        with self._lock:
            row = self._db.execute(
                "SELECT account_id, display_name, balance_fen, blocked, synced_at "
                "FROM cached_accounts WHERE account_id = ?",
                (account_id,),
            ).fetchone()
        if row is None:
            return None
        account = Account(str(row[0]), str(row[1]), int(row[2]), bool(row[3]))
        return CachedAccount(account, float(row[4]))


def _put_account(db: sqlite3.Connection, account: Account, synced_at: float) -> None:
    db.execute(
        "INSERT INTO cached_accounts (account_id, display_name, balance_fen, blocked, synced_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT(account_id) DO UPDATE SET "
        "display_name = excluded.display_name, balance_fen = excluded.balance_fen, "
        "blocked = excluded.blocked, synced_at = excluded.synced_at",
        (
            account.account_id,
            account.display_name,
            account.balance_fen,
            int(account.blocked),
            synced_at,
        ),
    )


def _entry(row: tuple[Any, ...]) -> OutboxEntry:
    return OutboxEntry(
        entry_id=row[0],
        kind=row[1],
        transaction_id=row[2],
        body=json.loads(row[3]),
        status=row[4],
        offline=bool(row[5]),
        account_id=row[6],
        card_id=row[7],
        amount_fen=int(row[8]),
        day=row[9],
        attempts=int(row[10]),
        next_attempt_at=float(row[11]),
        last_error=row[12],
        flagged=bool(row[13]),
        acknowledged_by=row[14],
        created_at=float(row[15]),
    )
