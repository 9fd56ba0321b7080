"""Running a bundle over a labelled dataset and scoring it (``trayscan eval``).

Dataset classes map to the bundle's dishes by the ``dataset_class`` of classes.json, or by the
class name's slug (how ``gallery add`` names new dishes). With ``few_shot`` the dataset is used as
a *new menu*: its gallery is replaced by ``few_shot`` boxes per class, and only the images that gave
no reference are scored.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vision.bundle import ModelBundle, verify_bundle
from vision.datasets import LabelledDataset, LabelledImage, read_dataset
from vision.evaluation import (
    TrayPrediction,
    TrayTruth,
    average_precision_50,
    evaluate,
    match_boxes,
)
from vision.identifier import Embedder
from vision.recogniser import BundleRecogniser
from vision.references import (
    add_references,
    class_to_dish_from_bundle,
    dish_id_for,
    references_from_dataset,
)
from vision.sources import read_image

logger = logging.getLogger(__name__)


def evaluate_bundle(
    bundle_path: Path,
    dataset_path: Path,
    *,
    format: str | None = None,
    split: str | None = None,
    few_shot: int | None = None,
    seed: int = 0,
    threads: int = 2,
    limit: int | None = None,
) -> dict[str, Any]:
    """Score ``bundle_path`` on a labelled dataset; returns the JSON-ready metrics."""
    dataset = read_dataset(dataset_path, format, split)
    bundle = verify_bundle(bundle_path)
    original_version = bundle.version
    with tempfile.TemporaryDirectory(prefix="trayscan-eval-") as tmp:
        used: set[str] = set()
        if few_shot is not None:
            copy = Path(tmp) / "bundle"
            shutil.copytree(bundle_path, copy)
            bundle = ModelBundle(copy, bundle.manifest, bundle.dishes)
            spec = bundle.manifest.identifier
            embedder = Embedder(
                bundle.path_of(spec.file),
                input_size=spec.input_size,
                mean=spec.mean,
                std=spec.std,
                threads=threads,
            )
            references = references_from_dataset(
                dataset, embedder, max_per_class=few_shot, seed=seed
            )
            add_references(bundle, references, replace=True)
            used = references.used_images
            bundle = verify_bundle(copy)
        recogniser = BundleRecogniser(bundle, threads=threads)
        mapping = class_to_dish_from_bundle(recogniser.bundle.dishes)
        images = [img for img in dataset.images if str(img.path) not in used]
        if limit is not None:
            images = images[:limit]
        result = score(
            recogniser,
            LabelledDataset(dataset.name, images, dataset.class_names, dataset.format),
            mapping,
        )
    result["bundle"] = original_version
    result["dataset"] = str(dataset_path)
    if few_shot is not None:
        result["few_shot"] = few_shot
        result["reference_images"] = len(used)
    return result


def score(
    recogniser: BundleRecogniser,
    dataset: LabelledDataset,
    class_to_dish: dict[str, str],
    *,
    map_conf: float | None = 0.01,
) -> dict[str, Any]:
    """Run the recogniser over every image and compute the metrics.

    ``detector_map50`` ranks every box the detector scores above ``map_conf`` (the usual way to
    measure a detector); ``detector_map50_at_conf`` only the boxes the terminal really uses.
    ``detector_recall_ceiling`` is the share of labelled dishes that some box above ``map_conf``
    finds: no choice of thresholds can find more, only a better detector.
    ``map_conf=None`` skips that second detector pass and reports only the latter.
    """
    predictions, truths, all_boxes = [], [], []
    for labelled in dataset.images:
        prediction, truth, image = recognise_labelled(recogniser, labelled, class_to_dish)
        predictions.append(prediction)
        truths.append(truth)
        if map_conf is not None:
            all_boxes.append(_all_detections(recogniser, image, map_conf))
    result = evaluate(predictions, truths)
    result["detector_map50_at_conf"] = result["detector_map50"]
    if map_conf is not None:
        result["detector_map50"] = round(average_precision_50(all_boxes, truths), 4)
        found = sum(
            len(match_boxes(boxes.boxes_xyxy, boxes.scores, truth.boxes_xyxy))
            for boxes, truth in zip(all_boxes, truths, strict=True)
        )
        n_true = sum(len(truth) for truth in truths)
        result["detector_recall_ceiling"] = round(found / n_true, 4) if n_true else 0.0
    return result


def recognise_labelled(
    recogniser: BundleRecogniser, labelled: LabelledImage, class_to_dish: dict[str, str]
) -> tuple[TrayPrediction, TrayTruth, npt.NDArray[np.uint8]]:
    """Recognise one labelled photo, timed; returns the prediction, the truth and the image."""
    image = read_image(labelled.path)
    started = time.perf_counter()
    recognition = recogniser.recognise_image(image)
    elapsed = (time.perf_counter() - started) * 1000.0
    dishes = recognition.tray.dishes
    prediction = TrayPrediction(
        boxes_xyxy=np.array([d.box_xyxy for d in dishes], np.float64).reshape(-1, 4),
        scores=np.asarray(recognition.detections.scores, np.float64),
        dish_ids=[d.dish_id if d.status.value != "unknown" else None for d in dishes],
        statuses=[d.status.value for d in dishes],
        elapsed_ms=elapsed,
    )
    truth = TrayTruth(
        boxes_xyxy=np.array([o.box_xyxy for o in labelled.objects], np.float64).reshape(-1, 4),
        dish_ids=[
            class_to_dish.get(o.class_name) or dish_id_for(o.class_name) for o in labelled.objects
        ],
    )
    return prediction, truth, image


def _all_detections(
    recogniser: BundleRecogniser, image: npt.NDArray[np.uint8], conf: float
) -> TrayPrediction:
    detector = recogniser.detector
    operating = (detector.conf, detector.max_det)
    detector.conf, detector.max_det = conf, 100
    try:
        detections = detector.detect(image)
    finally:
        detector.conf, detector.max_det = operating
    n = len(detections)
    return TrayPrediction(
        boxes_xyxy=detections.boxes_xyxy.astype(np.float64),
        scores=detections.scores.astype(np.float64),
        dish_ids=[None] * n,
        statuses=["unknown"] * n,
    )
