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
    """The payment path refused the charge; nothing was taken. ``reason`` is for the diner."""

    def __init__(self, reason: str, code: str = "declined") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class Account:
    """A diner's account as the payment path sees it."""

    account_id: str
    display_name: str
    balance_fen: Fen


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
