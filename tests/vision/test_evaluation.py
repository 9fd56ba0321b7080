"""Evaluation metrics on hand-made trays whose right answers are easy to count."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from vision.evaluation import (
    TrayPrediction,
    TrayTruth,
    average_precision_50,
    evaluate,
    iou_matrix,
)

# Three well separated dishes on a tray.
RICE = (0.0, 0.0, 10.0, 10.0)
PORK = (20.0, 0.0, 30.0, 10.0)
SOUP = (40.0, 0.0, 50.0, 10.0)
ELSEWHERE = (100.0, 100.0, 110.0, 110.0)


def truth(*dishes: tuple[tuple[float, float, float, float], str]) -> TrayTruth:
    """A labelled tray from (box, dish id) pairs."""
    return TrayTruth(
        np.array([box for box, _ in dishes], np.float32).reshape(-1, 4),
        [dish for _, dish in dishes],
    )


def pred(
    *dishes: tuple[tuple[float, float, float, float], str | None],
    scores: list[float] | None = None,
    statuses: list[str] | None = None,
    elapsed_ms: float = 50.0,
) -> TrayPrediction:
    """A predicted tray from (box, dish id or None) pairs; None is an unknown dish."""
    dish_ids = [dish for _, dish in dishes]
    return TrayPrediction(
        np.array([box for box, _ in dishes], np.float32).reshape(-1, 4),
        np.array(scores if scores is not None else [0.9] * len(dishes), np.float32),
        dish_ids,
        statuses or ["unknown" if dish is None else "sure" for dish in dish_ids],
        elapsed_ms,
    )


def full_tray() -> TrayTruth:
    return truth((RICE, "rice"), (PORK, "pork"), (SOUP, "soup"))


CASES: list[tuple[str, TrayPrediction, dict[str, Any]]] = [
    (
        "perfect",
        pred((RICE, "rice"), (PORK, "pork"), (SOUP, "soup")),
        {
            "dish_precision": 1.0,
            "dish_recall": 1.0,
            "dish_top1": 1.0,
            "tray_exact": 1.0,
            "detector_map50": 1.0,
            "unknown_rate": 0.0,
            "confused_pairs": [],
        },
    ),
    (
        "one dish missed",
        pred((RICE, "rice"), (PORK, "pork")),
        {
            "n_predicted": 2,
            "dish_precision": 1.0,
            "dish_recall": 0.6667,
            "dish_top1": 1.0,
            "tray_exact": 0.0,
            "detector_map50": 0.6667,
        },
    ),
    (
        "one extra box",
        pred((RICE, "rice"), (PORK, "pork"), (SOUP, "soup"), (ELSEWHERE, "rice")),
        {
            "n_predicted": 4,
            "dish_precision": 0.75,
            "dish_recall": 1.0,
            "dish_top1": 1.0,
            "tray_exact": 0.0,
        },
    ),
    (
        "one wrong name",
        pred((RICE, "rice"), (PORK, "chicken"), (SOUP, "soup")),
        {
            "dish_precision": 1.0,
            "dish_recall": 1.0,
            "dish_top1": 0.6667,
            "tray_exact": 0.0,
            "detector_map50": 1.0,
            "confused_pairs": [{"true": "pork", "predicted": "chicken", "count": 1}],
        },
    ),
    (
        "one unknown",
        pred((RICE, "rice"), (PORK, None), (SOUP, "soup")),
        {
            "dish_recall": 1.0,
            "dish_top1": 0.6667,
            "tray_exact": 0.0,
            "unknown_rate": 0.3333,
            "confused_pairs": [{"true": "pork", "predicted": "unknown", "count": 1}],
        },
    ),
    (
        "one unsure but right",
        pred((RICE, "rice"), (PORK, "pork"), (SOUP, "soup"), statuses=["sure", "unsure", "sure"]),
        {"dish_top1": 1.0, "tray_exact": 1.0, "unsure_rate": 0.3333, "unknown_rate": 0.0},
    ),
    (
        "nothing predicted",
        pred(),
        {
            "n_predicted": 0,
            "dish_precision": 0.0,
            "dish_recall": 0.0,
            "dish_top1": 0.0,
            "tray_exact": 0.0,
            "detector_map50": 0.0,
            "unknown_rate": 0.0,
        },
    ),
]


@pytest.mark.parametrize(
    ("prediction", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_one_tray(prediction: TrayPrediction, expected: dict[str, Any]) -> None:
    report = evaluate([prediction], [full_tray()])
    assert report["n_images"] == 1
    assert report["n_dishes"] == 3
    assert {key: report[key] for key in expected} == expected


def test_a_box_that_barely_overlaps_does_not_find_the_dish() -> None:
    shifted = (6.0, 0.0, 16.0, 10.0)  # IoU with RICE is 4/16 = 0.25
    report = evaluate([pred((shifted, "rice"))], [truth((RICE, "rice"))])
    assert report["dish_recall"] == 0.0
    assert evaluate([pred((shifted, "rice"))], [truth((RICE, "rice"))], iou=0.2)[
        "dish_recall"
    ] == pytest.approx(1.0)


def test_two_boxes_on_one_dish_count_once() -> None:
    report = evaluate(
        [pred((RICE, "rice"), (RICE, "rice"), scores=[0.9, 0.8])], [truth((RICE, "rice"))]
    )
    assert report["n_matched"] == 1
    assert report["dish_precision"] == 0.5
    assert report["tray_exact"] == 0.0


def test_per_dish_and_confusions_over_several_trays() -> None:
    truths = [full_tray(), full_tray(), truth((RICE, "rice"))]
    preds = [
        pred((RICE, "rice"), (PORK, "chicken"), (SOUP, "soup")),
        pred((RICE, "rice"), (PORK, "chicken"), (SOUP, "rice")),
        pred((RICE, "rice")),
    ]

    report = evaluate(preds, truths)

    assert report["n_dishes"] == 7
    assert report["tray_exact"] == 0.3333
    assert report["confused_pairs"] == [
        {"true": "pork", "predicted": "chicken", "count": 2},
        {"true": "soup", "predicted": "rice", "count": 1},
    ]
    assert report["per_dish"]["rice"] == {"precision": 0.75, "recall": 1.0, "n": 3}
    assert report["per_dish"]["pork"] == {"precision": 0.0, "recall": 0.0, "n": 2}
    assert report["per_dish"]["chicken"] == {"precision": 0.0, "recall": 0.0, "n": 0}
    assert report["per_dish"]["soup"] == {"precision": 1.0, "recall": 0.5, "n": 2}


def test_failed_trays_are_told_apart_by_why_and_by_size() -> None:
    five = truth(*[((x, 0.0, x + 10.0, 10.0), "egg") for x in (0.0, 20.0, 40.0, 60.0, 80.0)])
    truths = [truth((RICE, "rice")), truth((RICE, "rice")), full_tray(), full_tray(), five]
    preds = [
        pred((RICE, "rice")),  # exact
        pred((RICE, "rice"), (ELSEWHERE, "pork")),  # an extra box
        pred((RICE, "rice"), (PORK, "chicken")),  # soup missed, pork misnamed
        pred((RICE, "rice"), (PORK, "pork"), (SOUP, "soup")),  # exact
        pred(*[((x, 0.0, x + 10.0, 10.0), "egg") for x in (0.0, 20.0, 40.0, 60.0)]),  # one missed
    ]

    report = evaluate(preds, truths)

    assert report["tray_exact_by_dishes"] == {
        "1": {"trays": 2, "tray_exact": 0.5},
        "2": {"trays": 0, "tray_exact": 0.0},
        "3-4": {"trays": 2, "tray_exact": 0.5},
        "5+": {"trays": 1, "tray_exact": 0.0},
    }
    assert report["tray_failures"] == {"missed_dish": 2, "extra_box": 1, "misnamed": 1}


def test_trays_labelling_a_dish_piece_by_piece_are_told_apart() -> None:
    left_half, right_half = (0.0, 0.0, 40.0, 80.0), (60.0, 0.0, 100.0, 80.0)
    pieces = truth((left_half, "pork"), (right_half, "pork"), (SOUP, "soup"))
    truths = [full_tray(), full_tray(), pieces, pieces]
    preds = [
        pred((RICE, "rice"), (PORK, "pork"), (SOUP, "soup")),  # exact
        pred((RICE, "rice"), (PORK, "rice"), (SOUP, "soup")),  # misnamed
        pred((left_half, "pork"), (right_half, "pork"), (SOUP, "soup")),  # found piece by piece
        pred(((0.0, 0.0, 100.0, 80.0), "pork"), (SOUP, "soup")),  # the pork as one region
    ]

    report = evaluate(preds, truths)

    assert report["tray_exact"] == 0.5
    assert report["tray_exact_by_labelling"] == {
        "once": {"trays": 2, "tray_exact": 0.5},
        "repeated": {"trays": 2, "tray_exact": 0.5},
    }


def test_a_tray_with_no_labelled_dish_is_not_counted_as_a_one_dish_tray() -> None:
    report = evaluate([pred(), pred((RICE, "rice"))], [truth(), truth((RICE, "rice"))])

    assert report["tray_exact"] == 1.0
    assert report["tray_exact_by_dishes"]["1"] == {"trays": 1, "tray_exact": 1.0}
    assert report["tray_exact_by_labelling"]["once"] == {"trays": 1, "tray_exact": 1.0}


def test_tray_times_are_reported_as_percentiles() -> None:
    preds = [pred((RICE, "rice"), elapsed_ms=ms) for ms in (10.0, 20.0, 30.0, 40.0, 100.0)]
    report = evaluate(preds, [truth((RICE, "rice"))] * 5)
    assert report["ms_per_tray_p50"] == 30.0
    assert report["ms_per_tray_p95"] == pytest.approx(88.0)


@pytest.mark.parametrize(
    ("hits_by_rank", "n_true", "expected_ap"),
    [
        ([True, True, True], 3, 1.0),
        ([True, False, True], 2, 0.8333),  # recall 1/2 at precision 1, 2/2 at precision 2/3
        ([False, True], 1, 0.5),
        ([True], 2, 0.5),
        ([False, False], 1, 0.0),
    ],
)
def test_average_precision_of_a_known_ranking(
    hits_by_rank: list[bool], n_true: int, expected_ap: float
) -> None:
    # One tray per prediction, so matching is trivial: a hit sits on its own dish, a miss elsewhere.
    preds, truths = [], []
    for rank, hit in enumerate(hits_by_rank):
        preds.append(pred((RICE if hit else ELSEWHERE, "rice"), scores=[1.0 - rank * 0.1]))
        truths.append(truth((RICE, "rice")) if hit else truth())
    truths.extend(truth((RICE, "rice")) for _ in range(n_true - sum(hits_by_rank)))
    preds.extend(pred() for _ in range(n_true - sum(hits_by_rank)))

    assert average_precision_50(preds, truths) == pytest.approx(expected_ap, abs=1e-4)


def test_no_trays_gives_zeros_not_errors() -> None:
    report = evaluate([], [])
    assert report["n_images"] == 0
    assert report["dish_recall"] == 0.0
    assert report["ms_per_tray_p95"] == 0.0


def test_predictions_must_match_the_trays() -> None:
    with pytest.raises(ValueError, match="2 predictions for 1 labelled trays"):
        evaluate([pred(), pred()], [truth()])


def test_a_prediction_with_disagreeing_parts_is_refused() -> None:
    with pytest.raises(ValueError, match="TrayPrediction parts disagree"):
        TrayPrediction(np.zeros((2, 4)), np.zeros(2), ["rice"], ["sure"], 1.0)


@pytest.mark.parametrize(
    ("box_a", "box_b", "expected"),
    [
        (RICE, RICE, 1.0),
        (RICE, PORK, 0.0),
        (RICE, (5.0, 0.0, 15.0, 10.0), 50.0 / 150.0),
        (RICE, (0.0, 0.0, 5.0, 5.0), 0.25),
        ((0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0), 0.0),
    ],
)
def test_iou(box_a: tuple[float, ...], box_b: tuple[float, ...], expected: float) -> None:
    assert iou_matrix([box_a], [box_b])[0, 0] == pytest.approx(expected)


def test_iou_matrix_shape_with_no_boxes() -> None:
    assert iou_matrix(np.zeros((0, 4)), [RICE, PORK]).shape == (0, 2)
