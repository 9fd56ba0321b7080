"""Reading YOLO label files (boxes or segmentation polygons) into pixel boxes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)


class LabelError(ValueError):
    """A label file or dataset description that cannot be read; the message names file and line."""


@dataclass(frozen=True)
class LabelledBox:
    """One labelled object: its class id and its box in pixels (x1, y1, x2, y2)."""

    class_id: int
    box_xyxy: tuple[float, float, float, float]


def normalised_box(coords: Sequence[float]) -> tuple[float, float, float, float] | None:
    """The ``(x1, y1, x2, y2)`` box, in image fractions, of a YOLO label line's values.

    Four values are a box (centre x, centre y, width, height); an even number of six or more are
    the corners of a segmentation polygon, whose bounding box is returned. Any other count gives
    None: the caller reports it with its own file and line.
    """
    if len(coords) == 4:
        cx, cy, w, h = coords
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    if len(coords) >= 6 and len(coords) % 2 == 0:
        xs, ys = coords[0::2], coords[1::2]
        return min(xs), min(ys), max(xs), max(ys)
    return None


def label_path_for(image_path: Path) -> Path:
    """The YOLO label file of an image: ``.../images/x.jpg`` -> ``.../labels/x.txt``."""
    parts = list(image_path.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def read_yolo_labels(path: Path, width: int, height: int) -> list[LabelledBox]:
    """Read a YOLO label file; each line is a box (5 numbers) or a polygon (odd count >= 7).

    Raises:
        LabelError: a line that is neither, naming the file and line number.
    """
    boxes = []
    text = path.read_text(encoding="utf-8")
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            class_id = int(fields[0])
            coords = [float(v) for v in fields[1:]]
        except ValueError:
            raise LabelError(f"{path}:{line_no}: not a YOLO label line: {line[:60]!r}") from None
        box = normalised_box(coords)
        if box is None:
            raise LabelError(
                f"{path}:{line_no}: expected 4 box values or an even number >= 6 of polygon "
                f"values after the class id, got {len(coords)}"
            )
        x1, y1, x2, y2 = box
        x1, x2 = (max(0.0, min(1.0, v)) * width for v in (x1, x2))
        y1, y2 = (max(0.0, min(1.0, v)) * height for v in (y1, y2))
        boxes.append(LabelledBox(class_id, (x1, y1, x2, y2)))
    return boxes


def read_class_names(dataset_yaml: Path) -> list[str]:
    """The class names of an ultralytics-style dataset YAML (``names`` as a list or a dict)."""
    try:
        data = yaml.safe_load(dataset_yaml.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise LabelError(f"cannot read dataset description {dataset_yaml}: {exc}") from exc
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise LabelError(f"{dataset_yaml}: no 'names' list of classes")


def write_dataset_yaml(
    out: Path, names: Sequence[str], *, train: str, val: str, header: str = ""
) -> Path:
    """Write ``out/dataset.yaml`` for a YOLO dataset (absolute ``path``, as ultralytics wants).

    Args:
        out: the dataset folder.
        names: class names, in class-id order.
        train, val: image folders relative to ``out``.
        header: comment lines to put first (each starting with ``#``).
    """
    dataset_yaml = out / "dataset.yaml"
    body = yaml.safe_dump(
        {
            "path": str(out.resolve()),
            "train": train,
            "val": val,
            "nc": len(names),
            "names": list(names),
        },
        allow_unicode=True,
        sort_keys=False,
    )
    dataset_yaml.write_text((header.rstrip("\n") + "\n" if header else "") + body, encoding="utf-8")
    return dataset_yaml
