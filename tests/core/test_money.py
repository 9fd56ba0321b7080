from __future__ import annotations

import pytest

from terminal.core.money import (
    MoneyError,
    format_yuan,
    price_by_weight_fen,
    require_fen,
    round_half_up_div,
)


@pytest.mark.parametrize(
    ("price_per_100g", "grams", "expected_fen"),
    [
        (400, 100, 400),  # exactly 100 g
        (400, 150, 600),
        (333, 150, 500),  # 499.5 -> 500: halves round up
        (333, 149, 496),  # 496.17 -> 496
        (180, 1, 2),  # 1.8 -> 2
        (180, 2, 4),  # 3.6 -> 4
        (250, 1, 3),  # 2.5 -> 3
        (1, 49, 0),  # 0.49 -> 0
        (1, 50, 1),  # 0.5 -> 1
        (400, 0, 0),  # nothing weighed costs nothing
        (400, -20, 0),  # a negative share never pays the diner back
        (0, 300, 0),  # free condiments
    ],
)
def test_weight_price_rounds_to_nearest_fen_halves_up(
    price_per_100g: int, grams: int, expected_fen: int
) -> None:
    assert price_by_weight_fen(price_per_100g, grams) == expected_fen


@pytest.mark.parametrize(
    ("num", "den", "expected"), [(5, 10, 1), (4, 10, 0), (15, 10, 2), (-5, 10, -1), (0, 7, 0)]
)
def test_round_half_up_div(num: int, den: int, expected: int) -> None:
    assert round_half_up_div(num, den) == expected


@pytest.mark.parametrize("bad", [1.5, 2.0, True, "100", None])
def test_money_refuses_anything_but_int_fen(bad: object) -> None:
    with pytest.raises(MoneyError):
        require_fen(bad, "price")
    with pytest.raises(MoneyError):
        price_by_weight_fen(bad, 100)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fen", "text"), [(0, "¥0.00"), (5, "¥0.05"), (1234, "¥12.34"), (-250, "-¥2.50")]
)
def test_format_yuan(fen: int, text: str) -> None:
    assert format_yuan(fen) == text
