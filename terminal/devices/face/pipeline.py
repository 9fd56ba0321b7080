"""One frame through the face models: detect, check quality, and embed when the frame is good.

:class:`FacePipeline` is the one object the enrolment flow, the payment path, the CLI and the
benchmark hold; it owns a :class:`~terminal.devices.face.types.FaceDetector`, a
:class:`~terminal.devices.face.types.FaceEmbedder` and the quality thresholds. Frames are never
kept, logged or written anywhere by it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from terminal.devices.face.quality import QualityPolicy, QualityReport, check_quality
from terminal.devices.face.types import (
    DetectedFace,
    FaceDetector,
    FaceEmbedder,
    Image,
    Template,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceObservation:
    """What one frame showed.

    Attributes:
        faces: every face found, best first.
        quality: the quality verdict on the best face.
        template: the best face's template, when the frame passed the quality checks (or when
            embedding was forced).
        timings_ms: ``detect`` and, when embedded, ``embed``.
    """

    faces: list[DetectedFace]
    quality: QualityReport
    template: Template | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def face(self) -> DetectedFace | None:
        return self.quality.face


class FacePipeline:
    """Detector + embedder + quality thresholds.

    Args:
        detector: finds faces.
        embedder: makes templates.
        policy: the quality thresholds.
    """

    def __init__(
        self, detector: FaceDetector, embedder: FaceEmbedder, policy: QualityPolicy | None = None
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.policy = policy or QualityPolicy()

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def observe(self, image: Image, *, embed: bool = True, force: bool = False) -> FaceObservation:
        """Detect and check one frame; embed its best face when it passes (or ``force``).

        Args:
            image: a BGR uint8 frame.
            embed: make a template (False: detection and quality only, for liveness frames).
            force: embed even a frame that failed the quality checks (diagnostics only).
        """
        started = time.perf_counter()
        faces = self.detector.detect(image)
        detected = time.perf_counter()
        quality = check_quality(image, faces, self.policy)
        timings = {"detect": (detected - started) * 1000}
        template = None
        if embed and quality.face is not None and (quality.ok or force):
            template = self.embedder.embed(image, quality.face)
            timings["embed"] = (time.perf_counter() - detected) * 1000
        return FaceObservation(faces, quality, template, timings)


def read_image(path: Path | str) -> Image:
    """A photo from disk as a BGR uint8 image.

    Raises:
        ValueError: the file is not an image OpenCV can read.
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not an image that can be read")
    return np.asarray(image, dtype=np.uint8)


def default_pipeline(
    policy: QualityPolicy | None = None,
    detector_model: Path | str | None = None,
    *,
    jitter: int = 0,
) -> FacePipeline:
    """YuNet and dlib's ResNet, the shipped models.

    Raises:
        terminal.devices.face.types.FaceModelError: a model is missing or dlib is not installed.
    """
    from terminal.devices.face.dlib_embedder import DlibEmbedder
    from terminal.devices.face.yunet import DEFAULT_YUNET_MODEL, YuNetDetector

    detector = YuNetDetector(detector_model or DEFAULT_YUNET_MODEL)
    return FacePipeline(detector, DlibEmbedder(jitter=jitter), policy)
