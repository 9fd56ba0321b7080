"""``trayscan calibrate scale|camera|check`` as a technician runs them."""

from __future__ import annotations

import argparse
import builtins
import time
from pathlib import Path

import cv2
import pytest

import vision.sources
from calibration.cli import add_parsers
from calibration.profile import load_profile
from terminal.devices.scale import FakeScaleDevice

from .builders import TRUE_AREA, Technician, assert_near, blurred, tray_frame
from .conftest import PtyPair


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="trayscan")
    sub = parser.add_subparsers()
    add_parsers(sub)
    args = parser.parse_args(["calibrate", *argv])
    code: int = args.func(args)
    return code


@pytest.fixture
def empty_scanner_png(tmp_path: Path) -> Path:
    path = tmp_path / "empty-scanner.png"
    assert cv2.imwrite(str(path), tray_frame())
    return path


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The prompts the technician saw; each is answered with Enter."""
    prompts: list[str] = []

    def enter(prompt: str = "") -> str:
        prompts.append(prompt)
        return ""

    monkeypatch.setattr(builtins, "input", enter)
    return prompts


def test_camera_calibration_writes_a_profile_that_checks_ok(
    tmp_path: Path, empty_scanner_png: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile_path = tmp_path / "calibration.yaml"
    overlay = tmp_path / "overlay.png"
    assert (
        run(
            "camera",
            "--image",
            str(empty_scanner_png),
            "--auto",
            "--profile",
            str(profile_path),
            "--overlay",
            str(overlay),
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "tray area: (40, 30)-(280, 210), 240x180 px, 56% of the 320x240 frame" in out
    assert "brightness: 161 OK" in out
    assert "white balance: r 1.00 g 1.00 b 1.00 OK" in out
    assert "focus:" in out and "focus: 0" not in out
    camera = load_profile(profile_path).camera
    assert camera is not None
    assert_near(camera.tray_area, TRUE_AREA)
    outlined = cv2.imread(str(overlay))
    assert outlined is not None and tuple(outlined[30, 100]) == (0, 255, 0)

    assert run("check", "--profile", str(profile_path)) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"{profile_path}: OK"
    assert "scale: not calibrated" in out
    assert "camera: 320x240 frame, tray area (40, 30)-(280, 210)" in out


def test_a_blurred_camera_is_written_but_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "soft.png"
    cv2.imwrite(str(image), blurred(tray_frame()))
    profile_path = tmp_path / "calibration.yaml"
    corners = "40,30 280,30 280,210 40,210"
    code = run(
        "camera", "--image", str(image), "--corners", corners, "--profile", str(profile_path)
    )
    assert code == 1
    captured = capsys.readouterr()
    assert "focus:" in captured.out and "NOT OK: out of focus" in captured.out
    assert "fix what is NOT OK" in captured.err
    assert run("check", "--profile", str(profile_path)) == 1
    assert "camera: out of focus" in capsys.readouterr().err


def test_scale_rehearsal_keeps_the_camera_section(
    tmp_path: Path,
    empty_scanner_png: Path,
    answers: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    profile_path = tmp_path / "calibration.yaml"
    assert (
        run("camera", "--image", str(empty_scanner_png), "--auto", "--profile", str(profile_path))
        == 0
    )
    camera_before = load_profile(profile_path).camera

    code = run(
        "scale",
        "--fake",
        "--loads",
        "500,2000",
        "--tableware",
        "bowl,cup",
        "--profile",
        str(profile_path),
    )
    assert code == 0
    assert [prompt.split(" and press Enter")[0] for prompt in answers] == [
        "Remove everything from the scale",
        "Place the 1000 g reference weight alone on the scale",
        "Place 500 g of test weights alone on the scale",
        "Place 2000 g of test weights alone on the scale",
        "Place an empty bowl alone on the scale",
        "Place an empty cup alone on the scale",
    ]
    profile = load_profile(profile_path)
    assert profile.camera == camera_before
    assert profile.scale is not None
    assert profile.scale.span_factor == 1.0
    assert profile.scale.linearity_ok
    assert profile.scale.tableware_tares_g == {"bowl": 180, "cup": 120}
    out = capsys.readouterr().out
    assert f"wrote the scale section of {profile_path}" in out

    assert run("check", "--profile", str(profile_path)) == 0
    out = capsys.readouterr().out
    assert "scale: zero +0.0 g, span 1.000000 (reference 1000 g), linearity within ±2 g" in out
    assert "tares: bowl 180 g, cup 120 g" in out


def test_cancelling_the_scale_calibration_saves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def end_of_input(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr(builtins, "input", end_of_input)
    profile_path = tmp_path / "calibration.yaml"
    assert run("scale", "--fake", "--profile", str(profile_path)) == 1
    assert "nothing was saved" in capsys.readouterr().err
    assert not profile_path.exists()


def test_a_broken_profile_is_not_overwritten(
    tmp_path: Path, answers: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    profile_path = tmp_path / "calibration.yaml"
    profile_path.write_text("camera:\n  frame_width: wide\n", encoding="utf-8")
    assert run("scale", "--fake", "--profile", str(profile_path)) == 1
    err = capsys.readouterr().err
    assert f"{profile_path}:2: camera.frame_width" in err
    assert "move it away" in err
    assert answers == []
    assert profile_path.read_text(encoding="utf-8") == "camera:\n  frame_width: wide\n"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            "scale:\n  span_factor: 1.5\ncamera:\n  frame_width: wide\n",
            [
                ":1: scale.zero_offset_g: required key is missing",
                ":2: scale.span_factor: Value error, span factor 1.5 is outside 0.8..1.2",
                ":4: camera.frame_width: Input should be a valid integer",
            ],
        ),
        ("{}\n", [": nothing is calibrated"]),
    ],
    ids=["bad values", "empty"],
)
def test_check_prints_each_problem_on_its_own_line(
    tmp_path: Path, text: str, fragments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    profile_path = tmp_path / "calibration.yaml"
    profile_path.write_text(text, encoding="utf-8")
    assert run("check", "--profile", str(profile_path)) == 1
    lines = capsys.readouterr().err.splitlines()
    assert all(line.startswith(f"{profile_path}:") for line in lines)
    for fragment in fragments:
        assert sum(fragment in line for line in lines) == 1, fragment


def test_check_of_a_missing_profile_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("check", "--profile", str(tmp_path / "none.yaml")) == 1
    assert "none.yaml: file does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["scale", "--url", "loop://"], "--url needs --protocol"),
        (["camera", "--image", "x.png", "--corners", "40,30 280"], "is not x,y in pixels"),
    ],
)
def test_usage_mistakes_exit_2(
    argv: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(*argv, "--profile", str(tmp_path / "p.yaml")) == 2
    assert fragment in capsys.readouterr().err


def test_an_unreadable_image_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.png"
    code = run("camera", "--image", str(missing), "--auto", "--profile", str(tmp_path / "p.yaml"))
    assert code == 1
    assert "cannot decode image" in capsys.readouterr().err
    assert not (tmp_path / "p.yaml").exists()


class FakeCapture:
    """A camera that always shows the empty scanner."""

    def __init__(self, device: int | str) -> None:
        self.device = device

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def read(self) -> tuple[bool, object]:
        time.sleep(0.005)  # a camera's frame interval, so the reader thread does not spin
        return True, tray_frame()

    def release(self) -> None:
        pass

    def set(self, prop: int, value: float) -> bool:
        return True


def test_camera_calibration_from_a_live_camera(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(vision.sources, "open_opencv_capture", FakeCapture)
    profile_path = tmp_path / "calibration.yaml"
    assert run("camera", "--device", "0", "--auto", "--profile", str(profile_path)) == 0
    camera = load_profile(profile_path).camera
    assert camera is not None
    assert_near(camera.tray_area, TRUE_AREA)


def test_scale_calibration_over_a_serial_line(
    pty_pair: PtyPair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = FakeScaleDevice("mt-sics", unit="g")
    offset_g, gain = 12.0, 1.03

    def place(load_g: float) -> None:
        device.place(float(round(offset_g + gain * load_g)))

    technician = Technician(place, {"bowl": 180})
    monkeypatch.setattr(builtins, "input", technician.ask)
    profile_path = tmp_path / "calibration.yaml"
    device.start(str(pty_pair.scale))
    try:
        code = run(
            "scale",
            "--url",
            str(pty_pair.host),
            "--protocol",
            "mt-sics",
            "--readings",
            "3",
            "--loads",
            "2000",
            "--tableware",
            "bowl",
            "--profile",
            str(profile_path),
        )
    finally:
        device.stop()
    assert code == 0
    scale = load_profile(profile_path).scale
    assert scale is not None
    assert scale.zero_offset_g == pytest.approx(12, abs=0.5)
    assert scale.span_factor == pytest.approx(1 / 1.03, abs=0.0005)
    assert scale.tableware_tares_g == {"bowl": 180}
