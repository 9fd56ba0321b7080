"""Thumbnails of dishes for the cashier's picker: real photos of each dish, cropped square.

The model bundle's gallery keeps embeddings and the hashes of their source images, not the
images, so the pictures come from a labelled photo set of the same dishes (the sample of
``vn-canteen-trays`` shipped with the demo): every labelled box is cropped, and each dish keeps its
largest crop. A dish with no photo gets none, and the picker draws a tile with its name instead.
The tray on the scanner can always be cropped too (:func:`crop_square`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from terminal.core.menu import Menu
from vision.labels import LabelError, label_path_for, read_class_names, read_yolo_labels
from vision.sources import FrameSourceError, list_images, read_image

logger = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]

THUMBNAIL_PX = 128


def crop_square(
    image: Image, box_xyxy: tuple[float, float, float, float], size: int = THUMBNAIL_PX
) -> Image:
    """The square around ``box_xyxy`` (grown to a square, kept inside the image), resized to
    ``size`` pixels: what a dish looks like on a picker button."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box_xyxy
    side = max(x2 - x1, y2 - y1, 2.0)
    side = min(side, float(width), float(height))
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    left = round(min(max(cx - side / 2.0, 0.0), width - side))
    top = round(min(max(cy - side / 2.0, 0.0), height - side))
    side_px = max(round(side), 1)
    crop = image[top : top + side_px, left : left + side_px]
    resized = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(resized, dtype=np.uint8)


class ThumbnailIndex:
    """One photo per menu dish, found in labelled photo sets.

    Args:
        menu: maps the photo sets' class names to menu dishes (``dataset_class``).
        datasets: YOLO dataset YAMLs with an ``images/`` folder beside their ``labels/``.
        size: thumbnail side in pixels.
    """

    def __init__(self, menu: Menu, datasets: list[Path], size: int = THUMBNAIL_PX) -> None:
        self.menu = menu
        self.size = size
        self._thumbs: dict[str, Image] = {}
        self._areas: dict[str, float] = {}
        for dataset in datasets:
            self._add_dataset(dataset)
        logger.info("dish thumbnails: %d of %d dishes have a photo", len(self._thumbs), len(menu))

    def __contains__(self, dish_id: object) -> bool:
        return dish_id in self._thumbs

    def __len__(self) -> int:
        return len(self._thumbs)

    def get(self, dish_id: str) -> Image | None:
        """The thumbnail of ``dish_id`` (BGR, square), or None when no photo shows it."""
        return self._thumbs.get(dish_id)

    def add(self, dish_id: str, image: Image, box_xyxy: tuple[float, float, float, float]) -> None:
        """Use a crop of ``image`` for ``dish_id`` (a cashier's confirmed correction)."""
        self._thumbs[dish_id] = crop_square(image, box_xyxy, self.size)

    def _add_dataset(self, dataset: Path) -> None:
        try:
            names = read_class_names(dataset)
        except LabelError as exc:
            logger.warning("no thumbnails from %s: %s", dataset, exc)
            return
        by_class = self.menu.by_dataset_class()
        images_dir = dataset.parent / "images"
        if not images_dir.is_dir():
            return
        for image_path in list_images(images_dir):
            label_file = label_path_for(image_path)
            if not label_file.is_file():
                continue
            try:
                image = read_image(image_path)
                boxes = read_yolo_labels(label_file, image.shape[1], image.shape[0])
            except (LabelError, FrameSourceError, OSError, ValueError) as exc:
                logger.warning("no thumbnails from %s: %s", image_path, exc)
                continue
            for box in boxes:
                if not 0 <= box.class_id < len(names) or names[box.class_id] not in by_class:
                    continue
                dish_id = by_class[names[box.class_id]].id
                x1, y1, x2, y2 = box.box_xyxy
                area = (x2 - x1) * (y2 - y1)
                if area > self._areas.get(dish_id, 0.0):
                    self._areas[dish_id] = area
                    self._thumbs[dish_id] = crop_square(image, box.box_xyxy, self.size)
