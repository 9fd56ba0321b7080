"""The wire-protocol half of a scale driver, kept apart from the transport.

A :class:`ScaleProtocol` turns bytes from the indicator into :class:`ScaleFrame` objects and says
which bytes to send (polls, tare and zero commands, handshake replies). It never touches a port,
so it is tested with exact bytes and reused over a serial line, a pty or a TCP socket.

Bytes may arrive split anywhere or several frames at once; a malformed frame is counted in
``frames_bad``, described in ``last_error`` and skipped, never raised out of :meth:`feed`,
because one noisy byte on a canteen cable must not stop the checkout.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from typing import ClassVar

from terminal.devices.scale.frames import ScaleFrame, ScaleProtocolError

logger = logging.getLogger(__name__)

#: The most bytes a protocol keeps while waiting for the end of a frame.
MAX_BUFFER_BYTES = 4096


class ScaleProtocol(ABC):
    """Decoder and command builder of one scale wire protocol.

    Attributes:
        frames_ok: well-formed frames received (weights and other replies).
        frames_bad: malformed, truncated or checksum-failed frames skipped.
        bytes_discarded: bytes outside any frame (noise, wrong baud rate, other traffic).
        last_error: what was wrong with the last bad frame, or the last error the scale
            reported; None while all is well.
    """

    name: ClassVar[str]

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pending = bytearray()
        self.frames_ok = 0
        self.frames_bad = 0
        self.bytes_discarded = 0
        self.last_error: str | None = None

    def connect_request(self) -> bytes | None:
        """Bytes to send once each time the port is (re)opened, or None."""
        return None

    def poll_request(self) -> bytes | None:
        """Bytes to send to ask for a weight, or None for a scale that streams on its own."""
        return None

    def tare_command(self) -> bytes | None:
        """Bytes that make the scale tare, or None when the protocol has no such command."""
        return None

    def zero_command(self) -> bytes | None:
        """Bytes that make the scale zero, or None when the protocol has no such command."""
        return None

    @abstractmethod
    def feed(self, data: bytes) -> list[ScaleFrame]:
        """Take bytes from the wire; return the weight frames they complete, oldest first."""

    def pending_writes(self) -> bytes:
        """Bytes the protocol wants sent now (handshake replies); the driver flushes them."""
        out = bytes(self._pending)
        self._pending.clear()
        return out

    def reset(self) -> None:
        """Forget a half-received frame, e.g. after the port was reopened. Counters stay."""
        self._buffer.clear()
        self._pending.clear()

    def _reject(self, error: ScaleProtocolError | str, raw: bytes) -> None:
        self.frames_bad += 1
        self.last_error = str(error)
        logger.debug("%s: skipped bad frame %r: %s", self.name, raw, error)

    def _accept(self) -> None:
        self.frames_ok += 1


class LineProtocol(ScaleProtocol):
    """A protocol of ASCII lines ended by LF (CR LF in practice).

    Subclasses give ``_line_start``, a pattern of where a frame may begin, used to resync
    when noise precedes a frame on the same line, and ``_parse_line``.
    """

    _line_start: ClassVar[re.Pattern[bytes]]
    #: The longest line kept while waiting for LF; no real frame is close to it.
    max_line_bytes: ClassVar[int] = 128

    def feed(self, data: bytes) -> list[ScaleFrame]:
        self._buffer += data
        frames: list[ScaleFrame] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            frame = self._handle_line(line)
            if frame is not None:
                frames.append(frame)
        if len(self._buffer) > min(self.max_line_bytes, MAX_BUFFER_BYTES):
            self._overflow()
        return frames

    def _overflow(self) -> None:
        # No frame is this long without its LF: what we hold is noise. Keep a short tail in
        # case a real frame has begun inside it.
        keep = 32
        dropped = len(self._buffer) - keep
        self.bytes_discarded += dropped
        self._reject(
            f"{dropped} bytes without a line end: check the baud rate and that the scale is "
            f"set to the {self.name} protocol",
            bytes(self._buffer[:16]),
        )
        del self._buffer[:dropped]

    def _handle_line(self, line: bytes) -> ScaleFrame | None:
        if len(line) > self.max_line_bytes:
            # A frame is short, so only the end of a long line can hold one; looking at the
            # rest would only cost time.
            dropped = len(line) - self.max_line_bytes
            self.bytes_discarded += dropped
            line = line[dropped:]
        body = line.rstrip(b"\r\n")
        if not body.strip():
            return None
        error: ScaleProtocolError | None = None
        # Try the line as a whole first, then each later place a frame could begin: noise
        # before a frame (a half frame from before a reconnect, line noise) must not cost the
        # frame itself.
        candidates = [0] + [m.start() for m in self._line_start.finditer(body) if m.start() > 0]
        for start in candidates:
            try:
                frame = self._parse_line(body[start:], line[start:])
            except ScaleProtocolError as exc:
                if error is None:
                    error = exc
                continue
            self.bytes_discarded += start
            self._accept()
            return frame
        self._reject(error or ScaleProtocolError("empty line"), line)
        return None

    @abstractmethod
    def _parse_line(self, body: bytes, raw: bytes) -> ScaleFrame | None:
        """Decode one line without its line end; None for a valid reply that is no weight.

        Raises:
            ScaleProtocolError: the line is not a frame of this protocol.
        """


class FixedFrameProtocol(ScaleProtocol):
    """A binary protocol of fixed-length frames that begin with a fixed start sequence.

    Subclasses give ``_start``, ``_frame_length()``, ``_prefix_error`` (checks the bytes
    received so far, so a false start is dropped without waiting for a full frame) and
    ``_parse_frame``. A candidate that fails is skipped by one byte only, so a real frame
    that begins inside it is still found.
    """

    _start: ClassVar[bytes]

    @abstractmethod
    def _frame_length(self) -> int:
        """The length of a whole frame, start to end."""

    @abstractmethod
    def _prefix_error(self, candidate: bytes) -> str | None:
        """What is wrong with the first bytes of a frame, or None while they could be one."""

    @abstractmethod
    def _parse_frame(self, frame: bytes) -> ScaleFrame | None:
        """Decode one whole frame; None for a valid frame that carries no weight.

        Raises:
            ScaleProtocolError: the frame is malformed or fails its check.
        """

    def _stray_byte(self, byte: int) -> bool:
        """Handle a byte outside any frame; True when it meant something (a handshake)."""
        return False

    def feed(self, data: bytes) -> list[ScaleFrame]:
        self._buffer += data
        frames: list[ScaleFrame] = []
        buf = self._buffer
        length = self._frame_length()
        start = self._start
        i = 0
        while i < len(buf):
            tail = bytes(buf[i : i + length])
            if tail[: len(start)] == start[: len(tail)]:
                if len(tail) < len(start):
                    break  # the start sequence itself is still arriving
                problem = self._prefix_error(tail)
                if problem is not None:
                    self._reject(problem, tail)
                    i += 1
                    continue
                if len(tail) < length:
                    break  # a plausible frame, still arriving
                try:
                    frame = self._parse_frame(tail)
                except ScaleProtocolError as exc:
                    self._reject(exc, tail)
                    i += 1
                    continue
                self._accept()
                if frame is not None:
                    frames.append(frame)
                i += length
                continue
            if not self._stray_byte(buf[i]):
                self.bytes_discarded += 1
            i += 1
        del buf[:i]
        if len(buf) > MAX_BUFFER_BYTES:  # pragma: no cover - a candidate never grows past length
            self.bytes_discarded += len(buf)
            buf.clear()
        return frames
