"""Small builders of labelled datasets on disk (tiny noise images), for the dataset tool tests."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT = 64, 48
CLASSES = ["com", "rau", "tom"]

Box = tuple[float, float, float, float]


def noise_image(path: Path, seed: int, width: int = WIDTH, height: int = HEIGHT) -> Path:
    """A random image (distinct per seed, so no two count as near-duplicates)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)
    return path


def box_line(class_id: int, box: Box, width: int = WIDTH, height: int = HEIGHT) -> str:
    """A YOLO box line for a pixel box."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
    return f"{class_id} {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"


def write_yolo(
    root: Path,
    images: Mapping[str, Sequence[tuple[str, str | None]]],
    class_names: Sequence[str] = CLASSES,
    seed: int = 0,
) -> Path:
    """A YOLO dataset: ``images/<split>/<name>`` and ``labels/<split>/<stem>.txt``.

    Args:
        root: the dataset folder.
        images: per split, ``(file name, label text)``; None writes no label file.
        class_names: the YAML's names.
        seed: the first image's noise seed (each image gets the next).

    Returns:
        The dataset YAML.
    """
    for split, entries in images.items():
        for name, label in entries:
            noise_image(root / "images" / split / name, seed)
            seed += 1
            if label is not None:
                label_path = root / "labels" / split / f"{Path(name).stem}.txt"
                label_path.parent.mkdir(parents=True, exist_ok=True)
                label_path.write_text(label, encoding="utf-8")
    lines = ["path: ."]
    lines += [f"{split}: images/{split}" for split in images]
    lines.append(f"names: {json.dumps(list(class_names))}")
    yaml_path = root / "data.yaml"
    yaml_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return yaml_path


def clean_yolo(root: Path) -> Path:
    """A dataset without a single fault: two train images and one val image."""
    return write_yolo(
        root,
        {
            "train": [
                (
                    "a.jpg",
                    box_line(0, (8, 6, 24, 18)) + "\n" + box_line(1, (32, 12, 56, 36)) + "\n",
                ),
                ("b.jpg", box_line(2, (0, 24, 16, 48)) + "\n"),
            ],
            "val": [("c.jpg", box_line(1, (10, 10, 30, 30)) + "\n")],
        },
    )


def clean_voc(root: Path) -> Path:
    """A VOC folder: one image with two objects."""
    noise_image(root / "JPEGImages" / "tray1.jpg", 100)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "Annotations" / "tray1.xml").write_text(
        voc_xml("tray1.jpg", [("com", (8, 6, 24, 18)), ("rau", (32, 12, 56, 36))]),
        encoding="utf-8",
    )
    return root


def voc_xml(filename: str, objects: Sequence[tuple[str, Box]]) -> str:
    """A VOC annotation, one element a line (so errors have useful line numbers)."""
    lines = [
        "<annotation>",
        f"  <filename>{filename}</filename>",
        f"  <size><width>{WIDTH}</width><height>{HEIGHT}</height><depth>3</depth></size>",
    ]
    for name, (x1, y1, x2, y2) in objects:
        lines += [
            "  <object>",
            f"    <name>{name}</name>",
            f"    <bndbox><xmin>{x1:g}</xmin><ymin>{y1:g}</ymin>"
            f"<xmax>{x2:g}</xmax><ymax>{y2:g}</ymax></bndbox>",
            "  </object>",
        ]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def coco_data(
    annotations: Sequence[tuple[int, int, list[float]]],
    categories: Sequence[tuple[int, str]] = ((1, "com"), (2, "rau")),
) -> dict[str, object]:
    """A COCO document over one image (id 1, ``tray1.jpg``): ``(image_id, category_id, bbox)``."""
    return {
        "images": [{"id": 1, "file_name": "tray1.jpg", "width": WIDTH, "height": HEIGHT}],
        "categories": [{"id": cid, "name": name} for cid, name in categories],
        "annotations": [
            {"id": index + 1, "image_id": image_id, "category_id": category_id, "bbox": bbox}
            for index, (image_id, category_id, bbox) in enumerate(annotations)
        ],
    }


def clean_coco(root: Path) -> Path:
    """A COCO folder: ``annotations.json`` and one image with two objects."""
    noise_image(root / "tray1.jpg", 200)
    write_coco(root, coco_data([(1, 1, [8, 6, 16, 12]), (1, 2, [32, 12, 24, 24])]))
    return root


def write_coco(root: Path, data: object) -> Path:
    """Write ``root/annotations.json``, indented (one key a line)."""
    path = root / "annotations.json"
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def read_yolo_lines(path: Path) -> list[tuple[int, list[float]]]:
    """A label file as ``(class id, values)`` per line."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        rows.append((int(fields[0]), [float(v) for v in fields[1:]]))
    return rows
