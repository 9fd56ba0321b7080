"""Turns a scale's raw readings into the few decisions the checkout acts on.

A scale reports many readings a second, noisy while a tray is put down, wobbled or swapped. The
checkout only wants to know: a tray arrived ("loaded"), its weight settled ("stable"), it left
("unloaded"), or the scale is out of range ("fault"), and whether the tray on the scale may still
be charged. :class:`WeightFilter` is pure logic fed with :class:`~terminal.core.ports.ScaleReading`
objects; it never reads a port or a clock, so recorded sequences replay exactly in tests.

Rules, in the order they apply to each reading:

1. **Fault**: a reading the scale flags as overload/underload, or whose zero-corrected gross is
   above ``capacity_g`` or below ``-underload_g``, emits one "fault" event (with the reason) and
   clears any stable weight; "fault_cleared" follows the first sound reading.
2. **Loaded / unloaded**: the first reading above ``empty_band_g`` emits "loaded"; "unloaded" needs
   every reading of the last ``window_s`` (at least ``min_readings``) back at or below it, so a
   tray lifted for an instant is not taken for a tray removed.
3. **Stable**: the scale's own stable flag *and* the last ``window_s`` of readings (at least
   ``min_readings``) spread over no more than ``max_spread_g``; the weight is their median. Once
   stable at W it stays stable until a reading departs from W by more than ``release_g``
   (hysteresis), so noise at the edge of the window does not flap.
4. **One charge per tray**: after :meth:`WeightFilter.charged`, :meth:`WeightFilter.may_charge`
   is False until the scale went back to empty, or settled at a weight more than
   ``new_tray_delta_g`` away from the charged one (a tray swapped without the scale reading zero).
   A tray swapped for one of nearly the same weight cannot be told apart by weight alone.
5. **Zero tracking**: while empty and stable, the zero offset follows a slow drift by at most
   ``zero_track_step_g`` every ``zero_track_interval_s``, up to ``zero_track_max_g`` in all. A
   jump larger than ``zero_band_g`` (a crumb, a napkin) or a drift beyond the limit is not
   absorbed: :attr:`WeightFilter.zero_drift` reports it so a technician can re-zero the scale.

At most one event is returned per reading; a transition that coincides with another (a fault
clearing on the very reading that would be "loaded") is reported on the next reading, since the
condition that causes it still holds then.
"""

from __future__ import annotations

import logging
import statistics
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Literal

from terminal.core.ports import ScaleReading

logger = logging.getLogger(__name__)

WeightEventKind = Literal["loaded", "stable", "unloaded", "fault", "fault_cleared"]


@dataclass(frozen=True)
class WeightEvent:
    """A decision of the weight filter.

    Attributes:
        kind: "loaded", "stable", "unloaded", "fault" or "fault_cleared".
        gross_g: zero-corrected gross grams: the stable weight for "stable", the reading otherwise.
        timestamp: the timestamp of the reading that caused it.
        reason: what is wrong, for "fault" only.
    """

    kind: WeightEventKind
    gross_g: int
    timestamp: float
    reason: str | None = None


@dataclass(frozen=True)
class WeightFilterConfig:
    """Tuning of :class:`WeightFilter`; the defaults suit a 15 kg canteen scale with 2 g steps.

    Attributes:
        window_s: how far back the stability window reaches.
        min_readings: fewest readings in the window before it can be called stable or empty.
        max_spread_g: largest max-min spread of a stable window; the default covers the ±3 g
            noise of a typical canteen scale.
        release_g: how far a reading must depart from the stable weight to release it; above
            ``max_spread_g`` so noise never flaps the stable weight.
        empty_band_g: at or below this corrected gross the scale counts as empty.
        zero_band_g: largest residual zero the tracker absorbs; a bigger one is a drift report.
        zero_track_step_g: most the zero offset moves per step (0 turns tracking off).
        zero_track_interval_s: least time between two zero-tracking steps.
        zero_track_max_g: largest total zero offset the tracker may reach.
        new_tray_delta_g: a stable weight this far from the charged one is a new tray; above
            ``release_g`` (a spoon added is not a new tray) and below the lightest tray.
        capacity_g: corrected gross above this is an overload fault.
        underload_g: corrected gross below minus this is an underload fault.
    """

    window_s: float = 0.5
    min_readings: int = 4
    max_spread_g: int = 6
    release_g: int = 10
    empty_band_g: int = 20
    zero_band_g: int = 5
    zero_track_step_g: int = 1
    zero_track_interval_s: float = 1.0
    zero_track_max_g: int = 20
    new_tray_delta_g: int = 150
    capacity_g: int = 15_000
    underload_g: int = 50

    def __post_init__(self) -> None:
        for field in fields(self):
            if getattr(self, field.name) < 0:
                self._reject(field.name, "must not be negative")
        if self.window_s <= 0:
            self._reject("window_s", "must be positive")
        if self.zero_track_interval_s <= 0:
            self._reject("zero_track_interval_s", "must be positive")
        if self.min_readings < 1:
            self._reject("min_readings", "must be at least 1")
        if self.empty_band_g < 1:
            self._reject("empty_band_g", "must be at least 1")
        if self.release_g <= self.max_spread_g:
            self._reject("release_g", f"must be greater than max_spread_g ({self.max_spread_g})")
        if self.new_tray_delta_g <= self.release_g:
            self._reject("new_tray_delta_g", f"must be greater than release_g ({self.release_g})")
        if self.zero_band_g > self.empty_band_g:
            self._reject("zero_band_g", f"must not exceed empty_band_g ({self.empty_band_g})")
        if self.capacity_g <= self.empty_band_g:
            self._reject("capacity_g", f"must be greater than empty_band_g ({self.empty_band_g})")
        if self.underload_g <= self.zero_track_max_g:
            # Otherwise the tracked zero alone could put an empty scale into underload.
            self._reject(
                "underload_g", f"must be greater than zero_track_max_g ({self.zero_track_max_g})"
            )

    def _reject(self, name: str, why: str) -> None:
        raise ValueError(f"WeightFilterConfig.{name} {why}, got {getattr(self, name)!r}")


class WeightFilter:
    """Stable weights, tray arrivals and the one-charge-per-tray rule from raw scale readings.

    Args:
        config: tuning; the defaults when omitted.
    """

    def __init__(self, config: WeightFilterConfig | None = None) -> None:
        self.config = config or WeightFilterConfig()
        # Raw (uncorrected) grams, so a zero-tracking step does not invalidate the window.
        self._window: deque[tuple[float, int]] = deque()
        self._last_timestamp: float | None = None
        self._zero_offset_g = 0
        self._zero_sum_g = 0
        self._zero_count = 0
        self._zero_since: float | None = None
        self._zero_drift = False
        self._loaded = False
        self._stable_g: int | None = None
        self._fault_kind: str | None = None
        self._fault_reason: str | None = None
        self._charged_g: int | None = None
        self._tray_g = 0
        self._tableware_g: dict[str, int] = {}

    # -- state a caller may look at ---------------------------------------------------------

    @property
    def stable_g(self) -> int | None:
        """The stable corrected gross weight, or None while in motion, empty or faulted."""
        return self._stable_g

    @property
    def loaded(self) -> bool:
        """Whether something heavier than the empty band is on the scale."""
        return self._loaded

    @property
    def fault_reason(self) -> str | None:
        """Why the scale is faulted, or None."""
        return self._fault_reason

    @property
    def zero_offset_g(self) -> int:
        """The tracked zero, subtracted from every raw reading."""
        return self._zero_offset_g

    @property
    def zero_drift(self) -> bool:
        """The empty scale reads further from zero than tracking may absorb: re-zero it."""
        return self._zero_drift

    @property
    def charged_g(self) -> int | None:
        """The weight at which the tray on the scale was charged, or None."""
        return self._charged_g

    # -- tares ------------------------------------------------------------------------------

    def set_tares(self, tray_g: int, tableware: Mapping[str, int]) -> None:
        """Set the weight of the tray and of each tableware type, for :meth:`net_g`.

        Args:
            tray_g: the empty tray.
            tableware: tableware id -> grams of one empty piece (bowl, plate, ...).

        Raises:
            ValueError: a negative tare, naming it.
        """
        if tray_g < 0:
            raise ValueError(f"tray tare must not be negative, got {tray_g} g")
        for tableware_id, grams in tableware.items():
            if grams < 0:
                raise ValueError(f"tare of tableware {tableware_id!r} must not be negative")
        self._tray_g = tray_g
        self._tableware_g = dict(tableware)

    def net_g(self, gross_g: int, tableware_ids: Iterable[str] = ()) -> int:
        """Food grams: ``gross_g`` less the tray and each piece of tableware on it.

        Args:
            gross_g: a (stable) corrected gross weight.
            tableware_ids: one id per piece on the tray; repeat an id for two bowls.

        Returns:
            The net grams, never below 0: the tares of real pieces vary by a few grams, and a
            nearly empty bowl must not be priced below nothing.

        Raises:
            ValueError: an id that :meth:`set_tares` did not name.
        """
        net = gross_g - self._tray_g
        for tableware_id in tableware_ids:
            try:
                net -= self._tableware_g[tableware_id]
            except KeyError:
                known = ", ".join(sorted(self._tableware_g)) or "none"
                raise ValueError(
                    f"no tare for tableware {tableware_id!r} (known: {known})"
                ) from None
        if net < 0:
            logger.debug("net weight %d g below zero, reported as 0", net)
        return max(net, 0)

    # -- charging ---------------------------------------------------------------------------

    def may_charge(self) -> bool:
        """Whether the tray on the scale is settled and has not been charged yet."""
        return (
            self._loaded
            and self._stable_g is not None
            and self._fault_reason is None
            and self._charged_g is None
        )

    def charged(self, weight_g: int) -> None:
        """Record that the tray on the scale was charged at stable weight ``weight_g``."""
        self._charged_g = weight_g

    # -- the filter -------------------------------------------------------------------------

    def update(self, reading: ScaleReading) -> WeightEvent | None:
        """Take one reading; return the decision it leads to, if any."""
        cfg = self.config
        timestamp = reading.timestamp
        if self._last_timestamp is not None and timestamp < self._last_timestamp:
            # A clock step would leave the window spanning an unknown time.
            logger.warning(
                "scale reading time went back from %.3f to %.3f; window restarted",
                self._last_timestamp,
                timestamp,
            )
            self._window.clear()
        self._last_timestamp = timestamp
        gross_g = reading.gross_g - self._zero_offset_g

        fault = self._fault_of(reading, gross_g)
        if fault is not None:
            # Readings of a faulted scale mean nothing; none may count towards stability.
            self._window.clear()
            self._reset_zero_average()
            self._stable_g = None
            kind, reason = fault
            if kind == self._fault_kind:
                return None
            logger.warning("scale fault: %s", reason)
            self._fault_kind = kind
            self._fault_reason = reason
            return WeightEvent("fault", gross_g, timestamp, reason)

        self._window.append((timestamp, reading.gross_g))
        while self._window and timestamp - self._window[0][0] > cfg.window_s:
            self._window.popleft()

        if self._fault_reason is not None:
            logger.info("scale fault cleared (%s)", self._fault_reason)
            self._fault_kind = None
            self._fault_reason = None
            return WeightEvent("fault_cleared", gross_g, timestamp)

        corrected = [raw - self._zero_offset_g for _, raw in self._window]
        enough = len(corrected) >= cfg.min_readings

        if not self._loaded and gross_g > cfg.empty_band_g:
            self._loaded = True
            self._stable_g = None
            self._reset_zero_average()
            return WeightEvent("loaded", gross_g, timestamp)
        if self._loaded and enough and max(corrected) <= cfg.empty_band_g:
            self._loaded = False
            self._stable_g = None
            if self._charged_g is not None:
                logger.debug("tray charged at %d g left the scale", self._charged_g)
            self._charged_g = None
            return WeightEvent("unloaded", gross_g, timestamp)

        if self._stable_g is not None and abs(gross_g - self._stable_g) > cfg.release_g:
            logger.debug("stable %d g released by a reading of %d g", self._stable_g, gross_g)
            self._stable_g = None

        window_stable = (
            reading.stable and enough and max(corrected) - min(corrected) <= cfg.max_spread_g
        )
        if not window_stable:
            self._reset_zero_average()
            return None
        if not self._loaded:
            self._track_zero(timestamp, corrected)
            return None
        median_g = round(statistics.median(corrected))
        if self._stable_g is not None:
            return None
        self._stable_g = median_g
        if self._charged_g is not None and abs(median_g - self._charged_g) > cfg.new_tray_delta_g:
            logger.info(
                "stable at %d g, %d g away from the charged %d g: a new tray",
                median_g,
                abs(median_g - self._charged_g),
                self._charged_g,
            )
            self._charged_g = None
        return WeightEvent("stable", median_g, timestamp)

    def _fault_of(self, reading: ScaleReading, gross_g: int) -> tuple[str, str] | None:
        """The fault kind ("overload"/"underload") and a reason for a person, or None."""
        cfg = self.config
        if reading.overload:
            return "overload", "overload: the scale reports more than it can weigh"
        if reading.underload:
            return "underload", "underload: the scale reads below zero; is the platter seated?"
        if gross_g > cfg.capacity_g:
            return "overload", f"overload: {gross_g} g is above the capacity of {cfg.capacity_g} g"
        if gross_g < -cfg.underload_g:
            return (
                "underload",
                f"underload: {gross_g} g is below -{cfg.underload_g} g; is the platter seated?",
            )
        return None

    def _track_zero(self, timestamp: float, corrected: list[int]) -> None:
        """Follow a slow zero drift of the empty, stable scale; report what it must not absorb.

        The residual is the mean of every empty, stable reading since the last step rather than
        the median of one window: over a second of readings the noise averages out, so the zero
        does not random-walk by a gram with every window.
        """
        cfg = self.config
        self._zero_sum_g += corrected[-1]
        self._zero_count += 1
        if self._zero_since is None:
            self._zero_since = timestamp
        if timestamp - self._zero_since < cfg.zero_track_interval_s:
            return
        residual_g = self._zero_sum_g / self._zero_count
        self._reset_zero_average()
        apparent_zero_g = round(self._zero_offset_g + residual_g)
        if abs(residual_g) > cfg.zero_band_g or abs(apparent_zero_g) > cfg.zero_track_max_g:
            self._set_zero_drift(True, apparent_zero_g)
            return
        # A margin of half the noise keeps the report from flapping at the tracking limit.
        if abs(apparent_zero_g) <= cfg.zero_track_max_g - cfg.max_spread_g // 2:
            self._set_zero_drift(False, apparent_zero_g)
        # Under a gram of residual is noise, not drift.
        if abs(residual_g) < 1.0:
            return
        step = max(-cfg.zero_track_step_g, min(cfg.zero_track_step_g, round(residual_g)))
        if step and abs(self._zero_offset_g + step) <= cfg.zero_track_max_g:
            self._zero_offset_g += step

    def _reset_zero_average(self) -> None:
        self._zero_sum_g = 0
        self._zero_count = 0
        self._zero_since = None

    def _set_zero_drift(self, drift: bool, apparent_zero_g: int) -> None:
        if drift == self._zero_drift:
            return
        self._zero_drift = drift
        if drift:
            logger.warning(
                "empty scale reads %d g from its zero, more than tracking absorbs "
                "(band %d g, limit %d g): re-zero the scale",
                apparent_zero_g,
                self.config.zero_band_g,
                self.config.zero_track_max_g,
            )
        else:
            logger.info("empty scale back near zero (tracked zero %d g)", apparent_zero_g)
