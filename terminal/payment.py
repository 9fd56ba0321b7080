"""Taking a card payment for the checkout in progress: find the card, charge it, tell the session.

The charge is recorded durably by the backend before ``payment_approved`` is called, so the
diner is told "paid" only for money that is really taken; a declined or unknown card moves the
session back to awaiting payment with a reason the diner can read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from terminal.core.ports import (
    Account,
    BackendRequestError,
    BackendUnavailableError,
    LedgerBackend,
    PaymentBackend,
    PaymentDeclinedError,
)
from terminal.core.session import CheckoutSession, PaymentReceipt

logger = logging.getLogger(__name__)


def mask_card(card_id: str) -> str:
    """Show a card id the way a receipt does: first four and last two characters."""
    if len(card_id) <= 6:
        return "*" * len(card_id)
    return f"{card_id[:4]}{'*' * (len(card_id) - 6)}{card_id[-2:]}"


@dataclass(frozen=True)
class PaymentOutcome:
    """What happened to one tap."""

    receipt: PaymentReceipt | None
    account: Account | None
    declined: str | None = None


def take_card_payment(
    session: CheckoutSession, backend: PaymentBackend, card_id: str
) -> PaymentOutcome:
    """Charge the tray in ``session`` to the account of ``card_id``.

    Args:
        session: a session awaiting payment.
        backend: where accounts and charges live (the embedded ledger, or the outbox in front
            of a remote backend).
        card_id: the canonical card id that was tapped.
    """
    return _take_payment(session, backend, "card", card_id, backend.lookup_card)


def take_face_payment(
    session: CheckoutSession, backend: LedgerBackend, account_id: str
) -> PaymentOutcome:
    """Charge the tray to the account a face match named: the same path as a card."""
    return _take_payment(session, backend, "face", account_id, backend.lookup_account)


def _take_payment(
    session: CheckoutSession,
    backend: PaymentBackend,
    method: str,
    credential: str,
    lookup: Callable[[str], Account | None],
) -> PaymentOutcome:
    request = session.start_payment(method, credential)
    try:
        account = lookup(credential)
    except (BackendUnavailableError, BackendRequestError, PaymentDeclinedError) as exc:
        reason = getattr(exc, "reason", None) or f"the canteen system cannot be reached: {exc}"
        session.payment_declined(reason)
        return PaymentOutcome(None, None, reason)
    if account is None:
        what = f"card {mask_card(credential)}" if method == "card" else "this face account"
        reason = f"{what} is not registered"
        session.payment_declined(reason)
        return PaymentOutcome(None, None, reason)
    try:
        receipt = backend.charge(request, account.account_id)
    except PaymentDeclinedError as exc:
        session.payment_declined(exc.reason)
        return PaymentOutcome(None, account, exc.reason)
    except Exception as exc:
        # Nothing durable says "paid", so the diner must not be told so.
        logger.exception("payment %s failed", request.transaction_id)
        session.payment_declined(f"payment failed: {exc}")
        return PaymentOutcome(None, account, str(exc))
    session.payment_approved(receipt)
    if not receipt.offline:
        # The backend holds it now: either it *is* the ledger or it answered the post.
        session.posted(receipt.transaction_id)
    return PaymentOutcome(receipt, account)
