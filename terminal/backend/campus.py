"""The campus-card (一卡通) adapter: the backend contract over a campus card consumption API.

Most Chinese canteens already run a campus card platform (新开普, 正元 and the like) whose
consumption interface has the same shape: a card query (card number -> account, name, balance,
status), a consume call keyed by an order number, a reversal (冲正) or refund of an order and an
order query, every request signed with a shared secret. :class:`CampusCardBackend` implements
:class:`~terminal.core.ports.LedgerBackend` over such an API; everything that differs between
sites (paths, field names, result codes, the signature, the timestamp, yuan or fen) is a key of
:class:`CampusCardBackendConfig`. ``docs/campus-card.md`` explains the mapping and how a site
whose platform does not fit adds its own backend.

The rules of the payment path hold here as everywhere: a charge is reported as paid only when
the platform confirmed it; an answer that is lost, unreadable or not signed as it should be is a
:class:`~terminal.core.ports.BackendUnavailableError`, so the outbox retries it with the same
order number, which the platform answers with "already consumed" and the original result.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import requests
from pydantic import BeforeValidator, Field, SecretStr, model_validator

from terminal.core.money import Fen, require_fen
from terminal.core.ports import (
    Account,
    BackendRequestError,
    BackendUnavailableError,
    PaymentDeclinedError,
    RefundReceipt,
    RefundRequest,
    TransactionRecord,
    VoidResult,
)
from terminal.core.session import PaymentReceipt, PaymentRequest
from terminal.yamlmodels import StrictModel

logger = logging.getLogger(__name__)

SignAlgorithm = Literal["MD5", "SHA256", "HMAC-SHA256"]
TimestampFormat = Literal["yyyyMMddHHmmss", "unix", "unix_ms"]
AmountUnit = Literal["fen", "yuan"]


# --- config -------------------------------------------------------------------------------


def _as_text(value: object) -> object:
    # Platform ids and result codes are often written unquoted in YAML (merchant_id: 100234);
    # they are text on the wire, so a whole number is taken as its decimal digits.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _as_texts(value: object) -> object:
    if isinstance(value, str | int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, list):
        return [_as_text(item) for item in value]
    return value


Text = Annotated[str, BeforeValidator(_as_text)]
Codes = Annotated[list[str], BeforeValidator(_as_texts)]


class CampusCardPaths(StrictModel):
    """Where each call lives, relative to ``base_url``."""

    query_card: str = "/card/query"
    #: The account query; None asks ``query_card`` with the account number instead of a card.
    query_account: str | None = None
    consume: str = "/consume"
    #: The reversal (冲正) of a whole order; None voids through ``refund`` instead.
    reverse: str | None = "/consume/reverse"
    refund: str = "/refund"
    query_order: str = "/order/query"


class CampusCardFields(StrictModel):
    """The platform's name for each field, in requests and replies alike.

    An optional field set to None is neither sent nor read.
    """

    card_no: str = "card_no"
    account_no: str = "account_no"
    merchant_id: str = "merchant_id"
    pos_id: str = "pos_id"
    amount: str = "amount"
    order_no: str = "order_no"
    #: The order a reversal or refund applies to.
    orig_order_no: str = "orig_order_no"
    refund_no: str = "refund_no"
    refund_reason: str | None = None
    timestamp: str = "timestamp"
    #: A random string sent with every request, for platforms that want one.
    nonce: str | None = None
    sign: str = "sign"
    result_code: str = "code"
    message: str = "msg"
    name: str = "name"
    balance: str = "balance"
    #: The card's status in a card query; None: the platform says nothing about it.
    card_status: str | None = "status"
    balance_before: str = "balance_before"
    balance_after: str = "balance_after"
    order_status: str | None = "order_status"
    refunded_amount: str | None = "refunded_amount"
    order_time: str | None = "order_time"
    #: Replies that nest their fields in an object (``{"code": 0, "data": {...}}``) name it here.
    data: str | None = None


class CampusCardCodes(StrictModel):
    """The platform's result codes; a code in no list is a refusal (``rejected``)."""

    success: Codes = Field(default_factory=lambda: ["0"], min_length=1)
    #: A repeated order or refund number: the platform answers with the original result.
    already_processed: Codes = Field(default_factory=lambda: ["1001"])
    insufficient_balance: Codes = Field(default_factory=lambda: ["2001"])
    unknown_card: Codes = Field(default_factory=lambda: ["2002"])
    #: Lost (挂失) or frozen (冻结) cards.
    card_blocked: Codes = Field(default_factory=lambda: ["2003", "2004"])
    order_not_found: Codes = Field(default_factory=lambda: ["3001"])
    #: The order was reversed: a consume or refund of that order number is refused.
    order_voided: Codes = Field(default_factory=lambda: ["3002"])
    refund_exceeds: Codes = Field(default_factory=lambda: ["3003"])
    #: The platform refused the request's signature: a wrong secret or sign setting.
    sign_error: Codes = Field(default_factory=lambda: ["9001"])
    #: "Busy" or "processing": the platform does not say whether it took the money.
    unknown_outcome: Codes = Field(default_factory=lambda: ["9999"])

    @model_validator(mode="after")
    def _check_disjoint(self) -> CampusCardCodes:
        seen: dict[str, str] = {}
        for name, codes in self:
            for code in codes:
                if code in seen:
                    raise ValueError(f"result code {code!r} is in both {seen[code]} and {name}")
                seen[code] = name
        return self


class CampusCardBackendConfig(StrictModel):
    """A campus card (一卡通) platform's consumption API as the canteen's backend.

    Every key but ``base_url``, ``merchant_id``, ``pos_id`` and one of ``secret`` /
    ``secret_file`` has a default; ``docs/campus-card.md`` has a full example.
    """

    type: Literal["campus_card"] = "campus_card"
    base_url: str
    #: The merchant (商户号) and terminal (POS / 终端号) ids the platform issued to this terminal.
    merchant_id: Text
    pos_id: Text
    secret: SecretStr | None = None
    #: A file holding the secret (relative paths from the trayscan home); trailing blanks dropped.
    secret_file: str | None = None
    sign_algorithm: SignAlgorithm = "MD5"
    #: Appended to the sorted ``k=v&...`` string before hashing; ``{secret}`` is the secret.
    sign_suffix: str = "&key={secret}"
    sign_uppercase: bool = True
    #: Parameters left out of the signature besides the sign itself (e.g. ``sign_type``).
    sign_exclude: list[str] = Field(default_factory=list)
    #: The platform signs its replies too; a reply whose sign does not verify is refused.
    sign_replies: bool = False
    timestamp_format: TimestampFormat = "yyyyMMddHHmmss"
    #: The platform's clock zone for ``yyyyMMddHHmmss`` (China: +8, no summer time).
    utc_offset_hours: int = Field(default=8, ge=-12, le=14)
    #: Amounts on the wire: whole fen, or yuan strings with two decimals ("12.34").
    amount_unit: AmountUnit = "fen"
    http_method: Literal["POST", "GET"] = "POST"
    request_format: Literal["form", "json"] = "form"
    reply_encoding: str = "utf-8"
    #: Sent (and signed) with every request: app id, version, sign_type, charset ...
    extra_params: dict[str, Text] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    #: Which platform number is trayscan's account id.
    account_id_is: Literal["card_no", "account_no"] = "card_no"
    #: Card statuses that may pay; any other status is a blocked account.
    card_status_normal: Codes = Field(default_factory=lambda: ["normal"])
    order_status_reversed: Codes = Field(default_factory=lambda: ["reversed"])
    #: The refund number of a void done through ``refund``; ``{order_no}`` is the order.
    void_refund_no: str = "V{order_no}"
    #: The platform answers a repeated order number with the first result, so a consume whose
    #: connection failed may be sent again. Set false for a platform that would charge twice.
    consume_idempotent: bool = True
    connect_timeout_s: float = Field(default=3.0, gt=0)
    read_timeout_s: float = Field(default=5.0, gt=0)
    #: Extra tries after a connection error, for calls that are safe to repeat.
    retries: int = Field(default=2, ge=0, le=5)
    retry_backoff_s: float = Field(default=0.3, ge=0)
    verify_tls: bool | str = True
    paths: CampusCardPaths = Field(default_factory=CampusCardPaths)
    fields: CampusCardFields = Field(default_factory=CampusCardFields)
    codes: CampusCardCodes = Field(default_factory=CampusCardCodes)

    @model_validator(mode="after")
    def _check(self) -> CampusCardBackendConfig:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError("give exactly one of secret and secret_file")
        if self.sign_algorithm != "HMAC-SHA256" and "{secret}" not in self.sign_suffix:
            raise ValueError(
                f"sign_suffix must contain {{secret}} for {self.sign_algorithm}, "
                "or nothing secret would be signed"
            )
        if "{order_no}" not in self.void_refund_no:
            raise ValueError("void_refund_no must contain {order_no}")
        return self


class CampusCardSetupError(ValueError):
    """The adapter cannot start: the secret file is missing or unreadable."""


def load_secret(config: CampusCardBackendConfig, home: Path | None = None) -> str:
    """The signing secret: ``secret``, or the contents of ``secret_file``.

    Args:
        config: the platform's config.
        home: the folder a relative ``secret_file`` is resolved against (default: the current
            folder).

    Raises:
        CampusCardSetupError: the file cannot be read or is empty.
    """
    if config.secret is not None:
        return config.secret.get_secret_value()
    assert config.secret_file is not None  # the config's validator guarantees one of the two
    path = Path(config.secret_file).expanduser()
    if not path.is_absolute() and home is not None:
        path = home / path
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CampusCardSetupError(f"campus card secret_file {path}: cannot read: {exc}") from None
    if not text:
        raise CampusCardSetupError(f"campus card secret_file {path} is empty")
    return text


# --- wire helpers -------------------------------------------------------------------------

_YUAN = re.compile(r"^(-?)(\d+)(?:\.(\d{1,2}))?$")
_FEN = re.compile(r"^-?\d+$")


def fen_to_yuan(amount_fen: Fen) -> str:
    """An amount in fen as a yuan string with two decimals: 1234 -> ``"12.34"``."""
    require_fen(amount_fen, "amount")
    sign = "-" if amount_fen < 0 else ""
    yuan, fen = divmod(abs(amount_fen), 100)
    return f"{sign}{yuan}.{fen:02d}"


def yuan_to_fen(text: str) -> Fen:
    """A yuan string (at most two decimals) as whole fen, exactly: ``"12.34"`` -> 1234.

    Raises:
        ValueError: not a plain decimal number, or finer than a fen.
    """
    match = _YUAN.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an amount in yuan with at most two decimals")
    sign, yuan, decimals = match.groups()
    fen = int(yuan) * 100 + int((decimals or "").ljust(2, "0"))
    return -fen if sign else fen


def sign_string(params: Mapping[str, str], sign_field: str, exclude: frozenset[str]) -> str:
    """The signed text: non-empty parameters sorted by key, joined as ``k1=v1&k2=v2``."""
    return "&".join(
        f"{key}={params[key]}"
        for key in sorted(params)
        if params[key] != "" and key != sign_field and key not in exclude
    )


def compute_sign(
    params: Mapping[str, str],
    secret: str,
    *,
    algorithm: SignAlgorithm = "MD5",
    suffix: str = "&key={secret}",
    uppercase: bool = True,
    sign_field: str = "sign",
    exclude: frozenset[str] = frozenset(),
) -> str:
    """The sign of ``params``: hash of :func:`sign_string` plus ``suffix``, in hex.

    Args:
        params: the parameters as sent (text).
        secret: the shared secret; also the key of HMAC-SHA256.
        algorithm: ``MD5``, ``SHA256`` or ``HMAC-SHA256``.
        suffix: appended to the sorted string; ``{secret}`` is replaced by the secret.
        uppercase: uppercase hex (the common form) or lowercase.
        sign_field: the name of the sign parameter, never signed itself.
        exclude: other parameters left out of the signature.
    """
    text = (sign_string(params, sign_field, exclude) + suffix.replace("{secret}", secret)).encode(
        "utf-8"
    )
    if algorithm == "MD5":
        digest = hashlib.md5(text, usedforsecurity=False).hexdigest()
    elif algorithm == "SHA256":
        digest = hashlib.sha256(text).hexdigest()
    else:
        digest = hmac.new(secret.encode("utf-8"), text, hashlib.sha256).hexdigest()
    return digest.upper() if uppercase else digest


def _plain(value: Any) -> Any:
    # Decimal is how replies are parsed (exact money); for the canonical JSON of a nested
    # object it is written back as the number it was.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def wire_text(value: Any) -> str:
    """A reply value as the text that is signed: scalars as written, objects as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(_plain(value), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return str(value)


def format_timestamp(now: float, fmt: TimestampFormat, utc_offset_hours: int = 8) -> str:
    """``now`` (unix seconds) in the platform's timestamp format."""
    if fmt == "unix":
        return str(int(now))
    if fmt == "unix_ms":
        return str(int(now * 1000))
    zone = timezone(timedelta(hours=utc_offset_hours))
    return datetime.fromtimestamp(now, zone).strftime("%Y%m%d%H%M%S")


def parse_timestamp(text: str, fmt: TimestampFormat, utc_offset_hours: int = 8) -> float:
    """A platform timestamp as unix seconds.

    Raises:
        ValueError: ``text`` is not in ``fmt``.
    """
    if fmt == "unix":
        return float(int(text))
    if fmt == "unix_ms":
        return int(text) / 1000
    zone = timezone(timedelta(hours=utc_offset_hours))
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=zone).timestamp()


def _mask(number: str) -> str:
    return number if len(number) <= 6 else f"{number[:4]}{'*' * (len(number) - 6)}{number[-2:]}"


# --- the adapter --------------------------------------------------------------------------


@dataclass(frozen=True)
class PlatformReply:
    """A reply that was read and verified: its result code, message and fields.

    ``values`` holds the top-level fields and, when the platform nests them, those of the data
    object (which win on a clash).
    """

    operation: str
    status: int
    code: str
    message: str
    values: Mapping[str, Any]

    def describe(self) -> str:
        """``code 2001 (余额不足)``, for messages."""
        return f"code {self.code}" + (f" ({self.message})" if self.message else "")


class CampusCardBackend:
    """The campus card platform as trayscan's backend; implements ``LedgerBackend``.

    Args:
        config: the platform's config.
        home: the folder a relative ``secret_file`` is resolved against.
        session: the HTTP session to use (a new one by default; closed by :meth:`close` only
            when the adapter made it).
        clock: unix seconds, for request timestamps.
        sleep: waits between retries.

    Raises:
        CampusCardSetupError: the secret file cannot be read.
    """

    def __init__(
        self,
        config: CampusCardBackendConfig,
        *,
        home: Path | None = None,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._secret = load_secret(config, home)
        self._own_session = session is None
        self._session = session or requests.Session()
        self._session.headers.update(config.headers)
        self._clock = clock
        self._sleep = sleep
        self._exclude = frozenset(config.sign_exclude)

    @property
    def url(self) -> str:
        """The platform's base URL (diagnostics show it)."""
        return self.config.base_url

    def close(self) -> None:
        if self._own_session:
            self._session.close()

    # --- LedgerBackend --------------------------------------------------------------------

    def lookup_card(self, card_id: str) -> Account | None:
        """The account of a card, or None when the platform does not know the card.

        A lost or frozen card comes back with ``blocked`` set.
        """
        return self._query_account({self.config.fields.card_no: card_id}, card_id=card_id)

    def lookup_account(self, account_id: str) -> Account | None:
        """The account with this id (a card number or an account number, see ``account_id_is``)."""
        fields = self.config.fields
        if self.config.account_id_is == "card_no":
            return self._query_account({fields.card_no: account_id}, card_id=account_id)
        path = self.config.paths.query_account or self.config.paths.query_card
        return self._query_account({fields.account_no: account_id}, card_id=None, path=path)

    def charge(self, request: PaymentRequest, account_id: str) -> PaymentReceipt:
        """Consume the request's amount from the account (see :meth:`_consume`)."""
        return self._consume(
            request.transaction_id,
            request.amount_fen,
            request.method,
            request.credential,
            account_id,
        )

    def post_transaction(self, body: dict[str, Any]) -> PaymentReceipt:
        """Consume for a transaction body as the outbox keeps it (``wire.transaction_body``)."""
        account_id = str(body.get("account_id") or "")
        receipt = self._consume(
            str(body["transaction_id"]),
            int(body["amount_fen"]),
            str(body["method"]),
            account_id,
            account_id,
        )
        return replace(receipt, offline=bool(body.get("offline", False)))

    def cards(self) -> tuple[list[tuple[str, Account]], float]:
        """Platforms offer no list of cards: the offline cache fills from lookups alone."""
        return [], self._clock()

    def _consume(
        self, transaction_id: str, amount_fen: Fen, method: str, credential: str, account_id: str
    ) -> PaymentReceipt:
        """Consume ``amount_fen`` from the account, once per transaction id.

        The order number is the transaction id, so a repeat (a retry, or the outbox after a lost
        answer) is answered "already consumed" with the first result, which is returned as is.

        Raises:
            PaymentDeclinedError: ``insufficient_balance``, ``unknown_card``, ``blocked``,
                ``voided`` (the order was reversed), ``conflict`` (the order number was consumed
                with another amount), ``invalid_amount`` or ``rejected``.
            BackendUnavailableError: no answer, or one that cannot be read or trusted.
            BackendRequestError: the platform refused the signature (a setup problem).
        """
        require_fen(amount_fen, "amount")
        if amount_fen < 0:
            raise PaymentDeclinedError("negative amount", "invalid_amount")
        config, fields = self.config, self.config.fields
        if config.account_id_is == "card_no":
            card_no: str | None = account_id
            account_no: str | None = None
        else:
            card_no = credential if method == "card" else None
            account_no = account_id
        params = {
            fields.card_no: card_no,
            fields.account_no: account_no,
            fields.amount: self._amount_text(amount_fen),
            fields.order_no: transaction_id,
        }
        logger.info(
            "campus card consume %s: %d fen from %s",
            transaction_id,
            amount_fen,
            _mask(card_no or account_id),
        )
        reply = self._call(
            "consume", config.paths.consume, params, idempotent=config.consume_idempotent
        )
        category = self._category(reply)
        if category in ("success", "already_processed"):
            charged = self._amount(reply, fields.amount, required=False)
            if charged is not None and charged != amount_fen:
                raise PaymentDeclinedError(
                    f"order {transaction_id} was already consumed with {charged} fen, "
                    f"not {amount_fen} fen",
                    "conflict",
                )
            if category == "already_processed":
                logger.info("order %s was already consumed", transaction_id)
            return PaymentReceipt(
                transaction_id=transaction_id,
                account_id=account_id,
                method=method,
                amount_fen=amount_fen,
                balance_after_fen=self._amount(reply, fields.balance_after, required=False),
            )
        declines = {
            "insufficient_balance": ("insufficient balance", "insufficient_balance"),
            "unknown_card": ("card not registered", "unknown_card"),
            "card_blocked": ("card lost or frozen", "blocked"),
            "order_voided": ("this order was cancelled", "voided"),
        }
        reason, code = declines.get(
            category, (f"refused by the campus card platform: {reply.describe()}", "rejected")
        )
        logger.info("consume %s declined: %s", transaction_id, reply.describe())
        raise PaymentDeclinedError(reason, code)

    def void(self, transaction_id: str, reason: str) -> VoidResult:
        """Give back everything left of an order: a reversal, or a refund of the rest.

        An order the platform never consumed comes back with ``refunded_fen`` 0. Whether a
        late consume of it is then refused depends on the platform (see docs/campus-card.md).

        Raises:
            BackendUnavailableError: no answer, or one that cannot be read or trusted.
            BackendRequestError: the platform refused the reversal (e.g. past its window).
        """
        config, fields = self.config, self.config.fields
        void_no = config.void_refund_no.replace("{order_no}", transaction_id)
        if config.paths.reverse is None:
            return self._void_by_refund(transaction_id, void_no, reason)
        params = {
            fields.orig_order_no: transaction_id,
            fields.refund_no: void_no,
            **({fields.refund_reason: reason} if fields.refund_reason else {}),
        }
        logger.info("campus card reversal of %s: %s", transaction_id, reason)
        reply = self._call("reverse", config.paths.reverse, params, idempotent=True)
        category = self._category(reply)
        if category == "order_not_found":
            return VoidResult(transaction_id, 0, None)
        if category in ("success", "already_processed", "order_voided"):
            refunded = self._amount(reply, fields.amount, required=category != "order_voided")
            return VoidResult(
                transaction_id,
                refunded or 0,
                self._amount(reply, fields.balance_after, required=False),
            )
        raise BackendRequestError(
            f"the campus card platform refused the reversal of {transaction_id}: "
            f"{reply.describe()}",
            "rejected",
            reply.status,
        )

    def refund(self, request: RefundRequest) -> RefundReceipt:
        """Give back part of an order; idempotent by ``refund_id`` (the refund number).

        Raises:
            PaymentDeclinedError: ``unknown_transaction``, ``refund_exceeds``, ``voided``,
                ``invalid_amount`` or ``rejected``.
            BackendUnavailableError: no answer, or one that cannot be read or trusted.
        """
        require_fen(request.amount_fen, "refund")
        if request.amount_fen <= 0:
            raise PaymentDeclinedError("a refund must be positive", "invalid_amount")
        reply = self._refund_call(
            request.transaction_id, request.refund_id, request.amount_fen, request.reason
        )
        category = self._category(reply)
        fields = self.config.fields
        if category in ("success", "already_processed"):
            refunded = self._amount(reply, fields.amount, required=False)
            return RefundReceipt(
                refund_id=request.refund_id,
                transaction_id=request.transaction_id,
                amount_fen=request.amount_fen if refunded is None else refunded,
                balance_after_fen=self._amount(reply, fields.balance_after, required=False),
            )
        declines = {
            "order_not_found": ("no such order on the platform", "unknown_transaction"),
            "refund_exceeds": ("more than is left of the order", "refund_exceeds"),
            "order_voided": ("the order was cancelled", "voided"),
        }
        reason, code = declines.get(
            category, (f"refused by the campus card platform: {reply.describe()}", "rejected")
        )
        raise PaymentDeclinedError(reason, code)

    def transaction(self, transaction_id: str) -> TransactionRecord | None:
        """The order with this number as the platform holds it, or None."""
        config, fields = self.config, self.config.fields
        reply = self._call(
            "order query",
            config.paths.query_order,
            {fields.order_no: transaction_id},
            idempotent=True,
        )
        category = self._category(reply)
        if category == "order_not_found":
            return None
        if category != "success":
            raise BackendRequestError(
                f"the campus card platform refused the order query: {reply.describe()}",
                "rejected",
                reply.status,
            )
        key = fields.card_no if config.account_id_is == "card_no" else fields.account_no
        status = self._text(reply, fields.order_status)
        created = self._text(reply, fields.order_time)
        amount = self._amount(reply, fields.amount, required=True)
        assert amount is not None
        return TransactionRecord(
            transaction_id=transaction_id,
            checkout_id="",
            terminal_id=self._text(reply, fields.pos_id) or config.pos_id,
            account_id=self._text(reply, key),
            method="card",
            amount_fen=amount,
            balance_after_fen=self._amount(reply, fields.balance_after, required=False),
            status="voided" if status in config.order_status_reversed else "charged",
            refunded_fen=self._amount(reply, fields.refunded_amount, required=False) or 0,
            offline=False,
            created_at=self._time(reply, created),
        )

    # --- the calls ------------------------------------------------------------------------

    def _query_account(
        self, params: dict[str, str | None], *, card_id: str | None, path: str | None = None
    ) -> Account | None:
        config, fields = self.config, self.config.fields
        reply = self._call("card query", path or config.paths.query_card, params, idempotent=True)
        category = self._category(reply)
        if category in ("unknown_card", "order_not_found"):
            return None
        if category not in ("success", "card_blocked"):
            raise BackendRequestError(
                f"the campus card platform refused the card query: {reply.describe()}",
                "rejected",
                reply.status,
            )
        if config.account_id_is == "card_no":
            account_id = self._text(reply, fields.card_no) or card_id
        else:
            account_id = self._text(reply, fields.account_no)
        if not account_id:
            key = fields.card_no if config.account_id_is == "card_no" else fields.account_no
            raise BackendUnavailableError(
                f"campus card platform: the card query reply has no {key!r} field"
            )
        status = self._text(reply, fields.card_status)
        blocked = category == "card_blocked" or (
            status is not None and status not in config.card_status_normal
        )
        balance = self._amount(reply, fields.balance, required=not blocked)
        return Account(
            account_id=account_id,
            display_name=self._text(reply, fields.name) or "",
            balance_fen=balance or 0,
            blocked=blocked,
        )

    def _void_by_refund(self, transaction_id: str, void_no: str, reason: str) -> VoidResult:
        order = self.transaction(transaction_id)
        if order is None or order.status == "voided":
            return VoidResult(transaction_id, 0, None)
        left = order.amount_fen - order.refunded_fen
        if left <= 0:
            return VoidResult(transaction_id, 0, None)
        reply = self._refund_call(transaction_id, void_no, left, reason)
        category = self._category(reply)
        if category not in ("success", "already_processed"):
            raise BackendRequestError(
                f"the campus card platform refused the refund voiding {transaction_id}: "
                f"{reply.describe()}",
                "rejected",
                reply.status,
            )
        fields = self.config.fields
        refunded = self._amount(reply, fields.amount, required=False)
        return VoidResult(
            transaction_id,
            left if refunded is None else refunded,
            self._amount(reply, fields.balance_after, required=False),
        )

    def _refund_call(
        self, transaction_id: str, refund_no: str, amount_fen: Fen, reason: str
    ) -> PlatformReply:
        fields = self.config.fields
        params = {
            fields.orig_order_no: transaction_id,
            fields.refund_no: refund_no,
            fields.amount: self._amount_text(amount_fen),
            **({fields.refund_reason: reason} if fields.refund_reason else {}),
        }
        logger.info("campus card refund %s of %s: %d fen", refund_no, transaction_id, amount_fen)
        return self._call("refund", self.config.paths.refund, params, idempotent=True)

    def build_params(self, params: Mapping[str, str | None]) -> dict[str, str]:
        """The full parameters of a request: ours, the fixed ones, timestamp, nonce and sign."""
        config, fields = self.config, self.config.fields
        full: dict[str, str] = dict(config.extra_params)
        full[fields.merchant_id] = config.merchant_id
        full[fields.pos_id] = config.pos_id
        full.update({key: value for key, value in params.items() if value})
        full[fields.timestamp] = format_timestamp(
            self._clock(), config.timestamp_format, config.utc_offset_hours
        )
        if fields.nonce:
            full[fields.nonce] = secrets.token_hex(16)
        full[fields.sign] = self._sign(full)
        return full

    def _sign(self, params: Mapping[str, str]) -> str:
        config = self.config
        return compute_sign(
            params,
            self._secret,
            algorithm=config.sign_algorithm,
            suffix=config.sign_suffix,
            uppercase=config.sign_uppercase,
            sign_field=config.fields.sign,
            exclude=self._exclude,
        )

    def _call(
        self,
        operation: str,
        path: str,
        params: Mapping[str, str | None],
        *,
        idempotent: bool,
    ) -> PlatformReply:
        """Send one request and read its reply.

        A connection error (nothing reached the platform, or the answer was cut off) is retried
        with the very same parameters when ``idempotent``; a read timeout is not, because the
        diner is waiting and the outbox will ask again with the same order number.
        """
        config = self.config
        full = self.build_params(params)
        url = config.base_url.rstrip("/") + "/" + path.lstrip("/")
        tries = 1 + (config.retries if idempotent else 0)
        for attempt in range(1, tries + 1):
            try:
                response = self._send(url, full)
                break
            except requests.ConnectionError as exc:
                if attempt == tries:
                    raise BackendUnavailableError(
                        f"campus card platform {config.base_url}: {operation} failed after "
                        f"{attempt} tries: {type(exc).__name__}: {exc}"
                    ) from exc
                logger.warning(
                    "campus card %s: connection error (%s), try %d of %d",
                    operation,
                    type(exc).__name__,
                    attempt + 1,
                    tries,
                )
                self._sleep(config.retry_backoff_s * 2 ** (attempt - 1))
            except requests.Timeout as exc:
                raise BackendUnavailableError(
                    f"campus card platform {config.base_url}: no answer to {operation} within "
                    f"{config.read_timeout_s} s"
                ) from exc
            except requests.RequestException as exc:
                raise BackendUnavailableError(
                    f"campus card platform {config.base_url}: {operation} failed: {exc}"
                ) from exc
        return self._read(operation, response)

    def _send(self, url: str, params: dict[str, str]) -> requests.Response:
        config = self.config
        timeout = (config.connect_timeout_s, config.read_timeout_s)
        # A redirect would turn a POST into a GET without its body; it is reported instead.
        if config.http_method == "GET":
            return self._session.get(
                url, params=params, timeout=timeout, verify=config.verify_tls, allow_redirects=False
            )
        body: dict[str, Any] = (
            {"json": params} if config.request_format == "json" else {"data": params}
        )
        return self._session.post(
            url, timeout=timeout, verify=config.verify_tls, allow_redirects=False, **body
        )

    def _read(self, operation: str, response: requests.Response) -> PlatformReply:
        config, fields = self.config, self.config.fields
        where = f"campus card platform: {operation} answered HTTP {response.status_code}"
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise BackendUnavailableError(f"{where}: {_snippet(response.content)}")
        if 300 <= response.status_code < 400:
            raise BackendRequestError(
                f"{where}: redirected to {response.headers.get('Location')!r} "
                "(check base_url: http or https, a missing path prefix)",
                "bad_request",
                response.status_code,
            )
        try:
            text = response.content.decode(config.reply_encoding)
            body = json.loads(text, parse_float=Decimal)
        except (UnicodeDecodeError, LookupError, ValueError):
            if response.status_code >= 400:
                raise BackendRequestError(
                    f"{where}: {_snippet(response.content)} (check base_url and paths)",
                    "bad_request",
                    response.status_code,
                ) from None
            raise BackendUnavailableError(
                f"{where} with a reply that is not JSON: {_snippet(response.content)}"
            ) from None
        if not isinstance(body, dict):
            raise BackendUnavailableError(
                f"{where} with JSON that is not an object: {_snippet(response.content)}"
            )
        if fields.result_code not in body:
            if response.status_code >= 400:
                raise BackendRequestError(
                    f"{where}: {_snippet(response.content)} (check base_url and paths)",
                    "bad_request",
                    response.status_code,
                )
            raise BackendUnavailableError(
                f"{where} with no result code field {fields.result_code!r}: "
                f"{_snippet(response.content)}"
            )
        if config.sign_replies:
            self._verify_reply(operation, body)
        values: dict[str, Any] = dict(body)
        if fields.data is not None and body.get(fields.data) is not None:
            data = body[fields.data]
            if isinstance(data, str):
                try:
                    data = json.loads(data, parse_float=Decimal)
                except ValueError:
                    data = None
            if not isinstance(data, dict):
                raise BackendUnavailableError(
                    f"{where} with a {fields.data!r} field that is not an object"
                )
            values.update(data)
        reply = PlatformReply(
            operation=operation,
            status=response.status_code,
            code=wire_text(body[fields.result_code]),
            message=wire_text(body.get(fields.message)),
            values=values,
        )
        logger.debug("campus card %s: %s", operation, reply.describe())
        return reply

    def _verify_reply(self, operation: str, body: Mapping[str, Any]) -> None:
        sign_field = self.config.fields.sign
        given = body.get(sign_field)
        if not isinstance(given, str) or not given:
            raise BackendUnavailableError(
                f"campus card platform: the {operation} reply is not signed (no {sign_field!r} "
                "field) though sign_replies is on; not trusting it"
            )
        expected = self._sign({key: wire_text(value) for key, value in body.items()})
        if not hmac.compare_digest(given.upper(), expected.upper()):
            raise BackendUnavailableError(
                f"campus card platform: the {operation} reply's signature does not verify; "
                "not trusting it (a wrong secret or sign setting, or a forged reply)"
            )

    # --- reading replies ------------------------------------------------------------------

    def _category(self, reply: PlatformReply) -> str:
        """The meaning of a reply's code: a :class:`CampusCardCodes` field name, or ``other``.

        Two meanings are the same for every call: a refused signature is a setup problem, and
        an unknown outcome is treated like no answer at all.
        """
        codes = self.config.codes
        for name, listed in codes:
            if reply.code in listed:
                category = str(name)
                break
        else:
            category = "other"
        if category == "sign_error":
            raise BackendRequestError(
                f"the campus card platform refused the {reply.operation} request's signature "
                f"({reply.describe()}): check secret, sign_algorithm and sign_suffix",
                "bad_signature",
                reply.status,
            )
        if category == "unknown_outcome":
            raise BackendUnavailableError(
                f"campus card platform: {reply.operation} outcome unknown: {reply.describe()}"
            )
        return category

    def _text(self, reply: PlatformReply, field: str | None) -> str | None:
        if field is None:
            return None
        value = reply.values.get(field)
        return None if value is None or value == "" else wire_text(value)

    def _amount(self, reply: PlatformReply, field: str | None, *, required: bool) -> Fen | None:
        value = None if field is None else reply.values.get(field)
        if value is None or value == "":
            if required:
                raise BackendUnavailableError(
                    f"campus card platform: the {reply.operation} reply has no {field!r} field"
                )
            return None
        try:
            return self._parse_amount(value)
        except ValueError as exc:
            raise BackendUnavailableError(
                f"campus card platform: the {reply.operation} reply's {field!r} is not an "
                f"amount in {self.config.amount_unit}: {value!r} ({exc})"
            ) from None

    def _parse_amount(self, value: Any) -> Fen:
        if isinstance(value, bool):
            raise ValueError("a true/false value")
        if self.config.amount_unit == "yuan":
            return yuan_to_fen(str(value))
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if not _FEN.match(text):
            raise ValueError("not a whole number of fen")
        return int(text)

    def _amount_text(self, amount_fen: Fen) -> str:
        return fen_to_yuan(amount_fen) if self.config.amount_unit == "yuan" else str(amount_fen)

    def _time(self, reply: PlatformReply, text: str | None) -> float:
        if text is None:
            return 0.0
        try:
            return parse_timestamp(text, self.config.timestamp_format, self.config.utc_offset_hours)
        except ValueError:
            logger.warning("campus card %s: unreadable order time %r", reply.operation, text)
            return 0.0


def _snippet(content: bytes, limit: int = 120) -> str:
    text = content.decode("utf-8", errors="replace").strip()
    if not text:
        return "(empty body)"
    return repr(text if len(text) <= limit else text[:limit] + "...")


__all__ = [
    "CampusCardBackend",
    "CampusCardBackendConfig",
    "CampusCardCodes",
    "CampusCardFields",
    "CampusCardPaths",
    "CampusCardSetupError",
    "PlatformReply",
    "compute_sign",
    "fen_to_yuan",
    "format_timestamp",
    "load_secret",
    "parse_timestamp",
    "sign_string",
    "wire_text",
    "yuan_to_fen",
]
