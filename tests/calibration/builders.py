"""Small builders for calibration tests: camera frames of a tray on a counter, and a technician."""

from __future__ import annotations

import re
from collections.abc import Callable

import cv2
import numpy as np
import numpy.typing as npt

from calibration.camera_cal import Area

Image = npt.NDArray[np.uint8]
WIDTH, HEIGHT = 320, 240
TRUE_AREA: Area = (40, 30, 280, 210)


def tray_frame(
    area: Area = TRUE_AREA,
    *,
    counter: int = 40,
    tray: int = 170,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Image:
    """A ribbed grey tray on a plain counter, as a fixed overhead camera sees it."""
    image = np.full((height, width, 3), counter, np.uint8)
    x1, y1, x2, y2 = area
    image[y1:y2, x1:x2] = tray
    for y in range(y1 + 6, y2 - 4, 10):  # the ribs give the focus check something to see
        image[y : y + 2, x1 + 6 : x2 - 6] = tray - 50
    return image


def blurred(image: Image, sigma: float = 3.0) -> Image:
    return np.asarray(cv2.GaussianBlur(image, (0, 0), sigma), dtype=np.uint8)


def tinted(image: Image, blue: float, red: float) -> Image:
    gains = np.array([blue, 1.0, red])
    return np.asarray(np.clip(image * gains, 0, 255), dtype=np.uint8)


def scaled(image: Image, factor: float) -> Image:
    return np.asarray(np.clip(image * factor, 0, 255), dtype=np.uint8)


def rotated_tray(angle: float) -> tuple[Image, Area]:
    """A tray turned by ``angle`` degrees on a noisy counter; and its true bounding box."""
    image = np.full((HEIGHT, WIDTH, 3), 50, np.uint8)
    corners = cv2.boxPoints(((160, 120), (200, 140), angle)).astype(np.int32)
    cv2.fillPoly(image, [corners], (180, 175, 170))
    noise = np.random.default_rng(0).normal(0, 5, image.shape)
    x, y, w, h = cv2.boundingRect(corners)
    return np.clip(image + noise, 0, 255).astype(np.uint8), (x, y, x + w, y + h)


def assert_near(found: Area, truth: Area, tolerance_px: int = 3) -> None:
    assert all(abs(a - b) <= tolerance_px for a, b in zip(found, truth, strict=True)), (
        found,
        truth,
    )


class Technician:
    """Answers the calibration's prompts by putting on the scale what each one asks for."""

    def __init__(self, place: Callable[[float], None], tares_g: dict[str, int]) -> None:
        self.place = place
        self.tares_g = tares_g
        self.prompts: list[str] = []
        self.said: list[str] = []

    def ask(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if prompt.startswith("Remove everything from the scale"):
            self.place(0.0)
        elif match := re.match(r"Place (?:the )?([\d.]+) g (?:reference|of test)", prompt):
            self.place(float(match[1]))
        elif match := re.match(r"Place an empty (\w+)", prompt):
            self.place(self.tares_g[match[1]])
        else:
            raise AssertionError(f"unexpected prompt {prompt!r}")
        return ""

    def say(self, text: str) -> None:
        self.said.append(text)
