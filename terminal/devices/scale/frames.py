"""What every scale protocol decodes into, the scale's exception types and unit conversion.

A :class:`ScaleFrame` is the protocol-neutral result of one well-formed frame off the wire, in
grams, with the raw bytes kept so a technician can see exactly what the indicator sent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

logger = logging.getLogger(__name__)


class ScaleError(Exception):
    """Something is wrong with the scale or its configuration; the message says what to check."""


class ScaleProtocolError(ScaleError):
    """A frame did not follow the protocol; the message says which part was wrong."""


class ScaleDisconnectedError(ScaleError):
    """The scale cannot be read: its port is gone or it has stopped sending valid frames."""


# Exact factors (Decimal) so "1.500 kg" becomes exactly 1500.0 g rather than 1499.9999999.
# The pound and ounce are the international avoirdupois definitions; the carat is metric.
GRAMS_PER_UNIT: dict[str, Decimal] = {
    "mg": Decimal("0.001"),
    "g": Decimal(1),
    "kg": Decimal(1000),
    "t": Decimal(1_000_000),
    "lb": Decimal("453.59237"),
    "oz": Decimal("28.349523125"),
    "ct": Decimal("0.2"),
}


@dataclass(frozen=True)
class ScaleFrame:
    """One decoded frame from a scale.

    Attributes:
        weight_g: the displayed weight in grams, sign applied (net when ``net`` is true).
        stable: the scale reports no motion; always false when over- or underloaded.
        net: the weight is net of a tare; otherwise it is gross.
        tare_g: the tare in grams when the frame (or the protocol's state) tells it, else None.
        overload: the load is above the scale's range; ``weight_g`` is then meaningless.
        underload: the load is below the scale's range (pan lifted, below zero).
        raw: the bytes of the frame as received, for diagnosis.
    """

    weight_g: float
    stable: bool
    net: bool = False
    tare_g: float | None = None
    overload: bool = False
    underload: bool = False
    raw: bytes = b""


def parse_decimal(text: str, what: str = "weight") -> Decimal:
    """Parse a number as a scale prints it (spaces around, optional sign, optional point).

    Args:
        text: the number field, e.g. ``"  -12.34"`` or ``"001500"``.
        what: what the field is, for the error message.

    Returns:
        The exact value.

    Raises:
        ScaleProtocolError: the field is not a plain decimal number.
    """
    cleaned = text.strip()
    sign = ""
    if cleaned[:1] in ("+", "-"):
        # Indicators right-align the digits and leave the sign at the left: "-  0.020".
        sign, cleaned = cleaned[0], cleaned[1:].lstrip()
    body = cleaned
    cleaned = sign + body
    if not body or not all(c.isdigit() or c == "." for c in body) or body.count(".") > 1:
        raise ScaleProtocolError(f"{what} field {text!r} is not a decimal number")
    if body == ".":
        raise ScaleProtocolError(f"{what} field {text!r} has no digits")
    try:
        return Decimal(cleaned)
    except InvalidOperation as exc:  # pragma: no cover - the checks above exclude it
        raise ScaleProtocolError(f"{what} field {text!r} is not a decimal number") from exc


def to_grams(value: Decimal | int | str, unit: str) -> float:
    """Convert a weight in ``unit`` to grams.

    Args:
        value: the weight, exact (Decimal, int or a decimal string).
        unit: one of mg, g, kg, t, lb, oz, ct (case-insensitive, spaces ignored).

    Returns:
        The weight in grams.

    Raises:
        ScaleProtocolError: the unit is unknown, e.g. the indicator is set to a unit we do not
            weigh food in; the message lists the ones we accept.
    """
    key = unit.strip().lower()
    factor = GRAMS_PER_UNIT.get(key)
    if factor is None:
        known = ", ".join(GRAMS_PER_UNIT)
        raise ScaleProtocolError(
            f"unit {unit!r} is not supported; set the indicator to one of: {known}"
        )
    exact = value if isinstance(value, Decimal) else Decimal(value)
    return float(exact * factor)
