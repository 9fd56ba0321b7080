"""Tray watcher: decides from camera frames when a tray arrives, settles and leaves.

The checkout recognises a tray once, on a still frame, and starts a new sale when the tray
leaves. :class:`TrayWatcher` turns the camera stream into those moments, looking only at the
calibrated tray area and comparing each frame with a reference image of the empty scanner:

- ``arrived``: enough of the area differs from the empty scanner for a few frames running;
- ``settled``: after arrival the scene stayed still for ``settle_s`` seconds (by frame
  timestamps); the event carries the frame to recognise. It comes once per tray, except for a
  *re-settle*: when, after settling, the scene moves and comes to rest looking substantially
  different (a dish added or taken away), ``settled`` comes again with ``resettle=True``;
- ``removed``: the area looks like the empty scanner again for a few frames running.

A hand passing over the scanner moves, so it only restarts the settle timer; it is too brief to
count as a tray. A global brightness change (a lamp, the camera's exposure) is not a tray: each
frame is compared after removing its mean brightness, and while the scanner is empty and still
the reference follows the scene slowly, absorbing drift.

The watcher is plain code with no thread and no clock of its own: feed it frames in order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np
import numpy.typing as npt

from vision.types import Frame

logger = logging.getLogger(__name__)

GreyImage = npt.NDArray[np.float32]

# Frame timestamps are floats: 0.1 s steps add up to 0.5999999 as often as to 0.6000001, and
# a settle time must not depend on which.
_TIME_SLACK_S = 1e-6
# Light blurring removes sensor noise and the one-pixel jitter of a vibrating mount.
_BLUR_KERNEL = (3, 3)


class TrayEventKind(StrEnum):
    """What happened on the scanner."""

    ARRIVED = "arrived"
    SETTLED = "settled"
    REMOVED = "removed"


class WatcherState(StrEnum):
    """What the watcher believes is on the scanner."""

    EMPTY = "empty"
    """Nothing, or nothing that stayed long enough to count."""
    ARRIVING = "arriving"
    """Something differs from the empty scanner, not yet for ``arrive_frames`` frames."""
    OCCUPIED = "occupied"
    """A tray arrived and has not been still long enough to recognise."""
    SETTLED = "settled"
    """The tray came to rest and was handed out for recognition."""


@dataclass(frozen=True)
class TrayEvent:
    """One moment in a tray's visit to the scanner.

    Attributes:
        kind: ``arrived``, ``settled`` or ``removed``.
        frame: the frame on which it was decided; for ``settled``, the frame to recognise.
        timestamp: the frame's timestamp.
        resettle: a second or later ``settled`` for the same tray, because the scene changed
            substantially after the tray had settled.
    """

    kind: TrayEventKind
    frame: Frame
    timestamp: float
    resettle: bool = False


@dataclass(frozen=True)
class WatcherConfig:
    """Thresholds of the tray watcher. The defaults suit a top-down camera on the tray area.

    Attributes:
        downscale_width: width in pixels the tray area is shrunk to before comparing.
        pixel_threshold: grey-level difference (0..255, after removing each image's mean) above
            which a pixel counts as different.
        occupied_fraction: share of differing pixels above which something is on the scanner.
        empty_fraction: share of differing pixels below which the scanner is empty again.
        arrive_frames: frames running above ``occupied_fraction`` for an ``arrived``.
        remove_frames: frames running below ``empty_fraction`` for a ``removed``.
        still_threshold: mean grey-level change between consecutive frames below which the
            scene is still.
        settle_s: seconds of stillness after arrival before ``settled``.
        changed_fraction: share of pixels differing between the settled image and a new still
            image above which the tray is re-settled.
        background_rate: how far the empty reference moves toward each still, empty frame
            (0 never adapts, 1 copies the frame).
    """

    downscale_width: int = 64
    pixel_threshold: float = 25.0
    occupied_fraction: float = 0.15
    empty_fraction: float = 0.05
    arrive_frames: int = 3
    remove_frames: int = 3
    still_threshold: float = 3.0
    settle_s: float = 0.6
    changed_fraction: float = 0.05
    background_rate: float = 0.05

    def __post_init__(self) -> None:
        problems = []
        if self.downscale_width < 8:
            problems.append(f"downscale_width {self.downscale_width} is below 8 px")
        if not 0 <= self.empty_fraction < self.occupied_fraction <= 1:
            problems.append(
                f"need 0 <= empty_fraction ({self.empty_fraction}) < occupied_fraction "
                f"({self.occupied_fraction}) <= 1"
            )
        if self.arrive_frames < 1 or self.remove_frames < 1:
            problems.append("arrive_frames and remove_frames must be at least 1")
        if self.pixel_threshold <= 0 or self.still_threshold <= 0:
            problems.append("pixel_threshold and still_threshold must be positive")
        if self.settle_s < 0:
            problems.append(f"settle_s {self.settle_s} is negative")
        if not 0 < self.changed_fraction <= 1:
            problems.append(f"changed_fraction {self.changed_fraction} is not in (0, 1]")
        if not 0 <= self.background_rate <= 1:
            problems.append(f"background_rate {self.background_rate} is not in [0, 1]")
        if problems:
            raise ValueError("invalid watcher config: " + "; ".join(problems))


class TrayWatcher:
    """Turns camera frames into tray ``arrived`` / ``settled`` / ``removed`` events.

    The scanner must be empty when the watcher starts: the first frame becomes the reference
    image of the empty scanner. Call :meth:`reset_background` with an empty frame to set it
    again, e.g. after the camera was moved.

    Args:
        config: the thresholds.
        tray_area: the calibrated tray area as an ``(x1, y1, x2, y2)`` pixel rectangle, clipped
            to the frame; None watches the whole frame.

    Raises:
        ValueError: ``tray_area`` is not a rectangle with x1 < x2 and y1 < y2.
    """

    def __init__(
        self, config: WatcherConfig, *, tray_area: tuple[int, int, int, int] | None = None
    ) -> None:
        if tray_area is not None:
            x1, y1, x2, y2 = tray_area
            if x1 >= x2 or y1 >= y2:
                raise ValueError(f"tray area {tray_area} is not an (x1, y1, x2, y2) rectangle")
        self.config = config
        self.tray_area = tray_area
        self._reference: GreyImage | None = None
        self._previous: GreyImage | None = None
        self._previous_timestamp: float | None = None
        self._settled_image: GreyImage | None = None
        self._state = WatcherState.EMPTY
        self._frames_above = 0
        self._frames_below = 0
        self._still_since: float | None = None
        self._occupancy = 0.0
        self._motion = 0.0

    @property
    def state(self) -> WatcherState:
        """``empty``, ``arriving``, ``occupied`` or ``settled``."""
        return self._state

    @property
    def occupancy(self) -> float:
        """Share of the tray area that differed from the empty scanner in the last frame."""
        return self._occupancy

    @property
    def motion(self) -> float:
        """Mean grey-level change between the last two frames."""
        return self._motion

    def reset_background(self, frame: Frame) -> None:
        """Take ``frame`` as the empty scanner and forget any tray in progress."""
        small = self._shrink(frame)
        self._reference = small.copy()
        self._previous = small
        self._previous_timestamp = frame.timestamp
        self._settled_image = None
        self._state = WatcherState.EMPTY
        self._frames_above = 0
        self._frames_below = 0
        self._still_since = None
        self._occupancy = 0.0
        self._motion = 0.0
        logger.debug("tray watcher: background set from frame %d", frame.index)

    def update(self, frame: Frame) -> TrayEvent | None:
        """Take the next frame; returns the event it completes, if any.

        Raises:
            ValueError: the tray area lies outside the frame.
        """
        small = self._shrink(frame)
        if self._reference is None or self._reference.shape != small.shape:
            if self._reference is not None:
                logger.warning(
                    "tray watcher: frame size changed to %dx%d; taking it as the empty scanner",
                    frame.width,
                    frame.height,
                )
            self.reset_background(frame)
            return None
        assert self._previous is not None  # set together with the reference

        threshold = self.config.pixel_threshold
        self._occupancy = float(np.mean(np.abs(small - self._reference) > threshold))
        self._motion = float(np.mean(np.abs(small - self._previous)))
        still = self._motion < self.config.still_threshold
        if not still:
            self._still_since = None
        elif self._still_since is None:
            # Still relative to the previous frame means unchanged since that frame was taken.
            self._still_since = self._previous_timestamp
        self._previous = small
        self._previous_timestamp = frame.timestamp

        if self._state in (WatcherState.EMPTY, WatcherState.ARRIVING):
            return self._watch_empty(frame, small, still)
        return self._watch_occupied(frame, small)

    # -- states --------------------------------------------------------------------------

    def _watch_empty(self, frame: Frame, small: GreyImage, still: bool) -> TrayEvent | None:
        config = self.config
        if self._occupancy > config.occupied_fraction:
            self._frames_above += 1
            if self._frames_above < config.arrive_frames:
                self._state = WatcherState.ARRIVING
                return None
            self._state = WatcherState.OCCUPIED
            self._frames_above = 0
            self._frames_below = 0
            self._settled_image = None
            return self._event(TrayEventKind.ARRIVED, frame)
        self._frames_above = 0
        self._state = WatcherState.EMPTY
        if still:
            # Only a still, empty scene may teach the reference; a hand or a tray sliding in
            # moves, so it is never learnt as the empty scanner.
            assert self._reference is not None
            rate = config.background_rate
            self._reference = (1.0 - rate) * self._reference + rate * small
        return None

    def _watch_occupied(self, frame: Frame, small: GreyImage) -> TrayEvent | None:
        config = self.config
        if self._occupancy < config.empty_fraction:
            self._frames_below += 1
            if self._frames_below >= config.remove_frames:
                self._state = WatcherState.EMPTY
                self._frames_below = 0
                self._settled_image = None
                return self._event(TrayEventKind.REMOVED, frame)
            # Looks empty but not for long enough: not a tray to recognise either.
            return None
        self._frames_below = 0
        if not self._still_for_settle(frame.timestamp):
            return None
        if self._state is WatcherState.OCCUPIED:
            self._state = WatcherState.SETTLED
            self._settled_image = small
            return self._event(TrayEventKind.SETTLED, frame)
        # Settled already: only a substantially different still scene is worth recognising
        # again; the same tray after a hand passed over it is not.
        assert self._settled_image is not None
        changed = float(np.mean(np.abs(small - self._settled_image) > config.pixel_threshold))
        if changed <= config.changed_fraction:
            return None
        self._settled_image = small
        logger.debug("tray watcher: %.0f%% of the tray changed after settling", changed * 100)
        return self._event(TrayEventKind.SETTLED, frame, resettle=True)

    # -- helpers -------------------------------------------------------------------------

    def _still_for_settle(self, timestamp: float) -> bool:
        if self._still_since is None:
            return False
        return timestamp - self._still_since + _TIME_SLACK_S >= self.config.settle_s

    def _event(self, kind: TrayEventKind, frame: Frame, *, resettle: bool = False) -> TrayEvent:
        logger.debug(
            "tray watcher: %s%s at frame %d (occupancy %.2f, motion %.1f)",
            kind.value,
            " (re-settle)" if resettle else "",
            frame.index,
            self._occupancy,
            self._motion,
        )
        return TrayEvent(kind, frame, frame.timestamp, resettle)

    def _shrink(self, frame: Frame) -> GreyImage:
        """The tray area as a small, blurred grey image with its mean brightness removed."""
        image = frame.image
        if self.tray_area is not None:
            x1, y1, x2, y2 = self.tray_area
            image = image[max(0, y1) : max(0, y2), max(0, x1) : max(0, x2)]
            if image.size == 0:
                raise ValueError(
                    f"tray area {self.tray_area} lies outside the {frame.width}x{frame.height} "
                    f"frame"
                )
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        height, width = grey.shape[:2]
        small_width = min(self.config.downscale_width, width)
        small_height = max(1, round(height * small_width / width))
        small = cv2.resize(grey, (small_width, small_height), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small.astype(np.float32), _BLUR_KERNEL, 0)
        centred: GreyImage = (small - np.float32(small.mean())).astype(np.float32)
        return centred
