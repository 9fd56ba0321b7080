"""The interfaces the checkout needs from the outside world.

Concrete parts (the ONNX recogniser, a serial scale, the embedded ledger or the HTTP backend)
live elsewhere and are chosen by ``terminal.app`` from the config; each has a shipped fake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from terminal.core.money import Fen
from terminal.core.session import PaymentReceipt, PaymentRequest
from vision.types import Frame, TrayRecognition


@runtime_checkable
class Recogniser(Protocol):
    """Names every dish on a settled tray."""

    @property
    def model_version(self) -> str: ...

    def recognise(self, frame: Frame) -> TrayRecognition: ...


@dataclass(frozen=True)
class ScaleReading:
    """One reading from a scale: gross grams and whether the scale calls it stable."""

    gross_g: int
    stable: bool
    timestamp: float
    overload: bool = False
    underload: bool = False


@runtime_checkable
class Scale(Protocol):
    """A scale under the tray."""

    def read(self) -> ScaleReading: ...


@dataclass(frozen=True)
class CardTap:
    """A card read: its canonical id and when it was read."""

    card_id: str
    timestamp: float


@runtime_checkable
class CardReader(Protocol):
    """A meal-card reader; ``poll`` returns the next tap or None."""

    def poll(self) -> CardTap | None: ...


class PaymentDeclinedError(Exception):
    """The payment path refused the charge; nothing was taken. ``reason`` is for the diner.

    ``code`` is machine-readable and the same on every backend: ``insufficient_balance``,
    ``unknown_account``, ``unknown_card``, ``blocked``, ``invalid_amount``, ``voided`` (the
    transaction id was voided before it was charged), ``offline_limit`` (the backend cannot be
    reached and the offline limit does not cover it), ``conflict``, ``rejected``.
    """

    def __init__(self, reason: str, code: str = "declined") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class BackendUnavailableError(Exception):
    """The backend could not be reached or did not answer in time; the outcome is unknown.

    Unlike a decline, nothing can be concluded about money: a charge whose answer was lost may
    or may not have gone through, which is why every charge carries an idempotency key.
    """


class BackendRequestError(Exception):
    """The backend refused a request as wrong (4xx other than a decline): a bug or a bad setup."""

    def __init__(self, message: str, code: str = "bad_request", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class Account:
    """A diner's account as the payment path sees it."""

    account_id: str
    display_name: str
    balance_fen: Fen
    blocked: bool = False


@runtime_checkable
class PaymentBackend(Protocol):
    """Charges an account, durably and idempotently by ``request.transaction_id``."""

    def lookup_card(self, card_id: str) -> Account | None: ...

    def charge(self, request: PaymentRequest, account_id: str) -> PaymentReceipt:
        """Charge once; a repeated transaction id returns the first receipt.

        Raises:
            PaymentDeclinedError: insufficient balance, blocked account, ...
        """
        ...


@dataclass(frozen=True)
class TransactionRecord:
    """A transaction as the backend holds it.

    ``status`` is ``charged`` or ``voided`` (a void of an id never charged leaves a ``voided``
    tombstone, so that a late post of that id charges nothing). ``refunded_fen`` sums the refunds.
    """

    transaction_id: str
    checkout_id: str
    terminal_id: str
    account_id: str | None
    method: str
    amount_fen: Fen
    balance_after_fen: Fen | None
    status: str
    refunded_fen: Fen
    offline: bool
    created_at: float


@dataclass(frozen=True)
class VoidResult:
    """The answer to a void: ``refunded_fen`` went back to the account (0 for a tombstone)."""

    transaction_id: str
    refunded_fen: Fen
    balance_after_fen: Fen | None


@dataclass(frozen=True)
class RefundRequest:
    """Give back part or all of a charged transaction; ``refund_id`` is the idempotency key."""

    refund_id: str
    transaction_id: str
    amount_fen: Fen
    reason: str
    cashier_id: str


@dataclass(frozen=True)
class RefundReceipt:
    refund_id: str
    transaction_id: str
    amount_fen: Fen
    balance_after_fen: Fen | None


@runtime_checkable
class LedgerBackend(PaymentBackend, Protocol):
    """The whole backend contract; the embedded ledger, the HTTP client of the reference server
    and the campus-card adapter all implement it, and one test suite checks them alike.

    Every method raises :class:`BackendUnavailableError` when the backend cannot be reached.
    """

    def lookup_account(self, account_id: str) -> Account | None:
        """An account by its id (how a face match names the diner)."""
        ...

    def void(self, transaction_id: str, reason: str) -> VoidResult:
        """Cancel a transaction in full; idempotent. Voiding an id never charged leaves a
        tombstone so that a late post of it is refused with code ``voided``."""
        ...

    def refund(self, request: RefundRequest) -> RefundReceipt:
        """Give money back; idempotent by ``refund_id``.

        Raises:
            PaymentDeclinedError: ``unknown_transaction``, ``refund_exceeds`` (more than is left
                of the transaction), ``voided``.
        """
        ...

    def transaction(self, transaction_id: str) -> TransactionRecord | None: ...
