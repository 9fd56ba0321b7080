"""Money as integer fen (1 yuan = 100 fen), never float.

The one rounding rule of trayscan: a weight-priced line costs
``price_per_100g_fen * grams / 100`` rounded to the nearest fen, halves rounded up
(away from zero for the non-negative amounts a line can have). Each line is rounded
on its own and the tray total is the exact sum of its rounded lines, so the receipt
always adds up.
"""

from __future__ import annotations

Fen = int
"""An amount of money in fen. A plain int, kept as a name so signatures say what they hold."""


class MoneyError(ValueError):
    """An amount that cannot be money: a float, a bool, or a negative price."""


def require_fen(value: object, what: str) -> Fen:
    """Return ``value`` if it is a whole number of fen, else raise naming ``what``.

    Args:
        value: the candidate amount.
        what: a name for the amount, used in the error message.

    Raises:
        MoneyError: ``value`` is not an ``int`` (floats and bools are refused).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise MoneyError(f"{what} must be a whole number of fen, got {value!r}")
    return value


def round_half_up_div(numerator: int, denominator: int) -> int:
    """Integer division rounded to the nearest integer, halves away from zero.

    >>> round_half_up_div(5, 10), round_half_up_div(4, 10), round_half_up_div(-5, 10)
    (1, 0, -1)
    """
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    sign = -1 if numerator < 0 else 1
    return sign * ((abs(numerator) * 2 + denominator) // (denominator * 2))


def price_by_weight_fen(price_per_100g_fen: Fen, grams: int) -> Fen:
    """Price of ``grams`` of a dish sold at ``price_per_100g_fen``, by the rounding rule above.

    Args:
        price_per_100g_fen: the menu price per 100 g, in fen.
        grams: the dish's weight; zero or negative weights cost nothing.
    """
    require_fen(price_per_100g_fen, "price per 100 g")
    if grams <= 0:
        return 0
    return round_half_up_div(price_per_100g_fen * grams, 100)


def format_yuan(amount: Fen) -> str:
    """Render fen as yuan for a screen or a receipt: ``1234`` -> ``"¥12.34"``."""
    require_fen(amount, "amount")
    sign = "-" if amount < 0 else ""
    yuan, fen = divmod(abs(amount), 100)
    return f"{sign}¥{yuan}.{fen:02d}"
