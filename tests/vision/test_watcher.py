"""The tray watcher turns a camera stream into arrived / settled / removed, and nothing else.

Scenes are synthetic 160x120 frames: a blocky textured scanner, a bright textured tray, a dark
dish, a dark hand with its forearm. Frames come every 0.1 s with a little sensor noise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from vision.types import Frame
from vision.watcher import TrayEvent, TrayEventKind, TrayWatcher, WatcherConfig, WatcherState

from ..conftest import SAMPLE

Image = npt.NDArray[np.uint8]

WIDTH, HEIGHT = 160, 120
FRAME_STEP_S = 0.1
TRAY_BOX = (40, 30, 120, 90)
DISH_BOX = (50, 40, 90, 80)
ARRIVED, SETTLED, REMOVED = TrayEventKind.ARRIVED, TrayEventKind.SETTLED, TrayEventKind.REMOVED


def texture(
    seed: int, blocks: tuple[int, int], size: tuple[int, int], low: int, high: int
) -> Image:
    """A random blocky texture ``size`` (w, h) with grey levels in low..high."""
    grid = np.random.default_rng(seed).integers(low, high + 1, blocks, dtype=np.uint8)
    return np.asarray(cv2.resize(grid, size, interpolation=cv2.INTER_NEAREST), np.uint8)


SCANNER = texture(1, (12, 16), (WIDTH, HEIGHT), 30, 110)
TRAY = texture(2, (6, 8), (80, 60), 160, 230)
DISH = texture(3, (4, 4), (40, 40), 10, 60)


def paste(grey: npt.NDArray[np.float32], patch: Image, box: tuple[int, int, int, int]) -> None:
    x1, y1, x2, y2 = box
    grey[y1:y2, x1:x2] = patch


def scene(
    *,
    tray: bool = False,
    dish: bool = False,
    hand_x: int | None = None,
    brightness: float = 0.0,
    sunlight: float = 0.0,
) -> Image:
    """The scanner seen from above, with what is on it.

    ``brightness`` shifts every pixel alike (a lamp, the exposure); ``sunlight`` brightens the
    right edge by that much, fading to nothing at the left edge (a window beside the scanner).
    """
    grey = SCANNER.astype(np.float32)
    if tray:
        paste(grey, TRAY, TRAY_BOX)
    if dish:
        paste(grey, DISH, DISH_BOX)
    if hand_x is not None:
        # A hand reaching in from the bottom edge: the palm and the forearm behind it.
        cv2.ellipse(grey, (hand_x, 50), (30, 24), 0, 0, 360, 0.0, -1)
        cv2.rectangle(grey, (hand_x - 15, 50), (hand_x + 15, HEIGHT), 0.0, -1)
    grey += brightness + sunlight * np.linspace(0.0, 1.0, WIDTH, dtype=np.float32)
    return np.asarray(
        cv2.cvtColor(np.clip(grey, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR), np.uint8
    )


class Feed:
    """Plays images into a watcher as frames 0.1 s apart, with a fixed cycle of sensor noise."""

    def __init__(self, watcher: TrayWatcher, noise_sd: float = 1.5) -> None:
        self.watcher = watcher
        self.noise_sd = noise_sd
        self.frames: list[Frame] = []
        self._noise: dict[tuple[int, ...], list[npt.NDArray[np.float32]]] = {}

    def _noisy(self, image: Image) -> Image:
        if self.noise_sd == 0:
            return image
        if image.shape not in self._noise:
            rng = np.random.default_rng(99)
            self._noise[image.shape] = [
                rng.normal(0, self.noise_sd, image.shape).astype(np.float32) for _ in range(3)
            ]
        noise = self._noise[image.shape][len(self.frames) % 3]
        return np.asarray(np.clip(image + noise, 0, 255), np.uint8)

    def play(self, images: Iterable[Image], label: str = "") -> list[TrayEvent]:
        """Feeds the images; the events they produced, in order."""
        events = []
        for image in images:
            index = len(self.frames)
            frame = Frame(self._noisy(image), index * FRAME_STEP_S, index, label)
            self.frames.append(frame)
            if (event := self.watcher.update(frame)) is not None:
                events.append(event)
        return events

    def repeat(self, image: Image, count: int, label: str = "") -> list[TrayEvent]:
        return self.play([image] * count, label)

    def first_index(self, label: str) -> int:
        return next(f.index for f in self.frames if f.source == label)


def kinds(events: Sequence[TrayEvent]) -> list[TrayEventKind]:
    return [event.kind for event in events]


def settled_tray_feed(config: WatcherConfig | None = None) -> Feed:
    """A watcher that has seen the empty scanner, then a tray arrive and settle."""
    watcher = TrayWatcher(config or WatcherConfig())
    feed = Feed(watcher)
    feed.repeat(scene(), 5, "empty")
    assert kinds(feed.repeat(scene(tray=True), 10, "tray")) == [ARRIVED, SETTLED]
    return feed


def test_a_tray_placed_and_left_still_arrives_then_settles_once_on_a_tray_frame() -> None:
    config = WatcherConfig()
    feed = Feed(TrayWatcher(config))
    assert feed.repeat(scene(), 5, "empty") == []

    events = feed.repeat(scene(tray=True), 20, "tray")

    assert kinds(events) == [ARRIVED, SETTLED]
    arrived, settled = events
    placed = feed.frames[feed.first_index("tray")]
    assert arrived.frame.index == placed.index + config.arrive_frames - 1
    assert settled.frame.source == "tray"
    assert settled.frame is feed.frames[settled.frame.index]
    assert not settled.resettle
    assert settled.timestamp - placed.timestamp >= config.settle_s - 1e-9
    assert feed.watcher.state == WatcherState.SETTLED


def test_a_tray_taken_away_is_removed_and_the_next_tray_arrives_again() -> None:
    feed = settled_tray_feed()

    removed = feed.repeat(scene(), 5, "empty again")

    assert kinds(removed) == [REMOVED]
    assert removed[0].frame.source == "empty again"
    assert feed.watcher.state == WatcherState.EMPTY
    assert kinds(feed.repeat(scene(tray=True), 10, "next tray")) == [ARRIVED, SETTLED]


def test_a_tray_lifted_for_a_moment_and_put_back_is_neither_removed_nor_new() -> None:
    feed = settled_tray_feed()

    events = feed.repeat(scene(), 2, "lifted")
    events += feed.repeat(scene(tray=True), 10, "put back")

    assert events == []
    assert feed.watcher.state == WatcherState.SETTLED


@pytest.mark.parametrize(
    "hand_path",
    [
        pytest.param([20, 60, 100, 140], id="hand sweeps across"),
        pytest.param([60, 70, 70, 60], id="hand lingers over the tray"),
    ],
)
def test_a_hand_over_a_settled_tray_changes_nothing(hand_path: list[int]) -> None:
    feed = settled_tray_feed()

    during = feed.play([scene(tray=True, hand_x=x) for x in hand_path], "hand")
    after = feed.repeat(scene(tray=True), 15, "tray after hand")

    assert during + after == []
    assert feed.watcher.state == WatcherState.SETTLED


def test_a_hand_before_the_tray_settles_restarts_the_settle_timer() -> None:
    config = WatcherConfig()
    feed = Feed(TrayWatcher(config))
    feed.repeat(scene(), 5, "empty")
    assert kinds(feed.repeat(scene(tray=True), 4, "tray")) == [ARRIVED]

    during = feed.play([scene(tray=True, hand_x=x) for x in (50, 80, 110)], "hand")
    after = feed.repeat(scene(tray=True), 12, "tray after hand")

    assert during == []
    assert kinds(after) == [SETTLED]
    assert after[0].frame.source == "tray after hand"
    hand_left = feed.frames[feed.first_index("tray after hand")]
    assert after[0].timestamp - hand_left.timestamp >= config.settle_s - 1e-9


@pytest.mark.parametrize(
    "hand_path",
    [
        pytest.param([40], id="one frame"),
        pytest.param([40, 100], id="two frames, moving"),
        pytest.param([80, 80], id="two frames, resting"),
    ],
)
def test_a_hand_briefly_over_the_empty_scanner_is_not_a_tray(hand_path: list[int]) -> None:
    feed = Feed(TrayWatcher(WatcherConfig()))
    feed.repeat(scene(), 5, "empty")

    events = feed.play([scene(hand_x=x) for x in hand_path], "hand")
    events += feed.repeat(scene(), 10, "empty again")

    assert events == []
    assert feed.watcher.state == WatcherState.EMPTY


def test_the_hand_is_big_enough_to_count_as_a_tray_if_it_stayed() -> None:
    # Guards the brief-hand test above: it must pass because of the debounce, not because
    # the hand is too small to notice.
    feed = Feed(TrayWatcher(WatcherConfig()))
    feed.repeat(scene(), 5, "empty")

    assert kinds(feed.repeat(scene(hand_x=80), 3, "hand")) == [ARRIVED]


Lighting = Callable[[int], float]


@pytest.mark.parametrize(
    ("brightness_at", "sunlight_at", "frames"),
    [
        pytest.param(lambda i: 0.5 * i, lambda i: 0.0, 200, id="slow drift brighter"),
        pytest.param(lambda i: -0.15 * i, lambda i: 0.0, 200, id="slow drift darker"),
        pytest.param(lambda i: 40.0 * (i >= 20), lambda i: 0.0, 60, id="lamp switched on"),
        pytest.param(lambda i: 0.0, lambda i: 0.4 * i, 200, id="sunlight creeping in"),
    ],
)
def test_lighting_changes_on_the_empty_scanner_are_not_a_tray(
    brightness_at: Lighting, sunlight_at: Lighting, frames: int
) -> None:
    feed = Feed(TrayWatcher(WatcherConfig()))

    events = feed.play(
        [scene(brightness=brightness_at(i), sunlight=sunlight_at(i)) for i in range(frames)],
        "empty",
    )

    assert events == []
    assert feed.watcher.state == WatcherState.EMPTY
    # Still watching: a tray under the new light is seen.
    last = frames - 1
    tray = scene(tray=True, brightness=brightness_at(last), sunlight=sunlight_at(last))
    assert kinds(feed.repeat(tray, 10, "tray")) == [ARRIVED, SETTLED]


def test_a_dish_added_after_settling_re_settles_with_the_new_frame() -> None:
    feed = settled_tray_feed()

    events = feed.repeat(scene(tray=True, dish=True), 10, "tray with dish")

    assert kinds(events) == [SETTLED]
    assert events[0].resettle
    assert events[0].frame.source == "tray with dish"
    assert feed.repeat(scene(tray=True, dish=True), 10, "still") == []
    assert kinds(feed.repeat(scene(), 5, "empty")) == [REMOVED]


@pytest.mark.parametrize(
    ("tray_area", "expected"),
    [
        pytest.param(None, [ARRIVED, SETTLED], id="whole frame"),
        pytest.param(TRAY_BOX, [ARRIVED, SETTLED], id="area is the tray"),
        pytest.param((0, 0, 35, HEIGHT), [], id="area beside the tray"),
        pytest.param((-50, -50, 500, 500), [ARRIVED, SETTLED], id="area larger than frame"),
    ],
)
def test_only_the_tray_area_is_watched(
    tray_area: tuple[int, int, int, int] | None, expected: list[TrayEventKind]
) -> None:
    feed = Feed(TrayWatcher(WatcherConfig(), tray_area=tray_area))
    feed.repeat(scene(), 5, "empty")

    assert kinds(feed.repeat(scene(tray=True), 10, "tray")) == expected


def test_a_tray_area_outside_the_frame_is_refused() -> None:
    watcher = TrayWatcher(WatcherConfig(), tray_area=(500, 500, 600, 600))

    with pytest.raises(ValueError, match="outside"):
        watcher.update(Frame(scene(), 0.0, 0))


def test_reset_background_recovers_a_watcher_started_with_a_tray_in_view() -> None:
    feed = Feed(TrayWatcher(WatcherConfig()))
    feed.repeat(scene(tray=True), 5, "tray at start")

    feed.watcher.reset_background(Frame(scene(), 0.5, 5, "empty"))

    assert feed.watcher.state == WatcherState.EMPTY
    assert kinds(feed.repeat(scene(tray=True), 10, "tray")) == [ARRIVED, SETTLED]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"empty_fraction": 0.3, "occupied_fraction": 0.2}, "empty_fraction"),
        ({"arrive_frames": 0}, "arrive_frames"),
        ({"settle_s": -1.0}, "settle_s"),
        ({"background_rate": 1.5}, "background_rate"),
        ({"downscale_width": 4}, "downscale_width"),
    ],
)
def test_a_config_that_cannot_work_is_refused(changes: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WatcherConfig(**changes)  # type: ignore[arg-type]


PHOTO_FRAME = (720, 700)  # width, height: room around the 640x640 photo
PHOTO_AT = (40, 30)


def photo_scene(photo: Image | None) -> Image:
    """A plain grey scanner, with a sample tray photo on it when given."""
    width, height = PHOTO_FRAME
    image = np.full((height, width, 3), 118, np.uint8)
    if photo is not None:
        x, y = PHOTO_AT
        image[y : y + photo.shape[0], x : x + photo.shape[1]] = photo
    return image


def test_replayed_sample_photos_arrive_settle_and_leave_once_each() -> None:
    photo_paths = sorted((SAMPLE / "images").glob("*.jpg"))[:3]
    assert len(photo_paths) == 3, "the sample dataset ships with the repository"
    feed = Feed(TrayWatcher(WatcherConfig()))
    events: list[TrayEvent] = []

    for path in photo_paths:
        read = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert read is not None
        photo = np.asarray(read, np.uint8)
        events += feed.repeat(photo_scene(None), 5, "empty")
        events += feed.repeat(photo_scene(photo), 10, Path(path).name)  # one second
        events += feed.repeat(photo_scene(None), 5, "empty")

    assert kinds(events) == [ARRIVED, SETTLED, REMOVED] * 3
    settled = [event.frame.source for event in events if event.kind == SETTLED]
    assert settled == [path.name for path in photo_paths]
