"""Camera calibration on a frame of the empty scanner: tray area, exposure, white balance, focus.

The tray area comes from corners the technician clicked (:func:`tray_area_from_corners`) or
is found automatically (:func:`find_tray_area`); the checks measure the empty tray area and
say, in words a technician can act on, what is wrong with the picture. Nothing here opens a
window: a technician who wants to see the area passes ``--overlay`` to the CLI and opens the
picture it writes.

Areas are ``(x1, y1, x2, y2)`` pixels with x2 and y2 exclusive, as numpy slices them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypedDict

import cv2
import numpy as np
import numpy.typing as npt

from calibration.profile import CalibrationError, CameraProfile, now_iso

logger = logging.getLogger(__name__)

Area = tuple[int, int, int, int]
Image = npt.NDArray[np.uint8]

#: The smallest share of the frame an automatically found tray may cover.
MIN_TRAY_FRACTION = 0.15
#: A clicked area narrower or lower than this many pixels is a mis-click.
MIN_AREA_SIDE_PX = 16
#: The acceptable mean grey level of the empty tray area.
BRIGHTNESS_MIN = 50.0
BRIGHTNESS_MAX = 220.0
#: Grey levels counted as clipped to black / to white, and the share of them allowed.
DARK_LEVEL = 5
BRIGHT_LEVEL = 250
MAX_CLIPPED_FRACTION = 0.05
#: The acceptable range of each grey-world gain.
GAIN_MIN = 0.85
GAIN_MAX = 1.15
#: The least variance of the Laplacian of an area in focus. Scenes differ: a ribbed or
#: printed tray gives hundreds, a plain one less, so a plain tray wants a focus card on it.
FOCUS_MIN = 100.0

# A contour whose area fills less of its rotated bounding box than this is not a tray.
_MIN_RECTANGULARITY = 0.8
# Frames are searched at about this width: enough for a tray's outline, and fast.
_SEARCH_WIDTH = 640


class ExposureReport(TypedDict):
    """What :func:`exposure_check` found.

    Keys:
        mean: mean grey level 0..255 of the area.
        dark_fraction: share of pixels clipped to black.
        bright_fraction: share of pixels clipped to white.
        ok: all within the limits.
        problem: what is wrong and what to do, or None.
    """

    mean: float
    dark_fraction: float
    bright_fraction: float
    ok: bool
    problem: str | None


class WhiteBalanceReport(TypedDict):
    """What :func:`white_balance_check` found.

    Keys:
        r: gain that would make red match green.
        g: 1.0, green being the reference.
        b: gain that would make blue match green.
        ok: every gain within the limits.
        problem: what is wrong and what to do, or None.
    """

    r: float
    g: float
    b: float
    ok: bool
    problem: str | None


def _as_bgr(image: npt.NDArray[Any]) -> Image:
    """``image`` as 3-channel BGR uint8, refusing what cannot be a camera frame."""
    if image.size == 0 or image.ndim not in (2, 3):
        raise CalibrationError(f"not a camera frame: an array of shape {image.shape}")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.shape[2] != 3:
        raise CalibrationError(f"not a camera frame: {image.shape[2]} channels")
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def _grey(image: Image) -> Image:
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dtype=np.uint8)


def _crop(image: Image, area: Area) -> Image:
    x1, y1, x2, y2 = area
    height, width = image.shape[:2]
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise CalibrationError(f"tray area {area} does not lie inside the {width}x{height} frame")
    return image[y1:y2, x1:x2]


def parse_corners(text: str) -> list[tuple[int, int]]:
    """Corners written as ``"x,y x,y ..."`` (the CLI's ``--corners``).

    Raises:
        ValueError: a corner that is not two whole numbers; names it.
    """
    corners: list[tuple[int, int]] = []
    for part in text.replace(";", " ").split():
        pieces = part.split(",")
        try:
            x, y = (round(float(piece)) for piece in pieces)
        except ValueError:
            raise ValueError(f"corner {part!r} is not x,y in pixels") from None
        corners.append((x, y))
    return corners


def tray_area_from_corners(corners: Sequence[tuple[int, int]], width: int, height: int) -> Area:
    """The tray area from clicked corners.

    Args:
        corners: two opposite corners or all four, in any order.
        width: frame width; the area is clipped to the frame.
        height: frame height.

    Raises:
        CalibrationError: not 2 or 4 corners, or an area under ``MIN_AREA_SIDE_PX`` on a side
            once clipped (a double click, or corners outside the picture).
    """
    if len(corners) not in (2, 4):
        raise CalibrationError(
            f"give 2 opposite corners or all 4 corners of the tray, not {len(corners)}"
        )
    xs = [x for x, _ in corners]
    ys = [y for _, y in corners]
    x1, x2 = max(0, min(xs)), min(width, max(xs))
    y1, y2 = max(0, min(ys)), min(height, max(ys))
    if x2 - x1 < MIN_AREA_SIDE_PX or y2 - y1 < MIN_AREA_SIDE_PX:
        raise CalibrationError(
            f"the corners {list(corners)} make a {max(0, x2 - x1)}x{max(0, y2 - y1)} px area "
            f"inside the {width}x{height} frame, too small for a tray: click the tray's "
            f"opposite corners"
        )
    return (x1, y1, x2, y2)


def find_tray_area(image: npt.NDArray[Any], *, min_fraction: float = MIN_TRAY_FRACTION) -> Area:
    """Find the tray on a frame of the empty scanner.

    The tray is the largest roughly rectangular region that stands out from the counter:
    the grey frame is split by Otsu's threshold (both ways, for a light tray on a dark counter
    and a dark tray on a light one), and failing that by its edges; each outer contour that
    fills most of its rotated bounding box, covers at least ``min_fraction`` of the frame and
    does not span the frame from edge to edge is a candidate.

    Returns:
        The candidate's bounding box.

    Raises:
        CalibrationError: nothing tray-like covers ``min_fraction`` of the frame.
    """
    bgr = _as_bgr(image)
    height, width = bgr.shape[:2]
    scale = min(1.0, _SEARCH_WIDTH / width)
    grey = _grey(bgr)
    if scale < 1.0:
        grey = np.asarray(
            cv2.resize(
                grey,
                (round(width * scale), round(height * scale)),
                interpolation=cv2.INTER_AREA,
            ),
            dtype=np.uint8,
        )
    blurred = cv2.GaussianBlur(grey, (5, 5), 0)
    kernel = np.ones((5, 5), np.uint8)
    _, otsu = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    light: npt.NDArray[np.uint8] = np.asarray(otsu, dtype=np.uint8)
    dark: npt.NDArray[np.uint8] = 255 - light
    found = _best_candidate([light, dark], kernel, min_fraction)
    if found is None:
        edges = np.asarray(cv2.dilate(cv2.Canny(blurred, 30, 90), kernel), dtype=np.uint8)
        found = _best_candidate([edges], kernel, min_fraction)
    if found is None:
        raise CalibrationError(
            f"no tray found: nothing rectangular that stands out from the counter covers "
            f"{min_fraction:.0%} of the picture; put an empty tray under the camera and light "
            f"it evenly, or give the tray's corners instead"
        )
    x, y, box_width, box_height = found
    area = (
        max(0, round(x / scale)),
        max(0, round(y / scale)),
        min(width, round((x + box_width) / scale)),
        min(height, round((y + box_height) / scale)),
    )
    logger.info("tray found at %s in a %dx%d frame", area, width, height)
    return area


def _best_candidate(
    masks: Sequence[npt.NDArray[np.uint8]], kernel: npt.NDArray[np.uint8], min_fraction: float
) -> tuple[int, int, int, int] | None:
    """The bounding box ``(x, y, w, h)`` of the largest tray-like region of any mask."""
    best: tuple[float, tuple[int, int, int, int]] | None = None
    for mask in masks:
        height, width = mask.shape[:2]
        frame_area = float(width * height)
        # Opening drops specks, closing fills the tray's ribs and prints.
        cleaned = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        cleaned = cv2.morphologyEx(cleaned, cv2.MORPH_CLOSE, kernel)
        contours, _ = cv2.findContours(cleaned, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            area = float(cv2.contourArea(contour))
            if area < min_fraction * frame_area:
                continue
            x, y, box_width, box_height = (int(v) for v in cv2.boundingRect(contour))
            # A region from one edge of the frame to the opposite one is the counter, a
            # shadow or a lighting gradient, not a tray lying in the picture.
            if (x <= 1 and x + box_width >= width - 1) or (y <= 1 and y + box_height >= height - 1):
                continue
            (_, _), (rect_width, rect_height), _ = cv2.minAreaRect(contour)
            if area < _MIN_RECTANGULARITY * rect_width * rect_height:
                continue
            if best is None or area > best[0]:
                best = (area, (x, y, box_width, box_height))
    return best[1] if best is not None else None


def exposure_check(
    image: npt.NDArray[Any],
    area: Area,
    *,
    brightness_min: float = BRIGHTNESS_MIN,
    brightness_max: float = BRIGHTNESS_MAX,
    max_clipped_fraction: float = MAX_CLIPPED_FRACTION,
) -> ExposureReport:
    """Is the empty tray area exposed well enough to recognise dishes on it?

    Raises:
        CalibrationError: ``area`` does not lie inside the frame.
    """
    grey = _grey(_crop(_as_bgr(image), area))
    mean = float(grey.mean())
    dark = float(np.count_nonzero(grey <= DARK_LEVEL)) / grey.size
    bright = float(np.count_nonzero(grey >= BRIGHT_LEVEL)) / grey.size
    problem: str | None = None
    if mean < brightness_min:
        problem = (
            f"too dark: mean brightness {mean:.0f}, below {brightness_min:.0f}; add light over "
            f"the scanner or raise the camera's exposure or gain"
        )
    elif mean > brightness_max:
        problem = (
            f"too bright: mean brightness {mean:.0f}, above {brightness_max:.0f}; lower the "
            f"camera's exposure or dim the light over the scanner"
        )
    elif dark > max_clipped_fraction:
        problem = (
            f"{dark:.0%} of the tray area is black: shadows or a dark corner; light the "
            f"scanner evenly"
        )
    elif bright > max_clipped_fraction:
        problem = (
            f"{bright:.0%} of the tray area is blown out to white: glare or a reflection; "
            f"move or diffuse the light, or lower the exposure"
        )
    return ExposureReport(
        mean=round(mean, 1),
        dark_fraction=round(dark, 4),
        bright_fraction=round(bright, 4),
        ok=problem is None,
        problem=problem,
    )


def white_balance_check(
    image: npt.NDArray[Any],
    area: Area,
    *,
    gain_min: float = GAIN_MIN,
    gain_max: float = GAIN_MAX,
) -> WhiteBalanceReport:
    """Grey-world white balance of the empty tray area.

    The tray area should average to grey; the gains say how much red and blue would have to
    be scaled to match green. A coloured tray fails this too: check on a grey or white tray,
    or with a grey card on it. Clipped pixels are left out, as their colour is lost.

    Raises:
        CalibrationError: ``area`` does not lie inside the frame, or it is all clipped.
    """
    crop = _crop(_as_bgr(image), area).reshape(-1, 3).astype(np.float64)
    usable = crop[(crop.max(axis=1) < BRIGHT_LEVEL) & (crop.min(axis=1) > DARK_LEVEL)]
    if len(usable) == 0:
        raise CalibrationError(
            "the tray area is all black or all white: fix the exposure before white balance"
        )
    blue, green, red = (float(v) for v in usable.mean(axis=0))
    gains = {"r": green / max(red, 1e-6), "g": 1.0, "b": green / max(blue, 1e-6)}
    off = {name: gain for name, gain in gains.items() if not gain_min <= gain <= gain_max}
    problem: str | None = None
    if off:
        cast = _describe_cast(gains)
        listed = ", ".join(f"{name} {gain:.2f}" for name, gain in off.items())
        problem = (
            f"colour cast ({cast}): gain {listed} outside {gain_min}..{gain_max}; set the "
            f"camera's white balance for the canteen's lights (and lock it), or use "
            f"light of one colour over the scanner"
        )
    return WhiteBalanceReport(
        r=round(gains["r"], 3),
        g=1.0,
        b=round(gains["b"], 3),
        ok=problem is None,
        problem=problem,
    )


def _describe_cast(gains: dict[str, float]) -> str:
    """The tint a person sees, from the gains that would remove it."""
    tints = []
    if gains["b"] < 1.0 and gains["b"] < gains["r"]:
        tints.append("too blue")
    if gains["r"] < 1.0 and gains["r"] < gains["b"]:
        tints.append("too red")
    if gains["r"] > 1.0 and gains["b"] > 1.0:
        tints.append("too green")
    return ", ".join(tints) or "uneven colour"


def focus_measure(image: npt.NDArray[Any], area: Area) -> float:
    """Sharpness of the area: the variance of the Laplacian of its grey image.

    Raises:
        CalibrationError: ``area`` does not lie inside the frame.
    """
    grey = _grey(_crop(_as_bgr(image), area))
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def focus_ok(focus: float, *, min_focus: float = FOCUS_MIN) -> bool:
    """Whether a :func:`focus_measure` figure is sharp enough."""
    return focus >= min_focus


def focus_problem(focus: float, *, min_focus: float = FOCUS_MIN) -> str | None:
    """What to do about a blurred picture, or None when it is sharp enough."""
    if focus_ok(focus, min_focus=min_focus):
        return None
    return (
        f"out of focus: sharpness {focus:.0f}, below {min_focus:.0f}; turn the lens's focus "
        f"ring until the tray's edges are crisp, and clean the lens (a plain tray may need a "
        f"printed page on it to focus on)"
    )


def calibrate_camera(
    image: npt.NDArray[Any],
    *,
    corners: Sequence[tuple[int, int]] | None = None,
    auto: bool = False,
    now: Callable[[], str] = now_iso,
) -> CameraProfile:
    """The camera profile of a frame of the empty scanner.

    Args:
        image: a BGR frame of the empty scanner with an empty tray on it.
        corners: the tray's clicked corners (2 or 4).
        auto: find the tray automatically instead.
        now: the calibration's timestamp.

    Returns:
        The profile; its brightness, gains and focus are measurements, which
        :func:`camera_problems` judges.

    Raises:
        CalibrationError: neither or both of ``corners`` and ``auto``, or the area cannot be
            found or is degenerate.
    """
    if (corners is None) == (not auto):
        raise CalibrationError("give the tray's corners or ask to find it automatically (auto)")
    bgr = _as_bgr(image)
    height, width = bgr.shape[:2]
    area = (
        tray_area_from_corners(corners, width, height)
        if corners is not None
        else find_tray_area(bgr)
    )
    exposure = exposure_check(bgr, area)
    balance = white_balance_check(bgr, area)
    return CameraProfile(
        frame_width=width,
        frame_height=height,
        tray_area=area,
        empty_brightness=exposure["mean"],
        white_balance_gains=(balance["r"], balance["g"], balance["b"]),
        focus=round(focus_measure(bgr, area), 1),
        calibrated_at=now(),
    )


def camera_problems(profile: CameraProfile) -> list[str]:
    """What is wrong with a valid camera profile, one line each; empty when all is well.

    Judged from what the profile stores (mean brightness, gains, focus) with the default
    limits; clipping is only judged at calibration time, from the frame itself.
    """
    problems: list[str] = []
    brightness = profile.empty_brightness
    if not BRIGHTNESS_MIN <= brightness <= BRIGHTNESS_MAX:
        problems.append(
            f"camera: empty tray brightness {brightness:.0f} is outside "
            f"{BRIGHTNESS_MIN:.0f}..{BRIGHTNESS_MAX:.0f}; fix the light or exposure and run "
            f"`trayscan calibrate camera` again"
        )
    red, _, blue = profile.white_balance_gains
    off = [
        f"{name} {gain:.2f}"
        for name, gain in (("r", red), ("b", blue))
        if not GAIN_MIN <= gain <= GAIN_MAX
    ]
    if off:
        problems.append(
            f"camera: white balance gain {', '.join(off)} outside {GAIN_MIN}..{GAIN_MAX}; set "
            f"the camera's white balance and run `trayscan calibrate camera` again"
        )
    problem = focus_problem(profile.focus)
    if problem is not None:
        problems.append(f"camera: {problem}")
    return problems


def draw_area(image: npt.NDArray[Any], area: Area) -> Image:
    """A copy of ``image`` with the tray area outlined, for the technician to look at."""
    canvas = _as_bgr(image).copy()
    x1, y1, x2, y2 = area
    thickness = max(2, canvas.shape[1] // 400)
    cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), (0, 255, 0), thickness)
    return canvas
