"""The scale's side of the wire, faked: for the tests, the demo and bench checks of a cable.

:class:`FakeScaleDevice` encodes weights into the exact bytes each protocol puts on the wire
and, served over a port, behaves like an indicator: it streams frames (Toledo, ASCII line,
Aclas active), answers MT-SICS commands and the Aclas ENQ/DC1 handshake, and records every
byte it received so a test can assert what the driver sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal

import serial

from terminal.devices.scale.aclas import ACK, DC1, ENQ, EOT, ETX, SOH, aclas_bcc
from terminal.devices.scale.aclas import STX as ACLAS_STX
from terminal.devices.scale.frames import GRAMS_PER_UNIT, ScaleError
from terminal.devices.scale.registry import PROTOCOLS
from terminal.devices.scale.toledo import CR, UNIT_CODES, toledo_checksum
from terminal.devices.scale.toledo import STX as TOLEDO_STX

logger = logging.getLogger(__name__)

#: Decimals each protocol prints per unit (what common indicators show).
_MTSICS_DECIMALS = {"mg": 0, "g": 2, "kg": 3, "t": 6, "lb": 3, "oz": 2, "ct": 1}
_LINE_DECIMALS = {"g": 0, "kg": 3, "lb": 3, "oz": 2}
_ACLAS_DECIMALS = {"g": 0, "kg": 3, "lb": 3, "oz": 2}
#: Toledo decimal-point exponent chosen per unit (status word A code in parentheses).
_TOLEDO_EXPONENT = {"g": 0, "kg": -3, "lb": -2, "oz": -1, "t": -5}
_TOLEDO_DP_CODE = {2: 0, 1: 1, 0: 2, -1: 3, -2: 4, -3: 5, -4: 6, -5: 7}


def _in_unit(weight_g: float, unit: str, decimals: int) -> Decimal:
    if unit not in GRAMS_PER_UNIT:
        raise ScaleError(f"the fake scale cannot print unit {unit!r}")
    value = Decimal(repr(weight_g)) / GRAMS_PER_UNIT[unit]
    return value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)


class FakeScaleDevice:
    """A fake indicator speaking one protocol.

    Args:
        protocol_name: a registry name (``mt-sics``, ``toledo-continuous``, ...).
        unit: the unit it prints weights in.
        checksum: Toledo frames carry the checksum byte.
        passive: an Aclas scale that waits for ENQ/DC1 instead of streaming.
        stream_interval_s: seconds between frames of a streaming protocol when served.

    Attributes:
        gross_g: the load on the platform.
        tare_g: the tare taken (``T``), subtracted from what it displays.
        stable: the load has settled.
        received: every byte the host sent, in order.
        sent: every byte the fake sent.
    """

    def __init__(
        self,
        protocol_name: str,
        *,
        unit: str = "kg",
        checksum: bool = True,
        passive: bool = False,
        stream_interval_s: float = 0.05,
    ) -> None:
        if protocol_name not in PROTOCOLS:
            raise ScaleError(f"the fake scale does not speak {protocol_name!r}")
        self.protocol_name = protocol_name
        self.unit = unit
        self.checksum = checksum
        self.stream_interval_s = stream_interval_s
        self.gross_g = 0.0
        self.tare_g = 0.0
        self.stable = True
        self.overload = False
        self.received = bytearray()
        self.sent = bytearray()
        self._inbox = bytearray()
        # MT-SICS speaks when spoken to (until SIR); a passive Aclas waits for DC1.
        self._streaming = protocol_name != "mt-sics" and not (
            protocol_name == "aclas-os2" and passive
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def place(self, gross_g: float, *, stable: bool = True) -> None:
        """Put ``gross_g`` on the platform; ``stable=False`` while it still swings."""
        self.gross_g = gross_g
        self.stable = stable

    @property
    def displayed_g(self) -> float:
        """What the indicator shows: net of the tare when one is taken."""
        return self.gross_g - self.tare_g

    def frame(self) -> bytes:
        """The frame the fake would send now for its current load."""
        return self.encode(
            self.protocol_name,
            self.displayed_g,
            stable=self.stable,
            net=self.tare_g != 0,
            tare_g=self.tare_g,
            overload=self.overload,
            unit=self.unit,
            checksum=self.checksum,
        )

    @staticmethod
    def encode(
        protocol_name: str,
        weight_g: float,
        *,
        stable: bool = True,
        net: bool = False,
        tare_g: float = 0,
        overload: bool = False,
        underload: bool = False,
        unit: str = "kg",
        checksum: bool = True,
    ) -> bytes:
        """The exact bytes an indicator sends for a weight.

        Args:
            protocol_name: a registry name.
            weight_g: the displayed weight in grams (net when ``net``).
            stable: no motion.
            net: the weight is net of ``tare_g``.
            tare_g: the tare in grams (Toledo sends it in every frame; the ASCII line sends a
                ``TR`` line before a net line).
            overload: the scale is above its range.
            underload: the scale is below its range.
            unit: the unit printed.
            checksum: append the Toledo checksum byte.

        Raises:
            ScaleError: an unknown protocol, or a unit or weight the format cannot carry.
        """
        if protocol_name == "mt-sics":
            return _encode_mtsics(weight_g, stable, overload, underload, unit)
        if protocol_name == "toledo-continuous":
            return _encode_toledo(
                weight_g, stable, net, tare_g, overload, underload, unit, checksum
            )
        if protocol_name == "aclas-os2":
            return _encode_aclas(weight_g, stable, overload, underload, unit)
        if protocol_name == "ascii-line":
            return _encode_line(weight_g, stable, net, tare_g, overload, underload, unit)
        raise ScaleError(f"the fake scale does not speak {protocol_name!r}")

    def respond(self, data: bytes) -> bytes:
        """Take bytes from the host; return what the indicator answers (maybe nothing)."""
        self.received += data
        self._inbox += data
        if self.protocol_name == "aclas-os2":
            out = bytearray()
            for byte in bytes(self._inbox):
                if byte == ENQ:
                    out.append(ACK)
                elif byte == DC1:
                    out += self.frame()
            self._inbox.clear()
            return bytes(out)
        out = bytearray()
        while b"\n" in self._inbox:
            end = self._inbox.index(b"\n")
            command = bytes(self._inbox[:end]).strip()
            del self._inbox[: end + 1]
            out += self._command(command)
        return bytes(out)

    def _command(self, command: bytes) -> bytes:
        if command == b"T":
            if self.protocol_name == "mt-sics" and not self.stable:
                return b"T I\r\n"
            self.tare_g = self.gross_g
        elif command == b"Z":
            self.tare_g = 0.0
        if self.protocol_name != "mt-sics":
            return b""  # continuous formats take commands silently
        if command in (b"S", b"SI"):
            if command == b"S" and not self.stable:
                return b"S I\r\n"  # a real scale would wait; the fake says "not now"
            return self.frame()
        if command == b"SIR":
            self._streaming = True
            return self.frame()
        if command == b"T":
            tare = _in_unit(self.tare_g, "g", 2)
            return f"T S {tare:>10} g\r\n".encode("ascii")
        if command == b"Z":
            return b"Z A\r\n"
        return b"ES\r\n"

    # -- serving over a port -------------------------------------------------------------

    def serve(self, port: serial.Serial) -> None:
        """Play the scale on an open port until :meth:`stop`; streams if the protocol does."""
        next_frame = 0.0
        while not self._stop.is_set():
            try:
                waiting = port.in_waiting
                data = port.read(waiting if waiting > 0 else 1)
                reply = self.respond(data) if data else b""
                now = time.monotonic()
                if self._streaming and now >= next_frame:
                    reply += self.frame()
                    next_frame = now + self.stream_interval_s
                if reply:
                    port.write(reply)
                    self.sent += reply
            except (serial.SerialException, OSError) as exc:
                logger.info("fake scale: port closed (%s)", exc)
                return

    def start(
        self, url: str, *, open_port: Callable[..., serial.Serial] = serial.serial_for_url
    ) -> None:
        """Open ``url`` and serve it from a background thread."""
        port = open_port(url, timeout=min(0.05, self.stream_interval_s))
        self._stop.clear()

        def run() -> None:
            try:
                self.serve(port)
            finally:
                port.close()

        self._thread = threading.Thread(target=run, name=f"fake scale {url}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the port."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None


def _encode_mtsics(
    weight_g: float, stable: bool, overload: bool, underload: bool, unit: str
) -> bytes:
    if overload:
        return b"S +\r\n"
    if underload:
        return b"S -\r\n"
    value = _in_unit(weight_g, unit, _MTSICS_DECIMALS.get(unit, 2))
    return f"S {'S' if stable else 'D'} {value:>10} {unit}\r\n".encode("ascii")


def _encode_toledo(
    weight_g: float,
    stable: bool,
    net: bool,
    tare_g: float,
    overload: bool,
    underload: bool,
    unit: str,
    checksum: bool,
) -> bytes:
    if unit not in _TOLEDO_EXPONENT:
        raise ScaleError(f"Toledo continuous output has no unit {unit!r}")
    exponent = _TOLEDO_EXPONENT[unit]
    weight = _in_unit(weight_g, unit, -exponent).scaleb(-exponent)
    tare = _in_unit(tare_g, unit, -exponent).scaleb(-exponent)
    if abs(weight) > 999_999 or abs(tare) > 999_999:
        raise ScaleError(f"{weight_g} g does not fit six Toledo digits in {unit}")
    unit_code = {name: code for code, name in UNIT_CODES.items()}.get(unit, 0)
    swa = 0x20 | (1 << 3) | _TOLEDO_DP_CODE[exponent]  # increment x1
    negative = weight < 0 or underload
    swb = (
        0x20
        | (0x01 if net else 0)
        | (0x02 if negative else 0)
        | (0x04 if overload or underload else 0)
        | (0x00 if stable else 0x08)
        | (0x10 if unit in ("kg", "g", "t") else 0)
    )
    swc = 0x20 | unit_code
    body = (
        bytes([TOLEDO_STX, swa, swb, swc])
        + f"{int(abs(weight)):06d}{int(abs(tare)):06d}".encode("ascii")
        + bytes([CR])
    )
    return body + bytes([toledo_checksum(body)]) if checksum else body


def _encode_aclas(
    weight_g: float, stable: bool, overload: bool, underload: bool, unit: str
) -> bytes:
    unit_text = {"kg": "kg", "g": " g", "lb": "lb", "oz": "oz"}.get(unit)
    if unit_text is None:
        raise ScaleError(f"Aclas frames have no unit {unit!r}")
    if overload or underload:
        status, sign, number = "F", "-" if underload else "+", "  OL  "
    else:
        value = _in_unit(weight_g, unit, _ACLAS_DECIMALS[unit])
        status, sign = ("S" if stable else "U"), ("-" if value < 0 else "+")
        digits = _ACLAS_DECIMALS[unit]
        number = f"{abs(value):06.{digits}f}" if digits else f"{int(abs(value)):06d}"
        if len(number) != 6:
            raise ScaleError(f"{weight_g} g does not fit six Aclas characters in {unit}")
    body = f"{status}{sign}{number}{unit_text}".encode("ascii")
    return bytes([SOH, ACLAS_STX]) + body + bytes([aclas_bcc(body), ETX, EOT])


def _encode_line(
    weight_g: float,
    stable: bool,
    net: bool,
    tare_g: float,
    overload: bool,
    underload: bool,
    unit: str,
) -> bytes:
    decimals = _LINE_DECIMALS.get(unit)
    if decimals is None:
        raise ScaleError(f"the ASCII line has no unit {unit!r}")

    def line(stability: str, kind: str, grams: float, negative: bool = False) -> bytes:
        value = _in_unit(grams, unit, decimals)
        sign = "-" if value < 0 or negative else "+"
        return f"{stability},{kind},{sign}{abs(value):>7}{unit}\r\n".encode("ascii")

    if overload or underload:
        return line("OL", "NT" if net else "GS", 0.0, negative=underload)
    prefix = line("ST", "TR", tare_g) if net and tare_g else b""
    return prefix + line("ST" if stable else "US", "NT" if net else "GS", weight_g)
