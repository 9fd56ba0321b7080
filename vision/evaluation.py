"""Metrics for ``trayscan eval``: how well a recogniser finds and names the dishes on trays.

Pure functions over predictions and ground truth; no model code, so the same numbers come out
whichever backend produced the predictions. Boxes are matched one-to-one per tray, greedily by
detector score: each prediction, best first, takes the unmatched true box it overlaps most, if the
overlap reaches the IoU threshold.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

STATUSES = frozenset({"sure", "unsure", "unknown"})
UNKNOWN = "unknown"
"""How an unknown dish is named in confused pairs and per-dish tables."""

_DIGITS = 4

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TrayPrediction:
    """What a recogniser said about one tray.

    Attributes:
        boxes_xyxy: ``(N, 4)`` pixel boxes, x1 y1 x2 y2.
        scores: ``(N,)`` detector confidences, used to rank boxes for matching and mAP.
        dish_ids: the dish named for each box, None when unknown.
        statuses: ``"sure"``, ``"unsure"`` or ``"unknown"`` for each box.
        elapsed_ms: how long recognising the tray took.
    """

    boxes_xyxy: npt.NDArray[np.floating[Any]]
    scores: npt.NDArray[np.floating[Any]]
    dish_ids: list[str | None]
    statuses: list[str]
    elapsed_ms: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.dish_ids)
        if (
            _as_boxes(self.boxes_xyxy).shape != (n, 4)
            or np.asarray(self.scores).shape != (n,)
            or len(self.statuses) != n
        ):
            raise ValueError(
                f"TrayPrediction parts disagree: boxes {np.shape(self.boxes_xyxy)}, scores "
                f"{np.shape(self.scores)}, {n} dish ids, {len(self.statuses)} statuses"
            )
        bad = sorted(set(self.statuses) - STATUSES)
        if bad:
            raise ValueError(f"TrayPrediction: unknown statuses {bad}; expected {sorted(STATUSES)}")

    def __len__(self) -> int:
        return len(self.dish_ids)

    def is_unknown(self, index: int) -> bool:
        """Whether box ``index`` is an unknown dish (by status or for want of a dish id)."""
        return self.statuses[index] == UNKNOWN or self.dish_ids[index] is None

    def named(self, index: int) -> str:
        """The dish named for box ``index``, or ``"unknown"``."""
        dish_id = self.dish_ids[index]
        return UNKNOWN if self.is_unknown(index) or dish_id is None else dish_id


@dataclass(frozen=True)
class TrayTruth:
    """The labelled dishes of one tray.

    Attributes:
        boxes_xyxy: ``(M, 4)`` pixel boxes, x1 y1 x2 y2.
        dish_ids: the true dish of each box.
    """

    boxes_xyxy: npt.NDArray[np.floating[Any]]
    dish_ids: list[str]

    def __post_init__(self) -> None:
        if _as_boxes(self.boxes_xyxy).shape != (len(self.dish_ids), 4):
            raise ValueError(
                f"TrayTruth parts disagree: boxes {np.shape(self.boxes_xyxy)}, "
                f"{len(self.dish_ids)} dish ids"
            )

    def __len__(self) -> int:
        return len(self.dish_ids)


def iou_matrix(a: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Args:
        a: ``(N, 4)`` boxes, x1 y1 x2 y2.
        b: ``(M, 4)`` boxes, x1 y1 x2 y2.

    Returns:
        ``(N, M)`` float64 IoUs in 0..1; 0 where both boxes have no area.
    """
    boxes_a, boxes_b = _as_boxes(a), _as_boxes(b)
    area_a = _areas(boxes_a)
    area_b = _areas(boxes_b)
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    sides = np.clip(bottom_right - top_left, 0.0, None)
    intersection = sides[..., 0] * sides[..., 1]
    union = area_a[:, None] + area_b[None, :] - intersection
    result: FloatArray = np.divide(
        intersection, union, out=np.zeros_like(intersection), where=union > 0
    )
    return result


def match_boxes(
    pred_boxes: npt.ArrayLike, scores: npt.ArrayLike, true_boxes: npt.ArrayLike, iou: float = 0.5
) -> list[tuple[int, int]]:
    """Match predicted to true boxes one-to-one, greedily by score.

    Each prediction, highest score first, takes the still unmatched true box it overlaps most,
    when that overlap is at least ``iou``.

    Returns:
        ``(prediction index, truth index)`` pairs, in the order they were made.
    """
    overlaps = iou_matrix(pred_boxes, true_boxes)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    taken = np.zeros(overlaps.shape[1], dtype=bool)
    pairs = []
    for pred_index in order:
        if overlaps.shape[1] == 0:
            break
        candidates = np.where(taken, -1.0, overlaps[pred_index])
        truth_index = int(np.argmax(candidates))
        if candidates[truth_index] >= iou:
            taken[truth_index] = True
            pairs.append((int(pred_index), truth_index))
    return pairs


def average_precision_50(preds: list[TrayPrediction], truths: list[TrayTruth]) -> float:
    """Class-agnostic average precision at IoU 0.5 over a whole dataset.

    Boxes are matched per tray as in :func:`match_boxes`; all predictions are then ranked by
    score and AP is the area under the precision-recall curve with all-point interpolation
    (precision made monotonically decreasing, as in Pascal VOC 2010 and later).

    Returns:
        AP in 0..1; 0.0 when there is no ground-truth box.
    """
    return _average_precision(preds, truths, 0.5)


def evaluate(
    preds: list[TrayPrediction], truths: list[TrayTruth], iou: float = 0.5
) -> dict[str, Any]:
    """Score a recogniser's predictions against the labelled trays.

    Args:
        preds: one prediction per tray.
        truths: the labelled dishes of the same trays, in the same order.
        iou: the overlap a predicted box needs with a true box to count as finding it.

    Returns:
        A JSON-ready dict: ``n_images``, ``n_dishes`` (true objects), ``n_predicted``,
        ``n_matched``, ``detector_map50``, ``dish_precision`` (matched / predicted),
        ``dish_recall`` (matched / true), ``dish_top1`` (named right / matched; an unknown is
        wrong), ``tray_exact`` (trays with every dish found and named right and no extra box),
        ``tray_exact_by_dishes`` (the same for the trays holding 1, 2, 3-4 and 5 or more dishes,
        with how many trays each group has; trays with no labelled dish are in no group),
        ``tray_exact_by_labelling`` (the same for the trays that label each dish once and for
        those that label some dish more than once, piece by piece: a detector that finds the
        dish as one region fails the latter whatever it names),
        ``tray_failures`` (how many trays missed a dish, held an extra box, or named a found
        dish wrong; one tray can count in several),
        ``unknown_rate`` and ``unsure_rate`` (of predicted dishes), ``confused_pairs`` (the 10
        commonest ``{"true", "predicted", "count"}`` among matched pairs named wrong),
        ``per_dish`` (dish -> ``{"precision", "recall", "n"}``), ``ms_per_tray_p50`` and
        ``ms_per_tray_p95``. Floats are rounded to 4 decimals; a rate over nothing is 0.0.

    Raises:
        ValueError: ``preds`` and ``truths`` differ in length.
    """
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} predictions for {len(truths)} labelled trays")
    n_dishes = sum(len(truth) for truth in truths)
    n_predicted = sum(len(pred) for pred in preds)
    n_matched = n_correct = n_exact = n_unknown = n_unsure = 0
    confusions: Counter[tuple[str, str]] = Counter()
    true_count: Counter[str] = Counter()  # true objects per dish
    named_count: Counter[str] = Counter()  # predictions naming each dish
    right_count: Counter[str] = Counter()  # matched predictions naming the true dish
    by_size = {group: [0, 0] for group in SIZE_GROUPS}  # trays, exact trays
    by_labelling = {group: [0, 0] for group in LABELLING_GROUPS}
    failures = {"missed_dish": 0, "extra_box": 0, "misnamed": 0}

    for pred, truth in zip(preds, truths, strict=True):
        pairs = match_boxes(pred.boxes_xyxy, pred.scores, truth.boxes_xyxy, iou)
        correct_here = 0
        for pred_index, truth_index in pairs:
            true_id, named = truth.dish_ids[truth_index], pred.named(pred_index)
            if named == true_id:
                correct_here += 1
                right_count[true_id] += 1
            else:
                confusions[(true_id, named)] += 1
        n_matched += len(pairs)
        n_correct += correct_here
        exact = correct_here == len(truth) and len(pred) == len(truth)
        n_exact += exact
        if len(truth):  # a tray with no labelled dish belongs to no group
            size = _size_group(len(truth))
            by_size[size][0] += 1
            by_size[size][1] += exact
            labelling = "once" if len(set(truth.dish_ids)) == len(truth) else "repeated"
            by_labelling[labelling][0] += 1
            by_labelling[labelling][1] += exact
        if len(pairs) < len(truth):
            failures["missed_dish"] += 1
        if len(pred) > len(pairs):
            failures["extra_box"] += 1
        if correct_here < len(pairs):
            failures["misnamed"] += 1
        true_count.update(truth.dish_ids)
        for index in range(len(pred)):
            if pred.is_unknown(index):
                n_unknown += 1
            else:
                named_count[pred.named(index)] += 1
        n_unsure += sum(status == "unsure" for status in pred.statuses)

    elapsed = np.array([pred.elapsed_ms for pred in preds], dtype=np.float64)
    per_dish = {
        dish: {
            "precision": _ratio(right_count[dish], named_count[dish]),
            "recall": _ratio(right_count[dish], true_count[dish]),
            "n": true_count[dish],
        }
        for dish in sorted(set(true_count) | set(named_count))
    }
    report: dict[str, Any] = {
        "n_images": len(truths),
        "n_dishes": n_dishes,
        "n_predicted": n_predicted,
        "n_matched": n_matched,
        "iou": round(float(iou), _DIGITS),
        "detector_map50": round(average_precision_50(preds, truths), _DIGITS),
        "dish_precision": _ratio(n_matched, n_predicted),
        "dish_recall": _ratio(n_matched, n_dishes),
        "dish_top1": _ratio(n_correct, n_matched),
        "tray_exact": _ratio(n_exact, len(truths)),
        "tray_exact_by_dishes": _exact_by_group(by_size),
        "tray_exact_by_labelling": _exact_by_group(by_labelling),
        "tray_failures": failures,
        "unknown_rate": _ratio(n_unknown, n_predicted),
        "unsure_rate": _ratio(n_unsure, n_predicted),
        "confused_pairs": [
            {"true": true_id, "predicted": named, "count": count}
            for (true_id, named), count in sorted(
                confusions.items(), key=lambda item: (-item[1], item[0])
            )[:10]
        ],
        "per_dish": per_dish,
        "ms_per_tray_p50": _percentile(elapsed, 50),
        "ms_per_tray_p95": _percentile(elapsed, 95),
    }
    logger.debug("evaluated %d trays: %s", len(truths), report)
    return report


SIZE_GROUPS = ("1", "2", "3-4", "5+")
"""Trays grouped by how many dishes they hold, for ``tray_exact_by_dishes``."""

LABELLING_GROUPS = ("once", "repeated")
"""Trays that label each dish once, and those that label some dish more than once."""


def _exact_by_group(counts: dict[str, list[int]]) -> dict[str, dict[str, Any]]:
    """``{group: {"trays", "tray_exact"}}`` from ``{group: [trays, exact trays]}``."""
    return {
        group: {"trays": trays, "tray_exact": _ratio(exact, trays)}
        for group, (trays, exact) in counts.items()
    }


def _size_group(n_dishes: int) -> str:
    if n_dishes <= 2:
        return str(n_dishes)
    return "3-4" if n_dishes <= 4 else "5+"


def _average_precision(preds: list[TrayPrediction], truths: list[TrayTruth], iou: float) -> float:
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} predictions for {len(truths)} labelled trays")
    n_true = sum(len(truth) for truth in truths)
    if n_true == 0:
        return 0.0
    scores: list[float] = []
    hits: list[bool] = []
    for pred, truth in zip(preds, truths, strict=True):
        matched = {p for p, _ in match_boxes(pred.boxes_xyxy, pred.scores, truth.boxes_xyxy, iou)}
        scores.extend(float(s) for s in np.asarray(pred.scores))
        hits.extend(index in matched for index in range(len(pred)))
    if not scores:
        return 0.0
    order = np.argsort(-np.array(scores), kind="stable")
    is_hit = np.array(hits, dtype=np.float64)[order]
    true_positives = np.cumsum(is_hit)
    false_positives = np.cumsum(1.0 - is_hit)
    recall = true_positives / n_true
    precision = true_positives / (true_positives + false_positives)
    # All-point interpolation: the precision at a recall is the best precision at any higher one.
    recall = np.concatenate(([0.0], recall, [1.0]))
    precision = np.concatenate(([1.0], precision, [0.0]))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.where(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def _as_boxes(boxes: npt.ArrayLike) -> FloatArray:
    array = np.asarray(boxes, dtype=np.float64)
    # An empty list arrives as shape (0,); treat it as no boxes rather than a shape error.
    return array.reshape(0, 4) if array.size == 0 else array


def _areas(boxes: FloatArray) -> FloatArray:
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {boxes.shape}")
    sides = np.clip(boxes[:, 2:] - boxes[:, :2], 0.0, None)
    result: FloatArray = sides[:, 0] * sides[:, 1]
    return result


def _ratio(numerator: int, denominator: int) -> float:
    return round(numerator / denominator, _DIGITS) if denominator else 0.0


def _percentile(values: FloatArray, q: float) -> float:
    return round(float(np.percentile(values, q)), _DIGITS) if values.size else 0.0
