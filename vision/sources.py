"""Frame sources: where the terminal's camera frames come from.

One small interface, :class:`FrameSource`, with concrete sources chosen by ``type`` in the
config. This module has the image-folder replay the demo and the tests use.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from vision.types import Frame

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


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


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


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
