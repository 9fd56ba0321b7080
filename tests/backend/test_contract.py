"""One contract, one test suite: the embedded ledger and the reference server (through the
terminal's HTTP client, on SQLite and on PostgreSQL) must answer every case alike."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
import requests

from terminal.backend.http import HttpBackend
from terminal.backend.ledger import EmbeddedLedger
from terminal.core.menu import Menu
from terminal.core.ports import LedgerBackend, PaymentDeclinedError, RefundRequest
from terminal.core.pricing import price_tray
from terminal.core.session import PaymentRequest
from tests.server.helpers import AdminClient, pg_schema_url, serving


@dataclass
class Contract:
    """A backend under test and the administration a canteen does on it."""

    backend: LedgerBackend
    open_account: Callable[[str, int, str | None], None]
    block: Callable[[str], None]


@pytest.fixture(scope="module", params=["embedded", "server-sqlite", "server-postgresql"])
def contract(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Contract]:
    folder = tmp_path_factory.mktemp(request.param)
    if request.param == "embedded":
        ledger = EmbeddedLedger(folder / "ledger.sqlite")

        def open_embedded(account_id: str, balance: int, card_id: str | None) -> None:
            ledger.create_account(account_id, "王伟", balance)
            if card_id:
                ledger.add_card(card_id, account_id)

        yield Contract(ledger, open_embedded, lambda a: ledger.set_blocked(a, True))
        ledger.close()
        return
    with ExitStack() as stack:
        if request.param == "server-sqlite":
            db_url = f"sqlite:///{folder / 'backend.db'}"
        else:
            base = os.environ.get("TRAYSCAN_TEST_PG_URL")
            if not base:
                if os.environ.get("CI"):
                    pytest.fail("CI is set but TRAYSCAN_TEST_PG_URL is not")
                pytest.skip("TRAYSCAN_TEST_PG_URL is not set")
            db_url = stack.enter_context(pg_schema_url(base))
        server = stack.enter_context(serving(db_url, folder))
        admin = AdminClient(requests.Session(), server.url)
        signed = admin.add_terminal("t1")
        client = HttpBackend(server.url, "t1", signed.secret, retries=0)
        stack.callback(client.close)

        def open_remote(account_id: str, balance: int, card_id: str | None) -> None:
            admin.create_account(account_id, "王伟", balance)
            if card_id:
                admin.add_card(account_id, card_id)

        yield Contract(client, open_remote, lambda a: admin.block(a))


@pytest.fixture
def ids() -> Callable[[str], str]:
    """Unique ids, so that the tests of a module can share one backend."""
    run = uuid.uuid4().hex[:8]
    return lambda name: f"{name}-{run}"


def pay(menu: Menu, transaction_id: str, amount_fen: int, method: str = "card") -> PaymentRequest:
    priced = price_tray(menu, ["rice", "pork"], 750)
    return PaymentRequest(
        transaction_id, f"co-{transaction_id}", "t1", amount_fen, method, "C", priced, 1.7e9
    )


def test_lookup_by_card_and_by_account(contract: Contract, ids: Callable[[str], str]) -> None:
    contract.open_account(ids("a"), 1000, ids("card"))
    by_card = contract.backend.lookup_card(ids("card"))
    assert by_card is not None
    assert (by_card.account_id, by_card.display_name, by_card.balance_fen) == (
        ids("a"),
        "王伟",
        1000,
    )
    assert contract.backend.lookup_account(ids("a")) == by_card
    assert contract.backend.lookup_card(ids("no-such-card")) is None
    assert contract.backend.lookup_account(ids("no-such-account")) is None


def test_a_charge_is_taken_once_per_transaction_id(
    contract: Contract, ids: Callable[[str], str], menu: Menu
) -> None:
    contract.open_account(ids("a"), 1000, None)
    first = contract.backend.charge(pay(menu, ids("tx"), 750), ids("a"))
    again = contract.backend.charge(pay(menu, ids("tx"), 750), ids("a"))
    assert (first.amount_fen, first.balance_after_fen) == (750, 250)
    assert (again.transaction_id, again.amount_fen, again.balance_after_fen) == (
        ids("tx"),
        750,
        250,
    )
    record = contract.backend.transaction(ids("tx"))
    assert record is not None and (record.status, record.amount_fen) == ("charged", 750)
    with pytest.raises(PaymentDeclinedError) as reused:
        contract.backend.charge(pay(menu, ids("tx"), 100), ids("a"))
    assert reused.value.code == "conflict"
    assert contract.backend.lookup_account(ids("a")).balance_fen == 250  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("balance", "blocked", "code"),
    [(100, False, "insufficient_balance"), (5000, True, "blocked")],
)
def test_a_refused_charge_takes_nothing(
    contract: Contract,
    ids: Callable[[str], str],
    menu: Menu,
    balance: int,
    blocked: bool,
    code: str,
) -> None:
    contract.open_account(ids("a"), balance, None)
    if blocked:
        contract.block(ids("a"))
    with pytest.raises(PaymentDeclinedError) as refused:
        contract.backend.charge(pay(menu, ids("tx"), 750), ids("a"))
    assert refused.value.code == code
    assert contract.backend.transaction(ids("tx")) is None
    assert contract.backend.lookup_account(ids("a")).balance_fen == balance  # type: ignore[union-attr]


def test_void_gives_everything_back_and_a_tombstone_stops_a_late_charge(
    contract: Contract, ids: Callable[[str], str], menu: Menu
) -> None:
    contract.open_account(ids("a"), 1000, None)
    contract.backend.charge(pay(menu, ids("tx"), 600), ids("a"))
    voided = contract.backend.void(ids("tx"), "wrong tray")
    assert (voided.refunded_fen, voided.balance_after_fen) == (600, 1000)
    again = contract.backend.void(ids("tx"), "again")  # idempotent: the first answer, no more
    assert (again.refunded_fen, again.balance_after_fen) == (600, 1000)
    assert contract.backend.transaction(ids("tx")).status == "voided"  # type: ignore[union-attr]

    tombstone = contract.backend.void(ids("never-posted"), "terminal crashed")
    assert tombstone.refunded_fen == 0
    with pytest.raises(PaymentDeclinedError) as late:
        contract.backend.charge(pay(menu, ids("never-posted"), 300), ids("a"))
    assert late.value.code == "voided"
    assert contract.backend.lookup_account(ids("a")).balance_fen == 1000  # type: ignore[union-attr]


def test_refunds_are_idempotent_and_never_exceed_the_charge(
    contract: Contract, ids: Callable[[str], str], menu: Menu
) -> None:
    contract.open_account(ids("a"), 1000, None)
    contract.backend.charge(pay(menu, ids("tx"), 800), ids("a"))
    refund = RefundRequest(ids("rf1"), ids("tx"), 300, "cold soup", "cashier-1")
    assert contract.backend.refund(refund).balance_after_fen == 500
    assert contract.backend.refund(refund).balance_after_fen == 500  # the same refund: once
    with pytest.raises(PaymentDeclinedError) as exceeds:
        contract.backend.refund(RefundRequest(ids("rf2"), ids("tx"), 600, "too much", "c1"))
    assert exceeds.value.code == "refund_exceeds"
    with pytest.raises(PaymentDeclinedError) as unknown:
        contract.backend.refund(RefundRequest(ids("rf3"), ids("nope"), 100, "?", "c1"))
    assert unknown.value.code == "unknown_transaction"
    record = contract.backend.transaction(ids("tx"))
    assert record is not None and record.refunded_fen == 300
    assert contract.backend.lookup_account(ids("a")).balance_fen == 500  # type: ignore[union-attr]


def test_cash_moves_no_balance(contract: Contract, ids: Callable[[str], str], menu: Menu) -> None:
    receipt = contract.backend.charge(pay(menu, ids("tx"), 750, method="cash"), "")
    assert (receipt.method, receipt.amount_fen, receipt.balance_after_fen) == ("cash", 750, None)
    record = contract.backend.transaction(ids("tx"))
    assert record is not None and record.account_id is None and record.status == "charged"
