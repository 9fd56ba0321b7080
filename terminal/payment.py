"""Taking a card payment for the checkout in progress: find the card, charge it, tell the session.

The charge is recorded durably by the backend before ``payment_approved`` is called, so the
diner is told "paid" only for money that is really taken; a declined or unknown card moves the
session back to awaiting payment with a reason the diner can read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from terminal.core.ports import Account, PaymentBackend, PaymentDeclinedError
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
    session: CheckoutSession, backend: PaymentBackend, card_id: str, *, posted_on_charge: bool
) -> PaymentOutcome:
    """Charge the tray in ``session`` to the account of ``card_id``.

    Args:
        session: a session awaiting payment.
        backend: where accounts and charges live.
        card_id: the canonical card id that was tapped.
        posted_on_charge: the backend *is* the ledger (embedded mode), so a committed charge is
            also posted.
    """
    request = session.start_payment("card", card_id)
    account = backend.lookup_card(card_id)
    if account is None:
        reason = f"card {mask_card(card_id)} is not registered"
        session.payment_declined(reason)
        return PaymentOutcome(None, None, reason)
    try:
        receipt = backend.charge(request, account.account_id)
    except PaymentDeclinedError as exc:
        session.payment_declined(exc.reason)
        return PaymentOutcome(None, account, exc.reason)
    session.payment_approved(receipt)
    if posted_on_charge:
        session.posted(receipt.transaction_id)
    return PaymentOutcome(receipt, account)
