"""The customer camera: the one that faces the diner, for paying by face and enrolment.

It is a frame source like the tray camera (an OpenCV device or stream, a video file, a folder
of photos replayed), chosen by the ``face.camera`` section of the config; this adapter gives the
face screens the newest picture from it. The tray camera looks down and never serves here.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from vision.sources import FrameSource

logger = logging.getLogger(__name__)


class FrameSourceCamera:
    """A customer camera over any :class:`vision.sources.FrameSource`.

    Args:
        source: the opened frame source; closed with this camera.
    """

    def __init__(self, source: FrameSource) -> None:
        self.source = source

    def read(self) -> npt.NDArray[np.uint8] | None:
        """The newest frame (BGR uint8), or None when the camera has none now."""
        frame = self.source.read()
        return frame.image if frame is not None else None

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if callable(close):
            close()
