"""``trayscan bench face``: the figures of face accounts on this machine.

- enrolment: three frames through the enrolment flow (detect, check, embed each);
- search: one 1:N search among ``templates`` synthetic enrolled templates (two per account);
- one frame: detection + quality + embedding, the cost of a face payment's chosen frame;
- a liveness burst: detection on six frames and the optical-flow parallax check;
- error rates: no labelled face set with identities installs from the package registries (the
  candidates found are listed in ``NO_LOCAL_SET``), so the model's published figure is printed,
  with the distances measured on the shipped photos as a sanity check, not as a rate.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from terminal.devices.face.dlib_embedder import DLIB_LFW_ACCURACY, DLIB_SAME_PERSON_DISTANCE
from terminal.devices.face.enrolment import EnrolmentFlow
from terminal.devices.face.liveness import LivenessCheck
from terminal.devices.face.matcher import EnrolledFace, FaceMatcher
from terminal.devices.face.pipeline import default_pipeline, read_image

logger = logging.getLogger(__name__)

FACES = Path(__file__).resolve().parents[3] / "tests" / "data" / "faces"

NO_LOCAL_SET = (
    "no labelled face set with identities is reachable offline: PyPI and Debian were searched "
    "(scikit-image's lfw_subset is 100 face / 100 non-face 25x25 crops without identities; "
    "bob.db.lfw and scikit-learn's fetch_lfw_people download the images at run time; Debian's "
    "opencv-data ships cascades, no faces)"
)
PUBLISHED = (
    f"dlib_face_recognition_resnet_model_v1: {DLIB_LFW_ACCURACY:.2%} accuracy on the LFW "
    f"verification benchmark at distance {DLIB_SAME_PERSON_DISTANCE} (dlib's published figure: "
    "http://dlib.net/ and https://github.com/davisking/dlib-models, README of "
    "dlib_face_recognition_resnet_model_v1)"
)


def _percentiles(values_ms: list[float]) -> dict[str, float]:
    array = np.asarray(values_ms)
    return {
        "p50_ms": round(float(np.percentile(array, 50)), 3),
        "p95_ms": round(float(np.percentile(array, 95)), 3),
    }


def _variants(image: np.ndarray) -> dict[str, np.ndarray]:
    import cv2

    shift = np.array([[1, 0, 40], [0, 1, 25]], dtype=np.float32)
    height, width = image.shape[:2]
    return {
        "flipped": np.ascontiguousarray(image[:, ::-1]),
        "shifted": np.asarray(cv2.warpAffine(image, shift, (width, height))),
        "darker": np.clip(image * 0.6, 0, 255).astype(np.uint8),
        "gamma_1.6": (255 * (image / 255.0) ** 1.6).astype(np.uint8),
    }


def bench_face(
    *, templates: int = 10_000, searches: int = 500, frames: int = 20, seed: int = 0
) -> dict[str, Any]:
    """Run the benchmark and return its figures (JSON-ready)."""
    pipeline = default_pipeline()
    image = read_image(FACES / "astronaut.png")
    variants = _variants(image)

    # One frame: detection + quality + embedding.
    pipeline.observe(image)  # warm-up
    frame_ms, detect_ms, embed_ms = [], [], []
    for _ in range(frames):
        started = time.perf_counter()
        observation = pipeline.observe(image)
        frame_ms.append((time.perf_counter() - started) * 1000)
        detect_ms.append(observation.timings_ms["detect"])
        embed_ms.append(observation.timings_ms.get("embed", 0.0))

    # Enrolment of three frames.
    enrol_ms = []
    for _ in range(3):
        flow = EnrolmentFlow(pipeline, frames_needed=3)
        started = time.perf_counter()
        for frame in (image, variants["shifted"], variants["darker"]):
            flow.feed(frame)
        enrol_ms.append((time.perf_counter() - started) * 1000)
        assert flow.done

    # 1:N search among synthetic templates shaped like dlib's (norm about 1.4).
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(templates, pipeline.embedder.dim)).astype(np.float32)
    matrix *= 1.4 / np.linalg.norm(matrix, axis=1, keepdims=True)
    matcher = FaceMatcher()
    started = time.perf_counter()
    matcher.replace_all(
        EnrolledFace(f"S{i:06d}", f"Diner {i}", matrix[i * 2 : i * 2 + 2])
        for i in range((templates + 1) // 2)
    )
    load_ms = (time.perf_counter() - started) * 1000
    queries = matrix[rng.integers(0, templates, size=searches)] + rng.normal(
        scale=0.02, size=(searches, pipeline.embedder.dim)
    ).astype(np.float32)
    search_ms = []
    for query in queries:
        started = time.perf_counter()
        matcher.search(query)
        search_ms.append((time.perf_counter() - started) * 1000)

    # A liveness burst of six frames: detection on each and the parallax check.
    burst = [variants["shifted"] if i % 2 else image for i in range(6)]
    liveness = LivenessCheck()
    started = time.perf_counter()
    faces = [next(iter(pipeline.detector.detect(frame)), None) for frame in burst]
    liveness.evaluate(burst, faces)
    burst_ms = (time.perf_counter() - started) * 1000

    enrolled = pipeline.observe(image).template
    assert enrolled is not None
    genuine = {}
    for name, variant in variants.items():
        template = pipeline.observe(variant).template
        genuine[name] = (
            None if template is None else round(float(np.linalg.norm(template - enrolled)), 3)
        )
    cameraman = pipeline.observe(read_image(FACES / "cameraman.png"), force=True).template
    impostor = None if cameraman is None else round(float(np.linalg.norm(cameraman - enrolled)), 3)

    return {
        "models": {"detector": pipeline.detector.name, "embedder": pipeline.model_id},
        "enrolment_3_frames_ms": round(float(np.median(enrol_ms)), 1),
        "search": {
            "templates": len(matcher),
            "accounts": matcher.account_count,
            "load_ms": round(load_ms, 1),
            **_percentiles(search_ms),
            "target_p95_ms": 20,
        },
        "frame_detect_embed": {
            **_percentiles(frame_ms),
            "detect_p50_ms": round(float(np.median(detect_ms)), 2),
            "embed_p50_ms": round(float(np.median(embed_ms)), 2),
            "target_ms": 250,
        },
        "liveness_burst_6_frames_ms": round(burst_ms, 1),
        "threshold": matcher.threshold,
        "margin": matcher.margin,
        "error_rates": {
            "labelled_set": None,
            "note": NO_LOCAL_SET,
            "published": PUBLISHED,
            "sanity_check_not_a_rate": {
                "astronaut_variant_distances": genuine,
                "cameraman_vs_astronaut_distance": impostor,
            },
        },
    }
