from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from terminal.core.holds import HoldReason
from terminal.core.menu import Menu
from terminal.core.pricing import PriceOverride
from terminal.core.session import (
    ALLOWED,
    CheckoutEvent,
    CheckoutSession,
    CheckoutState,
    CheckoutVoided,
    IllegalTransitionError,
    Paid,
    PaymentDeclined,
    PaymentReceipt,
    PaymentRequested,
    PaymentStarted,
    Posted,
    StateChanged,
    TrayArrived,
    TrayHeld,
    TrayRemoved,
    TraySettled,
)
from vision.types import Candidate, DishRecognition, DishStatus, TrayRecognition

S = CheckoutState
BOX = (0.0, 0.0, 10.0, 10.0)


def sure(dish_id: str) -> DishRecognition:
    return DishRecognition(BOX, DishStatus.SURE, dish_id, 0.95, (Candidate(dish_id, 0.95),))


def unsure(first: str, second: str) -> DishRecognition:
    return DishRecognition(
        BOX, DishStatus.UNSURE, first, 0.71, (Candidate(first, 0.71), Candidate(second, 0.69))
    )


def unknown() -> DishRecognition:
    return DishRecognition(BOX, DishStatus.UNKNOWN, None, 0.2)


def tray(*dishes: DishRecognition) -> TrayRecognition:
    return TrayRecognition(dishes=tuple(dishes), model_version="test")


class Recorder:
    def __init__(self, session: CheckoutSession) -> None:
        self.events: list[CheckoutEvent] = []
        session.subscribe(self.events.append)

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.events if not isinstance(e, StateChanged)]

    def states(self) -> list[CheckoutState]:
        return [e.current for e in self.events if isinstance(e, StateChanged)]


def new_session(menu: Menu) -> CheckoutSession:
    ids = (f"id{n}" for n in itertools.count(1))
    return CheckoutSession(menu, "t1", new_id=lambda: next(ids), clock=lambda: 1000.0)


def receipt_for(session: CheckoutSession, balance: int = 9000) -> PaymentReceipt:
    request = session.payment_request
    assert request is not None
    return PaymentReceipt(
        request.transaction_id, "acct-1", request.method, request.amount_fen, balance
    )


def to_awaiting_payment(session: CheckoutSession) -> None:
    session.tray_arrived()
    session.tray_settled(750)  # rice 200 g + pork 150 g on a 400 g tray
    session.recognised(tray(sure("rice"), sure("pork")))


def test_a_sure_tray_goes_from_idle_to_posted_with_events_in_order(menu: Menu) -> None:
    session = new_session(menu)
    seen = Recorder(session)
    to_awaiting_payment(session)
    assert session.state is S.AWAITING_PAYMENT
    assert session.priced is not None and session.priced.total_fen == 750
    request = session.start_payment("card", "04A1B2C3D4")
    assert request.amount_fen == 750 and request.terminal_id == "t1"
    session.payment_approved(receipt_for(session))
    session.posted(request.transaction_id)
    session.tray_removed()
    assert seen.states() == [
        S.TRAY_ARRIVED,
        S.TRAY_SETTLED,
        S.RECOGNISED,
        S.AWAITING_PAYMENT,
        S.PAYING,
        S.PAID,
        S.POSTED,
        S.IDLE,
    ]
    assert seen.kinds() == [
        "TrayArrived",
        "TraySettled",
        "TrayRecognised",
        "PaymentRequested",
        "PaymentStarted",
        "Paid",
        "Posted",
        "TrayRemoved",
    ]
    removed = seen.events[-1]
    assert isinstance(removed, TrayRemoved) and removed.charged
    assert removed.transaction_id == request.transaction_id
    assert len({e.checkout_id for e in seen.events}) == 1


HOLD_TABLE = [
    ("unsure dish", [sure("rice"), unsure("pork", "greens")], 750, [HoldReason.UNSURE_DISH]),
    ("unknown dish", [sure("rice"), unknown()], 750, [HoldReason.UNKNOWN_DISH]),
    (
        "dish not on the menu",
        [sure("lobster")],
        700,
        [HoldReason.NOT_ON_MENU, HoldReason.NO_DISHES],
    ),
    ("nothing recognised on a loaded tray", [], 800, [HoldReason.NO_DISHES]),
    ("empty tray", [], 400, [HoldReason.NO_DISHES]),
    ("no weight", [sure("pork")], 400, [HoldReason.NO_WEIGHT]),
    ("weight far off", [sure("pork")], 2000, [HoldReason.WEIGHT_CONFLICT]),
]


@pytest.mark.parametrize(
    ("case", "dishes", "gross_g", "reasons"), HOLD_TABLE, ids=[r[0] for r in HOLD_TABLE]
)
def test_anything_unsure_holds_the_tray_for_the_cashier(
    menu: Menu, case: str, dishes: list[DishRecognition], gross_g: int, reasons: list[HoldReason]
) -> None:
    session = new_session(menu)
    seen = Recorder(session)
    session.tray_arrived()
    session.tray_settled(gross_g)
    session.recognised(tray(*dishes))
    assert session.state is S.HELD
    assert [h.reason for h in session.holds] == reasons
    held = [e for e in seen.events if isinstance(e, TrayHeld)]
    assert len(held) == 1 and [h.reason for h in held[0].holds] == reasons
    assert not any(isinstance(e, PaymentRequested) for e in seen.events)
    with pytest.raises(IllegalTransitionError):
        session.start_payment("card", "x")
    assert all(h.diner_text("zh") and "cashier" in h.diner_text("en") for h in session.holds)


def test_cashier_resolves_an_unsure_dish_then_the_diner_pays(menu: Menu) -> None:
    session = new_session(menu)
    session.tray_arrived()
    session.tray_settled(750)
    session.recognised(tray(sure("rice"), unsure("pork", "greens")))
    assert session.state is S.HELD
    session.resolve(["rice", "greens"])
    assert session.state is S.AWAITING_PAYMENT
    assert session.priced is not None
    assert [line.item_id for line in session.priced.lines] == ["rice", "greens"]
    assert session.priced.total_fen == 150 + 270  # greens get the 150 g left: 270 fen


def test_resolve_with_a_price_override_clears_a_missing_weight(menu: Menu) -> None:
    session = new_session(menu)
    session.tray_arrived()
    session.tray_settled(400)
    session.recognised(tray(sure("pork")))
    assert [h.reason for h in session.holds] == [HoldReason.NO_WEIGHT]
    session.resolve(["pork"])
    assert session.state is S.HELD, "a weighed dish with no weight cannot be priced"
    session.resolve(["pork"], overrides={0: PriceOverride(500, "scale fault", "cashier-7")})
    assert session.state is S.AWAITING_PAYMENT
    assert session.priced is not None and session.priced.total_fen == 500


def test_recognition_failure_and_device_failure_hold_the_tray(menu: Menu) -> None:
    session = new_session(menu)
    session.tray_arrived()
    session.tray_settled(750)
    session.recognition_failed("model crashed")
    assert session.state is S.HELD
    assert session.holds[0].reason is HoldReason.RECOGNITION_FAILED
    session.tray_removed()
    session.tray_arrived()
    session.fail(HoldReason.DEVICE_FAILED, "scale unplugged")
    assert session.state is S.HELD and session.holds[0].detail == "scale unplugged"


def test_declined_payment_returns_to_awaiting_payment_with_a_new_key(menu: Menu) -> None:
    session = new_session(menu)
    seen = Recorder(session)
    to_awaiting_payment(session)
    first = session.start_payment("card", "card-a")
    session.payment_declined("balance too low")
    assert session.state is S.AWAITING_PAYMENT
    second = session.start_payment("card", "card-b")
    assert second.transaction_id != first.transaction_id
    declined = [e for e in seen.events if isinstance(e, PaymentDeclined)]
    assert declined[0].transaction_id == first.transaction_id
    assert declined[0].reason == "balance too low"


BEFORE_PAYMENT: list[tuple[str, Callable[[CheckoutSession], None]]] = [
    ("arrived", lambda s: s.tray_arrived()),
    ("settled", lambda s: (s.tray_arrived(), s.tray_settled(750))),
    ("held", lambda s: (s.tray_arrived(), s.tray_settled(750), s.recognised(tray(unknown())))),
    ("awaiting payment", to_awaiting_payment),
    ("voided", lambda s: (to_awaiting_payment(s), s.void("diner changed mind"))),
]


@pytest.mark.parametrize(("case", "setup"), BEFORE_PAYMENT, ids=[c for c, _ in BEFORE_PAYMENT])
def test_a_tray_removed_before_payment_charges_nothing(
    menu: Menu, case: str, setup: Callable[[CheckoutSession], None]
) -> None:
    session = new_session(menu)
    seen = Recorder(session)
    setup(session)
    session.tray_removed()
    assert session.state is S.IDLE
    removed = [e for e in seen.events if isinstance(e, TrayRemoved)]
    assert len(removed) == 1 and not removed[0].charged and removed[0].transaction_id is None
    assert not any(isinstance(e, (PaymentStarted, Paid)) for e in seen.events)
    assert session.checkout_id is None


def test_tray_removed_mid_payment_then_declined_charges_nothing(menu: Menu) -> None:
    session = new_session(menu)
    seen = Recorder(session)
    to_awaiting_payment(session)
    session.start_payment("card", "card-a")
    session.tray_removed()
    assert session.state is S.PAYING, "the backend's answer decides"
    session.payment_declined("card blocked")
    assert session.state is S.IDLE
    removed = [e for e in seen.events if isinstance(e, TrayRemoved)]
    assert len(removed) == 1 and not removed[0].charged
    assert not any(isinstance(e, Paid) for e in seen.events)


def test_tray_removed_mid_payment_then_approved_is_charged_exactly_once(menu: Menu) -> None:
    session = new_session(menu)
    seen = Recorder(session)
    to_awaiting_payment(session)
    request = session.start_payment("card", "card-a")
    session.tray_removed()
    session.payment_approved(receipt_for(session))
    assert session.state is S.IDLE
    paid = [e for e in seen.events if isinstance(e, Paid)]
    removed = [e for e in seen.events if isinstance(e, TrayRemoved)]
    assert len(paid) == 1 and paid[0].receipt.amount_fen == 750
    assert len(removed) == 1 and removed[0].charged
    assert removed[0].transaction_id == request.transaction_id
    # Posting finishes after the tray has gone and even after the next tray arrived.
    session.tray_arrived()
    session.posted(request.transaction_id)
    assert session.state is S.TRAY_ARRIVED
    assert any(
        isinstance(e, Posted) and e.transaction_id == request.transaction_id for e in seen.events
    )


def test_void_ends_the_checkout_without_payment(menu: Menu) -> None:
    session = new_session(menu)
    seen = Recorder(session)
    to_awaiting_payment(session)
    session.void("wrong tray")
    assert session.state is S.VOIDED
    assert any(isinstance(e, CheckoutVoided) and e.reason == "wrong tray" for e in seen.events)
    with pytest.raises(IllegalTransitionError):
        session.start_payment("card", "x")


def test_a_receipt_for_another_transaction_is_refused(menu: Menu) -> None:
    session = new_session(menu)
    to_awaiting_payment(session)
    session.start_payment("card", "card-a")
    with pytest.raises(ValueError, match="does not match"):
        session.payment_approved(PaymentReceipt("someone-else", "a", "card", 750))
    assert session.state is S.PAYING


def test_a_failing_subscriber_does_not_stop_the_checkout(menu: Menu) -> None:
    session = new_session(menu)

    def broken(event: CheckoutEvent) -> None:
        raise RuntimeError("screen bug")

    session.subscribe(broken)
    seen = Recorder(session)
    to_awaiting_payment(session)
    assert session.state is S.AWAITING_PAYMENT
    assert "PaymentRequested" in seen.kinds()


def test_unsubscribe_stops_events(menu: Menu) -> None:
    session = new_session(menu)
    events: list[CheckoutEvent] = []
    unsubscribe = session.subscribe(events.append)
    session.tray_arrived()
    unsubscribe()
    session.tray_settled(750)
    assert [type(e) for e in events] == [StateChanged, TrayArrived]
    assert not any(isinstance(e, TraySettled) for e in events)


def test_a_handler_acting_on_the_session_sees_events_in_order(menu: Menu) -> None:
    session = new_session(menu)
    seen = Recorder(session)

    def auto_pay(event: CheckoutEvent) -> None:
        if isinstance(event, PaymentRequested):
            session.start_payment("card", "card-a")

    session.subscribe(auto_pay)
    to_awaiting_payment(session)
    assert session.state is S.PAYING
    kinds = seen.kinds()
    assert kinds.index("PaymentRequested") < kinds.index("PaymentStarted")
    assert kinds.index("TrayRecognised") < kinds.index("PaymentRequested")


# --- illegal transitions: every action in every state it is not allowed in --------------

REACH: dict[CheckoutState, Callable[[CheckoutSession], None]] = {
    S.IDLE: lambda s: None,
    S.TRAY_ARRIVED: lambda s: s.tray_arrived(),
    S.TRAY_SETTLED: lambda s: (s.tray_arrived(), s.tray_settled(750)),
    S.HELD: lambda s: (s.tray_arrived(), s.tray_settled(750), s.recognised(tray(unknown()))),
    S.AWAITING_PAYMENT: to_awaiting_payment,
    S.PAYING: lambda s: (to_awaiting_payment(s), s.start_payment("card", "c")),
    S.PAID: lambda s: (
        to_awaiting_payment(s),
        s.start_payment("card", "c"),
        s.payment_approved(receipt_for(s)),
    ),
    S.POSTED: lambda s: (
        to_awaiting_payment(s),
        s.start_payment("card", "c"),
        s.payment_approved(receipt_for(s)),
        s.posted(s.receipt.transaction_id if s.receipt else ""),
    ),
    S.VOIDED: lambda s: (to_awaiting_payment(s), s.void("test")),
}

ACTIONS: dict[str, Callable[[CheckoutSession], object]] = {
    "tray_arrived": lambda s: s.tray_arrived(),
    "tray_settled": lambda s: s.tray_settled(750),
    "recognised": lambda s: s.recognised(tray(sure("rice"))),
    "recognition_failed": lambda s: s.recognition_failed("x"),
    "fail": lambda s: s.fail(HoldReason.DEVICE_FAILED),
    "resolve": lambda s: s.resolve(["rice"]),
    "void": lambda s: s.void("x"),
    "start_payment": lambda s: s.start_payment("card", "c"),
    "payment_approved": lambda s: s.payment_approved(PaymentReceipt("t", "a", "card", 1)),
    "payment_declined": lambda s: s.payment_declined("x"),
    "tray_removed": lambda s: s.tray_removed(),
}

ILLEGAL = [(action, state) for action in ACTIONS for state in REACH if state not in ALLOWED[action]]


def test_every_action_is_covered() -> None:
    assert set(ACTIONS) == set(ALLOWED)


@pytest.mark.parametrize(
    ("action", "state"), ILLEGAL, ids=[f"{a}-in-{s.value}" for a, s in ILLEGAL]
)
def test_illegal_transitions_raise_and_change_nothing(
    menu: Menu, action: str, state: CheckoutState
) -> None:
    session = new_session(menu)
    REACH[state](session)
    assert session.state is state
    seen = Recorder(session)
    with pytest.raises(IllegalTransitionError, match=f"cannot {action} while {state.value}"):
        ACTIONS[action](session)
    assert session.state is state
    assert seen.events == []
