"""Scale calibration against scales that are wrong in known ways: offset, gain, curvature, noise."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator

import pytest

from calibration.profile import CalibratedScale, CalibrationError, ScaleProfile
from calibration.scale_cal import (
    Sampling,
    average_stable,
    calibrate_scale,
    linearity_check,
    scale_problems,
    span_factor,
    tableware_tare,
    zero_offset,
)
from terminal.core.ports import ScaleReading
from terminal.devices.fakes import FakeScale
from terminal.devices.scale import FakeScaleDevice, ScaleDisconnectedError, SerialScale

from .builders import Technician
from .conftest import PtyPair

TRUE_TARES_G = {"bowl": 180, "plate": 250}
# The noise a stable indicator shows, in grams, repeating; its mean is zero.
NOISE_G = (0, 1, -1, 1, 0, -1)


class MiscalibratedScale:
    """A fake scale that reads ``offset + gain * load + curve * load²`` grams, with noise.

    After each change of load it wobbles (unstable) for a few readings, then holds, adding a
    gram or so of deterministic noise to each stable reading.
    """

    def __init__(self, *, offset_g: float = 12.0, gain: float = 1.03, curve: float = 0.0) -> None:
        self.offset_g = offset_g
        self.gain = gain
        self.curve = curve
        self.fake = FakeScale(
            settle_readings=4, wobble_g=30, seed=1, clock=itertools.count().__next__
        )
        self._noise = itertools.cycle(NOISE_G)

    def raw_g(self, load_g: float) -> int:
        return round(self.offset_g + self.gain * load_g + self.curve * load_g**2)

    def place(self, load_g: float) -> None:
        self.fake.place(self.raw_g(load_g))

    def read(self) -> ScaleReading:
        reading = self.fake.read()
        if not reading.stable:
            return reading
        return dataclasses.replace(reading, gross_g=reading.gross_g + next(self._noise))


def calibrate(
    scale: MiscalibratedScale, loads_g: tuple[float, ...] = (500, 1000, 2000)
) -> tuple[ScaleProfile, Technician]:
    technician = Technician(scale.place, TRUE_TARES_G)
    profile = calibrate_scale(
        scale,
        technician.ask,
        technician.say,
        reference_g=1000,
        loads_g=list(loads_g),
        tableware=list(TRUE_TARES_G),
        tolerance_g=2,
        now=lambda: "2024-05-01T09:30:00+08:00",
    )
    return profile, technician


# ------------------------------------------------------------------------ the procedure


def test_a_miscalibrated_scale_is_corrected() -> None:
    profile, technician = calibrate(MiscalibratedScale(offset_g=12, gain=1.03))
    assert profile.zero_offset_g == pytest.approx(12, abs=0.5)
    assert profile.span_factor == pytest.approx(1 / 1.03, abs=0.0005)
    assert profile.linearity_ok
    assert [p.load_g for p in profile.linearity] == [500, 1000, 2000]
    assert all(abs(p.error_g) <= 1 for p in profile.linearity)
    assert profile.tableware_tares_g == pytest.approx(TRUE_TARES_G, abs=1)
    assert scale_problems(profile) == []
    assert technician.prompts == [
        "Remove everything from the scale and press Enter",
        "Place the 1000 g reference weight alone on the scale and press Enter",
        "Place 500 g of test weights alone on the scale and press Enter",
        "Place 1000 g of test weights alone on the scale and press Enter",
        "Place 2000 g of test weights alone on the scale and press Enter",
        "Place an empty bowl alone on the scale and press Enter",
        "Place an empty plate alone on the scale and press Enter",
    ]
    assert any(line.startswith("linearity OK") for line in technician.said)


@pytest.mark.parametrize("load_g", [0, 180, 750, 3000])
def test_the_calibrated_scale_reads_true_weights(load_g: int) -> None:
    scale = MiscalibratedScale(offset_g=-7, gain=0.96)
    profile, _ = calibrate(scale)
    calibrated = CalibratedScale(scale, profile)
    scale.place(load_g)
    assert average_stable(calibrated, readings=6) == pytest.approx(load_g, abs=1.5)


def test_a_nonlinear_scale_fails_linearity_naming_the_worst_load() -> None:
    profile, technician = calibrate(MiscalibratedScale(curve=5e-6))
    assert not profile.linearity_ok
    worst = profile.worst_point()
    assert worst is not None and worst.load_g == 2000
    assert worst.error_g == pytest.approx(9.7, abs=1)
    failure = next(line for line in technician.said if "FAILED" in line)
    assert failure.startswith("linearity FAILED: 2000 g reads")
    [problem] = scale_problems(profile)
    assert "2000 g reads" in problem and "tolerance ±2 g" in problem


@pytest.mark.parametrize(
    ("gain", "reads"),
    [(1.5, "a span factor of 0.667"), (0.7, "a span factor of 1.429")],
)
def test_a_span_outside_the_range_is_refused_with_what_to_check(gain: float, reads: str) -> None:
    with pytest.raises(CalibrationError) as caught:
        calibrate(MiscalibratedScale(offset_g=0, gain=gain))
    message = str(caught.value)
    assert reads in message
    assert "outside 0.8..1.2" in message
    assert "reference weight is 1000 g" in message


def test_answering_q_cancels() -> None:
    scale = MiscalibratedScale()
    with pytest.raises(CalibrationError, match="cancelled"):
        calibrate_scale(
            scale,
            lambda _: "q",
            print,
            reference_g=1000,
            loads_g=[500],
            tableware=[],
            tolerance_g=2,
        )
    assert scale.fake.reads == 0


@pytest.mark.parametrize(
    ("loads_g", "tableware", "fragment"),
    [
        ([], ["bowl"], "at least one check load"),
        ([0], [], "positive"),
        ([500], ["bowl", "bowl"], "named twice: bowl"),
    ],
)
def test_a_bad_plan_is_refused_before_any_prompt(
    loads_g: list[float], tableware: list[str], fragment: str
) -> None:
    technician = Technician(MiscalibratedScale().place, TRUE_TARES_G)
    with pytest.raises(ValueError, match=fragment):
        calibrate_scale(
            MiscalibratedScale(),
            technician.ask,
            technician.say,
            reference_g=1000,
            loads_g=loads_g,
            tableware=tableware,
            tolerance_g=2,
        )
    assert technician.prompts == []


# ----------------------------------------------------------------------- average_stable


class ScriptedScale:
    """Hands out readings from an endless generator."""

    def __init__(self, readings: Iterator[ScaleReading]) -> None:
        self._readings = readings
        self.reads = 0

    def read(self) -> ScaleReading:
        self.reads += 1
        return next(self._readings)


def reading(grams: int, stable: bool = True, **flags: bool) -> ScaleReading:
    return ScaleReading(grams, stable, 0.0, **flags)


def never_stable() -> Iterator[ScaleReading]:
    for n in itertools.count():
        yield reading(1000 + n % 7, stable=False)


def stable_flag_but_swinging() -> Iterator[ScaleReading]:
    for n in itertools.count():
        yield reading(1000 + (20 if n % 2 else -20))


def overload() -> Iterator[ScaleReading]:
    yield reading(1000)
    while True:
        yield reading(99999, overload=True)


def underload() -> Iterator[ScaleReading]:
    while True:
        yield reading(-500, underload=True)


@pytest.mark.parametrize(
    ("readings", "fragment"),
    [
        (never_stable, "did not settle: 50 readings"),
        (stable_flag_but_swinging, "did not settle"),
        (overload, "overload: take the load off"),
        (underload, "is the platter seated"),
    ],
    ids=["never stable", "stable flag but swinging", "overload", "underload"],
)
def test_a_scale_that_gives_no_stable_weight_is_reported(
    readings: Callable[[], Iterator[ScaleReading]], fragment: str
) -> None:
    scale = ScriptedScale(readings())
    with pytest.raises(CalibrationError, match=fragment):
        average_stable(scale, readings=5, max_reads=50)
    assert scale.reads <= 50


def test_a_scale_that_never_settles_stops_the_calibration() -> None:
    scale = ScriptedScale(never_stable())
    with pytest.raises(CalibrationError, match="keep the platter still"):
        calibrate_scale(
            scale,
            lambda _: "",
            print,
            reference_g=1000,
            loads_g=[500],
            tableware=[],
            tolerance_g=2,
            sampling=Sampling(readings=5, max_reads=40),
        )
    assert scale.reads == 40


def test_an_unreachable_scale_is_a_calibration_error() -> None:
    class Unplugged:
        def read(self) -> ScaleReading:
            raise ScaleDisconnectedError("scale on /dev/ttyUSB0 is not connected")

    with pytest.raises(CalibrationError, match=r"cannot read the scale: .*ttyUSB0"):
        average_stable(Unplugged())


def test_the_average_skips_motion_and_restarts_after_a_jump() -> None:
    sequence = [
        reading(990, stable=False),
        reading(500),
        reading(500),  # old load, then a jump:
        reading(1001),
        reading(999),
        reading(1000),
        reading(1002),
        reading(998),
    ]
    scale = ScriptedScale(iter(sequence))
    assert average_stable(scale, readings=5) == 1000.0


# ------------------------------------------------------------------------ pure functions


@pytest.mark.parametrize(
    ("reference_g", "reading_g", "zero_g", "expected"),
    [
        (1000, 1042, 12, 0.970874),
        (1000, 1000, 0, 1.0),
        (2000, 1900, -100, 1.0),
        (500, 440, 10, 1.162791),
    ],
)
def test_span_factor(reference_g: float, reading_g: float, zero_g: float, expected: float) -> None:
    assert span_factor(reference_g, reading_g, zero_g) == expected


@pytest.mark.parametrize(
    ("reading_g", "fragment"),
    [
        (12, "did not register"),
        (5, "did not register"),
        (1312, "span factor of 0.769"),
        (812, "span factor of 1.250"),
    ],
)
def test_span_factor_refuses(reading_g: float, fragment: str) -> None:
    with pytest.raises(CalibrationError, match=fragment):
        span_factor(1000, reading_g, 12)


def test_linearity_check_finds_the_worst_point() -> None:
    report = linearity_check([(500, 499.2), (1000, 1000.4), (2000, 2003.1)], tolerance_g=2)
    assert not report.ok
    assert report.worst is not None and report.worst.load_g == 2000
    assert [p.error_g for p in report.points] == [-0.8, 0.4, 3.1]
    assert linearity_check([(500, 501.5)], tolerance_g=2).ok


@pytest.mark.parametrize(("reading_g", "expected"), [(197.4, 180), (12.0, None), (5.0, None)])
def test_tableware_tare(reading_g: float, expected: int | None) -> None:
    if expected is None:
        with pytest.raises(CalibrationError, match="put one empty bowl alone on the scale"):
            tableware_tare(reading_g, zero_g=12, span=1 / 1.03, name="bowl")
    else:
        assert tableware_tare(reading_g, zero_g=12, span=1 / 1.03, name="bowl") == expected


@pytest.mark.parametrize(("empty_g", "ok"), [(12.004, True), (-30, True), (850, False)])
def test_zero_offset_refuses_a_loaded_scale(empty_g: float, ok: bool) -> None:
    if ok:
        assert zero_offset(empty_g) == round(empty_g, 2)
    else:
        with pytest.raises(CalibrationError, match="empty scale reads 850 g: take everything"):
            zero_offset(empty_g)


# ------------------------------------------------------------------ over a real serial line


def wait_for_weight(scale: SerialScale, grams: int, budget_s: float = 5.0) -> None:
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        try:
            if scale.read().gross_g == grams:
                return
        except ScaleDisconnectedError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"the scale never read {grams} g")


def test_calibration_over_a_serial_line(pty_pair: PtyPair) -> None:
    device = FakeScaleDevice("mt-sics", unit="g")
    offset_g, gain = 12.0, 1.03
    device.start(str(pty_pair.scale))
    scale = SerialScale(str(pty_pair.host), "mt-sics", poll_interval_s=0.05)
    try:

        def place(load_g: float) -> None:
            raw_g = round(offset_g + gain * load_g)
            device.place(float(raw_g))
            wait_for_weight(scale, raw_g)  # the next frame carries the new load

        technician = Technician(place, {"bowl": 180})
        profile = calibrate_scale(
            scale,
            technician.ask,
            technician.say,
            reference_g=1000,
            loads_g=[500, 2000],
            tableware=["bowl"],
            tolerance_g=2,
            sampling=Sampling(readings=4, interval_s=0.05),
        )
    finally:
        scale.close()
        device.stop()
    assert profile.zero_offset_g == pytest.approx(12, abs=0.5)
    assert profile.span_factor == pytest.approx(1 / 1.03, abs=0.0005)
    assert profile.linearity_ok
    assert profile.tableware_tares_g == {"bowl": 180}
    assert b"SI\r\n" in device.received
