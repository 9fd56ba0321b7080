"""Every operation of the reference server on its database, each one database transaction.

The rules of ``docs/backend-contract.md`` live here:

* A balance only changes in SQL (``UPDATE accounts SET balance_fen = balance_fen - :amount WHERE
  ... AND balance_fen >= :amount``), never by reading it into Python and writing it back, so
  concurrent debits from many terminals and server processes can never overdraw an account.
* Posting a transaction inserts its row with ``INSERT ... ON CONFLICT DO NOTHING`` *first* and
  debits only when that insert happened, both in one database transaction. A concurrent duplicate
  waits on the primary key until the first commits, then finds the row and answers with it, so a
  retried post never debits twice.
* A void of an id never posted inserts a ``voided`` tombstone, so a late post of it charges
  nothing. Refunds are idempotent by ``refund_id`` and can never exceed what is left of the
  transaction (also a CHECK constraint).
* A terminal's request nonce is recorded in the same database transaction as the work it asks
  for, so a replayed request finds the nonce taken; when the work is refused the nonce is still
  recorded on its own, so a refused request cannot be replayed later either.

Any refusal is an :class:`server.errors.ApiError`; nothing is changed by a refused request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as day_time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from server import schema
from server.errors import ApiError
from server.models import (
    AccountAnswer,
    BundleInfo,
    CardAnswer,
    CardEntry,
    CardsAnswer,
    DailyReport,
    DailyTotals,
    DishSales,
    HeartbeatAnswer,
    HeartbeatBody,
    LineAnswer,
    MenuAnswer,
    MenuVersionAnswer,
    RefundAnswer,
    RefundBody,
    TerminalAnswer,
    TransactionBody,
    TransactionRecordAnswer,
    TransactionResult,
    VoidAnswer,
)
from server.schema import accounts, bundles, cards, menus, nonces, refunds, terminals, top_ups
from server.schema import transactions as txns
from terminal.backend.signing import MAX_SKEW_S
from terminal.backend.wire import ACCOUNT_METHODS
from terminal.menu_file import MenuFileModel

logger = logging.getLogger(__name__)

#: Nonces older than this are forgotten: a request carrying them is refused as stale anyway.
NONCE_KEEP_S = 2 * MAX_SKEW_S + 60
_PRUNE_EVERY_S = 60.0
#: How long a terminal's secret is trusted from memory before it is read again.
SECRET_CACHE_S = 30.0


@dataclass(frozen=True)
class NonceClaim:
    """A verified terminal request: who signed it and the nonce it may use once."""

    terminal_id: str
    nonce: str


class Store:
    """The reference server's ledger on one database (SQLite or PostgreSQL).

    Methods taking a :class:`NonceClaim` serve a terminal's signed request and record its nonce;
    the others are administration (the admin API and the ``trayscan backend`` commands).

    Args:
        engine: from :func:`server.schema.make_engine`; the tables must exist
            (:func:`server.schema.create_schema`).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.database = schema.database_kind(engine)
        self._insert: Any = postgresql.insert if self.database == "postgresql" else sqlite.insert
        self._secrets: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._pruned_at = 0.0
        # Statements of the hot path, built once: building them costs more than running them.
        self._insert_statements: dict[str, Any] = {}
        amount = sa.bindparam("amount_fen", type_=sa.BigInteger)
        self._debit_statement = (
            sa.update(accounts)
            .where(
                accounts.c.account_id == sa.bindparam("debited_account"),
                sa.not_(accounts.c.blocked),
                accounts.c.balance_fen >= amount,
            )
            .values(balance_fen=accounts.c.balance_fen - amount)
            .returning(accounts.c.balance_fen)
        )
        self._balance_after_statement = (
            sa.update(txns)
            .where(txns.c.transaction_id == sa.bindparam("charged_transaction"))
            .values(balance_after_fen=sa.bindparam("balance_after"))
        )

    def close(self) -> None:
        self.engine.dispose()

    # --- plumbing ---------------------------------------------------------------------------

    def _insert_new(self, conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
        """``INSERT ... ON CONFLICT DO NOTHING``; whether the row was inserted.

        ``RETURNING`` says so on every driver (psycopg's rowcount of an INSERT is not kept).
        A conflicting row that is not committed yet makes this wait for its transaction.
        """
        statement = self._insert_statements.get(table.name)
        if statement is None:
            key = next(iter(table.primary_key.columns))
            statement = self._insert(table).on_conflict_do_nothing().returning(key)
            self._insert_statements[table.name] = statement
        return conn.execute(statement, values).first() is not None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn = conn.execution_options(**{schema.READ_ONLY: True})
            with conn.begin():
                yield conn

    def _read_for(self, claim: NonceClaim | None) -> AbstractContextManager[Connection]:
        """The database transaction of a request that only reads: a terminal's (``claim``) still
        writes, to take its nonce; the admin's reads."""
        return self._write(claim) if claim else self._read()

    @contextmanager
    def _write(self, claim: NonceClaim | None = None) -> Iterator[Connection]:
        """One database transaction; with a claim, its nonce is taken first.

        Raises:
            ApiError: ``replayed`` when the nonce was used before; any refusal from the body, in
                which case the work is rolled back and the nonce is recorded on its own.
        """
        try:
            with self.engine.begin() as conn:
                if claim is not None:
                    self._take_nonce(conn, claim)
                yield conn
        except ApiError as exc:
            if claim is not None and exc.code != "replayed":
                self._record_nonce(claim)
            raise

    def _take_nonce(self, conn: Connection, claim: NonceClaim) -> None:
        now = time.time()
        inserted = self._insert_new(
            conn, nonces, {"terminal_id": claim.terminal_id, "nonce": claim.nonce, "seen_at": now}
        )
        if not inserted:
            raise ApiError(
                401, "replayed", f"nonce {claim.nonce} was already used by {claim.terminal_id}"
            )
        if now - self._pruned_at > _PRUNE_EVERY_S:
            self._pruned_at = now
            conn.execute(sa.delete(nonces).where(nonces.c.seen_at < now - NONCE_KEEP_S))

    def _record_nonce(self, claim: NonceClaim) -> None:
        """Remember the nonce of a refused request, so that it cannot be replayed either."""
        try:
            with self.engine.begin() as conn:
                self._insert_new(
                    conn,
                    nonces,
                    {
                        "terminal_id": claim.terminal_id,
                        "nonce": claim.nonce,
                        "seen_at": time.time(),
                    },
                )
        except sa.exc.DBAPIError:
            logger.exception("could not record nonce of a refused request")

    def ping(self) -> None:
        """Raises the driver's error when the database does not answer."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    # --- terminals --------------------------------------------------------------------------

    def cached_secret(self, terminal_id: str) -> str | None:
        """A terminal's secret if it is remembered and recent; never touches the database."""
        with self._lock:
            cached = self._secrets.get(terminal_id)
        if cached is not None and time.monotonic() - cached[1] < SECRET_CACHE_S:
            return cached[0]
        return None

    def terminal_secret(self, terminal_id: str, *, fresh: bool = False) -> str | None:
        """A terminal's signing secret, or None for an unknown terminal.

        Args:
            fresh: read the database even when the secret is remembered (after a signature
                mismatch, in case the secret was changed).
        """
        now = time.monotonic()
        if not fresh:
            cached = self.cached_secret(terminal_id)
            if cached is not None:
                return cached
        with self._read() as conn:
            secret = conn.execute(
                sa.select(terminals.c.secret).where(terminals.c.terminal_id == terminal_id)
            ).scalar_one_or_none()
        with self._lock:
            if secret is None:
                self._secrets.pop(terminal_id, None)
            else:
                self._secrets[terminal_id] = (secret, now)
        return secret

    def add_terminal(self, terminal_id: str) -> TerminalAnswer:
        """Register a terminal with a new secret; an existing terminal gets a new secret.

        Other server processes may accept the old secret for up to :data:`SECRET_CACHE_S`.
        """
        secret = secrets.token_hex(32)
        now = time.time()
        with self._write() as conn:
            inserted = self._insert_new(
                conn, terminals, {"terminal_id": terminal_id, "secret": secret, "created_at": now}
            )
            if not inserted:
                conn.execute(
                    sa.update(terminals)
                    .where(terminals.c.terminal_id == terminal_id)
                    .values(secret=secret)
                )
        with self._lock:
            self._secrets.pop(terminal_id, None)
        logger.info("terminal %s %s", terminal_id, "registered" if inserted else "re-keyed")
        return TerminalAnswer(terminal_id=terminal_id, secret=secret)

    def heartbeat(self, claim: NonceClaim, body: HeartbeatBody) -> HeartbeatAnswer:
        """Note what the terminal runs and answer with the bundle it should run."""
        with self._write(claim) as conn:
            conn.execute(
                sa.update(terminals)
                .where(terminals.c.terminal_id == claim.terminal_id)
                .values(
                    last_seen_at=time.time(),
                    bundle_version=body.bundle_version,
                    outbox_depth=body.outbox_depth,
                    status=body.status,
                )
            )
            bundle = self._latest_bundle(conn)
        return HeartbeatAnswer(server_time=time.time(), bundle=bundle)

    # --- accounts and cards ---------------------------------------------------------------

    def create_account(
        self, account_id: str, display_name: str, balance_fen: int = 0
    ) -> AccountAnswer:
        """Open an account.

        Raises:
            ApiError: 409 ``conflict`` when the id is taken; 422 for a negative balance.
        """
        if balance_fen < 0:
            raise ApiError(422, "invalid_request", "balance_fen: must not be negative")
        with self._write() as conn:
            inserted = self._insert_new(
                conn,
                accounts,
                {
                    "account_id": account_id,
                    "display_name": display_name,
                    "balance_fen": balance_fen,
                    "blocked": False,
                    "created_at": time.time(),
                },
            )
            if not inserted:
                raise ApiError(409, "conflict", f"account {account_id} already exists")
        logger.info("account %s opened with %d fen", account_id, balance_fen)
        return AccountAnswer(
            account_id=account_id, display_name=display_name, balance_fen=balance_fen, blocked=False
        )

    def add_card(self, account_id: str, card_id: str) -> CardAnswer:
        """Link a card to an account, replacing any earlier link of that card.

        Raises:
            ApiError: 404 ``unknown_account``.
        """
        with self._write() as conn:
            require_account(conn, account_id)
            updated = conn.execute(
                sa.update(cards).where(cards.c.card_id == card_id).values(account_id=account_id)
            ).rowcount
            if updated != 1:
                conn.execute(sa.insert(cards).values(card_id=card_id, account_id=account_id))
        return CardAnswer(card_id=card_id, account_id=account_id)

    def top_up(self, account_id: str, amount_fen: int) -> AccountAnswer:
        """Add money to an account.

        Raises:
            ApiError: 404 ``unknown_account``; 422 for an amount that is not positive.
        """
        if amount_fen <= 0:
            raise ApiError(422, "invalid_request", "amount_fen: a top-up must be positive")
        with self._write() as conn:
            row = _first_row_or_404(
                conn,
                sa.update(accounts)
                .where(accounts.c.account_id == account_id)
                .values(balance_fen=accounts.c.balance_fen + amount_fen)
                .returning(*_account_columns()),
                "unknown_account",
                f"no account {account_id}",
            )
            conn.execute(
                sa.insert(top_ups).values(
                    account_id=account_id, amount_fen=amount_fen, created_at=time.time()
                )
            )
        return _account(row)

    def set_blocked(self, account_id: str, blocked: bool) -> AccountAnswer:
        """Block or unblock an account; a blocked account is refused every debit.

        Raises:
            ApiError: 404 ``unknown_account``.
        """
        with self._write() as conn:
            row = _first_row_or_404(
                conn,
                sa.update(accounts)
                .where(accounts.c.account_id == account_id)
                .values(blocked=blocked)
                .returning(*_account_columns()),
                "unknown_account",
                f"no account {account_id}",
            )
        return _account(row)

    def account(self, account_id: str, claim: NonceClaim | None = None) -> AccountAnswer:
        """An account by its id.

        Raises:
            ApiError: 404 ``unknown_account``.
        """
        with self._read_for(claim) as conn:
            row = _first_row_or_404(
                conn,
                sa.select(*_account_columns()).where(accounts.c.account_id == account_id),
                "unknown_account",
                f"no account {account_id}",
            )
        return _account(row)

    def card_account(self, card_id: str, claim: NonceClaim | None = None) -> AccountAnswer:
        """The account a card pays from.

        Raises:
            ApiError: 404 ``unknown_card``.
        """
        with self._read_for(claim) as conn:
            row = _first_row_or_404(
                conn,
                sa.select(*_account_columns())
                .select_from(cards.join(accounts))
                .where(cards.c.card_id == card_id),
                "unknown_card",
                f"no card {card_id}",
            )
        return _account(row)

    def all_cards(self, claim: NonceClaim | None = None) -> CardsAnswer:
        """Every card with its account, for a terminal's offline cache."""
        with self._read_for(claim) as conn:
            rows = conn.execute(
                sa.select(cards.c.card_id, *_account_columns())
                .select_from(cards.join(accounts))
                .order_by(cards.c.card_id)
            ).all()
        return CardsAnswer(
            cards=[
                CardEntry(
                    card_id=row.card_id,
                    account_id=row.account_id,
                    display_name=row.display_name,
                    balance_fen=int(row.balance_fen),
                    blocked=bool(row.blocked),
                )
                for row in rows
            ],
            synced_at=time.time(),
        )

    # --- transactions -----------------------------------------------------------------------

    def post_transaction(
        self, claim: NonceClaim | None, body: TransactionBody
    ) -> tuple[TransactionResult, bool]:
        """Record a transaction and debit its account, once per transaction id.

        Returns:
            The answer and whether this post created the transaction (False: a repeat, answered
            with what the first post recorded).

        Raises:
            ApiError: 422 (account id missing or present against the method), 409 ``conflict``
                (the id was posted with another amount, account or method), 409 ``voided``,
                404 ``unknown_account``, 403 ``blocked``, 402 ``insufficient_balance``.
        """
        debits = body.method in ACCOUNT_METHODS
        if debits and body.account_id is None:
            raise ApiError(
                422, "invalid_request", f"account_id: a {body.method} transaction needs an account"
            )
        if not debits and body.account_id is not None:
            raise ApiError(
                422, "invalid_request", f"account_id: must be null for a {body.method} transaction"
            )
        lines = [
            {
                "item_id": line.item_id,
                "grams": line.grams,
                "price_fen": line.price_fen,
                "pricing": "per_portion" if line.pricing == "portion" else line.pricing,
            }
            for line in body.lines
        ]
        row = {
            "transaction_id": body.transaction_id,
            "checkout_id": body.checkout_id,
            "terminal_id": body.terminal_id,
            "account_id": body.account_id,
            "method": body.method,
            "amount_fen": body.amount_fen,
            "balance_after_fen": None,
            "status": "charged",
            "refunded_fen": 0,
            "offline": body.offline,
            "lines": lines,
            "created_at": body.created_at,
            "posted_at": time.time(),
            "tombstone": False,
        }
        with self._write(claim) as conn:
            inserted = self._insert_new(conn, txns, row)
            if not inserted:
                return self._repeated_post(conn, body), False
            balance_after: int | None = None
            if debits:
                assert body.account_id is not None
                balance_after = self._debit(conn, body.account_id, body.amount_fen)
                conn.execute(
                    self._balance_after_statement,
                    {"charged_transaction": body.transaction_id, "balance_after": balance_after},
                )
        logger.debug(
            "transaction %s: %d fen from %s", body.transaction_id, body.amount_fen, body.account_id
        )
        result = TransactionResult(
            transaction_id=body.transaction_id,
            account_id=body.account_id,
            method=body.method,
            amount_fen=body.amount_fen,
            balance_after_fen=balance_after,
            offline=body.offline,
            created=True,
        )
        return result, True

    def _debit(self, conn: Connection, account_id: str, amount_fen: int) -> int:
        """Take ``amount_fen`` from the account in SQL; the new balance.

        Raises:
            ApiError: unknown account, blocked, or a balance that does not cover the amount.
        """
        balance = conn.execute(
            self._debit_statement, {"debited_account": account_id, "amount_fen": amount_fen}
        ).scalar_one_or_none()
        if balance is not None:
            return int(balance)
        state = conn.execute(
            sa.select(accounts.c.balance_fen, accounts.c.blocked).where(
                accounts.c.account_id == account_id
            )
        ).first()
        if state is None:
            raise ApiError(404, "unknown_account", f"no account {account_id}")
        if state.blocked:
            raise ApiError(403, "blocked", f"account {account_id} is blocked")
        raise ApiError(
            402,
            "insufficient_balance",
            f"balance {state.balance_fen} fen of {account_id} does not cover {amount_fen} fen",
        )

    def _repeated_post(self, conn: Connection, body: TransactionBody) -> TransactionResult:
        stored = conn.execute(sa.select(txns).where(txns.c.transaction_id == body.transaction_id))
        row = stored.one()
        if row.tombstone or row.status == "voided":
            raise ApiError(409, "voided", f"transaction {body.transaction_id} was voided")
        differs = [
            name
            for name, given, kept in (
                ("amount_fen", body.amount_fen, int(row.amount_fen)),
                ("account_id", body.account_id, row.account_id),
                ("method", body.method, row.method),
            )
            if given != kept
        ]
        if differs:
            raise ApiError(
                409,
                "conflict",
                f"transaction {body.transaction_id} was posted with another {', '.join(differs)}",
            )
        logger.info("transaction %s posted again; answering with the first", body.transaction_id)
        return TransactionResult(
            transaction_id=row.transaction_id,
            account_id=row.account_id,
            method=row.method,
            amount_fen=int(row.amount_fen),
            balance_after_fen=_int_or_none(row.balance_after_fen),
            offline=bool(row.offline),
            created=False,
        )

    def transaction(
        self, transaction_id: str, claim: NonceClaim | None = None
    ) -> TransactionRecordAnswer:
        """A transaction as recorded, tombstones included.

        Raises:
            ApiError: 404 ``unknown_transaction``.
        """
        with self._read_for(claim) as conn:
            row = _first_row_or_404(
                conn,
                sa.select(txns).where(txns.c.transaction_id == transaction_id),
                "unknown_transaction",
                f"no transaction {transaction_id}",
            )
        return TransactionRecordAnswer(
            transaction_id=row.transaction_id,
            account_id=row.account_id,
            method=row.method,
            amount_fen=int(row.amount_fen),
            balance_after_fen=_int_or_none(row.balance_after_fen),
            offline=bool(row.offline),
            created=False,
            checkout_id=row.checkout_id,
            terminal_id=row.terminal_id,
            status=row.status,
            refunded_fen=int(row.refunded_fen) + int(row.void_refunded_fen or 0),
            created_at=float(row.created_at),
            lines=[LineAnswer(**line) for line in row.lines],
        )

    def void(self, claim: NonceClaim | None, transaction_id: str, reason: str) -> VoidAnswer:
        """Cancel a transaction in full, giving back what refunds have not; idempotent.

        A void of an id never posted records a tombstone, so a late post of it is refused.
        """
        now = time.time()
        terminal_id = claim.terminal_id if claim else "admin"
        tombstone: dict[str, Any] = {
            "transaction_id": transaction_id,
            "checkout_id": "",
            "terminal_id": terminal_id,
            "account_id": None,
            "method": "",
            "amount_fen": 0,
            "status": "voided",
            "refunded_fen": 0,
            "offline": False,
            "lines": [],
            "created_at": now,
            "posted_at": now,
            "tombstone": True,
            "void_refunded_fen": 0,
            "void_reason": reason,
            "voided_at": now,
        }
        with self._write(claim) as conn:
            if self._insert_new(conn, txns, tombstone):
                logger.info("transaction %s voided before it was posted: tombstone", transaction_id)
                return VoidAnswer(
                    transaction_id=transaction_id, refunded_fen=0, balance_after_fen=None
                )
            voided = conn.execute(
                sa.update(txns)
                .where(txns.c.transaction_id == transaction_id, txns.c.status == "charged")
                .values(
                    status="voided",
                    void_refunded_fen=txns.c.amount_fen - txns.c.refunded_fen,
                    void_reason=reason,
                    voided_at=now,
                )
                .returning(txns.c.account_id, txns.c.void_refunded_fen)
            ).first()
            if voided is None:
                kept = conn.execute(
                    sa.select(txns.c.void_refunded_fen, txns.c.void_balance_after_fen).where(
                        txns.c.transaction_id == transaction_id
                    )
                ).one()
                return VoidAnswer(
                    transaction_id=transaction_id,
                    refunded_fen=int(kept.void_refunded_fen or 0),
                    balance_after_fen=_int_or_none(kept.void_balance_after_fen),
                )
            back = int(voided.void_refunded_fen)
            balance_after = None
            if voided.account_id is not None:
                balance_after = self._credit(conn, voided.account_id, back)
                conn.execute(
                    sa.update(txns)
                    .where(txns.c.transaction_id == transaction_id)
                    .values(void_balance_after_fen=balance_after)
                )
        logger.info("transaction %s voided: %d fen back", transaction_id, back)
        return VoidAnswer(
            transaction_id=transaction_id, refunded_fen=back, balance_after_fen=balance_after
        )

    def _credit(self, conn: Connection, account_id: str, amount_fen: int) -> int:
        balance = conn.execute(
            sa.update(accounts)
            .where(accounts.c.account_id == account_id)
            .values(balance_fen=accounts.c.balance_fen + amount_fen)
            .returning(accounts.c.balance_fen)
        ).scalar_one()
        return int(balance)

    def refund(self, claim: NonceClaim | None, body: RefundBody) -> tuple[RefundAnswer, bool]:
        """Give back part of a charged transaction, once per refund id.

        Returns:
            The answer and whether this call made the refund (False: a repeat).

        Raises:
            ApiError: 404 ``unknown_transaction``, 409 ``voided``, 409 ``refund_exceeds``,
                409 ``conflict`` (the refund id was used with another transaction or amount).
        """
        with self._write(claim) as conn:
            target = conn.execute(
                sa.select(txns.c.status, txns.c.amount_fen, txns.c.refunded_fen).where(
                    txns.c.transaction_id == body.transaction_id
                )
            ).first()
            if target is None:
                raise ApiError(404, "unknown_transaction", f"no transaction {body.transaction_id}")
            inserted = self._insert_new(
                conn,
                refunds,
                {
                    "refund_id": body.refund_id,
                    "transaction_id": body.transaction_id,
                    "amount_fen": body.amount_fen,
                    "balance_after_fen": None,
                    "reason": body.reason,
                    "cashier_id": body.cashier_id,
                    "terminal_id": claim.terminal_id if claim else "admin",
                    "created_at": time.time(),
                },
            )
            if not inserted:
                return self._repeated_refund(conn, body), False
            charged = conn.execute(
                sa.update(txns)
                .where(
                    txns.c.transaction_id == body.transaction_id,
                    txns.c.status == "charged",
                    txns.c.refunded_fen + body.amount_fen <= txns.c.amount_fen,
                )
                .values(refunded_fen=txns.c.refunded_fen + body.amount_fen)
                .returning(txns.c.account_id)
            ).first()
            if charged is None:
                state = conn.execute(
                    sa.select(txns.c.status, txns.c.amount_fen, txns.c.refunded_fen).where(
                        txns.c.transaction_id == body.transaction_id
                    )
                ).one()
                if state.status == "voided":
                    raise ApiError(409, "voided", f"transaction {body.transaction_id} was voided")
                left = int(state.amount_fen) - int(state.refunded_fen)
                raise ApiError(
                    409,
                    "refund_exceeds",
                    f"refund of {body.amount_fen} fen exceeds the {left} fen left of "
                    f"transaction {body.transaction_id}",
                )
            balance_after = None
            if charged.account_id is not None:
                balance_after = self._credit(conn, charged.account_id, body.amount_fen)
                conn.execute(
                    sa.update(refunds)
                    .where(refunds.c.refund_id == body.refund_id)
                    .values(balance_after_fen=balance_after)
                )
        logger.info("refund %s: %d fen of %s", body.refund_id, body.amount_fen, body.transaction_id)
        answer = RefundAnswer(
            refund_id=body.refund_id,
            transaction_id=body.transaction_id,
            amount_fen=body.amount_fen,
            balance_after_fen=balance_after,
        )
        return answer, True

    def _repeated_refund(self, conn: Connection, body: RefundBody) -> RefundAnswer:
        row = conn.execute(sa.select(refunds).where(refunds.c.refund_id == body.refund_id)).one()
        if row.transaction_id != body.transaction_id or int(row.amount_fen) != body.amount_fen:
            raise ApiError(
                409,
                "conflict",
                f"refund {body.refund_id} was made for {row.amount_fen} fen of "
                f"transaction {row.transaction_id}",
            )
        return RefundAnswer(
            refund_id=row.refund_id,
            transaction_id=row.transaction_id,
            amount_fen=int(row.amount_fen),
            balance_after_fen=_int_or_none(row.balance_after_fen),
        )

    # --- menu and bundles -------------------------------------------------------------------

    def set_menu(self, menu: MenuFileModel) -> MenuVersionAnswer:
        """Make ``menu`` today's menu; it gets the next version number."""
        document = menu.model_dump(mode="json")
        digest = hashlib.sha256(
            json.dumps(document, sort_keys=True, ensure_ascii=False).encode("utf-8")
        ).hexdigest()
        with self._write() as conn:
            version = conn.execute(
                sa.insert(menus)
                .values(document=document, sha256=digest, created_at=time.time())
                .returning(menus.c.version)
            ).scalar_one()
        logger.info("menu version %s set (%d dishes)", version, len(menu.items))
        return MenuVersionAnswer(version=str(version), dishes=len(menu.items))

    def menu_today(self, claim: NonceClaim | None = None) -> MenuAnswer:
        """The current menu.

        Raises:
            ApiError: 404 ``no_menu``.
        """
        with self._read_for(claim) as conn:
            row = _first_row_or_404(
                conn,
                sa.select(menus.c.version, menus.c.document)
                .order_by(menus.c.version.desc())
                .limit(1),
                "no_menu",
                "no menu has been set (trayscan backend set-menu)",
            )
        return MenuAnswer(
            date=date.today().isoformat(),
            version=str(row.version),
            menu=MenuFileModel.model_validate(row.document),
        )

    def publish_bundle(self, version: str, archive: bytes) -> tuple[BundleInfo, bool]:
        """Store a bundle's tar.gz archive; it becomes the latest.

        Returns:
            The bundle and whether it is new (False: the same archive was published before).

        Raises:
            ApiError: 409 ``conflict`` when the version was published with another archive.
        """
        digest = hashlib.sha256(archive).hexdigest()
        with self._write() as conn:
            inserted = self._insert_new(
                conn,
                bundles,
                {
                    "version": version,
                    "sha256": digest,
                    "size": len(archive),
                    "archive": archive,
                    "published_at": time.time(),
                },
            )
            if not inserted:
                kept = conn.execute(
                    sa.select(bundles.c.sha256).where(bundles.c.version == version)
                ).scalar_one()
                if kept != digest:
                    raise ApiError(
                        409,
                        "conflict",
                        f"bundle {version} was published with other contents; bump the version",
                    )
        if inserted:
            logger.info("bundle %s published (%d bytes)", version, len(archive))
        return BundleInfo(version=version, sha256=digest, size=len(archive)), inserted

    def latest_bundle(self, claim: NonceClaim | None = None) -> BundleInfo:
        """The bundle terminals should run.

        Raises:
            ApiError: 404 ``no_bundle``.
        """
        with self._read_for(claim) as conn:
            bundle = self._latest_bundle(conn)
            if bundle is None:
                raise ApiError(404, "no_bundle", "no bundle has been published")
        return bundle

    def _latest_bundle(self, conn: Connection) -> BundleInfo | None:
        row = conn.execute(
            sa.select(bundles.c.version, bundles.c.sha256, bundles.c.size)
            .order_by(bundles.c.seq.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        return BundleInfo(version=row.version, sha256=row.sha256, size=int(row.size))

    def bundle_archive(self, version: str, claim: NonceClaim | None = None) -> tuple[bytes, str]:
        """A bundle's archive and its SHA-256.

        Raises:
            ApiError: 404 ``no_bundle``.
        """
        with self._read_for(claim) as conn:
            row = _first_row_or_404(
                conn,
                sa.select(bundles.c.archive, bundles.c.sha256).where(bundles.c.version == version),
                "no_bundle",
                f"no bundle {version}",
            )
        return bytes(row.archive), str(row.sha256)

    # --- reports ----------------------------------------------------------------------------

    def daily_report(self, day: date) -> DailyReport:
        """Per-dish sales and grams of ``day`` (server's local time); voided ones left out."""
        start = datetime.combine(day, day_time()).timestamp()
        end = datetime.combine(day + timedelta(days=1), day_time()).timestamp()
        in_day = sa.and_(txns.c.created_at >= start, txns.c.created_at < end)
        with self._read() as conn:
            charged = conn.execute(
                sa.select(txns.c.amount_fen, txns.c.lines).where(in_day, txns.c.status == "charged")
            ).all()
            voided = conn.execute(
                sa.select(sa.func.count()).where(in_day, txns.c.status == "voided")
            ).scalar_one()
            refunded = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(refunds.c.amount_fen), 0))
                .select_from(refunds.join(txns))
                .where(in_day, txns.c.status == "charged")
            ).scalar_one()
        dishes: dict[str, list[int]] = {}
        total_grams = 0
        for row in charged:
            for line in row.lines:
                entry = dishes.setdefault(str(line["item_id"]), [0, 0, 0])
                entry[0] += 1
                entry[1] += int(line["price_fen"])
                entry[2] += int(line["grams"])
                total_grams += int(line["grams"])
        return DailyReport(
            date=day.isoformat(),
            dishes=[
                DishSales(item_id=item_id, count=count, sales_fen=sales, grams=grams)
                for item_id, (count, sales, grams) in sorted(dishes.items())
            ],
            totals=DailyTotals(
                transactions=len(charged),
                sales_fen=sum(int(row.amount_fen) for row in charged),
                grams=total_grams,
                refunded_fen=int(refunded),
                voided=int(voided),
            ),
        )


def require_account(conn: Connection, account_id: str) -> None:
    """Check that the account exists.

    Raises:
        ApiError: 404 ``unknown_account``.
    """
    _first_row_or_404(
        conn,
        sa.select(accounts.c.account_id).where(accounts.c.account_id == account_id),
        "unknown_account",
        f"no account {account_id}",
    )


def _first_row_or_404(
    conn: Connection, statement: sa.Executable, code: str, message: str
) -> sa.Row[Any]:
    """The first row ``statement`` returns.

    Raises:
        ApiError: 404 with ``code`` and ``message`` when it returns none.
    """
    row = conn.execute(statement).first()
    if row is None:
        raise ApiError(404, code, message)
    return row


def _account_columns() -> tuple[sa.Column[Any], ...]:
    return (
        accounts.c.account_id,
        accounts.c.display_name,
        accounts.c.balance_fen,
        accounts.c.blocked,
    )


def _account(row: Any) -> AccountAnswer:
    return AccountAnswer(
        account_id=row.account_id,
        display_name=row.display_name,
        balance_fen=int(row.balance_fen),
        blocked=bool(row.blocked),
    )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
