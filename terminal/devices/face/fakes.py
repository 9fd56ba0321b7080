"""Shipped fakes of the face models, for the demo and for tests that need no dlib.

:class:`FakeFaceDetector` finds one frontal face in the middle of any frame that is not blank
(plain black frames have no face), with landmarks that follow a marker the test draws: it
reads nothing but the frame's pixels, so a test controls it by what it draws.
:class:`FakeFaceEmbedder` gives every *identity* its own template: the identity is the value of
the frame's top-left pixel (``image[0, 0, 0]``), so ``painted(image, 7)`` is "person 7".
"""

from __future__ import annotations

import logging

import numpy as np

from terminal.devices.face.types import DetectedFace, FaceDetector, FaceEmbedder, Image, Template

logger = logging.getLogger(__name__)


def painted(image: Image, identity: int) -> Image:
    """A copy of ``image`` marked as showing person ``identity`` (0-255) for the fakes."""
    marked = image.copy()
    marked[0, 0, 0] = identity
    return marked


class FakeFaceDetector(FaceDetector):
    """One face, centred, a third of the frame's height, in every frame that is not all black."""

    name = "fake"

    def detect(self, image: Image) -> list[DetectedFace]:
        if not image.any():
            return []
        height, width = image.shape[:2]
        side = height / 3
        x, y = width / 2 - side / 2, height / 2 - side / 2
        eye = side * 0.3
        landmarks = np.array(
            [
                [x + side / 2 - eye / 2, y + side * 0.4],
                [x + side / 2 + eye / 2, y + side * 0.4],
                [x + side / 2, y + side * 0.55],
                [x + side / 2 - eye / 2.5, y + side * 0.7],
                [x + side / 2 + eye / 2.5, y + side * 0.7],
            ],
            dtype=np.float32,
        )
        return [DetectedFace((x, y, side, side), landmarks, 0.99)]


class FakeFaceEmbedder(FaceEmbedder):
    """A fixed random template per identity (the frame's top-left pixel), length 128.

    Templates of different identities are about 1.4 apart; of the same identity, 0.
    """

    model_id = "fake_v1"
    dim = 128
    match_threshold = 0.6

    def embed(self, image: Image, face: DetectedFace) -> Template:
        identity = int(image[0, 0, 0])
        rng = np.random.default_rng(identity)
        vector = rng.normal(size=self.dim)
        return (vector / np.linalg.norm(vector)).astype(np.float32)
