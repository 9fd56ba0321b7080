"""The real models on public-domain photos: YuNet finds the astronaut's face with its landmarks,
dlib's ResNet gives the same person close templates through flips, shifts and re-lighting, and a
different person (the cameraman) and a cup of coffee are not taken for her."""

from __future__ import annotations

import numpy as np
import pytest

from terminal.devices.face.enrolment import EnrolmentFlow, enrol_photos
from terminal.devices.face.matcher import EnrolledFace, FaceMatcher, MatchKind
from terminal.devices.face.pipeline import FacePipeline
from terminal.devices.face.quality import QualityPolicy, check_quality
from terminal.devices.face.types import Image

from .builders import CAMERAMAN, COFFEE, flipped, load, relit, shifted

VARIANTS = {
    "flipped": flipped,
    "shifted": shifted,
    "darker": lambda image: relit(image, 0.6),
    "gamma": lambda image: relit(image, 1.0, 1.6),
}


def test_yunet_finds_the_face_and_its_landmarks(pipeline: FacePipeline, astronaut: Image) -> None:
    faces = pipeline.detector.detect(astronaut)
    assert len(faces) == 1
    x, y, w, _ = faces[0].box
    # The face is at about (178, 63) and 90 x 113 px (checked by eye on the photo).
    assert abs(x - 178) < 10 and abs(y - 63) < 10 and 80 < w < 100
    right_eye, left_eye, nose, right_mouth, left_mouth = faces[0].landmarks
    assert right_eye[0] < nose[0] < left_eye[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(right_mouth[1], left_mouth[1])
    assert pipeline.detector.detect(load(COFFEE)) == []


def test_dlib_templates_are_128_floats(pipeline: FacePipeline, astronaut: Image) -> None:
    observation = pipeline.observe(astronaut)
    assert observation.quality.ok, observation.quality.reasons
    assert observation.template is not None
    assert observation.template.shape == (128,) and observation.template.dtype == np.float32


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variants_of_the_enrolled_face_match_her(
    pipeline: FacePipeline, astronaut: Image, name: str
) -> None:
    enrolled = pipeline.observe(astronaut).template
    assert enrolled is not None
    matcher = FaceMatcher()
    matcher.replace_all([EnrolledFace("E1", "Eileen Collins", enrolled[None])])
    probe = pipeline.observe(VARIANTS[name](astronaut))
    assert probe.template is not None, probe.quality.reasons
    result = matcher.search(probe.template)
    assert result.kind is MatchKind.MATCH and result.account_id == "E1"
    assert result.distance < matcher.threshold


def test_a_different_face_and_no_face_do_not_match(
    pipeline: FacePipeline, astronaut: Image
) -> None:
    enrolled = pipeline.observe(astronaut).template
    assert enrolled is not None
    matcher = FaceMatcher()
    matcher.replace_all([EnrolledFace("E1", "Eileen Collins", enrolled[None])])
    cameraman = load(CAMERAMAN)
    # His face is small and turned (the quality checks say so) ...
    observation = pipeline.observe(cameraman)
    assert observation.template is None
    assert {i.code for i in observation.quality.issues} >= {"too_small", "not_frontal"}
    # ... and even embedded regardless, he is not her.
    forced = pipeline.observe(cameraman, force=True).template
    assert forced is not None
    result = matcher.search(forced)
    assert result.kind is MatchKind.NO_MATCH and result.distance > 0.6
    coffee = pipeline.observe(load(COFFEE))
    assert coffee.template is None
    assert [i.code for i in coffee.quality.issues] == ["no_face"]


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda image: image[::4, ::4].copy(), "too_small"),
        (lambda image: __import__("cv2").GaussianBlur(image, (0, 0), 3), "blurred"),
        (lambda image: relit(image, 0.2), "too_dark"),
        (lambda image: np.hstack([image, image]), "several_faces"),
    ],
    ids=["small", "blurred", "dark", "two faces"],
)
def test_quality_checks_say_what_is_wrong(
    pipeline: FacePipeline, astronaut: Image, make: object, code: str
) -> None:
    image = make(astronaut)  # type: ignore[operator]
    report = check_quality(image, pipeline.detector.detect(image), QualityPolicy())
    assert code in [issue.code for issue in report.issues], report.reasons
    assert not report.ok and all(report.reasons)


def test_enrolment_flow_guides_takes_good_frames_and_needs_consent(
    pipeline: FacePipeline, astronaut: Image
) -> None:
    from terminal.backend.face_sync import FaceConsent, FaceEnrolmentError

    flow = EnrolmentFlow(pipeline, frames_needed=3)
    step = flow.feed(load(COFFEE))
    assert step.accepted == 0 and "no face" in step.guidance
    steps = [flow.feed(frame) for frame in (astronaut, shifted(astronaut), flipped(astronaut))]
    assert [s.accepted for s in steps] == [1, 2, 3] and steps[-1].done
    with pytest.raises(FaceEnrolmentError, match="consent"):
        flow.finish(None)
    enrolment = flow.finish(FaceConsent("Eileen Collins"))
    assert enrolment.templates.shape == (3, 128) and enrolment.model == "dlib_resnet_v1"


def test_enrol_photos_reports_each_photo(
    pipeline: FacePipeline, astronaut: Image, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import cv2

    for name, image in {
        "a.png": astronaut,
        "b.png": shifted(astronaut),
        "c.png": relit(astronaut, 0.7),
        "coffee.png": load(COFFEE),
    }.items():
        cv2.imwrite(str(tmp_path / name), image)
    templates, reports = enrol_photos(pipeline, sorted(tmp_path.iterdir()))
    assert templates.shape == (3, 128)
    refused = {r.path.name: r.reasons for r in reports if not r.accepted}
    assert list(refused) == ["coffee.png"] and "no face" in refused["coffee.png"][0]
