"""The JSON bodies of the HTTP API as pydantic models; ``docs/api/openapi.json`` is made from them.

Request bodies are strict: a number where a string belongs, ``"100"`` or ``100.0`` for an integer
amount, a negative amount or an unknown method is refused with 422 ``invalid_request`` naming the
field. Unknown keys are ignored, so a newer terminal can talk to an older server. Answers follow
``docs/backend-contract.md`` field for field, and ``terminal.backend.wire`` reads them.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from terminal.menu_file import MenuFileModel

logger = logging.getLogger(__name__)

#: Ids are 1-64 characters of ``[0-9A-Za-z_.:-]`` (transactions, accounts, cards, terminals...).
ID_PATTERN = r"^[0-9A-Za-z_.:-]{1,64}$"

Identifier = Annotated[str, Field(pattern=ID_PATTERN, examples=["04A1B2C3"])]
#: The largest amount the server takes in one field: 10 000 000 000 CNY.
MAX_FEN = 10**12
Fen = Annotated[int, Field(ge=0, le=MAX_FEN, description="integer fen (1 CNY = 100 fen)")]
PositiveFen = Annotated[int, Field(gt=0, le=MAX_FEN, description="integer fen, more than 0")]
Method = Literal["card", "face", "cash", "other"]
#: ``portion`` is accepted as another spelling of ``per_portion`` and stored as ``per_portion``.
Pricing = Literal["per_portion", "per_100g", "portion"]


class RequestBody(BaseModel):
    """Base of request bodies: strict types, unknown keys ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class Answer(BaseModel):
    """Base of answers."""


# --- errors and health ----------------------------------------------------------------------


class ErrorDetail(Answer):
    code: str = Field(examples=["insufficient_balance"])
    message: str


class ErrorAnswer(Answer):
    """Every 4xx/5xx body."""

    error: ErrorDetail


class HealthAnswer(Answer):
    status: Literal["ok"]
    database: Literal["sqlite", "postgresql"]


# --- accounts and cards ---------------------------------------------------------------------


class AccountAnswer(Answer):
    """``Account``: what the payment path needs of a diner's account."""

    account_id: str
    display_name: str
    balance_fen: int
    blocked: bool


class CardEntry(Answer):
    card_id: str
    account_id: str
    display_name: str
    balance_fen: int
    blocked: bool


class CardsAnswer(Answer):
    """Every card, for a terminal's offline cache."""

    cards: list[CardEntry]
    synced_at: float


# --- transactions ---------------------------------------------------------------------------


class TransactionLine(RequestBody):
    item_id: Identifier
    grams: int = Field(ge=0, le=100_000)
    price_fen: Fen
    pricing: Pricing


class TransactionBody(RequestBody):
    """``Transaction``: the body of ``POST /v1/transactions`` (``wire.transaction_body``)."""

    transaction_id: Identifier
    checkout_id: Identifier
    terminal_id: Identifier
    account_id: Identifier | None = Field(
        description="the account to debit; required for card and face, null for cash and other"
    )
    method: Method
    amount_fen: Fen
    lines: list[TransactionLine] = Field(max_length=200)
    created_at: float = Field(description="when the terminal made it, unix seconds")
    offline: bool = Field(
        default=False, description="accepted by the terminal while the backend was unreachable"
    )


class LineAnswer(Answer):
    item_id: str
    grams: int
    price_fen: int
    pricing: str


class TransactionResult(Answer):
    """The answer to a post; ``created`` is false for a repeat of an id already posted."""

    transaction_id: str
    account_id: str | None
    method: str
    amount_fen: int
    balance_after_fen: int | None
    offline: bool
    created: bool


class TransactionRecordAnswer(TransactionResult):
    """``TransactionRecord``. ``refunded_fen`` is everything given back: refunds, and for a voided
    transaction what its void returned. A tombstone (a void of an id never posted) has status
    ``voided``, amount 0 and no account."""

    checkout_id: str
    terminal_id: str
    status: Literal["charged", "voided"]
    refunded_fen: int
    created_at: float
    lines: list[LineAnswer]


class VoidBody(RequestBody):
    reason: str = Field(max_length=500)


class VoidAnswer(Answer):
    transaction_id: str
    refunded_fen: int
    balance_after_fen: int | None


class RefundBody(RequestBody):
    refund_id: Identifier
    transaction_id: Identifier
    amount_fen: PositiveFen
    reason: str = Field(max_length=500)
    cashier_id: Identifier


class RefundAnswer(Answer):
    refund_id: str
    transaction_id: str
    amount_fen: int
    balance_after_fen: int | None


# --- terminals, bundles, menu ---------------------------------------------------------------


class HeartbeatBody(RequestBody):
    terminal_id: Identifier
    bundle_version: str | None = Field(default=None, max_length=64)
    outbox_depth: int = Field(default=0, ge=0)
    status: dict[str, Any] = Field(default_factory=dict)


class BundleInfo(Answer):
    """A published model bundle: its version, and the SHA-256 and size of its tar.gz archive."""

    version: str
    sha256: str
    size: int


class HeartbeatAnswer(Answer):
    server_time: float
    bundle: BundleInfo | None = Field(description="the bundle the terminal should run")


class MenuAnswer(Answer):
    date: str = Field(examples=["2026-11-26"])
    version: str
    menu: MenuFileModel


class MenuVersionAnswer(Answer):
    version: str
    dishes: int


# --- administration -------------------------------------------------------------------------


class CreateAccountBody(RequestBody):
    account_id: Identifier
    display_name: str = Field(min_length=1, max_length=200)
    balance_fen: Fen = 0


class AddCardBody(RequestBody):
    card_id: Identifier


class CardAnswer(Answer):
    card_id: str
    account_id: str


class TopUpBody(RequestBody):
    amount_fen: PositiveFen


class BlockBody(RequestBody):
    blocked: bool


class AddTerminalBody(RequestBody):
    terminal_id: Identifier


class TerminalAnswer(Answer):
    """A terminal and its new secret; the secret is shown once and stored only by the server."""

    terminal_id: str
    secret: str


class DishSales(Answer):
    item_id: str
    count: int = Field(description="how many times the dish was sold")
    sales_fen: int
    grams: int


class DailyTotals(Answer):
    transactions: int = Field(description="charged transactions")
    sales_fen: int = Field(description="the charged transactions' amounts")
    grams: int
    refunded_fen: int = Field(description="refunds of the day's charged transactions")
    voided: int = Field(description="voided transactions and tombstones")


class DailyReport(Answer):
    """Per-dish sales and weight of one day (server's local time), voided transactions left out."""

    date: str
    dishes: list[DishSales]
    totals: DailyTotals
