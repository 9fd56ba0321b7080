"""Readers for labelled dish datasets, for evaluation and for adding references to a gallery.

Three formats are read into one :class:`LabelledDataset` of pixel boxes:

- ``"yolo"``: an ultralytics dataset YAML (or a folder holding ``data.yaml``/``dataset.yaml``),
  with box or polygon label lines;
- ``"voc"``: a folder of Pascal VOC ``.xml`` files;
- ``"coco"``: a COCO JSON file.

Errors name the file and the line (YOLO), the xml file (VOC) or the annotation id (COCO), so a
bad dataset can be fixed without a debugger. A YOLO image without a label file is an image with
no objects, as ultralytics reads it.
"""

from __future__ import annotations

import json
import logging
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import yaml

from vision.labels import normalised_box

logger = logging.getLogger(__name__)

FORMATS = ("yolo", "voc", "coco")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
_YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")
_COCO_NAMES = ("annotations.json", "_annotations.coco.json", "instances.json")

Box = tuple[float, float, float, float]


class DatasetError(ValueError):
    """A dataset that cannot be read; the message names the file and the line, key or id."""


@dataclass(frozen=True)
class LabelledObject:
    """One labelled dish: its class name and its box in pixels (x1, y1, x2, y2)."""

    class_name: str
    box_xyxy: Box


@dataclass(frozen=True)
class LabelledImage:
    """One image and every object labelled on it (none for an unlabelled image)."""

    path: Path
    objects: tuple[LabelledObject, ...]


@dataclass(frozen=True)
class LabelledDataset:
    """A labelled dataset read from disk.

    Attributes:
        name: a short name (the YAML, JSON or folder name).
        images: the images, in a stable order.
        class_names: every class the dataset defines, in its own order.
        format: the format it was read from: ``"yolo"``, ``"voc"`` or ``"coco"``.
    """

    name: str
    images: list[LabelledImage]
    class_names: list[str]
    format: str

    @property
    def n_objects(self) -> int:
        """How many objects are labelled over all images."""
        return sum(len(image.objects) for image in self.images)


def read_dataset(
    path: Path, format: str | None = None, split: str | None = None
) -> LabelledDataset:
    """Read a labelled dataset.

    Args:
        path: a YOLO dataset YAML or a folder holding one, a folder of VOC xml files, or a COCO
            JSON file (or a folder holding ``annotations.json``/``_annotations.coco.json``).
        format: ``"yolo"``, ``"voc"`` or ``"coco"``; detected from ``path`` when None.
        split: for YOLO, which YAML key to read (``train``, ``val``, ``test``...); the default
            is ``test`` when the YAML has one, else ``val``. Ignored by the other formats.

    Returns:
        The dataset with pixel boxes.

    Raises:
        DatasetError: the path or format is unknown, or a file in it is malformed.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset {path} does not exist")
    if format is None:
        format = detect_format(path)
    if format == "yolo":
        return _read_yolo(_find_yaml(path), split)
    if format == "voc":
        return _read_voc(path)
    if format == "coco":
        return _read_coco(_find_coco_json(path))
    raise DatasetError(f"dataset {path}: unknown format {format!r}; expected one of {FORMATS}")


def detect_format(path: Path) -> str:
    """Guess a dataset's format from its path: a YAML is YOLO, a JSON is COCO, xml files are VOC.

    Raises:
        DatasetError: nothing in ``path`` looks like a known format.
    """
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in {".yaml", ".yml"}:
            return "yolo"
        if suffix == ".json":
            return "coco"
        raise DatasetError(f"dataset {path}: expected a .yaml (YOLO) or .json (COCO) file")
    if any((path / name).is_file() for name in _YAML_NAMES):
        return "yolo"
    if any(path.glob("*.xml")) or any((path / "Annotations").glob("*.xml")):
        return "voc"
    if any((path / name).is_file() for name in _COCO_NAMES):
        return "coco"
    raise DatasetError(
        f"dataset folder {path}: found no {'/'.join(_YAML_NAMES[:2])} (YOLO), no .xml files "
        f"(VOC) and no {_COCO_NAMES[0]} (COCO); pass the file itself or the format"
    )


# --- YOLO -----------------------------------------------------------------------------------


def _find_yaml(path: Path) -> Path:
    if path.is_file():
        return path
    for name in _YAML_NAMES:
        if (path / name).is_file():
            return path / name
    raise DatasetError(f"YOLO dataset folder {path} has no {' or '.join(_YAML_NAMES)}")


def _read_yolo(yaml_path: Path, split: str | None) -> LabelledDataset:
    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read dataset YAML {yaml_path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise DatasetError(f"dataset YAML {yaml_path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"dataset YAML {yaml_path}: expected a mapping of keys")
    class_names = _yolo_class_names(data, yaml_path)
    root = _yolo_root(data, yaml_path)

    if split is None:
        split = "test" if data.get("test") else "val"
    entry = data.get(split)
    if not entry:
        raise DatasetError(f"dataset YAML {yaml_path}: no '{split}' key naming images to read")
    sources = entry if isinstance(entry, list) else [entry]
    image_paths: list[Path] = []
    for source in sources:
        if not isinstance(source, str):
            raise DatasetError(f"dataset YAML {yaml_path}: key '{split}' must name paths")
        image_paths.extend(_yolo_split_images(root, source, yaml_path, split))

    images = [_read_yolo_image(image, class_names) for image in image_paths]
    logger.info("read %d images of %s split %r", len(images), yaml_path, split)
    return LabelledDataset(yaml_path.stem, images, class_names, "yolo")


def _yolo_class_names(data: dict[str, Any], yaml_path: Path) -> list[str]:
    names = data.get("names")
    if isinstance(names, dict):
        try:
            ids = sorted(int(key) for key in names)
        except (TypeError, ValueError):
            raise DatasetError(
                f"dataset YAML {yaml_path}: 'names' keys must be class ids"
            ) from None
        if ids != list(range(len(ids))):
            raise DatasetError(f"dataset YAML {yaml_path}: 'names' ids must be 0..{len(ids) - 1}")
        by_id = {int(key): value for key, value in names.items()}
        return [str(by_id[i]) for i in ids]
    if isinstance(names, list) and names:
        return [str(name) for name in names]
    raise DatasetError(f"dataset YAML {yaml_path}: key 'names' must list the classes")


def _yolo_root(data: dict[str, Any], yaml_path: Path) -> Path:
    """The dataset root: the YAML's ``path``, relative to the YAML's folder."""
    here = yaml_path.resolve().parent
    value = data.get("path")
    if value is None or value == "":
        return here
    root = Path(str(value))
    if not root.is_absolute():
        return (here / root).resolve()
    if not root.is_dir():
        # Datasets get moved; an absolute path from another machine should not stop us.
        logger.warning("%s: path %s does not exist, using the YAML's folder", yaml_path, root)
        return here
    return root


def _yolo_split_images(root: Path, source: str, yaml_path: Path, split: str) -> list[Path]:
    location = Path(source) if Path(source).is_absolute() else root / source
    if location.is_dir():
        return sorted(
            p for p in location.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
    if location.is_file() and location.suffix.lower() == ".txt":
        listed = []
        text = location.read_text(encoding="utf-8")
        for line_no, line in enumerate(text.splitlines(), start=1):
            name = line.strip()
            if not name or name.startswith("#"):
                continue
            image = Path(name) if Path(name).is_absolute() else root / name
            if not image.is_file():
                raise DatasetError(f"{location}:{line_no}: image {image} does not exist")
            listed.append(image)
        return listed
    raise DatasetError(
        f"dataset YAML {yaml_path}: '{split}: {source}' is neither a folder of images nor a "
        f".txt list of images ({location} not found)"
    )


def _yolo_label_path(image_path: Path) -> Path:
    """``.../images/x.jpg`` -> ``.../labels/x.txt`` (the last ``images`` component only)."""
    parts = list(image_path.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _read_yolo_image(image_path: Path, class_names: list[str]) -> LabelledImage:
    label_path = _yolo_label_path(image_path)
    if not label_path.is_file():
        return LabelledImage(image_path, ())
    lines = label_path.read_text(encoding="utf-8").splitlines()
    if not any(line.strip() for line in lines):
        return LabelledImage(image_path, ())
    width, height = _image_size(image_path)
    objects = []
    for line_no, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{label_path}:{line_no}"
        try:
            class_id = int(fields[0])
            coords = [float(v) for v in fields[1:]]
        except ValueError:
            raise DatasetError(f"{where}: not a YOLO label line: {line[:60]!r}") from None
        if not 0 <= class_id < len(class_names):
            raise DatasetError(
                f"{where}: class id {class_id} is not one of the {len(class_names)} classes "
                f"(0..{len(class_names) - 1})"
            )
        if not all(math.isfinite(v) for v in coords):
            raise DatasetError(f"{where}: coordinates must be finite numbers")
        corners = normalised_box(coords)
        if corners is None:
            raise DatasetError(
                f"{where}: expected 4 box values or an even number >= 6 of polygon values "
                f"after the class id, got {len(coords)}"
            )
        x1, y1, x2, y2 = corners
        box = (
            _clip01(x1) * width,
            _clip01(y1) * height,
            _clip01(x2) * width,
            _clip01(y2) * height,
        )
        objects.append(LabelledObject(class_names[class_id], box))
    return LabelledImage(image_path, tuple(objects))


def _clip01(value: float) -> float:
    return max(0.0, min(1.0, value))


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image, decoding it: YOLO labels are fractions of the image size."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetError(f"image {path} cannot be read (missing, truncated or not an image)")
    return int(image.shape[1]), int(image.shape[0])


# --- Pascal VOC -----------------------------------------------------------------------------


def _read_voc(folder: Path) -> LabelledDataset:
    if not folder.is_dir():
        raise DatasetError(f"VOC dataset {folder} must be a folder of .xml files")
    xml_files = sorted(folder.glob("*.xml")) + sorted((folder / "Annotations").glob("*.xml"))
    if not xml_files:
        raise DatasetError(f"VOC dataset folder {folder} has no .xml files (nor Annotations/)")
    images = []
    seen_names: set[str] = set()
    for xml_path in xml_files:
        image = _read_voc_file(xml_path, folder)
        seen_names.update(obj.class_name for obj in image.objects)
        images.append(image)
    logger.info("read %d VOC images from %s", len(images), folder)
    return LabelledDataset(folder.name, images, sorted(seen_names), "voc")


def _read_voc_file(xml_path: Path, folder: Path) -> LabelledImage:
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise DatasetError(f"VOC file {xml_path} cannot be parsed: {exc}") from None
    filename = (root.findtext("filename") or "").strip()
    if not filename:
        raise DatasetError(f"VOC file {xml_path}: no <filename>")
    candidates = [
        xml_path.parent / filename,
        folder / filename,
        folder / "JPEGImages" / filename,
        folder / "images" / filename,
    ]
    image_path = next((p for p in candidates if p.is_file()), None)
    if image_path is None:
        raise DatasetError(
            f"VOC file {xml_path}: image {filename!r} not found beside it, in JPEGImages/ "
            "or in images/"
        )
    objects = []
    for index, element in enumerate(root.iter("object"), start=1):
        name = (element.findtext("name") or "").strip()
        where = f"VOC file {xml_path}: object {index}"
        if not name:
            raise DatasetError(f"{where}: no <name>")
        bndbox = element.find("bndbox")
        if bndbox is None:
            raise DatasetError(f"{where} ({name}): no <bndbox>")
        coords = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            text = bndbox.findtext(tag)
            try:
                coords.append(float(text if text is not None else ""))
            except ValueError:
                raise DatasetError(f"{where} ({name}): <{tag}> {text!r} is not a number") from None
        x1, y1, x2, y2 = coords
        if not (x2 >= x1 and y2 >= y1):
            raise DatasetError(f"{where} ({name}): box max is less than its min")
        objects.append(LabelledObject(name, (x1, y1, x2, y2)))
    return LabelledImage(image_path, tuple(objects))


# --- COCO -----------------------------------------------------------------------------------


def _find_coco_json(path: Path) -> Path:
    if path.is_file():
        return path
    for name in _COCO_NAMES:
        if (path / name).is_file():
            return path / name
    raise DatasetError(f"COCO dataset folder {path} has no {' or '.join(_COCO_NAMES)}")


def _read_coco(json_path: Path) -> LabelledDataset:
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"COCO file {json_path}:{exc.lineno}: not valid JSON: {exc.msg}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read COCO file {json_path}: {exc}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"COCO file {json_path}: expected a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"COCO file {json_path}: key '{key}' must be a list")

    categories: dict[Any, str] = {}
    for category in data["categories"]:
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            raise DatasetError(f"COCO file {json_path}: a category lacks 'id' or 'name'")
        categories[category["id"]] = str(category["name"])

    folder = json_path.parent
    image_paths: dict[Any, Path] = {}
    for image in data["images"]:
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise DatasetError(f"COCO file {json_path}: an image lacks 'id' or 'file_name'")
        name = str(image["file_name"])
        candidates = [folder / name, folder / "images" / name]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise DatasetError(
                f"COCO file {json_path}: image id {image['id']} file {name!r} not found in "
                f"{folder} or {folder / 'images'}"
            )
        image_paths[image["id"]] = found

    objects: dict[Any, list[LabelledObject]] = {image_id: [] for image_id in image_paths}
    for annotation in data["annotations"]:
        if not isinstance(annotation, dict):
            raise DatasetError(f"COCO file {json_path}: an annotation is not an object")
        where = f"COCO file {json_path}: annotation id {annotation.get('id')!r}"
        image_id = annotation.get("image_id")
        if image_id not in objects:
            raise DatasetError(f"{where}: image_id {image_id!r} is not in 'images'")
        category_id = annotation.get("category_id")
        if category_id not in categories:
            raise DatasetError(f"{where}: category_id {category_id!r} is not in 'categories'")
        bbox = annotation.get("bbox")
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)
            or bbox[2] < 0
            or bbox[3] < 0
        ):
            raise DatasetError(f"{where}: bbox must be [x, y, width, height], got {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        objects[image_id].append(LabelledObject(categories[category_id], (x, y, x + w, y + h)))

    images = [LabelledImage(image_paths[i], tuple(objects[i])) for i in image_paths]
    # Category ids order the class names, as COCO tools list them.
    class_names = [categories[key] for key in sorted(categories, key=_sortable)]
    logger.info("read %d COCO images from %s", len(images), json_path)
    return LabelledDataset(json_path.stem, images, class_names, "coco")


def _sortable(key: Any) -> tuple[int, Any]:
    return (0, key) if isinstance(key, int) else (1, str(key))
