"""The calibration profile: strict file, atomic save, and the scale correction it drives."""

from __future__ import annotations

from pathlib import Path

import pytest

from calibration.profile import (
    CalibratedScale,
    CameraProfile,
    LinearityPoint,
    ScaleProfile,
    TerminalProfile,
    load_profile,
    save_profile,
)
from terminal.devices.fakes import FakeScale
from terminal.yamlmodels import FileError

GOOD_PROFILE = """\
scale:
  zero_offset_g: 12.0
  span_factor: 0.970874
  reference_g: 1000
  linearity:
  - {load_g: 500, reading_g: 499.6, error_g: -0.4}
  - {load_g: 2000, reading_g: 2000.8, error_g: 0.8}
  linearity_ok: true
  tolerance_g: 2
  tableware_tares_g:
    bowl: 180
    plate: 250
  calibrated_at: '2024-05-01T09:30:00+08:00'
camera:
  frame_width: 320
  frame_height: 240
  tray_area: [40, 30, 280, 210]
  empty_brightness: 161.0
  white_balance_gains: [1.0, 1.0, 1.0]
  focus: 912.9
  calibrated_at: '2024-05-01T09:40:00+08:00'
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "calibration.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def scale_profile(**changes: object) -> ScaleProfile:
    values: dict[str, object] = {
        "zero_offset_g": 12.0,
        "span_factor": 1 / 1.03,
        "reference_g": 1000.0,
        "linearity": [LinearityPoint(load_g=500.0, reading_g=499.6, error_g=-0.4)],
        "linearity_ok": True,
        "tolerance_g": 2.0,
        "tableware_tares_g": {"bowl": 180, "plate": 250},
        "calibrated_at": "2024-05-01T09:30:00+08:00",
    }
    values.update(changes)
    return ScaleProfile.model_validate(values)


def camera_profile() -> CameraProfile:
    return CameraProfile(
        frame_width=320,
        frame_height=240,
        tray_area=(40, 30, 280, 210),
        empty_brightness=161.0,
        white_balance_gains=(1.02, 1.0, 0.97),
        focus=912.9,
        calibrated_at="2024-05-01T09:40:00+08:00",
    )


@pytest.mark.parametrize(
    "profile",
    [
        TerminalProfile(scale=scale_profile(), camera=camera_profile()),
        TerminalProfile(scale=scale_profile()),
        TerminalProfile(camera=camera_profile()),
        TerminalProfile(),
    ],
    ids=["both", "scale only", "camera only", "empty"],
)
def test_a_saved_profile_loads_back_unchanged(tmp_path: Path, profile: TerminalProfile) -> None:
    path = tmp_path / "sub" / "calibration.yaml"
    save_profile(profile, path)
    assert load_profile(path) == profile
    assert sorted(p.name for p in path.parent.iterdir()) == ["calibration.yaml"]  # no tmp left


def test_saving_over_a_profile_replaces_it(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_PROFILE)
    save_profile(TerminalProfile(camera=camera_profile()), path)
    assert load_profile(path).scale is None


def test_a_hand_written_profile_loads(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, GOOD_PROFILE))
    assert profile.scale is not None and profile.camera is not None
    assert profile.scale.tableware_tares_g == {"bowl": 180, "plate": 250}
    assert profile.camera.tray_area == (40, 30, 280, 210)
    worst = profile.scale.worst_point()
    assert worst is not None and worst.load_g == 2000


def test_an_unquoted_timestamp_is_kept_as_text(tmp_path: Path) -> None:
    text = GOOD_PROFILE.replace("'2024-05-01T09:30:00+08:00'", "2024-05-01T09:30:00+08:00")
    profile = load_profile(write(tmp_path, text))
    assert profile.scale is not None
    assert profile.scale.calibrated_at == "2024-05-01T09:30:00+08:00"


# (case, text replaced, replacement, key path named, message fragment); the line is found in
# the changed text, so each case checks the line number too.
BAD_PROFILES = [
    (
        "span too large",
        "span_factor: 0.970874",
        "span_factor: 1.5",
        "scale.span_factor",
        "outside 0.8..1.2",
    ),
    (
        "span too small",
        "span_factor: 0.970874",
        "span_factor: 0.5",
        "scale.span_factor",
        "calibrate the indicator itself",
    ),
    (
        "negative tare",
        "bowl: 180",
        "bowl: -5",
        "scale.tableware_tares_g.bowl",
        "greater than or equal to 0",
    ),
    (
        "tray area outside the frame",
        "tray_area: [40, 30, 280, 210]",
        "tray_area: [40, 30, 400, 210]",
        "camera.tray_area",
        "x2 400 is beyond frame_width 320",
    ),
    (
        "tray area below the frame",
        "tray_area: [40, 30, 280, 210]",
        "tray_area: [40, 30, 280, 250]",
        "camera.tray_area",
        "y2 250 is beyond frame_height 240",
    ),
    (
        "x1 not before x2",
        "tray_area: [40, 30, 280, 210]",
        "tray_area: [280, 30, 280, 210]",
        "camera.tray_area",
        "x1 < x2",
    ),
    (
        "y1 after y2",
        "tray_area: [40, 30, 280, 210]",
        "tray_area: [40, 220, 280, 210]",
        "camera.tray_area",
        "y1 < y2",
    ),
    (
        "tray area of three numbers",
        "tray_area: [40, 30, 280, 210]",
        "tray_area: [40, 30, 280]",
        "camera.tray_area",
        "must be [x1, y1, x2, y2]: 4 numbers, not 3",
    ),
    (
        "unknown key",
        "  focus: 912.9",
        "  focus: 912.9\n  focus_mode: auto",
        "camera.focus_mode",
        "unknown key",
    ),
    ("unknown section", "camera:", "printer: {}\ncamera:", "printer", "unknown key"),
    ("wrong type", "frame_width: 320", "frame_width: wide", "camera.frame_width", "valid integer"),
    (
        "tare as text",
        "plate: 250",
        "plate: '250'",
        "scale.tableware_tares_g.plate",
        "valid integer",
    ),
    (
        "not a timestamp",
        "calibrated_at: '2024-05-01T09:40:00+08:00'",
        "calibrated_at: yesterday",
        "camera.calibrated_at",
        "ISO 8601",
    ),
    (
        "zero gain",
        "white_balance_gains: [1.0, 1.0, 1.0]",
        "white_balance_gains: [1.0, 1.0, 0]",
        "camera.white_balance_gains[2]",
        "greater than 0",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "key", "fragment"),
    [case[1:] for case in BAD_PROFILES],
    ids=[case[0] for case in BAD_PROFILES],
)
def test_a_bad_value_is_refused_with_its_line_and_key(
    tmp_path: Path, old: str, new: str, key: str, fragment: str
) -> None:
    assert GOOD_PROFILE.count(old) == 1
    text = GOOD_PROFILE.replace(old, new)
    path = write(tmp_path, text)
    # The key's line: the last line of the replacement, or the first for a new section.
    marker = new.splitlines()[0 if "." not in key else -1].strip()
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.strip() == marker)
    with pytest.raises(FileError) as caught:
        load_profile(path)
    assert len(caught.value.errors) == 1
    error = caught.value.errors[0]
    assert error.startswith(f"{path}:{line}: {key}: "), error
    assert fragment in error


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("scale: [zero\n", "YAML syntax error"), ("- scale\n", "must hold a mapping")],
    ids=["yaml syntax", "not a mapping"],
)
def test_an_unreadable_file_is_refused(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(FileError, match=fragment):
        load_profile(write(tmp_path, text))


def test_a_missing_file_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(FileError, match=r"nowhere\.yaml: file does not exist"):
        load_profile(tmp_path / "nowhere.yaml")


def test_every_problem_of_a_file_is_listed(tmp_path: Path) -> None:
    text = GOOD_PROFILE.replace("span_factor: 0.970874", "span_factor: 1.5").replace(
        "frame_width: 320", "frame_width: wide"
    )
    with pytest.raises(FileError) as caught:
        load_profile(write(tmp_path, text))
    assert [e.split(": ")[1] for e in caught.value.errors] == [
        "scale.span_factor",
        "camera.frame_width",
    ]


def test_a_span_outside_the_range_cannot_be_built_in_code_either() -> None:
    with pytest.raises(ValueError, match=r"outside 0\.8\.\.1\.2"):
        scale_profile(span_factor=1.25)


@pytest.mark.parametrize(
    ("raw_g", "true_g"),
    [(12, 0), (1042, 1000), (527, 500), (2072, 2000), (0, -12)],
)
def test_calibrated_scale_reads_true_grams(raw_g: int, true_g: int) -> None:
    fake = FakeScale(settle_readings=0)
    scale = CalibratedScale(fake, scale_profile())
    fake.place(raw_g)
    reading = scale.read()
    assert reading.gross_g == true_g
    assert reading.stable


def test_calibrated_scale_passes_motion_through_and_offers_the_tares() -> None:
    fake = FakeScale(settle_readings=2, wobble_g=0)
    scale = CalibratedScale(fake, scale_profile())
    fake.place(1042)
    assert [(r.gross_g, r.stable) for r in (scale.read(), scale.read(), scale.read())] == [
        (1000, False),
        (1000, False),
        (1000, True),
    ]
    assert scale.tableware_tares_g == {"bowl": 180, "plate": 250}
