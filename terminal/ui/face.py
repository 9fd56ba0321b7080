"""What the kiosk's screens need of face accounts, without Qt: the customer camera, paying by
face during a checkout, and enrolling or deleting a diner's face.

- :class:`CustomerCamera`: the camera that faces the diner (not the tray camera, which looks
  down). :class:`ReplayCustomerCamera` gives frames it was handed, in turn (tests; a demo).
- :class:`FaceCheckout`: stepped by the kiosk's driver on the worker thread while a tray waits
  for payment. It takes about a second of frames (``burst_frames`` spread over ``burst_s``),
  calls ``FacePayment.propose`` and tells its subscribers the answer: a
  :class:`~terminal.devices.face.payment.FaceProposal` (the diner screen asks "王*, is this
  you?") or an :class:`~terminal.devices.face.payment.AskForCard` (the reason, and the card
  prompt stays). The diner's tap runs :meth:`FaceCheckout.confirm` (or :meth:`reject`) on the
  worker thread too; the charge then goes through the card's payment path.
- :class:`FaceEnrolmentDesk`: the enrolment screen's side of
  :class:`~terminal.devices.face.enrolment.EnrolmentFlow` and ``FaceAccounts``: capture a frame
  and feed it, enrol with the diner's consent, delete an account's face data.

No frame is logged or written anywhere: a burst is dropped as soon as it has been judged, and an
enrolment keeps only the templates of the frames it accepted (the flow's rule).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from terminal.backend.face_sync import (
    CONSENT_TEXT,
    CONSENT_TEXT_VERSION,
    FaceConsent,
    FaceEnrolmentReceipt,
)
from terminal.core.session import CheckoutSession, CheckoutState
from terminal.devices.face.enrolment import EnrolmentFlow, EnrolmentStep
from terminal.devices.face.parts import FaceParts
from terminal.devices.face.payment import AskForCard, FacePayment, FaceProposal
from terminal.devices.face.types import Image
from terminal.payment import PaymentOutcome

logger = logging.getLogger(__name__)

CONSENT_VERSION = CONSENT_TEXT_VERSION

#: An answer of the face payment to show the diner.
FaceAnswer = FaceProposal | AskForCard


class CustomerCamera(Protocol):
    """The camera that faces the diner."""

    def read(self) -> Image | None:
        """The newest frame (BGR uint8), or None when there is none."""
        ...


class ReplayCustomerCamera:
    """A customer camera that shows the frames it was given, in turn, over and over.

    Args:
        frames: BGR uint8 frames.
    """

    def __init__(self, frames: Sequence[Image]) -> None:
        self._lock = threading.Lock()
        self._frames = list(frames)
        self._next = 0

    def show(self, frames: Sequence[Image]) -> None:
        """From now on show these frames (another person steps up), from the first."""
        with self._lock:
            self._frames = list(frames)
            self._next = 0

    def read(self) -> Image | None:
        with self._lock:
            if not self._frames:
                return None
            frame = self._frames[self._next % len(self._frames)]
            self._next += 1
            return frame


class FaceCheckout:
    """Paying by face for the checkout in progress; stepped by the kiosk's driver.

    While the session awaits payment, each :meth:`step` takes one frame when it is due; when a
    burst is complete it is proposed, and subscribers hear the answer. A proposal waits for
    the diner's :meth:`confirm` or :meth:`reject`; a proposal nobody confirms in
    ``FacePayment.proposal_ttl_s`` is withdrawn (an ``AskForCard`` with code ``expired``).
    After an ``AskForCard`` another burst is tried after ``retry_after_s``, up to
    ``max_attempts`` per checkout; after "not me" or a confirmed payment (paid or declined)
    face is not tried again for that checkout.

    Args:
        payment: the terminal's face payment (``Terminal.face.payment``).
        camera: the customer camera.
        session: the checkout session.
        burst_frames: frames in one burst (the liveness check needs at least its
            ``min_frames``).
        burst_s: how long a burst lasts; its frames are spread evenly over it.
        retry_after_s: pause after an answer that was not a proposal.
        max_attempts: bursts tried per checkout.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        payment: FacePayment,
        camera: CustomerCamera,
        session: CheckoutSession,
        *,
        burst_frames: int = 6,
        burst_s: float = 1.0,
        retry_after_s: float = 2.0,
        max_attempts: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst_frames < 2:
            raise ValueError("a burst needs at least two frames")
        self.payment = payment
        self.camera = camera
        self.session = session
        self.burst_frames = burst_frames
        self.burst_s = burst_s
        self.retry_after_s = retry_after_s
        self.max_attempts = max_attempts
        self.clock = clock
        self._handlers: list[Callable[[FaceAnswer], None]] = []
        self._checkout: str | None = None
        self._frames: list[Image] = []
        self._next_at = 0.0
        self._attempts = 0
        self._done = False
        self._open: FaceProposal | None = None
        self._open_at = 0.0

    @property
    def prompt_text(self) -> str:
        """What the diner is asked to do while the frames are taken (English)."""
        return self.payment.prompt_text

    @property
    def waiting_for_diner(self) -> bool:
        """A proposal is on the diner screen, waiting for "that's me" or "not me"."""
        return self._open is not None

    def subscribe(self, handler: Callable[[FaceAnswer], None]) -> Callable[[], None]:
        """Call ``handler`` with every answer from now on (on the thread that steps); returns a
        function that unsubscribes."""
        self._handlers.append(handler)
        return lambda: self._handlers.remove(handler) if handler in self._handlers else None

    def _emit(self, answer: FaceAnswer) -> None:
        for handler in list(self._handlers):
            try:
                handler(answer)
            except Exception:
                logger.exception("face answer handler failed")

    def step(self) -> None:
        """Take a frame when one is due, and propose when a burst is complete."""
        now = self.clock()
        session = self.session
        if session.checkout_id != self._checkout:
            self._checkout = session.checkout_id
            self._attempts, self._done, self._open = 0, False, None
            self._frames = []
            self._next_at = now
        if session.state is not CheckoutState.AWAITING_PAYMENT:
            # Paying by card, held, paid, or gone: a half-taken burst and a proposal are void.
            self._frames = []
            self._open = None
            return
        if self._open is not None:
            if now - self._open_at > self.payment.proposal_ttl_s:
                self._open = None
                self._done = True
                self._emit(AskForCard("expired", "too late: please tap your card"))
            return
        if self._done or self._attempts >= self.max_attempts or now < self._next_at:
            return
        try:
            image = self.camera.read()
        except Exception as exc:  # a camera fault must not stop the checkout: cards still work
            logger.warning("customer camera: %s", exc)
            image = None
        if image is None:
            self._next_at = now + self.retry_after_s
            return
        self._frames.append(image)
        self._next_at = now + self.burst_s / self.burst_frames
        if len(self._frames) < self.burst_frames:
            return
        burst, self._frames = self._frames, []
        self._attempts += 1
        answer = self.payment.propose(burst)
        del burst
        if isinstance(answer, FaceProposal):
            self._open, self._open_at = answer, self.clock()
        else:
            self._next_at = self.clock() + self.retry_after_s
            if answer.code == "no_enrolments":
                self._done = True
        self._emit(answer)

    def confirm(self, proposal: FaceProposal) -> PaymentOutcome | AskForCard:
        """The diner tapped "that's me": charge the tray to the proposed account.

        Returns the payment path's outcome (paid, or declined with a reason), or
        :class:`AskForCard` when the proposal is no longer the open one (the tray left, a card
        was tapped, too late).
        """
        current = self._open
        self._open = None
        if (
            current is None
            or current.proposal_id != proposal.proposal_id
            or self.session.state is not CheckoutState.AWAITING_PAYMENT
        ):
            return AskForCard("expired", "please tap your card")
        self._done = True
        return self.payment.confirm(self.session, proposal)

    def reject(self, proposal: FaceProposal) -> None:
        """The diner tapped "not me": forget the proposal; face is not tried again for this
        checkout."""
        if self._open is not None and self._open.proposal_id == proposal.proposal_id:
            self._open = None
        self._done = True
        self.payment.reject(proposal)


class FaceEnrolmentDesk:
    """The enrolment screen's work, run where the session lives (the worker thread).

    Args:
        parts: the terminal's face parts (``Terminal.face``).
        camera: the customer camera; None: no capture here (deletion still works).
        frames_needed: good frames an enrolment takes.
    """

    def __init__(
        self, parts: FaceParts, camera: CustomerCamera | None, *, frames_needed: int = 3
    ) -> None:
        self.parts = parts
        self.camera = camera
        self.frames_needed = frames_needed
        self._flow: EnrolmentFlow | None = None

    @property
    def can_capture(self) -> bool:
        return self.camera is not None

    def start(self) -> EnrolmentStep:
        """A fresh enrolment (what was taken before is dropped)."""
        self._flow = self.parts.new_enrolment(self.frames_needed)
        return EnrolmentStep("please look at the camera", (), 0, self.frames_needed, False)

    def capture(self) -> tuple[Image | None, EnrolmentStep | None]:
        """Read one frame from the customer camera and feed it to the enrolment; the frame (to
        show, not to keep) and what the flow said. ``(None, None)``: no frame came."""
        if self.camera is None:
            return None, None
        flow = self._flow or self._new_flow()
        image = self.camera.read()
        if image is None:
            return None, None
        return image, flow.feed(image)

    def _new_flow(self) -> EnrolmentFlow:
        self._flow = self.parts.new_enrolment(self.frames_needed)
        return self._flow

    def cancel(self) -> None:
        """Drop the enrolment in progress."""
        self._flow = None

    def enrol(
        self, account_id: str, *, given_by: str, actor: str, card_id: str | None = None
    ) -> FaceEnrolmentReceipt:
        """Enrol the frames taken under the diner's consent (audited by ``FaceAccounts``).

        Raises:
            terminal.backend.face_sync.FaceEnrolmentError: no consent, too few frames, or
                refused by the backend (unknown account, a card of another account).
        """
        flow = self._flow or self._new_flow()
        enrolment = flow.finish(FaceConsent(given_by.strip(), CONSENT_VERSION))
        receipt = self.parts.accounts.enrol(account_id, enrolment, actor=actor, card_id=card_id)
        self._flow = None
        return receipt

    def delete(
        self, account_id: str, *, actor: str, card_id: str | None = None, reason: str = ""
    ) -> int:
        """Delete every face template of the account (audited); how many there were."""
        return self.parts.accounts.delete(account_id, actor=actor, reason=reason, card_id=card_id)


__all__ = [
    "CONSENT_TEXT",
    "CONSENT_VERSION",
    "CustomerCamera",
    "FaceAnswer",
    "FaceCheckout",
    "FaceEnrolmentDesk",
    "ReplayCustomerCamera",
]
