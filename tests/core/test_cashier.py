"""Cashier operations: what a cashier does to a tray, to money and to their PIN, all audited."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from terminal.backend.ledger import EmbeddedLedger
from terminal.core.audit import AuditEntry, MemoryAuditLog
from terminal.core.cashier import (
    CashierDesk,
    CashierExistsError,
    CashierLockedError,
    CashierRecord,
    MemoryCashierStore,
    PinFormatError,
    PinPolicy,
    PinRejectedError,
    Role,
    RoleRequiredError,
    UnknownCashierError,
    after_failure,
    after_success,
    attempts_left,
    check_pin,
    enrol_cashier,
    hash_pin,
    is_locked,
    unlock_cashier,
    validate_pin,
)
from terminal.core.holds import HoldReason
from terminal.core.menu import Menu
from terminal.core.ports import BackendUnavailableError, PaymentDeclinedError
from terminal.core.session import (
    CheckoutEvent,
    CheckoutSession,
    CheckoutState,
    IllegalTransitionError,
    PaymentRequested,
    TrayRemoved,
)
from terminal.menu_file import load_menu
from terminal.payment import take_card_payment

from ..conftest import DEMO_MENU
from .test_session import sure, tray, unknown, unsure

S = CheckoutState
PIN = "2468"
SUPERVISOR_PIN = "97531"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Desk:
    """A terminal with a real session, an in-memory ledger and a desk, and what the diner saw."""

    def __init__(self, menu: Menu, backend: EmbeddedLedger | None = None, **desk: object) -> None:
        ids = (f"id{n}" for n in itertools.count(1))
        self.clock = Clock()
        self.session = CheckoutSession(menu, "t1", new_id=lambda: next(ids), clock=self.clock)
        self.ledger = backend or EmbeddedLedger(":memory:")
        self.ledger.create_account("A1", "王伟", 1000)
        self.ledger.add_card("C1", "A1")
        self.store = MemoryCashierStore()
        self.audit = MemoryAuditLog(terminal_id="t1", clock=self.clock)
        enrol_cashier(self.store, "c1", "李娜", PIN)
        enrol_cashier(self.store, "s1", "张强", SUPERVISOR_PIN, Role.SUPERVISOR)
        enrol_cashier(self.store, "tech", "赵工", "1111", Role.TECHNICIAN)
        self.desk = CashierDesk(
            self.session,
            self.ledger,
            self.store,
            self.audit,
            clock=self.clock,
            **desk,  # type: ignore[arg-type]
        )
        self.events: list[CheckoutEvent] = []
        self.session.subscribe(self.events.append)

    def diner_total(self) -> int:
        """The total on the diner's screen: the last tray offered for payment."""
        offered = [e for e in self.events if isinstance(e, PaymentRequested)]
        assert offered, "the diner was never asked to pay"
        return offered[-1].priced.total_fen

    def actions(self) -> list[str]:
        return [entry.action for entry in self.audit.entries()]

    def last(self, action: str) -> AuditEntry:
        return [entry for entry in self.audit.entries() if entry.action == action][-1]

    def balance(self) -> int:
        account = self.ledger.account("A1")
        assert account is not None
        return account.balance_fen

    def pay_by_card(self) -> str:
        outcome = take_card_payment(self.session, self.ledger, "C1")
        assert outcome.receipt is not None, outcome.declined
        return outcome.receipt.transaction_id


def held_unsure(desk: Desk) -> None:
    """Rice 200 g and 150 g of something between pork and greens, on a 400 g tray."""
    desk.session.tray_arrived()
    desk.session.tray_settled(750)
    desk.session.recognised(tray(sure("rice"), unsure("pork", "greens")))
    assert desk.session.state is S.HELD


def awaiting_payment(desk: Desk) -> None:
    desk.session.tray_arrived()
    desk.session.tray_settled(750)  # rice 150 + pork 150 g at 400/100 g = 750
    desk.session.recognised(tray(sure("rice"), sure("pork")))
    assert desk.session.state is S.AWAITING_PAYMENT


@pytest.fixture
def desk(menu: Menu) -> Desk:
    return Desk(menu)


# --- PIN rules ------------------------------------------------------------------------------


@pytest.mark.parametrize("pin", ["1234", "12345678", "00000"])
def test_pins_of_4_to_8_digits_are_accepted(pin: str) -> None:
    assert validate_pin(pin) == pin


@pytest.mark.parametrize("pin", ["", "123", "123456789", "12a4", " 1234", "1234\n", "١٢٣٤"])
def test_other_pins_are_refused(pin: str) -> None:
    with pytest.raises(PinFormatError):
        validate_pin(pin)


def test_a_pin_is_stored_salted_and_self_describing() -> None:
    first, second = hash_pin("2468"), hash_pin("2468")
    assert first != second  # a fresh salt each time
    assert first.startswith("scrypt$n=16384,r=8,p=1$") and "2468" not in first
    assert check_pin("2468", first) and check_pin("2468", second)
    assert not check_pin("2469", first) and not check_pin("", first)
    assert hash_pin("2468", salt=b"0" * 16) == hash_pin("2468", salt=b"0" * 16)
    cheap = hash_pin("2468", n=1024)
    assert check_pin("2468", cheap)  # old parameters keep working after the cost changes
    with pytest.raises(ValueError, match="damaged"):
        check_pin("2468", "scrypt$garbage")


def test_lockout_rules_over_a_record() -> None:
    policy = PinPolicy(max_failures=3, lockout_s=60)
    record = CashierRecord("c1", "李娜", "unused")
    record = after_failure(record, policy, 100.0)
    record = after_failure(record, policy, 101.0)
    assert not is_locked(record, 101.0) and attempts_left(record, policy, 101.0) == 1
    record = after_failure(record, policy, 102.0)
    assert record.locked_until == 162.0
    assert is_locked(record, 161.9) and attempts_left(record, policy, 161.9) == 0
    assert not is_locked(record, 162.0) and attempts_left(record, policy, 162.0) == 3
    # once the lock has run out, one more wrong PIN starts a fresh count
    again = after_failure(record, policy, 170.0)
    assert again.failures == 1 and again.locked_until is None
    assert after_success(record) == replace(record, failures=0, locked_until=None)


# --- the tray -------------------------------------------------------------------------------


def test_cashier_fixes_a_held_tray_and_the_diner_sees_the_total_follow(desk: Desk) -> None:
    held_unsure(desk)
    assert desk.session.priced is not None and desk.session.priced.total_fen == 750

    # The unsure dish is not pork: take it off, put greens on, and give a discount on them.
    priced = desk.desk.remove_dish("c1", PIN, 1, "not pork")
    assert [line.item_id for line in priced.lines] == ["rice"]
    assert desk.session.state is S.AWAITING_PAYMENT and desk.diner_total() == 150
    priced = desk.desk.add_dish("c1", PIN, "greens", "greens on the tray")
    assert [line.item_id for line in priced.lines] == ["rice", "greens"]
    assert desk.diner_total() == 150 + 270  # 150 g of greens at 180 fen / 100 g
    priced = desk.desk.override_price("c1", PIN, 1, 200, "greens were cold")
    assert desk.diner_total() == 350 and priced.lines[1].override is not None

    assert desk.actions() == ["dish_removed", "dish_added", "price_override"]
    removed = desk.last("dish_removed").details
    assert removed["removed"] == ["pork"] and removed["added"] == []
    assert removed["total_before_fen"] == 750 and removed["total_after_fen"] == 150
    assert removed["state_before"] == "held" and removed["state_after"] == "awaiting_payment"
    assert desk.last("dish_added").details["added"] == ["greens"]
    override = desk.last("price_override")
    assert override.actor == "c1"
    assert override.details["old_price_fen"] == 270 and override.details["new_price_fen"] == 200
    assert override.details["reason"] == "greens were cold"
    assert override.details["total_after_fen"] == 350
    assert desk.audit.verify() == []


def test_an_override_follows_its_dish_when_a_line_above_is_removed(desk: Desk) -> None:
    awaiting_payment(desk)
    desk.desk.override_price("c1", PIN, 1, 500, "regular's price")
    priced = desk.desk.remove_dish("c1", PIN, 0, "rice was not taken")
    assert [line.item_id for line in priced.lines] == ["pork"]
    assert priced.lines[0].override is not None and priced.total_fen == 500
    priced = desk.desk.add_dish("c1", PIN, "rice", "took rice after all")
    assert priced.lines[0].price_fen == 500 and priced.total_fen == 650


def test_resolve_confirms_the_tray_with_overrides(desk: Desk, menu: Menu) -> None:
    desk.session.tray_arrived()
    desk.session.tray_settled(400)  # the scale saw no food
    desk.session.recognised(tray(sure("pork")))
    assert [h.reason for h in desk.session.holds] == [HoldReason.NO_WEIGHT]
    priced = desk.desk.resolve("c1", PIN, ["pork"], {0: (500, "scale fault")}, "weighed by hand")
    assert desk.session.state is S.AWAITING_PAYMENT and desk.diner_total() == 500
    details = desk.last("tray_resolved").details
    assert details["overrides"] == [
        {
            "line": 0,
            "item_id": "pork",
            "price_fen": 500,
            "reason": "scale fault",
            "cashier_id": "c1",
        }
    ]
    assert details["reason"] == "weighed by hand"
    assert priced.lines[0].override is not None


def test_an_unknown_dish_is_named_by_the_cashier_on_the_demo_menu() -> None:
    menu = load_menu(DEMO_MENU)
    desk = Desk(menu)
    tomato, beef = menu.item("ca_chua"), menu.item("bo_xao")
    tray_tare = menu.default_tray()
    assert tray_tare is not None
    desk.session.tray_arrived()
    desk.session.tray_settled(tray_tare.tare_g + tomato.portion_g + 100)
    desk.session.recognised(tray(sure("ca_chua"), unknown()))
    assert desk.session.state is S.HELD
    priced = desk.desk.add_dish("c1", PIN, "bo_xao", "stir-fried beef, not recognised")
    assert priced.total_fen == tomato.price_fen + beef.price_fen  # 100 g of beef
    assert desk.diner_total() == priced.total_fen
    transaction_id = desk.pay_by_card()
    assert desk.balance() == 1000 - priced.total_fen
    desk.desk.refund("c1", PIN, transaction_id, beef.price_fen, "beef was cold")
    assert desk.balance() == 1000 - tomato.price_fen


def test_bad_cashier_input_changes_nothing_and_logs_nothing(desk: Desk) -> None:
    awaiting_payment(desk)
    with pytest.raises(ValueError, match="reason"):
        desk.desk.override_price("c1", PIN, 0, 100, "  ")
    with pytest.raises(ValueError, match="negative"):
        desk.desk.override_price("c1", PIN, 0, -1, "refund")
    with pytest.raises(ValueError, match="whole number of fen"):
        desk.desk.override_price("c1", PIN, 0, 1.5, "half")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reason"):
        desk.desk.resolve("c1", PIN, ["rice"], {0: (100, "")})
    with pytest.raises(IndexError):
        desk.desk.override_price("c1", PIN, 7, 100, "no such line")
    assert desk.session.priced is not None and desk.session.priced.total_fen == 750
    assert desk.actions() == []


# --- money ----------------------------------------------------------------------------------


def test_void_before_payment_charges_nothing(desk: Desk) -> None:
    held_unsure(desk)
    desk.desk.void("c1", PIN, "diner changed their mind")
    assert desk.session.state is S.VOIDED
    desk.session.tray_removed()
    removed = desk.events[-1]
    assert isinstance(removed, TrayRemoved) and not removed.charged
    assert desk.ledger.transaction_count() == 0 and desk.balance() == 1000
    details = desk.last("checkout_voided").details
    assert details["reason"] == "diner changed their mind"
    assert details["total_fen"] == 750 and details["items"] == ["rice", "pork"]
    assert details["state_before"] == "held" and details["holds"] == ["unsure_dish"]


def test_void_after_payment_is_refused_refund_instead(desk: Desk) -> None:
    awaiting_payment(desk)
    desk.pay_by_card()
    with pytest.raises(IllegalTransitionError):
        desk.desk.void("c1", PIN, "too late")
    assert desk.balance() == 250


def test_refund_after_a_card_payment_gives_the_balance_back_once(desk: Desk) -> None:
    awaiting_payment(desk)
    transaction_id = desk.pay_by_card()
    assert desk.balance() == 250
    refund_id = desk.desk.new_refund_id()
    receipt = desk.desk.refund("c1", PIN, transaction_id, 400, "pork was cold", refund_id=refund_id)
    assert receipt.balance_after_fen == 650 and desk.balance() == 650
    # the answer was lost and the cashier presses again: the same refund, not a second one
    again = desk.desk.refund("c1", PIN, transaction_id, 400, "pork was cold", refund_id=refund_id)
    assert again == receipt and desk.balance() == 650
    record = desk.ledger.transaction(transaction_id)
    assert record is not None and record.refunded_fen == 400
    details = desk.last("refund").details
    assert details == {
        "transaction_id": transaction_id,
        "refund_id": refund_id,
        "amount_fen": 400,
        "reason": "pork was cold",
        "balance_after_fen": 650,
    }
    with pytest.raises(PaymentDeclinedError) as refused:
        desk.desk.refund("c1", PIN, transaction_id, 400, "more than is left")
    assert refused.value.code == "refund_exceeds" and desk.balance() == 650
    assert desk.last("refund_declined").details["code"] == "refund_exceeds"


def test_a_large_refund_needs_a_supervisor(menu: Menu) -> None:
    desk = Desk(menu, refund_supervisor_above_fen=500)
    awaiting_payment(desk)
    transaction_id = desk.pay_by_card()
    with pytest.raises(RoleRequiredError, match="supervisor"):
        desk.desk.refund("c1", PIN, transaction_id, 750, "wrong tray")
    assert desk.balance() == 250
    assert desk.last("refund_refused").details["why"] == "supervisor_required"
    desk.desk.refund("s1", SUPERVISOR_PIN, transaction_id, 750, "wrong tray")
    assert desk.balance() == 1000
    assert desk.last("refund").actor == "s1"


def test_cash_tender_records_the_payment_and_moves_no_balance(desk: Desk) -> None:
    awaiting_payment(desk)
    receipt = desk.desk.take_other_tender("c1", PIN, "cash", "diner forgot the card")
    assert desk.session.state is S.POSTED
    record = desk.ledger.transaction(receipt.transaction_id)
    assert record is not None and record.method == "cash" and record.amount_fen == 750
    assert record.account_id is None and desk.balance() == 1000
    details = desk.last("other_tender").details
    assert details["method"] == "cash" and details["amount_fen"] == 750
    assert details["transaction_id"] == receipt.transaction_id
    with pytest.raises(ValueError, match="cash"):
        desk.desk.take_other_tender("c1", PIN, "card", "")


class DownLedger(EmbeddedLedger):
    def charge(self, request: object, account_id: str) -> object:  # type: ignore[override]
        raise BackendUnavailableError("backend timed out")


def test_a_tender_the_backend_did_not_take_leaves_the_tray_payable(menu: Menu) -> None:
    desk = Desk(menu, backend=DownLedger(":memory:"))
    awaiting_payment(desk)
    with pytest.raises(BackendUnavailableError):
        desk.desk.take_other_tender("c1", PIN, "cash", "")
    assert desk.session.state is S.AWAITING_PAYMENT
    assert desk.last("tender_failed").details["why"] == "backend timed out"


# --- PINs at the desk -----------------------------------------------------------------------


def test_wrong_pins_lock_the_cashier_until_the_clock_passes(desk: Desk) -> None:
    held_unsure(desk)

    def void(pin: str) -> None:
        desk.desk.void("c1", pin, "diner left")

    for left in (4, 3, 2, 1):
        with pytest.raises(PinRejectedError) as rejected:
            void("1357")
        assert rejected.value.attempts_left == left
    with pytest.raises(CashierLockedError) as locked:
        void("1357")
    assert locked.value.locked_until == desk.clock.now + 300
    desk.clock.now += 299
    with pytest.raises(CashierLockedError):
        void(PIN)  # the right PIN does not help while locked
    assert desk.session.state is S.HELD  # nothing was voided
    desk.clock.now += 1
    void(PIN)
    assert desk.session.state is S.VOIDED
    record = desk.store.get("c1")
    assert record is not None and record.failures == 0 and record.locked_until is None
    assert desk.actions() == [
        "pin_rejected",
        "pin_rejected",
        "pin_rejected",
        "pin_rejected",
        "cashier_locked",
        "locked_out",
        "checkout_voided",
    ]
    assert desk.audit.entries()[3].details["attempts_left"] == 1
    assert desk.audit.entries()[0].details["operation"] == "void"


def test_a_right_pin_resets_the_count(desk: Desk) -> None:
    awaiting_payment(desk)
    for _ in range(3):
        with pytest.raises(PinRejectedError):
            desk.desk.login("c1", "0000")
    desk.desk.login("c1", PIN)
    with pytest.raises(PinRejectedError) as rejected:
        desk.desk.login("c1", "0000")
    assert rejected.value.attempts_left == 4


def test_unknown_cashiers_and_technicians_cannot_act(desk: Desk) -> None:
    held_unsure(desk)
    with pytest.raises(UnknownCashierError):
        desk.desk.void("nobody", PIN, "x")
    with pytest.raises(RoleRequiredError):
        desk.desk.void("tech", "1111", "x")
    assert desk.session.state is S.HELD
    assert desk.actions() == ["pin_rejected", "role_refused"]
    assert desk.audit.entries()[0].details["why"] == "unknown_cashier"


def test_a_technician_unlocks_a_locked_cashier(desk: Desk) -> None:
    for _ in range(4):
        with pytest.raises(PinRejectedError):
            desk.desk.login("c1", "0000")
    with pytest.raises(CashierLockedError):
        desk.desk.login("c1", "0000")
    unlock_cashier(desk.store, "c1", audit=desk.audit)
    assert desk.desk.login("c1", PIN).cashier_id == "c1"
    assert desk.last("cashier_unlocked").actor == "technician"


def test_change_pin(desk: Desk) -> None:
    with pytest.raises(PinRejectedError):
        desk.desk.change_pin("c1", "0000", "13579")
    with pytest.raises(PinFormatError):
        desk.desk.change_pin("c1", PIN, "12")
    desk.desk.change_pin("c1", PIN, "13579")
    assert desk.desk.login("c1", "13579").failures == 0
    with pytest.raises(PinRejectedError):
        desk.desk.login("c1", PIN)
    assert "pin_changed" in desk.actions()
    assert all("13579" not in str(entry.details) for entry in desk.audit.entries())


def test_enrolment_refuses_a_taken_id_and_bad_input() -> None:
    store = MemoryCashierStore()
    audit = MemoryAuditLog()
    enrol_cashier(store, "c1", "李娜", PIN, audit=audit)
    with pytest.raises(CashierExistsError):
        enrol_cashier(store, "c1", "someone else", "1234")
    enrol_cashier(store, "c1", "李娜", "8642", "supervisor", replace_existing=True)
    record = store.get("c1")
    assert record is not None and record.role is Role.SUPERVISOR
    assert check_pin("8642", record.pin_hash)
    with pytest.raises(ValueError):
        enrol_cashier(store, "has space", "x", "1234")
    with pytest.raises(ValueError):
        enrol_cashier(store, "c2", "x", "1234", "manager")
    with pytest.raises(PinFormatError):
        enrol_cashier(store, "c2", "x", "12")
    assert [entry.details["cashier_id"] for entry in audit.entries()] == ["c1"]
    assert PIN not in str(audit.entries()[0].details)
