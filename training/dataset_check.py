"""Checking a labelled dataset before anyone trains on it: every fault, with its file and line.

:func:`validate_dataset` reads a YOLO dataset (boxes or polygons), a Pascal VOC folder or a COCO
JSON file the way ultralytics and the usual exporters (Label Studio, CVAT, Roboflow) write them,
and collects every fault it finds instead of stopping at the first one. Bad input gives a
:class:`ValidationReport`, never a stack trace: the data staff fix the files it names and run it
again.

Errors are faults that make training wrong or make ultralytics drop data (a coordinate outside the
image, an unknown class id, an unreadable image, the same photo in train and val); warnings are
legal but worth a look (an empty label file means "no dishes on this image"; a label file without
a trailing newline is read fine by ultralytics but merges with the next file under ``cat``).

The same scan feeds :mod:`training.dataset_tools` (merge and split) and :mod:`training.review`,
so what they write is exactly what validation read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import xml.etree.ElementTree as ET
import xml.parsers.expat
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import yaml

from training.data import source_name, thumbnail
from vision.datasets import FORMATS, IMAGE_SUFFIXES
from vision.labels import label_path_for, normalised_box

logger = logging.getLogger(__name__)

Severity = Literal["error", "warning"]
Box = tuple[float, float, float, float]

YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")
COCO_NAMES = ("_annotations.coco.json", "annotations.json", "instances.json")
# Folder names that exporters use for splits (Roboflow: train/valid/test; CVAT: train/val).
SPLIT_FOLDERS = ("train", "valid", "val", "test")
_YOLO_SPLIT_KEYS = ("train", "val", "test")
# VOC boxes are often 1-based, so xmax == width + 1 is still inside the image.
_PIXEL_TOLERANCE = 1.0
# Polygon and box values a hair outside 0..1 come from float rounding in exporters.
_FRACTION_TOLERANCE = 1e-6
_MIN_IMAGE_SIDE = 10  # ultralytics refuses images with a side under 10 px

#: Every fault the check can report: its severity and what it means, for the text report.
CODES: dict[str, tuple[Severity, str]] = {
    "no-dataset": ("error", "not a dataset this tool can read"),
    "bad-yaml": ("error", "the dataset YAML cannot be read or lacks a key"),
    "missing-split": ("error", "a split the dataset YAML names does not exist"),
    "no-images": ("error", "no images at all"),
    "missing-image": ("error", "a list, XML file or annotation names an image that is not there"),
    "unreadable-image": ("error", "an image that cannot be read or decoded"),
    "image-too-small": ("error", "an image with a side under 10 px; ultralytics skips it"),
    "truncated-jpeg": (
        "warning",
        "a JPEG that decodes but does not end with its end marker (cut off in a copy?)",
    ),
    "missing-label": (
        "error",
        "an image without a label file; ultralytics would train on it as an image with no "
        "dishes. Write an empty .txt if that is what it is",
    ),
    "empty-label": (
        "warning",
        "an empty label file; legal in YOLO: the image shows no dishes (a background image)",
    ),
    "no-trailing-newline": (
        "warning",
        "the label file's last line has no newline; ultralytics reads it, but `cat` merges it "
        "with the next file",
    ),
    "label-encoding": ("error", "a label file that is not UTF-8 text"),
    "malformed-line": ("error", "a label line with the wrong number of fields or not numbers"),
    "unknown-class": ("error", "a class id or name the dataset does not define"),
    "out-of-range": (
        "error",
        "a coordinate outside the image; ultralytics drops every label of such a file",
    ),
    "box-outside-image": ("warning", "a box that reaches past the image edge (it is clipped)"),
    "degenerate-box": ("error", "a box or polygon of zero area"),
    "duplicate-label": ("warning", "the same label line twice in one file (ultralytics drops one)"),
    "orphan-label": ("warning", "a label file with no image"),
    "duplicate-image": ("warning", "the same image bytes under two names in one split"),
    "duplicate-across-splits": (
        "error",
        "the same image bytes in two splits: validation would score training images",
    ),
    "split-overlap": ("warning", "the dataset YAML puts the same files in more than one split"),
    "split-leak": (
        "warning",
        "copies of one source photo (same Roboflow source name) in more than one split",
    ),
    "voc-parse": ("error", "a VOC XML file that does not parse"),
    "voc-object": ("error", "a VOC object without a name, a box or numbers"),
    "size-mismatch": ("warning", "the size written in the annotation differs from the image's"),
    "coco-json": ("error", "a COCO file that is not valid JSON or lacks a key"),
    "coco-entry": ("error", "a COCO image, category or annotation entry that is malformed"),
    "unknown-image": ("error", "a COCO annotation whose image_id is not in 'images'"),
}


@dataclass(frozen=True)
class Finding:
    """One fault: what (``code``), how bad, where (file and line when they apply) and in words."""

    severity: Severity
    code: str
    message: str
    file: str | None = None
    line: int | None = None

    @property
    def location(self) -> str:
        """``FILE:LINE``, ``FILE`` or an empty string."""
        if self.file is None:
            return ""
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def to_dict(self) -> dict[str, Any]:
        """The finding as a JSON-ready dict."""
        return {
            "severity": self.severity,
            "code": self.code,
            "file": self.file,
            "line": self.line,
            "message": self.message,
        }


@dataclass(frozen=True)
class ScannedObject:
    """One labelled object as read.

    Attributes:
        class_name: the dataset's class name.
        points: YOLO geometry in image fractions: 4 values (centre x, centre y, width, height)
            for a box, 6 or more (x, y pairs) for a polygon; VOC and COCO boxes become 4 values.
        box: the bounding box (x1, y1, x2, y2) in image fractions, clipped to the image.
    """

    class_name: str
    points: tuple[float, ...]
    box: Box

    def yolo_line(self, class_id: int) -> str:
        """This object as a YOLO label line with ``class_id``."""
        return " ".join([str(class_id), *(f"{v:.6f}" for v in self.points)])


@dataclass
class ScannedImage:
    """One image of a dataset, with the splits it is in and the objects read from its labels."""

    path: Path
    splits: list[str]
    objects: list[ScannedObject] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    sha256: str | None = None


@dataclass
class ScannedDataset:
    """What a scan read: enough for merging, splitting and review without reading it again."""

    name: str
    format: str
    source: Path
    class_names: list[str]
    images: list[ScannedImage]


@dataclass
class ValidationReport:
    """Every fault found in a dataset, and its counts.

    Attributes:
        path: the path that was checked.
        format: ``yolo``, ``voc`` or ``coco``; None when not even that could be told.
        source: the file or folder actually read (the dataset YAML, the COCO JSON...).
        class_names: the classes the dataset defines, in its order.
        images_per_split: how many images each split holds.
        objects_per_class: how many objects each class has.
        images_per_class: on how many images each class appears.
        n_images: distinct images over all splits.
        n_objects: objects over all distinct images.
        n_background: images with no objects.
        image_sizes: how many images have each size (``"640x480"``), most common first.
        findings: errors and warnings, in the order found.
    """

    path: str
    format: str | None
    source: str | None = None
    class_names: list[str] = field(default_factory=list)
    images_per_split: dict[str, int] = field(default_factory=dict)
    objects_per_class: dict[str, int] = field(default_factory=dict)
    images_per_class: dict[str, int] = field(default_factory=dict)
    n_images: int = 0
    n_objects: int = 0
    n_background: int = 0
    image_sizes: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        """The findings that must be fixed before training."""
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        """The findings worth a look that do not stop training."""
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings are allowed)."""
        return not self.errors

    def codes(self) -> set[str]:
        """The distinct fault codes found."""
        return {f.code for f in self.findings}

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (``trayscan dataset validate --json``)."""
        return {
            "path": self.path,
            "format": self.format,
            "source": self.source,
            "ok": self.ok,
            "n_errors": len(self.errors),
            "n_warnings": len(self.warnings),
            "n_images": self.n_images,
            "n_objects": self.n_objects,
            "n_background": self.n_background,
            "images_per_split": self.images_per_split,
            "class_names": self.class_names,
            "objects_per_class": self.objects_per_class,
            "images_per_class": self.images_per_class,
            "image_sizes": self.image_sizes,
            "findings": [f.to_dict() for f in self.findings],
        }

    def summary_lines(self) -> list[str]:
        """Two or three lines: what was read and how many faults."""
        splits = ", ".join(f"{name} {count}" for name, count in self.images_per_split.items())
        lines = [f"{self.source or self.path} ({self.format or 'unknown format'})"]
        if self.format is not None:
            lines.append(
                f"{self.n_images} images ({splits or 'no splits'}), {self.n_objects} objects "
                f"in {len(self.class_names)} classes, {self.n_background} images with no objects"
            )
        verdict = "OK" if self.ok else "FAILED"
        lines.append(f"{verdict}: {len(self.errors)} errors, {len(self.warnings)} warnings")
        return lines

    def format_text(self, per_code: int | None = 5, classes: bool = True) -> str:
        """The report as text for people.

        Args:
            per_code: list at most this many findings of each code (None: all of them).
            classes: add the per-class table.
        """
        lines = self.summary_lines()
        for severity in ("error", "warning"):
            by_code: dict[str, list[Finding]] = defaultdict(list)
            for finding in self.findings:
                if finding.severity == severity:
                    by_code[finding.code].append(finding)
            if not by_code:
                continue
            lines.append("")
            lines.append(f"{severity}s:")
            for code, found in by_code.items():
                lines.append(f"  {code} ({len(found)}): {CODES[code][1]}")
                shown = found if per_code is None else found[:per_code]
                for finding in shown:
                    where = f"{finding.location}: " if finding.location else ""
                    lines.append(f"    {where}{finding.message}")
                if len(found) > len(shown):
                    lines.append(f"    ... and {len(found) - len(shown)} more (--all lists them)")
        if classes and self.class_names and self.n_images:
            lines.append("")
            lines.extend(self.class_table())
        return "\n".join(lines)

    def class_table(self) -> list[str]:
        """Objects and images per class, one class a line, in the dataset's class order."""
        names = list(self.class_names) + [
            n for n in self.objects_per_class if n not in self.class_names
        ]
        width = max([len("class"), *(len(n) for n in names)])
        lines = [f"{'id':>3}  {'class':<{width}}  {'objects':>7}  {'images':>6}"]
        for index, name in enumerate(names):
            class_id = str(index) if index < len(self.class_names) else "?"
            lines.append(
                f"{class_id:>3}  {name:<{width}}  {self.objects_per_class.get(name, 0):>7}  "
                f"{self.images_per_class.get(name, 0):>6}"
            )
        return lines


def validate_dataset(path: Path, format: str | None = None) -> ValidationReport:
    """Check a labelled dataset and report every fault with its file and line.

    Args:
        path: a YOLO dataset YAML or a folder holding one, a VOC folder (``*.xml``, or
            ``Annotations/``, or ``train/``/``valid/`` subfolders of them), or a COCO JSON file or
            a folder holding one (or ``train/``/``valid/`` subfolders with Roboflow's
            ``_annotations.coco.json``).
        format: ``yolo``, ``voc`` or ``coco``; detected from ``path`` when None.

    Returns:
        The report; ``report.ok`` is False when it holds errors.
    """
    return scan_dataset(path, format)[1]


def scan_dataset(
    path: Path, format: str | None = None
) -> tuple[ScannedDataset | None, ValidationReport]:
    """Read a dataset as far as it can be read, and check it.

    Returns:
        The dataset as read (None when it could not be read at all) and the report. Objects on
        lines or entries with errors are left out of the dataset.
    """
    return _Scanner(Path(path), format).run()


def detect_format(path: Path) -> str | None:
    """``yolo``, ``voc`` or ``coco`` from what ``path`` holds; None when it looks like none."""
    if path.is_file():
        suffix = path.suffix.lower()
        return {".yaml": "yolo", ".yml": "yolo", ".json": "coco"}.get(suffix)
    if not path.is_dir():
        return None
    if _find_yaml(path) is not None:
        return "yolo"
    folders = [path, path / "Annotations", *(path / name for name in SPLIT_FOLDERS)]
    if any(any(folder.glob("*.xml")) for folder in folders if folder.is_dir()):
        return "voc"
    if _coco_files(path):
        return "coco"
    return None


def _find_yaml(folder: Path) -> Path | None:
    for name in YAML_NAMES:
        if (folder / name).is_file():
            return folder / name
    # Other names (dataset.original.yaml...) count when they define the classes.
    for candidate in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            data = yaml.safe_load(candidate.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and "names" in data:
            return candidate
    return None


def _coco_files(path: Path) -> list[tuple[Path, str]]:
    """COCO JSON files of a path, each with the split it holds."""
    if path.is_file():
        return [(path, path.stem)]
    for name in COCO_NAMES:
        if (path / name).is_file():
            return [(path / name, path.name)]
    found = []
    for split in SPLIT_FOLDERS:
        for name in COCO_NAMES:
            if (path / split / name).is_file():
                found.append((path / split / name, split))
                break
    return found


def sha256_of(data: bytes) -> str:
    """The SHA-256 of some bytes, in hex."""
    return hashlib.sha256(data).hexdigest()


def _display(path: Path) -> str:
    return os.path.normpath(str(path))


def _yaml_key_lines(text: str) -> dict[str, int]:
    """The 1-based line of each top-level key of a YAML mapping (empty when it is not one)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {
        str(key.value): key.start_mark.line + 1
        for key, _ in node.value
        if isinstance(key, yaml.ScalarNode)
    }


def _parse_xml_with_lines(data: bytes) -> tuple[ET.Element, dict[int, int]]:
    """Parse XML keeping each element's line (ElementTree drops it): (root, id(element) -> line).

    Raises:
        xml.parsers.expat.ExpatError: the XML does not parse (it has ``lineno``).
    """
    builder = ET.TreeBuilder()
    parser = xml.parsers.expat.ParserCreate()
    lines: dict[int, int] = {}

    def start(tag: str, attrs: dict[str, str]) -> None:
        element = builder.start(tag, attrs)
        lines[id(element)] = parser.CurrentLineNumber

    def end(tag: str) -> None:
        builder.end(tag)

    def text(data: str) -> None:
        builder.data(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.Parse(data, True)
    return builder.close(), lines


class _Scanner:
    """One scan: reads a dataset, collecting findings as it goes."""

    def __init__(self, path: Path, format: str | None) -> None:
        self.path = path
        self.format = format
        self.report = ValidationReport(path=_display(path), format=format)
        self.images: dict[str, ScannedImage] = {}
        self.class_names: list[str] = []
        self.image_folders: list[Path] = []

    # --- plumbing ---------------------------------------------------------------------------

    def add(
        self, code: str, message: str, file: Path | str | None = None, line: int | None = None
    ) -> None:
        severity = CODES[code][0]
        where = _display(Path(file)) if isinstance(file, Path) else file
        self.report.findings.append(Finding(severity, code, message, where, line))

    def image(self, path: Path, split: str) -> ScannedImage:
        key = _display(path)
        scanned = self.images.get(key)
        if scanned is None:
            scanned = self.images[key] = ScannedImage(Path(key), [split])
            self.read_image(scanned)
        elif split not in scanned.splits:
            scanned.splits.append(split)
        return scanned

    def read_image(self, image: ScannedImage) -> None:
        try:
            data = image.path.read_bytes()
        except OSError as exc:
            self.add("unreadable-image", f"cannot read: {exc.strerror or exc}", image.path)
            return
        image.sha256 = sha256_of(data)
        is_jpeg = data[:2] == b"\xff\xd8"
        ends_well = not is_jpeg or data.rstrip(b"\x00").endswith(b"\xff\xd9")
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if decoded is None:
            why = "the JPEG has no end marker: cut off" if not ends_well else "not an image?"
            self.add(
                "unreadable-image", f"cannot be decoded ({len(data)} bytes): {why}", image.path
            )
            return
        image.height, image.width = int(decoded.shape[0]), int(decoded.shape[1])
        if min(image.width, image.height) < _MIN_IMAGE_SIDE:
            self.add("image-too-small", f"{image.width}x{image.height} px", image.path)
        if not ends_well:
            self.add(
                "truncated-jpeg",
                "does not end with the JPEG end marker (cut off, or bytes after the image)",
                image.path,
            )

    # --- the scan ---------------------------------------------------------------------------

    def run(self) -> tuple[ScannedDataset | None, ValidationReport]:
        if not self.path.exists():
            self.add("no-dataset", "does not exist", self.path)
            return None, self.report
        if self.format is None:
            self.format = detect_format(self.path)
            if self.format is None:
                self.add(
                    "no-dataset",
                    f"found no {YAML_NAMES[1]} or other YAML with 'names' (YOLO), no .xml files "
                    f"(VOC) and no {COCO_NAMES[0]} or {COCO_NAMES[1]} (COCO); pass the file "
                    "itself or --format",
                    self.path,
                )
                return None, self.report
        if self.format not in FORMATS:
            self.add("no-dataset", f"unknown format {self.format!r}; expected one of {FORMATS}")
            return None, self.report
        self.report.format = self.format
        if self.format == "yolo":
            source = self.scan_yolo()
        elif self.format == "voc":
            source = self.scan_voc()
        else:
            source = self.scan_coco()
        if source is None:
            return None, self.report
        self.report.source = _display(source)
        self.check_across_images()
        self.count()
        dataset = ScannedDataset(
            name=_dataset_name(self.path),
            format=self.format,
            source=source,
            class_names=list(self.class_names),
            images=list(self.images.values()),
        )
        logger.info(
            "checked %s: %d images, %d errors, %d warnings",
            source,
            len(dataset.images),
            len(self.report.errors),
            len(self.report.warnings),
        )
        return dataset, self.report

    def count(self) -> None:
        report = self.report
        report.class_names = list(self.class_names)
        per_split: Counter[str] = Counter()
        objects: Counter[str] = Counter({name: 0 for name in self.class_names})
        images: Counter[str] = Counter({name: 0 for name in self.class_names})
        for image in self.images.values():
            per_split.update(image.splits)
            objects.update(obj.class_name for obj in image.objects)
            images.update({obj.class_name for obj in image.objects})
        report.images_per_split = dict(per_split)
        report.objects_per_class = dict(objects)
        report.images_per_class = dict(images)
        report.n_images = len(self.images)
        report.n_objects = sum(len(image.objects) for image in self.images.values())
        report.n_background = sum(1 for image in self.images.values() if not image.objects)
        sizes = Counter(
            f"{image.width}x{image.height}"
            for image in self.images.values()
            if image.width is not None
        )
        report.image_sizes = dict(sizes.most_common())
        if not self.images and self.report.ok:
            # Only when nothing else explains it: a parse error already says why.
            self.add("no-images", "the dataset holds no images", self.report.source)

    def check_across_images(self) -> None:
        """Duplicates by content, files in several splits, augmented copies across splits."""
        by_hash: dict[str, list[ScannedImage]] = defaultdict(list)
        for image in self.images.values():
            if image.sha256 is not None:
                by_hash[image.sha256].append(image)
        for digest, same in by_hash.items():
            if len(same) < 2:
                continue
            others = ", ".join(_display(image.path) for image in same[1:])
            split_sets = {frozenset(image.splits) for image in same}
            if len(split_sets) > 1:
                in_splits = sorted({split for image in same for split in image.splits})
                self.add(
                    "duplicate-across-splits",
                    f"same bytes (sha256 {digest[:12]}…) as {others}; splits "
                    f"{', '.join(in_splits)}",
                    same[0].path,
                )
            else:
                self.add(
                    "duplicate-image",
                    f"same bytes (sha256 {digest[:12]}…) as {others}",
                    same[0].path,
                )

        overlap: Counter[tuple[str, ...]] = Counter(
            tuple(image.splits) for image in self.images.values() if len(image.splits) > 1
        )
        for together, n in overlap.items():
            self.add(
                "split-overlap",
                f"{n} images are in {' and '.join(together)} at once (the YAML names the same "
                "files): validation would score training images",
                self.report.source,
            )

        by_source: dict[str, list[ScannedImage]] = defaultdict(list)
        for image in self.images.values():
            if len(image.splits) == 1:
                by_source[source_name(image.path)].append(image)
        for source, copies in sorted(by_source.items()):
            names_by_split: dict[str, list[str]] = defaultdict(list)
            for image in copies:
                names_by_split[image.splits[0]].append(image.path.name)
            if len(names_by_split) < 2:
                continue
            where = "; ".join(
                f"{split}: {', '.join(names)}" for split, names in sorted(names_by_split.items())
            )
            likeness = (
                "the pictures match"
                if _look_alike(copies)
                else "the pictures differ: a generic name for different photos?"
            )
            self.add(
                "split-leak", f"source photo {source!r} is in {where} ({likeness})", copies[0].path
            )

    # --- YOLO -------------------------------------------------------------------------------

    def scan_yolo(self) -> Path | None:
        yaml_path = self.path if self.path.is_file() else _find_yaml(self.path)
        if yaml_path is None:
            self.add(
                "bad-yaml",
                f"no {' or '.join(YAML_NAMES[:2])} (or other YAML with 'names') in the folder",
                self.path,
            )
            return None
        try:
            text = yaml_path.read_text(encoding="utf-8")
            data = yaml.safe_load(text)
        except (OSError, UnicodeDecodeError) as exc:
            self.add("bad-yaml", f"cannot read: {exc}", yaml_path)
            return None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            self.add("bad-yaml", f"not valid YAML: {problem}", yaml_path, line)
            return None
        if not isinstance(data, dict):
            self.add("bad-yaml", "expected a mapping of keys (path, train, val, names)", yaml_path)
            return None
        key_lines = _yaml_key_lines(text)
        if not self.yolo_class_names(data, yaml_path, key_lines):
            return None

        here = yaml_path.parent
        root = here
        value = data.get("path")
        if value not in (None, ""):
            candidate = Path(str(value))
            root = candidate if candidate.is_absolute() else here / candidate
            if candidate.is_absolute() and not candidate.is_dir():
                # Datasets get moved; an absolute path from another machine should not stop us.
                logger.warning(
                    "%s: path %s does not exist, using the YAML's folder", yaml_path, root
                )
                root = here
        splits = [key for key in _YOLO_SPLIT_KEYS if data.get(key)]
        if not splits:
            self.add("bad-yaml", "names no split: expected 'train', 'val' or 'test'", yaml_path)
            return None
        for split in splits:
            entry = data[split]
            for location in entry if isinstance(entry, list) else [entry]:
                self.yolo_split(root, str(location), split, yaml_path, key_lines.get(split))
        self.check_orphan_labels()
        return yaml_path

    def yolo_class_names(
        self, data: dict[str, Any], yaml_path: Path, key_lines: dict[str, int]
    ) -> bool:
        names = data.get("names")
        line = key_lines.get("names")
        if isinstance(names, dict):
            try:
                by_id = {int(key): str(value) for key, value in names.items()}
            except (TypeError, ValueError):
                self.add("bad-yaml", "'names' keys must be class ids 0, 1, 2...", yaml_path, line)
                return False
            if sorted(by_id) != list(range(len(by_id))):
                self.add(
                    "bad-yaml",
                    f"'names' ids must be 0..{len(by_id) - 1} without gaps",
                    yaml_path,
                    line,
                )
                return False
            self.class_names = [by_id[i] for i in range(len(by_id))]
        elif isinstance(names, list) and names:
            self.class_names = [str(name) for name in names]
        else:
            self.add("bad-yaml", "key 'names' must list the classes", yaml_path, line)
            return False
        count = data.get("nc")
        if count is not None and count != len(self.class_names):
            self.add(
                "bad-yaml",
                f"nc is {count} but 'names' lists {len(self.class_names)} classes",
                yaml_path,
                key_lines.get("nc"),
            )
        return True

    def yolo_split(
        self, root: Path, location: str, split: str, yaml_path: Path, line: int | None
    ) -> None:
        folder = Path(location) if Path(location).is_absolute() else root / location
        if folder.is_dir():
            images = sorted(
                p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
            # Only a whole folder claims its label folder: a .txt list may pick a subset.
            self.image_folders.extend({image.parent for image in images})
        elif folder.is_file() and folder.suffix.lower() == ".txt":
            images = self.yolo_list(folder, root)
        else:
            hint = ""
            if "\\" in location or (len(location) > 2 and location[1] == ":"):
                hint = "; a Windows path from the exporting machine? Write it relative to the YAML"
            self.add(
                "missing-split",
                f"'{split}: {location}' is neither a folder of images nor a .txt list of images "
                f"({_display(folder)} not found{hint})",
                yaml_path,
                line,
            )
            return
        for image_path in images:
            is_new = _display(image_path) not in self.images
            image = self.image(image_path, split)
            if is_new:
                self.yolo_labels(image)

    def yolo_list(self, list_path: Path, root: Path) -> list[Path]:
        images = []
        try:
            text = list_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.add("missing-split", f"cannot read the image list: {exc}", list_path)
            return []
        for line_no, line in enumerate(text.splitlines(), start=1):
            name = line.strip()
            if not name or name.startswith("#"):
                continue
            image = Path(name) if Path(name).is_absolute() else root / name
            if not image.is_file():
                self.add(
                    "missing-image",
                    f"listed image {_display(image)} does not exist",
                    list_path,
                    line_no,
                )
                continue
            images.append(image)
        return images

    def yolo_labels(self, image: ScannedImage) -> None:
        label_path = label_path_for(image.path)
        if not label_path.is_file():
            self.add("missing-label", f"no label file for image {image.path.name}", label_path)
            return
        try:
            text = label_path.read_bytes().decode("utf-8")
        except OSError as exc:
            self.add("missing-label", f"cannot read: {exc.strerror or exc}", label_path)
            return
        except UnicodeDecodeError as exc:
            self.add(
                "label-encoding", f"not UTF-8 text: {exc.reason} at byte {exc.start}", label_path
            )
            return
        lines = text.splitlines()
        if not text.strip():
            self.add("empty-label", "no objects: read as an image without dishes", label_path)
            return
        if not text.endswith(("\n", "\r")):
            self.add("no-trailing-newline", "the last line has no newline", label_path, len(lines))
        seen: dict[str, int] = {}
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            obj = self.yolo_line(line, label_path, line_no)
            if obj is None:
                continue
            key = " ".join(line.split())
            if key in seen:
                self.add(
                    "duplicate-label",
                    f"same as line {seen[key]}: {line[:60]!r}",
                    label_path,
                    line_no,
                )
                continue
            seen[key] = line_no
            image.objects.append(obj)

    def yolo_line(self, line: str, label_path: Path, line_no: int) -> ScannedObject | None:
        fields = line.split()
        try:
            class_id = int(fields[0])
        except ValueError:
            self.add(
                "malformed-line",
                f"class id {fields[0][:20]!r} is not a whole number: {line[:60]!r}",
                label_path,
                line_no,
            )
            return None
        try:
            coords = [float(v) for v in fields[1:]]
        except ValueError:
            bad = next(v for v in fields[1:] if not _is_float(v))
            self.add(
                "malformed-line",
                f"{bad[:20]!r} is not a number: {line[:60]!r}",
                label_path,
                line_no,
            )
            return None
        corners = normalised_box(coords)
        if corners is None:
            self.add(
                "malformed-line",
                f"expected 4 box values or an even number >= 6 of polygon values after the "
                f"class id, got {len(coords)}",
                label_path,
                line_no,
            )
            return None
        if not all(math.isfinite(v) for v in coords):
            self.add("malformed-line", "coordinates must be finite numbers", label_path, line_no)
            return None
        if not 0 <= class_id < len(self.class_names):
            self.add(
                "unknown-class",
                f"class id {class_id} is not one of the {len(self.class_names)} classes "
                f"(0..{len(self.class_names) - 1})",
                label_path,
                line_no,
            )
            return None
        outside = [
            (index, value)
            for index, value in enumerate(coords)
            if not -_FRACTION_TOLERANCE <= value <= 1 + _FRACTION_TOLERANCE
        ]
        if outside:
            index, value = outside[0]
            self.add(
                "out-of-range",
                f"{_coordinate_name(index, len(coords))} is {value:g}, outside 0..1 "
                f"({len(outside)} such values on the line)",
                label_path,
                line_no,
            )
            return None
        x1, y1, x2, y2 = corners
        if x2 - x1 <= 0 or y2 - y1 <= 0 or (len(coords) > 4 and _polygon_area(coords) <= 0):
            self.add(
                "degenerate-box",
                f"zero area ({'width' if x2 - x1 <= 0 else 'height' if y2 - y1 <= 0 else 'polygon'}"
                f" is 0): {line[:60]!r}",
                label_path,
                line_no,
            )
            return None
        if min(x1, y1) < -_FRACTION_TOLERANCE or max(x2, y2) > 1 + _FRACTION_TOLERANCE:
            self.add(
                "box-outside-image",
                f"box edges {x1:.3f},{y1:.3f} to {x2:.3f},{y2:.3f} reach past 0..1",
                label_path,
                line_no,
            )
        box = (_clip01(x1), _clip01(y1), _clip01(x2), _clip01(y2))
        return ScannedObject(self.class_names[class_id], tuple(coords), box)

    def check_orphan_labels(self) -> None:
        claimed = {label_path_for(image.path) for image in self.images.values()}
        folders = {label_path_for(folder / "x.jpg").parent for folder in self.image_folders}
        for folder in sorted(folders):
            if not folder.is_dir():
                continue
            for label in sorted(folder.glob("*.txt")):
                if label not in claimed:
                    self.add("orphan-label", "no image of this name in the dataset", label)

    # --- VOC --------------------------------------------------------------------------------

    def scan_voc(self) -> Path | None:
        folder = self.path
        if not folder.is_dir():
            self.add("no-dataset", "a VOC dataset is a folder of .xml files", folder)
            return None
        xml_files: list[tuple[Path, str]] = []
        for sub in (folder, folder / "Annotations"):
            xml_files += [(p, "all") for p in sorted(sub.glob("*.xml"))]
        for split in SPLIT_FOLDERS:
            for sub in (folder / split, folder / split / "Annotations"):
                xml_files += [(p, split) for p in sorted(sub.glob("*.xml"))]
        if not xml_files:
            self.add(
                "no-dataset", "no .xml files here, in Annotations/ or in split folders", folder
            )
            return None
        labelmap = folder / "labelmap.txt"
        known: set[str] | None = None
        if labelmap.is_file():
            self.class_names = _read_labelmap(labelmap)
            known = set(self.class_names)
        seen: list[str] = []
        for xml_path, split in xml_files:
            for obj in self.voc_file(xml_path, split, folder, known):
                if obj not in seen:
                    seen.append(obj)
        if known is None:
            self.class_names = sorted(seen)
        return folder

    def voc_file(
        self, xml_path: Path, split: str, folder: Path, known: set[str] | None
    ) -> Iterable[str]:
        try:
            root, lines = _parse_xml_with_lines(xml_path.read_bytes())
        except OSError as exc:
            self.add("voc-parse", f"cannot read: {exc.strerror or exc}", xml_path)
            return []
        except xml.parsers.expat.ExpatError as exc:
            message = xml.parsers.expat.ErrorString(exc.code) if exc.code else str(exc)
            self.add("voc-parse", f"not valid XML: {message}", xml_path, exc.lineno)
            return []
        if root.tag != "annotation":
            self.add("voc-parse", f"root element is <{root.tag}>, not <annotation>", xml_path, 1)
            return []
        filename = (root.findtext("filename") or "").strip()
        if not filename:
            self.add("voc-object", "no <filename>", xml_path, lines.get(id(root)))
            return []
        candidates = [
            xml_path.parent / filename,
            xml_path.parent.parent / "JPEGImages" / filename,
            xml_path.parent.parent / "images" / filename,
            folder / filename,
            folder / "JPEGImages" / filename,
            folder / "images" / filename,
        ]
        image_path = next((p for p in candidates if p.is_file()), None)
        if image_path is None:
            filename_element = root.find("filename")
            line = lines.get(id(filename_element)) if filename_element is not None else None
            self.add(
                "missing-image",
                f"image {filename!r} not found beside it, in JPEGImages/ or in images/",
                xml_path,
                line,
            )
            return []
        image = self.image(image_path, split)
        width, height = image.width, image.height
        size = root.find("size")
        if size is not None and width is not None and height is not None:
            written = (size.findtext("width"), size.findtext("height"))
            if written != (None, None) and written != (str(width), str(height)):
                self.add(
                    "size-mismatch",
                    f"<size> says {written[0]}x{written[1]}, the image is {width}x{height}",
                    xml_path,
                    lines.get(id(size)),
                )
        names = []
        for index, element in enumerate(root.iter("object"), start=1):
            obj = self.voc_object(element, index, xml_path, lines, image, known)
            if obj is not None:
                image.objects.append(obj)
                names.append(obj.class_name)
        return names

    def voc_object(
        self,
        element: ET.Element,
        index: int,
        xml_path: Path,
        lines: dict[int, int],
        image: ScannedImage,
        known: set[str] | None,
    ) -> ScannedObject | None:
        line = lines.get(id(element))
        name = (element.findtext("name") or "").strip()
        if not name:
            self.add("voc-object", f"object {index} has no <name>", xml_path, line)
            return None
        if known is not None and name not in known:
            self.add(
                "unknown-class",
                f"object {index}: class {name!r} is not in labelmap.txt",
                xml_path,
                line,
            )
            return None
        bndbox = element.find("bndbox")
        if bndbox is None:
            self.add("voc-object", f"object {index} ({name}) has no <bndbox>", xml_path, line)
            return None
        coords = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            value = bndbox.findtext(tag)
            try:
                coords.append(float(value if value is not None else ""))
            except ValueError:
                self.add(
                    "voc-object",
                    f"object {index} ({name}): <{tag}> {value!r} is not a number",
                    xml_path,
                    lines.get(id(bndbox), line),
                )
                return None
        line = lines.get(id(bndbox), line)
        return self.pixel_box(name, coords, image, xml_path, line, f"object {index} ({name})")

    def pixel_box(
        self,
        name: str,
        xyxy: Sequence[float],
        image: ScannedImage,
        file: Path,
        line: int | None,
        what: str,
    ) -> ScannedObject | None:
        """Check a pixel box against its image and keep it in fractions (VOC and COCO)."""
        x1, y1, x2, y2 = xyxy
        if not all(math.isfinite(v) for v in xyxy):
            self.add("malformed-line", f"{what}: coordinates must be finite numbers", file, line)
            return None
        if x2 <= x1 or y2 <= y1:
            self.add(
                "degenerate-box",
                f"{what}: box {x1:g},{y1:g} to {x2:g},{y2:g} has no area",
                file,
                line,
            )
            return None
        if image.width is None or image.height is None:
            return None  # the unreadable image is reported already
        width, height = image.width, image.height
        if (
            min(x1, y1) < -_PIXEL_TOLERANCE
            or x2 > width + _PIXEL_TOLERANCE
            or y2 > height + _PIXEL_TOLERANCE
        ):
            self.add(
                "out-of-range",
                f"{what}: box {x1:g},{y1:g} to {x2:g},{y2:g} is outside the {width}x{height} image",
                file,
                line,
            )
            return None
        box = (
            _clip01(x1 / width),
            _clip01(y1 / height),
            _clip01(x2 / width),
            _clip01(y2 / height),
        )
        return ScannedObject(name, _box_points(box), box)

    # --- COCO -------------------------------------------------------------------------------

    def scan_coco(self) -> Path | None:
        files = _coco_files(self.path)
        if not files:
            self.add(
                "no-dataset",
                f"no {' or '.join(COCO_NAMES)} here or in train/, valid/, val/ or test/",
                self.path,
            )
            return None
        names_by_id: dict[Any, str] = {}
        for json_path, split in files:
            self.coco_file(json_path, split, names_by_id)
        return files[0][0] if len(files) == 1 else self.path

    def coco_file(self, json_path: Path, split: str, names_by_id: dict[Any, str]) -> None:
        try:
            data = json.loads(json_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            self.add("coco-json", f"not valid JSON: {exc.msg}", json_path, exc.lineno)
            return
        except (OSError, UnicodeDecodeError) as exc:
            self.add("coco-json", f"cannot read: {exc}", json_path)
            return
        if not isinstance(data, dict):
            self.add(
                "coco-json",
                "expected a JSON object with images, annotations, categories",
                json_path,
            )
            return
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                self.add("coco-json", f"key '{key}' must be a list", json_path)
                return

        categories: dict[Any, str] = {}
        for index, category in enumerate(data["categories"]):
            if not isinstance(category, dict) or "id" not in category or "name" not in category:
                self.add("coco-entry", f"categories[{index}] lacks 'id' or 'name'", json_path)
                continue
            categories[category["id"]] = str(category["name"])
        for key in sorted(categories, key=_sortable):
            if categories[key] not in self.class_names:
                self.class_names.append(categories[key])
            names_by_id.setdefault(key, categories[key])

        folder = json_path.parent
        images: dict[Any, ScannedImage] = {}
        missing: set[Any] = set()
        for index, entry in enumerate(data["images"]):
            if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
                self.add("coco-entry", f"images[{index}] lacks 'id' or 'file_name'", json_path)
                continue
            name = str(entry["file_name"])
            candidates = [folder / name, folder / "images" / name]
            found = next((p for p in candidates if p.is_file()), None)
            if found is None:
                missing.add(entry["id"])
                self.add(
                    "missing-image",
                    f"images[{index}] (id {entry['id']!r}): file {name!r} is not in "
                    f"{_display(folder)} or {_display(folder / 'images')}",
                    json_path,
                )
                continue
            image = self.image(found, split)
            images[entry["id"]] = image
            written = (entry.get("width"), entry.get("height"))
            if (
                image.width is not None
                and written != (None, None)
                and written != (image.width, image.height)
            ):
                self.add(
                    "size-mismatch",
                    f"images[{index}] (id {entry['id']!r}) says {written[0]}x{written[1]}, "
                    f"the file is {image.width}x{image.height}",
                    json_path,
                )

        for index, annotation in enumerate(data["annotations"]):
            if isinstance(annotation, dict) and annotation.get("image_id") in missing:
                continue  # its image is reported missing already
            self.coco_annotation(annotation, index, json_path, images, categories)

    def coco_annotation(
        self,
        annotation: Any,
        index: int,
        json_path: Path,
        images: dict[Any, ScannedImage],
        categories: dict[Any, str],
    ) -> None:
        if not isinstance(annotation, dict):
            self.add("coco-entry", f"annotations[{index}] is not an object", json_path)
            return
        what = f"annotations[{index}] (id {annotation.get('id')!r})"
        image_id = annotation.get("image_id")
        if image_id not in images:
            self.add(
                "unknown-image", f"{what}: image_id {image_id!r} is not in 'images'", json_path
            )
            return
        category_id = annotation.get("category_id")
        if category_id not in categories:
            self.add(
                "unknown-class",
                f"{what}: category_id {category_id!r} is not in 'categories'",
                json_path,
            )
            return
        bbox = annotation.get("bbox")
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
        ):
            self.add(
                "coco-entry", f"{what}: bbox must be [x, y, width, height], got {bbox!r}", json_path
            )
            return
        x, y, w, h = (float(v) for v in bbox)
        obj = self.pixel_box(
            categories[category_id], (x, y, x + w, y + h), images[image_id], json_path, None, what
        )
        if obj is not None:
            images[image_id].objects.append(obj)


def _look_alike(copies: Sequence[ScannedImage], threshold: float = 0.8) -> bool:
    """Whether two of the copies in different splits look alike (thumbnails, mirrors too).

    The threshold is below the splitter's: rotated and re-lit augmentations correlate less.
    """
    thumbs = []
    for image in copies:
        try:
            thumbs.append((image.splits[0], thumbnail(image.path)))
        except ValueError:
            continue
    for i, (split_a, a) in enumerate(thumbs):
        for split_b, b in thumbs[i + 1 :]:
            if (
                split_a != split_b
                and max(float((a * b).sum()), float((np.fliplr(a) * b).sum())) > threshold
            ):
                return True
    return False


def _dataset_name(path: Path) -> str:
    """A short name: the folder's name (a dataset YAML or JSON is named after its folder)."""
    folder = path.resolve()
    if folder.is_file():
        folder = folder.parent
    return folder.name or "dataset"


def _read_labelmap(path: Path) -> list[str]:
    """Class names of a CVAT ``labelmap.txt`` (``name:color:parts:actions`` lines)."""
    names = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip() and not line.startswith("#"):
            names.append(line.split(":", 1)[0].strip())
    return [name for name in names if name and name != "background"]


def _coordinate_name(index: int, count: int) -> str:
    if count == 4:
        return ("x centre", "y centre", "width", "height")[index]
    return f"point {index // 2 + 1} {'xy'[index % 2]}"


def _polygon_area(coords: Sequence[float]) -> float:
    xs, ys = coords[0::2], coords[1::2]
    twice = sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs)))
    return abs(twice) / 2


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _clip01(value: float) -> float:
    return max(0.0, min(1.0, value))


def _box_points(box: Box) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    return ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)


def _sortable(key: Any) -> tuple[int, Any]:
    return (0, key) if isinstance(key, int) else (1, str(key))
