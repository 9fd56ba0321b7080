"""The checkout session: one tray's way from arriving on the scanner to a posted transaction.

A plain-Python state machine that emits events; the Qt screens and the headless runner
subscribe to it and hold no business state of their own. It does no I/O: the caller tells it
what the devices and the recogniser saw, and it decides what happens next.

::

    IDLE -tray_arrived-> TRAY_ARRIVED -tray_settled-> TRAY_SETTLED -recognised-> RECOGNISED
    RECOGNISED -> HELD               (anything unsure, unknown or odd: the cashier is called)
    RECOGNISED -> AWAITING_PAYMENT   (all sure)
    HELD -resolve (cashier)-> AWAITING_PAYMENT -start_payment-> PAYING
    PAYING -payment_approved-> PAID -posted-> POSTED
    PAYING -payment_declined-> AWAITING_PAYMENT

``tray_removed`` before payment goes back to IDLE and charges nothing; once a card has been
tapped (PAYING) the payment's outcome decides, so a tray lifted while the backend answers is
charged exactly once if the payment went through and not at all if it did not. ``void`` by the
cashier ends a checkout without payment (VOIDED) until the tray leaves.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from terminal.core.holds import Hold, HoldReason
from terminal.core.menu import Menu, PricingMode, Tableware
from terminal.core.money import Fen
from terminal.core.pricing import PricedTray, PriceOverride, WeightRules, price_tray
from vision.types import DishStatus, TrayRecognition

logger = logging.getLogger(__name__)


class CheckoutState(StrEnum):
    """Where a checkout stands."""

    IDLE = "idle"
    TRAY_ARRIVED = "tray_arrived"
    TRAY_SETTLED = "tray_settled"
    RECOGNISED = "recognised"
    HELD = "held"
    AWAITING_PAYMENT = "awaiting_payment"
    PAYING = "paying"
    PAID = "paid"
    POSTED = "posted"
    VOIDED = "voided"


S = CheckoutState

#: The states each action is allowed in; anything else raises IllegalTransitionError.
ALLOWED: dict[str, frozenset[CheckoutState]] = {
    "tray_arrived": frozenset({S.IDLE}),
    "tray_settled": frozenset({S.TRAY_ARRIVED}),
    "recognised": frozenset({S.TRAY_SETTLED}),
    "recognition_failed": frozenset({S.TRAY_SETTLED}),
    "fail": frozenset({S.TRAY_ARRIVED, S.TRAY_SETTLED, S.RECOGNISED, S.AWAITING_PAYMENT}),
    "resolve": frozenset({S.HELD, S.AWAITING_PAYMENT}),
    "void": frozenset({S.TRAY_SETTLED, S.RECOGNISED, S.HELD, S.AWAITING_PAYMENT}),
    "start_payment": frozenset({S.AWAITING_PAYMENT}),
    "payment_approved": frozenset({S.PAYING}),
    "payment_declined": frozenset({S.PAYING}),
    "tray_removed": frozenset(
        {
            S.TRAY_ARRIVED,
            S.TRAY_SETTLED,
            S.RECOGNISED,
            S.HELD,
            S.AWAITING_PAYMENT,
            S.PAYING,
            S.PAID,
            S.POSTED,
            S.VOIDED,
        }
    ),
}


class IllegalTransitionError(RuntimeError):
    """An action that makes no sense in the session's current state."""

    def __init__(self, action: str, state: CheckoutState) -> None:
        allowed = ", ".join(sorted(s.value for s in ALLOWED[action]))
        super().__init__(f"cannot {action} while {state.value} (allowed in: {allowed})")
        self.action = action
        self.state = state


@dataclass(frozen=True)
class PaymentRequest:
    """What the payment path must charge; ``transaction_id`` is the idempotency key."""

    transaction_id: str
    checkout_id: str
    terminal_id: str
    amount_fen: Fen
    method: str
    credential: str
    priced: PricedTray
    created_at: float


@dataclass(frozen=True)
class PaymentReceipt:
    """The payment path's answer when the charge went through."""

    transaction_id: str
    account_id: str
    method: str
    amount_fen: Fen
    balance_after_fen: Fen | None = None
    offline: bool = False


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckoutEvent:
    """Base of every event; ``checkout_id`` ties events of one tray together."""

    checkout_id: str


@dataclass(frozen=True)
class StateChanged(CheckoutEvent):
    previous: CheckoutState
    current: CheckoutState


@dataclass(frozen=True)
class TrayArrived(CheckoutEvent):
    pass


@dataclass(frozen=True)
class TraySettled(CheckoutEvent):
    gross_g: int


@dataclass(frozen=True)
class TrayRecognised(CheckoutEvent):
    recognition: TrayRecognition
    priced: PricedTray


@dataclass(frozen=True)
class TrayHeld(CheckoutEvent):
    holds: tuple[Hold, ...]
    priced: PricedTray | None


@dataclass(frozen=True)
class PaymentRequested(CheckoutEvent):
    priced: PricedTray


@dataclass(frozen=True)
class PaymentStarted(CheckoutEvent):
    request: PaymentRequest


@dataclass(frozen=True)
class PaymentDeclined(CheckoutEvent):
    transaction_id: str
    reason: str


@dataclass(frozen=True)
class Paid(CheckoutEvent):
    receipt: PaymentReceipt
    priced: PricedTray


@dataclass(frozen=True)
class Posted(CheckoutEvent):
    transaction_id: str


@dataclass(frozen=True)
class CheckoutVoided(CheckoutEvent):
    reason: str


@dataclass(frozen=True)
class TrayRemoved(CheckoutEvent):
    """The tray left the scanner; ``charged`` says whether this checkout took money."""

    charged: bool
    transaction_id: str | None = None


Handler = Callable[[CheckoutEvent], None]


@dataclass
class _Checkout:
    """What the session knows about the tray on the scanner now."""

    checkout_id: str
    gross_g: int | None = None
    recognition: TrayRecognition | None = None
    item_ids: tuple[str, ...] = ()
    priced: PricedTray | None = None
    holds: tuple[Hold, ...] = ()
    request: PaymentRequest | None = None
    receipt: PaymentReceipt | None = None
    tray_left_while_paying: bool = False
    overrides: dict[int, PriceOverride] = field(default_factory=dict)


class CheckoutSession:
    """The checkout state machine of one terminal.

    Args:
        menu: today's menu.
        terminal_id: this terminal's id, written into every payment request.
        rules: weight plausibility thresholds.
        tray: the tray type in use; defaults to the menu's default tray.
        new_id: makes checkout and transaction ids (uuid4 hex by default).
        clock: seconds since the epoch (``time.time`` by default).
    """

    def __init__(
        self,
        menu: Menu,
        terminal_id: str,
        *,
        rules: WeightRules | None = None,
        tray: Tableware | None = None,
        new_id: Callable[[], str] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.menu = menu
        self.terminal_id = terminal_id
        self.rules = rules or WeightRules()
        self.tray = tray if tray is not None else menu.default_tray()
        self._new_id = new_id or (lambda: uuid.uuid4().hex)
        self._clock = clock or time.time
        self._state = CheckoutState.IDLE
        self._checkout: _Checkout | None = None
        self._handlers: list[Handler] = []
        self._pending: deque[CheckoutEvent] = deque()
        self._dispatching = False

    # --- observation ----------------------------------------------------------------------

    @property
    def state(self) -> CheckoutState:
        return self._state

    @property
    def checkout_id(self) -> str | None:
        return self._checkout.checkout_id if self._checkout else None

    @property
    def priced(self) -> PricedTray | None:
        """The priced tray of the current checkout, once recognised."""
        return self._checkout.priced if self._checkout else None

    @property
    def holds(self) -> tuple[Hold, ...]:
        """Why the current checkout is held (empty unless HELD)."""
        return self._checkout.holds if self._checkout else ()

    @property
    def recognition(self) -> TrayRecognition | None:
        return self._checkout.recognition if self._checkout else None

    @property
    def payment_request(self) -> PaymentRequest | None:
        return self._checkout.request if self._checkout else None

    @property
    def receipt(self) -> PaymentReceipt | None:
        return self._checkout.receipt if self._checkout else None

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        """Call ``handler`` with every event from now on; returns a function that unsubscribes.

        Handlers run in order, after the state has changed. An exception in one is logged
        and does not stop the checkout or the other handlers.
        """
        self._handlers.append(handler)
        return lambda: self._handlers.remove(handler) if handler in self._handlers else None

    # --- actions --------------------------------------------------------------------------

    def tray_arrived(self) -> None:
        """Something is on the scanner: a new checkout starts."""
        self._require("tray_arrived")
        self._checkout = _Checkout(checkout_id=self._new_id())
        self._enter(S.TRAY_ARRIVED, TrayArrived(self._id()))

    def tray_settled(self, gross_g: int) -> None:
        """The tray is still and the scale stable at ``gross_g``: time to recognise it."""
        self._require("tray_settled")
        self._current().gross_g = gross_g
        self._enter(S.TRAY_SETTLED, TraySettled(self._id(), gross_g))

    def recognised(self, recognition: TrayRecognition) -> None:
        """The recogniser's answer: price the tray, then hold it or ask for payment."""
        self._require("recognised")
        checkout = self._current()
        checkout.recognition = recognition
        holds: list[Hold] = []
        item_ids: list[str] = []
        for index, dish in enumerate(recognition.dishes):
            if dish.status is DishStatus.UNKNOWN or dish.dish_id is None:
                holds.append(Hold(HoldReason.UNKNOWN_DISH, f"score {dish.score:.2f}", index))
                continue
            if dish.dish_id not in self.menu:
                holds.append(Hold(HoldReason.NOT_ON_MENU, dish.dish_id, index))
                continue
            if dish.status is DishStatus.UNSURE:
                names = " / ".join(c.dish_id for c in dish.candidates[:3]) or dish.dish_id
                holds.append(Hold(HoldReason.UNSURE_DISH, names, index))
            item_ids.append(dish.dish_id)
        self._price(item_ids, recognition_holds=holds)
        priced = self._priced()
        self._enter(S.RECOGNISED, TrayRecognised(self._id(), recognition, priced))
        self._after_pricing()

    def recognition_failed(self, error: str) -> None:
        """The recogniser raised or timed out: the cashier takes over."""
        self._require("recognition_failed")
        self._hold([Hold(HoldReason.RECOGNITION_FAILED, error)])

    def fail(self, reason: HoldReason, detail: str = "") -> None:
        """A device or component failed mid-checkout: hold the tray for the cashier."""
        self._require("fail")
        self._hold([Hold(reason, detail)])

    def resolve(
        self,
        item_ids: Sequence[str],
        *,
        overrides: dict[int, PriceOverride] | None = None,
        confirm_weight: bool = True,
    ) -> None:
        """The cashier's fix: the dishes that are really on the tray, and any price overrides.

        Args:
            item_ids: menu ids of every dish on the tray, as the cashier confirmed them.
            overrides: prices set by the cashier, by line index, with a reason.
            confirm_weight: the cashier looked at the tray, so a weight that merely looks odd
                no longer holds it. A missing weight still does, unless every weighed line has
                an override.

        Raises:
            UnknownDishError: an id is not on the menu.
        """
        self._require("resolve")
        for item_id in item_ids:
            self.menu.item(item_id)
        checkout = self._current()
        checkout.overrides = dict(overrides or {})
        self._price(list(item_ids), recognition_holds=[])
        priced = self._priced()
        holds = list(priced.holds)
        if confirm_weight:
            holds = [h for h in holds if h.reason is not HoldReason.WEIGHT_CONFLICT]
        if holds and all(h.reason is HoldReason.NO_WEIGHT for h in holds):
            weighed = [
                i for i, line in enumerate(priced.lines) if line.pricing is PricingMode.PER_100G
            ]
            if all(i in checkout.overrides for i in weighed):
                holds = []
        checkout.holds = tuple(holds)
        self._after_pricing()

    def void(self, reason: str) -> None:
        """The cashier ends this checkout without payment; nothing is charged."""
        self._require("void")
        self._enter(S.VOIDED, CheckoutVoided(self._id(), reason))

    def start_payment(self, method: str, credential: str) -> PaymentRequest:
        """A card was tapped or a face matched: make the request the payment path must charge.

        Each attempt gets a fresh transaction id, the idempotency key that stops a retried
        post from charging twice.
        """
        self._require("start_payment")
        priced = self._priced()
        request = PaymentRequest(
            transaction_id=self._new_id(),
            checkout_id=self._id(),
            terminal_id=self.terminal_id,
            amount_fen=priced.total_fen,
            method=method,
            credential=credential,
            priced=priced,
            created_at=self._clock(),
        )
        self._current().request = request
        self._enter(S.PAYING, PaymentStarted(self._id(), request))
        return request

    def payment_approved(self, receipt: PaymentReceipt) -> None:
        """The charge went through and is durably recorded: the diner may be told so."""
        self._require("payment_approved")
        checkout = self._current()
        request = checkout.request
        assert request is not None
        if receipt.transaction_id != request.transaction_id:
            raise ValueError(
                f"receipt for {receipt.transaction_id} does not match "
                f"the payment in progress {request.transaction_id}"
            )
        checkout.receipt = receipt
        self._enter(S.PAID, Paid(self._id(), receipt, request.priced))
        if checkout.tray_left_while_paying:
            self._end(TrayRemoved(self._id(), charged=True, transaction_id=receipt.transaction_id))

    def payment_declined(self, reason: str) -> None:
        """The charge did not go through; nothing was taken. The diner may try again."""
        self._require("payment_declined")
        checkout = self._current()
        request = checkout.request
        assert request is not None
        checkout.request = None
        declined = PaymentDeclined(self._id(), request.transaction_id, reason)
        if checkout.tray_left_while_paying:
            self._emit(declined)
            self._end(TrayRemoved(self._id(), charged=False))
            return
        self._enter(S.AWAITING_PAYMENT, declined)

    def posted(self, transaction_id: str) -> None:
        """The backend has the transaction. Posting runs behind the checkout, so this is
        accepted in any state; only the checkout it belongs to moves to POSTED."""
        checkout = self._checkout
        receipt = checkout.receipt if checkout else None
        if self._state is S.PAID and receipt and receipt.transaction_id == transaction_id:
            self._enter(S.POSTED, Posted(self._id(), transaction_id))
        else:
            self._emit(Posted(self.checkout_id or "", transaction_id))

    def tray_removed(self) -> None:
        """The tray left the scanner."""
        self._require("tray_removed")
        checkout = self._current()
        if self._state is S.PAYING:
            # The card was tapped; the answer decides whether money moved.
            checkout.tray_left_while_paying = True
            return
        charged = self._state in (S.PAID, S.POSTED)
        transaction_id = checkout.receipt.transaction_id if charged and checkout.receipt else None
        self._end(TrayRemoved(self._id(), charged=charged, transaction_id=transaction_id))

    # --- internals ------------------------------------------------------------------------

    def _require(self, action: str) -> None:
        if self._state not in ALLOWED[action]:
            raise IllegalTransitionError(action, self._state)

    def _current(self) -> _Checkout:
        assert self._checkout is not None, "no checkout in progress"
        return self._checkout

    def _id(self) -> str:
        return self._current().checkout_id

    def _priced(self) -> PricedTray:
        priced = self._current().priced
        assert priced is not None
        return priced

    def _price(self, item_ids: list[str], recognition_holds: list[Hold]) -> None:
        checkout = self._current()
        gross = checkout.gross_g if checkout.gross_g is not None else 0
        priced = price_tray(
            self.menu,
            item_ids,
            gross,
            tray=self.tray,
            rules=self.rules,
            overrides=checkout.overrides,
        )
        checkout.item_ids = tuple(item_ids)
        checkout.priced = priced
        checkout.holds = tuple(recognition_holds) + priced.holds

    def _after_pricing(self) -> None:
        checkout = self._current()
        if checkout.holds:
            self._hold(list(checkout.holds))
        else:
            self._enter(S.AWAITING_PAYMENT, PaymentRequested(self._id(), self._priced()))

    def _hold(self, holds: list[Hold]) -> None:
        checkout = self._current()
        checkout.holds = tuple(holds)
        logger.info("checkout %s held: %s", checkout.checkout_id, "; ".join(map(str, holds)))
        self._enter(S.HELD, TrayHeld(self._id(), checkout.holds, checkout.priced))

    def _end(self, event: TrayRemoved) -> None:
        self._checkout = None
        self._enter(S.IDLE, event)

    def _enter(self, state: CheckoutState, event: CheckoutEvent) -> None:
        previous, self._state = self._state, state
        self._emit(StateChanged(event.checkout_id, previous, state))
        self._emit(event)

    def _emit(self, event: CheckoutEvent) -> None:
        # Queue, so that a handler which acts on the session sees events in order.
        self._pending.append(event)
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._pending:
                queued = self._pending.popleft()
                for handler in list(self._handlers):
                    try:
                        handler(queued)
                    except Exception:
                        logger.exception("checkout event handler failed on %r", queued)
        finally:
            self._dispatching = False
