"""YuNet, OpenCV's small face detector (MIT, 230 KB ONNX), through ``cv2.FaceDetectorYN``.

The model ships in ``assets/models/face/`` (see its ``SOURCE.md``). Frames larger than
``max_side`` pixels are scaled down before detection, which keeps one detection near 10-20 ms
on a 2-core CPU, and the boxes and landmarks are scaled back to the frame's pixels.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import cv2
import numpy as np

from terminal.devices.face.types import DetectedFace, FaceDetector, FaceModelError, Image

logger = logging.getLogger(__name__)

#: The shipped YuNet model.
DEFAULT_YUNET_MODEL = (
    Path(__file__).resolve().parents[3]
    / "assets"
    / "models"
    / "face"
    / "face_detection_yunet_2026may.onnx"
)


class YuNetDetector(FaceDetector):
    """Faces with five landmarks from YuNet.

    Args:
        model_path: the YuNet ONNX file (default: the shipped one).
        score_threshold: faces scoring below this are not reported.
        nms_threshold: overlap above which the weaker of two boxes is dropped.
        max_side: frames are scaled down to at most this many pixels on their longer side.

    Raises:
        FaceModelError: the model file is missing or OpenCV cannot load it.
    """

    name = "yunet"

    def __init__(
        self,
        model_path: Path | str = DEFAULT_YUNET_MODEL,
        *,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.3,
        max_side: int = 640,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise FaceModelError(f"YuNet face detector model not found: {path}")
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), score_threshold, nms_threshold, 50
            )
        except cv2.error as exc:
            raise FaceModelError(f"OpenCV cannot load the YuNet model {path}: {exc}") from exc
        self.model_path = path
        self.max_side = max_side
        # An OpenCV net keeps per-call state: one frame at a time.
        self._lock = threading.Lock()
        self._input_size: tuple[int, int] = (0, 0)

    def detect(self, image: Image) -> list[DetectedFace]:
        """Every face in ``image``, best score first."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a BGR image (H, W, 3), got shape {image.shape}")
        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = (
            image
            if scale == 1.0
            else cv2.resize(
                image,
                (max(1, round(width * scale)), max(1, round(height * scale))),
                interpolation=cv2.INTER_AREA,
            )
        )
        size = (int(small.shape[1]), int(small.shape[0]))
        with self._lock:
            if size != self._input_size:
                self._net.setInputSize(size)
                self._input_size = size
            _, rows = self._net.detect(np.ascontiguousarray(small))
        if rows is None:
            return []
        faces = []
        for row in np.asarray(rows, dtype=np.float32):
            x, y, w, h = (float(v) / scale for v in row[:4])
            landmarks = (row[4:14].reshape(5, 2) / scale).astype(np.float32)
            faces.append(DetectedFace((x, y, w, h), landmarks, float(row[14])))
        faces.sort(key=lambda face: -face.score)
        return faces
