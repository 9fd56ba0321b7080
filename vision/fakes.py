"""Fakes of the vision parts, for the demo and the unit tests.

:class:`GroundTruthRecogniser` is a **stand-in**: it does not look at the image at all, it reads
the labels that ship beside the replayed photos. It lets the checkout run end to end before the
real recogniser (detector + gallery identifier on ONNX Runtime) exists, and the recogniser issue
replaces it in the demo.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

from vision.labels import label_path_for, read_yolo_labels
from vision.types import Candidate, DishRecognition, DishStatus, Frame, TrayRecognition

logger = logging.getLogger(__name__)


class GroundTruthRecogniser:
    """Stand-in recogniser that answers from the YOLO label file of the replayed photo.

    Args:
        class_to_dish: dataset class id -> menu item id. A class missing here comes out as an
            unknown dish, as a real recogniser would report a dish it cannot name.
    """

    model_version = "ground-truth-labels (stand-in, not a model)"

    def __init__(self, class_to_dish: Mapping[int, str]) -> None:
        self.class_to_dish = dict(class_to_dish)

    def recognise(self, frame: Frame) -> TrayRecognition:
        started = time.perf_counter()
        if not frame.source:
            raise ValueError("the ground-truth stand-in needs frames replayed from labelled photos")
        label_file = label_path_for(Path(frame.source))
        if not label_file.is_file():
            raise FileNotFoundError(f"no label file {label_file} for {frame.source}")
        dishes = []
        for box in read_yolo_labels(label_file, frame.width, frame.height):
            dish_id = self.class_to_dish.get(box.class_id)
            if dish_id is None:
                dishes.append(DishRecognition(box.box_xyxy, DishStatus.UNKNOWN, None, 0.0))
            else:
                dishes.append(
                    DishRecognition(
                        box.box_xyxy, DishStatus.SURE, dish_id, 1.0, (Candidate(dish_id, 1.0),)
                    )
                )
        return TrayRecognition(
            dishes=tuple(dishes),
            model_version=self.model_version,
            elapsed_ms=(time.perf_counter() - started) * 1000.0,
            image_size=(frame.width, frame.height),
        )
