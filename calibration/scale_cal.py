"""Scale calibration: zero, span, linearity and tableware tares.

The arithmetic is pure functions over averaged readings (:func:`zero_offset`,
:func:`span_factor`, :func:`linearity_check`, :func:`tableware_tare`); :func:`average_stable`
is the one place that reads the scale; :func:`calibrate_scale` walks a technician through the
procedure with injected ``ask``/``say`` callables, so the CLI uses ``input``/``print`` and the
tests a script.

The correction the profile holds is ``true g = (raw g - zero_offset_g) * span_factor``.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from calibration.profile import (
    SPAN_MAX,
    SPAN_MIN,
    CalibrationError,
    LinearityPoint,
    ScaleProfile,
    now_iso,
)
from terminal.core.ports import Scale
from terminal.devices.scale.frames import ScaleError

logger = logging.getLogger(__name__)

#: An empty scale reading more than this is loaded, not drifted.
MAX_ZERO_G = 500.0
#: Answers to a prompt that stop the calibration.
_CANCEL_ANSWERS = frozenset({"q", "quit", "abort", "cancel"})


@dataclass(frozen=True)
class Sampling:
    """How :func:`average_stable` reads one step of the procedure.

    Attributes:
        readings: consecutive stable readings averaged.
        max_reads: most readings taken before giving up on a scale that does not settle.
        max_spread_g: a run of stable readings spread wider than this starts again: the
            scale's own stable flag was premature, or the load changed.
        interval_s: pause between readings; a serial scale delivers a new frame only every
            50-100 ms and reading faster would average one frame many times.
    """

    readings: int = 10
    max_reads: int = 200
    max_spread_g: float = 5.0
    interval_s: float = 0.0


@dataclass(frozen=True)
class ScaleStep:
    """One step of :func:`calibrate_scale`, as handed to its ``placed`` hook.

    Attributes:
        kind: ``empty``, ``reference``, ``load`` or ``tableware``.
        prompt: what the technician was asked.
        load_g: the known load asked for (0 for the empty scale); None for tableware.
        tableware: the tableware id of a ``tableware`` step.
    """

    kind: Literal["empty", "reference", "load", "tableware"]
    prompt: str
    load_g: float | None
    tableware: str | None = None


@dataclass(frozen=True)
class LinearityReport:
    """The outcome of :func:`linearity_check`.

    Attributes:
        points: each check load with its corrected reading and error.
        tolerance_g: the largest acceptable error.
        ok: every error lies within the tolerance.
        worst: the point with the largest error, None without points.
    """

    points: tuple[LinearityPoint, ...]
    tolerance_g: float
    ok: bool
    worst: LinearityPoint | None

    @property
    def summary(self) -> str:
        """One line for the technician."""
        worst = self.worst
        if worst is None:
            return "linearity: no check loads"
        if self.ok:
            return (
                f"linearity OK: every load within ±{self.tolerance_g:g} g "
                f"(worst {worst.error_g:+.1f} g at {worst.load_g:g} g)"
            )
        return linearity_failure(worst, self.tolerance_g)


def linearity_failure(worst: LinearityPoint, tolerance_g: float) -> str:
    """What a failed linearity check means and what to do about it."""
    return (
        f"linearity FAILED: {worst.load_g:g} g reads {worst.reading_g:.1f} g, "
        f"{worst.error_g:+.1f} g off (tolerance ±{tolerance_g:g} g); check that the platter "
        f"touches nothing (housing, cables, shipping screw), that the test weights are right, "
        f"and that the scale stands level; if it persists, the load cell needs service"
    )


def average_stable(
    scale: Scale,
    *,
    readings: int = 10,
    max_reads: int = 200,
    max_spread_g: float = 5.0,
    interval_s: float = 0.0,
) -> float:
    """The mean of ``readings`` consecutive stable readings.

    A reading the scale calls unstable, or one that takes the run wider than ``max_spread_g``,
    starts the run again, so the average never mixes the old load with the new one.

    Args:
        scale: anything with ``read() -> ScaleReading``.
        readings: consecutive stable readings to average.
        max_reads: most readings taken in all.
        max_spread_g: widest max-min spread of a run.
        interval_s: pause between readings.

    Raises:
        CalibrationError: the scale reports overload or underload, cannot be read, or never
            gives ``readings`` stable readings in a row within ``max_reads``.
        ValueError: ``readings`` or ``max_reads`` below 1, or ``max_reads < readings``.
    """
    if readings < 1 or max_reads < readings:
        raise ValueError(f"need 1 <= readings <= max_reads, got {readings} and {max_reads}")
    run: list[int] = []
    for index in range(max_reads):
        if index and interval_s > 0:
            time.sleep(interval_s)
        try:
            reading = scale.read()
        except ScaleError as exc:
            raise CalibrationError(f"cannot read the scale: {exc}") from exc
        if reading.overload:
            raise CalibrationError(
                "the scale reports overload: take the load off; is it more than the scale's "
                "capacity?"
            )
        if reading.underload:
            raise CalibrationError(
                "the scale reports underload (below zero): is the platter seated properly?"
            )
        if not reading.stable:
            run.clear()
            continue
        run.append(reading.gross_g)
        if max(run) - min(run) > max_spread_g:
            logger.debug("stable run spread beyond %g g; starting again", max_spread_g)
            run = [reading.gross_g]
        if len(run) >= readings:
            return statistics.fmean(run)
    raise CalibrationError(
        f"the scale did not settle: {max_reads} readings without {readings} stable ones in a row "
        f"within {max_spread_g:g} g; keep the platter still and out of draughts, check that "
        f"nothing touches it, then try again"
    )


def _sample(scale: Scale, sampling: Sampling) -> float:
    return average_stable(
        scale,
        readings=sampling.readings,
        max_reads=sampling.max_reads,
        max_spread_g=sampling.max_spread_g,
        interval_s=sampling.interval_s,
    )


def zero_offset(empty_reading_g: float, *, max_zero_g: float = MAX_ZERO_G) -> float:
    """The zero offset: what the empty scale reads, to 0.01 g.

    Raises:
        CalibrationError: the empty scale reads more than ``max_zero_g`` either way, which is
            a load left on it or an indicator that needs zeroing, not drift.
    """
    if abs(empty_reading_g) > max_zero_g:
        raise CalibrationError(
            f"the empty scale reads {empty_reading_g:.0f} g: take everything off it (tray, "
            f"weights, cloths); if it is empty, zero the indicator itself, then try again"
        )
    return round(empty_reading_g, 2)


def span_factor(reference_g: float, reading_g: float, zero_g: float) -> float:
    """Grams per raw gram above zero, from a known reference weight, to six decimals.

    Args:
        reference_g: the reference weight's true grams.
        reading_g: what the scale read with it.
        zero_g: what the empty scale read.

    Raises:
        CalibrationError: the weight did not register, or the factor lies outside
            ``SPAN_MIN..SPAN_MAX``; the message says what to check.
        ValueError: ``reference_g`` is not positive.
    """
    if reference_g <= 0:
        raise ValueError(f"the reference weight must be positive, got {reference_g:g} g")
    above_zero_g = reading_g - zero_g
    if above_zero_g <= 0:
        raise CalibrationError(
            f"the {reference_g:g} g reference weight did not register (the scale reads "
            f"{above_zero_g:+.1f} g above zero): put it on the platter and try again"
        )
    factor = reference_g / above_zero_g
    if not SPAN_MIN <= factor <= SPAN_MAX:
        raise CalibrationError(
            f"the {reference_g:g} g reference weight reads {above_zero_g:.1f} g above zero, a "
            f"span factor of {factor:.3f}, outside {SPAN_MIN}..{SPAN_MAX}: check that the "
            f"reference weight is {reference_g:g} g and lies alone on the platter and that the "
            f"indicator weighs in the unit it reports; if so, calibrate the indicator itself "
            f"(its span is too far off for a software correction)"
        )
    return round(factor, 6)


def linearity_check(points: Sequence[tuple[float, float]], tolerance_g: float) -> LinearityReport:
    """Compare corrected readings of known loads with the loads.

    Args:
        points: ``(load_g, corrected reading_g)`` per check load.
        tolerance_g: the largest acceptable error.

    Raises:
        ValueError: ``tolerance_g`` is not positive, or a load is not positive.
    """
    if tolerance_g <= 0:
        raise ValueError(f"tolerance_g must be positive, got {tolerance_g:g}")
    checked = tuple(
        LinearityPoint(
            load_g=float(load_g),
            reading_g=round(reading_g, 2),
            error_g=round(reading_g - load_g, 2),
        )
        for load_g, reading_g in points
    )
    worst = max(checked, key=lambda point: abs(point.error_g), default=None)
    ok = all(abs(point.error_g) <= tolerance_g for point in checked)
    return LinearityReport(checked, tolerance_g, ok, worst)


def tableware_tare(reading_g: float, *, zero_g: float, span: float, name: str) -> int:
    """The calibrated whole grams of one empty piece of tableware.

    Args:
        reading_g: what the scale read with the empty piece on it alone.
        zero_g: the zero offset.
        span: the span factor.
        name: the tableware id, for the message.

    Raises:
        CalibrationError: the piece reads nothing or less than nothing.
    """
    grams = round((reading_g - zero_g) * span)
    if grams <= 0:
        raise CalibrationError(
            f"the empty {name} reads {grams} g: put one empty {name} alone on the scale when "
            f"asked, and make sure the scale was empty when it was zeroed"
        )
    return grams


def calibrate_scale(
    scale: Scale,
    ask: Callable[[str], str],
    say: Callable[[str], None],
    *,
    reference_g: float,
    loads_g: Sequence[float],
    tableware: Sequence[str],
    tolerance_g: float,
    sampling: Sampling | None = None,
    placed: Callable[[ScaleStep], None] | None = None,
    now: Callable[[], str] = now_iso,
) -> ScaleProfile:
    """Walk a technician through zero, span, linearity and tableware tares.

    Each step asks for something to be put on the scale (or taken off), waits for the answer,
    then reads a stable average. Answering ``q`` cancels.

    Args:
        scale: the raw scale.
        ask: shows a prompt and returns the answer (``input``).
        say: shows a result (``print``).
        reference_g: the reference weight for the span.
        loads_g: the check loads for linearity, at least one.
        tableware: tableware ids to weigh empty, e.g. ``["bowl", "plate"]``.
        tolerance_g: the largest acceptable linearity error.
        sampling: how each step reads the scale; the defaults when omitted.
        placed: called with each step once the technician answered, before the scale is
            read; a rehearsal on a fake scale puts the asked-for load on it here.
        now: the calibration's timestamp.

    Returns:
        The scale profile; ``linearity_ok`` is False when a check load read out of tolerance.

    Raises:
        CalibrationError: the technician cancelled, the scale did not settle or faulted, the
            empty scale was loaded, the span lies outside ``SPAN_MIN..SPAN_MAX``, or a piece
            of tableware read nothing. Each message says what to do.
        ValueError: a non-positive weight or tolerance, no check loads, or a repeated or
            empty tableware id.
    """
    _check_plan(reference_g, loads_g, tableware, tolerance_g)
    sampling = sampling or Sampling()

    def measure(step: ScaleStep) -> float:
        answer = ask(step.prompt)
        if answer.strip().lower() in _CANCEL_ANSWERS:
            raise CalibrationError("calibration cancelled; nothing was saved")
        if placed is not None:
            placed(step)
        return _sample(scale, sampling)

    empty_g = measure(ScaleStep("empty", "Remove everything from the scale and press Enter", 0.0))
    zero_g = zero_offset(empty_g)
    say(f"zero: the empty scale reads {zero_g:+.1f} g")

    reference_raw_g = measure(
        ScaleStep(
            "reference",
            f"Place the {reference_g:g} g reference weight alone on the scale and press Enter",
            reference_g,
        )
    )
    span = span_factor(reference_g, reference_raw_g, zero_g)
    say(
        f"span: {reference_g:g} g reads {reference_raw_g - zero_g:.1f} g above zero; "
        f"span factor {span:.6f}"
    )

    points: list[tuple[float, float]] = []
    for load_g in loads_g:
        raw_g = measure(
            ScaleStep(
                "load",
                f"Place {load_g:g} g of test weights alone on the scale and press Enter",
                load_g,
            )
        )
        corrected_g = (raw_g - zero_g) * span
        points.append((load_g, corrected_g))
        say(f"{load_g:g} g reads {corrected_g:.1f} g ({corrected_g - load_g:+.1f} g)")
    report = linearity_check(points, tolerance_g)
    say(report.summary)
    if not report.ok:
        logger.warning("scale %s", report.summary)

    tares_g: dict[str, int] = {}
    for name in tableware:
        raw_g = measure(
            ScaleStep(
                "tableware",
                f"Place an empty {name} alone on the scale and press Enter",
                None,
                name,
            )
        )
        tares_g[name] = tableware_tare(raw_g, zero_g=zero_g, span=span, name=name)
        say(f"{name}: {tares_g[name]} g empty")

    return ScaleProfile(
        zero_offset_g=zero_g,
        span_factor=span,
        reference_g=float(reference_g),
        linearity=list(report.points),
        linearity_ok=report.ok,
        tolerance_g=float(tolerance_g),
        tableware_tares_g=tares_g,
        calibrated_at=now(),
    )


def _check_plan(
    reference_g: float, loads_g: Sequence[float], tableware: Sequence[str], tolerance_g: float
) -> None:
    """Refuse a plan that cannot work before asking the technician for anything."""
    if reference_g <= 0:
        raise ValueError(f"the reference weight must be positive, got {reference_g:g} g")
    if not loads_g:
        raise ValueError("give at least one check load for the linearity test")
    bad_loads = [load for load in loads_g if load <= 0]
    if bad_loads:
        raise ValueError(f"check loads must be positive, got {bad_loads}")
    if tolerance_g <= 0:
        raise ValueError(f"the tolerance must be positive, got {tolerance_g:g} g")
    if any(not name.strip() for name in tableware):
        raise ValueError("a tableware id is empty")
    repeated = sorted({name for name in tableware if list(tableware).count(name) > 1})
    if repeated:
        raise ValueError(f"tableware named twice: {', '.join(repeated)}")


def scale_problems(profile: ScaleProfile) -> list[str]:
    """What is wrong with a valid scale profile, one line each; empty when all is well.

    The points are checked against the tolerance as well as the flag, so a hand-edited
    ``linearity_ok: true`` does not hide a bad check load.
    """
    worst = profile.worst_point()
    out_of_tolerance = worst is not None and abs(worst.error_g) > profile.tolerance_g
    if worst is not None and out_of_tolerance:
        return [f"scale: {linearity_failure(worst, profile.tolerance_g)}"]
    if not profile.linearity_ok:
        return ["scale: linearity_ok is false; run `trayscan calibrate scale` again"]
    return []
