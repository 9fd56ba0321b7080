"""Frame sources: replayed photos, video files, and a live camera that survives an unplug.

The live camera runs against :class:`FakeCamera`, a device the test can unplug and plug back,
so the reader thread, the queue and the watchdog are exercised without hardware.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from vision.sources import (
    CameraSource,
    CameraState,
    FrameSourceError,
    ImageFolderSource,
    VideoFileSource,
    known_source_kinds,
    make_source,
)

Image = npt.NDArray[np.uint8]

# Generous upper bound for a background thread to catch up on a busy 2-core machine; the polls
# return as soon as the condition holds, so passing tests never wait this long.
PATIENCE_S = 5.0


def wait_until(condition: Callable[[], bool], timeout_s: float = PATIENCE_S) -> bool:
    """Polls ``condition`` every few milliseconds; whether it became true in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.002)
    return condition()


def solid(value: int, size: tuple[int, int] = (32, 24)) -> Image:
    width, height = size
    return np.full((height, width, 3), value, np.uint8)


def textured(mean: int, spread: int, size: tuple[int, int] = (32, 24)) -> Image:
    """Stripes of mean-spread and mean+spread grey: that mean, a spread of ``spread``."""
    width, height = size
    image = np.full((height, width, 3), mean - spread, np.uint8)
    # 8 px wide, so the stripes survive however sparsely the brightness is sampled.
    image[:, (np.arange(width) // 8) % 2 == 1] = mean + spread
    return image


# -- replayed photos -------------------------------------------------------------------------


def write_photos(folder: Path, values: list[int]) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for number, value in enumerate(values):
        path = folder / f"tray-{number:02d}.png"
        cv2.imwrite(str(path), solid(value))
        paths.append(path)
    return paths


def test_image_folder_replays_photos_in_name_order_then_ends(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    paths = write_photos(folder, [10, 20, 30])
    (folder / "notes.txt").write_text("not a photo", encoding="utf-8")

    frames = list(ImageFolderSource(folder))

    assert [f.source for f in frames] == [str(p) for p in paths]
    assert [int(f.image[0, 0, 0]) for f in frames] == [10, 20, 30]
    assert [f.index for f in frames] == [0, 1, 2]


def test_image_folder_loops_when_asked(tmp_path: Path) -> None:
    write_photos(tmp_path / "photos", [10, 20])
    source = ImageFolderSource(tmp_path / "photos", loop=True)

    frames = [source.read() for _ in range(5)]

    assert [int(f.image[0, 0, 0]) for f in frames if f] == [10, 20, 10, 20, 10]
    assert [f.index for f in frames if f] == [0, 1, 2, 3, 4]


# -- video files -----------------------------------------------------------------------------

VIDEO_GREYS = [0, 60, 120, 180, 240]


@pytest.fixture
def tiny_video(tmp_path: Path) -> Path:
    """Five 64x48 frames of distinct greys, MJPG in an .avi, 10 fps."""
    path = tmp_path / "trays.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG .avi files")
    for grey in VIDEO_GREYS:
        writer.write(solid(grey, (64, 48)))
    writer.release()
    return path


def greys(frames: list[Any]) -> list[int]:
    """The grey level of each frame, rounded to the nearest 10 (MJPG is lossy)."""
    return [round(float(f.image.mean()) / 10) * 10 for f in frames]


def test_video_file_plays_every_frame_then_ends(tiny_video: Path) -> None:
    source = VideoFileSource(tiny_video)
    try:
        frames = list(source)
    finally:
        source.close()

    assert greys(frames) == VIDEO_GREYS
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(f.image.flags.c_contiguous for f in frames)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    # Timestamps follow the video's 10 fps, however fast the file is read.
    steps = np.diff([f.timestamp for f in frames])
    assert steps == pytest.approx([0.1] * 4, abs=1e-6)


def test_video_file_loops_when_asked(tiny_video: Path) -> None:
    source = VideoFileSource(tiny_video, loop=True)
    try:
        frames = [source.read() for _ in range(12)]
    finally:
        source.close()

    assert greys(frames) == (VIDEO_GREYS * 3)[:12]
    assert [f.index for f in frames if f] == list(range(12))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "does not exist", id="missing"),
        pytest.param(b"this is not a video", "cannot open video file", id="not a video"),
    ],
)
def test_a_video_file_that_cannot_play_names_the_file(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "broken.avi"
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(FrameSourceError, match=message) as raised:
        VideoFileSource(path)

    assert str(path) in str(raised.value)


# -- the registry ----------------------------------------------------------------------------


def test_make_source_builds_the_source_a_config_names(tmp_path: Path, tiny_video: Path) -> None:
    write_photos(tmp_path / "photos", [10, 20])

    replay = make_source("replay", folder=tmp_path / "photos", loop=True)
    video = make_source("video", path=tiny_video)
    camera = make_source("opencv", device=0, width=320, open_capture=FakeCamera().open)
    try:
        assert isinstance(replay, ImageFolderSource) and replay.loop
        assert isinstance(video, VideoFileSource) and not video.loop
        assert isinstance(camera, CameraSource) and camera.width == 320
    finally:
        video.close()
        camera.close()


def test_an_unknown_source_type_lists_the_known_ones() -> None:
    with pytest.raises(FrameSourceError) as raised:
        make_source("webcam", device=0)

    message = str(raised.value)
    assert "'webcam'" in message
    assert set(known_source_kinds()) >= {"replay", "video", "opencv"}
    assert all(kind in message for kind in known_source_kinds())


def test_a_misspelt_source_option_says_what_the_source_takes(tmp_path: Path) -> None:
    with pytest.raises(FrameSourceError, match=r"'replay'.*folder, loop"):
        make_source("replay", fodler=tmp_path)


# -- live camera -----------------------------------------------------------------------------


class FakeCapture:
    """One open handle on a :class:`FakeCamera`; dead for good once the camera is unplugged."""

    def __init__(self, camera: FakeCamera, opened: bool) -> None:
        self.camera = camera
        self.opened = opened
        self.dead = not opened
        self.released = False
        self.settings: dict[int, float] = {}

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.opened and not self.released

    def read(self) -> tuple[bool, Any]:
        # A real camera delivers at its frame rate; this one at a few hundred fps.
        time.sleep(self.camera.frame_interval_s)
        if self.dead or self.released:
            return False, None
        return True, self.camera.next_image()

    def set(self, prop: int, value: float) -> bool:
        self.settings[prop] = value
        return True

    def release(self) -> None:
        self.released = True


class FakeCamera:
    """A camera device the test can unplug and plug back; ``open`` is the capture factory."""

    def __init__(self, image: Image | None = None, frame_interval_s: float = 0.002) -> None:
        self.image = image
        self.frame_interval_s = frame_interval_s
        self.captures: list[FakeCapture] = []
        self.images_made = 0
        self._plugged = True
        self._lock = threading.Lock()

    def open(self, device: int | str) -> FakeCapture:
        with self._lock:
            capture = FakeCapture(self, opened=self._plugged)
            self.captures.append(capture)
            return capture

    def next_image(self) -> Image:
        with self._lock:
            self.images_made += 1
            if self.image is not None:
                return self.image.copy()
            # Numbered frames: the image says which frame it is.
            return solid(self.images_made % 200 + 40)

    def unplug(self) -> None:
        with self._lock:
            self._plugged = False
            for capture in self.captures:
                capture.dead = True

    def plug_in(self) -> None:
        with self._lock:
            self._plugged = True


@pytest.fixture
def camera_source() -> Iterator[Callable[..., CameraSource]]:
    """Makes camera sources on fake cameras and closes them after the test."""
    sources: list[CameraSource] = []

    def make(camera: FakeCamera, **options: Any) -> CameraSource:
        source = CameraSource(0, open_capture=camera.open, **options)
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.close()


def test_camera_frames_flow_newest_first_with_the_requested_settings(
    camera_source: Callable[..., CameraSource],
) -> None:
    camera = FakeCamera()
    source = camera_source(camera, width=320, height=240, fps=15)

    frames = [source.read(timeout_s=PATIENCE_S) for _ in range(3)]

    assert all(f is not None for f in frames)
    indices = [f.index for f in frames if f]
    assert indices == sorted(set(indices))
    assert all(f.source == "opencv:0" for f in frames if f)
    assert all(f.image.shape == (24, 32, 3) for f in frames if f)
    assert camera.captures[0].settings == {
        cv2.CAP_PROP_FRAME_WIDTH: 320.0,
        cv2.CAP_PROP_FRAME_HEIGHT: 240.0,
        cv2.CAP_PROP_FPS: 15.0,
    }
    health = source.health()
    assert health.state == CameraState.OK
    assert health.frames_received >= 3
    assert health.reconnects == 0 and health.last_error is None


def test_a_slow_consumer_gets_fresh_frames_and_stale_ones_are_dropped_and_counted(
    camera_source: Callable[..., CameraSource],
) -> None:
    source = camera_source(FakeCamera(), queue_size=2)
    depths = []

    def enough_frames() -> bool:
        depths.append(source.health().queue_depth)
        return source.health().frames_received >= 20

    assert wait_until(enough_frames), "the fake camera should deliver 20 frames"
    before = source.health()
    frame = source.read(timeout_s=0)
    after = source.health()

    assert max(depths) <= 2
    assert before.queue_depth <= 2
    # Nothing was read yet, so every frame not waiting in the queue was dropped.
    assert before.frames_dropped == before.frames_received - before.queue_depth
    assert before.frames_dropped >= 18
    # read() hands out the newest frame and drops the older one still waiting.
    assert frame is not None and frame.index >= before.frames_received - 1
    assert after.frames_dropped >= before.frames_dropped
    assert after.frames_dropped + after.queue_depth + 1 == after.frames_received


def test_the_camera_reconnects_after_an_unplug(
    camera_source: Callable[..., CameraSource],
) -> None:
    camera = FakeCamera()
    source = camera_source(camera, reopen_after_s=0.05, max_backoff_s=0.05)
    first = source.read(timeout_s=PATIENCE_S)
    assert first is not None

    camera.unplug()
    assert wait_until(lambda: source.health().state == CameraState.RECONNECTING)
    lost = source.health()
    camera.plug_in()
    assert wait_until(lambda: source.health().state == CameraState.OK)
    source.read(timeout_s=0)  # empty the queue of frames from before
    fresh = source.read(timeout_s=PATIENCE_S)

    assert lost.last_error is not None and "camera 0" in lost.last_error
    health = source.health()
    assert health.reconnects == 1
    assert fresh is not None and fresh.index > first.index
    assert len(camera.captures) >= 2
    assert camera.captures[0].released, "the dead capture is released before reopening"


def test_a_camera_that_never_opens_keeps_retrying_and_says_why(
    camera_source: Callable[..., CameraSource],
) -> None:
    camera = FakeCamera()
    camera.unplug()
    source = camera_source(camera, reopen_after_s=0.05, max_backoff_s=0.05)

    assert wait_until(lambda: len(camera.captures) >= 3), "it keeps trying to open the camera"
    health = source.health()

    assert source.read(timeout_s=0.01) is None
    assert health.state == CameraState.RECONNECTING
    assert health.frames_received == 0 and health.reconnects == 0
    assert health.last_error == "cannot open camera 0"
    assert health.mean_brightness is None and not health.blocked


@pytest.mark.parametrize(
    ("image", "brightness_ok", "blocked"),
    [
        pytest.param(solid(0), False, True, id="black: lens covered"),
        pytest.param(solid(20), False, True, id="uniform near-black: lens covered"),
        pytest.param(textured(20, 15), False, False, id="dark scene with detail"),
        pytest.param(textured(128, 40), True, False, id="well lit"),
        pytest.param(solid(250), False, False, id="overexposed"),
    ],
)
def test_camera_health_flags_a_covered_lens_and_bad_exposure(
    camera_source: Callable[..., CameraSource],
    image: Image,
    brightness_ok: bool,
    blocked: bool,
) -> None:
    source = camera_source(FakeCamera(image=image))

    assert source.read(timeout_s=PATIENCE_S) is not None
    health = source.health()

    assert health.mean_brightness == pytest.approx(float(image.mean()), abs=1.0)
    assert health.brightness_ok is brightness_ok
    assert health.blocked is blocked


def test_close_stops_the_reader_and_releases_the_camera(
    camera_source: Callable[..., CameraSource],
) -> None:
    camera = FakeCamera()
    source = camera_source(camera)
    assert source.read(timeout_s=PATIENCE_S) is not None

    source.close()
    received = source.health().frames_received
    made = camera.images_made

    assert source.health().state == CameraState.STOPPED
    assert all(capture.released for capture in camera.captures)
    assert source.read(timeout_s=PATIENCE_S) is None  # at once: nothing more will come
    time.sleep(0.02)  # ten frame intervals of the fake: a running reader would take more
    assert camera.images_made == made
    assert source.health().frames_received == received
