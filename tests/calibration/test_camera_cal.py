"""Camera calibration on synthetic frames of an empty scanner."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.camera_cal import (
    Area,
    calibrate_camera,
    camera_problems,
    exposure_check,
    find_tray_area,
    focus_measure,
    focus_ok,
    parse_corners,
    tray_area_from_corners,
    white_balance_check,
)
from calibration.profile import CalibrationError

from .builders import (
    HEIGHT,
    TRUE_AREA,
    WIDTH,
    Image,
    assert_near,
    blurred,
    rotated_tray,
    scaled,
    tinted,
    tray_frame,
)

# ---------------------------------------------------------------------------- tray area


@pytest.mark.parametrize(
    ("image", "truth"),
    [
        (tray_frame(), TRUE_AREA),
        (tray_frame((10, 60, 200, 230)), (10, 60, 200, 230)),
        (tray_frame((60, 40, 300, 230), counter=200, tray=60), (60, 40, 300, 230)),
        (rotated_tray(6)[0], rotated_tray(6)[1]),
        (
            cv2.resize(tray_frame(), (1280, 960), interpolation=cv2.INTER_NEAREST),
            (160, 120, 1120, 840),
        ),
    ],
    ids=["light tray", "tray off centre", "dark tray on a light counter", "turned tray", "HD"],
)
def test_the_tray_is_found_on_an_empty_scanner(image: Image, truth: Area) -> None:
    assert_near(find_tray_area(image), truth)


def small_items() -> Image:
    image = np.full((HEIGHT, WIDTH, 3), 60, np.uint8)
    for x in (20, 120, 220):
        image[50:90, x : x + 40] = 200  # cups and napkins, none the size of a tray
    return image


def counter_edge() -> Image:
    """A light band from one side of the frame to the other: the counter's edge, not a tray."""
    image = np.full((HEIGHT, WIDTH, 3), 60, np.uint8)
    image[80:200, :] = 200
    return image


def horizontal_gradient() -> Image:
    ramp = np.tile(np.linspace(0, 255, WIDTH, dtype=np.uint8), (HEIGHT, 1))
    return np.repeat(ramp[:, :, None], 3, axis=2)


@pytest.mark.parametrize(
    "image",
    [
        np.full((HEIGHT, WIDTH, 3), 90, np.uint8),
        np.random.default_rng(1).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8),
        horizontal_gradient(),
        small_items(),
        counter_edge(),
    ],
    ids=["plain counter", "noise", "light gradient", "small items", "counter edge"],
)
def test_nothing_tray_like_is_refused(image: Image) -> None:
    with pytest.raises(CalibrationError, match=r"no tray found.*give the tray's corners"):
        find_tray_area(image)


@pytest.mark.parametrize(
    "corners",
    [
        [(40, 30), (280, 30), (280, 210), (40, 210)],
        [(280, 210), (40, 30), (40, 210), (280, 30)],
        [(40, 210), (280, 30)],
        [(280, 210), (40, 30)],
        [(-20, 30), (280, 210)],  # clicked just outside: clipped to the frame below
    ],
    ids=["clockwise", "shuffled", "two corners", "two corners reversed", "partly outside"],
)
def test_corners_in_any_order_give_the_same_area(corners: list[tuple[int, int]]) -> None:
    expected = (0, 30, 280, 210) if corners[0][0] < 0 else TRUE_AREA
    assert tray_area_from_corners(corners, WIDTH, HEIGHT) == expected


def test_corners_beyond_the_frame_are_clipped() -> None:
    assert tray_area_from_corners([(-5, -5), (400, 300)], WIDTH, HEIGHT) == (0, 0, WIDTH, HEIGHT)


@pytest.mark.parametrize(
    ("corners", "fragment"),
    [
        ([(100, 100), (100, 100)], "make a 0x0 px area"),
        ([(40, 30), (280, 35)], "make a 240x5 px area"),
        ([(400, 30), (500, 210)], "make a 0x180 px area"),
        ([(40, 30)], "not 1"),
        ([(40, 30), (280, 30), (280, 210)], "not 3"),
    ],
    ids=["double click", "a line", "outside the frame", "one corner", "three corners"],
)
def test_degenerate_corners_are_refused(corners: list[tuple[int, int]], fragment: str) -> None:
    with pytest.raises(CalibrationError, match=fragment):
        tray_area_from_corners(corners, WIDTH, HEIGHT)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("40,30 280,210", [(40, 30), (280, 210)]), ("40,30;280.4,210", [(40, 30), (280, 210)])],
)
def test_corners_as_typed(text: str, expected: list[tuple[int, int]]) -> None:
    assert parse_corners(text) == expected


@pytest.mark.parametrize("text", ["40,30 280", "40;30", "a,b 1,2"])
def test_mistyped_corners_are_named(text: str) -> None:
    with pytest.raises(ValueError, match="is not x,y in pixels"):
        parse_corners(text)


# ----------------------------------------------------------------------- picture checks


def test_a_blurred_picture_fails_focus() -> None:
    sharp = focus_measure(tray_frame(), TRUE_AREA)
    soft = focus_measure(blurred(tray_frame()), TRUE_AREA)
    assert soft < sharp / 10
    assert focus_ok(sharp)
    assert not focus_ok(soft)


@pytest.mark.parametrize(
    ("blue", "red", "bad_gain", "cast"),
    [(1.35, 1.0, "b", "too blue"), (1.0, 1.3, "r", "too red"), (0.8, 0.8, "r", "too green")],
)
def test_a_colour_cast_fails_white_balance_and_reports_the_gains(
    blue: float, red: float, bad_gain: str, cast: str
) -> None:
    report = white_balance_check(tinted(tray_frame(), blue, red), TRUE_AREA)
    assert not report["ok"]
    assert report["g"] == 1.0
    assert report["b"] == pytest.approx(1 / blue, abs=0.02)
    assert report["r"] == pytest.approx(1 / red, abs=0.02)
    assert report["problem"] is not None
    assert cast in report["problem"] and f"gain {bad_gain} " in report["problem"]


def test_a_neutral_tray_passes_white_balance() -> None:
    report = white_balance_check(tray_frame(), TRUE_AREA)
    assert report["ok"] and report["problem"] is None
    assert (report["r"], report["g"], report["b"]) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("image", "ok", "fragment"),
    [
        (tray_frame(), True, None),
        (scaled(tray_frame(), 0.15), False, "too dark"),
        (tray_frame(tray=250, counter=40), False, "too bright"),
        (tray_frame(tray=200), True, None),
    ],
    ids=["good", "too dark", "too bright", "light tray"],
)
def test_exposure(image: Image, ok: bool, fragment: str | None) -> None:
    report = exposure_check(image, TRUE_AREA)
    assert report["ok"] is ok
    if fragment is None:
        assert report["problem"] is None
    else:
        assert report["problem"] is not None and fragment in report["problem"]


def test_blown_out_glare_fails_exposure() -> None:
    image = tray_frame()
    image[40:100, 60:200] = 255  # a reflection of the ceiling lamp
    report = exposure_check(image, TRUE_AREA)
    assert not report["ok"]
    assert report["bright_fraction"] > 0.15
    assert report["problem"] is not None and "blown out" in report["problem"]


def test_an_area_outside_the_frame_is_refused() -> None:
    with pytest.raises(CalibrationError, match="does not lie inside the 320x240 frame"):
        exposure_check(tray_frame(), (0, 0, 400, 100))


# ------------------------------------------------------------------------ the whole step


def test_calibrate_camera_automatically() -> None:
    profile = calibrate_camera(tray_frame(), auto=True, now=lambda: "2024-05-01T09:40:00+08:00")
    assert (profile.frame_width, profile.frame_height) == (WIDTH, HEIGHT)
    assert_near(profile.tray_area, TRUE_AREA)
    assert 140 < profile.empty_brightness < 180
    assert profile.white_balance_gains == (1.0, 1.0, 1.0)
    assert camera_problems(profile) == []


def test_calibrate_camera_from_corners_reports_a_soft_tinted_picture() -> None:
    image = tinted(blurred(tray_frame()), blue=1.35, red=1.0)
    profile = calibrate_camera(image, corners=[(280, 210), (40, 30)])
    assert profile.tray_area == TRUE_AREA
    problems = camera_problems(profile)
    assert len(problems) == 2
    assert "white balance gain b 0.74 outside 0.85..1.15" in problems[0]
    assert "out of focus" in problems[1]


@pytest.mark.parametrize(
    ("corners", "auto"), [(None, False), ([(40, 30), (280, 210)], True)], ids=["neither", "both"]
)
def test_calibrate_camera_needs_corners_or_auto(
    corners: list[tuple[int, int]] | None, auto: bool
) -> None:
    with pytest.raises(CalibrationError, match="corners or ask to find it"):
        calibrate_camera(tray_frame(), corners=corners, auto=auto)
