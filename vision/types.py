"""The result types every recogniser backend converts into at its edge.

No ONNX Runtime, OpenCV or ultralytics type leaves ``vision/``: detectors return
:class:`Detections` (numpy arrays), recognisers return :class:`TrayRecognition` (plain values
the checkout core can hold without numpy).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Frame:
    """One camera frame: a BGR uint8 image, when it was taken, and where it came from."""

    image: npt.NDArray[np.uint8]
    timestamp: float
    index: int
    source: str = ""

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class Detections:
    """Dish regions found on one image.

    Attributes:
        boxes_xyxy: ``(N, 4)`` float32 pixel boxes, x1 y1 x2 y2, in the original image.
        scores: ``(N,)`` float32 detector confidences in 0..1.
        class_ids: ``(N,)`` int64 detector class ids (0 for a class-agnostic "dish" model).
    """

    boxes_xyxy: FloatArray
    scores: FloatArray
    class_ids: IntArray

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.boxes_xyxy.shape != (n, 4) or self.class_ids.shape != (n,):
            raise ValueError(
                f"Detections arrays disagree: boxes {self.boxes_xyxy.shape}, "
                f"scores {self.scores.shape}, class_ids {self.class_ids.shape}"
            )

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        """No detections."""
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64)
        )


class DishStatus(StrEnum):
    """How sure the recogniser is of a dish's name."""

    SURE = "sure"
    UNSURE = "unsure"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Candidate:
    """A possible name for a dish region, with its score (cosine or probability, 0..1)."""

    dish_id: str
    score: float


@dataclass(frozen=True)
class DishRecognition:
    """One dish on the tray as the recogniser sees it.

    ``dish_id`` is the best candidate's menu id, or None when the dish is unknown.
    """

    box_xyxy: tuple[float, float, float, float]
    status: DishStatus
    dish_id: str | None
    score: float
    candidates: tuple[Candidate, ...] = ()

    def __post_init__(self) -> None:
        if self.status is not DishStatus.UNKNOWN and self.dish_id is None:
            raise ValueError(f"a {self.status.value} dish needs a dish_id")


@dataclass(frozen=True)
class TrayRecognition:
    """Every dish found on one settled tray, and which model said so."""

    dishes: tuple[DishRecognition, ...]
    model_version: str
    elapsed_ms: float = 0.0
    image_size: tuple[int, int] = (0, 0)
    notes: tuple[str, ...] = field(default=())
