"""Meal-card ids: one canonical form for every reader output, debouncing, and a serial reader.

Card readers print the same Mifare UID in many ways, depending on the model and its DIP switches.
:func:`normalise_uid` turns each of them into one canonical id, uppercase hex of the UID bytes,
most significant byte first, so an account enrolled through one reader is found through another.

Card UID bytes ``04 A1 B2 C3`` as each format prints it (separators ":", "-", " " allowed between
hex bytes, any case):

| uid_format  | reader prints    | rule                                          | canonical      |
|-------------|------------------|-----------------------------------------------|----------------|
| hex, auto   | 04a1b2c3         | 8 hex: the 4 UID bytes ("8H")                 | 04A1B2C3       |
| hex, auto   | 04:A1:B2:C3      | hex bytes split by separators                 | 04A1B2C3       |
| hex, auto   | 04A1B2C3D4E580   | 14 hex: a 7-byte UID                          | 04A1B2C3D4E580 |
| hex, auto   | 0004A1B2C3       | 10 hex: the first byte is a prefix (a 00 pad  | 04A1B2C3       |
|             | 1A04A1B2C3       | or an EM4100 version byte) and is dropped, as |                |
|             |                  | 8H and 10D readers drop it                    |                |
| dec10, auto | 0077705923       | 10 decimal: the 32-bit UID ("10D")            | 04A1B2C3       |
| w26         | 16145763         | 8 decimal: facility 000-255 + card number     | W26:A1B2C3     |
|             |                  | 00000-65535 ("8D", Wiegand-26): only the low  |                |
|             |                  | 3 bytes survive                               |                |

``byte_order="lsb"`` is for readers that emit the UID bytes reversed (``C3B2A104``, or
``3283263748`` in decimal): the bytes, after any 10-hex prefix, are reversed back. It is a reader
setting, never guessed: the same bytes are a valid UID either way round. A W26 reader with
reversed bytes keeps a different 24 bits of the UID (``17841220`` gives ``W26:04A1B2``).

Ambiguities, and the rules chosen for ``uid_format="auto"``:

* An all-decimal string of 8 digits is read as **hex**, never as W26: a hex reader prints an
  all-decimal UID for about 1 card in 40, and misreading those silently would lock out a few
  diners at random, whereas a W26 reader misread as hex fails for every card on the first day.
  Readers set to W26 ("8D") output need ``uid_format="w26"``.
* An all-decimal string of 10 digits is read as **decimal** (10D, the most common wedge output).
  Readers printing a ``00``-padded hex UID need ``uid_format="hex"``, or about 1 card in 40
  would be misread.

Two formats of the same card meet at one canonical id only when they carry the same bits: 8-hex,
10-hex and 10-decimal of a 4-byte UID all give ``04A1B2C3``; a W26 reading keeps 24 bits and is
tagged ``W26:`` so it can never collide with a full UID. Every reader of a canteen must therefore
be set to one output family: W26 everywhere, or full UIDs everywhere.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal, Protocol, Self

import serial

from terminal.core.ports import CardTap

logger = logging.getLogger(__name__)

ByteOrder = Literal["msb", "lsb"]
UidFormat = Literal["auto", "hex", "dec10", "w26"]
SerialProtocol = Literal["line", "frame"]

ACCEPTED_FORMATS = (
    "8 or 14 hex digits (optionally split by ':', '-' or ' '), "
    "10 hex digits (a prefix byte + 4 UID bytes), 10 decimal digits (0-4294967295), "
    "or with uid_format='w26' 8 decimal digits (facility 000-255 + card 00000-65535)"
)
_SEPARATORS = re.compile(r"[:\- ]")
_HEX = re.compile(r"[0-9A-F]+")
_BYTE_ORDERS = ("msb", "lsb")
_UID_FORMATS = ("auto", "hex", "dec10", "w26")


class CardFormatError(ValueError):
    """A card reader produced something that is not a card id in any accepted format."""


class CardReaderError(RuntimeError):
    """A card reader cannot be used; the message says what a technician should check."""


def normalise_uid(
    raw: str, *, byte_order: ByteOrder = "msb", uid_format: UidFormat = "auto"
) -> str:
    """The canonical id of a card, from any of the reader outputs in the module's table.

    Args:
        raw: what the reader printed or typed, without the terminating CR/LF/Enter.
        byte_order: "lsb" for readers that emit the UID bytes reversed.
        uid_format: the reader's output format; "auto" decides by length and digits.

    Returns:
        Uppercase hex of the UID bytes, most significant first; "W26:" and 6 hex for W26.

    Raises:
        CardFormatError: ``raw`` fits no accepted format; the message names it and them.
        ValueError: an unknown ``byte_order`` or ``uid_format`` (a configuration mistake).
    """
    check_uid_settings(byte_order, uid_format)
    text = raw.strip().upper()
    separated = bool(_SEPARATORS.search(text))
    if separated:
        groups = _SEPARATORS.split(text)
        # Separators only ever split bytes; "04A1:B2C3" is a typo, not a format.
        if any(len(group) != 2 for group in groups):
            raise _format_error(raw, "separators must split the hex into 2-digit bytes")
        text = "".join(groups)
    if not text or not _HEX.fullmatch(text):
        raise _format_error(raw, "it holds characters other than hex digits")

    decimal = text.isdigit() and not separated
    if uid_format == "w26":
        if not (decimal and len(text) == 8):
            raise _format_error(raw, "a W26 reader prints exactly 8 decimal digits")
        return "W26:" + _w26_bytes(raw, text, byte_order).hex().upper()
    if uid_format == "dec10" or (uid_format == "auto" and decimal and len(text) == 10):
        if not (decimal and len(text) == 10):
            raise _format_error(raw, "a 10D reader prints exactly 10 decimal digits")
        value = int(text)
        if value > 0xFFFFFFFF:
            raise _format_error(raw, "10 decimal digits above 4294967295 fit no 4-byte UID")
        return _ordered(value.to_bytes(4, "big"), byte_order).hex().upper()
    # "hex", or "auto" for everything that is not 10 decimal digits.
    if len(text) in (8, 14):
        return _ordered(bytes.fromhex(text), byte_order).hex().upper()
    if len(text) == 10:
        return _ordered(bytes.fromhex(text[2:]), byte_order).hex().upper()
    raise _format_error(raw, f"{len(text)} digits is no UID length")


def check_uid_settings(byte_order: str, uid_format: str) -> None:
    """Reject a reader configuration naming an unknown byte order or UID format.

    Raises:
        ValueError: naming the setting and the values it accepts.
    """
    if byte_order not in _BYTE_ORDERS:
        raise ValueError(f"byte_order must be one of {_BYTE_ORDERS}, got {byte_order!r}")
    if uid_format not in _UID_FORMATS:
        raise ValueError(f"uid_format must be one of {_UID_FORMATS}, got {uid_format!r}")


def _ordered(uid: bytes, byte_order: ByteOrder) -> bytes:
    return uid[::-1] if byte_order == "lsb" else uid


def _w26_bytes(raw: str, digits: str, byte_order: ByteOrder) -> bytes:
    facility, number = int(digits[:3]), int(digits[3:])
    if facility > 0xFF or number > 0xFFFF:
        raise _format_error(raw, "W26 facility must be 000-255 and card number 00000-65535")
    return _ordered(bytes([facility]) + number.to_bytes(2, "big"), byte_order)


def _format_error(raw: str, why: str) -> CardFormatError:
    return CardFormatError(
        f"card number {raw!r} is not a meal-card id ({why}); accepted: {ACCEPTED_FORMATS}"
    )


class Debouncer:
    """Drops repeats of the same card: readers re-send a card for as long as it rests on them.

    Args:
        window_s: a card seen again within this of its last accepted tap is dropped.
        extend_on_repeat: measure the window from the last *sighting* instead, so a card left
            on the reader for minutes gives one tap, not one every ``window_s``.
    """

    def __init__(self, window_s: float = 1.5, *, extend_on_repeat: bool = False) -> None:
        if window_s < 0:
            raise ValueError(f"Debouncer.window_s must not be negative, got {window_s!r}")
        self.window_s = window_s
        self.extend_on_repeat = extend_on_repeat
        self._last: dict[str, float] = {}
        self.dropped = 0

    def accept(self, card_id: str, timestamp: float) -> bool:
        """Whether this read of ``card_id`` is a new tap (True) or a repeat to drop (False)."""
        # Forget old cards so a day of taps does not grow the table.
        for stale in [c for c, ts in self._last.items() if timestamp - ts > self.window_s]:
            del self._last[stale]
        last = self._last.get(card_id)
        if last is not None and 0 <= timestamp - last <= self.window_s:
            self.dropped += 1
            if self.extend_on_repeat:
                self._last[card_id] = timestamp
            return False
        self._last[card_id] = timestamp
        return True


# -- serial wire protocols: bytes in, raw card numbers out, no I/O ---------------------------

STX, ETX, CR, LF = 0x02, 0x03, 0x0D, 0x0A


class LineProtocol:
    """ASCII card numbers ended by CR and/or LF, as most USB-serial readers send them.

    Args:
        max_line: longest line kept; a longer run without a line end is garbage.
    """

    def __init__(self, max_line: int = 32) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._overflowed = False
        self.bad_frames = 0

    def feed(self, data: bytes) -> list[str]:
        """Take received bytes; return the complete lines, decoded, empty ones skipped."""
        lines: list[str] = []
        for byte in data:
            if byte in (CR, LF):
                if self._overflowed:
                    self._overflowed = False
                elif self._buffer:
                    lines.append(self._buffer.decode("ascii", "replace"))
                self._buffer.clear()
            elif byte in (STX, ETX):
                # Some "line" readers frame each line in STX/ETX as well; they carry nothing.
                continue
            elif len(self._buffer) >= self.max_line:
                if not self._overflowed:
                    self.bad_frames += 1
                    logger.warning("card reader line longer than %d bytes dropped", self.max_line)
                self._overflowed = True
                self._buffer.clear()
            elif not self._overflowed:
                self._buffer.append(byte)
        return lines


def frame_checksum(data: bytes) -> int:
    """The XOR of the data bytes, as RDM6300/EM4100 readers compute it."""
    check = 0
    for byte in data:
        check ^= byte
    return check


def encode_frame(data_hex: str) -> bytes:
    """The frame an EM4100-style reader sends for 5 data bytes, with its checksum.

    Args:
        data_hex: 10 hex digits: a version/prefix byte and the 4 card bytes.
    """
    data = bytes.fromhex(data_hex)
    if len(data) != 5:
        raise ValueError(f"an EM4100 frame carries 5 data bytes, got {data_hex!r}")
    body = data.hex().upper() + f"{frame_checksum(data):02X}"
    return bytes([STX]) + body.encode("ascii") + b"\r\n" + bytes([ETX])


class FrameProtocol:
    """``STX <10 hex> <2 hex XOR checksum> [CR LF] ETX`` frames of 125 kHz (RDM6300-style) readers.

    A frame whose checksum fails, or whose body is not 12 hex digits, is counted in
    ``bad_frames`` and skipped; bytes outside a frame are line noise and are ignored.
    """

    max_frame = 32

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._in_frame = False
        self.bad_frames = 0

    def feed(self, data: bytes) -> list[str]:
        """Take received bytes; return the 10 hex data digits of each sound frame."""
        numbers: list[str] = []
        for byte in data:
            if byte == STX:
                if self._in_frame:
                    self._bad("a frame started before the previous one ended")
                self._in_frame = True
                self._buffer.clear()
            elif not self._in_frame:
                continue
            elif byte == ETX:
                self._in_frame = False
                number = self._check(bytes(self._buffer))
                if number is not None:
                    numbers.append(number)
            elif len(self._buffer) >= self.max_frame:
                self._in_frame = False
                self._bad(f"a frame longer than {self.max_frame} bytes")
            else:
                self._buffer.append(byte)
        return numbers

    def _check(self, body: bytes) -> str | None:
        text = body.strip(b"\r\n").decode("ascii", "replace").upper()
        if len(text) != 12 or not _HEX.fullmatch(text):
            self._bad(f"frame body {text!r} is not 12 hex digits")
            return None
        data = bytes.fromhex(text[:10])
        if frame_checksum(data) != int(text[10:], 16):
            self._bad(f"frame {text!r} fails its checksum")
            return None
        return text[:10]

    def _bad(self, why: str) -> None:
        self.bad_frames += 1
        logger.warning("card reader frame dropped: %s", why)


# -- the serial reader ------------------------------------------------------------------------


class SerialPortLike(Protocol):
    """What :class:`SerialCardReader` uses of a pyserial port."""

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def close(self) -> None: ...


class BackgroundReader:
    """A card reader whose thread queues taps; ``poll`` hands them out oldest first.

    Subclasses set ``_thread``, ``_stop``, ``_lock`` and ``_taps`` in their constructor, read in
    ``_run`` and may open or release their device in ``_on_start`` / ``_on_stop``.
    """

    _thread: threading.Thread | None
    _stop: threading.Event
    _lock: threading.Lock
    _taps: deque[CardTap]

    @property
    def thread_name(self) -> str:
        return type(self).__name__

    def _run(self) -> None:
        raise NotImplementedError

    def _on_start(self) -> None:
        """Called before the thread starts; may raise to refuse the start."""

    def _on_stop(self) -> None:
        """Called once the thread has been asked to stop."""

    def start(self) -> None:
        """Start the reading thread (idempotent; :meth:`poll` calls it)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._on_start()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop the thread and release the device."""
        self._stop.set()
        self._on_stop()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("%s did not stop in %.1f s", self.thread_name, timeout_s)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def poll(self) -> CardTap | None:
        """The oldest tap not yet polled, or None; starts the reader on first use."""
        self.start()
        with self._lock:
            return self._taps.popleft() if self._taps else None


class SerialCardReader(BackgroundReader):
    """A card reader on a serial port (or any ``serial_for_url`` URL), read in the background.

    A thread reads the port, decodes cards with the chosen wire protocol, drops repeats with a
    :class:`Debouncer` and queues the taps for :meth:`poll`. When the port goes away (a USB
    reader unplugged) it is reopened every ``reconnect_s`` until it is back.

    Args:
        url: a device path or pyserial URL ("/dev/ttyUSB0", "loop://", "socket://host:port").
        baudrate: the reader's baud rate.
        protocol: "line" (ASCII number + CR/LF) or "frame" (STX/ETX EM4100 frames).
        byte_order: "lsb" when the reader emits UID bytes reversed.
        uid_format: how to read "line" numbers (see :func:`normalise_uid`); frames are hex.
        debounce_s: repeats of a card within this are dropped.
        open_port: opens the port; ``serial.serial_for_url`` unless a test injects a fake.
        clock: the time stamped on taps.
        queue_size: taps kept when nobody polls; the oldest are dropped beyond it.
        reconnect_s: pause between attempts to reopen a lost port.
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 9600,
        protocol: SerialProtocol = "line",
        byte_order: ByteOrder = "msb",
        uid_format: UidFormat = "auto",
        debounce_s: float = 1.5,
        open_port: Callable[..., SerialPortLike] = serial.serial_for_url,
        clock: Callable[[], float] = time.time,
        queue_size: int = 16,
        reconnect_s: float = 1.0,
    ) -> None:
        if protocol not in ("line", "frame"):
            raise ValueError(f"card reader protocol must be 'line' or 'frame', got {protocol!r}")
        # Settings are checked now rather than on the first diner's card.
        check_uid_settings(byte_order, uid_format)
        self.url = url
        self.baudrate = baudrate
        self.protocol = protocol
        self.byte_order: ByteOrder = byte_order
        self.uid_format: UidFormat = uid_format
        self.reconnect_s = reconnect_s
        self._open_port = open_port
        self._clock = clock
        # A card left resting on the reader is one tap, not one every few seconds: it must not
        # pay for the next diner's tray.
        self._debouncer = Debouncer(debounce_s, extend_on_repeat=True)
        self._decoder: LineProtocol | FrameProtocol = (
            LineProtocol() if protocol == "line" else FrameProtocol()
        )
        self._taps: deque[CardTap] = deque()
        self._queue_size = queue_size
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self.bad_numbers = 0
        self.dropped_taps = 0
        self.reconnects = 0

    # -- public API ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the port is open right now."""
        return self._connected.is_set()

    @property
    def bad_frames(self) -> int:
        """Garbage on the wire: bad checksums, malformed frames, over-long lines, bad numbers."""
        return self._decoder.bad_frames + self.bad_numbers

    @property
    def repeats_dropped(self) -> int:
        """Reads dropped as repeats of a card still on the reader."""
        return self._debouncer.dropped

    @property
    def thread_name(self) -> str:
        return f"card-reader {self.url}"

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until the port is open or ``timeout_s`` passed; for start-up checks and tests."""
        return self._connected.wait(timeout_s)

    # -- decoding (no I/O) ----------------------------------------------------------------

    def feed(self, data: bytes) -> list[CardTap]:
        """Decode received bytes into new taps and queue them; the reading thread calls this."""
        taps: list[CardTap] = []
        for number in self._decoder.feed(data):
            try:
                card_id = normalise_uid(
                    number,
                    byte_order=self.byte_order,
                    # A frame's 10 digits are hex by definition, even when all are decimal.
                    uid_format="hex" if self.protocol == "frame" else self.uid_format,
                )
            except CardFormatError as error:
                self.bad_numbers += 1
                logger.warning("card reader on %s: %s", self.url, error)
                continue
            timestamp = self._clock()
            if not self._debouncer.accept(card_id, timestamp):
                continue
            tap = CardTap(card_id, timestamp)
            taps.append(tap)
            with self._lock:
                if len(self._taps) >= self._queue_size:
                    # Nobody is polling; the newest taps are the ones a diner waits on.
                    self._taps.popleft()
                    self.dropped_taps += 1
                self._taps.append(tap)
        return taps

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        reported_down = False
        while not self._stop.is_set():
            try:
                port = self._open_port(self.url, baudrate=self.baudrate, timeout=0.1)
            except (serial.SerialException, OSError, ValueError) as error:
                if not reported_down:
                    logger.error(
                        "card reader %s cannot be opened (%s); check the cable and the port "
                        "name, and that the user may open it (the dialout group); retrying",
                        self.url,
                        error,
                    )
                    reported_down = True
                self._stop.wait(self.reconnect_s)
                continue
            if reported_down or self.reconnects:
                logger.info("card reader %s is back", self.url)
            reported_down = False
            self._connected.set()
            try:
                self._read_until_lost(port)
            finally:
                self._connected.clear()
                try:
                    port.close()
                except (serial.SerialException, OSError):
                    logger.debug("closing the lost port %s failed", self.url, exc_info=True)
            if not self._stop.is_set():
                self.reconnects += 1
                self._stop.wait(self.reconnect_s)

    def _read_until_lost(self, port: SerialPortLike) -> None:
        while not self._stop.is_set():
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError) as error:
                logger.warning("card reader %s lost (%s); reconnecting", self.url, error)
                return
            if data:
                self.feed(data)
