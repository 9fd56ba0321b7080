"""Labelled datasets: YOLO, VOC and COCO read into the same pixel boxes; bad files are named."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.datasets import DatasetError, LabelledDataset, LabelledObject, read_dataset

SHARED_DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
needs_shared = pytest.mark.skipif(
    not SHARED_DATASETS.is_dir(), reason=f"the shared datasets folder {SHARED_DATASETS} is missing"
)

WIDTH, HEIGHT = 64, 48
CLASSES = ["com", "rau", "tom"]
# The same three dishes on one tray, in pixels; every format must give these back.
OBJECTS = [
    LabelledObject("com", (8.0, 6.0, 24.0, 18.0)),
    LabelledObject("rau", (32.0, 12.0, 56.0, 36.0)),
    LabelledObject("tom", (0.0, 24.0, 16.0, 48.0)),
]


def write_image(path: Path, width: int = WIDTH, height: int = HEIGHT) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((height, width, 3), 128, np.uint8))
    return path


def yolo_box_line(obj: LabelledObject) -> str:
    x1, y1, x2, y2 = obj.box_xyxy
    cx, cy = (x1 + x2) / 2 / WIDTH, (y1 + y2) / 2 / HEIGHT
    w, h = (x2 - x1) / WIDTH, (y2 - y1) / HEIGHT
    return f"{CLASSES.index(obj.class_name)} {cx} {cy} {w} {h}"


def yolo_polygon_line(obj: LabelledObject) -> str:
    """A diamond-with-corners polygon whose bounding box is the object's box."""
    x1, y1, x2, y2 = (v / s for v, s in zip(obj.box_xyxy, (WIDTH, HEIGHT) * 2, strict=True))
    xm, ym = (x1 + x2) / 2, (y1 + y2) / 2
    points = [(xm, y1), (x2, ym), (xm, y2), (x1, ym), (x1, y1 + 0.01)]
    return f"{CLASSES.index(obj.class_name)} " + " ".join(f"{x} {y}" for x, y in points)


def make_yolo(root: Path, label_text: str | None = None, names_as_dict: bool = False) -> Path:
    """A YOLO dataset with one labelled tray and one image without a label file."""
    write_image(root / "images" / "test" / "tray1.png")
    write_image(root / "images" / "test" / "tray2.png")
    if label_text is None:
        # Two boxes and a polygon, with no trailing newline, as some exporters write them.
        label_text = "\n".join(
            [yolo_box_line(OBJECTS[0]), yolo_box_line(OBJECTS[1]), yolo_polygon_line(OBJECTS[2])]
        )
    (root / "labels" / "test").mkdir(parents=True)
    (root / "labels" / "test" / "tray1.txt").write_text(label_text, encoding="utf-8")
    names = dict(enumerate(CLASSES)) if names_as_dict else CLASSES
    yaml_lines = [
        "path: .",
        "train: images/train",
        "test: images/test",
        f"names: {json.dumps(names)}",
    ]
    yaml_path = root / "data.yaml"
    yaml_path.write_text("\n".join(yaml_lines) + "\n", encoding="utf-8")
    return yaml_path


def make_voc(root: Path) -> Path:
    write_image(root / "JPEGImages" / "tray1.png")
    objects = "".join(
        f"<object><name>{obj.class_name}</name><bndbox>"
        f"<xmin>{obj.box_xyxy[0]:g}</xmin><ymin>{obj.box_xyxy[1]:g}</ymin>"
        f"<xmax>{obj.box_xyxy[2]:g}</xmax><ymax>{obj.box_xyxy[3]:g}</ymax>"
        "</bndbox></object>"
        for obj in OBJECTS
    )
    (root / "Annotations").mkdir(parents=True)
    (root / "Annotations" / "tray1.xml").write_text(
        f"<annotation><filename>tray1.png</filename>{objects}</annotation>", encoding="utf-8"
    )
    return root


def make_coco(root: Path) -> Path:
    write_image(root / "images" / "tray1.png")
    annotations = []
    for ann_id, obj in enumerate(OBJECTS, start=1):
        x1, y1, x2, y2 = obj.box_xyxy
        annotations.append(
            {
                "id": ann_id,
                "image_id": 10,
                "category_id": CLASSES.index(obj.class_name) + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
            }
        )
    data = {
        "images": [{"id": 10, "file_name": "tray1.png", "width": WIDTH, "height": HEIGHT}],
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)],
    }
    path = root / "annotations.json"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def tray1_objects(dataset: LabelledDataset) -> list[LabelledObject]:
    (tray1,) = (image for image in dataset.images if image.path.stem == "tray1")
    assert tray1.path.is_file()
    return sorted(tray1.objects, key=lambda obj: obj.class_name)


@pytest.mark.parametrize(
    ("builder", "fmt", "pass_format"),
    [
        (make_yolo, "yolo", False),
        (lambda root: make_yolo(root, names_as_dict=True), "yolo", False),
        (lambda root: make_yolo(root).parent, "yolo", False),  # the folder holding data.yaml
        (make_voc, "voc", False),
        (make_coco, "coco", False),
        (lambda root: make_coco(root).parent, "coco", True),
    ],
)
def test_every_format_gives_the_same_three_dishes(
    tmp_path: Path, builder: Callable[[Path], Path], fmt: str, pass_format: bool
) -> None:
    path = builder(tmp_path / "ds")

    dataset = read_dataset(path, format=fmt if pass_format else None)

    assert dataset.format == fmt
    assert dataset.class_names == CLASSES
    got = tray1_objects(dataset)
    assert [obj.class_name for obj in got] == [obj.class_name for obj in OBJECTS]
    for obj, expected in zip(got, OBJECTS, strict=True):
        assert obj.box_xyxy == pytest.approx(expected.box_xyxy, abs=1e-6)


def test_a_yolo_image_without_a_label_file_has_no_objects(tmp_path: Path) -> None:
    dataset = read_dataset(make_yolo(tmp_path / "ds"))
    assert [image.path.name for image in dataset.images] == ["tray1.png", "tray2.png"]
    assert dataset.images[1].objects == ()
    assert dataset.n_objects == 3


def test_yolo_split_picks_the_yaml_key(tmp_path: Path) -> None:
    yaml_path = make_yolo(tmp_path / "ds")
    write_image(tmp_path / "ds" / "images" / "train" / "a.png")
    dataset = read_dataset(yaml_path, split="train")
    assert [image.path.name for image in dataset.images] == ["a.png"]


def test_yolo_split_from_a_txt_list_relative_to_the_dataset_path(tmp_path: Path) -> None:
    yaml_path = make_yolo(tmp_path / "ds")
    (tmp_path / "ds" / "strict.txt").write_text("images/test/tray1.png", encoding="utf-8")
    strict = tmp_path / "ds" / "strict.yaml"
    strict.write_text(f"path: .\ntest: strict.txt\nnames: {json.dumps(CLASSES)}\n", "utf-8")

    dataset = read_dataset(strict)

    assert [image.path.name for image in dataset.images] == ["tray1.png"]
    assert len(dataset.images[0].objects) == 3
    assert yaml_path.is_file()


@pytest.mark.parametrize(
    ("label_text", "message"),
    [
        ("7 0.5 0.5 0.2 0.2", r"tray1\.txt:1: class id 7 is not one of the 3 classes"),
        ("0 0.5 0.5 0.2", r"tray1\.txt:1: expected 4 box values .* got 3"),
        ("0 0.1 0.1 0.2 0.2 0.3", r"tray1\.txt:1: expected 4 box values .* got 5"),
        ("0 0.5 0.5 0.2 0.2\nrice 0.5 0.5 0.2 0.2", r"tray1\.txt:2: not a YOLO label line"),
        ("0 0.5 0.5 0.2 0.2\n\n-1 0.5 0.5 0.2 0.2\n", r"tray1\.txt:3: class id -1"),
    ],
)
def test_a_malformed_yolo_line_is_named_by_file_and_line(
    tmp_path: Path, label_text: str, message: str
) -> None:
    yaml_path = make_yolo(tmp_path / "ds", label_text=label_text)
    with pytest.raises(DatasetError, match=message):
        read_dataset(yaml_path)


def test_an_unreadable_yolo_image_is_named(tmp_path: Path) -> None:
    yaml_path = make_yolo(tmp_path / "ds")
    (tmp_path / "ds" / "images" / "test" / "tray1.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"image .*tray1\.png cannot be read"):
        read_dataset(yaml_path)


def test_a_missing_split_is_named(tmp_path: Path) -> None:
    yaml_path = make_yolo(tmp_path / "ds")
    with pytest.raises(DatasetError, match=r"data\.yaml: no 'val' key"):
        read_dataset(yaml_path, split="val")


def test_a_bad_coco_annotation_is_named_by_id(tmp_path: Path) -> None:
    path = make_coco(tmp_path / "ds")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["annotations"][1]["category_id"] = 99
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DatasetError, match=r"annotations\.json: annotation id 2: category_id 99"):
        read_dataset(path)


def test_a_bad_voc_box_names_the_xml_file(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "ds")
    xml = root / "Annotations" / "tray1.xml"
    xml.write_text(xml.read_text(encoding="utf-8").replace("<xmin>8</xmin>", "<xmin>left</xmin>"))
    with pytest.raises(DatasetError, match=r"tray1\.xml: object 1 \(com\): <xmin> 'left'"):
        read_dataset(root)


def test_an_unknown_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"found no data\.yaml"):
        read_dataset(tmp_path / "empty")


@needs_shared
def test_the_strict_test_split_of_the_vietnamese_trays() -> None:
    dataset = read_dataset(SHARED_DATASETS / "vn-canteen-trays" / "test-strict.yaml")
    assert len(dataset.images) == 284
    assert all(image.path.is_file() for image in dataset.images)
    assert len(dataset.class_names) == 41
    assert dataset.n_objects > len(dataset.images)


@needs_shared
def test_the_thali_plates_with_names_as_a_dict() -> None:
    dataset = read_dataset(SHARED_DATASETS / "in-thali-plates" / "dataset.original.yaml")
    assert len(dataset.images) == 127
    assert len(dataset.class_names) == 16
    assert dataset.class_names[0] == "bread_or_Roti_naan"
    assert dataset.n_objects > 0
