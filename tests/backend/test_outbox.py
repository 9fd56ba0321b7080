"""The outbox and offline mode: a payment is never lost, never taken twice, and an outage is
survived within the offline limit (against a fake remote backend that fails like a network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from terminal.backend.fakes import FakeRemoteLedger
from terminal.backend.outbox import Outbox
from terminal.backend.payments import OfflinePolicy, OutboxBackend, OutboxWorker
from terminal.core.menu import Menu
from terminal.core.ports import PaymentDeclinedError, RefundRequest
from terminal.core.pricing import price_tray
from terminal.core.session import CheckoutState, PaymentRequest
from terminal.payment import take_card_payment
from tests.core.test_session import sure, tray

NOW = 1_790_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def request(menu: Menu, transaction_id: str, amount_fen: int = 750) -> PaymentRequest:
    """A card payment of ``amount_fen`` (the lines are those of a rice-and-pork tray)."""
    priced = price_tray(menu, ["rice", "pork"], 750)
    return PaymentRequest(
        transaction_id, f"co-{transaction_id}", "t1", amount_fen, "card", "C1", priced, NOW
    )


@pytest.fixture
def remote() -> FakeRemoteLedger:
    remote = FakeRemoteLedger()
    remote.create_account("A1", "王伟", 2000)
    remote.add_card("C1", "A1")
    return remote


@pytest.fixture
def parts(
    remote: FakeRemoteLedger, tmp_path: Path
) -> tuple[OutboxBackend, OutboxWorker, Outbox, Clock]:
    clock = Clock()
    outbox = Outbox(tmp_path / "outbox.sqlite", clock=clock)
    backend = OutboxBackend(
        remote, outbox, policy=OfflinePolicy(per_account_daily_fen=1500), clock=clock
    )
    worker = OutboxWorker(outbox, remote, min_backoff_s=0, sync=backend.sync_accounts)
    return backend, worker, outbox, clock


def test_online_payment_is_posted_and_recorded_before_the_receipt(
    parts: tuple[OutboxBackend, OutboxWorker, Outbox, Clock], remote: FakeRemoteLedger, menu: Menu
) -> None:
    backend, _, outbox, _ = parts
    account = backend.lookup_card("C1")
    assert account is not None and account.balance_fen == 2000
    receipt = backend.charge(request(menu, "tx-1"), "A1")
    assert (receipt.amount_fen, receipt.balance_after_fen, receipt.offline) == (750, 1250, False)
    entry = outbox.entry("tx-1")
    assert entry is not None and entry.status == "posted"
    assert remote.lookup_account("A1").balance_fen == 1250  # type: ignore[union-attr]
    assert outbox.depth() == 0


def test_declined_online_takes_nothing(
    parts: tuple[OutboxBackend, OutboxWorker, Outbox, Clock], remote: FakeRemoteLedger, menu: Menu
) -> None:
    backend, _, outbox, _ = parts
    remote.top_up("A1", 1)  # 2001
    backend.charge(request(menu, "tx-1"), "A1")
    backend.charge(request(menu, "tx-2"), "A1")
    with pytest.raises(PaymentDeclinedError) as caught:
        backend.charge(request(menu, "tx-3"), "A1")
    assert caught.value.code == "insufficient_balance"
    assert outbox.entry("tx-3").status == "declined"  # type: ignore[union-attr]
    assert remote.transaction("tx-3") is None
    assert remote.lookup_account("A1").balance_fen == 501  # type: ignore[union-attr]


def test_outage_within_the_limit_pays_offline_and_drains_when_back(
    parts: tuple[OutboxBackend, OutboxWorker, Outbox, Clock], remote: FakeRemoteLedger, menu: Menu
) -> None:
    backend, worker, outbox, _ = parts
    worker.drain_once()
    backend.sync_accounts()
    remote.down = True
    account = backend.lookup_card("C1")
    assert account is not None and account.balance_fen == 2000
    receipt = backend.charge(request(menu, "tx-1"), "A1")
    assert receipt.offline and receipt.balance_after_fen == 1250
    # The next lookup already shows what was spent offline.
    assert backend.lookup_card("C1").balance_fen == 1250  # type: ignore[union-attr]
    assert outbox.depth() == 1 and not backend.reachable
    report = worker.drain_once()
    assert report.unreachable and report.posted == []
    remote.down = False
    outbox_entry = outbox.entry("tx-1")
    assert outbox_entry is not None and outbox_entry.attempts == 1
    report = worker.drain_once()
    assert report.posted == ["tx-1"] and report.waiting == 0
    record = remote.transaction("tx-1")
    assert record is not None and record.offline and record.amount_fen == 750
    assert remote.lookup_account("A1").balance_fen == 1250  # type: ignore[union-attr]


def test_over_the_offline_limit_is_refused_with_a_clear_message(
    parts: tuple[OutboxBackend, OutboxWorker, Outbox, Clock], remote: FakeRemoteLedger, menu: Menu
) -> None:
    backend, worker, _, _ = parts
    backend.lookup_card("C1")
    remote.down = True
    backend.charge(request(menu, "tx-1"), "A1")  # 750 of the 1500 offline limit
    with pytest.raises(PaymentDeclinedError) as caught:
        backend.charge(request(menu, "tx-2", 1250), "A1")  # 1250 more
    assert caught.value.code == "offline_limit"
    assert "¥15.00 per card per day" in caught.value.reason
    assert "¥7.50 is used" in caught.value.reason
    remote.down = False
    report = worker.drain_once()
    assert report.posted == ["tx-1"] and report.cancelled == ["tx-2"]
    # The refused id is a tombstone now: a late copy of its post cannot charge.
    with pytest.raises(PaymentDeclinedError) as late:
        remote.charge(request(menu, "tx-2", 1250), "A1")
    assert late.value.code == "voided"
    assert remote.lookup_account("A1").balance_fen == 1250  # type: ignore[union-attr]


def test_a_lost_answer_is_charged_once(
    parts: tuple[OutboxBackend, OutboxWorker, Outbox, Clock], remote: FakeRemoteLedger, menu: Menu
) -> None:
    backend, worker, _, _ = parts
    backend.lookup_card("C1")
    remote.lose_answers = True
    receipt = backend.charge(request(menu, "tx-1"), "A1")  # landed, answer lost: offline
    assert receipt.offline
    remote.lose_answers = False
    assert worker.drain_once().posted == ["tx-1"]
    assert remote.transaction_count() == 1
    assert remote.lookup_account("A1").balance_fen == 1250  # type: ignore[union-attr]


def test_a_lost_answer_refused_offline_is_given_back(
    parts: tuple[OutboxBackend, OutboxWorker, Outbox, Clock], remote: FakeRemoteLedger, menu: Menu
) -> None:
    backend, worker, _, _ = parts
    backend.policy = OfflinePolicy(enabled=False)
    backend.lookup_card("C1")
    remote.lose_answers = True
    with pytest.raises(PaymentDeclinedError) as caught:
        backend.charge(request(menu, "tx-1"), "A1")
    assert caught.value.code == "offline_disabled"
    assert remote.lookup_account("A1").balance_fen == 1250  # type: ignore[union-attr]
    remote.lose_answers = False
    assert worker.drain_once().cancelled == ["tx-1"]
    assert remote.lookup_account("A1").balance_fen == 2000  # type: ignore[union-attr]
    assert remote.transaction("tx-1").status == "voided"  # type: ignore[union-attr]


def test_a_payment_interrupted_by_a_crash_is_voided_after_restart(
    remote: FakeRemoteLedger, menu: Menu, tmp_path: Path
) -> None:
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path)
    req = request(menu, "tx-1")
    from terminal.backend.wire import transaction_body

    # What the process left behind when killed between the post and the answer.
    outbox.begin(transaction_body(req, "A1"), card_id="C1")
    remote.charge(req, "A1")
    outbox.close()
    restarted = Outbox(path)
    assert restarted.recover() == 1
    worker = OutboxWorker(restarted, remote, min_backoff_s=0)
    assert worker.drain_once().cancelled == ["tx-1"]
    assert remote.lookup_account("A1").balance_fen == 2000  # type: ignore[union-attr]


def test_an_offline_payment_refused_later_is_flagged_for_the_cashier(
    parts: tuple[OutboxBackend, OutboxWorker, Outbox, Clock], remote: FakeRemoteLedger, menu: Menu
) -> None:
    backend, _, outbox, _ = parts
    flagged: list[str] = []
    worker = OutboxWorker(
        outbox, remote, min_backoff_s=0, on_flagged=lambda e: flagged.append(e.entry_id)
    )
    backend.lookup_card("C1")
    remote.down = True
    backend.charge(request(menu, "tx-1"), "A1")
    remote.down = False
    remote.charge(request(menu, "elsewhere-1", 1250), "A1")  # 1250 elsewhere
    remote.charge(request(menu, "elsewhere-2", 500), "A1")  # 500 more: 250 left
    report = worker.drain_once()
    assert report.flagged == ["tx-1"] and flagged == ["tx-1"]
    entry = outbox.flagged()[0]
    assert entry.status == "rejected" and "insufficient_balance" in (entry.last_error or "")
    outbox.acknowledge("tx-1", "cashier-7")
    assert outbox.flagged() == []
    assert outbox.entry("tx-1").status == "rejected"  # type: ignore[union-attr]


def test_offline_limit_is_per_day_and_a_stale_cache_is_not_trusted(
    parts: tuple[OutboxBackend, OutboxWorker, Outbox, Clock], remote: FakeRemoteLedger, menu: Menu
) -> None:
    backend, _, _, clock = parts
    backend.lookup_card("C1")
    remote.down = True
    backend.charge(request(menu, "tx-1"), "A1")
    backend.charge(request(menu, "tx-2"), "A1")  # 1500: the day's limit is used
    clock.now += 24 * 3600
    backend.charge(request(menu, "tx-3", 150), "A1")  # a new day
    clock.now += 4 * 24 * 3600
    with pytest.raises(PaymentDeclinedError) as caught:
        backend.charge(request(menu, "tx-4", 150), "A1")
    assert caught.value.code == "offline_stale"


def test_unknown_card_while_offline_says_the_system_is_offline(
    parts: tuple[OutboxBackend, OutboxWorker, Outbox, Clock], remote: FakeRemoteLedger
) -> None:
    backend, _, _, _ = parts
    remote.down = True
    with pytest.raises(PaymentDeclinedError, match="cannot be reached"):
        backend.lookup_card("C1")


def test_refund_while_offline_is_queued_and_posted_once(
    parts: tuple[OutboxBackend, OutboxWorker, Outbox, Clock], remote: FakeRemoteLedger, menu: Menu
) -> None:
    backend, worker, _, _ = parts
    backend.charge(request(menu, "tx-1"), "A1")
    remote.down = True
    refund = RefundRequest("rf-1", "tx-1", 250, "cold soup", "cashier-7")
    assert backend.refund(refund).balance_after_fen is None
    remote.down = False
    assert worker.drain_once().posted == ["rf-1"]
    assert backend.refund(refund).balance_after_fen == 1500  # the same refund id: once
    assert remote.lookup_account("A1").balance_fen == 1500  # type: ignore[union-attr]


def test_checkout_paid_offline_is_posted_when_the_worker_delivers_it(
    parts: tuple[OutboxBackend, OutboxWorker, Outbox, Clock], remote: FakeRemoteLedger, menu: Menu
) -> None:
    from terminal.core.session import CheckoutSession

    backend, _, outbox, _ = parts
    session = CheckoutSession(menu, "t1")
    worker = OutboxWorker(outbox, remote, min_backoff_s=0, on_posted=session.posted)
    backend.lookup_card("C1")
    remote.down = True
    session.tray_arrived()
    session.tray_settled(750)
    session.recognised(tray(sure("rice"), sure("pork")))
    outcome = take_card_payment(session, backend, "C1")
    assert outcome.receipt is not None and outcome.receipt.offline
    assert session.state is CheckoutState.PAID
    remote.down = False
    worker.drain_once()
    assert session.state is CheckoutState.POSTED


def test_a_face_account_pays_like_a_card_offline_limit_included(
    parts: tuple[OutboxBackend, OutboxWorker, Outbox, Clock], remote: FakeRemoteLedger, menu: Menu
) -> None:
    from terminal.core.session import CheckoutSession
    from terminal.payment import take_face_payment

    backend, _, _, _ = parts
    session = CheckoutSession(menu, "t1")
    assert backend.lookup_account("A1") is not None  # seen online once: cached
    remote.down = True
    declined = []
    for _ in range(3):
        session.tray_arrived()
        session.tray_settled(750)
        session.recognised(tray(sure("rice"), sure("pork")))
        outcome = take_face_payment(session, backend, "A1")
        if outcome.receipt is None:
            declined.append(outcome.declined)
            session.void("declined")
        else:
            assert outcome.receipt.offline and outcome.receipt.method == "face"
        session.tray_removed()
    assert len(declined) == 1 and "limited to ¥15.00 per card per day" in str(declined[0])
