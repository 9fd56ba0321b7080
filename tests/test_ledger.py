"""The embedded ledger charges once per transaction id and never overdraws."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from terminal.backend.ledger import EmbeddedLedger
from terminal.core.menu import Menu
from terminal.core.ports import PaymentDeclinedError
from terminal.core.pricing import price_tray
from terminal.core.session import PaymentRequest


def request(menu: Menu, transaction_id: str, gross_g: int = 750) -> PaymentRequest:
    priced = price_tray(menu, ["rice", "pork"], gross_g)
    return PaymentRequest(
        transaction_id, "checkout-1", "t1", priced.total_fen, "card", "C1", priced, 1.0
    )


@pytest.fixture
def ledger(tmp_path: Path) -> EmbeddedLedger:
    ledger = EmbeddedLedger(tmp_path / "ledger.sqlite")
    ledger.create_account("A1", "王伟", 1000)
    ledger.add_card("C1", "A1")
    return ledger


def test_charge_is_durable_and_idempotent(
    ledger: EmbeddedLedger, menu: Menu, tmp_path: Path
) -> None:
    first = ledger.charge(request(menu, "tx-1"), "A1")
    again = ledger.charge(request(menu, "tx-1"), "A1")
    assert first.amount_fen == 750 and first.balance_after_fen == 250
    assert again == first
    assert ledger.account("A1").balance_fen == 250  # type: ignore[union-attr]
    ledger.close()
    # What a power cut leaves behind: a fresh connection sees the committed charge.
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        assert db.execute("SELECT COUNT(*), SUM(amount_fen) FROM transactions").fetchone() == (
            1,
            750,
        )
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_insufficient_balance_is_declined_and_changes_nothing(
    ledger: EmbeddedLedger, menu: Menu
) -> None:
    ledger.charge(request(menu, "tx-1"), "A1")
    with pytest.raises(PaymentDeclinedError) as caught:
        ledger.charge(request(menu, "tx-2"), "A1")
    assert caught.value.code == "insufficient_balance"
    assert ledger.account("A1").balance_fen == 250  # type: ignore[union-attr]
    assert ledger.transaction("tx-2") is None
    assert ledger.transaction_count() == 1


def test_unknown_card_and_account(ledger: EmbeddedLedger, menu: Menu) -> None:
    assert ledger.lookup_card("NOPE") is None
    assert ledger.lookup_card("C1").account_id == "A1"  # type: ignore[union-attr]
    with pytest.raises(PaymentDeclinedError, match="unknown account"):
        ledger.charge(request(menu, "tx-9"), "ZZ")


def test_top_up(ledger: EmbeddedLedger) -> None:
    assert ledger.top_up("A1", 500) == 1500
    with pytest.raises(ValueError):
        ledger.top_up("A1", 0)
    with pytest.raises(KeyError):
        ledger.top_up("ZZ", 100)
