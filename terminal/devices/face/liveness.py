"""Anti-spoofing basics: is a live person in front of the camera, or a photo or a screen?

Over a short burst of frames (about a second) :class:`LivenessCheck` asks for four things, each
with a reason when it fails:

1. **Natural motion.** A live face is never perfectly still: its landmarks move by a little and
   the pixels change from frame to frame. Identical frames, or landmarks that do not move at all,
   are a still photo (or a frozen picture on a screen): ``still_image``.
2. **Depth, shown by a head turn** (the default prompt, "turn your head slightly"). Anything
   *flat* (a printed photo, a phone or a screen showing a face) moves in front of a camera as a
   plane does: the image motion of every point of the face between two frames is one
   homography (a shift, turn, tilt or scaling of the picture included). A real head is not
   flat: the nose stands about a third of an eye distance in front of the cheeks, so when the
   head turns the nose moves differently from the rest of the face (parallax). The check
   measures dense optical flow (Farneback) over the face between consecutive frames, fits a
   homography to it robustly (RANSAC: the plane of the cheeks and forehead), and adds up the
   flow the homography does not explain, point by point, over the burst. The 95th percentile
   of that accumulated residual, in eye distances, is the ``parallax``; a flat picture keeps
   it at the flow's noise (about 0.01 on the simulated bursts), a head turn of a few degrees
   raises it well above ``min_parallax``. Motion without parallax is a flat picture:
   ``flat_picture``.
3. **Or a blink** (prompt ``blink``, or ``either``): the eyes' appearance (the vertical
   gradient energy around each eye centre, relative to the burst's median) drops in a middle
   frame and comes back.
4. **No screen pattern.** A face filmed off a screen carries the screen's pixel grid as moiré:
   sharp, isolated peaks in the high frequencies of the face crop's spectrum, which a natural
   face (whose spectrum falls off smoothly) does not have: ``screen_pattern``.

Limits, honestly: these are *basics* against casual attacks, not a certified presentation-attack
detector (ISO/IEC 30107-3). A video of the enrolled diner turning their head, replayed on a
screen whose pixel grid the camera does not resolve (a high-resolution screen held far away, or
out of focus), passes checks 1-3, and check 4 then depends on the optics; a 3D mask passes
check 2. The blink measure is a heuristic on a 5-landmark detector that has no eyelid points:
glasses with glare can hide a blink, and a replayed video can blink. The thresholds were set on
simulated bursts (the astronaut photo moved rigidly, re-warped to mimic a head turn, overlaid
with a moiré grating), not on a spoofing data set; a deployment should measure them on its own
camera. Spending the money still needs the diner's tap on the confirm button, so a spoof that
passes only proposes a payment.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from terminal.core.audit import AuditLog
from terminal.devices.face.quality import face_crop
from terminal.devices.face.types import DetectedFace, Image

logger = logging.getLogger(__name__)

Prompt = Literal["head_turn", "blink", "either"]

PROMPT_TEXT: dict[str, str] = {
    "head_turn": "please turn your head slightly to the left and right",
    "blink": "please blink",
    "either": "please blink or turn your head slightly",
}


@dataclass(frozen=True)
class LivenessPolicy:
    """Thresholds of the liveness check (the ``face.liveness`` section of the config).

    Attributes:
        prompt: what the diner is asked to do: ``head_turn``, ``blink`` or ``either``.
        min_frames: frames with exactly one face needed.
        min_motion: the landmarks must move at least this much (eye distances, largest
            movement of any landmark from the first frame).
        min_frame_change: consecutive face crops must differ by at least this mean grey level
            somewhere in the burst.
        min_parallax: the accumulated non-planar motion of the face (95th percentile, eye
            distances) a head turn must show.
        blink_drop: a blink is an eye-openness measure this far below the burst's median.
        check_screen: look for a screen's moiré.
        max_screen_peak: the largest high-frequency spectral peak, over the median of that
            band, that still passes.
    """

    prompt: Prompt = "head_turn"
    min_frames: int = 5
    min_motion: float = 0.01
    min_frame_change: float = 0.5
    min_parallax: float = 0.03
    blink_drop: float = 0.35
    check_screen: bool = True
    max_screen_peak: float = 60.0


@dataclass(frozen=True)
class LivenessVerdict:
    """The answer on one burst.

    Attributes:
        live: passed every check.
        code: ``live`` or why not: ``too_few_frames``, ``still_image``, ``flat_picture``,
            ``no_blink``, ``screen_pattern``.
        reason: a sentence for the diner (or the audit).
        measures: what was measured (``frames``, ``motion``, ``frame_change``, ``parallax``,
            ``blink_depth``, ``screen_peak``), numbers only.
    """

    live: bool
    code: str
    reason: str
    measures: dict[str, float] = field(default_factory=dict)


def planar_parallax(
    images: Sequence[Image], faces: Sequence[DetectedFace], side: int = 128
) -> float:
    """How much the face moved unlike a flat picture over the burst, in eye distances.

    The union of the face boxes is resized to ``side`` pixels wide; between each pair of
    consecutive frames the dense flow is fitted with a homography (RANSAC, 0.5 px), and the
    flow it does not explain is added up point by point. Returns the largest 95th percentile
    of that running sum's length over the burst.
    """
    boxes = np.array([face.box for face in faces], dtype=np.float64)
    height, width = images[0].shape[:2]
    x0, y0 = max(0, int(boxes[:, 0].min())), max(0, int(boxes[:, 1].min()))
    x1 = min(width, int(np.ceil((boxes[:, 0] + boxes[:, 2]).max())))
    y1 = min(height, int(np.ceil((boxes[:, 1] + boxes[:, 3]).max())))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return 0.0
    scale = side / (x1 - x0)
    size = (side, max(16, round((y1 - y0) * scale)))
    greys = [
        cv2.resize(
            cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY),
            size,
            interpolation=cv2.INTER_AREA,
        )
        for image in images
    ]
    ys, xs = np.mgrid[4 : size[1] - 4 : 3, 4 : size[0] - 4 : 3]
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    rows, cols = points[:, 1].astype(np.intp), points[:, 0].astype(np.intp)
    unit = float(np.median([face.eye_distance_px for face in faces])) * scale
    accumulated = np.zeros_like(points)
    largest = 0.0
    for before, after in itertools.pairwise(greys):
        # pyramid 0.5 x 4 levels and a 21 px window: robust to the few pixels a face moves
        # between frames at 128 px wide.
        flow = np.zeros((*before.shape, 2), np.float32)
        flow = np.asarray(
            cv2.calcOpticalFlowFarneback(before, after, flow, 0.5, 4, 21, 5, 5, 1.1, 0)
        )
        moved = (points + flow[rows, cols]).astype(np.float32)
        homography, _ = cv2.findHomography(points, moved, cv2.RANSAC, 0.5)
        if homography is None:
            continue
        planar = cv2.perspectiveTransform(points[None], homography)[0]
        accumulated += moved - planar
        spread = float(np.percentile(np.linalg.norm(accumulated, axis=1), 95))
        largest = max(largest, spread / max(unit, 1.0))
    return largest


def eye_openness(image: Image, face: DetectedFace) -> float:
    """Vertical gradient energy around both eye centres, relative to their brightness.

    An open eye (iris and pupil between the lids) has strong horizontal edges; a closed lid is
    smooth skin with one lash line.
    """
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    distance = max(face.eye_distance_px, 4.0)
    half_w, half_h = int(distance * 0.25) + 1, int(distance * 0.15) + 1
    energies = []
    for x, y in face.landmarks[:2]:
        cx, cy = round(float(x)), round(float(y))
        patch = grey[max(0, cy - half_h) : cy + half_h + 1, max(0, cx - half_w) : cx + half_w + 1]
        if patch.size < 9:
            continue
        gradient = np.abs(cv2.Sobel(patch, cv2.CV_32F, 0, 1, ksize=3))
        energies.append(float(gradient.mean()) / (float(patch.mean()) + 10.0))
    return float(np.mean(energies)) if energies else 0.0


def screen_peak(image: Image, face: DetectedFace) -> float:
    """The strongest isolated peak in the high frequencies of the face crop's spectrum,
    relative to that band's median: large for a screen's moiré, small for a face."""
    crop = face_crop(image, face, 128).astype(np.float32)
    crop -= crop.mean()
    window = np.outer(np.hanning(128), np.hanning(128)).astype(np.float32)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(crop * window)))
    yy, xx = np.mgrid[-64:64, -64:64]
    radius = np.hypot(xx, yy)
    band = spectrum[(radius > 20) & (radius < 62)]
    median = float(np.median(band)) + 1e-6
    return float(band.max()) / median


class LivenessCheck:
    """Checks a burst of frames for a live face (see the module docstring).

    Args:
        policy: the thresholds and the prompt.
        audit: where every attempt is logged (``face_liveness``), with the measures only,
            never an image; None logs nothing.
        actor: the audit entries' actor.
    """

    def __init__(
        self,
        policy: LivenessPolicy | None = None,
        *,
        audit: AuditLog | None = None,
        actor: str = "face",
    ) -> None:
        self.policy = policy or LivenessPolicy()
        self.audit = audit
        self.actor = actor

    @property
    def prompt_text(self) -> str:
        """What to ask the diner while the burst is taken."""
        return PROMPT_TEXT[self.policy.prompt]

    def evaluate(
        self,
        images: Sequence[Image],
        faces: Sequence[DetectedFace | None],
        *,
        context: Mapping[str, object] | None = None,
    ) -> LivenessVerdict:
        """Judge a burst: the frames and the one face found in each (None where there was
        none, or more than one). Only measures are kept or logged, never an image.

        Args:
            images: the frames, oldest first.
            faces: the face in each frame.
            context: extra audit details (e.g. the purpose: ``payment``).
        """
        verdict = self._judge(images, faces)
        logger.info("liveness: %s (%s)", verdict.code, verdict.measures)
        if self.audit is not None:
            details: dict[str, object] = {
                "live": verdict.live,
                "code": verdict.code,
                "prompt": self.policy.prompt,
                "measures": verdict.measures,
            }
            details.update(context or {})
            self.audit.append(self.actor, "face_liveness", details)
        return verdict

    def _judge(
        self, images: Sequence[Image], faces: Sequence[DetectedFace | None]
    ) -> LivenessVerdict:
        policy = self.policy
        pairs = [
            (image, face) for image, face in zip(images, faces, strict=True) if face is not None
        ]
        measures: dict[str, float] = {"frames": float(len(pairs))}
        if len(pairs) < policy.min_frames:
            return LivenessVerdict(
                False,
                "too_few_frames",
                f"the face was seen in {len(pairs)} frames, {policy.min_frames} are needed: "
                "please keep looking at the camera",
                measures,
            )
        first = pairs[0][1]
        unit = max(first.eye_distance_px, 1.0)
        motion = max(
            float(np.abs(face.landmarks - first.landmarks).max()) / unit for _, face in pairs
        )
        measures["motion"] = round(motion, 4)
        crops = [face_crop(image, face, 64) for image, face in pairs]
        frame_change = max(
            float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
            for a, b in itertools.pairwise(crops)
        )
        measures["frame_change"] = round(frame_change, 3)
        if motion < policy.min_motion or frame_change < policy.min_frame_change:
            return LivenessVerdict(
                False,
                "still_image",
                "no movement at all: a still picture is not accepted; "
                + PROMPT_TEXT[policy.prompt],
                measures,
            )
        parallax = planar_parallax([image for image, _ in pairs], [face for _, face in pairs])
        measures["parallax"] = round(parallax, 4)
        blink_depth = 0.0
        if policy.prompt in ("blink", "either"):
            blink_depth = _blink_depth([eye_openness(image, face) for image, face in pairs])
            measures["blink_depth"] = round(blink_depth, 3)
        turned = parallax >= policy.min_parallax
        blinked = blink_depth >= policy.blink_drop
        if policy.prompt == "head_turn" and not turned:
            return LivenessVerdict(
                False,
                "flat_picture",
                "the face moved like a flat picture (a photo or a screen): "
                + PROMPT_TEXT["head_turn"],
                measures,
            )
        if policy.prompt == "blink" and not blinked:
            return LivenessVerdict(False, "no_blink", "no blink seen: please blink", measures)
        if policy.prompt == "either" and not (turned or blinked):
            return LivenessVerdict(
                False,
                "flat_picture",
                "no blink or head turn seen: " + PROMPT_TEXT["either"],
                measures,
            )
        if policy.check_screen:
            peak = float(np.median([screen_peak(image, face) for image, face in pairs]))
            measures["screen_peak"] = round(peak, 1)
            if peak > policy.max_screen_peak:
                return LivenessVerdict(
                    False,
                    "screen_pattern",
                    "the camera sees a screen's pattern: show your face, not a picture of it",
                    measures,
                )
        return LivenessVerdict(True, "live", "live face", measures)


def _blink_depth(openness: list[float]) -> float:
    """How far the eyes' openness dips in a middle frame below the median, as a fraction, when
    it comes back up afterwards (a blink closes and reopens)."""
    if len(openness) < 3:
        return 0.0
    values = np.asarray(openness, dtype=np.float64)
    median = float(np.median(values))
    if median <= 0:
        return 0.0
    lowest = int(np.argmin(values[1:-1])) + 1
    reopened = float(values[lowest + 1 :].max()) >= 0.8 * median
    closed_before = float(values[:lowest].max()) >= 0.8 * median
    if not (reopened and closed_before):
        return 0.0
    return max(0.0, 1.0 - float(values[lowest]) / median)
