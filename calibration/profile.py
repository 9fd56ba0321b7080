"""The per-terminal calibration profile: one YAML file with a scale and a camera section.

``trayscan calibrate scale`` and ``trayscan calibrate camera`` each write their own section and
keep the other; the terminal reads the file through :func:`load_profile`. The file goes through
:mod:`terminal.yamlmodels`, so an unknown key, a wrong type or an impossible value is refused
with ``FILE:LINE: key.path: what is wrong``, one line per problem.

Example::

    scale:
      zero_offset_g: 12.0
      span_factor: 0.970874
      reference_g: 1000.0
      linearity:
      - {load_g: 500.0, reading_g: 499.6, error_g: -0.4}
      linearity_ok: true
      tolerance_g: 2.0
      tableware_tares_g: {bowl: 180, plate: 250}
      calibrated_at: '2024-05-01T09:30:00+08:00'
    camera:
      frame_width: 1280
      frame_height: 720
      tray_area: [212, 96, 1068, 640]
      empty_brightness: 148.2
      white_balance_gains: [1.02, 1.0, 0.97]
      focus: 412.5
      calibrated_at: '2024-05-01T09:40:00+08:00'
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import tempfile
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import Field, ValidationInfo, field_validator

from terminal.core.ports import Scale, ScaleReading
from terminal.yamlmodels import FileError, StrictModel, load_yaml_model

logger = logging.getLogger(__name__)

#: A span factor outside this range is not drift a software correction should hide: the wrong
#: reference weight, the wrong unit, or an indicator whose own calibration is far off.
SPAN_MIN = 0.8
SPAN_MAX = 1.2

#: The error type of a profile file that cannot be used; one line per problem.
ProfileError = FileError

NonNegativeGrams = Annotated[int, Field(ge=0)]
PositiveGain = Annotated[float, Field(gt=0)]

_HEADER = (
    "# trayscan calibration profile of this terminal, written by `trayscan calibrate`.\n"
    "# Re-run the calibration rather than editing values by hand.\n"
)


class CalibrationError(Exception):
    """A calibration step that cannot give a usable result; the message says what to do."""


def _iso_timestamp(value: object) -> object:
    """YAML reads an unquoted timestamp as a datetime; keep the text the profile stores."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _check_iso(value: str) -> str:
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            "must be an ISO 8601 date and time, e.g. 2024-05-01T09:30:00+08:00"
        ) from None
    return value


def _list_as_tuple(value: object, shape: str) -> object:
    """YAML has no tuples: a list of the right length is what the file holds."""
    if not isinstance(value, list):
        return value
    wanted = shape.count(",") + 1
    if len(value) != wanted:
        raise ValueError(f"must be {shape}: {wanted} numbers, not {len(value)}")
    return tuple(value)


def now_iso() -> str:
    """The local time now, ISO 8601 with its UTC offset, to the second."""
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


class LinearityPoint(StrictModel):
    """One known load and what the corrected scale read for it.

    Attributes:
        load_g: the test weight placed.
        reading_g: the corrected reading.
        error_g: ``reading_g - load_g``.
    """

    load_g: float = Field(gt=0)
    reading_g: float
    error_g: float


class _Calibrated(StrictModel):
    """A profile section that records when it was calibrated (ISO 8601)."""

    calibrated_at: str

    @field_validator("calibrated_at", mode="before")
    @classmethod
    def _timestamp_text(cls, value: object) -> object:
        return _iso_timestamp(value)

    @field_validator("calibrated_at")
    @classmethod
    def _check_timestamp(cls, value: str) -> str:
        return _check_iso(value)


class ScaleProfile(_Calibrated):
    """The scale's calibration: ``true grams = (raw - zero_offset_g) * span_factor``.

    Attributes:
        zero_offset_g: what the empty scale reads.
        span_factor: grams per raw gram above zero, within ``SPAN_MIN..SPAN_MAX``.
        reference_g: the reference weight the span was taken with.
        linearity: the check loads and their corrected readings.
        linearity_ok: every check load read within ``tolerance_g``.
        tolerance_g: the largest acceptable error of a check load.
        tableware_tares_g: tableware id -> grams of one empty piece.
        calibrated_at: when, ISO 8601.
    """

    zero_offset_g: float
    span_factor: float
    reference_g: float = Field(gt=0)
    linearity: list[LinearityPoint] = Field(default_factory=list)
    linearity_ok: bool
    tolerance_g: float = Field(gt=0)
    tableware_tares_g: dict[str, NonNegativeGrams] = Field(default_factory=dict)
    calibrated_at: str

    @field_validator("span_factor")
    @classmethod
    def _check_span(cls, value: float) -> float:
        # Written as "not inside" so that NaN is refused too.
        if not SPAN_MIN <= value <= SPAN_MAX:
            raise ValueError(
                f"span factor {value:g} is outside {SPAN_MIN}..{SPAN_MAX}: the scale is too far "
                f"off for a software correction; check the reference weight, calibrate the "
                f"indicator itself, then run `trayscan calibrate scale` again"
            )
        return value

    def correct_g(self, raw_g: float) -> float:
        """The true grams of a raw reading, unrounded."""
        return (raw_g - self.zero_offset_g) * self.span_factor

    def worst_point(self) -> LinearityPoint | None:
        """The check load read furthest from its weight, or None without check loads."""
        return max(self.linearity, key=lambda point: abs(point.error_g), default=None)


class CameraProfile(_Calibrated):
    """The camera's calibration, measured on a frame of the empty scanner.

    Attributes:
        frame_width: the frame size the area was measured in; the area means nothing at
            another resolution.
        frame_height: see ``frame_width``.
        tray_area: ``(x1, y1, x2, y2)`` pixels, x2/y2 exclusive, inside the frame.
        empty_brightness: mean grey level 0..255 of the empty tray area.
        white_balance_gains: grey-world gains ``(r, g, b)`` relative to green.
        focus: variance of the Laplacian of the tray area.
        calibrated_at: when, ISO 8601.
    """

    frame_width: int = Field(gt=0)
    frame_height: int = Field(gt=0)
    tray_area: tuple[int, int, int, int]
    empty_brightness: float = Field(ge=0, le=255)
    white_balance_gains: tuple[PositiveGain, PositiveGain, PositiveGain]
    focus: float = Field(ge=0)
    calibrated_at: str

    @field_validator("tray_area", mode="before")
    @classmethod
    def _area_as_tuple(cls, value: object) -> object:
        return _list_as_tuple(value, "[x1, y1, x2, y2]")

    @field_validator("white_balance_gains", mode="before")
    @classmethod
    def _gains_as_tuple(cls, value: object) -> object:
        return _list_as_tuple(value, "[r, g, b]")

    @field_validator("tray_area")
    @classmethod
    def _check_area(
        cls, value: tuple[int, int, int, int], info: ValidationInfo
    ) -> tuple[int, int, int, int]:
        x1, y1, x2, y2 = value
        if x1 >= x2 or y1 >= y2:
            raise ValueError("must be [x1, y1, x2, y2] with x1 < x2 and y1 < y2")
        width = info.data.get("frame_width")
        height = info.data.get("frame_height")
        if x1 < 0 or y1 < 0:
            raise ValueError("lies outside the frame: x1 and y1 must not be negative")
        if width is not None and x2 > width:
            raise ValueError(f"lies outside the frame: x2 {x2} is beyond frame_width {width}")
        if height is not None and y2 > height:
            raise ValueError(f"lies outside the frame: y2 {y2} is beyond frame_height {height}")
        return value


class TerminalProfile(StrictModel):
    """One terminal's calibration; a section not yet calibrated is None."""

    scale: ScaleProfile | None = None
    camera: CameraProfile | None = None


def load_profile(path: Path | str) -> TerminalProfile:
    """Read and validate a calibration profile.

    Raises:
        FileError: a missing or unreadable file, a YAML syntax error or invalid content; one
            ``FILE:LINE: key.path: message`` line per problem.
    """
    return load_yaml_model(TerminalProfile, Path(path))


def dump_profile(profile: TerminalProfile) -> str:
    """The YAML text of ``profile``, as :func:`save_profile` writes it."""
    data = profile.model_dump(mode="json", exclude_none=True)
    return _HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def save_profile(profile: TerminalProfile, path: Path | str) -> None:
    """Write ``profile`` to ``path`` atomically.

    The text goes to a temporary file beside ``path``, is flushed to disk, then renamed over
    it, so a power cut leaves either the old profile or the new one, never half of one.

    Raises:
        OSError: the folder cannot be created or written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = dump_profile(profile)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_folder(target.parent)
    logger.info("calibration profile written to %s", target)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; not every platform can open a folder, hence best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        logger.debug("cannot fsync folder %s", folder)
    finally:
        os.close(fd)


class CalibratedScale:
    """A scale whose readings are corrected by a :class:`ScaleProfile`.

    Wraps anything with ``read() -> ScaleReading`` (a ``SerialScale``, a fake) and hands out
    readings of true whole grams; the flags and timestamp pass through unchanged.

    Args:
        scale: the raw scale.
        scale_profile: its calibration.
    """

    def __init__(self, scale: Scale, scale_profile: ScaleProfile) -> None:
        self.scale = scale
        self.profile = scale_profile

    @property
    def tableware_tares_g(self) -> dict[str, int]:
        """Tableware id -> calibrated grams of one empty piece (a copy)."""
        return dict(self.profile.tableware_tares_g)

    def read(self) -> ScaleReading:
        """The wrapped scale's reading, corrected to true whole grams."""
        raw = self.scale.read()
        return dataclasses.replace(raw, gross_g=round(self.profile.correct_g(raw.gross_g)))

    def close(self) -> None:
        """Close the wrapped scale (its reader thread and port), if it has anything to close."""
        close = getattr(self.scale, "close", None)
        if callable(close):
            close()

    def __getattr__(self, name: str) -> object:
        # Status, tare and zero of the wrapped driver stay reachable for diagnostics.
        if name in ("scale", "profile"):
            raise AttributeError(name)
        return getattr(self.scale, name)
