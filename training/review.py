"""The review round trip through Label Studio: captures out as tasks, reviewed labels back in.

No Label Studio server is needed here: this module writes and reads its documented JSON.

Out (:func:`export_review`): each image becomes a task with the model's boxes as a
*prediction* (``rectanglelabels`` in percent of the image, with the ``model_version``), so the
reviewer starts from what the terminal saw. The cashier's corrections come first in the queue,
then captures flagged for review, then the rest by time. Each task's ``data`` (and ``meta``)
carries ``corrected``, ``needs_review``, ``model_version``, ``timestamp``, the image's ``file``
relative to its dataset, and a ``note`` shown above the image. :func:`label_config` writes the
matching labelling config: one ``RectangleLabels`` label per menu dish (the value is the dish
id, the hint its names) and a ``drop`` choice for images that should not be trained on.

Input to the export is a capture store folder (``var/captures``, see :mod:`terminal.captures`)
or a dataset (what ``trayscan captures export`` writes, or any YOLO, VOC or COCO dataset). A
``manifest.json`` beside the dataset's YAML is read for per-image flags; the keys read are::

    {"model_version": "...",                     # optional default for every image
     "images": [{"file": "images/x.jpg",         # relative to the manifest's folder
                 "corrected": true,              # the cashier changed a dish
                 "needs_review": false,          # optional
                 "model_version": "2026.11.26-3",
                 "timestamp": "2026-05-01T12:30:12.345+08:00"}]}   # optional

Back (:func:`import_review`): Label Studio's JSON export (Export → JSON, not JSON-MIN). For
each task the latest annotation decides:

- ``was_cancelled`` (the reviewer pressed Skip) or the ``drop`` choice: the image is dropped;
- rectangles equal to the prediction (submitted without an edit): kept as predicted,
  counted ``accepted``;
- anything else: kept as the reviewer left it, counted ``fixed`` (no rectangles at all is an
  image with no dishes);
- no annotation yet: left out and counted ``unreviewed`` (``keep_unreviewed`` keeps the
  prediction).

The result is a YOLO dataset whose classes are the menu's dish ids, with a ``manifest.json``
listing every image's status and the accepted/fixed/dropped counts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit
from xml.sax.saxutils import quoteattr

from terminal.core.menu import Menu
from training.dataset_check import scan_dataset
from training.dataset_tools import (
    InvalidDatasetError,
    path_key,
    place_image,
    prepare_output,
    read_manifest_entries,
    resolve_classes,
    write_dataset_yaml,
    write_labels,
    write_manifest,
)

logger = logging.getLogger(__name__)

#: Names tying the tasks' results to the labelling config.
IMAGE_NAME = "image"
LABELS_NAME = "dish"
REVIEW_NAME = "review"
DROP_CHOICE = "drop"
#: Label Studio serves files below LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT at this URL.
DEFAULT_IMAGE_ROOT = "/data/local-files/?d="

Box = tuple[float, float, float, float]


class ReviewError(ValueError):
    """An export or import that cannot be done; the message names the task or file."""


@dataclass(frozen=True)
class ReviewObject:
    """A labelled box: its label (a menu dish id) and box in image fractions (x1, y1, x2, y2)."""

    label: str
    box: Box


@dataclass(frozen=True)
class ReviewItem:
    """One image to review, with what the terminal said about it.

    Attributes:
        image: the image file.
        file: its path relative to the dataset or capture folder (finds it again on import).
        width: image width in pixels.
        height: image height in pixels.
        objects: the predicted (or confirmed) boxes.
        corrected: the cashier changed a dish of this tray.
        needs_review: the terminal asked for a person to look (an ambiguous match...).
        model_version: the model that drew the boxes.
        timestamp: when the tray was captured (ISO 8601), or empty.
        notes: things for the reviewer to know (a dish the cashier added without a box).
    """

    image: Path
    file: str
    width: int
    height: int
    objects: tuple[ReviewObject, ...]
    corrected: bool = False
    needs_review: bool = False
    model_version: str = ""
    timestamp: str = ""
    notes: tuple[str, ...] = ()


# --- reading what to review -----------------------------------------------------------------


def items_from_dataset(path: Path, menu: Menu, format: str | None = None) -> list[ReviewItem]:
    """The images of a dataset as review items, with the flags of its ``manifest.json``.

    Class names that are menu ids stay; others map through the menu's ``dataset_class``; the
    rest keep their name (and get a label of their own in the config).

    Raises:
        InvalidDatasetError: the dataset has validation errors.
    """
    dataset, report = scan_dataset(path, format)
    if dataset is None or not report.ok:
        raise InvalidDatasetError([report])
    mapping, unmapped = resolve_classes(dataset.class_names, {}, menu)
    if unmapped:
        logger.warning("classes not on the menu keep their names: %s", ", ".join(unmapped))
    root = dataset.source if dataset.source.is_dir() else dataset.source.parent
    manifest = read_manifest_entries(dataset.source)
    manifest_data = _read_json_object(root / "manifest.json")
    default_version = str(manifest_data.get("model_version") or "")
    items = []
    for image in dataset.images:
        if image.width is None or image.height is None:
            continue
        entry = manifest.get(path_key(image.path), {})
        objects = tuple(
            ReviewObject(mapping.get(obj.class_name) or obj.class_name, obj.box)
            for obj in image.objects
        )
        items.append(
            ReviewItem(
                image=image.path,
                file=_relative(image.path, root),
                width=image.width,
                height=image.height,
                objects=objects,
                corrected=bool(entry.get("corrected", False)),
                needs_review=bool(entry.get("needs_review", False)),
                model_version=str(entry.get("model_version") or default_version),
                timestamp=str(entry.get("timestamp") or ""),
            )
        )
    return items


def items_from_captures(folder: Path) -> list[ReviewItem]:
    """The captures of a capture store folder (``<day>/<id>.json`` + ``.jpg``) as review items.

    Unreadable records are logged and skipped; the store is only read.

    Raises:
        ReviewError: the folder does not exist.
    """
    from terminal.captures import CaptureRecord

    if not folder.is_dir():
        raise ReviewError(f"capture folder {folder} does not exist")
    items = []
    for json_path in sorted([*folder.glob("*/*.json"), *folder.glob("*.json")]):
        try:
            record = CaptureRecord.read(json_path)
        except (OSError, ValueError) as exc:
            logger.warning("skipping %s: %s", json_path, exc)
            continue
        if not record.image_path.is_file():
            logger.warning("capture %s has no image; skipped", record.capture_id)
            continue
        width, height = record.image_size
        objects = tuple(
            ReviewObject(
                dish_id,
                (
                    _clip01(x1 / width),
                    _clip01(y1 / height),
                    _clip01(x2 / width),
                    _clip01(y2 / height),
                ),
            )
            for dish_id, (x1, y1, x2, y2) in record.boxes
        )
        notes = tuple(
            f"the cashier added {dish['dish_id']} without a box: draw it"
            for dish in record.data["dishes"]
            if dish.get("box_xyxy") is None
        )
        items.append(
            ReviewItem(
                image=record.image_path,
                file=_relative(record.image_path, folder),
                width=width,
                height=height,
                objects=objects,
                corrected=record.corrected,
                needs_review=record.needs_review,
                model_version=str(record.data.get("model_version") or ""),
                timestamp=str(record.data.get("timestamp") or ""),
                notes=notes,
            )
        )
    return items


def review_order(items: Iterable[ReviewItem]) -> list[ReviewItem]:
    """The queue: the cashier's corrections first, then those flagged for review, then the
    rest; oldest first within each."""
    return sorted(
        items,
        key=lambda item: (not item.corrected, not item.needs_review, item.timestamp, item.file),
    )


# --- export ---------------------------------------------------------------------------------


def image_url(image_root: str, file: str) -> str:
    """Where Label Studio loads an image from: ``image_root`` joined with ``file``.

    A root with ``://`` or ``?`` is a URL and ``file`` is percent-encoded; a root ending in
    ``=`` or ``/`` is followed directly by the file, any other gets a ``/`` between.
    """
    is_url = "://" in image_root or "?" in image_root
    tail = quote(file, safe="/") if is_url else file
    if image_root.endswith(("=", "/")) or not image_root:
        return image_root + tail
    return f"{image_root}/{tail}"


def _region_id(file: str, index: int) -> str:
    return hashlib.sha1(f"{file}#{index}".encode()).hexdigest()[:10]


def prediction_result(item: ReviewItem) -> list[dict[str, Any]]:
    """The item's boxes as Label Studio ``rectanglelabels`` results (percent of the image)."""
    results = []
    for index, obj in enumerate(item.objects):
        x1, y1, x2, y2 = obj.box
        results.append(
            {
                "id": _region_id(item.file, index),
                "type": "rectanglelabels",
                "from_name": LABELS_NAME,
                "to_name": IMAGE_NAME,
                "original_width": item.width,
                "original_height": item.height,
                "image_rotation": 0,
                "value": {
                    "x": x1 * 100.0,
                    "y": y1 * 100.0,
                    "width": (x2 - x1) * 100.0,
                    "height": (y2 - y1) * 100.0,
                    "rotation": 0,
                    "rectanglelabels": [obj.label],
                },
            }
        )
    return results


def _note(item: ReviewItem) -> str:
    parts = ["Corrected by the cashier" if item.corrected else "The model's boxes"]
    if item.needs_review:
        parts.append("flagged for review")
    parts.extend(item.notes)
    return "; ".join(parts)


def make_tasks(items: Sequence[ReviewItem], image_root: str, source: Path) -> list[dict[str, Any]]:
    """Label Studio tasks for ``items``, in review order (:func:`review_order`).

    Args:
        items: what to review.
        image_root: the URL or path prefix Label Studio loads images from (:func:`image_url`).
        source: the dataset or capture folder, recorded so that the import finds the images.
    """
    tasks = []
    for item in review_order(items):
        flags = {
            "file": item.file,
            "corrected": item.corrected,
            "needs_review": item.needs_review,
            "model_version": item.model_version,
            "timestamp": item.timestamp,
            "source": str(source.resolve()),
        }
        tasks.append(
            {
                "data": {"image": image_url(image_root, item.file), "note": _note(item), **flags},
                "meta": {"trayscan": flags},
                "predictions": [
                    {
                        "model_version": item.model_version or "unknown",
                        "result": prediction_result(item),
                    }
                ],
            }
        )
    return tasks


def label_config(menu: Menu, extra_labels: Iterable[str] = ()) -> str:
    """The Label Studio labelling config: the image, a label per menu dish, a drop choice.

    Args:
        menu: every dish becomes a ``RectangleLabels`` label (value: the dish id; hint: its
            names), in menu order.
        extra_labels: labels the predictions use that are not on the menu.
    """
    labels = [
        f"    <Label value={quoteattr(item.id)} "
        f"hint={quoteattr(f'{item.name_zh} · {item.name_en}')}/>"
        for item in menu
    ]
    labels += [
        f"    <Label value={quoteattr(name)} hint={quoteattr('not on the menu')}/>"
        for name in sorted(set(extra_labels) - {item.id for item in menu})
    ]
    drop_hint = "A bad image (blurred, no tray, a hand in the way): leave it out of the dataset"
    return "\n".join(
        [
            "<View>",
            '  <Header value="$note"/>',
            f'  <Image name="{IMAGE_NAME}" value="$image" zoom="true" zoomControl="true"/>',
            f'  <RectangleLabels name="{LABELS_NAME}" toName="{IMAGE_NAME}">',
            *labels,
            "  </RectangleLabels>",
            f'  <Choices name="{REVIEW_NAME}" toName="{IMAGE_NAME}" choice="single" '
            'showInline="true">',
            f'    <Choice value="{DROP_CHOICE}" hint={quoteattr(drop_hint)}/>',
            "  </Choices>",
            "</View>",
            "",
        ]
    )


@dataclass
class ReviewExport:
    """What :func:`export_review` wrote."""

    tasks_path: Path
    config_path: Path | None
    n_tasks: int
    n_corrected: int
    n_objects: int
    extra_labels: list[str] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        """What was written, for the command's output."""
        lines = [
            f"{self.tasks_path}: {self.n_tasks} tasks, {self.n_objects} predicted boxes; "
            f"{self.n_corrected} corrected by the cashier come first"
        ]
        if self.config_path is not None:
            lines.append(
                f"{self.config_path}: the labelling config (Settings → Labeling Interface)"
            )
        if self.extra_labels:
            lines.append(f"labels not on the menu: {', '.join(self.extra_labels)}")
        return lines


def export_review(
    items: Sequence[ReviewItem],
    tasks_path: Path,
    menu: Menu,
    *,
    source: Path,
    image_root: str = DEFAULT_IMAGE_ROOT,
    config_path: Path | None = None,
) -> ReviewExport:
    """Write Label Studio tasks (and the labelling config) for ``items``.

    Args:
        items: what to review (:func:`items_from_dataset`, :func:`items_from_captures`).
        tasks_path: the tasks JSON to write (import it in Label Studio).
        menu: the dishes offered as labels.
        source: the dataset or capture folder the items come from.
        image_root: prefix of the image URLs (:func:`image_url`); the default serves files
            relative to Label Studio's local files document root.
        config_path: where to write the labelling config XML, or None.
    """
    tasks = make_tasks(items, image_root, source)
    tasks_path.parent.mkdir(parents=True, exist_ok=True)
    tasks_path.write_text(json.dumps(tasks, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    extra = sorted({obj.label for item in items for obj in item.objects} - {i.id for i in menu})
    if config_path is not None:
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config_path.write_text(label_config(menu, extra), encoding="utf-8")
    logger.info("wrote %d Label Studio tasks to %s", len(tasks), tasks_path)
    return ReviewExport(
        tasks_path=tasks_path,
        config_path=config_path,
        n_tasks=len(tasks),
        n_corrected=sum(1 for item in items if item.corrected),
        n_objects=sum(len(item.objects) for item in items),
        extra_labels=extra,
    )


# --- import ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewedTask:
    """What the review decided for one task."""

    task_id: Any
    status: str  # accepted, fixed, dropped, unreviewed
    objects: tuple[ReviewObject, ...]
    data: dict[str, Any]
    reason: str = ""


@dataclass
class ReviewImport:
    """What :func:`import_review` wrote."""

    out: Path
    dataset_yaml: Path
    manifest: Path
    counts: dict[str, int]
    n_objects: int

    def summary_lines(self) -> list[str]:
        """What was imported, for the command's output."""
        counts = self.counts
        return [
            f"{self.out}: {counts['images']} images, {self.n_objects} boxes "
            f"({counts['accepted']} accepted as predicted, {counts['fixed']} fixed); "
            f"{counts['dropped']} dropped, {counts['unreviewed']} not reviewed yet",
            f"dataset: {self.dataset_yaml}",
        ]


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def load_export(path: Path) -> list[dict[str, Any]]:
    """Read a Label Studio JSON export (a list of tasks).

    Raises:
        ReviewError: not readable, not JSON (with the line), or not the full JSON format.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReviewError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReviewError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, list):
        raise ReviewError(f"{path}: expected a list of tasks (Label Studio's JSON export)")
    for index, task in enumerate(data):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            hint = (
                " (this looks like a JSON-MIN export: export as JSON instead)"
                if isinstance(task, dict) and "image" in task
                else ""
            )
            raise ReviewError(f"{path}: task {index} has no 'data' object{hint}")
    return data


def _rectangle(result: Mapping[str, Any]) -> ReviewObject | None:
    """A ``rectanglelabels`` result as a box in image fractions (rotated boxes: their bounds)."""
    value = result.get("value")
    if not isinstance(value, dict):
        return None
    labels = value.get("rectanglelabels")
    if result.get("type") != "rectanglelabels" and labels is None:
        return None
    if not isinstance(labels, list) or not labels:
        return None
    try:
        x, y, w, h = (float(value[key]) / 100.0 for key in ("x", "y", "width", "height"))
        rotation = float(value.get("rotation") or 0.0)
    except (KeyError, TypeError, ValueError):
        return None
    if rotation:
        # Label Studio turns the box about its top-left corner; its bounds are what YOLO keeps.
        width_px = float(result.get("original_width") or 1.0)
        height_px = float(result.get("original_height") or 1.0)
        angle = math.radians(rotation)
        cos, sin = math.cos(angle), math.sin(angle)
        corners = [
            (0.0, 0.0),
            (w * width_px, 0.0),
            (w * width_px, h * height_px),
            (0.0, h * height_px),
        ]
        xs = [x + (dx * cos - dy * sin) / width_px for dx, dy in corners]
        ys = [y + (dx * sin + dy * cos) / height_px for dx, dy in corners]
        box = (min(xs), min(ys), max(xs), max(ys))
    else:
        box = (x, y, x + w, y + h)
    x1, y1, x2, y2 = (_clip01(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        return None
    return ReviewObject(str(labels[0]), (x1, y1, x2, y2))


def _objects(results: Any) -> tuple[ReviewObject, ...]:
    if not isinstance(results, list):
        return ()
    found = (_rectangle(r) for r in results if isinstance(r, dict))
    return tuple(obj for obj in found if obj is not None)


def _dropped_by_choice(results: Any) -> bool:
    if not isinstance(results, list):
        return False
    for result in results:
        value = result.get("value") if isinstance(result, dict) else None
        if isinstance(value, dict) and DROP_CHOICE in (value.get("choices") or []):
            return True
    return False


def _same_boxes(a: Sequence[ReviewObject], b: Sequence[ReviewObject]) -> bool:
    def key(objects: Sequence[ReviewObject]) -> Counter[tuple[Any, ...]]:
        return Counter((o.label, *(round(v, 5) for v in o.box)) for o in objects)

    return key(a) == key(b)


def _latest(annotations: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The annotation that counts: a ground truth one if any, else the latest."""
    pool = [a for a in annotations if a.get("ground_truth")] or list(annotations)
    return max(
        pool,
        key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), _int(a.get("id"))),
    )


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def decide(task: Mapping[str, Any]) -> ReviewedTask:
    """What the review of one exported task decided (see the module docstring)."""
    task_id = task.get("id")
    data = dict(task["data"])
    predictions = [p for p in task.get("predictions") or [] if isinstance(p, dict)]
    annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict)]
    predicted: tuple[ReviewObject, ...] | None = (
        _objects(predictions[0].get("result")) if predictions else None
    )
    if not annotations:
        return ReviewedTask(task_id, "unreviewed", predicted or (), data)
    final = _latest(annotations)
    if final.get("was_cancelled"):
        return ReviewedTask(task_id, "dropped", (), data, "skipped")
    results = final.get("result")
    if _dropped_by_choice(results):
        return ReviewedTask(task_id, "dropped", (), data, "drop")
    objects = _objects(results)
    if predicted is None:
        parent = final.get("prediction")
        if isinstance(parent, dict) and "result" in parent:
            predicted = _objects(parent.get("result"))
    status = "accepted" if predicted is not None and _same_boxes(objects, predicted) else "fixed"
    return ReviewedTask(task_id, status, objects, data)


def _image_file(data: Mapping[str, Any]) -> str:
    """The image's path relative to its dataset, from the task's data."""
    if data.get("file"):
        return str(data["file"])
    url = str(data.get("image", ""))
    parts = urlsplit(url)
    if parts.query.startswith("d="):
        return unquote(parts.query[2:])
    return unquote(parts.path).lstrip("/")


def find_image(data: Mapping[str, Any], images: Path | None) -> Path | None:
    """The image file of a task: under ``images`` (by its dataset path, then by name, where
    Label Studio's upload prefix ``1a2b3c4d-`` is ignored), else where the export recorded it."""
    file = _image_file(data)
    name = Path(file).name
    names = [name]
    if len(name) > 9 and name[8] == "-" and all(c in "0123456789abcdef" for c in name[:8]):
        names.append(name[9:])  # Label Studio prefixes uploaded files with 8 hex digits
    candidates: list[Path] = []
    if images is not None:
        candidates += [images / file, *(images / n for n in names)]
    source = data.get("source")
    if source:
        candidates.append(Path(str(source)) / file)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if images is not None:
        for wanted in names:
            found = sorted(p for p in images.rglob(wanted) if p.is_file())
            if found:
                return found[0]
    return None


def import_review(
    export_path: Path,
    out: Path,
    menu: Menu,
    *,
    images: Path | None = None,
    keep_unreviewed: bool = False,
) -> ReviewImport:
    """Turn a Label Studio JSON export into a YOLO dataset of the reviewed images.

    Args:
        export_path: Label Studio's JSON export.
        out: a new or empty folder for the dataset.
        menu: the classes (dish ids, in menu order).
        images: where the images are (searched by dataset path, then by name); by default
            where :func:`export_review` found them.
        keep_unreviewed: keep tasks nobody annotated, with the predicted boxes.

    Raises:
        ReviewError: the export cannot be read, a label is not a menu dish, or an image
            cannot be found (every such task is named; nothing is written).
    """
    tasks = load_export(export_path)
    decided = [decide(task) for task in tasks]
    problems = []
    keep: list[tuple[ReviewedTask, Path]] = []
    for reviewed in decided:
        if reviewed.status == "dropped" or (
            reviewed.status == "unreviewed" and not keep_unreviewed
        ):
            continue
        where = f"task {reviewed.task_id} ({_image_file(reviewed.data)})"
        unknown = sorted({obj.label for obj in reviewed.objects if obj.label not in menu})
        if unknown:
            problems.append(f"{where}: labels not on the menu: {', '.join(unknown)}")
        image = find_image(reviewed.data, images)
        if image is None:
            problems.append(f"{where}: image not found" + ("" if images else "; pass --images DIR"))
        else:
            keep.append((reviewed, image))
    if problems:
        raise ReviewError(f"{export_path}:\n  " + "\n  ".join(problems))

    prepare_output(out)
    class_names = [item.id for item in menu]
    class_index = {name: i for i, name in enumerate(class_names)}
    used: set[str] = set()
    entries = []
    for reviewed, image in keep:
        name = image.name
        stem, suffix = os.path.splitext(name)
        n = 2
        while name.lower() in used:
            name = f"{stem}-{n}{suffix}"
            n += 1
        used.add(name.lower())
        place_image(image, out / "images" / name)
        write_labels(
            out / "labels" / f"{Path(name).stem}.txt",
            [_yolo_line(class_index[obj.label], obj.box) for obj in reviewed.objects],
        )
        entries.append(
            {
                "file": f"images/{name}",
                "status": reviewed.status,
                "task_id": reviewed.task_id,
                "original": _image_file(reviewed.data),
                "corrected": bool(reviewed.data.get("corrected", False)),
                "model_version": str(reviewed.data.get("model_version") or ""),
                "timestamp": str(reviewed.data.get("timestamp") or ""),
                "objects": len(reviewed.objects),
            }
        )
    counts = Counter(reviewed.status for reviewed in decided)
    summary = {
        "images": len(entries),
        "accepted": counts["accepted"],
        "fixed": counts["fixed"],
        "dropped": counts["dropped"],
        "unreviewed": counts["unreviewed"],
    }
    dataset_yaml = write_dataset_yaml(
        out,
        class_names,
        {"train": "images", "val": "images"},
        "Reviewed in Label Studio, imported by `trayscan review import`; classes are menu ids.\n"
        "Not split yet: run `trayscan dataset split` before training on it.",
    )
    n_objects = sum(entry["objects"] for entry in entries)
    manifest = write_manifest(
        out,
        {
            "format": "trayscan-review-import/1",
            "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "export": os.path.normpath(str(export_path)),
            "class_names": class_names,
            "counts": {**summary, "objects": n_objects},
            "images": entries,
            "dropped": [
                {"task_id": r.task_id, "file": _image_file(r.data), "reason": r.reason}
                for r in decided
                if r.status == "dropped"
            ],
            "unreviewed": [
                {"task_id": r.task_id, "file": _image_file(r.data)}
                for r in decided
                if r.status == "unreviewed"
            ],
        },
    )
    logger.info("imported %d reviewed images into %s", len(entries), out)
    return ReviewImport(out, dataset_yaml, manifest, summary, n_objects)


def _yolo_line(class_id: int, box: Box) -> str:
    x1, y1, x2, y2 = box
    return f"{class_id} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}"


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def _clip01(value: float) -> float:
    return max(0.0, min(1.0, value))
