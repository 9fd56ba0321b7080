"""A scale on a serial line (or anything ``serial_for_url`` opens), as the checkout's ``Scale``.

:class:`SerialScale` is the transport half: a background thread owns the port, sends the
protocol's polls and commands, feeds what arrives to the :class:`ScaleProtocol` and keeps the
latest frame. ``read()`` never touches the port, so the checkout's loop never blocks on a
scale. When the cable is pulled or the USB adapter vanishes, the thread notices (the port
raises), reports the scale disconnected and keeps reopening the port; when the scale comes
back, readings resume without anyone restarting anything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import serial

from terminal.core.ports import ScaleReading
from terminal.devices.scale.frames import ScaleDisconnectedError, ScaleError, ScaleFrame
from terminal.devices.scale.protocol import ScaleProtocol
from terminal.devices.scale.registry import make_protocol

logger = logging.getLogger(__name__)

# Errors a port raises when the device is gone or unusable. SerialException subclasses
# OSError in pyserial 3.5; both are named in case a transport raises a plain OSError.
_PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError)
# Opening also raises ValueError for settings the port refuses (a baud rate, a bad URL).
_OPEN_ERRORS: tuple[type[BaseException], ...] = (*_PORT_ERRORS, ValueError)


class SerialPortLike(Protocol):
    """The part of a pyserial port the driver uses."""

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ScaleStatus:
    """What a technician needs to see about a scale, e.g. on the service screen.

    Attributes:
        url: the port the driver opens.
        protocol: the protocol's name.
        connected: the port is open and working.
        frames_ok: well-formed frames received since start.
        frames_bad: malformed frames skipped since start (noise, wrong settings).
        bytes_discarded: bytes outside any frame since start.
        reconnects: times the port was reopened after being lost.
        last_error: the last problem seen (port error, bad frame, error reply), or None.
        last_reading_age_s: seconds since the last weight frame, None if none yet.
    """

    url: str
    protocol: str
    connected: bool
    frames_ok: int
    frames_bad: int
    bytes_discarded: int
    reconnects: int
    last_error: str | None
    last_reading_age_s: float | None


class SerialScale:
    """A scale read over ``serial_for_url``: a device path, ``loop://``, ``socket://host:port``.

    The reader thread starts at construction; call :meth:`close` (or use ``with``) to stop it.

    Args:
        url: the port: ``/dev/ttyUSB0``, a pty path, ``socket://10.0.0.5:4001``, ``loop://``.
        protocol: a :class:`ScaleProtocol`, or its registry name with default options.
        baudrate: line speed, as set on the indicator.
        bytesize: data bits (8; 7E1 Toledo terminals also read fine at 8N1).
        parity: ``"N"``, ``"E"`` or ``"O"``.
        stopbits: 1 or 2.
        timeout_s: the longest a port read or write may block the reader thread.
        poll_interval_s: how often a polled protocol is asked for a weight.
        reconnect_after_s: how long to wait between attempts to reopen a lost port.
        stale_after_s: a reading older than this counts as no reading.
        open_port: opens the port (``serial.serial_for_url`` signature); tests inject one.
        clock: wall-clock time stamped on readings.
    """

    def __init__(
        self,
        url: str,
        protocol: ScaleProtocol | str,
        *,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: float = 1,
        timeout_s: float = 0.2,
        poll_interval_s: float = 0.1,
        reconnect_after_s: float = 1.0,
        stale_after_s: float = 1.0,
        open_port: Callable[..., SerialPortLike] = serial.serial_for_url,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.protocol = make_protocol(protocol) if isinstance(protocol, str) else protocol
        # A polled protocol must come back to poll on time, so its reads block no longer.
        polled = self.protocol.poll_request() is not None
        self._read_timeout_s = min(timeout_s, poll_interval_s) if polled else timeout_s
        self._port_options: dict[str, object] = {
            "baudrate": baudrate,
            "bytesize": bytesize,
            "parity": parity,
            "stopbits": stopbits,
            "timeout": self._read_timeout_s,
            "write_timeout": timeout_s,
        }
        self.poll_interval_s = poll_interval_s
        self.reconnect_after_s = reconnect_after_s
        self.stale_after_s = stale_after_s
        self._open_port = open_port
        self._clock = clock

        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._commands: deque[bytes] = deque()
        self._connected = False
        self._ever_connected = False
        self._closed = False
        self._reconnects = 0
        self._port_error: str | None = None
        self._latest: ScaleFrame | None = None
        self._latest_at = 0.0  # monotonic, for staleness
        self._latest_wall = 0.0  # wall clock, for the reading's timestamp
        self._next_poll = 0.0
        self._thread = threading.Thread(
            target=self._run, name=f"scale {self.protocol.name} {url}", daemon=True
        )
        self._thread.start()

    # -- the checkout's side -------------------------------------------------------------

    def read(self) -> ScaleReading:
        """The latest weight as the checkout sees it.

        A net frame becomes gross (net + tare) when the tare is known; otherwise the
        displayed weight is taken as gross. Grams are rounded to whole grams.

        Raises:
            ScaleDisconnectedError: the port is gone, or no valid weight arrived within
                ``stale_after_s``; the message says what to check.
        """
        with self._lock:
            if self._closed:
                raise ScaleDisconnectedError(f"scale on {self.url} was closed by the terminal")
            if not self._connected:
                raise ScaleDisconnectedError(
                    f"scale on {self.url} is not connected: {self._port_error or 'opening'}"
                )
            frame = self._latest
            age = time.monotonic() - self._latest_at
            wall = self._latest_wall
        if frame is None or age > self.stale_after_s:
            raise ScaleDisconnectedError(self._silence_message())
        return frame_to_reading(frame, wall)

    def tare(self) -> None:
        """Ask the scale to tare (send the protocol's tare command).

        Raises:
            ScaleError: the protocol has no tare command.
            ScaleDisconnectedError: the scale is not connected now.
        """
        self._send_command(self.protocol.tare_command(), "tare")

    def zero(self) -> None:
        """Ask the scale to set zero (send the protocol's zero command).

        Raises:
            ScaleError: the protocol has no zero command.
            ScaleDisconnectedError: the scale is not connected now.
        """
        self._send_command(self.protocol.zero_command(), "zero")

    def status(self) -> ScaleStatus:
        """Counters and health of the link, for the service screen and the logs."""
        with self._lock:
            age = time.monotonic() - self._latest_at if self._latest is not None else None
            return ScaleStatus(
                url=self.url,
                protocol=self.protocol.name,
                connected=self._connected,
                frames_ok=self.protocol.frames_ok,
                frames_bad=self.protocol.frames_bad,
                bytes_discarded=self.protocol.bytes_discarded,
                reconnects=self._reconnects,
                last_error=self._port_error or self.protocol.last_error,
                last_reading_age_s=age,
            )

    def close(self) -> None:
        """Stop the reader thread and close the port. Reading afterwards raises."""
        self._stop.set()
        self._thread.join(timeout=self._read_timeout_s + 2.0)
        with self._lock:
            self._closed = True
            self._connected = False

    def __enter__(self) -> SerialScale:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _send_command(self, command: bytes | None, what: str) -> None:
        if command is None:
            raise ScaleError(
                f"protocol {self.protocol.name} has no {what} command; "
                f"use the {what} key on the scale's indicator"
            )
        with self._lock:
            if not self._connected:
                raise ScaleDisconnectedError(
                    f"cannot {what}: scale on {self.url} is not connected "
                    f"({self._port_error or 'opening'})"
                )
            self._commands.append(command)
        logger.info("scale %s: %s requested", self.url, what)

    def _silence_message(self) -> str:
        status = self.status()
        message = (
            f"no valid weight from the {status.protocol} scale on {self.url} within "
            f"{self.stale_after_s:g} s ({status.frames_ok} frames ok, {status.frames_bad} bad, "
            f"{status.bytes_discarded} stray bytes): check that the indicator is on and set to "
            f"this protocol and baud rate"
        )
        if status.last_error:
            message += f"; last problem: {status.last_error}"
        return message

    # -- the reader thread ---------------------------------------------------------------

    def _run(self) -> None:
        port: SerialPortLike | None = None
        while not self._stop.is_set():
            if port is None:
                port = self._open()
                if port is None:
                    self._stop.wait(self.reconnect_after_s)
                    continue
            try:
                self._service(port)
            except _PORT_ERRORS as exc:
                self._lost(port, exc)
                port = None
                self._stop.wait(self.reconnect_after_s)
            except Exception as exc:
                # A bug must not kill the only thread that reads the scale: log it with its
                # traceback and start over with a fresh port, as after an unplug.
                logger.exception("scale reader for %s failed; reopening the port", self.url)
                self._lost(port, exc)
                port = None
                self._stop.wait(self.reconnect_after_s)
        if port is not None:
            _close_quietly(port)
        logger.debug("scale reader for %s stopped", self.url)

    def _open(self) -> SerialPortLike | None:
        try:
            port = self._open_port(self.url, **self._port_options)
        except _OPEN_ERRORS as exc:
            message = (
                f"cannot open scale port {self.url}: {exc}; check that the scale is plugged "
                f"in and powered and that the port is right (retrying every "
                f"{self.reconnect_after_s:g} s)"
            )
            with self._lock:
                first = message != self._port_error
                self._port_error = message
                self._connected = False
            # Say it once per new problem, not once per retry.
            (logger.warning if first else logger.debug)("%s", message)
            return None
        self.protocol.reset()
        try:
            hello = self.protocol.connect_request()
            if hello:
                port.write(hello)
        except _PORT_ERRORS as exc:
            self._lost(port, exc)
            return None
        with self._lock:
            if self._ever_connected:
                self._reconnects += 1
            self._ever_connected = True
            self._connected = True
            self._port_error = None
            self._latest = None
            self._next_poll = 0.0
        logger.info("scale port %s open (%s)", self.url, self.protocol.name)
        return port

    def _service(self, port: SerialPortLike) -> None:
        poll = self.protocol.poll_request()
        now = time.monotonic()
        if poll is not None and now >= self._next_poll:
            port.write(poll)
            self._next_poll = now + self.poll_interval_s
        while True:
            with self._lock:
                command = self._commands.popleft() if self._commands else None
            if command is None:
                break
            port.write(command)
        waiting = port.in_waiting
        data = port.read(waiting if waiting > 0 else 1)
        if not data:
            return
        frames = self.protocol.feed(data)
        reply = self.protocol.pending_writes()
        if reply:
            port.write(reply)
        if frames:
            with self._lock:
                self._latest = frames[-1]
                self._latest_at = time.monotonic()
                self._latest_wall = self._clock()

    def _lost(self, port: SerialPortLike, exc: BaseException) -> None:
        _close_quietly(port)
        message = (
            f"scale port {self.url} lost: {exc}; check the cable and the scale's power "
            f"(reconnecting every {self.reconnect_after_s:g} s)"
        )
        with self._lock:
            self._connected = False
            self._port_error = message
            self._latest = None
            self._commands.clear()
        logger.warning("%s", message)


def frame_to_reading(frame: ScaleFrame, timestamp: float) -> ScaleReading:
    """The checkout's view of a frame: gross whole grams, stability and range flags.

    Args:
        frame: the decoded frame.
        timestamp: when it arrived (wall clock).
    """
    gross_g = frame.weight_g
    if frame.net and frame.tare_g is not None:
        gross_g += frame.tare_g
    return ScaleReading(
        gross_g=round(gross_g),
        stable=frame.stable,
        timestamp=timestamp,
        overload=frame.overload,
        underload=frame.underload,
    )


def _close_quietly(port: SerialPortLike) -> None:
    try:
        port.close()
    except _PORT_ERRORS as exc:  # a vanished device may fail to close; it is gone anyway
        logger.debug("closing a lost scale port failed: %s", exc)
