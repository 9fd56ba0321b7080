from __future__ import annotations

import pytest

from terminal.core.holds import HoldReason
from terminal.core.menu import Menu, UnknownDishError
from terminal.core.pricing import (
    PriceOverride,
    WeightRules,
    allocate_proportionally,
    estimate_dish_grams,
    price_tray,
    tare_g,
)

H = HoldReason

# Small menu (tests/conftest.py): tray 400 g; rice 150 fen/portion of 200 g; pork 400 fen/100 g;
# greens 180 fen/100 g; soup 200 fen/portion of 250 g in a 180 g bowl.
PRICING_TABLE = [
    # id, dishes, gross_g, grams per dish, price per line, total, holds
    ("portion only", ["rice"], 600, [200], [150], 150, []),
    ("two weighed dishes share net", ["pork", "greens"], 600, [100, 100], [400, 180], 580, []),
    (
        "portion dish keeps its nominal grams",
        ["rice", "pork"],
        750,
        [200, 150],
        [150, 600],
        750,
        [],
    ),
    (
        "odd gram goes to the earlier dish, each line rounded",
        ["pork", "greens"],
        633,
        [117, 116],
        [468, 209],
        677,
        [],
    ),
    ("same dish twice", ["pork", "pork"], 700, [150, 150], [600, 600], 1200, []),
    ("bowl tare comes off", ["soup"], 830, [250], [200], 200, []),
    (
        "portion-only tray scales grams to the weight",
        ["rice", "soup"],
        400 + 180 + 225,
        [100, 125],
        [150, 200],
        350,
        [],
    ),
    ("zero net weight", ["pork"], 400, [0], [0], 0, [H.NO_WEIGHT]),
    ("negative net weight", ["pork", "rice"], 300, [0, 200], [0, 150], 150, [H.NO_WEIGHT]),
    ("empty tray", [], 400, [], [], 0, [H.NO_DISHES]),
    ("food but no dish recognised", [], 700, [], [], 0, [H.NO_DISHES]),
    (
        "far too heavy for the dishes",
        ["pork"],
        400 + 1000,
        [1000],
        [4000],
        4000,
        [H.WEIGHT_CONFLICT],
    ),
    (
        "far too light for the dishes",
        ["rice", "pork", "greens"],
        400 + 120,
        [200, 0, 0],
        [150, 0, 0],
        150,
        [H.WEIGHT_CONFLICT],
    ),
    (
        "nothing left for the weighed dish",
        ["rice", "pork"],
        400 + 190,
        [200, 0],
        [150, 0],
        150,
        [H.WEIGHT_CONFLICT],
    ),
]


@pytest.mark.parametrize(
    ("case", "dishes", "gross_g", "grams", "prices", "total", "holds"),
    PRICING_TABLE,
    ids=[row[0] for row in PRICING_TABLE],
)
def test_price_tray(
    menu: Menu,
    case: str,
    dishes: list[str],
    gross_g: int,
    grams: list[int],
    prices: list[int],
    total: int,
    holds: list[HoldReason],
) -> None:
    priced = price_tray(menu, dishes, gross_g)
    assert [line.grams for line in priced.lines] == grams
    assert [line.price_fen for line in priced.lines] == prices
    assert priced.subtotal_fen == priced.total_fen == total == sum(prices)
    assert [h.reason for h in priced.holds] == holds
    assert priced.is_clear == (not holds)
    assert isinstance(priced.total_fen, int)


def test_net_weight_and_tare(menu: Menu) -> None:
    priced = price_tray(menu, ["soup", "pork"], 400 + 180 + 250 + 120)
    assert priced.tare_g == 580
    assert priced.net_g == 370
    assert [line.grams for line in priced.lines] == [250, 120]


def test_nutrition_is_scaled_by_the_grams_of_each_dish(menu: Menu) -> None:
    priced = price_tray(menu, ["rice", "pork"], 750)  # rice 200 g at 130 kcal, pork 150 g at 250
    assert priced.lines[0].nutrition.kcal == pytest.approx(260.0)
    assert priced.lines[1].nutrition.kcal == pytest.approx(375.0)
    assert priced.nutrition.kcal == pytest.approx(635.0)
    assert priced.nutrition.protein_g == pytest.approx(35.0)


def test_cashier_override_replaces_the_line_price(menu: Menu) -> None:
    priced = price_tray(
        menu, ["rice", "pork"], 750, overrides={1: PriceOverride(300, "half portion", "c1")}
    )
    assert [line.price_fen for line in priced.lines] == [150, 300]
    assert priced.total_fen == 450
    assert priced.lines[1].override is not None


def test_unknown_dish_raises(menu: Menu) -> None:
    with pytest.raises(UnknownDishError, match="not on the menu"):
        price_tray(menu, ["lobster"], 700)


def test_tare_with_no_tray(menu: Menu) -> None:
    assert tare_g(menu, ["soup", "soup"], None) == 360


@pytest.mark.parametrize(
    ("total", "shares", "expected"),
    [
        (10, [1, 1], [5, 5]),
        (11, [1, 1], [6, 5]),
        (10, [1, 2, 3], [2, 3, 5]),
        (100, [0, 1], [0, 100]),
        (0, [1, 2], [0, 0]),
        (-5, [1, 2], [0, 0]),
        (7, [0, 0], [0, 0]),
        (1, [3, 3, 3], [1, 0, 0]),
    ],
)
def test_allocation_adds_up(total: int, shares: list[int], expected: list[int]) -> None:
    parts = allocate_proportionally(total, shares)
    assert parts == expected
    if total > 0 and sum(shares):
        assert sum(parts) == total


def test_estimated_grams_add_up_to_net_for_weighed_trays(menu: Menu) -> None:
    items = [menu.item(i) for i in ("rice", "pork", "greens", "pork")]
    for net in range(201, 2000, 37):
        assert sum(estimate_dish_grams(items, net)) == net


@pytest.mark.parametrize(("low", "high"), [(0, 1), (1.0, 1.0), (2.0, 1.0)])
def test_weight_rules_refuse_nonsense(low: float, high: float) -> None:
    with pytest.raises(ValueError):
        WeightRules(min_ratio=low, max_ratio=high)
