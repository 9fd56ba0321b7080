"""What moves the checkout while the screens are up: the live devices, or the simulated diners.

A driver is stepped over and over by the kiosk's worker thread (:mod:`terminal.ui.worker`), never
by the GUI thread: each step may read the camera, recognise a tray or charge a card, which can
take a while. Between steps the worker runs the cashier's commands, so the session is only ever
touched from that one thread.

- :class:`LiveDriver`: the real terminal loop (:class:`terminal.live.LiveTerminal`), one pass over
  camera, scale and card reader per step.
- :class:`DemoDriver`: the kiosk demo. It replays the sample tray photos one diner at a time with
  the fake scale and card reader, paced so a person can follow: the scanner is empty for a
  moment, a tray arrives and settles, it is recognised and priced, the payment prompt shows, a
  demo card is tapped, the result shows, the tray leaves.

Both step the kiosk's :class:`terminal.ui.face.FaceCheckout` (:attr:`KioskDriver.face`) when the
terminal has face accounts and a customer camera: while a tray awaits payment it takes about a
second of the customer camera's frames and proposes the account they show. The demo's simulated
diner does not tap a card while the diner screen asks "is this you?".

  **Held trays wait for the cashier screen.** The simulated cashier of the headless demo does not
  act while a cashier is signed in; only a held tray nobody has signed in for within
  ``cashier_timeout_s`` (45 s by default) is confirmed by it, from the photo's labels, so an
  unattended demo keeps cycling.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

from terminal.app import StartupError, Terminal
from terminal.core.session import (
    ALLOWED,
    CheckoutEvent,
    CheckoutState,
    PaymentStarted,
    TrayArrived,
    TrayRemoved,
)
from terminal.demo import CheckoutRecord, settle_replayed_tray
from terminal.devices.fakes import FakeCardReader, FakeScale
from terminal.live import LiveTerminal
from terminal.payment import mask_card, take_card_payment
from vision.types import Frame, TrayRecognition

if TYPE_CHECKING:
    from terminal.ui.face import FaceCheckout

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScaleView:
    """The scale as the maintenance screen shows it."""

    gross_g: int | None
    stable: bool
    fault: str | None = None


@dataclass(frozen=True)
class CardView:
    """The last card the reader saw (masked), and when (``time.time`` seconds)."""

    masked: str
    at: float


class KioskDriver(Protocol):
    """What the worker thread steps."""

    #: Set by the kiosk while a cashier is signed in (a plain bool: safe to set from any thread).
    cashier_present: bool

    #: Paying by face, stepped with the driver while a tray awaits payment; set by the kiosk
    #: when the terminal has face accounts and a customer camera (None: cards only).
    face: FaceCheckout | None

    def step(self) -> bool:
        """One pass; False when there is nothing more to do (the replay ended, max trays)."""
        ...

    def view_frame(self) -> Frame | None:
        """The frame the diner screen should show now, or None for an empty scanner."""
        ...

    def scale_view(self) -> ScaleView:
        """The scale's last reading."""
        ...

    def last_card(self) -> CardView | None:
        """The last card tapped, or None."""
        ...

    def checkouts_done(self) -> int:
        """How many checkouts have ended."""
        ...


class _Records:
    """The JSON line of each finished checkout, as the headless demo prints them, and the last
    card tapped; fed by the session's events."""

    def __init__(self, terminal: Terminal, out: TextIO | None) -> None:
        self.terminal = terminal
        self.out = out
        self.done = 0
        self.counts: dict[str, int] = {}
        self.record: CheckoutRecord | None = None
        self.tray_name = ""
        self.cashier_fixed = False
        self.last_card: CardView | None = None
        terminal.session.subscribe(self._on_event)

    def _on_event(self, event: CheckoutEvent) -> None:
        if isinstance(event, TrayArrived):
            self.record = CheckoutRecord(tray=self.tray_name or f"tray-{self.done + 1}")
        if isinstance(event, PaymentStarted):
            request = event.request
            shown = mask_card(request.credential) if request.method == "card" else request.method
            self.last_card = CardView(shown, request.created_at)
        record = self.record
        if record is None:
            return
        record.apply(event, self.terminal.session.payment_request)
        if isinstance(event, TrayRemoved):
            record.cashier_fixed = record.cashier_fixed or self.cashier_fixed
            self.done += 1
            self.counts[record.status] = self.counts.get(record.status, 0) + 1
            self.record = None
            self.cashier_fixed = False
            if self.out is not None:
                language = self.terminal.loaded.config.language
                self.out.write(json.dumps(record.to_json(language), ensure_ascii=False) + "\n")
                self.out.flush()


@dataclass(frozen=True)
class DemoTimings:
    """How long each moment of a simulated diner's checkout lasts, in seconds.

    Attributes:
        idle_s: the scanner stays empty between two diners.
        settle_s: from the tray arriving to it being still (the screen says "recognising").
        tap_after_s: the payment prompt shows this long before the demo card is tapped.
        paid_s: the result (or a void) shows this long before the tray leaves.
        cashier_timeout_s: a held tray no cashier signed in for is confirmed by the simulated
            cashier after this long; None waits for the cashier for ever.
        max_declines: after this many declined taps the diner walks away with the tray.
    """

    idle_s: float = 2.0
    settle_s: float = 1.0
    tap_after_s: float = 2.5
    paid_s: float = 3.5
    cashier_timeout_s: float | None = 45.0
    max_declines: int = 3


class DemoDriver:
    """Simulated diners at the kiosk: replayed trays, the fake scale and the fake card reader.

    Args:
        terminal: a terminal with the replay camera, a fake scale and a fake card reader.
        timings: the pace of each checkout.
        max_trays: stop after this many checkouts (None: run until the photos end).
        out: where one JSON line per checkout goes (None: nowhere).
        clock: monotonic seconds.

    Raises:
        StartupError: the terminal's scale or card reader is not a fake.
    """

    def __init__(
        self,
        terminal: Terminal,
        *,
        timings: DemoTimings | None = None,
        max_trays: int | None = None,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(terminal.scale, FakeScale) or not isinstance(
            terminal.card_reader, FakeCardReader
        ):
            raise StartupError(
                "the demo simulates the diners: it needs scale.type fake and card_reader.type fake"
            )
        self.terminal = terminal
        self.session = terminal.session
        self.scale: FakeScale = terminal.scale
        self.cards: FakeCardReader = terminal.card_reader
        self.timings = timings or DemoTimings()
        self.max_trays = max_trays
        self.clock = clock
        self.cashier_present = False
        self.face: FaceCheckout | None = None
        self._records = _Records(terminal, out)
        self._frame: Frame | None = None
        self._truth: TrayRecognition | None = None
        self._phase_since = clock()
        self._state_seen = self.session.state
        self._declines = 0
        self._ended = False

    @property
    def counts(self) -> dict[str, int]:
        """Finished checkouts by status (``posted``, ``held``, ``abandoned``, ...)."""
        return dict(self._records.counts)

    def view_frame(self) -> Frame | None:
        return self._frame

    def scale_view(self) -> ScaleView:
        return ScaleView(self.scale.load_g, True)

    def last_card(self) -> CardView | None:
        return self._records.last_card

    def checkouts_done(self) -> int:
        return self._records.done

    def step(self) -> bool:
        """Move the simulated diner on when its moment has come."""
        self.terminal.deliver_posted()
        now = self.clock()
        state = self.session.state
        if state is not self._state_seen:
            self._state_seen, self._phase_since = state, now
        waited = now - self._phase_since
        timings = self.timings
        if state is CheckoutState.IDLE:
            if self._ended or (self.max_trays is not None and self._records.done >= self.max_trays):
                return False
            if waited >= timings.idle_s or self._records.done == 0:
                self._next_tray()
        elif state is CheckoutState.TRAY_ARRIVED:
            if waited >= timings.settle_s:
                self._recognise()
        elif state is CheckoutState.HELD:
            timeout = timings.cashier_timeout_s
            if (
                not self.cashier_present
                and timeout is not None
                and waited >= timeout
                and self._truth is not None
            ):
                logger.info("demo: no cashier came; the simulated cashier confirms the tray")
                self._records.cashier_fixed = True
                self.session.resolve([d.dish_id for d in self._truth.dishes if d.dish_id])
        elif state is CheckoutState.AWAITING_PAYMENT:
            face = self.face
            if face is not None:
                face.step()
            # A diner asked "is this you?" answers on the screen; the card waits till then.
            if waited >= timings.tap_after_s and not (face is not None and face.waiting_for_diner):
                self._tap()
        elif (
            state in (CheckoutState.PAID, CheckoutState.POSTED, CheckoutState.VOIDED)
            and waited >= timings.paid_s
        ):
            self._tray_leaves()
        return True

    def _next_tray(self) -> None:
        frame = self.terminal.camera.read()
        if frame is None:
            self._ended = True
            return
        self._frame = frame
        self._truth = None
        self._declines = 0
        self._records.tray_name = Path(frame.source).name
        self.session.tray_arrived()

    def _recognise(self) -> None:
        frame = self._frame
        assert frame is not None
        self._truth = settle_replayed_tray(self.terminal, self.scale, frame)

    def _tap(self) -> None:
        if self._declines >= self.timings.max_declines:
            logger.info("demo: the diner gives up after %d declined taps", self._declines)
            self._tray_leaves()
            return
        self.cards.tap_next()
        tap = self.cards.poll()
        assert tap is not None
        outcome = take_card_payment(self.session, self.terminal.backend, tap.card_id)
        if outcome.receipt is None:
            self._declines += 1
            self._phase_since = self.clock()

    def _tray_leaves(self) -> None:
        self.scale.remove()
        self._frame = None
        if self.session.state in ALLOWED["tray_removed"]:
            self.session.tray_removed()


class _ViewedLiveTerminal(LiveTerminal):
    """The live loop, keeping the newest frame for the screen."""

    newest: Frame | None = None

    def _read_frame(self) -> Frame | None:
        frame = super()._read_frame()
        if frame is not None:
            self.newest = frame
        return frame


class LiveDriver:
    """The real devices drive the checkout (:class:`terminal.live.LiveTerminal`).

    Args:
        terminal: the wired terminal.
        out: where one JSON line per finished checkout goes (None: nowhere).
    """

    def __init__(self, terminal: Terminal, out: TextIO | None = None) -> None:
        profile = terminal.profile
        area = profile.camera.tray_area if profile and profile.camera else None
        self.terminal = terminal
        self.cashier_present = False
        self.face: FaceCheckout | None = None
        self.live = _ViewedLiveTerminal(terminal, out, tray_area=area)
        self._cards = _Records(terminal, None)

    def step(self) -> bool:
        going = self.live.step()
        if self.face is not None:
            self.face.step()
        return going

    def view_frame(self) -> Frame | None:
        return self.live.newest

    def scale_view(self) -> ScaleView:
        weight = self.live.weight
        return ScaleView(weight.stable_g, weight.stable_g is not None, self.live.scale_fault)

    def last_card(self) -> CardView | None:
        return self._cards.last_card

    def checkouts_done(self) -> int:
        return len(self.live.records)


__all__ = [
    "CardView",
    "DemoDriver",
    "DemoTimings",
    "KioskDriver",
    "LiveDriver",
    "ScaleView",
]
