"""Paying by face: a burst of frames proposes an account, the diner's tap confirms it.

What the diner screen calls::

    payment = FacePayment(pipeline, matcher, liveness, backend, audit=audit)
    screen.show_prompt(payment.prompt_text)          # "please turn your head slightly ..."
    answer = payment.propose(frames)                 # about a second of camera frames
    if isinstance(answer, FaceProposal):
        screen.ask_confirm(answer.masked_name)       # one tap: "Pay as Wang **?"
        outcome = payment.confirm(session, answer)   # or payment.reject(answer): "not me"
    else:
        screen.show(answer.reason)                   # AskForCard: tap the card instead

:meth:`FacePayment.confirm` charges through ``terminal.payment.take_face_payment``, the same path
as a card: the same outbox, offline mode and offline limits. Every attempt is audited
(``face_match``: proposed, not live, not recognised, too close, poor frame; ``face_payment``:
confirmed and what the payment path said; ``face_rejected``: the diner said "not me"), with
distances and account ids, never a template or an image.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from terminal.core.audit import AuditLog
from terminal.core.ports import LedgerBackend
from terminal.core.session import CheckoutSession
from terminal.devices.face.liveness import LivenessCheck
from terminal.devices.face.matcher import FaceMatcher, MatchKind, mask_name
from terminal.devices.face.pipeline import FaceObservation, FacePipeline
from terminal.devices.face.quality import QualityReport
from terminal.devices.face.types import Image
from terminal.payment import PaymentOutcome, take_face_payment
from vision.types import Frame

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceProposal:
    """A face matched an account: show ``masked_name`` and ask the diner to confirm."""

    proposal_id: str
    account_id: str
    masked_name: str
    distance: float
    created_at: float


@dataclass(frozen=True)
class AskForCard:
    """No face payment this time; ``reason`` says why, for the diner.

    ``code``: ``not_live``, ``poor_frame``, ``no_match``, ``too_close``, ``no_enrolments``,
    ``expired`` (a confirm too late or twice).
    """

    code: str
    reason: str


class FacePayment:
    """Proposes and confirms face payments.

    Args:
        pipeline: the face models and quality thresholds.
        matcher: the enrolled templates.
        liveness: the anti-spoofing check run on every burst.
        backend: the payment backend (the embedded ledger, or the outbox in front of a remote
            one), as for a card.
        audit: the audit log (every attempt is written to it).
        actor: the audit entries' actor.
        proposal_ttl_s: a proposal not confirmed within this is void.
        clock: seconds since the epoch.
    """

    def __init__(
        self,
        pipeline: FacePipeline,
        matcher: FaceMatcher,
        liveness: LivenessCheck,
        backend: LedgerBackend,
        *,
        audit: AuditLog | None = None,
        actor: str = "face",
        proposal_ttl_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pipeline = pipeline
        self.matcher = matcher
        self.liveness = liveness
        self.backend = backend
        self.audit = audit
        self.actor = actor
        self.proposal_ttl_s = proposal_ttl_s
        self._clock = clock
        self._open: FaceProposal | None = None

    @property
    def prompt_text(self) -> str:
        """What to ask the diner while the frames are taken."""
        return self.liveness.prompt_text

    def _audit(self, action: str, details: dict[str, object]) -> None:
        if self.audit is not None:
            self.audit.append(self.actor, action, details)

    def propose(self, frames: Sequence[Image | Frame]) -> FaceProposal | AskForCard:
        """Check a burst of frames for a live, good, known face.

        Args:
            frames: about a second of the customer camera's frames, oldest first.
        """
        self._open = None
        images = [frame.image if isinstance(frame, Frame) else frame for frame in frames]
        observations = [self.pipeline.observe(image, embed=False) for image in images]
        single = [o.faces[0] if len(o.faces) == 1 else None for o in observations]
        verdict = self.liveness.evaluate(images, single)
        if not verdict.live:
            return self._ask(
                "not_live", verdict.reason, {"liveness": verdict.code, **verdict.measures}
            )
        best = _best_frame(observations)
        if best is None:
            last = observations[-1].quality if observations else None
            reason = last.reasons[0] if last and last.reasons else "please look at the camera"
            return self._ask("poor_frame", reason, {"issues": _codes(last)})
        index, observation = best
        face = observation.face
        assert face is not None
        template = self.pipeline.embedder.embed(images[index], face)
        result = self.matcher.search(template)
        details: dict[str, object] = {
            "distance": _round(result.distance),
            "runner_up_distance": _round(result.runner_up_distance),
            "threshold": self.matcher.threshold,
            "margin": self.matcher.margin,
        }
        if result.kind is MatchKind.EMPTY:
            return self._ask("no_enrolments", "no face accounts here: please tap your card", {})
        if result.kind is MatchKind.NO_MATCH:
            return self._ask("no_match", "face not recognised: please tap your card", details)
        if result.kind is MatchKind.TOO_CLOSE:
            details["candidates"] = [result.account_id, result.runner_up_account_id]
            return self._ask(
                "too_close",
                "two accounts look alike to the camera: please tap your card",
                details,
            )
        assert result.account_id is not None
        proposal = FaceProposal(
            uuid.uuid4().hex,
            result.account_id,
            mask_name(result.display_name),
            result.distance,
            self._clock(),
        )
        self._open = proposal
        self._audit(
            "face_match",
            {"outcome": "proposed", "account_id": result.account_id, **details},
        )
        logger.info("face proposed account %s (distance %.3f)", result.account_id, result.distance)
        return proposal

    def _ask(self, code: str, reason: str, details: dict[str, object]) -> AskForCard:
        self._audit("face_match", {"outcome": code, **details})
        logger.info("face payment not proposed: %s", code)
        return AskForCard(code, reason)

    def confirm(
        self, session: CheckoutSession, proposal: FaceProposal
    ) -> PaymentOutcome | AskForCard:
        """The diner tapped "pay": charge the tray to the proposed account, like a card.

        Returns the payment path's outcome (paid, or declined with a reason, e.g. the offline
        limit), or :class:`AskForCard` when the proposal is not the open one or has expired.
        """
        current = self._open
        self._open = None
        if current is None or current.proposal_id != proposal.proposal_id:
            return self._ask("expired", "please look at the camera again or tap your card", {})
        if self._clock() - current.created_at > self.proposal_ttl_s:
            return self._ask("expired", "too late: please look at the camera again", {})
        outcome = take_face_payment(session, self.backend, current.account_id)
        self._audit(
            "face_payment",
            {
                "account_id": current.account_id,
                "paid": outcome.receipt is not None,
                "transaction_id": outcome.receipt.transaction_id if outcome.receipt else None,
                "offline": bool(outcome.receipt and outcome.receipt.offline),
                "declined": outcome.declined,
            },
        )
        return outcome

    def reject(self, proposal: FaceProposal) -> None:
        """The diner said "not me": forget the proposal and note it."""
        if self._open is not None and self._open.proposal_id == proposal.proposal_id:
            self._open = None
        self._audit("face_rejected", {"account_id": proposal.account_id})


def _best_frame(observations: Sequence[FaceObservation]) -> tuple[int, FaceObservation] | None:
    """The good frame with the most frontal face (then the sharpest)."""
    good = [(i, o) for i, o in enumerate(observations) if o.quality.ok]
    if not good:
        return None
    return min(
        good,
        key=lambda item: (
            abs(item[1].quality.measures.get("yaw", 0.0)),
            -item[1].quality.measures.get("sharpness", 0.0),
        ),
    )


def _codes(report: QualityReport | None) -> list[str]:
    return [issue.code for issue in report.issues] if report else []


def _round(value: float) -> float | None:
    return None if value == float("inf") else round(value, 4)
