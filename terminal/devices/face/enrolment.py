"""Enrolling a diner's face: frames in, guidance out, templates and a consent record at the end.

:class:`EnrolmentFlow` is what an enrolment screen drives (it holds no Qt): the screen shows
the camera, calls :meth:`EnrolmentFlow.feed` with each frame and shows the returned
:class:`EnrolmentStep` (``guidance``, and ``reasons`` when the frame was refused), until
``step.done``; then it shows the consent text (version
:data:`~terminal.backend.face_sync.CONSENT_TEXT_VERSION`), and only after the diner agrees calls
:meth:`EnrolmentFlow.finish` with a :class:`~terminal.backend.face_sync.FaceConsent`, and gives
the resulting :class:`FaceEnrolment` to ``FaceAccounts.enrol``. No frame is kept: only the
templates of the accepted frames.

:func:`enrol_photos` does the same for a folder of photos (``trayscan face enroll``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from terminal.backend.face_sync import MAX_TEMPLATES, FaceConsent, FaceEnrolmentError
from terminal.devices.face.pipeline import FacePipeline, read_image
from terminal.devices.face.types import Image, Template

logger = logging.getLogger(__name__)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class EnrolmentStep:
    """What to show after one frame.

    Attributes:
        guidance: one sentence for the diner.
        reasons: why this frame was not taken (empty when it was).
        accepted: frames taken so far.
        needed: frames needed.
        done: enough frames: ask for consent next.
    """

    guidance: str
    reasons: tuple[str, ...]
    accepted: int
    needed: int
    done: bool


@dataclass(frozen=True)
class FaceEnrolment:
    """Templates ready for the backend, with the consent they were given under."""

    templates: npt.NDArray[np.float32]
    model: str
    consent: FaceConsent


class EnrolmentFlow:
    """Collects good frames of one face.

    Args:
        pipeline: the face models and quality thresholds.
        frames_needed: good frames to take (each gives one template).
        min_change: a frame whose template is closer than this to one already taken adds
            nothing and is skipped (the diner is asked to move a little).
    """

    def __init__(
        self, pipeline: FacePipeline, *, frames_needed: int = 3, min_change: float = 0.02
    ) -> None:
        if not 1 <= frames_needed <= MAX_TEMPLATES:
            raise ValueError(f"frames_needed must be 1..{MAX_TEMPLATES}")
        self.pipeline = pipeline
        self.frames_needed = frames_needed
        self.min_change = min_change
        self._templates: list[Template] = []

    @property
    def accepted(self) -> int:
        return len(self._templates)

    @property
    def done(self) -> bool:
        return self.accepted >= self.frames_needed

    def reset(self) -> None:
        """Start again (the diner stepped away, or another diner)."""
        self._templates = []

    def feed(self, image: Image) -> EnrolmentStep:
        """Look at one frame and take it when it is good."""
        if self.done:
            return self._step("thank you: please read and accept the consent", ())
        observation = self.pipeline.observe(image)
        if observation.template is None:
            reasons = tuple(observation.quality.reasons)
            return self._step(reasons[0] if reasons else "please look at the camera", reasons)
        template = observation.template
        if self._templates:
            distances = np.linalg.norm(np.stack(self._templates) - template, axis=1)
            if float(distances.max()) > self.pipeline.embedder.match_threshold:
                reason = "a different face: only the person enrolling may face the camera"
                return self._step(reason, (reason,))
            if float(distances.min()) < self.min_change:
                return self._step("please move your head a little", ())
        self._templates.append(template)
        if self.done:
            return self._step("thank you: please read and accept the consent", ())
        return self._step(f"good ({self.accepted} of {self.frames_needed}): please hold still", ())

    def _step(self, guidance: str, reasons: tuple[str, ...]) -> EnrolmentStep:
        return EnrolmentStep(guidance, reasons, self.accepted, self.frames_needed, self.done)

    def finish(self, consent: FaceConsent | None) -> FaceEnrolment:
        """The templates with the diner's consent.

        Raises:
            FaceEnrolmentError: no consent, or not enough good frames yet.
        """
        if consent is None:
            raise FaceEnrolmentError("no consent: the face cannot be enrolled")
        consent.check()
        if not self.done:
            raise FaceEnrolmentError(
                f"only {self.accepted} of {self.frames_needed} good frames: keep looking at the "
                "camera"
            )
        templates = np.stack(self._templates).astype(np.float32)
        return FaceEnrolment(templates, self.pipeline.model_id, consent)


@dataclass(frozen=True)
class PhotoReport:
    """How one photo fared: accepted, or the reasons it was not."""

    path: Path
    accepted: bool
    reasons: tuple[str, ...]
    measures: dict[str, float]


def photos_in(folder: Path) -> list[Path]:
    """The photos of a folder, by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)


def enrol_photos(
    pipeline: FacePipeline, photos: Sequence[Path]
) -> tuple[npt.NDArray[np.float32], list[PhotoReport]]:
    """Templates from the photos that pass the quality checks, and a report per photo.

    Photos of another person than the majority (farther than the model's threshold from the
    others) are refused too: one account, one face.
    """
    reports: list[PhotoReport] = []
    taken: list[tuple[int, Template]] = []
    for path in photos:
        try:
            image = read_image(path)
        except ValueError as exc:
            reports.append(PhotoReport(path, False, (str(exc),), {}))
            continue
        observation = pipeline.observe(image)
        if observation.template is None:
            reports.append(
                PhotoReport(
                    path, False, tuple(observation.quality.reasons), observation.quality.measures
                )
            )
            continue
        taken.append((len(reports), observation.template))
        reports.append(PhotoReport(path, True, (), observation.quality.measures))
    if len(taken) > 1:
        matrix = np.stack([template for _, template in taken])
        distances = np.linalg.norm(matrix[:, None, :] - matrix[None, :, :], axis=2)
        threshold = pipeline.embedder.match_threshold
        agree = (distances <= threshold).sum(axis=1)
        keep = agree * 2 > len(taken)
        for (index, _), kept in zip(taken, keep, strict=True):
            if not kept:
                old = reports[index]
                reason = "a different person from the other photos"
                reports[index] = PhotoReport(old.path, False, (reason,), old.measures)
        taken = [item for item, kept in zip(taken, keep, strict=True) if kept]
    templates = (
        np.stack([template for _, template in taken]).astype(np.float32)
        if taken
        else np.zeros((0, pipeline.embedder.dim), np.float32)
    )
    return templates[:MAX_TEMPLATES], reports
