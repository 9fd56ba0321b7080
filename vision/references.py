"""Growing a bundle's gallery without retraining: references from datasets, photos or the cashier.

A new dish needs a few photos, not a training run: each photo's dish region is embedded and stored
as a reference of that dish. Dataset classes that are not in the bundle become new dishes. Every
change writes a new gallery, bumps the bundle's version and re-hashes its manifest, so a terminal
can tell the new bundle from the old and verify it before use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vision.bundle import ModelBundle, bump_version, verify_bundle, write_manifest
from vision.datasets import LabelledDataset
from vision.detector import Detector
from vision.gallery import Gallery
from vision.identifier import Embedder, crop_box
from vision.sources import FrameSourceError, list_images, read_image

logger = logging.getLogger(__name__)


def dish_id_for(class_name: str) -> str:
    """The menu id a dataset class name maps to: lower case, runs of other characters -> ``_``."""
    slug = re.sub(r"[^0-9a-z]+", "_", class_name.strip().lower()).strip("_")
    return slug or "dish"


def reference_hash(image: bytes, box: Sequence[float]) -> str:
    """Provenance of a reference: the image (file or pixel bytes) and the box, hashed."""
    digest = hashlib.sha256(image)
    digest.update(",".join(f"{v:.1f}" for v in box).encode())
    return digest.hexdigest()


@dataclass
class References:
    """Embeddings to add, grouped by dish, with their provenance."""

    embeddings: dict[str, list[npt.NDArray[np.float32]]] = field(default_factory=dict)
    hashes: dict[str, list[str]] = field(default_factory=dict)
    used_images: set[str] = field(default_factory=set)

    def add(self, dish_id: str, embedding: npt.NDArray[np.float32], source_hash: str) -> None:
        self.embeddings.setdefault(dish_id, []).append(embedding)
        self.hashes.setdefault(dish_id, []).append(source_hash)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.embeddings.values())


def references_from_dataset(
    dataset: LabelledDataset,
    embedder: Embedder,
    *,
    class_to_dish: Mapping[str, str] | None = None,
    max_per_class: int | None = None,
    seed: int = 0,
) -> References:
    """Embed the labelled boxes of a dataset as references.

    Args:
        dataset: the labelled images.
        embedder: the bundle's identifier embedder.
        class_to_dish: dataset class name -> dish id; other classes use :func:`dish_id_for`.
        max_per_class: take at most this many boxes per class, from as many different photos as
            possible, chosen with ``seed`` (the few-shot case).
        seed: the choice's seed.
    """
    mapping = dict(class_to_dish or {})
    chosen: list[tuple[Path, int]] = []
    if max_per_class is None:
        chosen = [(img.path, i) for img in dataset.images for i in range(len(img.objects))]
    else:
        rng = random.Random(seed)
        by_class: dict[str, list[tuple[Path, int]]] = {}
        for img in dataset.images:
            for i, obj in enumerate(img.objects):
                by_class.setdefault(obj.class_name, []).append((img.path, i))
        for members in by_class.values():
            rng.shuffle(members)
            # Prefer one box per photo, so five references show five different plates.
            photos: set[Path] = set()
            picked: list[tuple[Path, int]] = []
            for member in members:
                if len(picked) < max_per_class and member[0] not in photos:
                    picked.append(member)
                    photos.add(member[0])
            for member in members:
                if len(picked) < max_per_class and member not in picked:
                    picked.append(member)
            chosen.extend(picked)
    wanted: dict[Path, list[int]] = {}
    for path, index in chosen:
        wanted.setdefault(path, []).append(index)
    references = References()
    by_path = {img.path: img for img in dataset.images}
    for path, indexes in wanted.items():
        try:
            image = read_image(path)
        except FrameSourceError:
            logger.warning("skipping unreadable image %s", path)
            continue
        objects = [by_path[path].objects[i] for i in indexes]
        crops = [crop_box(image, obj.box_xyxy) for obj in objects]
        embeddings = embedder.embed(crops)
        data = path.read_bytes()
        for obj, embedding in zip(objects, embeddings, strict=True):
            dish = mapping.get(obj.class_name) or dish_id_for(obj.class_name)
            references.add(dish, embedding, reference_hash(data, obj.box_xyxy))
        references.used_images.add(str(path))
    return references


def references_from_photos(
    photos: Path, dish_id: str, detector: Detector, embedder: Embedder
) -> References:
    """One reference per single-dish photo in a folder; the detector picks the dish region.

    The most confident detection is taken as the dish; a photo where nothing is detected is used
    whole (a close-up of the dish fills the frame).
    """
    references = References()
    for path in list_images(photos):
        try:
            image = read_image(path)
        except FrameSourceError:
            logger.warning("skipping unreadable photo %s", path)
            continue
        detections = detector.detect(image)
        if len(detections):
            box = tuple(float(v) for v in detections.boxes_xyxy[int(np.argmax(detections.scores))])
        else:
            box = (0.0, 0.0, float(image.shape[1]), float(image.shape[0]))
        embedding = embedder.embed([crop_box(image, box)])[0]
        references.add(dish_id, embedding, reference_hash(path.read_bytes(), box))
        references.used_images.add(str(path))
    if not references.count:
        raise ValueError(f"no readable photos in {photos}")
    return references


@dataclass(frozen=True)
class GalleryUpdate:
    """What adding references changed."""

    version: str
    added: dict[str, int]
    new_dishes: list[str]


def add_references(
    bundle: ModelBundle,
    references: References,
    *,
    names: Mapping[str, tuple[str, str]] | None = None,
    origin: str = "dataset",
    replace: bool = False,
    version: str | None = None,
) -> GalleryUpdate:
    """Add references to a bundle folder's gallery, in place, as a new bundle version.

    Args:
        bundle: the verified bundle to change.
        references: what to add.
        names: dish id -> (Chinese name, English name) for dishes new to the bundle.
        origin: "dataset", "photos" or "cashier".
        replace: start from an empty gallery (a new menu) instead of adding to it.
        version: the new version (default: the current one bumped).
    """
    manifest = bundle.manifest
    gallery_path = bundle.path_of(manifest.gallery.file)
    gallery = Gallery(manifest.identifier.embedding_dim) if replace else Gallery.load(gallery_path)
    added: dict[str, int] = {}
    for dish, embeddings in references.embeddings.items():
        added[dish] = gallery.add(
            dish, np.stack(embeddings), references.hashes[dish], origin=origin
        )
    classes_path = bundle.path_of(manifest.classes_file)
    classes: dict[str, Any] = json.loads(classes_path.read_text(encoding="utf-8"))
    known = {d["id"] for d in classes["dishes"]}
    new_dishes = sorted(set(references.embeddings) - known)
    for dish in new_dishes:
        zh, en = (names or {}).get(dish, (dish, dish.replace("_", " ").title()))
        classes["dishes"].append({"id": dish, "name_zh": zh, "name_en": en})
    gallery.save(gallery_path)
    _write_json(classes_path, classes)
    fields = manifest.to_dict()
    fields.pop("files", None)
    fields.pop("created", None)
    fields["version"] = version or bump_version(manifest.version)
    write_manifest(bundle.path, fields)
    verify_bundle(bundle.path)
    logger.info(
        "bundle %s: added %d references (%d new dishes)",
        fields["version"],
        sum(added.values()),
        len(new_dishes),
    )
    return GalleryUpdate(str(fields["version"]), added, new_dishes)


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(path)


def class_to_dish_from_bundle(dishes: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Dataset class name -> dish id, from the ``dataset_class`` entries of classes.json."""
    return {str(d["dataset_class"]): str(d["id"]) for d in dishes if d.get("dataset_class")}
