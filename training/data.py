"""Preparing training data: grouping near-duplicate photos, splitting by source, writing YOLO sets.

The vn-canteen-trays export holds augmented copies and re-posted or burst photos under other
names, so a split by file name leaks. Photos are grouped by their Roboflow source name *and* by
image similarity (a small grey thumbnail, also mirrored, since flips are among the augmentations);
a group never straddles train and validation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from vision.labels import label_path_for, read_class_names, write_dataset_yaml
from vision.sources import list_images

logger = logging.getLogger(__name__)

_ROBOFLOW_SUFFIX = re.compile(r"(_(jpe?g|png|webp|bmp))?\.rf\.[0-9a-f]+$", re.IGNORECASE)


def source_name(image: Path) -> str:
    """The photo a Roboflow export file came from: ``IMG_1734_jpg.rf.6dd7.jpg`` -> ``IMG_1734``."""
    return _ROBOFLOW_SUFFIX.sub("", image.stem)


def thumbnail(image: Path, size: int = 24) -> np.ndarray:
    """A zero-mean, unit-norm grey thumbnail for near-duplicate search."""
    grey = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise ValueError(f"cannot decode {image}")
    small = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    small -= small.mean()
    norm = float(np.linalg.norm(small)) or 1.0
    return small / norm


def group_near_duplicates(images: Sequence[Path], threshold: float = 0.92) -> list[int]:
    """A group number per image: same source name, or a thumbnail correlation above
    ``threshold`` with the image or its mirror, puts two photos in one group."""
    parent = list(range(len(images)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    by_source: dict[str, int] = {}
    for i, image in enumerate(images):
        key = source_name(image)
        if key in by_source:
            union(i, by_source[key])
        else:
            by_source[key] = i
    thumbs = np.stack([thumbnail(p).ravel() for p in images])
    mirrored = np.stack([np.fliplr(t.reshape(24, 24)).ravel() for t in thumbs])
    similarity = np.maximum(thumbs @ thumbs.T, thumbs @ mirrored.T)
    for a, b in zip(*np.nonzero(np.triu(similarity, k=1) > threshold), strict=True):
        union(int(a), int(b))
    return [find(i) for i in range(len(images))]


@dataclass(frozen=True)
class Split:
    """Train and validation image lists, split by source group."""

    train: list[Path]
    val: list[Path]


def split_by_source(
    images: Sequence[Path], val_fraction: float = 0.15, seed: str = "trayscan"
) -> Split:
    """Split so that near-duplicates stay on one side; deterministic for a given ``seed``."""
    groups = group_near_duplicates(images)
    train: list[Path] = []
    val: list[Path] = []
    for image, group in zip(images, groups, strict=True):
        anchor = source_name(images[group])
        digest = hashlib.sha256(f"{seed}:{anchor}".encode()).digest()
        (val if digest[0] / 255.0 < val_fraction else train).append(image)
    logger.info(
        "split %d images in %d groups: %d train, %d val",
        len(images),
        len(set(groups)),
        len(train),
        len(val),
    )
    return Split(train, val)


def write_yolo_dataset(
    out: Path,
    split: Split,
    class_names: Sequence[str],
    *,
    class_agnostic: bool,
) -> Path:
    """Write a YOLO dataset folder (symlinked images, rewritten labels) and its dataset.yaml.

    Args:
        out: the folder to write; existing content of the same names is replaced.
        split: which images go where.
        class_names: the source dataset's class names.
        class_agnostic: write every object as class 0 "dish".

    Returns:
        The path of the dataset YAML.
    """
    for part, images in (("train", split.train), ("val", split.val)):
        image_dir = out / part / "images"
        label_dir = out / part / "labels"
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        for image in images:
            link = image_dir / image.name
            if link.is_symlink() or link.exists():
                link.unlink()
            os.symlink(image.resolve(), link)
            lines = []
            for line in label_path_for(image).read_text(encoding="utf-8").splitlines():
                fields = line.split()
                if not fields:
                    continue
                if class_agnostic:
                    fields[0] = "0"
                lines.append(" ".join(fields))
            (label_dir / f"{image.stem}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    names = ["dish"] if class_agnostic else list(class_names)
    dataset_yaml = write_dataset_yaml(out, names, train="train/images", val="val/images")
    (out / "split.json").write_text(
        json.dumps(
            {"train": [p.name for p in split.train], "val": [p.name for p in split.val]},
            indent=1,
        ),
        encoding="utf-8",
    )
    return dataset_yaml


def prepare_detector_dataset(
    source_yaml: Path, out: Path, *, val_fraction: float = 0.15, class_agnostic: bool = True
) -> Path:
    """Build the detector's training set from the ``train`` split of a YOLO dataset only.

    The source's own validation split is never used here: it is the test set.
    """
    data = yaml.safe_load(source_yaml.read_text(encoding="utf-8"))
    root = (source_yaml.parent / data.get("path", ".")).resolve()
    train_dir = root / data["train"]
    images = list_images(train_dir)
    split = split_by_source(images, val_fraction)
    return write_yolo_dataset(
        out, split, read_class_names(source_yaml), class_agnostic=class_agnostic
    )


def iter_images(folders: Iterable[Path]) -> Iterable[Path]:
    for folder in folders:
        yield from list_images(folder)
