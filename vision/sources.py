"""Frame sources: where the terminal's camera frames come from.

One small interface, :class:`FrameSource`, with concrete sources chosen by ``type`` in the
config through :func:`make_source`:

- ``replay``: :class:`ImageFolderSource`, the photos of a folder (the demo and the tests);
- ``video``: :class:`VideoFileSource`, a recorded video file;
- ``opencv``: :class:`CameraSource`, a live camera (device index or stream URL) read by a
  background thread, with a bounded queue, a reconnecting watchdog and a health report.
"""

from __future__ import annotations

import abc
import collections
import inspect
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar

import cv2
import numpy as np
import numpy.typing as npt

from vision.types import Frame

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

SourceFactory = Callable[..., "FrameSource"]
_SourceClass = TypeVar("_SourceClass", bound="type[FrameSource]")

# The source types a config may name, filled by @register_source below.
_SOURCES: dict[str, SourceFactory] = {}


class FrameSourceError(RuntimeError):
    """A frame source that cannot deliver: missing folder, no images, unreadable file."""


class FrameSource(abc.ABC):
    """Something that yields camera frames."""

    @abc.abstractmethod
    def read(self) -> Frame | None:
        """The next frame, or None when the source has ended."""

    def close(self) -> None:  # noqa: B027 - a no-op default is the point
        """Release the device or file."""

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame


def register_source(kind: str) -> Callable[[_SourceClass], _SourceClass]:
    """Class decorator that makes a frame source available to :func:`make_source` as ``kind``.

    Args:
        kind: the ``type`` value a config uses to ask for this source.

    Raises:
        ValueError: ``kind`` is already taken; two sources answering one name would make the
            config ambiguous.
    """

    def register(source_class: _SourceClass) -> _SourceClass:
        if kind in _SOURCES:
            raise ValueError(f"frame source type {kind!r} is registered twice")
        _SOURCES[kind] = source_class
        return source_class

    return register


def known_source_kinds() -> tuple[str, ...]:
    """The source types :func:`make_source` accepts, sorted."""
    return tuple(sorted(_SOURCES))


def make_source(kind: str, **options: Any) -> FrameSource:
    """The frame source a config asks for.

    Args:
        kind: the source type: ``"replay"``, ``"video"``, ``"opencv"`` or one registered with
            :func:`register_source`.
        **options: the source's own arguments, e.g. ``folder`` and ``loop`` for ``replay``.

    Raises:
        FrameSourceError: the type is unknown (the message lists the known ones), an option is
            not one the source takes, or the source itself cannot start.
    """
    factory = _SOURCES.get(kind)
    if factory is None:
        raise FrameSourceError(
            f"unknown frame source type {kind!r}; known types: {', '.join(known_source_kinds())}"
        )
    signature = inspect.signature(factory)
    try:
        signature.bind(**options)
    except TypeError as exc:
        # Say which options the source does take, so a wrong config key is a one-line fix.
        accepted = ", ".join(signature.parameters)
        raise FrameSourceError(f"frame source type {kind!r}: {exc}; it takes: {accepted}") from exc
    return factory(**options)


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


@register_source("replay")
class ImageFolderSource(FrameSource):
    """Replays the photos of a folder in name order, one frame per photo.

    Args:
        folder: the folder with the photos.
        loop: start again from the first photo after the last.
    """

    def __init__(self, folder: Path | str, *, loop: bool = False) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FrameSourceError(f"image folder {self.folder} does not exist")
        self.paths = list_images(self.folder)
        if not self.paths:
            raise FrameSourceError(f"image folder {self.folder} holds no images")
        self.loop = loop
        self._next = 0
        self._index = 0

    def read(self) -> Frame | None:
        if self._next >= len(self.paths):
            if not self.loop:
                return None
            self._next = 0
        path = self.paths[self._next]
        self._next += 1
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FrameSourceError(f"cannot decode image {path}")
        frame = Frame(np.ascontiguousarray(image), time.time(), self._index, str(path))
        self._index += 1
        return frame


def _as_bgr(image: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """``image`` as a contiguous 3-channel BGR uint8 array, whatever layout the driver gave."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


# Used when a file does not state its frame rate, so its timestamps still advance.
_FALLBACK_VIDEO_FPS = 25.0


@register_source("video")
class VideoFileSource(FrameSource):
    """Plays a recorded video file, one frame per read, as fast as the caller reads.

    Frame timestamps follow the video's own timeline (the wall time at opening plus the
    frame's position in the file, continuing across loops), not the moment of reading, so the
    tray watcher's settle time means the same as on a live camera even when the file is read
    faster than real time.

    Args:
        path: the video file.
        loop: start again from the first frame after the last.

    Raises:
        FrameSourceError: the file is missing or OpenCV cannot open it as a video.
    """

    def __init__(self, path: Path | str, *, loop: bool = False) -> None:
        self.path = Path(path)
        self.loop = loop
        if not self.path.is_file():
            raise FrameSourceError(f"video file {self.path} does not exist")
        self._capture: Any = self._open()
        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if math.isfinite(fps) and fps > 0 else _FALLBACK_VIDEO_FPS
        self._started_at = time.time()
        self._index = 0

    def _open(self) -> Any:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise FrameSourceError(f"cannot open video file {self.path}: not a video OpenCV reads")
        return capture

    def _read_image(self) -> npt.NDArray[Any] | None:
        if self._capture is None:
            return None
        ok, image = self._capture.read()
        return image if ok and image is not None and image.size else None

    def read(self) -> Frame | None:
        if self._capture is None:
            return None
        image = self._read_image()
        if image is None and self.loop and self._index > 0:
            image = self._rewind_and_read()
        if image is None:
            return None
        timestamp = self._started_at + self._index / self.fps
        frame = Frame(_as_bgr(image), timestamp, self._index, str(self.path))
        self._index += 1
        return frame

    def _rewind_and_read(self) -> npt.NDArray[Any] | None:
        if self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0):
            image = self._read_image()
            if image is not None:
                return image
        # Some backends cannot seek back in every container; reopening the file always works.
        self._capture.release()
        self._capture = self._open()
        return self._read_image()

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class VideoCaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` that :class:`CameraSource` uses; fakes implement it."""

    def isOpened(self) -> bool: ...  # noqa: N802 - OpenCV's name

    def read(self) -> tuple[bool, Any]: ...

    def release(self) -> None: ...

    def set(self, prop: int, value: float) -> bool: ...


def open_opencv_capture(device: int | str) -> VideoCaptureLike:
    """A ``cv2.VideoCapture`` on a device index (``0``) or a stream URL (``rtsp://...``)."""
    capture: VideoCaptureLike = cv2.VideoCapture(device)
    return capture


class CameraState(StrEnum):
    """What a :class:`CameraSource`'s reader is doing."""

    OK = "ok"
    """Frames arrive."""
    RECONNECTING = "reconnecting"
    """No frames: the camera is not open yet, or was lost and is being reopened."""
    STOPPED = "stopped"
    """:meth:`CameraSource.close` was called."""


@dataclass(frozen=True)
class CameraHealth:
    """A snapshot of a live camera's health, for the status screen and the logs.

    Attributes:
        state: ``ok``, ``reconnecting`` or ``stopped``.
        fps: frames per second received over the last two seconds.
        frames_received: frames the camera delivered since the source started.
        frames_dropped: frames discarded unread because newer ones arrived first.
        reconnects: times frames flowed again after the camera was lost and reopened.
        last_error: the last problem seen (kept after recovery), or None.
        mean_brightness: grey mean 0..255 of the last frame, None before the first frame.
        brightness_ok: the last frame's brightness lies within the configured range.
        blocked: the lens looks covered: the last frame is very dark and nearly uniform.
        seconds_since_last_frame: time since the last frame, None before the first frame.
        queue_depth: frames waiting to be read; never more than the queue size.
    """

    state: CameraState
    fps: float
    frames_received: int
    frames_dropped: int
    reconnects: int
    last_error: str | None
    mean_brightness: float | None
    brightness_ok: bool
    blocked: bool
    seconds_since_last_frame: float | None
    queue_depth: int


# The fps figure covers this many seconds of frames.
_FPS_WINDOW_S = 2.0
# Brightness is measured on every 8th pixel each way: near enough the full frame's mean and
# spread for a covered-lens check, on a 64th of the pixels, so the reader thread keeps up.
_BRIGHTNESS_STEP = 8


@register_source("opencv")
class CameraSource(FrameSource):
    """A live OpenCV camera read by a background thread into a small bounded queue.

    The reader thread never waits for the consumer: when the queue is full the oldest frame is
    dropped and counted, so a slow consumer sees fresh frames, not a growing backlog. The same
    thread is the watchdog: once no frame has arrived for ``reopen_after_s`` (reads fail, or
    return nothing usable) it releases the capture and reopens it, waiting longer after each
    failed attempt, and counts a reconnect when frames flow again.

    Args:
        device: an OpenCV device index (``0``) or a stream URL.
        width: frame width to ask the camera for; None keeps the driver's default.
        height: frame height to ask the camera for.
        fps: frame rate to ask the camera for.
        queue_size: most frames waiting to be read.
        reopen_after_s: how long without a frame before the capture is reopened.
        max_backoff_s: longest wait between two reopen attempts.
        brightness_low: darkest acceptable grey mean of a frame.
        brightness_high: brightest acceptable grey mean of a frame.
        blocked_mean_below: a frame darker than this on average ...
        blocked_std_below: ... and more uniform than this (grey standard deviation) means the
            lens is covered.
        open_capture: makes a capture for ``device``; defaults to ``cv2.VideoCapture``. Tests
            pass a fake.
        clock: monotonic seconds, for the watchdog and the health figures.

    Raises:
        ValueError: a size or time argument is out of range.
    """

    def __init__(
        self,
        device: int | str,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        queue_size: int = 2,
        reopen_after_s: float = 2.0,
        max_backoff_s: float = 10.0,
        brightness_low: float = 40.0,
        brightness_high: float = 220.0,
        blocked_mean_below: float = 30.0,
        blocked_std_below: float = 6.0,
        open_capture: Callable[[int | str], VideoCaptureLike] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        if reopen_after_s <= 0 or max_backoff_s <= 0:
            raise ValueError("reopen_after_s and max_backoff_s must be positive")
        if brightness_low >= brightness_high:
            raise ValueError(
                f"brightness_low {brightness_low} must be below brightness_high {brightness_high}"
            )
        self.device = device
        self.name = f"opencv:{device}"
        self.width = width
        self.height = height
        self.fps = fps
        self.queue_size = queue_size
        self.reopen_after_s = reopen_after_s
        self.max_backoff_s = max_backoff_s
        self.brightness_low = brightness_low
        self.brightness_high = brightness_high
        self.blocked_mean_below = blocked_mean_below
        self.blocked_std_below = blocked_std_below
        self._open_capture = open_capture or open_opencv_capture
        self._clock = clock

        # One condition guards every field below; read() waits on it for the next frame.
        self._cond = threading.Condition()
        self._queue: collections.deque[Frame] = collections.deque(maxlen=queue_size)
        self._state = CameraState.RECONNECTING
        self._frames_received = 0
        self._frames_dropped = 0
        self._reconnects = 0
        self._last_error: str | None = None
        self._mean_brightness: float | None = None
        self._brightness_std: float | None = None
        self._last_frame_at: float | None = None
        self._recent_frame_times: collections.deque[float] = collections.deque()
        self._lost = False

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{device}", daemon=True)
        self._thread.start()

    # -- consumer side -------------------------------------------------------------------

    def read(self, timeout_s: float = 1.0) -> Frame | None:
        """The newest frame, waiting up to ``timeout_s`` for one to arrive.

        Older frames still queued are discarded and counted as dropped: the terminal wants the
        scene as it is now. Iterating the source stops at the first timeout.

        Returns:
            The newest unread frame, or None on timeout or once the source is closed.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._queue and not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if not self._queue or self._stop.is_set():
                return None
            frame = self._queue.pop()
            self._frames_dropped += len(self._queue)
            self._queue.clear()
            return frame

    def health(self) -> CameraHealth:
        """A consistent snapshot of the camera's state and counters."""
        with self._cond:
            now = self._clock()
            self._forget_old_frame_times(now)
            times = self._recent_frame_times
            span_s = times[-1] - times[0] if times else 0.0
            fps = (len(times) - 1) / span_s if span_s > 0 else 0.0
            mean = self._mean_brightness
            std = self._brightness_std
            return CameraHealth(
                state=self._state,
                fps=fps,
                frames_received=self._frames_received,
                frames_dropped=self._frames_dropped,
                reconnects=self._reconnects,
                last_error=self._last_error,
                mean_brightness=mean,
                brightness_ok=(
                    mean is not None and self.brightness_low <= mean <= self.brightness_high
                ),
                blocked=(
                    mean is not None
                    and std is not None
                    and mean < self.blocked_mean_below
                    and std < self.blocked_std_below
                ),
                seconds_since_last_frame=(
                    None if self._last_frame_at is None else max(0.0, now - self._last_frame_at)
                ),
                queue_depth=len(self._queue),
            )

    def close(self) -> None:
        """Stop the reader thread, release the camera and wake any waiting :meth:`read`."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            # A driver stuck inside read() cannot be interrupted; the thread is a daemon, so
            # it cannot keep the process alive, and we say so rather than hang the shutdown.
            self._thread.join(timeout=max(5.0, self.reopen_after_s))
            if self._thread.is_alive():
                logger.warning("camera %s: reader thread did not stop in time", self.name)
        with self._cond:
            self._state = CameraState.STOPPED
            self._queue.clear()

    # -- reader thread -------------------------------------------------------------------

    def _run(self) -> None:
        capture: VideoCaptureLike | None = None
        first_backoff = min(self.reopen_after_s, 1.0, self.max_backoff_s)
        backoff = first_backoff
        # A failed read is retried after this pause rather than at once: an unplugged camera
        # fails instantly and would otherwise spin a core.
        failed_read_pause = min(0.05, self.reopen_after_s / 4)
        last_progress = self._clock()
        try:
            while not self._stop.is_set():
                if capture is None:
                    capture = self._try_open()
                    if capture is None:
                        self._stop.wait(backoff)
                        backoff = min(backoff * 2, self.max_backoff_s)
                        continue
                    last_progress = self._clock()
                ok, image, error = self._try_read(capture)
                now = self._clock()
                if ok:
                    self._deliver(image, now)
                    backoff = first_backoff
                    last_progress = now
                    continue
                if now - last_progress >= self.reopen_after_s:
                    silent_s = now - last_progress
                    self._lose(capture, error or f"no frame for {silent_s:.1f} s")
                    capture = None
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.max_backoff_s)
                    continue
                self._stop.wait(failed_read_pause)
        finally:
            if capture is not None:
                self._release(capture)
            with self._cond:
                self._state = CameraState.STOPPED
                self._cond.notify_all()

    def _try_open(self) -> VideoCaptureLike | None:
        try:
            capture = self._open_capture(self.device)
            opened = bool(capture.isOpened())
        except Exception as exc:  # drivers raise anything; the watchdog must keep going
            self._note_error(f"cannot open camera {self.device}: {exc}")
            return None
        if not opened:
            self._release(capture)
            self._note_error(f"cannot open camera {self.device}")
            return None
        for prop, value in (
            (cv2.CAP_PROP_FRAME_WIDTH, self.width),
            (cv2.CAP_PROP_FRAME_HEIGHT, self.height),
            (cv2.CAP_PROP_FPS, self.fps),
        ):
            if value is not None and not capture.set(prop, float(value)):
                logger.info("camera %s: driver refused setting %s to %s", self.name, prop, value)
        logger.debug("camera %s opened", self.name)
        return capture

    def _try_read(self, capture: VideoCaptureLike) -> tuple[bool, Any, str | None]:
        try:
            ok, image = capture.read()
        except Exception as exc:  # a driver error is one more failed read to the watchdog
            return False, None, f"camera {self.device} read failed: {exc}"
        if not ok or image is None or not getattr(image, "size", 0):
            return False, None, None
        return True, image, None

    def _deliver(self, raw_image: npt.NDArray[Any], now: float) -> None:
        image = _as_bgr(raw_image)
        sample = np.ascontiguousarray(image[::_BRIGHTNESS_STEP, ::_BRIGHTNESS_STEP])
        grey = cv2.cvtColor(sample, cv2.COLOR_BGR2GRAY)
        mean = float(grey.mean())
        std = float(grey.std())
        timestamp = time.time()
        with self._cond:
            frame = Frame(image, timestamp, self._frames_received, self.name)
            self._frames_received += 1
            if len(self._queue) == self._queue.maxlen:
                self._frames_dropped += 1  # the deque drops the oldest on append
            self._queue.append(frame)
            self._recent_frame_times.append(now)
            self._forget_old_frame_times(now)
            self._last_frame_at = now
            self._mean_brightness = mean
            self._brightness_std = std
            if self._lost:
                self._lost = False
                self._reconnects += 1
                logger.info(
                    "camera %s: frames flow again (reconnect %d)", self.name, self._reconnects
                )
            self._state = CameraState.OK
            self._cond.notify_all()

    def _lose(self, capture: VideoCaptureLike, reason: str) -> None:
        self._release(capture)
        with self._cond:
            self._lost = True
        self._note_error(f"camera {self.device}: {reason}; reopening")

    def _note_error(self, message: str) -> None:
        with self._cond:
            was_ok = self._state is CameraState.OK or self._last_error is None
            self._last_error = message
            if self._state is not CameraState.STOPPED:
                self._state = CameraState.RECONNECTING
        # One warning per outage; the retries that follow, with backoff, go to debug.
        if was_ok:
            logger.warning("%s", message)
        else:
            logger.debug("%s", message)

    def _release(self, capture: VideoCaptureLike) -> None:
        try:
            capture.release()
        except Exception:  # releasing a dead device can fail; it is gone either way
            logger.debug("camera %s: release failed", self.name, exc_info=True)

    def _forget_old_frame_times(self, now: float) -> None:
        while self._recent_frame_times and now - self._recent_frame_times[0] > _FPS_WINDOW_S:
            self._recent_frame_times.popleft()


def read_image(path: Path | str) -> npt.NDArray[np.uint8]:
    """Decode an image file to BGR uint8.

    Raises:
        FrameSourceError: the file is missing or cannot be decoded; names the file.
    """
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FrameSourceError(f"cannot decode image {path}")
    return np.ascontiguousarray(image, dtype=np.uint8)
