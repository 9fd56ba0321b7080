"""The dish detector: letterbox geometry, NMS, containment, and the ONNX YOLO backend end to end."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from vision.detector import (
    LetterboxInfo,
    OnnxYoloDetector,
    letterbox,
    nms,
    suppress_contained,
    unletterbox,
)
from vision.onnx import ModelLoadError

from .onnx_builders import write_fake_yolo, yolo_prediction


def solid_image(height: int, width: int, bgr: tuple[int, int, int] = (200, 200, 200)) -> np.ndarray:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:] = bgr
    return image


# ---------------------------------------------------------------- letterbox


@pytest.mark.parametrize(
    ("height", "width", "size", "scale", "content_hw", "pads_tblr"),
    [
        (32, 64, 64, 1.0, (32, 64), (16, 16, 0, 0)),  # wide, already the right width
        (64, 128, 64, 0.5, (32, 64), (16, 16, 0, 0)),  # wide, shrunk
        (100, 50, 64, 0.64, (64, 32), (0, 0, 16, 16)),  # tall
        (31, 64, 64, 1.0, (31, 64), (16, 17, 0, 0)),  # odd padding: the extra row goes below
        (64, 64, 64, 1.0, (64, 64), (0, 0, 0, 0)),  # square: no padding
        (16, 32, 64, 2.0, (32, 64), (16, 16, 0, 0)),  # small camera image, enlarged
    ],
)
def test_letterbox_keeps_aspect_and_centres_the_image(
    height: int,
    width: int,
    size: int,
    scale: float,
    content_hw: tuple[int, int],
    pads_tblr: tuple[int, int, int, int],
) -> None:
    boxed, info = letterbox(solid_image(height, width), size)
    top, bottom, left, right = pads_tblr

    assert boxed.shape == (size, size, 3)
    assert info == LetterboxInfo(scale, left, top, width, height, size)
    content = boxed[top : size - bottom, left : size - right]
    assert content.shape[:2] == content_hw
    assert np.all(content == 200)
    padding = np.ones((size, size), dtype=bool)
    padding[top : size - bottom, left : size - right] = False
    assert np.all(boxed[padding] == 114)


@pytest.mark.parametrize(
    ("height", "width", "size"), [(64, 128, 64), (100, 50, 64), (31, 64, 64), (480, 640, 320)]
)
def test_unletterbox_maps_boxes_back_to_the_original_pixels(
    height: int, width: int, size: int
) -> None:
    original = np.array(
        [[0, 0, width, height], [width * 0.25, height * 0.5, width * 0.5, height * 0.75]],
        dtype=np.float32,
    )
    _, info = letterbox(solid_image(height, width), size)
    boxed = original * info.scale + np.array([info.pad_x, info.pad_y] * 2, dtype=np.float32)

    np.testing.assert_allclose(unletterbox(boxed, info), original, atol=1e-3)


def test_unletterbox_clips_boxes_reaching_into_the_padding() -> None:
    _, info = letterbox(solid_image(64, 128), 64)  # 16 rows of padding above and below

    back = unletterbox(np.array([[-5.0, 2.0, 70.0, 60.0]]), info)

    np.testing.assert_allclose(back, [[0.0, 0.0, 128.0, 64.0]])


# ---------------------------------------------------------------- NMS and containment

A = [0, 0, 10, 10]


@pytest.mark.parametrize(
    ("boxes", "scores", "iou", "kept"),
    [
        pytest.param([], [], 0.5, [], id="empty"),
        pytest.param([A, [20, 20, 30, 30]], [0.6, 0.9], 0.5, [1, 0], id="disjoint-both-kept"),
        pytest.param([A, [1, 0, 11, 10]], [0.9, 0.8], 0.5, [0], id="heavy-overlap-one-kept"),
        pytest.param([A, [1, 0, 11, 10]], [0.7, 0.8], 0.5, [1], id="higher-score-wins"),
        pytest.param([A, A, A], [0.5, 0.9, 0.5], 0.5, [1], id="identical"),
        pytest.param([A, [5, 0, 15, 10]], [0.9, 0.8], 0.5, [0, 1], id="iou-0.33-below-threshold"),
        pytest.param([A, [5, 0, 15, 10]], [0.9, 0.8], 0.3, [0], id="iou-0.33-above-threshold"),
        # B is suppressed by A, so B must not suppress C, which barely touches A.
        pytest.param(
            [A, [4, 0, 14, 10], [8, 0, 18, 10]], [0.9, 0.8, 0.7], 0.3, [0, 2], id="greedy-chain"
        ),
    ],
)
def test_nms_keeps_the_best_of_each_overlapping_group(
    boxes: list[list[float]], scores: list[float], iou: float, kept: list[int]
) -> None:
    result = nms(np.array(boxes, dtype=np.float32).reshape(-1, 4), np.array(scores), iou)

    assert result.dtype == np.int64
    assert result.tolist() == kept


PLATE = [0, 0, 100, 100]


@pytest.mark.parametrize(
    ("boxes", "scores", "containment", "kept"),
    [
        pytest.param([], [], 0.85, [], id="empty"),
        pytest.param([PLATE, [10, 10, 30, 30]], [0.9, 0.6], 0.85, [0], id="fragment-dropped"),
        pytest.param(
            [PLATE, [10, 10, 30, 30]], [0.6, 0.9], 0.85, [1, 0], id="fragment-scoring-higher-kept"
        ),
        pytest.param(
            [[0, 0, 50, 50], [40, 0, 90, 50]], [0.9, 0.8], 0.85, [0, 1], id="neighbours-kept"
        ),
        # 80 % of the second box lies on the plate.
        pytest.param([PLATE, [-5, 0, 20, 20]], [0.9, 0.8], 0.85, [0, 1], id="80pct-inside-kept"),
        pytest.param([PLATE, [-5, 0, 20, 20]], [0.9, 0.8], 0.75, [0], id="80pct-inside-dropped"),
    ],
)
def test_suppress_contained_drops_fragments_of_a_dish(
    boxes: list[list[float]], scores: list[float], containment: float, kept: list[int]
) -> None:
    boxes_array = np.array(boxes, dtype=np.float32).reshape(-1, 4)

    assert suppress_contained(boxes_array, np.array(scores), containment).tolist() == kept


# ---------------------------------------------------------------- ONNX YOLO detector

# A 128x64 camera image letterboxed to 64: scale 0.5, 16 rows of padding on top.
IMAGE_HW = (64, 128)
MAIN = ((32, 32, 20, 10), (0.9, 0.1))  # -> (44, 22, 84, 42), class 0
SIDE = ((10, 24, 8, 8), (0.2, 0.7))  # -> (12, 8, 28, 24), class 1
FAINT = ((50, 40, 6, 6), (0.1, 0.05))  # under every conf used below
DUPLICATE = ((33, 32, 20, 10), (0.8, 0.1))  # MAIN found twice: NMS
FRAGMENT = ((32, 32, 6, 4), (0.5, 0.3))  # a piece of MAIN: containment
MAIN_BOX = (44.0, 22.0, 84.0, 42.0)
SIDE_BOX = (12.0, 8.0, 28.0, 24.0)
FRAGMENT_BOX = (58.0, 28.0, 70.0, 36.0)


def tray_prediction() -> np.ndarray:
    anchors = [MAIN, SIDE, FAINT, DUPLICATE, FRAGMENT]
    return yolo_prediction([a[0] for a in anchors], [a[1] for a in anchors], anchors=12)


@pytest.fixture
def fake_yolo(tmp_path: Path) -> Path:
    return write_fake_yolo(tmp_path / "detector.onnx", tray_prediction(), imgsz=64)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({}, [(MAIN_BOX, 0.9, 0), (SIDE_BOX, 0.7, 1)], id="defaults"),
        pytest.param({"conf": 0.75}, [(MAIN_BOX, 0.9, 0)], id="conf-filters"),
        pytest.param({"max_det": 1}, [(MAIN_BOX, 0.9, 0)], id="max-det"),
        pytest.param(
            {"containment": None},
            [(MAIN_BOX, 0.9, 0), (SIDE_BOX, 0.7, 1), (FRAGMENT_BOX, 0.5, 0)],
            id="containment-off",
        ),
        pytest.param(
            {"iou": 0.95},
            [(MAIN_BOX, 0.9, 0), (SIDE_BOX, 0.7, 1)],
            id="lenient-iou-containment-still-drops-duplicate",
        ),
        pytest.param(
            {"iou": 0.95, "containment": None},
            [
                (MAIN_BOX, 0.9, 0),
                ((46.0, 22.0, 86.0, 42.0), 0.8, 0),
                (SIDE_BOX, 0.7, 1),
                (FRAGMENT_BOX, 0.5, 0),
            ],
            id="lenient-iou-no-containment-keeps-all",
        ),
        pytest.param({"conf": 0.95}, [], id="nothing-confident"),
    ],
)
def test_detector_finds_dishes_in_original_pixels(
    fake_yolo: Path,
    options: dict[str, float | None],
    expected: list[tuple[tuple[float, ...], float, int]],
) -> None:
    detector = OnnxYoloDetector(fake_yolo, **options)  # type: ignore[arg-type]

    found = detector.detect(solid_image(*IMAGE_HW))

    assert found.boxes_xyxy.dtype == np.float32
    assert found.scores.dtype == np.float32
    assert found.class_ids.dtype == np.int64
    np.testing.assert_allclose(found.boxes_xyxy, np.array([e[0] for e in expected]).reshape(-1, 4))
    np.testing.assert_allclose(found.scores, [e[1] for e in expected], rtol=1e-6)
    assert found.class_ids.tolist() == [e[2] for e in expected]


def test_detector_reads_its_input_from_the_model(fake_yolo: Path) -> None:
    detector = OnnxYoloDetector(fake_yolo)

    assert (detector.imgsz, detector.input_name, detector.num_classes) == (64, "images", 2)


def test_preprocess_gives_a_letterboxed_rgb_tensor(fake_yolo: Path) -> None:
    detector = OnnxYoloDetector(fake_yolo)
    blue = solid_image(*IMAGE_HW, bgr=(255, 0, 0))

    tensor, info = detector.preprocess(blue)

    assert tensor.shape == (1, 3, 64, 64)
    assert tensor.dtype == np.float32
    assert (info.scale, info.pad_y) == (0.5, 16)
    red, green, blue_channel = tensor[0, :, 32, 32]
    assert (red, green, blue_channel) == (0.0, 0.0, 1.0)
    np.testing.assert_allclose(tensor[0, :, 0, 0], [114 / 255] * 3, rtol=1e-6)


def test_postprocess_drops_boxes_lying_in_the_padding(fake_yolo: Path) -> None:
    detector = OnnxYoloDetector(fake_yolo)
    _, info = letterbox(solid_image(*IMAGE_HW), 64)
    in_padding = yolo_prediction([[32, 6, 20, 8]], [[0.9]])  # rows 2..10: all padding

    assert len(detector.postprocess(in_padding, info)) == 0


@pytest.mark.parametrize(
    ("prediction", "input_shape"),
    [
        pytest.param(np.zeros((1, 84), np.float32), None, id="output-rank-2"),
        pytest.param(np.zeros((1, 3, 10), np.float32), None, id="output-too-few-rows"),
        pytest.param(np.zeros((1, 300, 6), np.float32), None, id="end-to-end-export"),
        pytest.param(tray_prediction(), [1, 3, 64, 32], id="input-not-square"),
        pytest.param(tray_prediction(), [1, 1, 64, 64], id="input-one-channel"),
        pytest.param(tray_prediction(), [1, 3, "height", "width"], id="input-dynamic-size"),
    ],
)
def test_detector_refuses_a_model_of_another_shape(
    tmp_path: Path, prediction: np.ndarray, input_shape: list[int | str] | None
) -> None:
    path = write_fake_yolo(tmp_path / "odd-detector.onnx", prediction, input_shape=input_shape)

    with pytest.raises(ModelLoadError, match=re.escape(str(path))):
        OnnxYoloDetector(path)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(np.random.default_rng(0).bytes(2048), id="random-bytes"),
        pytest.param(b"", id="empty-file"),
        pytest.param(None, id="missing-file"),
    ],
)
def test_detector_refuses_a_broken_model_file(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "broken-detector.onnx"
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(ModelLoadError, match=re.escape(str(path))):
        OnnxYoloDetector(path)
