"""The recipe of the shipped default bundle: one command remakes ``assets/models/default``.

1. Split vn-canteen-trays' ``train/`` by source photo (near-duplicates grouped); ``valid/`` is
   never touched: it holds the strict test set.
2. Train the class-agnostic MobileNetV2-YOLO11n detector (``training/detector.py``).
3. Fine-tune the identifier's MobileNetV2 on the dish crops of the training split
   (``training/identifier.py``), checking a held-out cuisine (in-thali-plates) 5-shot.
4. Measure score distributions (held-out split crops vs. the other cuisine's crops) and choose
   the unknown/unsure thresholds (``training/bundle.py``).
5. Build the bundle with a gallery of every crop of ``train/``, write the model card, verify it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from terminal.menu_file import load_menu
from training.bundle import (
    append_to_card,
    build_bundle,
    choose_thresholds,
    model_card,
    study_scores,
)
from training.data import prepare_detector_dataset
from training.identifier import yolo_crops
from vision.bundle import verify_bundle, write_manifest
from vision.datasets import LabelledDataset, read_dataset
from vision.eval_runner import evaluate_bundle, score
from vision.gallery import Gallery
from vision.identifier import Embedder
from vision.labels import read_class_names
from vision.recogniser import BundleRecogniser
from vision.references import class_to_dish_from_bundle
from vision.sources import list_images

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecipePaths:
    """Where the recipe reads and writes."""

    home: Path
    shared: Path
    runs: Path

    @property
    def vn(self) -> Path:
        return self.shared / "datasets" / "vn-canteen-trays"

    @property
    def thali(self) -> Path:
        return self.shared / "datasets" / "in-thali-plates"


def thali_class_names(thali: Path) -> list[str]:
    names = yaml.safe_load((thali / "dataset.original.yaml").read_text(encoding="utf-8"))["names"]
    return [str(names[k]) for k in sorted(names)]


def make_default_bundle(
    paths: RecipePaths,
    out: Path,
    *,
    version: str,
    detector_hours: float = 1.1,
    detector_imgsz: int = 384,
    identifier_epochs: int = 16,
    device: str = "cpu",
    reuse: bool = False,
    detector_run: str | None = None,
    command: str = "",
) -> dict[str, Any]:
    """Run the whole recipe; with ``reuse``, finished runs under ``paths.runs`` are kept."""
    from training.detector import export_detector, read_best_metrics, train_detector
    from training.identifier import train_identifier

    data_yaml = paths.runs / "data" / "vn-dish" / "dataset.yaml"
    if not (reuse and data_yaml.exists()):
        data_yaml = prepare_detector_dataset(
            paths.vn / "dataset.yaml", paths.runs / "data" / "vn-dish"
        )
    split = json.loads((data_yaml.parent / "split.json").read_text(encoding="utf-8"))

    run_name = detector_run or f"dish-mnv2-{detector_imgsz}"
    detector_onnx = paths.runs / "train" / run_name / "weights" / "detector.onnx"
    best = detector_onnx.with_name("best.pt")
    if not (reuse and best.exists()):
        train_detector(
            data_yaml,
            paths.runs / "train",
            home=paths.home,
            imgsz=detector_imgsz,
            hours=detector_hours,
            name=run_name,
            device=device,
            export=False,
        )
    if not (reuse and detector_onnx.exists()):
        detector_onnx = export_detector(best, imgsz=detector_imgsz, home=paths.home)
    detector_metrics = read_best_metrics(best.parent.parent)

    names = read_class_names(paths.vn / "dataset.yaml")
    train_images = [paths.vn / "train" / "images" / n for n in split["train"]]
    val_images = [paths.vn / "train" / "images" / n for n in split["val"]]
    train_crops = yolo_crops(train_images, names)
    val_crops = yolo_crops(val_images, names)
    thali_crops = yolo_crops(list_images(paths.thali / "images"), thali_class_names(paths.thali))

    identifier_dir = paths.runs / "identifier"
    identifier_onnx = identifier_dir / "identifier.onnx"
    report_file = identifier_dir / "identifier-report.json"
    if not (reuse and identifier_onnx.exists() and report_file.exists()):
        train_identifier(
            train_crops,
            val_crops,
            identifier_dir,
            home=paths.home,
            epochs=identifier_epochs,
            held_out=thali_crops,
        )
    identifier_report = json.loads(report_file.read_text(encoding="utf-8"))

    # Thresholds: a gallery of the training split, queried by the held-out split (known dishes)
    # and by the other cuisine (dishes the gallery does not hold).
    embedder = Embedder(identifier_onnx, input_size=224)
    menu = load_menu(paths.home / "assets" / "menu" / "demo-menu.yaml")
    by_class = menu.by_dataset_class()
    gallery = Gallery(embedder.dim)
    train_emb = embedder.embed([c.image for c in train_crops])
    for crop, embedding in zip(train_crops, train_emb, strict=True):
        gallery.add(by_class[crop.class_name].id, embedding[None, :], [f"{crop.source}:{id(crop)}"])
    val_emb = embedder.embed([c.image for c in val_crops])
    foreign = embedder.embed([c.image for c in thali_crops])
    study = study_scores(gallery, val_emb, [by_class[c.class_name].id for c in val_crops], foreign)
    unknown_below, unsure_margin, threshold_figures = choose_thresholds(study)
    logger.info(
        "thresholds: unknown below %.3f, unsure margin %.3f: %s",
        unknown_below,
        unsure_margin,
        threshold_figures,
    )

    references = read_dataset(paths.vn / "dataset.yaml", "yolo", "train")
    card = model_card(
        version=version,
        data=(
            "vn-canteen-trays (Roboflow an-com v11, MIT; 41 dishes): the 525 photos of `train/`, "
            f"split by source photo into {len(split['train'])} training and {len(split['val'])} "
            "held-out photos (near-duplicates grouped). `valid/` was never used for training or "
            "tuning. The gallery holds up to 16 references per dish, chosen for variety from every "
            "labelled dish of `train/`. Thresholds were chosen on "
            "the held-out photos against in-thali-plates crops as dishes not on the menu."
        ),
        detector={
            "architecture": "ImageNet MobileNetV2 backbone + YOLO11n neck/head, 1 class",
            "imgsz": detector_imgsz,
            "run": run_name,
            "run_args": _run_args(best.parent.parent),
            "device": device,
            "best_epoch_metrics_on_held_out_split": detector_metrics,
        },
        identifier={
            "architecture": "ImageNet MobileNetV2, fine-tuned with a cosine classifier; "
            "1280-d pooled embedding",
            **identifier_report,
        },
        thresholds={
            "unknown_below": unknown_below,
            "unsure_margin": unsure_margin,
            "measured": threshold_figures,
            "known_best_quantiles": _quantiles(study.known_best),
            "foreign_best_quantiles": _quantiles(study.foreign_best),
        },
        command=command,
    )
    bundle = build_bundle(
        out,
        version=version,
        detector_onnx=detector_onnx,
        detector_imgsz=detector_imgsz,
        identifier_onnx=identifier_onnx,
        menu=menu,
        references=references,
        unknown_below=unknown_below,
        unsure_margin=unsure_margin,
        card=card,
    )
    val_names = set(split["val"])
    everything = read_dataset(paths.vn / "dataset.yaml", "yolo", "train")
    held_out = LabelledDataset(
        "vn-canteen-trays train, held-out split",
        [img for img in everything.images if img.path.name in val_names],
        everything.class_names,
        everything.format,
    )
    postprocessing = tune_postprocessing(bundle.path, held_out)
    fields = bundle.manifest.to_dict()
    fields.pop("files", None)
    fields["detector"].update(postprocessing["best"])
    card_path = bundle.path / bundle.manifest.model_card
    card_path.write_text(
        card_path.read_text(encoding="utf-8")
        + "\n## Detector post-processing (tuned on the held-out split by tray_exact)\n```json\n"
        + json.dumps(postprocessing, indent=1)
        + "\n```\n",
        encoding="utf-8",
    )
    write_manifest(bundle.path, fields)
    bundle = verify_bundle(bundle.path)
    # Scored once, at the end, on data never used for training or tuning.
    strict = evaluate_bundle(bundle.path, paths.vn / "test-strict.yaml")
    append_to_card(bundle.path, "Evaluation: vn-canteen-trays test-strict (284 photos)", strict)
    thali = evaluate_bundle(bundle.path, paths.thali / "dataset.original.yaml", few_shot=5)
    append_to_card(
        bundle.path, "Evaluation: in-thali-plates as a new menu, 5 references per class", thali
    )
    bundle = verify_bundle(bundle.path)
    return {
        "bundle": str(bundle.path),
        "version": bundle.version,
        "thresholds": [unknown_below, unsure_margin],
        "threshold_figures": threshold_figures,
        "postprocessing": postprocessing["best"],
    }


def tune_postprocessing(bundle: Path, held_out: LabelledDataset) -> dict[str, Any]:
    """Choose the detector's confidence and containment thresholds by tray_exact on held-out
    photos of the training data (never on the test set)."""
    recogniser = BundleRecogniser.from_path(bundle)
    mapping = class_to_dish_from_bundle(recogniser.bundle.dishes)
    trials = []
    for conf in (0.2, 0.25, 0.3, 0.35, 0.45):
        for containment in (0.7, 0.85, 1.0):
            recogniser.detector.conf = conf
            recogniser.detector.containment = containment
            scores = score(recogniser, held_out, mapping, map_conf=None)
            trials.append(
                {
                    "conf": conf,
                    "containment": containment,
                    "tray_exact": scores["tray_exact"],
                    "dish_recall": scores["dish_recall"],
                    "dish_precision": scores["dish_precision"],
                }
            )
            logger.info("post-processing %s", trials[-1])
    best = max(trials, key=lambda t: (t["tray_exact"], t["dish_precision"] + t["dish_recall"]))
    return {"best": {"conf": best["conf"], "containment": best["containment"]}, "trials": trials}


def _run_args(run_dir: Path) -> dict[str, Any]:
    """The ultralytics settings a detector run was trained with (its args.yaml), in short."""
    args_file = run_dir / "args.yaml"
    if not args_file.exists():
        return {}
    args = yaml.safe_load(args_file.read_text(encoding="utf-8")) or {}
    keep = ("model", "epochs", "time", "imgsz", "batch", "optimizer", "lr0", "pretrained")
    return {k: args[k] for k in keep if k in args}


def _quantiles(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {}
    return {f"p{q}": round(float(np.percentile(values, q)), 3) for q in (5, 25, 50, 75, 95)}
