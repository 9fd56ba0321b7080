"""``trayscan compare``: two model bundles side by side on one labelled dataset.

Both bundles see the same photos. For each the report gives what ``trayscan eval`` gives
(detector mAP50, dish precision/recall, top-1, ``tray_exact``, unknown rate, per-dish precision
and recall, the pairs of dishes most confused) and the **price error**: for every tray, the price
of the dishes the bundle named against the price of the dishes really on it, both at the menu's
nominal portions, in fen. That is what a wrong recognition costs a diner or the canteen when
nobody catches it. ``differences`` lists the dishes whose recall moved most between the two.

With ``plots`` it also draws, as PNG: the detector's precision-recall curves of both bundles, and
each bundle's confusion matrix over the dishes of the dataset (matplotlib, from the ``train``
extra).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from terminal.core.menu import Menu, PricingMode
from terminal.core.money import price_by_weight_fen
from vision.bundle import verify_bundle
from vision.datasets import LabelledDataset, read_dataset
from vision.eval_runner import recognise_labelled
from vision.evaluation import TrayPrediction, TrayTruth, evaluate, match_boxes
from vision.recogniser import BundleRecogniser
from vision.references import class_to_dish_from_bundle

logger = logging.getLogger(__name__)


@dataclass
class BundleRun:
    """One bundle's predictions over the dataset."""

    version: str
    predictions: list[TrayPrediction] = field(default_factory=list)
    truths: list[TrayTruth] = field(default_factory=list)


def run_bundle(bundle_path: Path, dataset: LabelledDataset, *, threads: int = 2) -> BundleRun:
    """Recognise every photo of ``dataset`` with one bundle."""
    recogniser = BundleRecogniser(verify_bundle(bundle_path), threads=threads)
    mapping = class_to_dish_from_bundle(recogniser.bundle.dishes)
    run = BundleRun(recogniser.model_version)
    for labelled in dataset.images:
        prediction, truth, _ = recognise_labelled(recogniser, labelled, mapping)
        run.predictions.append(prediction)
        run.truths.append(truth)
    return run


def nominal_price_fen(menu: Menu, dish_ids: list[str | None]) -> int | None:
    """The price of these dishes at their nominal portions; None if one is not on the menu.

    An unknown dish (None) adds nothing: the terminal would not charge for it unasked.
    """
    total = 0
    for dish_id in dish_ids:
        if dish_id is None:
            continue
        if dish_id not in menu:
            return None
        item = menu.item(dish_id)
        if item.pricing is PricingMode.PER_100G:
            total += price_by_weight_fen(item.price_fen, item.portion_g)
        else:
            total += item.price_fen
    return total


def price_error(run: BundleRun, menu: Menu | None) -> dict[str, Any]:
    """Fen per tray between the named dishes and the true ones, at nominal portions."""
    if menu is None:
        return {"available": False, "why": "no menu given"}
    errors: list[int] = []
    skipped = 0
    for pred, truth in zip(run.predictions, run.truths, strict=True):
        charged = nominal_price_fen(
            menu, [None if pred.is_unknown(i) else pred.named(i) for i in range(len(pred))]
        )
        due = nominal_price_fen(menu, list(truth.dish_ids))
        if charged is None or due is None:
            skipped += 1
            continue
        errors.append(charged - due)
    if not errors:
        return {"available": False, "why": "no tray's dishes are all on the menu"}
    values = np.abs(np.array(errors, dtype=np.float64))
    return {
        "available": True,
        "trays": len(errors),
        "trays_not_on_menu": skipped,
        "mean_abs_fen": round(float(values.mean()), 1),
        "p95_abs_fen": round(float(np.percentile(values, 95)), 1),
        "trays_priced_right": round(float(np.mean(values == 0)), 4),
        "overcharged_fen_total": int(sum(e for e in errors if e > 0)),
        "undercharged_fen_total": int(-sum(e for e in errors if e < 0)),
    }


def confusion(run: BundleRun, iou: float = 0.5) -> tuple[list[str], np.ndarray]:
    """Confusion counts over matched boxes: rows true dish, columns named (last: unknown)."""
    pairs: Counter[tuple[str, str]] = Counter()
    for pred, truth in zip(run.predictions, run.truths, strict=True):
        for pred_index, truth_index in match_boxes(
            pred.boxes_xyxy, pred.scores, truth.boxes_xyxy, iou
        ):
            pairs[(truth.dish_ids[truth_index], pred.named(pred_index) or "unknown")] += 1
    dishes = sorted({true for true, _ in pairs} | {n for _, n in pairs if n != "unknown"})
    labels = [*dishes, "unknown"]
    index = {name: i for i, name in enumerate(labels)}
    matrix = np.zeros((len(dishes), len(labels)), dtype=np.int64)
    for (true, named), count in pairs.items():
        matrix[index[true], index[named]] += count
    return labels, matrix


def pr_curve(run: BundleRun, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The detector's precision and recall as its confidence threshold falls."""
    scored: list[tuple[float, bool]] = []
    n_true = 0
    for pred, truth in zip(run.predictions, run.truths, strict=True):
        n_true += len(truth)
        matched = {p for p, _ in match_boxes(pred.boxes_xyxy, pred.scores, truth.boxes_xyxy, iou)}
        scored.extend((float(pred.scores[i]), i in matched) for i in range(len(pred)))
    if not scored or not n_true:
        return np.zeros(0), np.zeros(0)
    scored.sort(key=lambda item: -item[0])
    hits = np.cumsum([hit for _, hit in scored])
    ranks = np.arange(1, len(scored) + 1)
    return hits / ranks, hits / n_true


def compare_bundles(
    bundle_a: Path,
    bundle_b: Path,
    dataset_path: Path,
    *,
    format: str | None = None,
    split: str | None = None,
    menu: Menu | None = None,
    plots: Path | None = None,
    limit: int | None = None,
    threads: int = 2,
) -> dict[str, Any]:
    """Score two bundles on the same photos; returns the JSON-ready report."""
    dataset = read_dataset(dataset_path, format, split)
    if limit is not None:
        dataset = LabelledDataset(
            dataset.name, dataset.images[:limit], dataset.class_names, dataset.format
        )
    runs = [run_bundle(path, dataset, threads=threads) for path in (bundle_a, bundle_b)]
    reports = []
    for path, run in zip((bundle_a, bundle_b), runs, strict=True):
        report = evaluate(run.predictions, run.truths)
        # Over the boxes the terminal keeps (its confidence threshold), unlike `trayscan eval`'s
        # detector_map50, which also ranks the low-confidence boxes.
        report["detector_map50_at_conf"] = report.pop("detector_map50")
        report["bundle"] = run.version
        report["path"] = str(path)
        report["price_error"] = price_error(run, menu)
        reports.append(report)
    a, b = reports
    differences = []
    for dish in sorted(set(a["per_dish"]) | set(b["per_dish"])):
        recall_a = a["per_dish"].get(dish, {}).get("recall", 0.0)
        recall_b = b["per_dish"].get(dish, {}).get("recall", 0.0)
        n = max(a["per_dish"].get(dish, {}).get("n", 0), b["per_dish"].get(dish, {}).get("n", 0))
        if recall_a != recall_b:
            differences.append(
                {"dish": dish, "n": n, "recall_a": recall_a, "recall_b": recall_b,
                 "change": round(recall_b - recall_a, 4)}
            )  # fmt: skip
    differences.sort(key=lambda d: -abs(d["change"]) * d["n"])
    keys = ("detector_map50_at_conf", "dish_precision", "dish_recall", "dish_top1", "tray_exact",
            "unknown_rate", "unsure_rate", "ms_per_tray_p50", "ms_per_tray_p95")  # fmt: skip
    result: dict[str, Any] = {
        "dataset": str(dataset_path),
        "n_images": len(dataset.images),
        "a": a,
        "b": b,
        "side_by_side": {key: [a[key], b[key]] for key in keys},
        "differences": differences[:15],
    }
    if plots is not None:
        result["plots"] = [str(p) for p in draw_plots(runs, plots)]
    return result


def draw_plots(runs: list[BundleRun], folder: Path) -> list[Path]:
    """PR curves of both detectors, and a confusion matrix per bundle, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    figure, axes = plt.subplots(figsize=(6, 5))
    for run in runs:
        precision, recall = pr_curve(run)
        axes.plot(recall, precision, label=run.version)
    axes.set_xlabel("recall (dishes found)")
    axes.set_ylabel("precision (boxes that are dishes)")
    axes.set_title("Detector precision-recall, IoU 0.5")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    axes.legend()
    path = folder / "pr_curve.png"
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    written.append(path)
    for letter, run in zip("ab", runs, strict=False):
        labels, matrix = confusion(run)
        if not matrix.size:
            continue
        rows = matrix.sum(axis=1, keepdims=True).clip(min=1)
        size = max(6.0, 0.28 * len(labels))
        figure, axes = plt.subplots(figsize=(size + 1.5, size))
        image = axes.imshow(matrix / rows, cmap="viridis", vmin=0, vmax=1)
        axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        axes.set_yticks(range(len(labels) - 1), labels[:-1], fontsize=7)
        axes.set_xlabel("named as")
        axes.set_ylabel("true dish")
        axes.set_title(f"Confusion, bundle {run.version} (share of each true dish)")
        figure.colorbar(image, ax=axes, fraction=0.03)
        figure.tight_layout()
        path = folder / f"confusion_{letter}_{run.version}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written
