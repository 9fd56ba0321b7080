"""Mettler Toledo MT-SICS (Standard Interface Command Set), level 0/1 weighing commands.

Commands are ASCII ended by CR LF: ``S`` (stable weight: the scale answers once stable),
``SI`` (weight immediately, stable or not), ``SIR`` (SI repeated: the scale streams SI
replies), ``T`` (tare), ``Z`` (zero). Replies are ``<id> <status> [value unit]``:
``S S     100.00 g`` stable, ``S D      99.80 g`` dynamic (in motion), ``S I`` command not
executable now (busy), ``S +`` overload, ``S -`` underload, ``T S      45.20 g`` tare taken,
``TA A      45.20 g`` tare value, ``Z A`` zeroed, and ``ES``/``ET``/``EL`` for a syntax,
transmission or logical error in what we sent.

Sources: the MT-SICS reply codes as used by InstrumentKit's ``mettler_toledo/mt_sics.py``
and the MT-SICS command list of the EPICS ``mettlerToledo`` support module; the value field
is right-aligned, ten characters wide, and may be negative.

We poll with ``SI`` by default, not ``S``: the checkout shows the weight while the tray
settles and decides stability itself from the status, while ``S`` would hold its answer
until the scale is stable and leave the screen frozen meanwhile.
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal
from typing import ClassVar, Literal

from terminal.devices.scale.frames import (
    ScaleError,
    ScaleFrame,
    ScaleProtocolError,
    parse_decimal,
    to_grams,
)
from terminal.devices.scale.protocol import LineProtocol

logger = logging.getLogger(__name__)

CRLF = b"\r\n"

_VALUE = rb"([-+]?\s*(?:\d+(?:\.\d*)?|\.\d+))\s+([A-Za-z]+)"
_WEIGHT = re.compile(rb"S\s+([SD])\s+" + _VALUE + rb"\s*")
_WEIGHT_STATUS = re.compile(rb"S\s+([I+\-L])\s*")
_TARE = re.compile(rb"(?:T\s+S|TA\s+A)\s+" + _VALUE + rb"\s*")
_TARE_STATUS = re.compile(rb"T\s+([I+\-L])\s*")
_TARE_CLEARED = re.compile(rb"TAC\s+A\s*")
_ZERO = re.compile(rb"Z\s+([AI+\-L])\s*")
_ERROR = re.compile(rb"E([STL])\s*")

_ERROR_MEANING = {
    b"S": "syntax error: the scale did not recognise the command (is it set to MT-SICS?)",
    b"T": "transmission error: check baud rate, parity and the cable",
    b"L": "logical error: the scale cannot execute the command in its current state",
}
_REFUSAL = {
    b"I": "not executed now (scale busy or not stable); it will be retried",
    b"+": "refused: the scale is overloaded",
    b"-": "refused: the scale is underloaded (pan missing or below zero)",
    b"L": "refused: logical error (command not allowed in this state)",
}

MtSicsMode = Literal["S", "SI", "SIR"]


class MtSicsProtocol(LineProtocol):
    """MT-SICS over a line of ASCII.

    Args:
        mode: ``"SI"`` (poll for the immediate weight, default), ``"S"`` (poll for the
            stable weight only) or ``"SIR"`` (ask once per connection for a stream of SI
            replies; no polling).

    Raises:
        ScaleError: an unknown mode.
    """

    name: ClassVar[str] = "mt-sics"
    _line_start: ClassVar[re.Pattern[bytes]] = re.compile(rb"[A-Z]")

    def __init__(self, mode: MtSicsMode = "SI") -> None:
        super().__init__()
        if mode not in ("S", "SI", "SIR"):
            raise ScaleError(f"MT-SICS mode must be S, SI or SIR, not {mode!r}")
        self.mode: MtSicsMode = mode
        #: The tare the scale last reported (``T S`` / ``TA A``), in grams; None if unknown.
        self.tare_g: float | None = None

    def connect_request(self) -> bytes | None:
        return b"SIR" + CRLF if self.mode == "SIR" else None

    def poll_request(self) -> bytes | None:
        return None if self.mode == "SIR" else self.mode.encode("ascii") + CRLF

    def tare_command(self) -> bytes | None:
        return b"T" + CRLF

    def zero_command(self) -> bytes | None:
        return b"Z" + CRLF

    def _weight_frame(self, weight_g: float, stable: bool, raw: bytes) -> ScaleFrame:
        # MT-SICS weights are what the display shows: net of the tare when one is set.
        net = self.tare_g is not None and self.tare_g != 0
        return ScaleFrame(
            weight_g=weight_g,
            stable=stable,
            net=net,
            tare_g=self.tare_g if net else None,
            raw=raw,
        )

    def _parse_line(self, body: bytes, raw: bytes) -> ScaleFrame | None:
        if m := _WEIGHT.fullmatch(body):
            value = _value_g(m.group(2), m.group(3))
            return self._weight_frame(value, m.group(1) == b"S", raw)
        if m := _WEIGHT_STATUS.fullmatch(body):
            code = m.group(1)
            if code == b"+":
                return ScaleFrame(0.0, stable=False, net=False, overload=True, raw=raw)
            if code == b"-":
                return ScaleFrame(0.0, stable=False, net=False, underload=True, raw=raw)
            self._note(f"weight request {_REFUSAL[code]}", error=code == b"L")
            return None
        if m := _TARE.fullmatch(body):
            self.tare_g = _value_g(m.group(1), m.group(2))
            logger.info("scale reports tare %.1f g", self.tare_g)
            return None
        if m := _TARE_STATUS.fullmatch(body):
            code = m.group(1)
            self._note(f"tare {_REFUSAL[code]}", error=code != b"I")
            return None
        if _TARE_CLEARED.fullmatch(body):
            self.tare_g = None
            return None
        if m := _ZERO.fullmatch(body):
            code = m.group(1)
            if code == b"A":
                # Zeroing sets the display to zero and clears the tare memory.
                self.tare_g = None
                logger.info("scale zeroed")
            else:
                self._note(f"zero {_REFUSAL[code]}", error=code != b"I")
            return None
        if m := _ERROR.fullmatch(body):
            self._note(f"scale answered E{m.group(1).decode()}: {_ERROR_MEANING[m.group(1)]}")
            return None
        raise ScaleProtocolError(f"not an MT-SICS reply: {body[:40]!r}")

    def _note(self, message: str, *, error: bool = True) -> None:
        if error:
            self.last_error = message
            logger.warning("MT-SICS: %s", message)
        else:
            logger.debug("MT-SICS: %s", message)


def _value_g(value: bytes, unit: bytes) -> float:
    number: Decimal = parse_decimal(value.decode("ascii"))
    return to_grams(number, unit.decode("ascii"))
