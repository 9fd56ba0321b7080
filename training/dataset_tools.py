"""Merging labelled datasets onto the menu, and splitting one by source photo.

- :func:`merge_datasets` reads YOLO, VOC and COCO datasets (as :mod:`training.dataset_check`
  reads and checks them) and writes one YOLO dataset whose classes are the menu's dish ids, with
  a ``manifest.json`` saying where every image came from.
- :func:`split_dataset` splits a dataset into train and val so that copies of one photo
  (Roboflow's ``*_jpg.rf.<hash>`` augmentations, re-posts and bursts found by
  :func:`training.data.group_near_duplicates`) never straddle the two.

Both refuse a dataset with validation errors and say which: training on a half-read dataset is
worse than not training. Boxes keep their geometry: a YOLO polygon stays a polygon; VOC and COCO
boxes become YOLO boxes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import shutil
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from terminal.core.menu import Menu
from training.data import group_near_duplicates, source_name
from training.dataset_check import (
    ScannedDataset,
    ScannedImage,
    ValidationReport,
    scan_dataset,
    sha256_of,
)

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"


class DatasetToolError(ValueError):
    """A merge or split that cannot be done; the message says what to fix (file and line)."""


class InvalidDatasetError(DatasetToolError):
    """An input dataset with validation errors; ``reports`` holds what the check found."""

    def __init__(self, reports: Sequence[ValidationReport]) -> None:
        self.reports = list(reports)
        names = ", ".join(f"{r.source or r.path} ({len(r.errors)} errors)" for r in reports)
        super().__init__(
            f"{names}: fix the errors first (trayscan dataset validate shows all of them)"
        )


# --- shared helpers -------------------------------------------------------------------------


def read_dataset_checked(path: Path, format: str | None = None) -> ScannedDataset:
    """Read a dataset and refuse it when validation finds errors.

    Raises:
        InvalidDatasetError: the dataset has errors, or cannot be read at all.
    """
    dataset, report = scan_dataset(path, format)
    if dataset is None or not report.ok:
        raise InvalidDatasetError([report])
    return dataset


def prepare_output(out: Path) -> None:
    """Make ``out`` a new, empty folder.

    Raises:
        DatasetToolError: ``out`` exists and is not an empty folder (nothing is overwritten).
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetToolError(f"{out} exists and is not an empty folder: write to a new folder")
    out.mkdir(parents=True, exist_ok=True)


def place_image(source: Path, target: Path) -> None:
    """Put an image into a dataset: a hard link when the file system allows, else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def write_labels(path: Path, lines: Sequence[str]) -> None:
    """A YOLO label file, every line ending in a newline (an empty file for no objects)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_dataset_yaml(
    out: Path, class_names: Sequence[str], splits: Mapping[str, str], comment: str
) -> Path:
    """Write ``out/dataset.yaml`` (an absolute ``path``: ultralytics reads a relative one
    against the working directory, not the YAML).

    Returns:
        The YAML's path.
    """
    data: dict[str, Any] = {"path": str(out.resolve())}
    data.update(splits)
    data["nc"] = len(class_names)
    data["names"] = list(class_names)
    dataset_yaml = out / "dataset.yaml"
    dataset_yaml.write_text(
        "".join(f"# {line}\n" for line in comment.splitlines())
        + yaml.safe_dump(data, allow_unicode=True, sort_keys=False),
        encoding="utf-8",
    )
    return dataset_yaml


def write_manifest(out: Path, manifest: Mapping[str, Any]) -> Path:
    """Write ``out/manifest.json``."""
    path = out / MANIFEST_NAME
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


def read_manifest_entries(dataset: Path) -> dict[str, dict[str, Any]]:
    """The per-image entries of a dataset's ``manifest.json``, keyed by image path.

    The manifest sits in the dataset's folder (beside ``dataset.yaml``); its ``images`` list
    holds objects with a ``file`` key relative to that folder (``images/x.jpg``), as written by
    ``trayscan captures export``, ``dataset merge``, ``dataset split`` and ``review import``.
    Keys are :func:`path_key` of the images; a missing or unreadable manifest gives no
    entries.
    """
    folder = dataset if dataset.is_dir() else dataset.parent
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.warning("%s cannot be read, ignored: %s", path, exc)
        return {}
    entries = data.get("images") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return {}
    return {
        path_key(folder / str(entry["file"])): entry
        for entry in entries
        if isinstance(entry, dict) and "file" in entry
    }


def path_key(path: Path) -> str:
    """An image's key in :func:`read_manifest_entries`: its absolute, normalised path."""
    return os.path.abspath(path)


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _unique_name(name: str, used: set[str]) -> str:
    stem, suffix = os.path.splitext(name)
    candidate, n = name, 2
    while candidate.lower() in used:
        candidate = f"{stem}-{n}{suffix}"
        n += 1
    used.add(candidate.lower())
    return candidate


# --- class mapping --------------------------------------------------------------------------


def load_class_map(path: Path) -> dict[str, str | None]:
    """Read a class mapping file: ``source class name: menu id`` per line.

    ``null`` (or ``~``) as the menu id drops that class's objects. For example::

        banh mi: banh_mi
        rice_dish: com
        drink: null

    Raises:
        DatasetToolError: the file cannot be read, or a line is not ``name: id`` (named with
            its line).
    """
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetToolError(f"cannot read the class map {path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise DatasetToolError(f"{where}: the class map is not valid YAML") from None
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise DatasetToolError(f"{path}: expected 'source class: menu id' lines")
    mapping: dict[str, str | None] = {}
    problems = []
    for key, value in node.value:
        line = key.start_mark.line + 1
        if not isinstance(key, yaml.ScalarNode) or not isinstance(value, yaml.ScalarNode):
            problems.append(f"{path}:{line}: expected 'source class: menu id'")
            continue
        if value.tag.endswith(":null") or value.value in ("", "~", "null"):
            mapping[str(key.value)] = None
        else:
            mapping[str(key.value)] = str(value.value)
    if problems:
        raise DatasetToolError("\n".join(problems))
    return mapping


def _key_line(path: Path | None, key: str) -> str:
    if path is None:
        return "the class map"
    try:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            stripped = line.strip().strip("'\"")
            if stripped.startswith(key) and ":" in line:
                return f"{path}:{number}"
    except OSError:
        pass
    return str(path)


def resolve_classes(
    class_names: Sequence[str], class_map: Mapping[str, str | None], menu: Menu
) -> tuple[dict[str, str | None], list[str]]:
    """Map a dataset's class names onto menu ids.

    A name maps by the class map first, then as a menu id itself, then through a menu item's
    ``dataset_class``.

    Returns:
        ``name -> menu id`` (None: dropped by the map), and the names that map to nothing.
    """
    by_dataset_class = {name: item.id for name, item in menu.by_dataset_class().items()}
    resolved: dict[str, str | None] = {}
    unmapped = []
    for name in class_names:
        if name in class_map:
            resolved[name] = class_map[name]
        elif name in menu:
            resolved[name] = name
        elif name in by_dataset_class:
            resolved[name] = by_dataset_class[name]
        else:
            unmapped.append(name)
    return resolved, unmapped


# --- merge ----------------------------------------------------------------------------------


@dataclass
class MergeResult:
    """What :func:`merge_datasets` wrote."""

    out: Path
    dataset_yaml: Path
    manifest: Path
    n_images: int
    n_objects: int
    objects_per_class: dict[str, int]
    dropped_objects: dict[str, int] = field(default_factory=dict)
    duplicates_skipped: int = 0
    sources: list[dict[str, Any]] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        """What was merged, for the command's output."""
        lines = [f"merged into {self.out}: {self.n_images} images, {self.n_objects} objects"]
        for source in self.sources:
            lines.append(
                f"  {source['path']} ({source['format']}): {source['images']} images, "
                f"{source['objects']} objects"
            )
        if self.duplicates_skipped:
            lines.append(f"  {self.duplicates_skipped} duplicate images (same bytes) skipped")
        for key, n in sorted(self.dropped_objects.items()):
            lines.append(f"  dropped {n} objects of {key}")
        used = {name: n for name, n in self.objects_per_class.items() if n}
        lines.append(f"  {len(used)} dishes have objects; see {self.manifest.name} for counts")
        lines.append(f"dataset: {self.dataset_yaml} (split it next: trayscan dataset split)")
        return lines


def merge_datasets(
    sources: Sequence[tuple[Path, str | None]],
    class_map: Mapping[str, str | None],
    menu: Menu,
    out: Path,
    *,
    drop_unmapped: bool = False,
    map_path: Path | None = None,
    menu_path: Path | None = None,
) -> MergeResult:
    """Merge datasets into one YOLO dataset whose classes are the menu's dish ids.

    The class ids are the menu's order, so the same dish keeps its id from one merge to the
    next. Images with the same bytes are kept once. Each image is renamed
    ``<source name>__<file name>``, which keeps Roboflow source names intact for splitting.

    Args:
        sources: ``(path, format)`` of each dataset; format None detects it.
        class_map: source class name -> menu id, None to drop the class
            (:func:`load_class_map`); names absent from it map as menu ids or through the
            menu's ``dataset_class``.
        menu: the menu whose dishes are the classes.
        out: a new or empty folder.
        drop_unmapped: drop objects of classes that map to nothing, instead of refusing.
            Their images stay, with those dishes unlabelled.
        map_path: the class map's file, for error messages and the manifest.
        menu_path: the menu's file, for the manifest.

    Raises:
        InvalidDatasetError: a source has validation errors.
        DatasetToolError: classes map to nothing (and not ``drop_unmapped``), the map names a
            dish that is not on the menu, or ``out`` is not empty.
    """
    if not sources:
        raise DatasetToolError("nothing to merge: name one or more datasets")
    scanned = []
    bad = []
    for path, format in sources:
        dataset, report = scan_dataset(path, format)
        if dataset is None or not report.ok:
            bad.append(report)
        else:
            scanned.append((path, dataset))
    if bad:
        raise InvalidDatasetError(bad)

    not_on_menu = sorted(
        {(menu_id, name) for name, menu_id in class_map.items() if menu_id and menu_id not in menu}
    )
    if not_on_menu:
        raise DatasetToolError(
            "\n".join(
                f"{_key_line(map_path, name)}: {name!r} maps to {menu_id!r}, which is not on the "
                "menu"
                for menu_id, name in not_on_menu
            )
        )
    mappings: list[dict[str, str | None]] = []
    problems = []
    for path, dataset in scanned:
        resolved, unmapped = resolve_classes(dataset.class_names, class_map, menu)
        counts = Counter(obj.class_name for image in dataset.images for obj in image.objects)
        for name in unmapped:
            if drop_unmapped:
                resolved[name] = None
            else:
                problems.append(f"{path}: class {name!r} ({counts[name]} objects)")
        mappings.append(resolved)
    if problems:
        raise DatasetToolError(
            "these classes map to no dish on the menu; add them to the class map (name: menu "
            "id, or name: null to drop them) or pass --drop-unmapped:\n  " + "\n  ".join(problems)
        )

    prepare_output(out)
    class_names = [item.id for item in menu]
    class_index = {name: i for i, name in enumerate(class_names)}
    used_names: set[str] = set()
    used_slugs: set[str] = set()
    seen_hashes: dict[str, str] = {}
    per_class: Counter[str] = Counter({name: 0 for name in class_names})
    dropped: Counter[str] = Counter()
    entries: list[dict[str, Any]] = []
    source_entries: list[dict[str, Any]] = []
    duplicates = 0
    partial = 0
    for index, ((path, dataset), mapping) in enumerate(zip(scanned, mappings, strict=True)):
        slug = _unique_name(dataset.name, used_slugs)
        images_written = objects_written = 0
        for image in dataset.images:
            digest = image.sha256 or sha256_of(image.path.read_bytes())
            if digest in seen_hashes:
                duplicates += 1
                logger.info("%s: same bytes as %s, skipped", image.path, seen_hashes[digest])
                continue
            name = _unique_name(f"{slug}__{image.path.name}", used_names)
            lines = []
            lost = 0
            for obj in image.objects:
                menu_id = mapping.get(obj.class_name)
                if menu_id is None:
                    dropped[f"{dataset.name}:{obj.class_name}"] += 1
                    lost += 1
                    continue
                lines.append(obj.yolo_line(class_index[menu_id]))
                per_class[menu_id] += 1
            partial += lost > 0
            place_image(image.path, out / "images" / name)
            write_labels(out / "labels" / f"{Path(name).stem}.txt", lines)
            seen_hashes[digest] = os.path.normpath(str(image.path))
            images_written += 1
            objects_written += len(lines)
            entries.append(
                {
                    "file": f"images/{name}",
                    "source": index,
                    "original": os.path.normpath(str(image.path)),
                    "split": "+".join(image.splits),
                    "sha256": digest,
                    "objects": len(lines),
                    "dropped_objects": lost,
                }
            )
        source_entries.append(
            {
                "path": os.path.normpath(str(path)),
                "read": os.path.normpath(str(dataset.source)),
                "format": dataset.format,
                "name": dataset.name,
                "images": images_written,
                "objects": objects_written,
                "mapping": mapping,
            }
        )
    if partial:
        logger.warning(
            "%d images had objects dropped; those dishes are unlabelled on them, which teaches a "
            "detector that they are background",
            partial,
        )
    dataset_yaml = write_dataset_yaml(
        out,
        class_names,
        {"train": "images", "val": "images"},
        "Merged by `trayscan dataset merge`; class names are menu ids.\n"
        "Not split yet: run `trayscan dataset split` before training on it.",
    )
    n_objects = sum(per_class.values())
    manifest = write_manifest(
        out,
        {
            "format": "trayscan-dataset-merge/1",
            "created": _now(),
            "menu": os.path.normpath(str(menu_path)) if menu_path else None,
            "class_map": os.path.normpath(str(map_path)) if map_path else None,
            "class_names": class_names,
            "sources": source_entries,
            "counts": {
                "images": len(entries),
                "objects": n_objects,
                "duplicates_skipped": duplicates,
                "images_with_dropped_objects": partial,
                "per_class": dict(per_class),
                "dropped_objects": dict(dropped),
            },
            "images": entries,
        },
    )
    logger.info("merged %d datasets into %s: %d images", len(scanned), out, len(entries))
    return MergeResult(
        out=out,
        dataset_yaml=dataset_yaml,
        manifest=manifest,
        n_images=len(entries),
        n_objects=n_objects,
        objects_per_class=dict(per_class),
        dropped_objects=dict(dropped),
        duplicates_skipped=duplicates,
        sources=source_entries,
    )


# --- split ----------------------------------------------------------------------------------


@dataclass
class SplitResult:
    """What :func:`split_dataset` wrote, in groups (source photos) and images per side."""

    out: Path
    dataset_yaml: Path
    manifest: Path
    groups: dict[str, int]
    images: dict[str, int]
    objects: dict[str, int]

    def summary_lines(self) -> list[str]:
        """Where the groups and images went, for the command's output."""
        total_groups = sum(self.groups.values())
        total_images = sum(self.images.values())
        lines = [
            f"split {total_images} images from {total_groups} source photos "
            "(augmented copies and near-duplicates stay together):"
        ]
        for side in ("train", "val"):
            lines.append(
                f"  {side:<5} {self.groups[side]:>5} groups  {self.images[side]:>6} images  "
                f"{self.objects[side]:>6} objects"
            )
        lines.append(f"dataset: {self.dataset_yaml}")
        return lines


def assign_groups(
    sizes: Mapping[str, int], val_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Choose which groups go to val so that val holds about ``val_fraction`` of the images.

    The groups are shuffled with ``seed`` (the same seed gives the same split) and each goes
    to val while that brings val closer to its target; train and val both get at least one
    group when there are two or more.

    Returns:
        The train groups and the val groups.
    """
    anchors = sorted(sizes)
    random.Random(seed).shuffle(anchors)
    target = val_fraction * sum(sizes.values())
    val: list[str] = []
    train: list[str] = []
    in_val = 0
    for anchor in anchors:
        size = sizes[anchor]
        if abs(in_val + size - target) < abs(in_val - target):
            val.append(anchor)
            in_val += size
        else:
            train.append(anchor)
    if len(anchors) >= 2 and val_fraction > 0 and not val:
        val.append(train.pop())
    if len(anchors) >= 2 and not train:
        train.append(val.pop())
    return train, val


def split_dataset(
    path: Path,
    out: Path,
    val_fraction: float = 0.2,
    seed: int = 0,
    *,
    format: str | None = None,
    from_splits: Sequence[str] | None = None,
) -> SplitResult:
    """Split a dataset into train and val by source photo, into a new YOLO dataset.

    Images are grouped by their Roboflow source name and by image similarity (mirrors too),
    as :func:`training.data.group_near_duplicates` does; a group goes to one side whole.

    Args:
        path: the dataset (any format :func:`training.dataset_check.scan_dataset` reads).
        out: a new or empty folder; gets ``train/`` and ``val/`` (``images/``, ``labels/``),
            ``dataset.yaml`` and ``manifest.json``.
        val_fraction: the share of images for val, 0..1.
        seed: the shuffle seed; the same seed and data give the same split.
        format: the input format; detected when None.
        from_splits: take only the images of these splits of the input (e.g. ``["train"]``,
            keeping its val as a held-out test set); all when None.

    Raises:
        InvalidDatasetError: the dataset has validation errors.
        DatasetToolError: ``val_fraction`` is out of range, no images are left to split, or
            ``out`` is not empty.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetToolError(f"val fraction {val_fraction} must be at least 0 and below 1")
    dataset = read_dataset_checked(path, format)
    images = [
        image
        for image in dataset.images
        if from_splits is None or any(split in from_splits for split in image.splits)
    ]
    if not images:
        wanted = f" in split {', '.join(from_splits)}" if from_splits else ""
        raise DatasetToolError(f"{path}: no images{wanted} to split")
    groups = group_near_duplicates([image.path for image in images])
    members: dict[str, list[ScannedImage]] = defaultdict(list)
    for image, group in zip(images, groups, strict=True):
        members[source_name(images[group].path)].append(image)
    train_groups, val_groups = assign_groups(
        {anchor: len(found) for anchor, found in members.items()}, val_fraction, seed
    )
    prepare_output(out)
    class_index = {name: i for i, name in enumerate(dataset.class_names)}
    carried = read_manifest_entries(dataset.source)
    used: set[str] = set()
    entries: list[dict[str, Any]] = []
    group_entries: list[dict[str, Any]] = []
    counts: dict[str, dict[str, int]] = {
        side: {"groups": 0, "images": 0, "objects": 0} for side in ("train", "val")
    }
    for side, anchors in (("train", train_groups), ("val", val_groups)):
        for anchor in sorted(anchors):
            group_files = []
            for image in members[anchor]:
                name = _unique_name(image.path.name, used)
                place_image(image.path, out / side / "images" / name)
                write_labels(
                    out / side / "labels" / f"{Path(name).stem}.txt",
                    [obj.yolo_line(class_index[obj.class_name]) for obj in image.objects],
                )
                entry = dict(carried.get(path_key(image.path), {}))
                entry.update(
                    {
                        "file": f"{side}/images/{name}",
                        "split": side,
                        "group": anchor,
                        "original": os.path.normpath(str(image.path)),
                    }
                )
                entries.append(entry)
                group_files.append(name)
                counts[side]["images"] += 1
                counts[side]["objects"] += len(image.objects)
            counts[side]["groups"] += 1
            group_entries.append({"group": anchor, "split": side, "images": group_files})
    dataset_yaml = write_dataset_yaml(
        out,
        dataset.class_names,
        {"train": "train/images", "val": "val/images"},
        f"Split by `trayscan dataset split` (seed {seed}, val {val_fraction:g}) by source "
        "photo:\ncopies of one photo are all in train or all in val.",
    )
    manifest = write_manifest(
        out,
        {
            "format": "trayscan-dataset-split/1",
            "created": _now(),
            "source": os.path.normpath(str(dataset.source)),
            "from_splits": list(from_splits) if from_splits else None,
            "seed": seed,
            "val_fraction": val_fraction,
            "class_names": dataset.class_names,
            "counts": counts,
            "groups": group_entries,
            "images": entries,
        },
    )
    logger.info(
        "split %s: %d/%d groups, %d/%d images (train/val)",
        path,
        counts["train"]["groups"],
        counts["val"]["groups"],
        counts["train"]["images"],
        counts["val"]["images"],
    )
    return SplitResult(
        out=out,
        dataset_yaml=dataset_yaml,
        manifest=manifest,
        groups={side: counts[side]["groups"] for side in counts},
        images={side: counts[side]["images"] for side in counts},
        objects={side: counts[side]["objects"] for side in counts},
    )
