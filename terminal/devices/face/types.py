"""The two swappable parts of face accounts and the values they exchange.

A :class:`FaceDetector` finds faces (a box, five landmarks and a score) in a BGR frame; a
:class:`FaceEmbedder` turns one detected face into a template, a fixed-length float32 vector
whose Euclidean distance to another template of the *same* ``model_id`` says how alike the two
faces are. Everything else (quality checks, liveness, 1:N matching, enrolment, payment) sees
only these two interfaces, so a better detector or embedding model replaces either without
touching the rest. Templates of different models are never compared: the model id travels
with every template to the backend and back.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]
"""A BGR uint8 image, ``(H, W, 3)``, as OpenCV gives it."""

Template = npt.NDArray[np.float32]
"""One face template, ``(dim,)`` float32."""

#: The five landmarks, in YuNet's order: the person's right eye (on the image's left for a
#: frontal face), left eye, nose tip, right mouth corner, left mouth corner.
LANDMARK_NAMES = ("right_eye", "left_eye", "nose_tip", "right_mouth", "left_mouth")


class FaceModelError(RuntimeError):
    """A face model cannot be loaded or run; the message says what to install or fix."""


@dataclass(frozen=True)
class DetectedFace:
    """One face found in a frame.

    Attributes:
        box: ``(x, y, width, height)`` in pixels of the frame.
        landmarks: ``(5, 2)`` float32 pixel coordinates, in :data:`LANDMARK_NAMES` order.
        score: the detector's confidence, 0..1.
    """

    box: tuple[float, float, float, float]
    landmarks: npt.NDArray[np.float32]
    score: float

    @property
    def size_px(self) -> float:
        """The shorter side of the box: what "face too small" is measured on."""
        return float(min(self.box[2], self.box[3]))

    @property
    def eye_distance_px(self) -> float:
        """Distance between the eye centres, the face's natural unit of length."""
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))


class FaceDetector(ABC):
    """Finds faces in a frame. Implementations: ``YuNetDetector``, ``FakeFaceDetector``."""

    #: A short name for logs and benchmarks.
    name: str = "detector"

    @abstractmethod
    def detect(self, image: Image) -> list[DetectedFace]:
        """Every face in ``image`` (BGR uint8), best score first; empty when there is none."""


class FaceEmbedder(ABC):
    """Turns a detected face into a template. Implementations: ``DlibEmbedder``,
    ``FakeFaceEmbedder``.

    Attributes:
        model_id: names the model; templates are only compared with templates of the same id.
        dim: the template's length.
        match_threshold: the distance below which two templates of this model are taken to be
            the same person, as the model's authors recommend or as measured.
    """

    model_id: str = "embedder"
    dim: int = 128
    match_threshold: float = 0.6

    @abstractmethod
    def embed(self, image: Image, face: DetectedFace) -> Template:
        """The template of ``face`` in ``image`` (BGR uint8)."""


def as_templates(templates: object, dim: int | None = None) -> npt.NDArray[np.float32]:
    """``templates`` as a C-contiguous ``(N, dim)`` float32 matrix.

    Raises:
        ValueError: not a matrix of finite numbers, or of another width than ``dim``.
    """
    matrix = np.ascontiguousarray(np.asarray(templates, dtype=np.float32))
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2 or (dim is not None and matrix.shape[1] != dim):
        raise ValueError(f"templates must be (N, {dim or 'dim'}), got {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError("templates hold NaN or infinity")
    return matrix
