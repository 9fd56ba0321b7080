"""Building a model bundle: ONNX models, a gallery, measured thresholds, a model card, a manifest.

Thresholds come from measured score distributions, never from a guess:

- ``unknown_below``: the best cosine score of dishes that *are* in the gallery (crops of photos
  held out of the gallery) against that of dishes that are *not* (another cuisine's crops).
  The threshold keeps ``keep_known`` of the known dishes above it; the model card says what
  fraction of the foreign dishes it turns away.
- ``unsure_margin``: among the known dishes above the threshold, the gap between the best two
  candidates. The smallest gap at which the identifier is right ``sure_precision`` of the time
  is the margin; below it the cashier is asked.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import platform
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from terminal.core.menu import Menu
from vision.bundle import ModelBundle, verify_bundle, write_manifest
from vision.datasets import LabelledDataset
from vision.gallery import Gallery
from vision.identifier import Embedder
from vision.references import references_from_dataset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreStudy:
    """Score distributions the thresholds are chosen from."""

    known_best: np.ndarray
    known_correct: np.ndarray
    known_margin: np.ndarray
    foreign_best: np.ndarray


def study_scores(
    gallery: Gallery, known: np.ndarray, known_labels: Sequence[str], foreign: np.ndarray
) -> ScoreStudy:
    """Match held-out known crops and foreign crops against ``gallery``."""
    best, correct, margin = [], [], []
    for candidates, label in zip(gallery.match(known, k=2), known_labels, strict=True):
        top = candidates[0].score if candidates else 0.0
        second = candidates[1].score if len(candidates) > 1 else 0.0
        best.append(top)
        margin.append(top - second)
        correct.append(bool(candidates) and candidates[0].dish_id == label)
    foreign_best = (
        [c[0].score if c else 0.0 for c in gallery.match(foreign, k=1)] if len(foreign) else []
    )
    return ScoreStudy(
        np.array(best, np.float32),
        np.array(correct),
        np.array(margin, np.float32),
        np.array(foreign_best, np.float32),
    )


def choose_thresholds(
    study: ScoreStudy, *, keep_known: float = 0.97, sure_precision: float = 0.95
) -> tuple[float, float, dict[str, float]]:
    """``(unknown_below, unsure_margin, figures)`` from a score study; see the module docstring."""
    unknown_below = (
        float(np.quantile(study.known_best, 1.0 - keep_known)) if len(study.known_best) else 0.5
    )
    above = study.known_best >= unknown_below
    margins, correct = study.known_margin[above], study.known_correct[above]
    unsure_margin = 0.0
    for candidate in np.linspace(0.0, 0.15, 61):
        sure = margins >= candidate
        if not sure.any():
            break
        if float(correct[sure].mean()) >= sure_precision:
            unsure_margin = float(candidate)
            break
    else:
        unsure_margin = 0.15
    sure = above & (study.known_margin >= unsure_margin)
    figures = {
        "known_top1": round(float(study.known_correct.mean()), 4)
        if len(study.known_correct)
        else 0.0,
        "known_kept_above_unknown": round(float(above.mean()), 4) if len(above) else 0.0,
        "foreign_rejected_as_unknown": round(float((study.foreign_best < unknown_below).mean()), 4)
        if len(study.foreign_best)
        else 0.0,
        "sure_fraction": round(float(sure.mean()), 4) if len(sure) else 0.0,
        "sure_precision": round(float(study.known_correct[sure].mean()), 4) if sure.any() else 0.0,
        "known_best_p05": round(float(np.quantile(study.known_best, 0.05)), 4)
        if len(study.known_best)
        else 0.0,
        "foreign_best_p50": round(float(np.median(study.foreign_best)), 4)
        if len(study.foreign_best)
        else 0.0,
    }
    return round(unknown_below, 4), round(unsure_margin, 4), figures


def select_diverse(embeddings: np.ndarray, k: int) -> list[int]:
    """Farthest-point sampling: ``k`` rows of ``embeddings`` that cover their spread.

    Starts from the row nearest the mean (the most typical view), then repeatedly takes the row
    least similar to everything chosen so far.
    """
    n = len(embeddings)
    if n <= k:
        return list(range(n))
    mean = embeddings.mean(axis=0)
    chosen = [int(np.argmax(embeddings @ mean))]
    best_similarity = embeddings @ embeddings[chosen[0]]
    while len(chosen) < k:
        candidate = int(np.argmin(best_similarity))
        chosen.append(candidate)
        best_similarity = np.maximum(best_similarity, embeddings @ embeddings[candidate])
    return sorted(chosen)


def classes_from_menu(menu: Menu) -> dict[str, Any]:
    """classes.json: the class/menu mapping of the bundle."""
    return {
        "dishes": [
            {
                "id": item.id,
                "name_zh": item.name_zh,
                "name_en": item.name_en,
                "dataset_class": item.dataset_class,
            }
            for item in menu
        ]
    }


def build_bundle(
    out: Path,
    *,
    version: str,
    detector_onnx: Path,
    detector_imgsz: int,
    identifier_onnx: Path,
    menu: Menu,
    references: LabelledDataset,
    unknown_below: float,
    unsure_margin: float,
    card: str,
    conf: float = 0.25,
    iou: float = 0.5,
    containment: float = 0.85,
    max_per_dish: int | None = 16,
) -> ModelBundle:
    """Write a complete, verified bundle folder at ``out`` (replaced if it exists)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copyfile(detector_onnx, out / "detector.onnx")
    shutil.copyfile(identifier_onnx, out / "identifier.onnx")
    (out / "classes.json").write_text(
        json.dumps(classes_from_menu(menu), ensure_ascii=False, indent=1), encoding="utf-8"
    )
    embedder = Embedder(out / "identifier.onnx", input_size=224)
    class_to_dish = {i.dataset_class: i.id for i in menu if i.dataset_class}
    refs = references_from_dataset(references, embedder, class_to_dish=class_to_dish)
    gallery = Gallery(embedder.dim)
    for dish, embeddings in refs.embeddings.items():
        stacked = np.stack(embeddings)
        # A capped, diverse set keeps the bundle small; prototypes barely move.
        keep = select_diverse(stacked, max_per_dish) if max_per_dish else list(range(len(stacked)))
        gallery.add(dish, stacked[keep], [refs.hashes[dish][i] for i in keep], origin="dataset")
    gallery.save(out / "gallery.npz")
    (out / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    write_manifest(
        out,
        {
            "version": version,
            "detector": {
                "file": "detector.onnx",
                "imgsz": detector_imgsz,
                "conf": conf,
                "iou": iou,
                "containment": containment,
                "classes": ["dish"],
            },
            "identifier": {
                "file": "identifier.onnx",
                "input_size": 224,
                "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225],
                "embedding_dim": embedder.dim,
            },
            "gallery": {"file": "gallery.npz", "mode": "prototype"},
            "thresholds": {"unknown_below": unknown_below, "unsure_margin": unsure_margin},
            "classes_file": "classes.json",
            "model_card": "MODEL_CARD.md",
        },
    )
    return verify_bundle(out)


def append_to_card(folder: Path, title: str, data: Mapping[str, Any]) -> ModelBundle:
    """Add a JSON section to a bundle's model card and re-hash the manifest (same version)."""
    bundle = verify_bundle(folder)
    card = folder / bundle.manifest.model_card
    card.write_text(
        card.read_text(encoding="utf-8").rstrip("\n")
        + f"\n\n## {title}\n```json\n{json.dumps(dict(data), indent=1, ensure_ascii=False)}\n```\n",
        encoding="utf-8",
    )
    fields = bundle.manifest.to_dict()
    fields.pop("files", None)
    write_manifest(folder, fields)
    return verify_bundle(folder)


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("numpy", "cv2", "onnxruntime", "torch", "torchvision", "ultralytics"):
        try:
            module = __import__(name)
            versions[name] = str(getattr(module, "__version__", "?"))
        except ImportError:
            continue
    return versions


def model_card(
    *,
    version: str,
    data: str,
    detector: Mapping[str, Any],
    identifier: Mapping[str, Any],
    thresholds: Mapping[str, Any],
    evaluation: Mapping[str, Any] | None = None,
    command: str = "",
) -> str:
    """The model card: data, metrics, thresholds, software versions, date."""
    lines = [
        f"# trayscan model bundle {version}",
        "",
        f"Built {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}"
        + (f" with `{command}`" if command else "")
        + ".",
        "",
        "## Data",
        data,
        "",
        "## Detector",
        "```json",
        json.dumps(dict(detector), indent=1, ensure_ascii=False),
        "```",
        "",
        "## Identifier",
        "```json",
        json.dumps(dict(identifier), indent=1, ensure_ascii=False),
        "```",
        "",
        "## Thresholds (from measured score distributions)",
        "```json",
        json.dumps(dict(thresholds), indent=1, ensure_ascii=False),
        "```",
    ]
    if evaluation:
        lines += ["", "## Evaluation", "```json", json.dumps(dict(evaluation), indent=1), "```"]
    lines += ["", "## Software", "```json", json.dumps(software_versions(), indent=1), "```", ""]
    return "\n".join(lines)
