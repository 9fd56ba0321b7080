"""Aclas / CAS "OS2"-style frames, as spoken by many retail and canteen platform scales.

A frame is 15 bytes: ``SOH STX`` + status (``S`` stable, ``U`` unstable, ``F`` overload or
fault) + sign (``+``/``-``) + 6 weight characters (digits, spaces, at most one decimal point:
``01.500`` or `` 1500``) + a 2-character unit (``kg``, `` g``, ``lb``, ``oz``) + BCC (XOR of
the bytes from status through unit) + ``ETX EOT``.

In active mode the scale streams frames. In passive mode the host sends ``ENQ``, the scale
answers ``ACK``, the host sends ``DC1`` and the scale sends one frame; :meth:`feed` turns each
``ACK`` into a pending ``DC1`` that the driver writes. Zero and tare are ``<ZK>`` and ``<TK>``
followed by TAB.

Sources: the Mertech "CAS-M" protocol page (docs.mertech.ru/scales_pos/protocol_sp/CAS-M.html)
for the ENQ/ACK/DC1 exchange, the frame layout and the zero/tare commands; the BCC range is
as our indicators' manuals give it. With ``F`` the weight field may hold letters (``OL``);
we read ``F`` with ``-`` as underload, ``F`` otherwise as overload.
"""

from __future__ import annotations

import logging
from functools import reduce
from operator import xor
from typing import ClassVar

from terminal.devices.scale.frames import ScaleFrame, ScaleProtocolError, parse_decimal, to_grams
from terminal.devices.scale.protocol import FixedFrameProtocol

logger = logging.getLogger(__name__)

SOH = 0x01
STX = 0x02
ETX = 0x03
EOT = 0x04
ENQ = 0x05
ACK = 0x06
DC1 = 0x11
FRAME_LENGTH = 15

_STATUSES = frozenset(b"SUF")
_SIGNS = frozenset(b"+-")
_WEIGHT_BYTES = frozenset(b"0123456789. ")
_UNIT_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ")


def aclas_bcc(body: bytes) -> int:
    """The BCC byte over ``body`` (status through unit): the XOR of its bytes."""
    return reduce(xor, body, 0)


class AclasOs2Protocol(FixedFrameProtocol):
    """Aclas/CAS OS2-style frames.

    Args:
        passive: the scale answers ENQ/DC1 polls instead of streaming.
    """

    name: ClassVar[str] = "aclas-os2"
    _start: ClassVar[bytes] = bytes([SOH, STX])

    def __init__(self, passive: bool = False) -> None:
        super().__init__()
        self.passive = passive

    def poll_request(self) -> bytes | None:
        return bytes([ENQ]) if self.passive else None

    def tare_command(self) -> bytes | None:
        return b"<TK>\t"

    def zero_command(self) -> bytes | None:
        return b"<ZK>\t"

    def _frame_length(self) -> int:
        return FRAME_LENGTH

    def _stray_byte(self, byte: int) -> bool:
        if self.passive and byte == ACK:
            # The scale accepted our ENQ: ask it for the frame.
            self._pending.append(DC1)
            return True
        return False

    def _prefix_error(self, candidate: bytes) -> str | None:
        if len(candidate) > 2 and candidate[2] not in _STATUSES:
            return f"status byte 0x{candidate[2]:02X} is not S, U or F"
        if len(candidate) > 3 and candidate[3] not in _SIGNS:
            return f"sign byte 0x{candidate[3]:02X} is not + or -"
        overload = candidate[2:3] == b"F"
        for byte in candidate[4:10]:
            # On overload some scales print letters (OL, ----) in the weight field.
            if byte not in _WEIGHT_BYTES and not (overload and 0x20 <= byte < 0x7F):
                return f"weight byte 0x{byte:02X} is not a digit, space or point"
        for byte in candidate[10:12]:
            if byte not in _UNIT_BYTES:
                return f"unit byte 0x{byte:02X} is not a letter or space"
        if len(candidate) > 13 and candidate[13] != ETX:
            return f"byte 14 is 0x{candidate[13]:02X}, not ETX"
        if len(candidate) > 14 and candidate[14] != EOT:
            return f"byte 15 is 0x{candidate[14]:02X}, not EOT"
        return None

    def _parse_frame(self, frame: bytes) -> ScaleFrame | None:
        expected = aclas_bcc(frame[2:12])
        if frame[12] != expected:
            raise ScaleProtocolError(
                f"BCC 0x{frame[12]:02X} does not match 0x{expected:02X}: line noise or a "
                "wrong baud rate"
            )
        status = frame[2:3]
        negative = frame[3:4] == b"-"
        unit = frame[10:12].decode("ascii").strip()
        if status == b"F":
            return ScaleFrame(
                0.0, stable=False, overload=not negative, underload=negative, raw=frame
            )
        text = frame[4:10].decode("ascii")
        if text.strip(" ") != text.lstrip(" ") or "-" in text:
            raise ScaleProtocolError(f"weight field {text!r} has spaces after the number")
        value = parse_decimal(text)
        weight_g = to_grams(-value if negative else value, unit)
        return ScaleFrame(weight_g, stable=status == b"S", raw=frame)
