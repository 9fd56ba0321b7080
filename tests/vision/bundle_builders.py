"""A tiny but complete model bundle for tests: a fake detector with fixed boxes and a
mean-colour embedder, so which dish is where is decided by colour."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from vision.bundle import write_manifest
from vision.gallery import Gallery

from .onnx_builders import write_fake_yolo, write_mean_colour_embedder, yolo_prediction

RED, GREEN, BLUE = (0, 0, 255), (0, 255, 0), (255, 0, 0)  # BGR
COLOURS = {"tomato": RED, "greens": GREEN, "blueberry": BLUE}


def two_dish_image(
    left: tuple[int, int, int] = RED, right: tuple[int, int, int] = GREEN
) -> np.ndarray:
    """64x64: ``left`` colour on the left half, ``right`` on the right."""
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32] = left
    image[:, 32:] = right
    return image


def colour_embedding(bgr: tuple[int, int, int]) -> np.ndarray:
    rgb = np.array(bgr[::-1], np.float32) / 255.0
    return rgb / np.linalg.norm(rgb)


def make_bundle(
    folder: Path,
    *,
    version: str = "2026.11.26-1",
    dishes: tuple[str, ...] = ("tomato", "greens"),
    unknown_below: float = 0.8,
    unsure_margin: float = 0.05,
) -> Path:
    """Write a verified bundle at ``folder``: boxes on the two halves of a 64 px image."""
    folder.mkdir(parents=True, exist_ok=True)
    prediction = yolo_prediction([[16, 32, 28, 60], [48, 32, 28, 60]], [[0.9], [0.8]], anchors=8)
    write_fake_yolo(folder / "detector.onnx", prediction, imgsz=64)
    write_mean_colour_embedder(folder / "identifier.onnx", size=8)
    gallery = Gallery(3)
    for dish in dishes:
        gallery.add(dish, colour_embedding(COLOURS[dish])[None, :], [f"hash-{dish}"])
    gallery.save(folder / "gallery.npz")
    (folder / "classes.json").write_text(
        json.dumps(
            {"dishes": [{"id": d, "name_zh": d, "name_en": d, "dataset_class": d} for d in dishes]}
        ),
        encoding="utf-8",
    )
    (folder / "MODEL_CARD.md").write_text("# test bundle\n", encoding="utf-8")
    write_manifest(
        folder,
        {
            "version": version,
            "detector": {
                "file": "detector.onnx",
                "imgsz": 64,
                "conf": 0.25,
                "iou": 0.5,
                "containment": 0.85,
                "classes": ["dish"],
            },
            "identifier": {
                "file": "identifier.onnx",
                "input_size": 8,
                "mean": [0.0, 0.0, 0.0],
                "std": [1.0, 1.0, 1.0],
                "embedding_dim": 3,
            },
            "gallery": {"file": "gallery.npz", "mode": "prototype"},
            "thresholds": {"unknown_below": unknown_below, "unsure_margin": unsure_margin},
            "classes_file": "classes.json",
            "model_card": "MODEL_CARD.md",
        },
    )
    return folder


def write_yolo_dataset(
    folder: Path,
    trays: list[tuple[str, tuple[int, int, int], tuple[int, int, int]]],
    names: list[str],
) -> Path:
    """A YOLO dataset of two-dish images; each tray is (name, left colour, right colour)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    colour_class = {COLOURS[n]: i for i, n in enumerate(names)}
    for name, left, right in trays:
        cv2.imwrite(str(folder / "images" / f"{name}.png"), two_dish_image(left, right))
        lines = [
            f"{colour_class[left]} 0.25 0.5 0.4375 0.9375",
            f"{colour_class[right]} 0.75 0.5 0.4375 0.9375",
        ]
        (folder / "labels" / f"{name}.txt").write_text("\n".join(lines), encoding="utf-8")
    (folder / "dataset.yaml").write_text(
        f"path: .\ntest: images\nnames: {json.dumps(names)}\n", encoding="utf-8"
    )
    return folder / "dataset.yaml"
