"""SerialScale over real ptys: the test plays the indicator byte for byte on the other end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import serial

from terminal.core.ports import Scale, ScaleReading
from terminal.devices.scale import (
    AclasOs2Protocol,
    FakeScaleDevice,
    MtSicsProtocol,
    ScaleDisconnectedError,
    ScaleError,
    SerialScale,
)
from terminal.devices.scale.mtsics import MtSicsMode
from tests.devices.conftest import PtyPair

ENQ, ACK, DC1 = b"\x05", b"\x06", b"\x11"
BUDGET_S = 5.0  # generous: the CI box may be busy; no test asserts how fast, only "within"


class IndicatorEnd:
    """The scale's end of the pty pair, scripted with exact bytes.

    It answers each exact request in ``answers`` with its exact reply, streams ``stream``
    every ``interval_s`` if given, and records everything the driver sent.
    """

    def __init__(
        self,
        path: Path,
        answers: dict[bytes, bytes] | None = None,
        stream: bytes | None = None,
        interval_s: float = 0.05,
    ) -> None:
        self.port = serial.Serial(str(path), baudrate=9600, timeout=0.02)
        self.answers = dict(answers or {})
        self.stream = stream
        self.interval_s = interval_s
        self.received = bytearray()
        self.unexpected = bytearray()
        self.transcript: list[tuple[str, bytes]] = []
        self._pending = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def set_answer(self, request: bytes, reply: bytes) -> None:
        with self._lock:
            self.answers[request] = reply

    def set_stream(self, frame: bytes) -> None:
        with self._lock:
            self.stream = frame

    def requests(self) -> list[bytes]:
        with self._lock:
            return [data for who, data in self.transcript if who == "host"]

    def _run(self) -> None:
        next_frame = 0.0
        while not self._stop.is_set():
            try:
                data = self.port.read(self.port.in_waiting or 1)
                with self._lock:
                    self.received += data
                    self._pending += data
                    self._answer()
                    if self.stream is not None and time.monotonic() >= next_frame:
                        self._send(self.stream)
                        next_frame = time.monotonic() + self.interval_s
            except (serial.SerialException, OSError):
                return  # the pty went away under us: that is the unplug test's doing

    def _answer(self) -> None:
        while self._pending:
            pending = bytes(self._pending)
            request = next((r for r in self.answers if pending.startswith(r)), None)
            if request is not None:
                del self._pending[: len(request)]
                self.transcript.append(("host", request))
                self._send(self.answers[request])
            elif any(r.startswith(pending) for r in self.answers):
                return  # a request still arriving
            else:
                self.unexpected.append(self._pending.pop(0))

    def _send(self, data: bytes) -> None:
        if data:
            self.port.write(data)
            self.transcript.append(("scale", data))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.port.close()


Closing = Callable[[SerialScale | IndicatorEnd], None]


def wait_for_reading(
    scale: SerialScale, accept: Callable[[ScaleReading], bool] = lambda r: True
) -> ScaleReading:
    """Read until ``accept`` takes a reading, within the test budget."""
    deadline = time.monotonic() + BUDGET_S
    problem: Exception | None = None
    while time.monotonic() < deadline:
        try:
            reading = scale.read()
        except ScaleDisconnectedError as exc:
            problem = exc
        else:
            if accept(reading):
                return reading
            problem = AssertionError(f"unexpected reading {reading}")
        time.sleep(0.02)
    pytest.fail(f"no expected reading within {BUDGET_S} s: {problem}; {scale.status()}")


def wait_until(condition: Callable[[], bool], budget_s: float = BUDGET_S) -> bool:
    deadline = time.monotonic() + budget_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def weight(grams: int, *, stable: bool = True) -> Callable[[ScaleReading], bool]:
    return lambda r: r.gross_g == grams and r.stable is stable


@pytest.fixture
def closing() -> Iterator[Callable[[SerialScale | IndicatorEnd], None]]:
    """Closes what the test opened even when it fails."""
    opened: list[SerialScale | IndicatorEnd] = []
    yield opened.append
    for thing in reversed(opened):
        thing.close()


# ------------------------------------------------------------------------- MT-SICS


@pytest.mark.parametrize(("mode", "poll"), [("SI", b"SI\r\n"), ("S", b"S\r\n")])
def test_mtsics_polls_reads_the_weight_and_tares(
    pty_pair: PtyPair, closing: Closing, mode: MtSicsMode, poll: bytes
) -> None:
    indicator = IndicatorEnd(
        pty_pair.scale, {poll: b"S S     100.00 g\r\n", b"T\r\n": b"T S     100.00 g\r\n"}
    )
    closing(indicator)
    scale = SerialScale(str(pty_pair.host), MtSicsProtocol(mode=mode), poll_interval_s=0.05)
    closing(scale)
    assert isinstance(scale, Scale)

    reading = wait_for_reading(scale, weight(100))
    assert reading == ScaleReading(gross_g=100, stable=True, timestamp=reading.timestamp)

    # After the tare the scale shows 0.00 g net; the checkout still sees 100 g gross.
    indicator.set_answer(poll, b"S S       0.00 g\r\n")
    scale.tare()
    assert wait_until(lambda: b"T\r\n" in indicator.requests())
    wait_for_reading(scale, lambda r: r.gross_g == 100 and scale.status().frames_ok > 2)
    assert set(indicator.requests()) == {poll, b"T\r\n"}
    assert indicator.requests().count(b"T\r\n") == 1
    assert indicator.unexpected == b""  # byte for byte: nothing but polls and one tare


def test_mtsics_dynamic_then_stable(pty_pair: PtyPair, closing: Closing) -> None:
    indicator = IndicatorEnd(pty_pair.scale, {b"SI\r\n": b"S D     512.30 g\r\n"})
    closing(indicator)
    scale = SerialScale(str(pty_pair.host), "mt-sics", poll_interval_s=0.05)
    closing(scale)
    wait_for_reading(scale, weight(512, stable=False))
    indicator.set_answer(b"SI\r\n", b"S S     498.60 g\r\n")
    wait_for_reading(scale, weight(499))


def test_mtsics_zero_sends_z(pty_pair: PtyPair, closing: Closing) -> None:
    indicator = IndicatorEnd(
        pty_pair.scale, {b"SI\r\n": b"S S       3.00 g\r\n", b"Z\r\n": b"Z A\r\n"}
    )
    closing(indicator)
    scale = SerialScale(str(pty_pair.host), "mt-sics", poll_interval_s=0.05)
    closing(scale)
    wait_for_reading(scale, weight(3))
    scale.zero()
    assert wait_until(lambda: b"Z\r\n" in indicator.requests())
    assert indicator.unexpected == b""


# ------------------------------------------------------------ streaming protocols


@pytest.mark.parametrize(
    ("protocol", "frame", "expected"),
    [
        ("toledo-continuous", b"\x02-0 001500000000\r.", ScaleReading(1500, True, 0.0)),
        ("toledo-continuous", b"\x02-8 001520000000\r$", ScaleReading(1520, False, 0.0)),
        ("toledo-continuous", b"\x02-1 001100000400\r-", ScaleReading(1500, True, 0.0)),
        ("aclas-os2", b"\x01\x02S+01.500kgn\x03\x04", ScaleReading(1500, True, 0.0)),
        ("ascii-line", b"ST,GS,+  1.500kg\r\n", ScaleReading(1500, True, 0.0)),
        ("ascii-line", b"OL,GS,+ ------kg\r\n", ScaleReading(0, False, 0.0, overload=True)),
    ],
    ids=["toledo", "toledo motion", "toledo net+tare", "aclas", "ascii", "ascii overload"],
)
def test_streamed_frames_become_readings_and_nothing_is_sent(
    pty_pair: PtyPair, closing: Closing, protocol: str, frame: bytes, expected: ScaleReading
) -> None:
    indicator = IndicatorEnd(pty_pair.scale, stream=frame)
    closing(indicator)
    scale = SerialScale(str(pty_pair.host), protocol)
    closing(scale)
    reading = wait_for_reading(scale)
    assert reading == ScaleReading(
        expected.gross_g,
        expected.stable,
        reading.timestamp,
        overload=expected.overload,
        underload=expected.underload,
    )
    assert scale.status().frames_bad == 0
    assert indicator.received == b""  # a streaming scale is never written to


def test_aclas_passive_mode_handshake(pty_pair: PtyPair, closing: Closing) -> None:
    frame = b"\x01\x02S+01.500kgn\x03\x04"
    indicator = IndicatorEnd(pty_pair.scale, {ENQ: ACK, DC1: frame})
    closing(indicator)
    scale = SerialScale(str(pty_pair.host), AclasOs2Protocol(passive=True), poll_interval_s=0.5)
    closing(scale)
    wait_for_reading(scale, weight(1500))
    assert indicator.transcript[:4] == [
        ("host", ENQ),
        ("scale", ACK),
        ("host", DC1),
        ("scale", frame),
    ]
    assert set(indicator.received) == {ENQ[0], DC1[0]}
    assert indicator.unexpected == b""


# ------------------------------------------------------------------------- unplug


@pytest.mark.parametrize(
    ("protocol", "answers", "stream", "before", "after"),
    [
        (
            "mt-sics",
            {b"SI\r\n": b"S S     100.00 g\r\n"},
            None,
            {b"SI\r\n": b"S S     200.00 g\r\n"},
            None,
        ),
        ("ascii-line", None, b"ST,GS,+  0.100kg\r\n", None, b"ST,GS,+  0.200kg\r\n"),
    ],
    ids=["polled", "streaming"],
)
def test_unplug_is_noticed_within_2_s_and_recovered_without_restarting(
    pty_pair: PtyPair,
    closing: Closing,
    protocol: str,
    answers: dict[bytes, bytes] | None,
    stream: bytes | None,
    before: dict[bytes, bytes] | None,
    after: bytes | None,
) -> None:
    indicator = IndicatorEnd(pty_pair.scale, answers, stream)
    closing(indicator)
    scale = SerialScale(str(pty_pair.host), protocol, poll_interval_s=0.05, reconnect_after_s=0.2)
    closing(scale)
    wait_for_reading(scale, weight(100))

    indicator.close()
    pty_pair.unplug()
    deadline = time.monotonic() + 2.0
    noticed = False
    while time.monotonic() < deadline and not noticed:
        try:
            scale.read()
        except ScaleDisconnectedError:
            noticed = True
        else:
            time.sleep(0.02)
    assert noticed, "read() still returned a weight 2 s after the cable was pulled"
    assert wait_until(lambda: not scale.status().connected, 2.0)
    with pytest.raises(ScaleDisconnectedError, match="not connected"):
        scale.read()
    assert scale.status().last_error is not None

    pty_pair.plug_in()
    indicator = IndicatorEnd(pty_pair.scale, before, after)
    closing(indicator)
    wait_for_reading(scale, weight(200))  # same SerialScale object: nothing was restarted
    status = scale.status()
    assert status.connected
    assert status.reconnects == 1


# ---------------------------------------------------------------- other transports


def test_loop_url_works(closing: Closing) -> None:
    ports: list[Any] = []

    def open_and_keep(url: str, **options: Any) -> Any:
        port = serial.serial_for_url(url, **options)
        ports.append(port)
        return port

    scale = SerialScale("loop://", "ascii-line", open_port=open_and_keep)
    closing(scale)
    assert wait_until(lambda: bool(ports))
    # loop:// hands back what is written: write as the scale would.
    ports[0].write(b"ST,GS,+  0.750kg\r\n")
    reading = wait_for_reading(scale, weight(750))
    assert reading.stable


def test_fake_scale_device_drives_the_driver_end_to_end(
    pty_pair: PtyPair, closing: Closing
) -> None:
    device = FakeScaleDevice("mt-sics", unit="g")
    device.place(640.0)
    device.start(str(pty_pair.scale))
    scale = SerialScale(str(pty_pair.host), "mt-sics", poll_interval_s=0.05)
    closing(scale)
    try:
        wait_for_reading(scale, weight(640))
        scale.tare()
        assert wait_until(lambda: device.tare_g == 640.0)
        device.place(900.0)  # 260 g of food onto a tared 640 g tray
        wait_for_reading(scale, weight(900))
    finally:
        device.stop()
    assert device.received.startswith(b"SI\r\n")
    assert set(bytes(device.received).split(b"\r\n")) == {b"SI", b"T", b""}


# ------------------------------------------------------------------ driver errors


def test_reading_before_any_frame_says_what_to_check(closing: Closing) -> None:
    scale = SerialScale("loop://", "toledo-continuous", stale_after_s=0.1)
    closing(scale)
    assert wait_until(lambda: scale.status().connected)
    with pytest.raises(ScaleDisconnectedError, match="protocol and baud rate"):
        scale.read()


def test_a_port_that_cannot_open_is_reported_with_its_name(
    closing: Closing, tmp_path: Path
) -> None:
    missing = tmp_path / "ttyUSB9"
    scale = SerialScale(str(missing), "mt-sics", reconnect_after_s=0.1)
    closing(scale)
    assert wait_until(lambda: scale.status().last_error is not None)
    with pytest.raises(ScaleDisconnectedError, match="ttyUSB9"):
        scale.read()
    with pytest.raises(ScaleDisconnectedError, match="cannot tare"):
        scale.tare()


def test_tare_on_a_protocol_without_commands_is_refused(closing: Closing) -> None:
    scale = SerialScale("loop://", "ascii-line")
    closing(scale)
    with pytest.raises(ScaleError, match="protocol ascii-line has no tare command"):
        scale.tare()
    with pytest.raises(ScaleError, match="no zero command"):
        scale.zero()


def test_unknown_protocol_name_is_refused() -> None:
    with pytest.raises(ScaleError, match="known protocols"):
        SerialScale("loop://", "hx711")


def test_closed_scale_cannot_be_read() -> None:
    scale = SerialScale("loop://", "ascii-line")
    scale.close()
    with pytest.raises(ScaleDisconnectedError, match="closed"):
        scale.read()
