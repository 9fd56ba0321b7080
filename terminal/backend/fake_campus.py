"""A fake campus card (一卡通) platform: a real HTTP server on loopback, for tests and bench checks.

:class:`FakeCampusPlatform` answers the same API as the platforms
:class:`~terminal.backend.campus.CampusCardBackend` talks to, read from the same
:class:`~terminal.backend.campus.CampusCardBackendConfig`: paths, field names, result codes,
signature, amount unit and reply envelope. It holds cards and orders in memory, checks every
request's merchant id and signature, treats the order number as the idempotency key (a repeat is
answered "already processed" with the original balances), never overdraws, and records every
request it got so a test can assert the exact fields on the wire. It is a fake: nothing it holds
survives :meth:`FakeCampusPlatform.stop`.

Test hooks: ``drop_replies`` (process the next requests, then hang up without answering: a lost
answer), ``canned_replies`` (answer the next requests with these bytes and process nothing) and
``reply_secret`` (sign replies with another secret: a forged reply).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from terminal.backend.campus import (
    CampusCardBackendConfig,
    compute_sign,
    fen_to_yuan,
    format_timestamp,
    load_secret,
    wire_text,
    yuan_to_fen,
)
from terminal.core.money import Fen

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake platform received it: every parameter as text."""

    method: str
    path: str
    params: dict[str, str]
    sign_ok: bool


@dataclass
class FakeCard:
    """A card on the fake platform."""

    card_no: str
    account_no: str
    name: str
    balance_fen: Fen
    status: str


@dataclass
class FakeOrder:
    """A consumption on the fake platform; ``status`` is ``consumed`` or a reversed status."""

    order_no: str
    card_no: str
    account_no: str
    pos_id: str
    amount_fen: Fen
    balance_before_fen: Fen
    balance_after_fen: Fen
    time_text: str
    status: str = "consumed"
    refunded_fen: Fen = 0
    reversal: dict[str, Any] | None = None


class _RefusedError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _State:
    cards: dict[str, FakeCard] = field(default_factory=dict)
    orders: dict[str, FakeOrder] = field(default_factory=dict)
    refunds: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    tombstones: set[str] = field(default_factory=set)


class FakeCampusPlatform:
    """An in-memory campus card platform served over HTTP on 127.0.0.1 (a free port).

    Args:
        config: the platform's shape; the same config the adapter is given.
        home: the folder a relative ``secret_file`` is resolved against.
        clock: unix seconds, for order times.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        config: CampusCardBackendConfig,
        *,
        home: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.secret = load_secret(config, home)
        #: The secret replies are signed with (when ``sign_replies``); change it to forge.
        self.reply_secret = self.secret
        self.requests: list[RecordedRequest] = []
        #: Process this many next requests, then hang up without answering.
        self.drop_replies = 0
        #: Answer the next requests with these (HTTP status, body) and process nothing.
        self.canned_replies: list[tuple[int, bytes]] = []
        self._clock = clock
        self._state = _State()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- running --------------------------------------------------------------------------

    def start(self) -> FakeCampusPlatform:
        """Listen on a free loopback port and serve in a thread."""
        if self._server is not None:
            return self
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                platform._serve(self)

            def do_POST(self) -> None:
                platform._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("fake campus platform: " + format, *args)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-campus-platform",
            daemon=True,
        )
        self._thread.start()
        logger.info("fake campus platform listening at %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and free the port; a later call gets "connection refused"."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeCampusPlatform:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the base URL to give the adapter."""
        if self._server is None:
            raise RuntimeError("the fake campus platform is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def backend_config(self, **changes: Any) -> CampusCardBackendConfig:
        """The platform's config pointed at this server, with ``changes`` applied."""
        data = self.config.model_dump()
        data.update({"base_url": self.url, **changes})
        if "secret" in data and data["secret"] is not None and "secret" not in changes:
            data["secret"] = self.secret
        return CampusCardBackendConfig.model_validate(data)

    # --- the card table -------------------------------------------------------------------

    def add_card(
        self,
        card_no: str,
        balance_fen: Fen,
        *,
        account_no: str | None = None,
        name: str = "",
        status: str | None = None,
    ) -> FakeCard:
        """Open a card; ``status`` defaults to the first of ``card_status_normal``."""
        card = FakeCard(
            card_no=card_no,
            account_no=account_no or f"A{card_no}",
            name=name,
            balance_fen=balance_fen,
            status=status or self.config.card_status_normal[0],
        )
        with self._lock:
            self._state.cards[card_no] = card
        return card

    def set_status(self, card_no: str, status: str) -> None:
        """Lose, freeze or restore a card."""
        with self._lock:
            self._state.cards[card_no].status = status

    def balance(self, card_no: str) -> Fen:
        with self._lock:
            return self._state.cards[card_no].balance_fen

    def order(self, order_no: str) -> FakeOrder | None:
        with self._lock:
            return self._state.orders.get(order_no)

    def order_count(self) -> int:
        with self._lock:
            return len(self._state.orders)

    def requests_to(self, call: str) -> list[RecordedRequest]:
        """The recorded requests to one call: ``consume``, ``refund``, ``query_card`` ..."""
        path = getattr(self.config.paths, call)
        return [r for r in self.requests if r.path == path]

    # --- serving --------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        params = self._params(handler.command, parts.query, raw, handler.headers)
        fields = self.config.fields
        sign_ok = params.get(fields.sign, "") == self._sign(params, self.secret)
        with self._lock:
            self.requests.append(RecordedRequest(handler.command, parts.path, params, sign_ok))
            canned = self.canned_replies.pop(0) if self.canned_replies else None
        if canned is not None:
            self._write(handler, *canned)
            return
        try:
            if not sign_ok:
                raise _RefusedError(self._code("sign_error"), "签名错误 bad sign")
            if params.get(fields.merchant_id) != self.config.merchant_id:
                raise _RefusedError("E_MERCHANT", "商户不存在 unknown merchant")
            code, values = self._dispatch(parts.path, params)
            message = "成功" if code in self.config.codes.success else "重复 already processed"
        except _RefusedError as refused:
            code, values, message = refused.code, {}, refused.message
        with self._lock:
            if self.drop_replies > 0:
                self.drop_replies -= 1
                logger.info("fake campus platform: hanging up on %s unanswered", parts.path)
                handler.close_connection = True
                return
        body = json.dumps(self._reply(code, message, values), ensure_ascii=False)
        self._write(handler, 200, body.encode(self.config.reply_encoding))

    def _params(self, method: str, query: str, raw: bytes, headers: Any) -> dict[str, str]:
        if method == "GET":
            pairs = parse_qs(query, keep_blank_values=True)
            return {key: values[-1] for key, values in pairs.items()}
        if "json" in (headers.get("Content-Type") or ""):
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return {}
            return {str(k): wire_text(v) for k, v in body.items()} if isinstance(body, dict) else {}
        pairs = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
        return {key: values[-1] for key, values in pairs.items()}

    @staticmethod
    def _write(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _sign(self, params: dict[str, str], secret: str) -> str:
        config = self.config
        return compute_sign(
            params,
            secret,
            algorithm=config.sign_algorithm,
            suffix=config.sign_suffix,
            uppercase=config.sign_uppercase,
            sign_field=config.fields.sign,
            exclude=frozenset(config.sign_exclude),
        )

    def _reply(self, code: str, message: str, values: dict[str, Any]) -> dict[str, Any]:
        fields = self.config.fields
        reply: dict[str, Any] = {fields.result_code: code, fields.message: message}
        if fields.data is not None:
            reply[fields.data] = values
        else:
            reply.update(values)
        if self.config.sign_replies:
            reply[fields.sign] = self._sign(
                {key: wire_text(value) for key, value in reply.items()}, self.reply_secret
            )
        return reply

    def _code(self, name: str) -> str:
        codes: list[str] = getattr(self.config.codes, name)
        return codes[0] if codes else f"E_{name.upper()}"

    def _money(self, amount_fen: Fen) -> Any:
        return fen_to_yuan(amount_fen) if self.config.amount_unit == "yuan" else amount_fen

    def _parse_money(self, text: str | None) -> Fen:
        try:
            if text is None:
                raise ValueError("missing")
            if self.config.amount_unit == "yuan":
                return yuan_to_fen(text)
            if not text.isdigit():
                raise ValueError(text)
            return int(text)
        except ValueError:
            raise _RefusedError("E_PARAM", f"金额错误 bad amount {text!r}") from None

    def _dispatch(self, path: str, params: dict[str, str]) -> tuple[str, dict[str, Any]]:
        paths = self.config.paths
        routes: dict[str | None, Callable[[dict[str, str]], tuple[str, dict[str, Any]]]] = {
            paths.query_card: self._query_card,
            paths.query_account: self._query_card,
            paths.consume: self._consume,
            paths.reverse: self._reverse,
            paths.refund: self._refund,
            paths.query_order: self._query_order,
        }
        route = routes.get(path)
        if route is None:
            raise _RefusedError("E_PATH", f"no such call {path}")
        with self._lock:
            return route(params)

    # --- the calls (under the lock) -------------------------------------------------------

    def _find_card(self, params: dict[str, str]) -> FakeCard:
        fields = self.config.fields
        card_no, account_no = params.get(fields.card_no), params.get(fields.account_no)
        card = None
        if card_no:
            card = self._state.cards.get(card_no)
            if card is not None and account_no and card.account_no != account_no:
                card = None
        elif account_no:
            card = next((c for c in self._state.cards.values() if c.account_no == account_no), None)
        if card is None:
            raise _RefusedError(self._code("unknown_card"), "卡号不存在 unknown card")
        return card

    def _card_values(self, card: FakeCard) -> dict[str, Any]:
        fields = self.config.fields
        values: dict[str, Any] = {
            fields.card_no: card.card_no,
            fields.account_no: card.account_no,
            fields.name: card.name,
            fields.balance: self._money(card.balance_fen),
        }
        if fields.card_status:
            values[fields.card_status] = card.status
        return values

    def _query_card(self, params: dict[str, str]) -> tuple[str, dict[str, Any]]:
        return self._code("success"), self._card_values(self._find_card(params))

    def _order_values(self, order: FakeOrder) -> dict[str, Any]:
        fields = self.config.fields
        values: dict[str, Any] = {
            fields.order_no: order.order_no,
            fields.card_no: order.card_no,
            fields.account_no: order.account_no,
            fields.pos_id: order.pos_id,
            fields.amount: self._money(order.amount_fen),
            fields.balance_before: self._money(order.balance_before_fen),
            fields.balance_after: self._money(order.balance_after_fen),
        }
        if fields.order_status:
            values[fields.order_status] = order.status
        if fields.refunded_amount:
            values[fields.refunded_amount] = self._money(order.refunded_fen)
        if fields.order_time:
            values[fields.order_time] = order.time_text
        return values

    def _consume(self, params: dict[str, str]) -> tuple[str, dict[str, Any]]:
        fields = self.config.fields
        order_no = params.get(fields.order_no)
        if not order_no:
            raise _RefusedError("E_PARAM", "缺少订单号 missing order number")
        existing = self._state.orders.get(order_no)
        if order_no in self._state.tombstones or (
            existing is not None and existing.status != "consumed"
        ):
            raise _RefusedError(self._code("order_voided"), "订单已冲正 order reversed")
        if existing is not None:
            return self._code("already_processed"), self._order_values(existing)
        card = self._find_card(params)
        if card.status not in self.config.card_status_normal:
            raise _RefusedError(self._code("card_blocked"), f"卡状态异常 card {card.status}")
        amount = self._parse_money(params.get(fields.amount))
        if card.balance_fen < amount:
            raise _RefusedError(self._code("insufficient_balance"), "余额不足 insufficient balance")
        before = card.balance_fen
        card.balance_fen -= amount
        order = FakeOrder(
            order_no=order_no,
            card_no=card.card_no,
            account_no=card.account_no,
            pos_id=params.get(fields.pos_id, ""),
            amount_fen=amount,
            balance_before_fen=before,
            balance_after_fen=card.balance_fen,
            time_text=format_timestamp(
                self._clock(), self.config.timestamp_format, self.config.utc_offset_hours
            ),
        )
        self._state.orders[order_no] = order
        return self._code("success"), self._order_values(order)

    def _reverse(self, params: dict[str, str]) -> tuple[str, dict[str, Any]]:
        fields = self.config.fields
        order_no = params.get(fields.orig_order_no, "")
        order = self._state.orders.get(order_no)
        if order is None:
            # Like most platforms' 冲正: a reversal that overtook its consume leaves a mark, so
            # the late consume is refused rather than charged.
            self._state.tombstones.add(order_no)
            raise _RefusedError(self._code("order_not_found"), "订单不存在 order not found")
        if order.reversal is not None:
            return self._code("already_processed"), order.reversal
        card = self._state.cards[order.card_no]
        left = order.amount_fen - order.refunded_fen
        card.balance_fen += left
        order.refunded_fen = order.amount_fen
        order.status = self.config.order_status_reversed[0]
        order.reversal = {
            fields.order_no: order_no,
            fields.amount: self._money(left),
            fields.balance_after: self._money(card.balance_fen),
        }
        return self._code("success"), order.reversal

    def _refund(self, params: dict[str, str]) -> tuple[str, dict[str, Any]]:
        fields = self.config.fields
        order_no = params.get(fields.orig_order_no, "")
        refund_no = params.get(fields.refund_no, "")
        if not refund_no:
            raise _RefusedError("E_PARAM", "缺少退款单号 missing refund number")
        if refund_no in self._state.refunds:
            for_order, values = self._state.refunds[refund_no]
            if for_order != order_no:
                raise _RefusedError("E_PARAM", "退款单号重复 refund number reused")
            return self._code("already_processed"), values
        order = self._state.orders.get(order_no)
        if order is None:
            raise _RefusedError(self._code("order_not_found"), "订单不存在 order not found")
        if order.status != "consumed":
            raise _RefusedError(self._code("order_voided"), "订单已冲正 order reversed")
        amount = self._parse_money(params.get(fields.amount))
        if amount <= 0 or amount > order.amount_fen - order.refunded_fen:
            raise _RefusedError(self._code("refund_exceeds"), "退款金额超限 refund exceeds")
        card = self._state.cards[order.card_no]
        card.balance_fen += amount
        order.refunded_fen += amount
        values = {
            fields.order_no: order_no,
            fields.refund_no: refund_no,
            fields.amount: self._money(amount),
            fields.balance_after: self._money(card.balance_fen),
        }
        self._state.refunds[refund_no] = (order_no, values)
        return self._code("success"), values

    def _query_order(self, params: dict[str, str]) -> tuple[str, dict[str, Any]]:
        order = self._state.orders.get(params.get(self.config.fields.order_no, ""))
        if order is None:
            raise _RefusedError(self._code("order_not_found"), "订单不存在 order not found")
        return self._code("success"), self._order_values(order)


__all__ = ["FakeCampusPlatform", "FakeCard", "FakeOrder", "RecordedRequest"]
