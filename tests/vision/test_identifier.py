"""Dish identification with a mean-colour embedder: crops, embeddings, decisions, end to end.

The fake embedder's embedding of a crop is its mean RGB colour. With no normalisation
(mean 0, std 1) red, green and blue references are orthogonal, and a grey crop scores the same
(1/sqrt(3), about 0.577) against all three: the textbook ambiguous dish.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from vision.gallery import Gallery
from vision.identifier import (
    Embedder,
    Identifier,
    IdentifierThresholds,
    crop_box,
    decide,
)
from vision.onnx import ModelLoadError
from vision.types import Candidate, DishStatus

from .onnx_builders import write_mean_colour_embedder

RED, GREEN, BLUE = (0, 0, 255), (0, 255, 0), (255, 0, 0)  # BGR
GREY, ORANGE = (128, 128, 128), (0, 80, 255)
PLAIN = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
GREY_SCORE = 1 / np.sqrt(3.0)


def tray(*patches: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A black 40-pixel-high tray with one 30x30 coloured patch per colour, and their boxes."""
    image = np.zeros((40, 40 * len(patches), 3), dtype=np.uint8)
    boxes = []
    for index, bgr in enumerate(patches):
        x = 40 * index + 5
        image[5:35, x : x + 30] = bgr
        boxes.append([x, 5, x + 30, 35])
    return image, np.array(boxes, dtype=np.float32)


@pytest.fixture
def embedder(tmp_path: Path) -> Embedder:
    return Embedder(write_mean_colour_embedder(tmp_path / "embedder.onnx"), **PLAIN)  # type: ignore[arg-type]


@pytest.fixture
def rgb_gallery(embedder: Embedder) -> Gallery:
    image, boxes = tray(RED, GREEN, BLUE)
    enrolling = Identifier(embedder, Gallery(embedder.dim), IdentifierThresholds(0.5, 0.1))
    references = enrolling.embed_boxes(image, boxes)
    gallery = Gallery(embedder.dim)
    for dish, reference, box in zip(["red", "green", "blue"], references, boxes, strict=True):
        source = hashlib.sha256(image.tobytes() + box.tobytes()).hexdigest()
        gallery.add(dish, reference[np.newaxis], [source], origin="photos")
    return gallery


# ---------------------------------------------------------------- crop_box


# The image is 100 wide and 50 high.
@pytest.mark.parametrize(
    ("box", "pad", "expected_tblr"),
    [
        pytest.param((10, 10, 30, 20), 0.0, (10, 20, 10, 30), id="inside"),
        pytest.param((10, 10, 30, 20), 0.05, (9, 21, 9, 31), id="inside-padded"),
        pytest.param((-10, -10, 200, 80), 0.05, (0, 50, 0, 100), id="beyond-every-edge"),
        pytest.param((100, 10, 100, 20), 0.0, (10, 20, 98, 100), id="sliver-on-right-edge"),
        pytest.param((150, 60, 170, 80), 0.0, (48, 50, 98, 100), id="outside-the-image"),
        pytest.param((30, 20, 10, 10), 0.0, (10, 20, 10, 30), id="corners-swapped"),
        pytest.param((40.4, 10.2, 40.6, 10.3), 0.0, (9, 11, 40, 42), id="subpixel"),
    ],
)
def test_crop_box_clips_and_is_never_empty(
    box: tuple[float, ...], pad: float, expected_tblr: tuple[int, int, int, int]
) -> None:
    image = np.arange(50 * 100 * 3, dtype=np.uint32).reshape(50, 100, 3).astype(np.uint8)
    top, bottom, left, right = expected_tblr

    crop = crop_box(image, box, pad_fraction=pad)

    assert crop.shape[0] >= 2 and crop.shape[1] >= 2
    np.testing.assert_array_equal(crop, image[top:bottom, left:right])


# ---------------------------------------------------------------- Embedder


@pytest.mark.parametrize(
    ("batch", "keep_spatial", "batch_size"),
    [
        pytest.param("N", False, 8, id="dynamic-batch"),
        pytest.param("N", False, 2, id="dynamic-batch-in-pieces"),
        pytest.param(1, False, 8, id="fixed-batch-of-one"),
        pytest.param("N", True, 8, id="pooled-n-d-1-1-output"),
        pytest.param(2, True, 8, id="fixed-batch-of-two-padded"),
    ],
)
def test_embedder_gives_unit_mean_colours(
    tmp_path: Path, batch: int | str, keep_spatial: bool, batch_size: int
) -> None:
    path = write_mean_colour_embedder(
        tmp_path / "embedder.onnx", batch=batch, keep_spatial=keep_spatial
    )
    embedder = Embedder(path, batch_size=batch_size, **PLAIN)  # type: ignore[arg-type]
    # Crops of different sizes and shapes, as a detector's boxes would give.
    crops = [
        np.full((10, 10, 3), RED, np.uint8),
        np.full((3, 40, 3), GREY, np.uint8),
        np.full((64, 8, 3), ORANGE, np.uint8),
    ]

    embeddings = embedder.embed(crops)

    assert embedder.dim == 3
    assert embeddings.shape == (3, 3)
    assert embeddings.dtype == np.float32
    orange = np.array([255.0, 80.0, 0.0]) / np.linalg.norm([255.0, 80.0, 0.0])
    np.testing.assert_allclose(embeddings, [[1, 0, 0], [GREY_SCORE] * 3, orange], atol=1e-5)


def test_embedder_applies_imagenet_normalisation_by_default(tmp_path: Path) -> None:
    embedder = Embedder(write_mean_colour_embedder(tmp_path / "embedder.onnx"))

    (embedding,) = embedder.embed([np.full((8, 8, 3), RED, np.uint8)])

    normalised_red = (np.array([1.0, 0.0, 0.0]) - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(
        embedding, normalised_red / np.linalg.norm(normalised_red), atol=1e-5
    )


def test_embedder_of_no_crops_is_empty(embedder: Embedder) -> None:
    assert embedder.embed([]).shape == (0, 3)


@pytest.mark.parametrize(
    ("size", "input_size", "works"),
    [
        pytest.param(8, None, True, id="size-from-model"),
        pytest.param(8, 16, False, id="size-disagrees-with-model"),
        pytest.param("side", None, False, id="dynamic-size-unknown"),
        pytest.param("side", 16, True, id="dynamic-size-given"),
    ],
)
def test_embedder_input_size(
    tmp_path: Path, size: int | str, input_size: int | None, works: bool
) -> None:
    path = write_mean_colour_embedder(tmp_path / "sized-embedder.onnx", size=size)

    if works:
        embedder = Embedder(path, input_size=input_size)
        assert embedder.embed([np.zeros((30, 20, 3), np.uint8)]).shape == (1, 3)
    else:
        with pytest.raises(ModelLoadError, match=re.escape(str(path))):
            Embedder(path, input_size=input_size)


def test_embedder_refuses_a_corrupt_model(tmp_path: Path) -> None:
    path = tmp_path / "embedder.onnx"
    path.write_bytes(b"not an onnx model at all")

    with pytest.raises(ModelLoadError, match=re.escape(str(path))):
        Embedder(path)


# ---------------------------------------------------------------- decide

T = IdentifierThresholds(unknown_below=0.5, unsure_margin=0.1)


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        pytest.param([], (DishStatus.UNKNOWN, None, 0.0), id="no-candidates"),
        pytest.param(
            [("rice", 0.4), ("soup", 0.1)], (DishStatus.UNKNOWN, None, 0.4), id="below-threshold"
        ),
        pytest.param(
            [("rice", 0.8), ("soup", 0.75)], (DishStatus.UNSURE, "rice", 0.8), id="small-margin"
        ),
        pytest.param(
            [("rice", 0.8), ("soup", 0.6)], (DishStatus.SURE, "rice", 0.8), id="clear-win"
        ),
        pytest.param([("rice", 0.6)], (DishStatus.SURE, "rice", 0.6), id="alone-in-the-gallery"),
        pytest.param(
            [("soup", 0.3), ("rice", 0.9)], (DishStatus.SURE, "rice", 0.9), id="unsorted-input"
        ),
        pytest.param(
            [("rice", 0.5), ("soup", 0.2)], (DishStatus.SURE, "rice", 0.5), id="at-threshold"
        ),
    ],
)
def test_decide(
    candidates: list[tuple[str, float]], expected: tuple[DishStatus, str | None, float]
) -> None:
    assert decide([Candidate(d, s) for d, s in candidates], T) == expected


# ---------------------------------------------------------------- Identifier end to end


@pytest.mark.parametrize(
    ("colour", "thresholds", "status", "dish_id"),
    [
        pytest.param(RED, (0.5, 0.1), DishStatus.SURE, "red", id="red-is-sure"),
        pytest.param(RED, (0.99, 0.9), DishStatus.SURE, "red", id="red-is-sure-even-when-strict"),
        pytest.param(ORANGE, (0.5, 0.1), DishStatus.SURE, "red", id="orange-is-red"),
        pytest.param(ORANGE, (0.5, 0.7), DishStatus.UNSURE, "red", id="orange-unsure-if-strict"),
        pytest.param(GREY, (0.7, 0.1), DishStatus.UNKNOWN, None, id="grey-unknown"),
        pytest.param(GREY, (0.5, 0.1), DishStatus.UNSURE, "*", id="grey-unsure"),
    ],
)
def test_identify_coloured_dishes(
    embedder: Embedder,
    rgb_gallery: Gallery,
    colour: tuple[int, int, int],
    thresholds: tuple[float, float],
    status: DishStatus,
    dish_id: str | None,
) -> None:
    identifier = Identifier(embedder, rgb_gallery, IdentifierThresholds(*thresholds))
    image, boxes = tray(BLUE, colour)

    blue_dish, dish = identifier.identify(image, boxes)

    assert (blue_dish.status, blue_dish.dish_id) == (DishStatus.SURE, "blue")
    assert dish.box_xyxy == tuple(float(v) for v in boxes[1])
    assert dish.status == status
    if dish_id == "*":  # a three-way tie: any of them, as long as the cashier gets all three
        assert dish.dish_id in {"red", "green", "blue"}
        np.testing.assert_allclose([c.score for c in dish.candidates], [GREY_SCORE] * 3, atol=1e-4)
    else:
        assert dish.dish_id == dish_id
    assert sorted(c.dish_id for c in dish.candidates) == ["blue", "green", "red"]


def test_identify_keeps_top_k_candidates(embedder: Embedder, rgb_gallery: Gallery) -> None:
    identifier = Identifier(embedder, rgb_gallery, T, k=2, mode="nearest")
    image, boxes = tray(ORANGE)

    (dish,) = identifier.identify(image, boxes)

    assert [c.dish_id for c in dish.candidates] == ["red", "green"]
    # Resizing the uint8 crop rounds the orange a little.
    assert dish.score == pytest.approx(255 / np.hypot(255, 80), abs=2e-3)


def test_identify_no_boxes(embedder: Embedder, rgb_gallery: Gallery) -> None:
    identifier = Identifier(embedder, rgb_gallery, T)

    assert identifier.identify(tray(RED)[0], np.zeros((0, 4), np.float32)) == []


def test_identify_with_an_empty_gallery_says_unknown(embedder: Embedder) -> None:
    identifier = Identifier(embedder, Gallery(3), T)
    image, boxes = tray(RED)

    (dish,) = identifier.identify(image, boxes)

    assert (dish.status, dish.dish_id, dish.candidates) == (DishStatus.UNKNOWN, None, ())


def test_identifier_refuses_a_gallery_from_another_backbone(embedder: Embedder) -> None:
    with pytest.raises(ValueError, match="another backbone"):
        Identifier(embedder, Gallery(512), T)
