"""Is this frame good enough to enrol or match a face? Each failure is a reason a diner can act on.

The checks, in the order a diner would fix them: exactly one face; the detector sure it is a
face; the face big enough (close enough to the camera); sharp (the variance of the Laplacian of
the face, the usual blur measure, on a crop resized to a fixed size so that it does not depend on
the distance, and scaled to a fixed contrast so that a dark face is not taken for a blurred one);
frontal (from the five landmarks: the nose tip between the eyes for yaw, the eye line level for
roll, the nose between the eyes and the mouth for pitch); and lit (the mean grey level of the
face). The thresholds are in :class:`QualityPolicy` and in the ``face:``
section of the terminal's config.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from terminal.devices.face.types import DetectedFace, Image

logger = logging.getLogger(__name__)

#: The side, in pixels, face crops are resized to before sharpness and brightness are measured.
CROP_SIDE = 112


@dataclass(frozen=True)
class QualityPolicy:
    """Thresholds of the quality checks.

    Attributes:
        min_face_px: the face box's shorter side must be at least this many pixels.
        min_score: the detector's confidence must be at least this.
        min_sharpness: variance of the Laplacian of the face crop (112 px, contrast scaled to
            a standard deviation of 40 grey levels), at least.
        max_yaw: |nose offset from the eyes' midpoint| / eye distance, at most (0.25 is
            about 20 degrees).
        max_roll_deg: the eye line's tilt, at most.
        pitch_range: (nose below the eyes) / (mouth below the eyes) must lie in this range.
        brightness_range: the face crop's mean grey level must lie in this range.
    """

    min_face_px: float = 80.0
    min_score: float = 0.75
    min_sharpness: float = 50.0
    max_yaw: float = 0.25
    max_roll_deg: float = 20.0
    pitch_range: tuple[float, float] = (0.3, 0.8)
    brightness_range: tuple[float, float] = (50.0, 210.0)


@dataclass(frozen=True)
class QualityIssue:
    """One failed check: a stable ``code`` for programs and a ``message`` for the diner."""

    code: str
    message: str


@dataclass(frozen=True)
class QualityReport:
    """The verdict on one frame.

    Attributes:
        face: the face the checks were made on (the best one), or None when there is none.
        issues: every failed check; empty when the frame is good.
        measures: the measured values (``size_px``, ``sharpness``, ``yaw``, ``roll_deg``,
            ``pitch``, ``brightness``, ``score``), for diagnostics and tuning.
    """

    face: DetectedFace | None
    issues: tuple[QualityIssue, ...]
    measures: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.face is not None and not self.issues

    @property
    def reasons(self) -> list[str]:
        """The issues' messages, in order."""
        return [issue.message for issue in self.issues]


def face_crop(image: Image, face: DetectedFace, side: int = CROP_SIDE) -> np.ndarray:
    """The face box as a grey ``side x side`` crop (clipped to the frame)."""
    x, y, w, h = face.box
    height, width = image.shape[:2]
    left, top = max(0, int(x)), max(0, int(y))
    right, bottom = min(width, math.ceil(x + w)), min(height, math.ceil(y + h))
    if right - left < 2 or bottom - top < 2:
        return np.zeros((side, side), np.uint8)
    grey = cv2.cvtColor(image[top:bottom, left:right], cv2.COLOR_BGR2GRAY)
    return np.asarray(cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA))


def sharpness_of(crop: np.ndarray) -> float:
    """Variance of the Laplacian of a grey crop scaled to a contrast (std) of 40 grey levels."""
    spread = float(crop.std())
    if spread < 1.0:
        return 0.0
    laplacian = cv2.Laplacian(crop.astype(np.float64), cv2.CV_64F)
    return float(laplacian.var()) * (40.0 / spread) ** 2


def pose(face: DetectedFace) -> tuple[float, float, float]:
    """``(yaw, roll_deg, pitch)`` from the five landmarks.

    ``yaw``: the nose tip's offset from the eyes' midpoint along the eye line, in eye
    distances (0 frontal). ``roll_deg``: the eye line's angle. ``pitch``: how far down the nose
    tip sits between the eye line (0) and the mouth line (1); about 0.5 when frontal.
    """
    right_eye, left_eye, nose, right_mouth, left_mouth = face.landmarks.astype(np.float64)
    eye_axis = left_eye - right_eye
    eye_distance = float(np.linalg.norm(eye_axis)) or 1.0
    unit = eye_axis / eye_distance
    normal = np.array([-unit[1], unit[0]])
    eye_mid = (right_eye + left_eye) / 2
    mouth_mid = (right_mouth + left_mouth) / 2
    yaw = float(np.dot(nose - eye_mid, unit)) / eye_distance
    roll = math.degrees(math.atan2(float(eye_axis[1]), float(eye_axis[0])))
    mouth_depth = float(np.dot(mouth_mid - eye_mid, normal)) or 1e-6
    pitch = float(np.dot(nose - eye_mid, normal)) / mouth_depth
    return yaw, roll, pitch


def check_quality(
    image: Image, faces: list[DetectedFace], policy: QualityPolicy | None = None
) -> QualityReport:
    """Check one frame whose faces were already detected.

    Args:
        image: the BGR frame.
        faces: what the detector found in it.
        policy: the thresholds (default :class:`QualityPolicy`).
    """
    policy = policy or QualityPolicy()
    if not faces:
        return QualityReport(
            None, (QualityIssue("no_face", "no face found: please look at the camera"),)
        )
    issues: list[QualityIssue] = []
    if len(faces) > 1:
        issues.append(
            QualityIssue(
                "several_faces",
                f"{len(faces)} faces in view: only the person paying may face the camera",
            )
        )
    face = faces[0]
    crop = face_crop(image, face)
    sharpness = sharpness_of(crop)
    brightness = float(crop.mean())
    yaw, roll, pitch = pose(face)
    measures = {
        "score": round(face.score, 3),
        "size_px": round(face.size_px, 1),
        "sharpness": round(sharpness, 1),
        "brightness": round(brightness, 1),
        "yaw": round(yaw, 3),
        "roll_deg": round(roll, 1),
        "pitch": round(pitch, 3),
    }
    if face.score < policy.min_score:
        issues.append(
            QualityIssue("low_score", "the face is not clearly visible: remove masks or glare")
        )
    if face.size_px < policy.min_face_px:
        issues.append(
            QualityIssue(
                "too_small",
                f"face too small ({face.size_px:.0f} px, at least {policy.min_face_px:.0f}): "
                "please come closer",
            )
        )
    if sharpness < policy.min_sharpness:
        issues.append(
            QualityIssue(
                "blurred",
                f"image blurred (sharpness {sharpness:.0f}, at least {policy.min_sharpness:.0f}):"
                " please hold still",
            )
        )
    if abs(yaw) > policy.max_yaw:
        side = "left" if yaw > 0 else "right"
        issues.append(
            QualityIssue(
                "not_frontal", f"face turned to the {side}: please look straight at the camera"
            )
        )
    if abs(roll) > policy.max_roll_deg:
        issues.append(QualityIssue("tilted", "head tilted: please hold your head straight"))
    low, high = policy.pitch_range
    if not low <= pitch <= high:
        where = "up" if pitch < low else "down"
        issues.append(
            QualityIssue(
                "not_frontal_pitch", f"face tilted {where}: please look straight at the camera"
            )
        )
    dark, bright = policy.brightness_range
    if brightness < dark:
        issues.append(
            QualityIssue("too_dark", f"face too dark (mean {brightness:.0f}): more light needed")
        )
    elif brightness > bright:
        issues.append(
            QualityIssue(
                "too_bright", f"face too bright (mean {brightness:.0f}): avoid direct light"
            )
        )
    return QualityReport(face, tuple(issues), measures)
