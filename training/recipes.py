"""The recipe of the shipped default bundle: one command remakes ``assets/models/default``.

1. Split vn-canteen-trays' ``train/`` by source photo (near-duplicates grouped); ``valid/`` is
   never touched: it holds the strict test set.
2. Train the class-agnostic MobileNetV2-YOLO11n detector (``training/detector.py``).
3. Fine-tune the identifier's MobileNetV2 on the dish crops of the training split
   (``training/identifier.py``), checking a held-out cuisine (in-thali-plates) 5-shot.
4. Measure score distributions (held-out split crops vs. the other cuisine's crops) and choose
   the unknown/unsure thresholds (``training/bundle.py``).
5. Build the bundle with a gallery of every crop of ``train/``, write the model card, verify it.
6. With ``final_fit``: train both models once more the same way on every photo of ``train/``
   (held-out ones included) and ship those, with the thresholds and post-processing chosen in
   steps 4-5. Nothing is left to measure them on without touching the test set, so the card
   keeps the held-out figures of the first models and says so.
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
from training.detector import final_fit_yaml, read_best_metrics, repeat_run_settings
from training.identifier import yolo_crops
from vision.bundle import ModelBundle, verify_bundle, write_manifest
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
    identifier_run: str = "identifier",
    final_fit: bool = False,
    command: str = "",
) -> dict[str, Any]:
    """Run the whole recipe; with ``reuse``, finished runs under ``paths.runs`` are kept.

    ``detector_run`` and ``identifier_run`` name the runs under ``paths.runs`` (``train/NAME``
    and ``NAME``) to train or reuse, for instance runs made on a lent GPU
    (:mod:`training.lent_gpu`); their final fits are ``NAME-final``.

    With ``final_fit`` the models chosen on the held-out split are trained once more on every
    photo of ``train/`` (:func:`final_fit_models`), and those are what ``out`` ships.
    """
    data_yaml = paths.runs / "data" / "vn-dish" / "dataset.yaml"
    if not (reuse and data_yaml.exists()):
        data_yaml = prepare_detector_dataset(
            paths.vn / "dataset.yaml", paths.runs / "data" / "vn-dish"
        )
    split = json.loads((data_yaml.parent / "split.json").read_text(encoding="utf-8"))

    run_name = detector_run or f"dish-mnv2-{detector_imgsz}"
    best = paths.runs / "train" / run_name / "weights" / "best.pt"
    detector_onnx = _trained_detector(
        paths,
        best,
        reuse=reuse,
        data=data_yaml,
        imgsz=detector_imgsz,
        hours=detector_hours,
        device=device,
    )
    detector_metrics = read_best_metrics(best.parent.parent)
    detector_args = _run_args(best.parent.parent)

    names = read_class_names(paths.vn / "dataset.yaml")
    train_images = [paths.vn / "train" / "images" / n for n in split["train"]]
    val_images = [paths.vn / "train" / "images" / n for n in split["val"]]
    train_crops = yolo_crops(train_images, names)
    val_crops = yolo_crops(val_images, names)
    thali_crops = yolo_crops(list_images(paths.thali / "images"), thali_class_names(paths.thali))

    identifier_onnx, identifier_report = _trained_identifier(
        paths.runs / identifier_run,
        train_crops,
        val_crops,
        paths=paths,
        epochs=identifier_epochs,
        foreign=thali_crops,
        reuse=reuse,
        device=device,
    )

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
    n_photos = len(split["train"]) + len(split["val"])
    data_text = (
        f"vn-canteen-trays (Roboflow an-com v11, MIT; 41 dishes): the {n_photos} photos of "
        f"`train/`, split by source photo into {len(split['train'])} training and "
        f"{len(split['val'])} held-out photos (near-duplicates grouped). `valid/` was never used "
        "for training or tuning. The gallery holds up to 16 references per dish, chosen for "
        "variety from every labelled dish of `train/`. Thresholds were chosen on "
        "the held-out photos against in-thali-plates crops as dishes not on the menu."
    )
    card_fields: dict[str, Any] = dict(
        version=version,
        data=data_text,
        detector={
            "architecture": "ImageNet MobileNetV2 backbone + YOLO11n neck/head, 1 class",
            "imgsz": detector_imgsz,
            "run": run_name,
            "run_args": detector_args,
            "device": str(detector_args.get("device", device)),
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

    def assemble(folder: Path, detector: Path, identifier: Path) -> ModelBundle:
        return build_bundle(
            folder,
            version=version,
            detector_onnx=detector,
            detector_imgsz=detector_imgsz,
            identifier_onnx=identifier,
            menu=menu,
            references=references,
            unknown_below=unknown_below,
            unsure_margin=unsure_margin,
            card=model_card(**card_fields),
        )

    bundle = assemble(
        paths.runs / "bundle-selection" if final_fit else out, detector_onnx, identifier_onnx
    )
    val_names = set(split["val"])
    held_out = LabelledDataset(
        "vn-canteen-trays train, held-out split",
        [img for img in references.images if img.path.name in val_names],
        references.class_names,
        references.format,
    )
    postprocessing = tune_postprocessing(bundle.path, held_out)
    if final_fit:
        final = final_fit_models(
            paths,
            detector_run=best.parent.parent,
            data_yaml=data_yaml,
            crops=train_crops + val_crops,
            foreign=thali_crops,
            identifier_epochs=identifier_epochs,
            identifier_run=f"{identifier_run}-final",
            chosen_identifier=identifier_onnx,
            chosen_identifier_report=identifier_report,
            device=device,
            reuse=reuse,
        )
        retrained = "detector and identifier" if final["identifier_kept"] else "detector"
        card_fields["data"] = data_text + (
            " The detector and identifier chosen that way were then trained once more, with "
            f"the same settings, on all {n_photos} photos of `train/` (the held-out ones "
            f"included). The retrained {retrained} ships, with the thresholds and "
            "post-processing chosen on the held-out photos (see `final_fit` for why the "
            "identifier was or was not replaced). The held-out figures below are those of the "
            "first models: nothing is left to measure the retrained ones on but the test set."
        )
        card_fields["detector"] = {**card_fields["detector"], "final_fit": final["detector"]}
        card_fields["identifier"] = {
            **card_fields["identifier"],
            "final_fit": final["identifier"],
        }
        bundle = assemble(out, final["detector_onnx"], final["identifier_onnx"])
        # The other cuisine was never trained on, so how much of it the kept threshold turns
        # away from the shipped gallery can still be measured honestly.
        shipped = Embedder(bundle.path / "identifier.onnx", input_size=224)
        foreign_best = Gallery.load(bundle.path / "gallery.npz").match(
            shipped.embed([c.image for c in thali_crops]), k=1
        )
        rejected = float(np.mean([m[0].score < unknown_below for m in foreign_best]))
        bundle = append_to_card(
            bundle.path,
            "Thresholds against the shipped gallery",
            {"foreign_rejected_as_unknown": round(rejected, 4)},
        )
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
        "final_fit": final_fit,
    }


def final_fit_models(
    paths: RecipePaths,
    *,
    detector_run: Path,
    data_yaml: Path,
    crops: list[Any],
    foreign: list[Any],
    identifier_epochs: int,
    chosen_identifier: Path,
    identifier_run: str = "identifier-final",
    chosen_identifier_report: dict[str, Any],
    device: str,
    reuse: bool,
) -> dict[str, Any]:
    """Train the chosen detector run and the identifier once more on every photo of the data
    set (the held-out split included), for as many epochs as the chosen runs had; the last
    epoch's weights are kept, since there is nothing held out left to choose an epoch by.
    The new identifier replaces the chosen one only if :func:`keep_final_identifier` says so."""
    start, epochs, settings = repeat_run_settings(detector_run)
    # Runs are started from the project home; the card keeps the path as the run wrote it.
    start_weights = start if start.is_absolute() else paths.home / start
    final_yaml = final_fit_yaml(data_yaml)
    name = f"{detector_run.name}-final"
    # Validation would score photos it trains on; ultralytics still scores the last epoch.
    detector_onnx = _trained_detector(
        paths,
        paths.runs / "train" / name / "weights" / "last.pt",
        reuse=reuse,
        data=final_yaml,
        imgsz=int(settings.pop("imgsz")),
        batch=int(settings.pop("batch")),
        epochs=epochs,
        model_yaml=start_weights,
        device=device,
        overrides={**settings, "val": False},
    )
    # What the final run really ran (a run made side by side on a lent GPU, with a time budget
    # of its own, can differ from the chosen run's epochs).
    ran = int(read_best_metrics(paths.runs / "train" / name).get("epochs_run", epochs))
    identifier_onnx, report = _trained_identifier(
        paths.runs / identifier_run,
        crops,
        [],
        paths=paths,
        epochs=identifier_epochs,
        foreign=foreign,
        reuse=reuse,
        device=device,
    )
    keep, why = keep_final_identifier(chosen_identifier_report, report)
    logger.info("final identifier %s: %s", "kept" if keep else "not kept", why)
    return {
        "detector_onnx": detector_onnx,
        "identifier_onnx": identifier_onnx if keep else chosen_identifier,
        "identifier_kept": keep,
        "detector": {
            "run": name,
            "started_from": str(start),
            "epochs": ran,
            "epochs_of_chosen_run": epochs,
            "weights": "last.pt",
            "photos": "train/ and held-out",
        },
        "identifier": {
            **{k: report[k] for k in ("n_train", "epochs", "fine_tuned", "train_seconds")},
            "shipped": keep,
            "why": why,
        },
    }


def _trained_detector(paths: RecipePaths, weights: Path, *, reuse: bool, **train: Any) -> Path:
    """The ONNX export of a detector run's ``weights`` (``.../RUN/weights/best.pt`` or
    ``last.pt``), training the run first unless ``reuse`` finds it done."""
    from training.detector import export_detector, train_detector

    run_dir = weights.parent.parent
    if not (reuse and weights.exists()):
        train_detector(
            out=run_dir.parent, home=paths.home, name=run_dir.name, export=False, **train
        )
    onnx = weights.with_name("detector.onnx")
    if not (reuse and onnx.exists()):
        onnx = export_detector(weights, imgsz=train["imgsz"], home=paths.home)
    return onnx


def _trained_identifier(
    out: Path,
    train: list[Any],
    val: list[Any],
    *,
    paths: RecipePaths,
    epochs: int,
    foreign: list[Any],
    reuse: bool,
    device: str = "cpu",
) -> tuple[Path, dict[str, Any]]:
    """The identifier ONNX and report under ``out``, training it first unless ``reuse`` finds
    them there."""
    from training.identifier import train_identifier

    onnx = out / "identifier.onnx"
    report_file = out / "identifier-report.json"
    if not (reuse and onnx.exists() and report_file.exists()):
        train_identifier(
            train, val, out, home=paths.home, epochs=epochs, held_out=foreign, device=device
        )
    return onnx, json.loads(report_file.read_text(encoding="utf-8"))


def keep_final_identifier(
    chosen: dict[str, Any], final: dict[str, Any], tolerance: float = 0.02
) -> tuple[bool, str]:
    """Whether the identifier trained again on every photo may replace the chosen one.

    Dishes of the same data set can no longer be measured without the test set, but the other
    cuisine (never trained on) still can: the final identifier is kept only when its 5-shot
    top-1 there is no more than ``tolerance`` below the chosen one's, so that learning a new
    dish from a few photos does not get worse to gain on the dishes it was trained on.
    """
    before = chosen.get("fine_tuned", {}).get("held_out_5shot_top1")
    after = final.get("fine_tuned", {}).get("held_out_5shot_top1")
    if before is None or after is None:
        return False, "no 5-shot figure on the other cuisine to compare: the chosen one is kept"
    verdict = f"5-shot top-1 on the other cuisine {after:.3f} against {before:.3f}"
    if after < before - tolerance:
        return False, verdict + f", more than {tolerance} worse: the chosen identifier is shipped"
    return True, verdict


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
    keep = ("model", "epochs", "time", "imgsz", "batch", "optimizer", "lr0", "pretrained", "device")
    return {k: args[k] for k in keep if k in args}


def _quantiles(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {}
    return {f"p{q}": round(float(np.percentile(values, q)), 3) for q in (5, 25, 50, 75, 95)}
