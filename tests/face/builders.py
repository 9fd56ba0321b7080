"""Builders of face test data: the shipped public-domain photos and bursts made from them.

The bursts simulate what a camera would see in front of the kiosk, from one still photo:

* :func:`still_burst`: the same frame again and again (a photo held in front of the camera);
* :func:`rigid_burst`: the photo moved as a flat object (small rotations, shifts and scaling:
  an affine map of the whole image), as a printed photo or a phone would move;
  :func:`tilted_burst`: the same picture tilted in depth (perspective);
* :func:`head_turn_burst`: a local warp that moves the nose region sideways relative to the eyes
  and the mouth, as the parallax of a real head turning does, plus a little shake;
* :func:`with_moire`: a fine diagonal grating over every frame, as a screen's pixel grid shows up
  when filmed;
* :func:`blink_burst`: the eye regions smoothed over in the middle frame (closed lids);
* :func:`with_sensor_noise`: every frame with its own noise, as a real camera's.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from terminal.devices.face.types import DetectedFace, Image

FACES = Path(__file__).resolve().parent.parent / "data" / "faces"
ASTRONAUT = FACES / "astronaut.png"
CAMERAMAN = FACES / "cameraman.png"
COFFEE = FACES / "coffee.png"


def load(path: Path) -> Image:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return np.asarray(image, dtype=np.uint8)


def flipped(image: Image) -> Image:
    return np.ascontiguousarray(image[:, ::-1])


def shifted(image: Image, dx: int = 40, dy: int = 25) -> Image:
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return np.asarray(
        cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
    )


def relit(image: Image, gain: float = 0.6, gamma: float = 1.0) -> Image:
    scaled = 255.0 * (image.astype(np.float32) / 255.0) ** gamma * gain
    return np.clip(scaled, 0, 255).astype(np.uint8)


def still_burst(image: Image, frames: int = 6) -> list[Image]:
    return [image.copy() for _ in range(frames)]


def rigid_burst(image: Image, frames: int = 6, seed: int = 0) -> list[Image]:
    """The photo moved by hand, frames about 100 ms apart: each frame turned by up to 1.5
    degrees, shifted by up to 4 px and scaled by up to 1.5% more than the one before."""
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    angle = scale = dx = dy = 0.0
    burst = []
    for _ in range(frames):
        matrix = cv2.getRotationMatrix2D((width / 2 + 30, height / 2 - 40), angle, 1 + scale)
        matrix[:, 2] += (dx, dy)
        burst.append(
            np.asarray(
                cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
            )
        )
        angle += rng.uniform(-1.5, 1.5)
        scale += rng.uniform(-0.015, 0.015)
        dx += rng.uniform(-4, 4)
        dy += rng.uniform(-4, 4)
    return burst


def tilted_burst(image: Image, frames: int = 6, seed: int = 0) -> list[Image]:
    """The photo tilted in depth: a perspective warp whose corners wander by up to 5 px a frame."""
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    offsets = np.zeros((4, 2), np.float32)
    burst = []
    for _ in range(frames):
        warp = cv2.getPerspectiveTransform(corners, corners + offsets)
        burst.append(
            np.asarray(
                cv2.warpPerspective(image, warp, (width, height), borderMode=cv2.BORDER_REFLECT)
            )
        )
        offsets += rng.uniform(-5, 5, offsets.shape).astype(np.float32)
    return burst


def head_turn_burst(
    image: Image, face: DetectedFace, frames: int = 6, amplitude_px: float = 6.0
) -> list[Image]:
    """A simulated head turn: the nose region slides from one side to the other by
    ``2 * amplitude_px`` relative to the eyes and mouth (a local warp), the whole face drifting
    a little. A 2D warp, not a 3D rotation: it imitates the parallax, nothing more."""
    height, width = image.shape[:2]
    nose = face.landmarks[2]
    sigma = 0.45 * face.eye_distance_px
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    bump = np.exp(-((xx - nose[0]) ** 2 + (yy - nose[1]) ** 2) / (2 * sigma**2))
    burst = []
    for i in range(frames):
        shift = amplitude_px * (2 * i / (frames - 1) - 1)
        map_x = (xx - shift * bump - 0.5 * i).astype(np.float32)
        map_y = (yy + 0.3 * i).astype(np.float32)
        burst.append(
            np.asarray(
                cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            )
        )
    return burst


def with_sensor_noise(burst: list[Image], sigma: float = 2.0, seed: int = 0) -> list[Image]:
    """Each frame with its own Gaussian noise, as a real camera's frames differ."""
    rng = np.random.default_rng(seed)
    return [
        np.clip(frame + rng.normal(0, sigma, frame.shape), 0, 255).astype(np.uint8)
        for frame in burst
    ]


def with_moire(burst: list[Image], period_px: float = 3.1, strength: float = 28.0) -> list[Image]:
    height, width = burst[0].shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    grating = strength * np.sin(2 * math.pi * (xx + 0.6 * yy) / period_px)
    return [
        np.clip(frame.astype(np.float32) + grating[..., None], 0, 255).astype(np.uint8)
        for frame in burst
    ]


def blink_burst(image: Image, face: DetectedFace, frames: int = 7) -> list[Image]:
    burst = [shifted(image, round(math.sin(i)), 0) for i in range(frames)]
    radius = int(0.22 * face.eye_distance_px)
    for i in (frames // 2,):
        frame = burst[i].copy()
        for x, y in face.landmarks[:2]:
            cx, cy = int(x) + round(math.sin(i)), int(y)
            region = frame[cy - radius : cy + radius, cx - 2 * radius : cx + 2 * radius]
            frame[cy - radius : cy + radius, cx - 2 * radius : cx + 2 * radius] = cv2.blur(
                region, (radius * 2 + 1, radius * 2 + 1)
            )
        burst[i] = frame
    return burst
