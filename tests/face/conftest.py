"""Fixtures of the face tests: the real models (YuNet shipped in the repo, dlib from the ``face``
extra), loaded once per session.

Without dlib installed the tests that need it are skipped, except under CI (``$CI`` set), where
they fail: the ``dev`` extra installs it, so CI must really run them.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from terminal.devices.face.pipeline import FacePipeline, default_pipeline
from terminal.devices.face.types import DetectedFace, Image

from .builders import ASTRONAUT, load


@pytest.fixture(scope="session")
def pipeline() -> FacePipeline:
    """YuNet + dlib's ResNet with the default quality thresholds."""
    if importlib.util.find_spec("dlib") is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but dlib is not installed: pip install -e '.[dev]'")
        pytest.skip("dlib is not installed (pip install -e '.[face]')")
    return default_pipeline()


@pytest.fixture(scope="session")
def astronaut() -> Image:
    return load(ASTRONAUT)


@pytest.fixture(scope="session")
def astronaut_face(pipeline: FacePipeline, astronaut: Image) -> DetectedFace:
    faces = pipeline.detector.detect(astronaut)
    assert len(faces) == 1
    return faces[0]
