"""A fake remote backend for tests and demos: the embedded ledger behind a switch.

:class:`FakeRemoteLedger` answers like a backend across a network, and can be made to fail the
ways a network fails: ``down`` (nothing reaches it) and ``lose_answers`` (the charge lands but
the answer never comes back). It is a fake: the real thing is the reference server
(``trayscan backend serve``) through ``terminal.backend.http.HttpBackend``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from terminal.backend.ledger import EmbeddedLedger
from terminal.core.ports import (
    Account,
    BackendUnavailableError,
    RefundReceipt,
    RefundRequest,
    TransactionRecord,
    VoidResult,
)
from terminal.core.session import PaymentReceipt, PaymentRequest

logger = logging.getLogger(__name__)


class FakeRemoteLedger(EmbeddedLedger):
    """An :class:`EmbeddedLedger` that pretends to be across a network that can fail."""

    def __init__(self, path: Path | str = ":memory:") -> None:
        super().__init__(path)
        self.down = False
        self.lose_answers = False
        self.posts = 0

    def _reach(self) -> None:
        if self.down:
            raise BackendUnavailableError("fake backend is down")

    def _answer(self) -> None:
        if self.lose_answers:
            raise BackendUnavailableError("fake backend: the answer was lost")

    def lookup_card(self, card_id: str) -> Account | None:
        self._reach()
        return super().lookup_card(card_id)

    def lookup_account(self, account_id: str) -> Account | None:
        self._reach()
        return super().lookup_account(account_id)

    def post_transaction(self, body: dict[str, Any]) -> PaymentReceipt:
        self._reach()
        self.posts += 1
        receipt = super().post_transaction(body)
        self._answer()
        return receipt

    def charge(self, request: PaymentRequest, account_id: str) -> PaymentReceipt:
        self._reach()
        receipt = super().charge(request, account_id)
        self._answer()
        return receipt

    def void(self, transaction_id: str, reason: str) -> VoidResult:
        self._reach()
        return super().void(transaction_id, reason)

    def refund(self, request: RefundRequest) -> RefundReceipt:
        self._reach()
        return super().refund(request)

    def transaction(self, transaction_id: str) -> TransactionRecord | None:
        self._reach()
        return super().transaction(transaction_id)

    def cards(self) -> tuple[list[tuple[str, Account]], float]:
        self._reach()
        return super().cards()
