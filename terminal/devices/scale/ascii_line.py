"""The generic ASCII line printed by many Chinese weighing indicators (XK3190 and kin).

A line is ``<stability>,<type>,<sign><number><unit>`` ended by CR LF, e.g.
``ST,GS,+  1.500kg``: stability ``ST`` stable, ``US`` unstable, ``OL`` overload (with ``-``:
underload); type ``GS`` gross, ``NT`` net, ``TR`` tare; the number right-aligned; unit
``kg``, ``g``, ``lb`` (or ``oz``). Variants seen in the field are accepted too: no sign
(``ST,GS,   245.6 g``), a space before the unit, a space instead of the second comma
(``ST,GS    20.7g``). A ``TR`` line carries the tare, which later ``NT`` frames report.

These indicators stream and take no commands, so there is no tare or zero command: tare on
the indicator's keypad.
"""

from __future__ import annotations

import logging
import re
from typing import ClassVar

from terminal.devices.scale.frames import ScaleFrame, ScaleProtocolError, parse_decimal, to_grams
from terminal.devices.scale.protocol import LineProtocol

logger = logging.getLogger(__name__)

_LINE = re.compile(
    rb"(ST|US|OL),(GS|NT|TR)[,\s]\s*([-+]?)\s*((?:\d+(?:\.\d*)?|\.\d+))\s*(kg|g|lb|oz)\s*",
    re.IGNORECASE,
)
# On overload many indicators replace the number with dashes or "OL"; the unit may go too.
_OVERLOAD = re.compile(rb"OL,(GS|NT|TR)[,\s]\s*([-+]?)[^\r\n]*", re.IGNORECASE)


class AsciiLineProtocol(LineProtocol):
    """``ST,GS,+  1.500kg`` lines, streamed."""

    name: ClassVar[str] = "ascii-line"
    _line_start: ClassVar[re.Pattern[bytes]] = re.compile(rb"(?:ST|US|OL),", re.IGNORECASE)

    def __init__(self) -> None:
        super().__init__()
        #: The tare of the last ``TR`` line, in grams; None until one arrives.
        self.tare_g: float | None = None

    def _parse_line(self, body: bytes, raw: bytes) -> ScaleFrame | None:
        m = _LINE.fullmatch(body)
        if m is None:
            over = _OVERLOAD.fullmatch(body)
            if over is None:
                raise ScaleProtocolError(f"not a ST/US/OL,GS/NT/TR weight line: {body[:40]!r}")
            negative = over.group(2) == b"-"
            return ScaleFrame(0.0, stable=False, overload=not negative, underload=negative, raw=raw)
        stability, kind, sign, number, unit = (g.upper() for g in m.groups())
        value = parse_decimal(number.decode("ascii"))
        weight_g = to_grams(-value if sign == b"-" else value, unit.decode("ascii").lower())
        if stability == b"OL":
            negative = sign == b"-"
            return ScaleFrame(0.0, stable=False, overload=not negative, underload=negative, raw=raw)
        if kind == b"TR":
            self.tare_g = weight_g
            return None
        net = kind == b"NT"
        return ScaleFrame(
            weight_g,
            stable=stability == b"ST",
            net=net,
            tare_g=self.tare_g if net else None,
            raw=raw,
        )
