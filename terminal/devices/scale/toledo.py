"""Mettler Toledo "standard continuous output" (the Toledo 8142/8530 continuous format).

A frame is ``STX SWA SWB SWC`` + 6 weight digits + 6 tare digits + ``CR`` + an optional
checksum byte, 17 or 18 bytes, streamed several times a second without being asked. Digits
are ASCII with leading zeros or spaces, without sign or decimal point.

Status word A: bits 0-2 the decimal point (0: ``XXXX00``, 1: ``XXXXX0``, 2: ``XXXXXX``,
3: ``XXXXX.X``, 4: ``XXXX.XX``, 5: ``XXX.XXX``, 6: ``XX.XXXX``, 7: ``X.XXXXX``), bits 3-4
the increment size (1: x1, 2: x2, 3: x5). Status word B: bit 0 net (1) or gross (0), bit 1
negative, bit 2 out of range (overload, or underload when negative), bit 3 in motion,
bit 4 kg (1) or lb (0). Status word C: bits 0-2 the unit when not kg/lb (0: kg or lb as
word B says, 1: g, 2: t, 3: oz; other codes are units we do not accept), bit 3 print request.
Bit 5 of words A and C is always 1 and is required, which keeps a stray STX from passing
for a frame; word B is not checked because Fairbanks' Toledo-format output documents its
bit 5 as 0. Bit 6 varies by model and is ignored. The checksum is
the two's complement of the 7-bit sum of STX through CR, so the 7-bit sum of the whole frame
including the checksum is zero.

Sources: Mettler Toledo IND445 user manual 22013194B, section 5.2 "TOLEDO Continuous mode";
Kern FTC manual section 5.2 (same format, same checksum); the Toledo status-word tables
republished at cnblogs.com/dirgo/p/21366370; Fairbanks FB3000 manual appendix III (status
word B). Status C code 3 (oz) is from the IND560 manual as we remember it and is not
confirmed by those sources; codes 4-7 are rejected.

These terminals usually send 7 data bits with even parity. A host port opened 8N1 reads the
parity as bit 7, so every byte is masked to 7 bits first: 7E1 scales work on 8N1 ports.
A frame's ``raw`` therefore holds the 7-bit bytes.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import ClassVar

from terminal.devices.scale.frames import ScaleFrame, ScaleProtocolError, to_grams
from terminal.devices.scale.protocol import FixedFrameProtocol

logger = logging.getLogger(__name__)

STX = 0x02
CR = 0x0D

#: Decimal point code of status word A -> power of ten the digits are multiplied by.
DECIMAL_EXPONENT: dict[int, int] = {0: 2, 1: 1, 2: 0, 3: -1, 4: -2, 5: -3, 6: -4, 7: -5}
#: Increment code of status word A bits 3-4 -> the display increment factor.
INCREMENT: dict[int, int] = {1: 1, 2: 2, 3: 5}
#: Unit code of status word C bits 0-2 (code 0 is kg or lb, chosen by status word B bit 4).
UNIT_CODES: dict[int, str] = {1: "g", 2: "t", 3: "oz"}

_STATUS_ALWAYS_ONE = 0x20
_FIELD_BYTES = frozenset(b"0123456789 ")


def toledo_checksum(body: bytes) -> int:
    """The checksum byte for ``body`` (STX through CR): two's complement of the 7-bit sum."""
    return (-sum(body)) & 0x7F


class ToledoContinuousProtocol(FixedFrameProtocol):
    """Mettler Toledo standard continuous output.

    Args:
        checksum: the terminal appends the checksum byte (18-byte frames) and it is checked;
            False for 17-byte frames without one. It must match the terminal's setting.
    """

    name: ClassVar[str] = "toledo-continuous"
    _start: ClassVar[bytes] = bytes([STX])

    def __init__(self, checksum: bool = True) -> None:
        super().__init__()
        self.checksum = checksum

    def tare_command(self) -> bytes | None:
        # IND445 / Kern FTC "TOLEDO Continuous commands": T tares, Z zeroes; terminals
        # without a receive line ignore them.
        return b"T\r\n"

    def zero_command(self) -> bytes | None:
        return b"Z\r\n"

    def feed(self, data: bytes) -> list[ScaleFrame]:
        return super().feed(bytes(b & 0x7F for b in data))

    def _frame_length(self) -> int:
        return 18 if self.checksum else 17

    def _prefix_error(self, candidate: bytes) -> str | None:
        for index, word in ((1, "A"), (3, "C")):
            if len(candidate) > index and not candidate[index] & _STATUS_ALWAYS_ONE:
                byte = candidate[index]
                return f"status word {word} 0x{byte:02X} lacks bit 5: not a Toledo frame"
        for index, byte in enumerate(candidate[4:16], start=4):
            if byte not in _FIELD_BYTES:
                field = "weight" if index < 10 else "tare"
                return f"{field} field byte 0x{byte:02X} is not a digit or space"
        if len(candidate) > 16 and candidate[16] != CR:
            return (
                f"byte 17 is 0x{candidate[16]:02X}, not CR: frame too long or short "
                "(is the terminal set to the standard 6+6 digit format?)"
            )
        return None

    def _parse_frame(self, frame: bytes) -> ScaleFrame | None:
        if self.checksum:
            expected = toledo_checksum(frame[:17])
            if frame[17] != expected:
                raise ScaleProtocolError(
                    f"checksum 0x{frame[17]:02X} does not match 0x{expected:02X}: line noise, "
                    "or the terminal sends no checksum (set checksum=False)"
                )
        swa, swb, swc = frame[1], frame[2], frame[3]
        exponent = DECIMAL_EXPONENT[swa & 0x07]
        increment = INCREMENT.get((swa >> 3) & 0x03)
        if increment is None:
            logger.debug("Toledo frame with increment code 0: %r", frame)
        net = bool(swb & 0x01)
        negative = bool(swb & 0x02)
        out_of_range = bool(swb & 0x04)
        motion = bool(swb & 0x08)
        unit_code = swc & 0x07
        if unit_code == 0:
            unit = "kg" if swb & 0x10 else "lb"
        elif unit_code in UNIT_CODES:
            unit = UNIT_CODES[unit_code]
        else:
            raise ScaleProtocolError(
                f"status word C unit code {unit_code} is a unit we do not weigh in: set the "
                "terminal to kg, g, t, lb or oz"
            )
        weight = _field(frame[4:10], exponent, "weight")
        tare = _field(frame[10:16], exponent, "tare")
        # Out of range, the digits are whatever the terminal left there: report no weight.
        weight_g = 0.0 if out_of_range else to_grams(-weight if negative else weight, unit)
        return ScaleFrame(
            weight_g=weight_g,
            stable=not motion and not out_of_range,
            net=net,
            tare_g=to_grams(tare, unit),
            overload=out_of_range and not negative,
            underload=out_of_range and negative,
            raw=frame,
        )


def _field(digits: bytes, exponent: int, what: str) -> Decimal:
    text = digits.decode("ascii")
    stripped = text.lstrip(" ")
    if not stripped or not stripped.isdigit():
        raise ScaleProtocolError(f"{what} field {text!r} must be digits after any leading spaces")
    return Decimal(int(stripped)).scaleb(exponent)
