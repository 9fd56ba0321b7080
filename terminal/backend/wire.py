"""The JSON shapes of the backend contract, shared by the terminal's client and the server.

``docs/api/openapi.json`` is the written contract; these functions are the one place the
terminal turns its dataclasses into those bodies and back. Money is integer fen everywhere.
"""

from __future__ import annotations

import logging
from typing import Any

from terminal.core.ports import Account, RefundReceipt, TransactionRecord, VoidResult
from terminal.core.session import PaymentReceipt, PaymentRequest

logger = logging.getLogger(__name__)

#: Payment methods; ``cash`` and ``other`` move no account's balance.
METHODS = ("card", "face", "cash", "other")
ACCOUNT_METHODS = ("card", "face")


def transaction_body(
    request: PaymentRequest, account_id: str | None, *, offline: bool = False
) -> dict[str, Any]:
    """The body of ``POST /v1/transactions`` for ``request``."""
    return {
        "transaction_id": request.transaction_id,
        "checkout_id": request.checkout_id,
        "terminal_id": request.terminal_id,
        "account_id": account_id,
        "method": request.method,
        "amount_fen": request.amount_fen,
        "lines": [
            {
                "item_id": line.item_id,
                "grams": line.grams,
                "price_fen": line.price_fen,
                "pricing": line.pricing.value,
            }
            for line in request.priced.lines
        ],
        "created_at": request.created_at,
        "offline": offline,
    }


def account_from_json(data: dict[str, Any]) -> Account:
    return Account(
        account_id=str(data["account_id"]),
        display_name=str(data["display_name"]),
        balance_fen=int(data["balance_fen"]),
        blocked=bool(data.get("blocked", False)),
    )


def account_to_json(account: Account) -> dict[str, Any]:
    return {
        "account_id": account.account_id,
        "display_name": account.display_name,
        "balance_fen": account.balance_fen,
        "blocked": account.blocked,
    }


def receipt_from_json(data: dict[str, Any]) -> PaymentReceipt:
    """A transaction answer (``POST /v1/transactions``) as the session's receipt."""
    balance = data.get("balance_after_fen")
    return PaymentReceipt(
        transaction_id=str(data["transaction_id"]),
        account_id=str(data.get("account_id") or ""),
        method=str(data["method"]),
        amount_fen=int(data["amount_fen"]),
        balance_after_fen=int(balance) if balance is not None else None,
        offline=bool(data.get("offline", False)),
    )


def record_from_json(data: dict[str, Any]) -> TransactionRecord:
    balance = data.get("balance_after_fen")
    return TransactionRecord(
        transaction_id=str(data["transaction_id"]),
        checkout_id=str(data.get("checkout_id") or ""),
        terminal_id=str(data.get("terminal_id") or ""),
        account_id=data.get("account_id"),
        method=str(data.get("method") or ""),
        amount_fen=int(data.get("amount_fen") or 0),
        balance_after_fen=int(balance) if balance is not None else None,
        status=str(data["status"]),
        refunded_fen=int(data.get("refunded_fen") or 0),
        offline=bool(data.get("offline", False)),
        created_at=float(data.get("created_at") or 0.0),
    )


def void_from_json(data: dict[str, Any]) -> VoidResult:
    balance = data.get("balance_after_fen")
    return VoidResult(
        transaction_id=str(data["transaction_id"]),
        refunded_fen=int(data.get("refunded_fen") or 0),
        balance_after_fen=int(balance) if balance is not None else None,
    )


def refund_from_json(data: dict[str, Any]) -> RefundReceipt:
    balance = data.get("balance_after_fen")
    return RefundReceipt(
        refund_id=str(data["refund_id"]),
        transaction_id=str(data["transaction_id"]),
        amount_fen=int(data["amount_fen"]),
        balance_after_fen=int(balance) if balance is not None else None,
    )
