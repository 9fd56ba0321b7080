"""Dataset validation: each fault alone in an otherwise clean dataset is found and named."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from terminal.cli import main
from training.dataset_check import CODES, validate_dataset

from .builders import (
    box_line,
    clean_coco,
    clean_voc,
    clean_yolo,
    coco_data,
    noise_image,
    voc_xml,
    write_coco,
)

Mutation = Callable[[Path], None]


def append(relative: str, text: str) -> Mutation:
    def mutate(root: Path) -> None:
        path = root / relative
        path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")

    return mutate


def write(relative: str, content: str | bytes) -> Mutation:
    def mutate(root: Path) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")

    return mutate


def remove(relative: str) -> Mutation:
    return lambda root: (root / relative).unlink()


def copy_image(image: str, to: str) -> Mutation:
    """Copy an image and its label under another name (the same bytes twice)."""

    def mutate(root: Path) -> None:
        shutil.copy(root / image, root / to)
        label = root / image.replace("images/", "labels/").replace(".jpg", ".txt")
        target = root / to.replace("images/", "labels/").replace(".jpg", ".txt")
        shutil.copy(label, target)

    return mutate


def truncate_jpeg(relative: str) -> Mutation:
    def mutate(root: Path) -> None:
        path = root / relative
        path.write_bytes(path.read_bytes()[:-2])

    return mutate


def append_bytes(relative: str, tail: bytes) -> Mutation:
    def mutate(root: Path) -> None:
        path = root / relative
        path.write_bytes(path.read_bytes() + tail)

    return mutate


def roboflow_copies(root: Path) -> None:
    """Two augmented copies of one photo, one in train and one in val (different pixels)."""
    for split, digest, seed in (("train", "aaa111", 50), ("val", "bbb222", 51)):
        noise_image(root / "images" / split / f"IMG_7_jpg.rf.{digest}.jpg", seed)
        write(f"labels/{split}/IMG_7_jpg.rf.{digest}.txt", box_line(0, (4, 4, 20, 20)) + "\n")(root)


def listed_val(root: Path) -> None:
    yaml_path = root / "data.yaml"
    yaml_path.write_text(
        yaml_path.read_text().replace("val: images/val", "val: val.txt"), encoding="utf-8"
    )
    write("val.txt", "images/val/c.jpg\nimages/val/gone.jpg\n")(root)


def edit_yaml(old: str, new: str) -> Mutation:
    def mutate(root: Path) -> None:
        path = root / "data.yaml"
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new), encoding="utf-8")

    return mutate


def voc(objects: list[tuple[str, tuple[float, float, float, float]]], name: str = "tray1.jpg"):
    return write("Annotations/tray1.xml", voc_xml(name, objects))


COM = ("com", (8.0, 6.0, 24.0, 18.0))
RAU = ("rau", (32.0, 12.0, 56.0, 36.0))


def voc_edit(old: str, new: str) -> Mutation:
    def mutate(root: Path) -> None:
        path = root / "Annotations" / "tray1.xml"
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    return mutate


def coco(annotations: list[tuple[int, int, list[float]]], **changes: object) -> Mutation:
    def mutate(root: Path) -> None:
        data = coco_data(annotations)
        data.update(changes)
        write_coco(root, data)

    return mutate


BUILDERS = {"yolo": clean_yolo, "voc": clean_voc, "coco": clean_coco}

# (id, format, the fault, expected code, where it is: FILE or FILE:LINE under the dataset)
CASES: list[tuple[str, str, Mutation, str, str]] = [
    ("missing label", "yolo", remove("labels/train/b.txt"), "missing-label", "labels/train/b.txt"),
    ("empty label", "yolo", write("labels/train/b.txt", ""), "empty-label", "labels/train/b.txt"),
    (
        "no trailing newline",
        "yolo",
        write("labels/train/a.txt", "0 0.25 0.25 0.25 0.25\n1 0.7 0.5 0.3 0.5"),
        "no-trailing-newline",
        "labels/train/a.txt:2",
    ),
    (
        "too few fields",
        "yolo",
        append("labels/train/a.txt", "1 0.5 0.5 0.2\n"),
        "malformed-line",
        "labels/train/a.txt:3",
    ),
    (
        "not a number",
        "yolo",
        append("labels/train/a.txt", "1 0.5 abc 0.2 0.2\n"),
        "malformed-line",
        "labels/train/a.txt:3",
    ),
    (
        "class id not a whole number",
        "yolo",
        append("labels/train/a.txt", "one 0.5 0.5 0.2 0.2\n"),
        "malformed-line",
        "labels/train/a.txt:3",
    ),
    (
        "unknown class id",
        "yolo",
        append("labels/train/a.txt", "7 0.5 0.5 0.2 0.2\n"),
        "unknown-class",
        "labels/train/a.txt:3",
    ),
    (
        "coordinate above 1",
        "yolo",
        append("labels/train/a.txt", "1 1.5 0.5 0.2 0.2\n"),
        "out-of-range",
        "labels/train/a.txt:3",
    ),
    (
        "negative polygon point",
        "yolo",
        append("labels/train/a.txt", "1 0.1 0.1 0.5 -0.2 0.9 0.9\n"),
        "out-of-range",
        "labels/train/a.txt:3",
    ),
    (
        "zero-width box",
        "yolo",
        append("labels/train/a.txt", "1 0.5 0.5 0 0.2\n"),
        "degenerate-box",
        "labels/train/a.txt:3",
    ),
    (
        "polygon of collinear points",
        "yolo",
        append("labels/train/a.txt", "1 0.1 0.1 0.5 0.5 0.9 0.9\n"),
        "degenerate-box",
        "labels/train/a.txt:3",
    ),
    (
        "box past the edge",
        "yolo",
        append("labels/train/a.txt", "1 0.05 0.5 0.2 0.2\n"),
        "box-outside-image",
        "labels/train/a.txt:3",
    ),
    (
        "same line twice",
        "yolo",
        append("labels/train/b.txt", box_line(2, (0, 24, 16, 48)) + "\n"),
        "duplicate-label",
        "labels/train/b.txt:2",
    ),
    (
        "label not UTF-8",
        "yolo",
        write("labels/train/b.txt", b"\xff\xfe0 0.5 0.5 0.1 0.1\n"),
        "label-encoding",
        "labels/train/b.txt",
    ),
    (
        "same image twice in train",
        "yolo",
        copy_image("images/train/a.jpg", "images/train/d.jpg"),
        "duplicate-image",
        "images/train/a.jpg",
    ),
    (
        "same image in train and val",
        "yolo",
        copy_image("images/train/a.jpg", "images/val/e.jpg"),
        "duplicate-across-splits",
        "images/train/a.jpg",
    ),
    (
        "image that is not an image",
        "yolo",
        write("images/train/b.jpg", b"not a jpeg at all"),
        "unreadable-image",
        "images/train/b.jpg",
    ),
    (
        "JPEG cut off",
        "yolo",
        truncate_jpeg("images/train/b.jpg"),
        "unreadable-image",
        "images/train/b.jpg",
    ),
    (
        "JPEG with bytes after its end",
        "yolo",
        append_bytes("images/train/b.jpg", b"junk"),
        "truncated-jpeg",
        "images/train/b.jpg",
    ),
    ("label without image", "yolo", write("labels/train/zzz.txt", ""), "orphan-label", "zzz.txt"),
    (
        "augmented copies in train and val",
        "yolo",
        roboflow_copies,
        "split-leak",
        "images/train/IMG_7_jpg.rf.aaa111.jpg",
    ),
    ("listed image missing", "yolo", listed_val, "missing-image", "val.txt:2"),
    (
        "split folder missing",
        "yolo",
        edit_yaml("val: images/val", "val: images/nothere"),
        "missing-split",
        "data.yaml:3",
    ),
    (
        "YAML syntax",
        "yolo",
        edit_yaml('names: ["com", "rau", "tom"]', 'names: ["com", "rau"\nnc: 3'),
        "bad-yaml",
        "data.yaml:5",
    ),
    (
        "nc disagrees with names",
        "yolo",
        edit_yaml("path: .", "path: .\nnc: 5"),
        "bad-yaml",
        "data.yaml:2",
    ),
    (
        "VOC XML does not parse",
        "voc",
        voc_edit("</object>", "</objekt>"),
        "voc-parse",
        "Annotations/tray1.xml:7",
    ),
    (
        "VOC object without a box",
        "voc",
        voc_edit(
            "<bndbox><xmin>32</xmin><ymin>12</ymin><xmax>56</xmax><ymax>36</ymax></bndbox>", ""
        ),
        "voc-object",
        "Annotations/tray1.xml:8",
    ),
    (
        "VOC object without a name",
        "voc",
        voc_edit("<name>rau</name>", ""),
        "voc-object",
        "Annotations/tray1.xml:8",
    ),
    (
        "VOC image missing",
        "voc",
        voc([COM], name="gone.jpg"),
        "missing-image",
        "Annotations/tray1.xml:2",
    ),
    (
        "VOC box outside the image",
        "voc",
        voc([COM, ("rau", (32, 12, 90, 36))]),
        "out-of-range",
        "Annotations/tray1.xml:10",
    ),
    (
        "VOC box without area",
        "voc",
        voc([COM, ("rau", (32, 12, 32, 36))]),
        "degenerate-box",
        "Annotations/tray1.xml:10",
    ),
    (
        "VOC size differs from the image",
        "voc",
        voc_edit("<width>64</width>", "<width>100</width>"),
        "size-mismatch",
        "Annotations/tray1.xml:3",
    ),
    (
        "VOC class not in labelmap.txt",
        "voc",
        write("labelmap.txt", "# label:color_rgb:parts:actions\ncom:0,0,0::\n"),
        "unknown-class",
        "Annotations/tray1.xml:8",
    ),
    (
        "VOC image unreadable",
        "voc",
        write("JPEGImages/tray1.jpg", b"\x00" * 40),
        "unreadable-image",
        "JPEGImages/tray1.jpg",
    ),
    (
        "COCO not JSON",
        "coco",
        write("annotations.json", '{\n "images": [\n ],\n}\n'),
        "coco-json",
        "annotations.json:4",
    ),
    (
        "COCO key missing",
        "coco",
        write("annotations.json", '{"images": []}'),
        "coco-json",
        "annotations.json",
    ),
    (
        "COCO annotation of an unknown image",
        "coco",
        coco([(1, 1, [8, 6, 16, 12]), (99, 2, [32, 12, 24, 24])]),
        "unknown-image",
        "annotations.json",
    ),
    (
        "COCO annotation of an unknown category",
        "coco",
        coco([(1, 1, [8, 6, 16, 12]), (1, 9, [32, 12, 24, 24])]),
        "unknown-class",
        "annotations.json",
    ),
    (
        "COCO bbox of three numbers",
        "coco",
        coco([(1, 1, [8, 6, 16, 12]), (1, 2, [32, 12, 24])]),
        "coco-entry",
        "annotations.json",
    ),
    (
        "COCO box without area",
        "coco",
        coco([(1, 1, [8, 6, 0, 12])]),
        "degenerate-box",
        "annotations.json",
    ),
    (
        "COCO box outside the image",
        "coco",
        coco([(1, 1, [50, 6, 30, 12])]),
        "out-of-range",
        "annotations.json",
    ),
    (
        "COCO image file missing",
        "coco",
        coco(
            [(1, 1, [8, 6, 16, 12])],
            images=[{"id": 1, "file_name": "gone.jpg", "width": 64, "height": 48}],
        ),
        "missing-image",
        "annotations.json",
    ),
]


@pytest.mark.parametrize("format", sorted(BUILDERS))
def test_a_clean_dataset_has_no_findings(tmp_path: Path, format: str) -> None:
    BUILDERS[format](tmp_path)
    report = validate_dataset(tmp_path)
    assert report.format == format
    assert report.findings == []
    assert report.ok


@pytest.mark.parametrize(
    ("format", "mutate", "code", "where"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_fault_alone_is_named_with_its_file_and_line(
    tmp_path: Path, format: str, mutate: Mutation, code: str, where: str
) -> None:
    BUILDERS[format](tmp_path)
    mutate(tmp_path)

    report = validate_dataset(tmp_path)

    assert report.codes() == {code}, report.format_text()
    finding = report.findings[0]
    assert finding.location.endswith(where), finding
    severity = CODES[code][0]
    assert finding.severity == severity
    assert report.ok is (severity == "warning")
    assert where in report.format_text()
    assert report.to_dict()["findings"][0]["code"] == code


def test_an_empty_label_is_legal_and_says_so(tmp_path: Path) -> None:
    clean_yolo(tmp_path)
    (tmp_path / "labels" / "train" / "b.txt").write_text("", encoding="utf-8")
    report = validate_dataset(tmp_path)
    assert report.ok
    assert "legal" in report.format_text()
    assert report.n_background == 1


def test_duplicates_name_every_file_with_the_same_bytes(tmp_path: Path) -> None:
    clean_yolo(tmp_path)
    copy_image("images/train/a.jpg", "images/train/d.jpg")(tmp_path)
    copy_image("images/train/a.jpg", "images/train/e.jpg")(tmp_path)
    (finding,) = validate_dataset(tmp_path).findings
    assert finding.code == "duplicate-image"
    assert "images/train/d.jpg" in finding.message
    assert "images/train/e.jpg" in finding.message


def test_counts_per_class_and_split(tmp_path: Path) -> None:
    clean_yolo(tmp_path)
    append("labels/val/c.txt", "2 0.1 0.1 0.3 0.1 0.2 0.4\n")(tmp_path)  # a polygon
    report = validate_dataset(tmp_path / "data.yaml")
    assert report.images_per_split == {"train": 2, "val": 1}
    assert report.objects_per_class == {"com": 1, "rau": 2, "tom": 2}
    assert report.images_per_class == {"com": 1, "rau": 2, "tom": 2}
    assert report.image_sizes == {"64x48": 3}
    assert (report.n_images, report.n_objects) == (3, 5)


@pytest.mark.parametrize(
    "make",
    [
        lambda root: root / "nothere",
        lambda root: root,
        lambda root: write("notes.txt", "hello")(root) or root / "notes.txt",
    ],
    ids=["missing path", "empty folder", "a text file"],
)
def test_no_dataset_gives_a_report_not_a_stack_trace(
    tmp_path: Path, make: Callable[[Path], Path]
) -> None:
    report = validate_dataset(make(tmp_path))
    assert report.codes() == {"no-dataset"}
    assert not report.ok


def test_validate_command_text_json_and_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_yolo(tmp_path)
    (tmp_path / "labels" / "train" / "b.txt").write_text("", encoding="utf-8")
    assert main(["dataset", "validate", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "OK: 0 errors, 1 warnings" in text
    assert "empty-label" in text

    append("labels/train/a.txt", "9 0.5 0.5 0.1 0.1\n")(tmp_path)
    assert main(["dataset", "validate", str(tmp_path), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    errors = [f for f in data["findings"] if f["severity"] == "error"]
    assert [(e["code"], Path(e["file"]).name, e["line"]) for e in errors] == [
        ("unknown-class", "a.txt", 3)
    ]

    assert main(["dataset", "stats", str(tmp_path)]) == 0
    stats = capsys.readouterr().out
    assert "64x48 (3)" in stats
    assert " rau " in stats
