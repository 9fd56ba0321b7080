"""The campus-card adapter against the fake platform, over real loopback HTTP.

Every test talks HTTP to a :class:`FakeCampusPlatform` built from the same config as the
adapter, and checks what a canteen would notice: the balance on the card, what went over the
wire, and which error the terminal gets.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from terminal.backend.campus import (
    CampusCardBackend,
    CampusCardBackendConfig,
    compute_sign,
    fen_to_yuan,
    yuan_to_fen,
)
from terminal.backend.fake_campus import FakeCampusPlatform
from terminal.core.ports import (
    BackendRequestError,
    BackendUnavailableError,
    LedgerBackend,
    PaymentDeclinedError,
    RefundRequest,
)
from terminal.core.pricing import price_tray
from terminal.core.session import PaymentRequest

from ..conftest import small_menu

SECRET = "k3y-of-the-canteen"
NOW = 1_764_000_000.0  # 2025-11-25 00:00:00 in Beijing
PRICED = price_tray(small_menu(), ["rice"], 400)


def make_config(**changes: Any) -> CampusCardBackendConfig:
    """A platform config as a site would write it, with fast retries for tests."""
    data: dict[str, Any] = {
        "base_url": "http://127.0.0.1:9",
        "merchant_id": "M100",
        "pos_id": "POS7",
        "secret": SECRET,
        "retry_backoff_s": 0.0,
    }
    data.update(changes)
    return CampusCardBackendConfig.model_validate(data)


def pay(transaction_id: str, amount_fen: int, card: str = "C1001", method: str = "card") -> Any:
    return PaymentRequest(transaction_id, "checkout-1", "t1", amount_fen, method, card, PRICED, NOW)


def start_platform(config: CampusCardBackendConfig) -> FakeCampusPlatform:
    platform = FakeCampusPlatform(config, clock=lambda: NOW).start()
    platform.add_card("C1001", 1000, account_no="A-1", name="王伟")
    platform.add_card("C1002", 50, account_no="A-2", name="李娜")
    platform.add_card("C1003", 800, account_no="A-3", name="张敏", status="frozen")
    return platform


@pytest.fixture
def platform() -> Iterator[FakeCampusPlatform]:
    platform = start_platform(make_config())
    yield platform
    platform.stop()


@pytest.fixture
def backend(platform: FakeCampusPlatform) -> Iterator[CampusCardBackend]:
    backend = CampusCardBackend(platform.backend_config(), clock=lambda: NOW)
    yield backend
    backend.close()


def test_the_adapter_is_a_ledger_backend(backend: CampusCardBackend) -> None:
    assert isinstance(backend, LedgerBackend)


# --- card query ---------------------------------------------------------------------------


def test_lookup_sends_a_signed_card_query_and_returns_the_account(
    backend: CampusCardBackend, platform: FakeCampusPlatform
) -> None:
    account = backend.lookup_card("C1001")
    assert account is not None
    assert (account.account_id, account.display_name, account.balance_fen) == (
        "C1001",
        "王伟",
        1000,
    )
    assert not account.blocked
    [sent] = platform.requests_to("query_card")
    signed = "card_no=C1001&merchant_id=M100&pos_id=POS7&timestamp=20251125000000"
    expected = hashlib.md5(f"{signed}&key={SECRET}".encode()).hexdigest().upper()
    assert sent.params == {
        "card_no": "C1001",
        "merchant_id": "M100",
        "pos_id": "POS7",
        "timestamp": "20251125000000",
        "sign": expected,
    }


def test_unknown_card_is_none_and_a_frozen_card_is_blocked(backend: CampusCardBackend) -> None:
    assert backend.lookup_card("C9999") is None
    frozen = backend.lookup_card("C1003")
    assert frozen is not None and frozen.blocked and frozen.balance_fen == 800


# --- charge -------------------------------------------------------------------------------


def test_charge_consumes_with_the_order_number_and_returns_the_platform_balance(
    backend: CampusCardBackend, platform: FakeCampusPlatform
) -> None:
    receipt = backend.charge(pay("tx-1", 250), "C1001")
    assert (receipt.transaction_id, receipt.account_id, receipt.amount_fen) == (
        "tx-1",
        "C1001",
        250,
    )
    assert receipt.balance_after_fen == 750
    assert platform.balance("C1001") == 750
    [sent] = platform.requests_to("consume")
    assert sent.sign_ok
    assert {k: v for k, v in sent.params.items() if k != "sign"} == {
        "card_no": "C1001",
        "merchant_id": "M100",
        "pos_id": "POS7",
        "amount": "250",
        "order_no": "tx-1",
        "timestamp": "20251125000000",
    }


def test_a_repeated_order_debits_once_and_returns_the_same_receipt(
    backend: CampusCardBackend, platform: FakeCampusPlatform
) -> None:
    first = backend.charge(pay("tx-1", 250), "C1001")
    backend.charge(pay("tx-2", 100), "C1001")
    again = backend.charge(pay("tx-1", 250), "C1001")
    assert again == first
    assert platform.balance("C1001") == 650
    assert platform.order_count() == 2
    assert [r.params["order_no"] for r in platform.requests_to("consume")] == [
        "tx-1",
        "tx-2",
        "tx-1",
    ]


def test_a_lost_answer_is_retried_with_the_same_order_and_debits_once(
    backend: CampusCardBackend, platform: FakeCampusPlatform
) -> None:
    platform.drop_replies = 1  # the platform takes the money, then the answer is lost
    receipt = backend.charge(pay("tx-1", 250), "C1001")
    assert receipt.balance_after_fen == 750
    assert platform.balance("C1001") == 750
    first, retry = platform.requests_to("consume")
    assert retry.params == first.params


def test_without_retries_a_lost_answer_is_unavailable_and_the_outbox_repeat_is_paid(
    platform: FakeCampusPlatform,
) -> None:
    backend = CampusCardBackend(platform.backend_config(retries=0))
    platform.drop_replies = 1
    with pytest.raises(BackendUnavailableError):
        backend.charge(pay("tx-1", 250), "C1001")
    receipt = backend.charge(pay("tx-1", 250), "C1001")  # what the outbox does
    assert receipt.balance_after_fen == 750
    assert platform.balance("C1001") == 750


def test_an_order_consumed_with_another_amount_is_a_conflict(
    backend: CampusCardBackend, platform: FakeCampusPlatform
) -> None:
    backend.charge(pay("tx-1", 250), "C1001")
    with pytest.raises(PaymentDeclinedError) as caught:
        backend.charge(pay("tx-1", 300), "C1001")
    assert caught.value.code == "conflict"
    assert platform.balance("C1001") == 750


@pytest.mark.parametrize(
    ("card", "amount", "code"),
    [
        ("C1002", 60, "insufficient_balance"),
        ("C9999", 10, "unknown_card"),
        ("C1003", 10, "blocked"),
    ],
)
def test_platform_refusals_are_declines_and_take_nothing(
    backend: CampusCardBackend, platform: FakeCampusPlatform, card: str, amount: int, code: str
) -> None:
    with pytest.raises(PaymentDeclinedError) as caught:
        backend.charge(pay("tx-1", amount, card), card)
    assert caught.value.code == code
    assert platform.order_count() == 0
    assert (platform.balance("C1002"), platform.balance("C1003")) == (50, 800)


def test_a_code_the_config_does_not_name_is_rejected_with_the_platform_message(
    backend: CampusCardBackend, platform: FakeCampusPlatform
) -> None:
    platform.canned_replies.append((200, '{"code": "7007", "msg": "超出单笔限额"}'.encode()))
    with pytest.raises(PaymentDeclinedError) as caught:
        backend.charge(pay("tx-1", 250), "C1001")
    assert caught.value.code == "rejected"
    assert "7007" in caught.value.reason and "超出单笔限额" in caught.value.reason


def test_a_busy_platform_is_an_unknown_outcome_not_a_decline(
    backend: CampusCardBackend, platform: FakeCampusPlatform
) -> None:
    platform.canned_replies.append((200, b'{"code": "9999", "msg": "system busy"}'))
    with pytest.raises(BackendUnavailableError, match="outcome unknown"):
        backend.charge(pay("tx-1", 250), "C1001")


# --- signatures ---------------------------------------------------------------------------


def test_a_wrong_secret_is_a_setup_error_that_names_the_secret(
    platform: FakeCampusPlatform,
) -> None:
    backend = CampusCardBackend(platform.backend_config(secret="not-the-secret"))
    with pytest.raises(BackendRequestError, match=r"signature.*check secret") as caught:
        backend.charge(pay("tx-1", 250), "C1001")
    assert caught.value.code == "bad_signature"
    with pytest.raises(BackendRequestError, match="check secret"):
        backend.lookup_card("C1001")
    assert platform.balance("C1001") == 1000


def test_a_reply_whose_sign_does_not_verify_is_not_taken_as_paid() -> None:
    platform = start_platform(make_config(sign_replies=True))
    try:
        backend = CampusCardBackend(platform.backend_config())
        assert backend.charge(pay("tx-1", 100), "C1001").balance_after_fen == 900
        platform.reply_secret = "forger"
        with pytest.raises(BackendUnavailableError, match="signature does not verify"):
            backend.charge(pay("tx-2", 100), "C1001")
        platform.canned_replies.append((200, b'{"code": "0", "msg": "ok", "balance_after": 1}'))
        with pytest.raises(BackendUnavailableError, match="not signed"):
            backend.charge(pay("tx-3", 100), "C1001")
        platform.reply_secret = platform.secret
        # The platform did take tx-2; the outbox's repeat gets the first result.
        assert backend.charge(pay("tx-2", 100), "C1001").balance_after_fen == 800
        assert platform.balance("C1001") == 800
    finally:
        platform.stop()


@pytest.mark.parametrize(
    ("algorithm", "suffix", "digest"),
    [
        ("MD5", "&key={secret}", lambda t: hashlib.md5(t + b"&key=S").hexdigest()),
        ("SHA256", "&key={secret}", lambda t: hashlib.sha256(t + b"&key=S").hexdigest()),
        ("SHA256", "{secret}", lambda t: hashlib.sha256(t + b"S").hexdigest()),
        ("HMAC-SHA256", "", lambda t: hmac.new(b"S", t, hashlib.sha256).hexdigest()),
    ],
)
def test_sign_sorts_non_empty_parameters_and_hashes_them(
    algorithm: Any, suffix: str, digest: Any
) -> None:
    params = {"b": "2", "a": "1", "empty": "", "sign": "OLD", "sign_type": "X"}
    signed = compute_sign(
        params, "S", algorithm=algorithm, suffix=suffix, exclude=frozenset({"sign_type"})
    )
    assert signed == digest(b"a=1&b=2").upper()


# --- yuan ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fen", "yuan"),
    [(1234, "12.34"), (5, "0.05"), (29, "0.29"), (100, "1.00"), (0, "0.00"), (-7, "-0.07")],
)
def test_fen_and_yuan_strings_convert_exactly(fen: int, yuan: str) -> None:
    assert fen_to_yuan(fen) == yuan
    assert yuan_to_fen(yuan) == fen


@pytest.mark.parametrize(("text", "fen"), [("12.3", 1230), ("12", 1200), ("0.1", 10)])
def test_short_yuan_strings_are_read_exactly(text: str, fen: int) -> None:
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize("text", ["1.005", "abc", "1e3", "", "12.", "1,00"])
def test_yuan_strings_finer_than_a_fen_or_not_numbers_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        yuan_to_fen(text)


def test_a_yuan_platform_gets_yuan_strings_and_balances_come_back_in_exact_fen() -> None:
    platform = start_platform(make_config(amount_unit="yuan"))
    try:
        platform.add_card("C2000", 1234)
        backend = CampusCardBackend(platform.backend_config())
        account = backend.lookup_card("C2000")
        assert account is not None and account.balance_fen == 1234
        receipt = backend.charge(pay("tx-1", 1229, "C2000"), "C2000")
        assert receipt.balance_after_fen == 5
        assert platform.balance("C2000") == 5
        assert platform.requests_to("consume")[0].params["amount"] == "12.29"
    finally:
        platform.stop()


# --- a site's own field names -------------------------------------------------------------


CUSTOM = {
    "request_format": "json",
    "sign_algorithm": "HMAC-SHA256",
    "sign_suffix": "",
    "sign_uppercase": False,
    "sign_replies": True,
    "timestamp_format": "unix",
    "extra_params": {"appId": "canteen", "version": 2},
    "sign_exclude": ["version"],
    "paths": {"query_card": "/api/v2/card/info", "consume": "/api/v2/pay"},
    "fields": {
        "card_no": "cardNo",
        "merchant_id": "mchId",
        "pos_id": "termId",
        "amount": "txAmt",
        "order_no": "outTradeNo",
        "timestamp": "ts",
        "nonce": "nonceStr",
        "sign": "signature",
        "result_code": "retCode",
        "message": "retMsg",
        "name": "custName",
        "balance": "bal",
        "card_status": "cardState",
        "balance_before": "balBefore",
        "balance_after": "balAfter",
        "data": "data",
    },
    "codes": {"success": "0000", "already_processed": 1001, "insufficient_balance": ["E51"]},
    "card_status_normal": [1],
}


def test_custom_field_names_paths_codes_and_envelope_are_honoured() -> None:
    platform = start_platform(make_config(**CUSTOM))
    try:
        platform.add_card("C3000", 300, status="1")
        backend = CampusCardBackend(platform.backend_config(), clock=lambda: NOW)
        account = backend.lookup_card("C3000")
        assert account is not None and (account.balance_fen, account.blocked) == (300, False)
        assert backend.charge(pay("tx-1", 120, "C3000"), "C3000").balance_after_fen == 180
        again = backend.charge(pay("tx-1", 120, "C3000"), "C3000")
        assert again.balance_after_fen == 180
        with pytest.raises(PaymentDeclinedError) as caught:
            backend.charge(pay("tx-2", 500, "C3000"), "C3000")
        assert caught.value.code == "insufficient_balance"
        assert platform.balance("C3000") == 180
        sent = platform.requests_to("consume")[0]
        assert sent.sign_ok
        assert set(sent.params) == {
            "appId",
            "version",
            "mchId",
            "termId",
            "cardNo",
            "txAmt",
            "outTradeNo",
            "ts",
            "nonceStr",
            "signature",
        }
        assert (sent.params["txAmt"], sent.params["ts"], sent.params["version"]) == (
            "120",
            str(int(NOW)),
            "2",
        )
        assert sent.params["signature"] == sent.params["signature"].lower()
    finally:
        platform.stop()


def test_account_numbers_as_account_ids_query_and_consume_by_account() -> None:
    platform = start_platform(make_config(account_id_is="account_no"))
    try:
        backend = CampusCardBackend(platform.backend_config())
        account = backend.lookup_card("C1001")
        assert account is not None and account.account_id == "A-1"
        by_account = backend.lookup_account("A-1")
        assert by_account is not None and by_account.balance_fen == 1000
        assert platform.requests_to("query_card")[-1].params["account_no"] == "A-1"
        backend.charge(pay("tx-card", 100), "A-1")
        backend.charge(pay("tx-face", 100, card="face-match-77", method="face"), "A-1")
        card_pay, face_pay = platform.requests_to("consume")
        assert (card_pay.params["card_no"], card_pay.params["account_no"]) == ("C1001", "A-1")
        assert "card_no" not in face_pay.params and face_pay.params["account_no"] == "A-1"
        assert platform.balance("C1001") == 800
        assert backend.lookup_account("A-404") is None
    finally:
        platform.stop()


# --- void, refund, order query ------------------------------------------------------------


def test_void_reverses_the_whole_order_once(
    backend: CampusCardBackend, platform: FakeCampusPlatform
) -> None:
    backend.charge(pay("tx-1", 250), "C1001")
    result = backend.void("tx-1", "diner changed their mind")
    assert (result.refunded_fen, result.balance_after_fen) == (250, 1000)
    assert backend.void("tx-1", "again") == result
    assert platform.balance("C1001") == 1000
    [reversal, _] = platform.requests_to("reverse")
    assert reversal.params["orig_order_no"] == "tx-1"


def test_voiding_a_never_consumed_order_refunds_nothing_and_a_late_consume_is_refused(
    backend: CampusCardBackend, platform: FakeCampusPlatform
) -> None:
    result = backend.void("tx-late", "tray removed")
    assert (result.refunded_fen, result.balance_after_fen) == (0, None)
    with pytest.raises(PaymentDeclinedError) as caught:
        backend.charge(pay("tx-late", 250), "C1001")
    assert caught.value.code == "voided"
    assert platform.balance("C1001") == 1000


def test_refunds_are_idempotent_by_refund_id_and_bounded_by_the_order(
    backend: CampusCardBackend, platform: FakeCampusPlatform
) -> None:
    backend.charge(pay("tx-1", 250), "C1001")
    refund = RefundRequest("rf-1", "tx-1", 100, "soup spilled", "cashier-3")
    receipt = backend.refund(refund)
    assert (receipt.amount_fen, receipt.balance_after_fen) == (100, 850)
    assert backend.refund(refund) == receipt
    assert platform.balance("C1001") == 850
    declines = [
        (RefundRequest("rf-2", "tx-1", 200, "", "c"), "refund_exceeds"),
        (RefundRequest("rf-3", "tx-none", 10, "", "c"), "unknown_transaction"),
        (RefundRequest("rf-4", "tx-1", 0, "", "c"), "invalid_amount"),
    ]
    for request, code in declines:
        with pytest.raises(PaymentDeclinedError) as caught:
            backend.refund(request)
        assert caught.value.code == code
    # What is left after the refund is what a void gives back.
    assert backend.void("tx-1", "cancel").refunded_fen == 150
    assert platform.balance("C1001") == 1000
    with pytest.raises(PaymentDeclinedError) as caught:
        backend.refund(RefundRequest("rf-5", "tx-1", 10, "", "c"))
    assert caught.value.code == "voided"


def test_without_a_reversal_call_void_refunds_what_is_left() -> None:
    platform = start_platform(make_config(paths={"reverse": None}))
    try:
        backend = CampusCardBackend(platform.backend_config())
        backend.charge(pay("tx-1", 250), "C1001")
        backend.refund(RefundRequest("rf-1", "tx-1", 50, "", "c"))
        result = backend.void("tx-1", "cancel")
        assert (result.refunded_fen, result.balance_after_fen) == (200, 1000)
        assert platform.requests_to("refund")[-1].params["refund_no"] == "Vtx-1"
        assert backend.void("tx-1", "again").refunded_fen == 0
        assert backend.void("tx-never", "cancel").refunded_fen == 0
        assert platform.balance("C1001") == 1000
    finally:
        platform.stop()


def test_order_query_reports_the_platform_order(
    backend: CampusCardBackend, platform: FakeCampusPlatform
) -> None:
    assert backend.transaction("tx-1") is None
    backend.charge(pay("tx-1", 250), "C1001")
    record = backend.transaction("tx-1")
    assert record is not None
    assert (record.account_id, record.amount_fen, record.balance_after_fen) == ("C1001", 250, 750)
    assert (record.status, record.refunded_fen, record.terminal_id) == ("charged", 0, "POS7")
    assert record.created_at == NOW
    backend.void("tx-1", "cancel")
    voided = backend.transaction("tx-1")
    assert voided is not None and (voided.status, voided.refunded_fen) == ("voided", 250)


# --- the platform down or talking nonsense ------------------------------------------------


def test_a_platform_that_is_down_is_unavailable_after_the_retries(
    platform: FakeCampusPlatform,
) -> None:
    config = platform.backend_config()
    platform.stop()
    waits: list[float] = []
    backend = CampusCardBackend(config, sleep=waits.append)
    with pytest.raises(BackendUnavailableError, match="failed after 3 tries"):
        backend.lookup_card("C1001")
    with pytest.raises(BackendUnavailableError):
        backend.charge(pay("tx-1", 250), "C1001")
    assert len(waits) == 4  # two retries for each call


def test_a_platform_that_dedupes_nothing_never_gets_a_consume_twice(
    platform: FakeCampusPlatform,
) -> None:
    waits: list[float] = []
    backend = CampusCardBackend(
        platform.backend_config(consume_idempotent=False), sleep=waits.append
    )
    platform.drop_replies = 1
    with pytest.raises(BackendUnavailableError):
        backend.charge(pay("tx-1", 250), "C1001")
    assert len(platform.requests_to("consume")) == 1 and waits == []


@pytest.mark.parametrize(
    ("status", "body", "problem"),
    [
        (200, b"<html>gateway says hello</html>", "not JSON"),
        (502, b"<html>Bad Gateway</html>", "HTTP 502"),
        (200, b"[1, 2]", "not an object"),
        (200, b'{"result": "ok"}', "no result code field 'code'"),
        (200, b'{"code": "0", "msg": "ok"}', "no 'balance' field"),
        (200, b'{"code": "0", "balance": "12.5"}', "'balance' is not an amount in fen"),
        (200, b'{"code": "0", "balance": 12.5}', "'balance' is not an amount in fen"),
    ],
)
def test_an_unreadable_reply_is_unavailable_and_says_what_is_wrong(
    backend: CampusCardBackend,
    platform: FakeCampusPlatform,
    status: int,
    body: bytes,
    problem: str,
) -> None:
    platform.canned_replies.append((status, body))
    with pytest.raises(BackendUnavailableError) as caught:
        backend.lookup_card("C1001")
    assert problem in str(caught.value)


def test_a_wrong_path_is_a_setup_error(
    backend: CampusCardBackend, platform: FakeCampusPlatform
) -> None:
    platform.canned_replies.append((404, b"<html>Not Found</html>"))
    with pytest.raises(BackendRequestError, match=r"HTTP 404.*check base_url and paths"):
        backend.lookup_card("C1001")


# --- config -------------------------------------------------------------------------------


def test_config_needs_exactly_one_secret_and_distinct_codes(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="exactly one of secret and secret_file"):
        make_config(secret=None)
    with pytest.raises(ValidationError, match="exactly one of secret and secret_file"):
        make_config(secret_file="key.txt")
    with pytest.raises(ValidationError, match="'2001' is in both"):
        make_config(codes={"unknown_card": ["2001"]})
    with pytest.raises(ValidationError, match="sign_suffix must contain"):
        make_config(sign_suffix="")
    with pytest.raises(ValidationError, match="Extra inputs"):
        make_config(typo_key=1)
    numeric = make_config(merchant_id=100234, codes={"success": 0})
    assert (numeric.merchant_id, numeric.codes.success) == ("100234", ["0"])
    assert SECRET not in repr(make_config())


def test_the_secret_can_live_in_a_file_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "campus.key").write_text(SECRET + "\n", encoding="utf-8")
    config = make_config(secret=None, secret_file="campus.key")
    platform = start_platform(make_config())
    try:
        backend = CampusCardBackend(
            config.model_copy(update={"base_url": platform.url}), home=tmp_path
        )
        assert backend.lookup_card("C1001") is not None
    finally:
        platform.stop()


def test_a_terminal_configured_for_the_platform_pays_through_its_outbox(
    platform: FakeCampusPlatform, tmp_path: Path
) -> None:
    """From the YAML a site writes to a paid tray: the platform is behind the outbox, and a
    consume whose answer is lost is not lost (the same order number is posted again)."""
    import yaml

    from terminal.app import build_terminal
    from terminal.backend.payments import OutboxBackend
    from terminal.config import load_config
    from terminal.payment import take_card_payment
    from tests.core.test_session import sure, tray

    backend_section = {
        "type": "campus_card",
        "base_url": platform.url,
        "merchant_id": "M100",
        "pos_id": "POS7",
        "secret": SECRET,
        "retries": 0,
        "outbox": str(tmp_path / "outbox.sqlite"),
    }
    config = {
        "backend": backend_section,
        "model": {"store": str(tmp_path / "models")},
    }
    path = tmp_path / "terminal.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    terminal = build_terminal(load_config(path))
    try:
        assert isinstance(terminal.backend, OutboxBackend)
        assert terminal.worker is not None
        terminal.worker.stop()  # drained by hand below, to see each step
        session = terminal.session
        menu_ids = [next(item.id for item in terminal.menu.items if item.tableware is None)]
        portion = terminal.menu.item(menu_ids[0]).portion_g
        tray_g = terminal.session.tray.tare_g if terminal.session.tray else 0
        session.tray_arrived()
        session.tray_settled(tray_g + portion)
        session.recognised(tray(*(sure(item_id) for item_id in menu_ids)))
        price = session.priced.total_fen  # type: ignore[union-attr]
        outcome = take_card_payment(session, terminal.backend, "C1001")
        assert outcome.receipt is not None and not outcome.receipt.offline
        assert platform.balance("C1001") == 1000 - price
        session.tray_removed()

        platform.drop_replies = 2  # the card query and the consume land, their answers do not
        session.tray_arrived()
        session.tray_settled(tray_g + portion)
        session.recognised(tray(*(sure(item_id) for item_id in menu_ids)))
        outcome = take_card_payment(session, terminal.backend, "C1001")
        assert outcome.receipt is not None and outcome.receipt.offline  # within the limit
        assert platform.balance("C1001") == 1000 - 2 * price
        assert terminal.outbox is not None and terminal.outbox.depth() == 1
        report = terminal.worker.drain_once()
        assert report.posted == [outcome.receipt.transaction_id] and report.waiting == 0
        assert platform.balance("C1001") == 1000 - 2 * price  # charged once, not twice
    finally:
        terminal.close()
