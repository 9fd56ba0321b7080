"""The weight filter on recorded scale sequences and on tables of hand-made ones."""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from terminal.core.ports import ScaleReading
from terminal.devices.weight_filter import WeightEvent, WeightFilter, WeightFilterConfig

RECORDINGS = Path(__file__).parent / "recordings"
TOLERANCE_G = 2


def load_recording(name: str) -> list[ScaleReading]:
    """A recording's readings: CSV of timestamp_s, gross_g, stable_flag; '#' lines are notes."""
    with (RECORDINGS / name).open(encoding="utf-8") as file:
        rows = csv.DictReader(line for line in file if not line.startswith("#"))
        return [
            ScaleReading(int(row["gross_g"]), row["stable_flag"] == "1", float(row["timestamp_s"]))
            for row in rows
        ]


@dataclass
class Checkout:
    """A checkout that charges the tray at the first stable weight it is allowed to."""

    weight_filter: WeightFilter = field(default_factory=WeightFilter)
    events: list[WeightEvent] = field(default_factory=list)
    charges: list[int] = field(default_factory=list)

    def feed(self, readings: list[ScaleReading]) -> Checkout:
        for reading in readings:
            event = self.weight_filter.update(reading)
            if event is None:
                continue
            self.events.append(event)
            if event.kind == "stable" and self.weight_filter.may_charge():
                self.weight_filter.charged(event.gross_g)
                self.charges.append(event.gross_g)
        return self

    @property
    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]

    @property
    def stable_weights(self) -> list[int]:
        return [event.gross_g for event in self.events if event.kind == "stable"]


def assert_weights(reported: list[int], true_loads: list[int]) -> None:
    assert len(reported) == len(true_loads), f"reported {reported}, true loads {true_loads}"
    for got, load in zip(reported, true_loads, strict=True):
        assert abs(got - load) <= TOLERANCE_G, f"reported {reported}, true loads {true_loads}"


class Feed:
    """Hand-made 10 Hz readings without noise, for tables of exact cases."""

    def __init__(self, weight_filter: WeightFilter | None = None) -> None:
        self.weight_filter = weight_filter or WeightFilter()
        self.timestamp = 0.0
        self.events: list[WeightEvent] = []

    def hold(
        self,
        gross_g: int,
        readings: int = 10,
        *,
        stable: bool = True,
        overload: bool = False,
        underload: bool = False,
    ) -> Feed:
        for _ in range(readings):
            reading = ScaleReading(gross_g, stable, self.timestamp, overload, underload)
            event = self.weight_filter.update(reading)
            if event is not None:
                self.events.append(event)
            self.timestamp = round(self.timestamp + 0.1, 3)
        return self

    def values(self, grams: list[int], *, stable: bool = True) -> Feed:
        for gross_g in grams:
            self.hold(gross_g, 1, stable=stable)
        return self

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]

    def stable_weights(self) -> list[int]:
        return [event.gross_g for event in self.events if event.kind == "stable"]


# -- recorded sequences -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recording", "true_loads", "charged_trays", "kinds"),
    [
        pytest.param(
            "tray_place_remove.csv", [1250], [1250], ["loaded", "stable", "unloaded"], id="place"
        ),
        pytest.param(
            "tray_wobble.csv",
            [1250, 1250],
            [1250],
            ["loaded", "stable", "stable", "unloaded"],
            id="diner-wobbles-tray",
        ),
        pytest.param(
            "tray_swap.csv",
            [1250, 830],
            [1250, 830],
            ["loaded", "stable", "stable", "unloaded"],
            id="tray-swapped-without-zero",
        ),
        pytest.param(
            "spoon_added.csv",
            [1250, 1265],
            [1250],
            ["loaded", "stable", "stable", "unloaded"],
            id="spoon-added",
        ),
        pytest.param(
            "two_trays.csv",
            [1250, 980],
            [1250, 980],
            ["loaded", "stable", "unloaded", "loaded", "stable", "unloaded"],
            id="two-trays-via-zero",
        ),
        pytest.param(
            "zero_drift_slow.csv", [1250], [1250], ["loaded", "stable"], id="after-slow-drift"
        ),
        pytest.param("zero_drift_large.csv", [], [], [], id="large-drift-empty"),
        pytest.param(
            "overload.csv",
            [1250, 1250],
            [1250],
            ["loaded", "stable", "fault", "fault_cleared", "stable", "unloaded"],
            id="overload",
        ),
    ],
)
def test_recording_gives_true_weights_and_one_charge_per_tray(
    recording: str, true_loads: list[int], charged_trays: list[int], kinds: list[str]
) -> None:
    checkout = Checkout().feed(load_recording(recording))

    assert checkout.kinds == kinds
    assert_weights(checkout.stable_weights, true_loads)
    assert_weights(checkout.charges, charged_trays)


def test_recordings_are_noisy_10hz_sequences() -> None:
    """The recordings really hold the noise the filter must cope with."""
    readings = load_recording("tray_place_remove.csv")
    gaps = {round(b.timestamp - a.timestamp, 3) for a, b in itertools.pairwise(readings)}
    settled = [r.gross_g for r in readings if 3.0 <= r.timestamp <= 5.0]

    assert gaps == {0.1}
    assert max(settled) - min(settled) >= 3
    assert all(abs(g - 1250) <= 3 for g in settled)


def test_slow_drift_is_tracked_and_large_drift_reported() -> None:
    slow = Checkout().feed(load_recording("zero_drift_slow.csv")).weight_filter
    large = Checkout().feed(load_recording("zero_drift_large.csv")).weight_filter

    assert abs(slow.zero_offset_g - 12) <= TOLERANCE_G
    assert not slow.zero_drift
    assert large.zero_drift
    assert large.zero_offset_g == large.config.zero_track_max_g
    assert not large.loaded


def test_without_zero_tracking_the_drift_shows_in_the_weight() -> None:
    """The tracking is what keeps the tray weight true after a warm-up drift."""
    untracked = WeightFilter(WeightFilterConfig(zero_track_step_g=0))
    checkout = Checkout(untracked).feed(load_recording("zero_drift_slow.csv"))

    assert abs(checkout.stable_weights[0] - 1250) > TOLERANCE_G


# -- hysteresis and stability ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "after_settling", "stable_weights", "stable_at_end"),
    [
        ("noise-within-release", [1009, 991, 1010, 990, 1000], [1000], 1000),
        ("one-reading-beyond-release", [1011] + [1000] * 7, [1000, 1000], 1000),
        ("below-by-more-than-release", [989], [1000], None),
        ("settles-higher-by-spoon", [1015] * 6, [1000, 1015], 1015),
        ("still-moving", [1011, 1020, 1030, 1040, 1050], [1000], None),
    ],
)
def test_hysteresis(
    name: str, after_settling: list[int], stable_weights: list[int], stable_at_end: int | None
) -> None:
    feed = Feed().hold(0, 5).hold(1000, 6).values(after_settling)

    assert feed.stable_weights() == stable_weights, name
    assert feed.weight_filter.stable_g == stable_at_end, name


@pytest.mark.parametrize(
    ("name", "grams", "scale_says_stable", "expect_stable"),
    [
        ("steady-and-flagged", [1000] * 6, True, True),
        ("steady-but-scale-in-motion", [1000] * 6, False, False),
        ("spread-at-limit", [997, 1003, 997, 1003, 997, 1003], True, True),
        ("spread-beyond-limit", [997, 1004, 997, 1004, 997, 1004], True, False),
        ("min-readings", [1000] * 4, True, True),
        ("too-few-readings", [1000] * 3, True, False),
    ],
)
def test_stability_needs_scale_flag_and_quiet_window(
    name: str, grams: list[int], scale_says_stable: bool, expect_stable: bool
) -> None:
    feed = Feed().values(grams, stable=scale_says_stable)

    assert ("stable" in feed.kinds()) is expect_stable, name


def test_stable_weight_is_the_median_of_the_window() -> None:
    feed = Feed().values([998, 1003, 1001, 999])

    assert feed.stable_weights() == [1000]


def test_brief_lift_is_not_an_unload() -> None:
    """A tray lifted for a blink does not end the tray: unloaded needs a quiet empty window."""
    feed = Feed().hold(0, 5).hold(1000, 10).values([0, 0]).hold(1000, 10)

    assert "unloaded" not in feed.kinds()


# -- one charge per tray --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "after_charge", "may_charge_again"),
    [
        ("same-tray-restabilises", [(1100, 3), (1000, 10)], False),
        ("spoon-added", [(1015, 10)], False),
        ("food-added-below-delta", [(1140, 10)], False),
        ("swapped-for-lighter-tray", [(600, 3), (780, 10)], True),
        ("second-tray-stacked-on", [(1900, 10)], True),
        ("changed-but-never-stable", [(600, 3)], False),
        ("removed-and-same-weight-placed", [(0, 10), (1000, 10)], True),
    ],
)
def test_one_charge_per_tray(
    name: str, after_charge: list[tuple[int, int]], may_charge_again: bool
) -> None:
    feed = Feed().hold(0, 5).hold(1000, 10)
    assert feed.weight_filter.may_charge(), name
    feed.weight_filter.charged(1000)
    assert not feed.weight_filter.may_charge(), name

    for grams, count in after_charge:
        feed.hold(grams, count, stable=count > 3)

    assert feed.weight_filter.may_charge() is may_charge_again, name


def test_nothing_to_charge_while_empty_or_moving() -> None:
    feed = Feed().hold(0, 10)
    assert not feed.weight_filter.may_charge()
    feed.hold(1000, 3, stable=False)
    assert not feed.weight_filter.may_charge()


# -- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "gross_g", "flags", "reason_word"),
    [
        ("scale-flags-overload", 9000, {"overload": True}, "overload"),
        ("scale-flags-underload", 0, {"underload": True}, "underload"),
        ("above-capacity", 15_001, {}, "overload"),
        ("below-underload-limit", -51, {}, "underload"),
    ],
)
def test_fault_is_reported_once_and_hides_the_weight(
    name: str, gross_g: int, flags: dict[str, bool], reason_word: str
) -> None:
    feed = Feed().hold(0, 5).hold(1000, 10)
    assert feed.weight_filter.stable_g == 1000

    feed.hold(gross_g, 5, **flags)

    faults = [event for event in feed.events if event.kind == "fault"]
    assert len(faults) == 1, name
    assert faults[0].reason is not None and faults[0].reason.startswith(reason_word), name
    assert feed.weight_filter.stable_g is None, name
    assert not feed.weight_filter.may_charge(), name

    feed.hold(1000, 10)
    assert feed.kinds()[-2:] == ["fault_cleared", "stable"], name
    assert feed.weight_filter.fault_reason is None, name


@pytest.mark.parametrize(
    ("gross_g", "faulted"),
    [(15_000, False), (15_001, True), (-50, False), (-51, True)],
)
def test_fault_limits_are_inclusive(gross_g: int, faulted: bool) -> None:
    feed = Feed().hold(gross_g, 1)

    assert ("fault" in feed.kinds()) is faulted


# -- zero tracking --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "empty_reads_g", "seconds", "offset_g", "drift_reported"),
    [
        ("at-zero", 0, 5, 0, False),
        ("small-offset-absorbed-slowly", 3, 5, 3, False),
        ("crumb-is-not-absorbed", 12, 5, 0, True),
        ("negative-offset-absorbed", -4, 6, -4, False),
    ],
)
def test_zero_tracking(
    name: str, empty_reads_g: int, seconds: int, offset_g: int, drift_reported: bool
) -> None:
    weight_filter = Feed().hold(empty_reads_g, seconds * 10).weight_filter

    assert weight_filter.zero_offset_g == offset_g, name
    assert weight_filter.zero_drift is drift_reported, name


def test_zero_tracking_moves_one_step_per_interval() -> None:
    """An empty scale reading 3 g is corrected by a gram a second, not all at once."""
    weight_filter = Feed().hold(3, 15).weight_filter

    assert weight_filter.zero_offset_g == 1


def test_zero_drift_report_clears_when_the_crumb_is_removed() -> None:
    feed = Feed().hold(12, 30)
    assert feed.weight_filter.zero_drift
    feed.hold(0, 30)
    assert not feed.weight_filter.zero_drift


def test_tracked_zero_is_subtracted_from_a_tray() -> None:
    feed = Feed().hold(4, 60).hold(1004, 10)

    assert feed.weight_filter.zero_offset_g == 4
    assert feed.stable_weights() == [1000]


def test_zero_is_not_tracked_while_loaded() -> None:
    feed = Feed().hold(0, 10).hold(1003, 60)

    assert feed.weight_filter.zero_offset_g == 0


# -- tares ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gross_g", "tableware", "net_g"),
    [
        (1250, [], 850),
        (1250, ["bowl"], 670),
        (1250, ["bowl", "bowl", "plate"], 340),
        (500, ["bowl"], 0),
    ],
)
def test_net_weight_takes_off_tray_and_tableware(
    gross_g: int, tableware: list[str], net_g: int
) -> None:
    weight_filter = WeightFilter()
    weight_filter.set_tares(400, {"bowl": 180, "plate": 150})

    assert weight_filter.net_g(gross_g, tableware) == net_g


def test_net_weight_names_an_unknown_tableware() -> None:
    weight_filter = WeightFilter()
    weight_filter.set_tares(400, {"bowl": 180})

    with pytest.raises(ValueError, match="'cup'"):
        weight_filter.net_g(1000, ["cup"])


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "field_name"),
    [
        ({"window_s": 0}, "window_s"),
        ({"min_readings": 0}, "min_readings"),
        ({"max_spread_g": -1}, "max_spread_g"),
        ({"release_g": 6}, "release_g"),
        ({"new_tray_delta_g": 10}, "new_tray_delta_g"),
        ({"zero_band_g": 30}, "zero_band_g"),
        ({"capacity_g": 20}, "capacity_g"),
        ({"underload_g": 20}, "underload_g"),
        ({"zero_track_interval_s": 0}, "zero_track_interval_s"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(
    settings: dict[str, Any], field_name: str
) -> None:
    with pytest.raises(ValueError, match=rf"\.{field_name} "):
        WeightFilterConfig(**settings)
