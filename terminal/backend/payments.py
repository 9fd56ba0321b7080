"""Paying through a remote backend without ever losing a payment or taking one twice.

:class:`OutboxBackend` is the ``LedgerBackend`` the checkout talks to when the canteen has a
backend (the reference server or a campus-card platform). It puts the :class:`Outbox` between
the two:

- a charge is written to the outbox (``charging``) before it is sent, and marked ``posted``
  before the receipt is returned, so "paid" on the screen always has a durable record behind it;
- when the backend cannot be reached, a card or face payment is accepted **offline** against the
  balance last synced from the backend, within :class:`OfflinePolicy`'s limit per account and
  day, and posted later by :class:`OutboxWorker`; beyond the limit the diner is told why;
- a payment whose answer was lost and that is not accepted offline is voided by the worker, so
  the backend gives back whatever landed.

The worker drains the outbox in order with exponential backoff, refreshes the account cache,
and flags for the cashier an offline payment the backend refuses when it comes back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from terminal.backend.outbox import Outbox, OutboxEntry, local_day
from terminal.backend.wire import ACCOUNT_METHODS, transaction_body
from terminal.core.money import Fen, format_yuan
from terminal.core.ports import (
    Account,
    BackendRequestError,
    BackendUnavailableError,
    LedgerBackend,
    PaymentDeclinedError,
    RefundReceipt,
    RefundRequest,
    TransactionRecord,
    VoidResult,
)
from terminal.core.session import PaymentReceipt, PaymentRequest

logger = logging.getLogger(__name__)


@runtime_checkable
class RemoteLedger(LedgerBackend, Protocol):
    """A backend reached over a network: the contract plus what the outbox needs."""

    def post_transaction(self, body: dict[str, Any]) -> PaymentReceipt:
        """Post a transaction body as written by ``wire.transaction_body``; idempotent."""
        ...

    def cards(self) -> tuple[list[tuple[str, Account]], float]:
        """Every card with its account, and the time of the snapshot."""
        ...


@dataclass(frozen=True)
class OfflinePolicy:
    """What the terminal may accept while the backend cannot be reached.

    Attributes:
        enabled: accept payments offline at all.
        per_account_daily_fen: the most one account (card or face) may pay offline in a day.
        max_cache_age_s: a balance synced longer ago than this is not trusted offline.
    """

    enabled: bool = True
    per_account_daily_fen: Fen = 3000
    max_cache_age_s: float = 3 * 24 * 3600


class OutboxBackend:
    """``LedgerBackend`` over a :class:`RemoteLedger`, with the outbox and offline mode.

    Args:
        online: the backend client.
        outbox: the terminal's outbox.
        policy: offline limits.
        clock: seconds since the epoch.
        on_queued: called after an entry is queued for the worker (to wake it).
    """

    def __init__(
        self,
        online: RemoteLedger,
        outbox: Outbox,
        *,
        policy: OfflinePolicy | None = None,
        clock: Callable[[], float] = time.time,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.online = online
        self.outbox = outbox
        self.policy = policy or OfflinePolicy()
        self._clock = clock
        self._on_queued = on_queued or (lambda: None)
        self.last_online_error: str | None = None

    def close(self) -> None:
        close = getattr(self.online, "close", None)
        if callable(close):
            close()
        self.outbox.close()

    def set_on_queued(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever something is queued for the worker."""
        self._on_queued = callback

    @property
    def reachable(self) -> bool:
        """Whether the last call to the backend got an answer."""
        return self.last_online_error is None

    # --- lookups --------------------------------------------------------------------------

    def lookup_card(self, card_id: str) -> Account | None:
        try:
            account = self.online.lookup_card(card_id)
        except BackendUnavailableError as exc:
            self._went_offline(exc)
            cached = self.outbox.cached_card(card_id)
            if cached is None:
                raise PaymentDeclinedError(
                    "the canteen system cannot be reached and this card has not been used at "
                    "this terminal before; please pay at the cashier",
                    "unknown_card",
                ) from exc
            return self._offline_view(cached.account)
        self._back_online()
        if account is not None:
            self.outbox.cache_account(account, card_id)
        return account

    def lookup_account(self, account_id: str) -> Account | None:
        try:
            account = self.online.lookup_account(account_id)
        except BackendUnavailableError as exc:
            self._went_offline(exc)
            cached = self.outbox.cached_account(account_id)
            if cached is None:
                raise PaymentDeclinedError(
                    "the canteen system cannot be reached and this account has not been used "
                    "at this terminal before; please pay at the cashier",
                    "unknown_account",
                ) from exc
            return self._offline_view(cached.account)
        self._back_online()
        if account is not None:
            self.outbox.cache_account(account)
        return account

    def _offline_view(self, account: Account) -> Account:
        # What the diner may still spend: the synced balance less offline payments not posted.
        spent = self.outbox.unposted_spent(account.account_id)
        return replace(account, balance_fen=max(0, account.balance_fen - spent))

    # --- charging -------------------------------------------------------------------------

    def charge(self, request: PaymentRequest, account_id: str) -> PaymentReceipt:
        """Charge online, or offline within the policy; the outbox has it before this returns.

        Raises:
            PaymentDeclinedError: declined by the backend, or refused offline
                (``offline_limit``, ``insufficient_balance``, ``unknown_card``,
                ``offline_stale``, ``offline_disabled``).
        """
        target = account_id if request.method in ACCOUNT_METHODS else None
        body = transaction_body(request, target)
        card_id = request.credential if request.method == "card" else None
        txid = request.transaction_id
        self.outbox.begin(body, card_id=card_id)
        try:
            receipt = self.online.post_transaction(body)
        except PaymentDeclinedError as exc:
            self.outbox.finish(txid, "declined", error=f"{exc.code}: {exc.reason}")
            raise
        except BackendRequestError as exc:
            # The backend answered that the request is wrong: nothing was charged.
            self.outbox.finish(txid, "declined", error=str(exc))
            raise PaymentDeclinedError(
                f"the backend refused the payment: {exc}", "rejected"
            ) from exc
        except Exception as exc:  # unreachable, timed out, or the answer was lost
            error = (
                exc
                if isinstance(exc, BackendUnavailableError)
                else BackendUnavailableError(str(exc))
            )
            self._went_offline(error)
            return self._charge_offline(request, body, target)
        self._back_online()
        self.outbox.finish(txid, "posted", receipt=receipt)
        if target is not None and receipt.balance_after_fen is not None:
            self.outbox.cache_balance(target, receipt.balance_after_fen)
        return receipt

    def _charge_offline(
        self, request: PaymentRequest, body: dict[str, Any], account_id: str | None
    ) -> PaymentReceipt:
        txid = request.transaction_id
        try:
            balance_after = self._check_offline(request, account_id)
        except PaymentDeclinedError as exc:
            # The charge may have reached the backend before the line dropped: void it there.
            self.outbox.finish(txid, "cancelling", error=f"{exc.code}: {exc.reason}")
            self._on_queued()
            raise
        offline_body = {**body, "offline": True}
        receipt = PaymentReceipt(
            txid, account_id or "", request.method, request.amount_fen, balance_after, offline=True
        )
        self.outbox.finish(txid, "pending", body=offline_body, offline=True, receipt=receipt)
        logger.info("transaction %s accepted offline (%d fen)", txid, request.amount_fen)
        self._on_queued()
        return receipt

    def _check_offline(self, request: PaymentRequest, account_id: str | None) -> Fen | None:
        """The estimated balance after an offline payment, or a refusal saying why."""
        if account_id is None:
            return None  # cash or other tender moves no balance
        if not self.policy.enabled:
            raise PaymentDeclinedError(
                "the canteen system cannot be reached and this terminal takes no offline "
                "payments; please pay at the cashier",
                "offline_disabled",
            )
        cached = self.outbox.cached_account(account_id)
        if cached is None:
            raise PaymentDeclinedError(
                "the canteen system cannot be reached and this account has not been seen at "
                "this terminal; please pay at the cashier",
                "unknown_card",
            )
        now = self._clock()
        if now - cached.synced_at > self.policy.max_cache_age_s:
            raise PaymentDeclinedError(
                "the canteen system cannot be reached and this account's balance is too old "
                "to trust; please pay at the cashier",
                "offline_stale",
            )
        if cached.account.blocked:
            raise PaymentDeclinedError("account blocked", "blocked")
        limit = self.policy.per_account_daily_fen
        used = self.outbox.offline_spent(account_id, local_day(now))
        if used + request.amount_fen > limit:
            raise PaymentDeclinedError(
                f"the canteen system is offline: offline payments are limited to "
                f"{format_yuan(limit)} per card per day and {format_yuan(used)} is used; "
                f"this tray is {format_yuan(request.amount_fen)}. Please pay at the cashier",
                "offline_limit",
            )
        available = cached.account.balance_fen - self.outbox.unposted_spent(account_id)
        if request.amount_fen > available:
            raise PaymentDeclinedError(
                f"balance {format_yuan(max(0, available))} does not cover "
                f"{format_yuan(request.amount_fen)}",
                "insufficient_balance",
            )
        return available - request.amount_fen

    # --- after payment --------------------------------------------------------------------

    def void(self, transaction_id: str, reason: str) -> VoidResult:
        return self.online.void(transaction_id, reason)

    def refund(self, request: RefundRequest) -> RefundReceipt:
        """Refund online; when the backend cannot be reached the refund is queued and its
        receipt has no balance (the worker posts it, idempotently by ``refund_id``)."""
        try:
            receipt = self.online.refund(request)
        except BackendUnavailableError as exc:
            self._went_offline(exc)
            self.outbox.queue_refund(request)
            self._on_queued()
            return RefundReceipt(
                request.refund_id, request.transaction_id, request.amount_fen, None
            )
        self._back_online()
        return receipt

    def transaction(self, transaction_id: str) -> TransactionRecord | None:
        return self.online.transaction(transaction_id)

    def sync_accounts(self) -> int:
        """Refresh the account cache from the backend; returns how many cards it holds."""
        cards, synced_at = self.online.cards()
        if cards:  # a backend that lists no cards (a campus platform) keeps the looked-up ones
            self.outbox.replace_cache(cards, synced_at)
        self._back_online()
        return len(cards)

    def _went_offline(self, exc: Exception) -> None:
        if self.last_online_error is None:
            logger.warning("backend unreachable, working offline: %s", exc)
        self.last_online_error = str(exc)

    def _back_online(self) -> None:
        if self.last_online_error is not None:
            logger.info("backend reachable again")
        self.last_online_error = None


@dataclass
class DrainReport:
    """What one pass of the worker did."""

    posted: list[str]
    cancelled: list[str]
    flagged: list[str]
    waiting: int
    unreachable: str | None = None


class OutboxWorker:
    """Posts what the outbox holds, in order, until it is empty; retries with backoff.

    Args:
        outbox: the outbox to drain.
        online: the backend.
        on_posted: called with each transaction id the backend now holds (to move the checkout
            to POSTED); from the worker's thread.
        on_flagged: called with each entry that needs the cashier.
        min_backoff_s, max_backoff_s: the wait after a failed post, doubling per attempt.
        sync_every_s: refresh the account cache this often (0: never).
        sync: the cache refresh, usually ``OutboxBackend.sync_accounts``.
        heartbeat: tells the backend the terminal is alive and takes a new model bundle when
            one is offered (see ``terminal.backend.sync``); called every ``heartbeat_every_s``.
    """

    def __init__(
        self,
        outbox: Outbox,
        online: RemoteLedger,
        *,
        on_posted: Callable[[str], None] | None = None,
        on_flagged: Callable[[OutboxEntry], None] | None = None,
        min_backoff_s: float = 0.5,
        max_backoff_s: float = 60.0,
        sync_every_s: float = 300.0,
        sync: Callable[[], int] | None = None,
        heartbeat: Callable[[], object] | None = None,
        heartbeat_every_s: float = 60.0,
    ) -> None:
        self.outbox = outbox
        self.online = online
        self._on_posted = on_posted or (lambda _txid: None)
        self._on_flagged = on_flagged or (lambda _entry: None)
        self._min_backoff_s = min_backoff_s
        self._max_backoff_s = max_backoff_s
        self._sync_every_s = sync_every_s
        self._sync = sync
        self._last_sync = 0.0
        self._heartbeat = heartbeat
        self._heartbeat_every_s = heartbeat_every_s
        self._last_heartbeat = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Something was queued: post it now rather than at the next tick."""
        self._wake.set()

    def drain_once(self) -> DrainReport:
        """Post every entry that is due; stop at the first sign the backend is down."""
        report = DrainReport([], [], [], 0)
        for entry in self.outbox.due():
            try:
                self._post(entry, report)
            except BackendUnavailableError as exc:
                delay = min(self._max_backoff_s, self._min_backoff_s * 2 ** min(entry.attempts, 16))
                self.outbox.retry_later(entry.entry_id, str(exc), delay)
                report.unreachable = str(exc)
                break
        report.waiting = self.outbox.depth()
        return report

    def _post(self, entry: OutboxEntry, report: DrainReport) -> None:
        try:
            if entry.status == "cancelling":
                self.online.void(entry.transaction_id, entry.last_error or "payment not completed")
                self.outbox.finish(entry.entry_id, "cancelled")
                report.cancelled.append(entry.entry_id)
            elif entry.kind == "refund":
                self.online.refund(RefundRequest(**entry.body))
                self.outbox.finish(entry.entry_id, "posted")
                report.posted.append(entry.entry_id)
            else:
                receipt = self.online.post_transaction(entry.body)
                self.outbox.finish(entry.entry_id, "posted", receipt=receipt)
                report.posted.append(entry.entry_id)
                self._on_posted(entry.transaction_id)
        except PaymentDeclinedError as exc:
            status = "rejected" if entry.status == "pending" else "failed"
            self._flag(entry, status, f"{exc.code}: {exc.reason}", report)
        except BackendRequestError as exc:
            self._flag(entry, "failed", str(exc), report)

    def _flag(self, entry: OutboxEntry, status: str, error: str, report: DrainReport) -> None:
        logger.error("outbox %s %s refused by the backend: %s", entry.kind, entry.entry_id, error)
        self.outbox.finish(entry.entry_id, status, error=error, flagged=True)
        report.flagged.append(entry.entry_id)
        flagged = self.outbox.entry(entry.entry_id)
        if flagged is not None:
            self._on_flagged(flagged)

    # --- the thread -----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="outbox-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._maybe_sync()
                self.drain_once()
                self._maybe_heartbeat()
            except Exception:
                logger.exception("outbox worker pass failed")
            next_due = self.outbox.next_due_at()
            wait = self._max_backoff_s if next_due is None else max(0.0, next_due - time.time())
            for every in (self._sync_every_s, self._heartbeat_every_s):
                if every:
                    wait = min(wait, every)
            self._wake.wait(min(wait, self._max_backoff_s))
            self._wake.clear()

    def _maybe_sync(self) -> None:
        if self._sync is None or not self._sync_every_s:
            return
        now = time.time()
        if now - self._last_sync < self._sync_every_s:
            return
        try:
            count = self._sync()
        except BackendUnavailableError as exc:
            logger.info("account cache not refreshed: %s", exc)
            return
        self._last_sync = now
        logger.info("account cache refreshed: %d cards", count)

    def _maybe_heartbeat(self) -> None:
        if self._heartbeat is None or not self._heartbeat_every_s:
            return
        now = time.time()
        if now - self._last_heartbeat < self._heartbeat_every_s:
            return
        self._last_heartbeat = now
        try:
            self._heartbeat()
        except BackendUnavailableError as exc:
            logger.info("heartbeat not delivered: %s", exc)
