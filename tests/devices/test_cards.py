"""Card ids, debouncing, the keyboard-wedge decoder and readers, and the serial card reader."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import serial

from terminal.core.ports import CardReader, CardTap
from terminal.devices.cards import (
    CardFormatError,
    CardReaderError,
    Debouncer,
    FrameProtocol,
    LineProtocol,
    SerialCardReader,
    encode_frame,
    normalise_uid,
)
from terminal.devices.wedge import (
    EV_KEY,
    KEY_CODES,
    EvdevWedgeReader,
    PassthroughKeys,
    WedgeDecoder,
    WedgeResult,
    key_for_code,
    open_evdev_device,
)

# One Mifare Classic card, UID bytes 04 A1 B2 C3, in every format a reader may print it.
CARD = "04A1B2C3"
CARD_10D = "0077705923"  # 0x04A1B2C3 as an unsigned decimal
CARD_LSB_10D = "3283263748"  # 0xC3B2A104: the bytes reversed, as decimal
WAIT_S = 5.0


# -- normalise_uid ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "options", "canonical"),
    [
        pytest.param("04A1B2C3", {}, CARD, id="8-hex"),
        pytest.param("04a1b2c3", {}, CARD, id="8-hex-lower"),
        pytest.param(" 04A1B2C3 ", {}, CARD, id="8-hex-padded-blanks"),
        pytest.param("04:A1:B2:C3", {}, CARD, id="colons"),
        pytest.param("04-a1-b2-c3", {}, CARD, id="dashes"),
        pytest.param("04 A1 B2 C3", {}, CARD, id="spaces"),
        pytest.param("0004A1B2C3", {}, CARD, id="10-hex-00-padded"),
        pytest.param("1A04A1B2C3", {}, CARD, id="10-hex-em4100-version-byte"),
        pytest.param(CARD_10D, {}, CARD, id="10-decimal"),
        pytest.param(CARD_10D, {"uid_format": "dec10"}, CARD, id="10-decimal-forced"),
        pytest.param("0004A1B2C3", {"uid_format": "hex"}, CARD, id="10-hex-forced"),
        pytest.param("C3B2A104", {"byte_order": "lsb"}, CARD, id="8-hex-lsb"),
        pytest.param("C3:B2:A1:04", {"byte_order": "lsb"}, CARD, id="colons-lsb"),
        pytest.param(CARD_LSB_10D, {"byte_order": "lsb"}, CARD, id="10-decimal-lsb"),
        pytest.param("04A1B2C3D4E580", {}, "04A1B2C3D4E580", id="7-byte"),
        pytest.param("80E5D4C3B2A104", {"byte_order": "lsb"}, "04A1B2C3D4E580", id="7-byte-lsb"),
        # All-decimal 8 digits are hex in "auto": see the module docstring.
        pytest.param("12345678", {}, "12345678", id="8-decimal-looking-hex"),
        pytest.param("0012345678", {}, "00BC614E", id="10-decimal-auto"),
        pytest.param("0012345678", {"uid_format": "hex"}, "12345678", id="10-hex-all-digits"),
        # W26 keeps facility A1 + number B2C3 only: tagged so it never meets a full UID.
        pytest.param("16145763", {"uid_format": "w26"}, "W26:A1B2C3", id="w26"),
        pytest.param("00000001", {"uid_format": "w26"}, "W26:000001", id="w26-smallest"),
        pytest.param("25565535", {"uid_format": "w26"}, "W26:FFFFFF", id="w26-largest"),
        pytest.param(
            "17841220", {"uid_format": "w26", "byte_order": "lsb"}, "W26:04A1B2", id="w26-lsb"
        ),
    ],
)
def test_normalise_uid(raw: str, options: dict[str, str], canonical: str) -> None:
    assert normalise_uid(raw, **options) == canonical  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "formats",
    [
        pytest.param(
            [("04A1B2C3", {}), ("04:a1:b2:c3", {}), ("0004A1B2C3", {}), (CARD_10D, {})],
            id="full-uid-family",
        ),
        pytest.param(
            [("C3B2A104", {"byte_order": "lsb"}), (CARD_LSB_10D, {"byte_order": "lsb"})],
            id="lsb-readers-meet-msb",
        ),
    ],
)
def test_one_card_in_every_format_of_a_family_has_one_id(
    formats: list[tuple[str, dict[str, str]]],
) -> None:
    ids = {normalise_uid(raw, **options) for raw, options in formats}  # type: ignore[arg-type]

    assert ids == {CARD}


def test_w26_never_meets_the_full_uid_of_the_same_card() -> None:
    assert normalise_uid("16145763", uid_format="w26") != normalise_uid(CARD)


@pytest.mark.parametrize(
    ("raw", "options"),
    [
        pytest.param("", {}, id="empty"),
        pytest.param("04A1B2C", {}, id="7-digits"),
        pytest.param("04A1B2C3Z", {}, id="not-hex"),
        pytest.param("04A1:B2C3", {}, id="separators-not-between-bytes"),
        pytest.param("04A1B2C3D4E5", {}, id="12-digits"),
        pytest.param("4294967296", {}, id="10-decimal-above-32-bits"),
        pytest.param("04A1B2C3", {"uid_format": "dec10"}, id="hex-to-a-10D-reader"),
        pytest.param("04A1B2C3", {"uid_format": "w26"}, id="hex-to-a-W26-reader"),
        pytest.param("99912345", {"uid_format": "w26"}, id="w26-facility-above-255"),
        pytest.param("12599999", {"uid_format": "w26"}, id="w26-number-above-65535"),
    ],
)
def test_invalid_card_numbers_name_the_input_and_the_formats(
    raw: str, options: dict[str, str]
) -> None:
    with pytest.raises(CardFormatError) as error:
        normalise_uid(raw, **options)  # type: ignore[arg-type]

    assert repr(raw) in str(error.value)
    assert "accepted: 8 or 14 hex digits" in str(error.value)


@pytest.mark.parametrize(
    ("options", "setting"),
    [({"byte_order": "middle"}, "byte_order"), ({"uid_format": "8H"}, "uid_format")],
)
def test_unknown_reader_settings_are_a_configuration_error(
    options: dict[str, str], setting: str
) -> None:
    with pytest.raises(ValueError, match=setting) as error:
        normalise_uid(CARD, **options)  # type: ignore[arg-type]

    assert not isinstance(error.value, CardFormatError)


# -- Debouncer --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reads", "accepted", "extend_on_repeat"),
    [
        ("repeats-dropped", [("A", 0.0), ("A", 0.5), ("A", 1.0)], [True, False, False], False),
        ("window-inclusive", [("A", 0.0), ("A", 1.5)], [True, False], False),
        ("after-window", [("A", 0.0), ("A", 1.51)], [True, True], False),
        ("other-card-at-once", [("A", 0.0), ("B", 0.2), ("A", 0.4)], [True, True, False], False),
        (
            "resting-card-from-last-accepted",
            [("A", t / 10) for t in range(0, 24, 3)],
            [True, False, False, False, False, False, True, False],
            False,
        ),
        (
            "resting-card-extended",
            [("A", t / 10) for t in range(0, 24, 3)],
            [True] + [False] * 7,
            True,
        ),
        ("clock-stepped-back", [("A", 10.0), ("A", 5.0)], [True, True], False),
    ],
)
def test_debouncer(
    name: str, reads: list[tuple[str, float]], accepted: list[bool], extend_on_repeat: bool
) -> None:
    debouncer = Debouncer(1.5, extend_on_repeat=extend_on_repeat)

    assert [debouncer.accept(card, ts) for card, ts in reads] == accepted, name


# -- WedgeDecoder -----------------------------------------------------------------------------


def type_keys(
    decoder: WedgeDecoder, keys: list[str], *, start: float = 100.0, gap_s: float = 0.01
) -> list[WedgeResult]:
    """Type ``keys`` one every ``gap_s``; then let the decoder's tick release what it holds."""
    results: list[WedgeResult] = []
    timestamp = start
    for key in keys:
        results.extend(decoder.feed(key, timestamp))
        timestamp += gap_s
    results.extend(decoder.tick(timestamp + 1.0))
    return results


def card_keys(number: str, enter: str = "ENTER") -> list[str]:
    return [*number, enter]


def taps_of(results: list[WedgeResult]) -> list[str]:
    return [result.card_id for result in results if isinstance(result, CardTap)]


def passed_keys(results: list[WedgeResult]) -> list[str]:
    return [key for result in results if isinstance(result, PassthroughKeys) for key in result.keys]


@pytest.mark.parametrize(
    ("name", "keys", "gap_s", "taps", "passed"),
    [
        ("8-hex-burst", card_keys("04A1B2C3"), 0.01, [CARD], []),
        ("10-decimal-burst", card_keys(CARD_10D), 0.01, [CARD], []),
        ("lowercase-hex-keypad-enter", card_keys("04a1b2c3", "KP_ENTER"), 0.01, [CARD], []),
        ("gaps-just-under-limit", card_keys("04A1B2C3"), 0.045, [CARD], []),
        (
            "person-typing-digits",
            card_keys("12345678"),
            0.15,
            [],
            [*"12345678", "ENTER"],
        ),
        ("too-short", card_keys("1234"), 0.01, [], [*"1234", "ENTER"]),
        ("no-uid-length", card_keys("123456789012"), 0.01, [], [*"123456789012", "ENTER"]),
        ("barcode-burst-too-long", card_keys("1" * 25), 0.01, [], [*("1" * 25), "ENTER"]),
        ("burst-without-enter", list("04A1B2C3"), 0.01, [], list("04A1B2C3")),
        ("word-with-letters", card_keys("hello"), 0.01, [], [*"hello", "ENTER"]),
        ("enter-alone", ["ENTER"], 0.01, [], ["ENTER"]),
    ],
)
def test_wedge_decoder(
    name: str, keys: list[str], gap_s: float, taps: list[str], passed: list[str]
) -> None:
    results = type_keys(WedgeDecoder(), keys, gap_s=gap_s)

    assert taps_of(results) == taps, name
    assert passed_keys(results) == passed, name


def test_wedge_tap_is_stamped_with_the_enter_key() -> None:
    results = type_keys(WedgeDecoder(), card_keys(CARD), start=50.0, gap_s=0.01)

    assert len(results) == 1
    assert isinstance(results[0], CardTap)
    assert results[0].timestamp == pytest.approx(50.08)


def test_wedge_person_then_card_keeps_both_in_order() -> None:
    decoder = WedgeDecoder()
    results = decoder.feed("4", 10.0) + decoder.feed("2", 10.3)
    results += type_keys(decoder, card_keys(CARD), start=10.6)

    assert [type(result).__name__ for result in results] == [
        "PassthroughKeys",
        "PassthroughKeys",
        "CardTap",
    ]
    assert passed_keys(results) == ["4", "2"]
    assert taps_of(results) == [CARD]


def test_wedge_late_enter_is_not_a_card() -> None:
    decoder = WedgeDecoder()
    results: list[WedgeResult] = []
    for index, key in enumerate(CARD):
        results += decoder.feed(key, index * 0.01)
    results += decoder.feed("ENTER", 0.07 + 0.2)

    assert taps_of(results) == []
    assert passed_keys(results) == [*CARD, "ENTER"]


def test_wedge_tick_holds_keys_only_while_a_card_could_follow() -> None:
    decoder = WedgeDecoder(max_gap_s=0.05)
    assert decoder.feed("7", 1.0) == []

    assert decoder.tick(1.04) == []
    assert decoder.tick(1.06) == [PassthroughKeys(("7",), 1.0)]
    assert decoder.tick(2.0) == []


def test_wedge_other_keys_pass_at_once_with_what_was_held() -> None:
    decoder = WedgeDecoder()
    decoder.feed("1", 1.0)

    assert decoder.feed("BACKSPACE", 1.01) == [PassthroughKeys(("1", "BACKSPACE"), 1.0)]
    assert PassthroughKeys(("1", "x", "ENTER"), 0.0).text == "1x"


@pytest.mark.parametrize(
    ("options", "number", "canonical"),
    [
        ({"byte_order": "lsb"}, "C3B2A104", CARD),
        ({"uid_format": "w26"}, "16145763", "W26:A1B2C3"),
    ],
)
def test_wedge_decoder_uses_the_reader_settings(
    options: dict[str, str], number: str, canonical: str
) -> None:
    decoder = WedgeDecoder(**options)  # type: ignore[arg-type]

    assert taps_of(type_keys(decoder, card_keys(number))) == [canonical]


# -- key codes and the evdev reader -----------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "key"),
    [
        (11, "0"),  # KEY_0
        (2, "1"),  # KEY_1
        (10, "9"),  # KEY_9
        (30, "A"),  # KEY_A
        (48, "B"),  # KEY_B
        (46, "C"),  # KEY_C
        (32, "D"),  # KEY_D
        (18, "E"),  # KEY_E
        (33, "F"),  # KEY_F
        (28, "ENTER"),  # KEY_ENTER
        (96, "KP_ENTER"),  # KEY_KPENTER
        (82, "0"),  # KEY_KP0
        (79, "1"),  # KEY_KP1
        (73, "9"),  # KEY_KP9
        (42, None),  # KEY_LEFTSHIFT: a modifier, not a key of its own
        (16, "KEYCODE_16"),  # KEY_Q: no card character, breaks a burst
    ],
)
def test_key_codes(code: int, key: str | None) -> None:
    assert key_for_code(code) == key


# The main-row key of each character (keypad codes are 71 and above).
CODE_OF = {key: code for code, key in KEY_CODES.items() if code < 60}


@dataclass(frozen=True)
class FakeEvent:
    """An ``evdev.InputEvent`` look-alike."""

    type: int
    code: int
    value: int
    at: float

    def timestamp(self) -> float:
        return self.at


def keystrokes(number: str, start: float, *, gap_s: float = 0.008) -> list[FakeEvent]:
    """Key down and up events of a reader typing ``number`` and Enter, with Shift for letters."""
    events: list[FakeEvent] = []
    at = start
    for key in [*number, "ENTER"]:
        if key.isalpha() and key != "ENTER":
            events.append(FakeEvent(EV_KEY, 42, 1, at))
        events.append(FakeEvent(EV_KEY, CODE_OF[key], 1, at))
        events.append(FakeEvent(EV_KEY, CODE_OF[key], 0, at + 0.002))
        events.append(FakeEvent(0, 0, 0, at + 0.002))  # EV_SYN
        at += gap_s
    return events


@dataclass
class FakeInputDevice:
    """An ``evdev.InputDevice`` look-alike: yields its events, then blocks until closed."""

    events: list[FakeEvent]
    grab_error: OSError | None = None
    lose_after_events: bool = False
    calls: list[str] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)

    def read_loop(self) -> Iterator[FakeEvent]:
        yield from self.events
        if self.lose_after_events:
            raise OSError(19, "No such device")
        self.closed.wait(WAIT_S)

    def grab(self) -> None:
        self.calls.append("grab")
        if self.grab_error is not None:
            raise self.grab_error

    def ungrab(self) -> None:
        self.calls.append("ungrab")

    def close(self) -> None:
        self.calls.append("close")
        self.closed.set()


def wait_for_taps(reader: CardReader, count: int) -> list[str]:
    """Poll until ``count`` taps arrived, or a bounded wait ran out."""
    taps: list[str] = []
    deadline = time.monotonic() + WAIT_S
    while len(taps) < count and time.monotonic() < deadline:
        tap = reader.poll()
        if tap is None:
            time.sleep(0.005)
        else:
            taps.append(tap.card_id)
    return taps


def test_evdev_reader_grabs_decodes_and_lets_go() -> None:
    device = FakeInputDevice(keystrokes("04A1B2C3", 10.0) + keystrokes(CARD_10D, 20.0))
    reader = EvdevWedgeReader("/dev/input/by-id/fake-event-kbd", open_device=lambda _: device)

    with reader:
        assert reader.grabbed
        assert wait_for_taps(reader, 2) == [CARD, CARD]
        assert reader.ignored_keys == 0

    assert device.calls == ["grab", "ungrab", "close"]
    assert not reader.grabbed


def test_evdev_reader_drops_a_card_typed_twice_in_a_row() -> None:
    device = FakeInputDevice(keystrokes(CARD, 10.0) + keystrokes(CARD, 10.3))
    reader = EvdevWedgeReader("fake", open_device=lambda _: device)

    with reader:
        assert wait_for_taps(reader, 1) == [CARD]
        assert reader.poll() is None


@pytest.mark.parametrize(
    ("grab", "grab_error", "calls", "grabbed"),
    [
        (False, None, ["close"], False),
        (True, OSError(16, "Device or resource busy"), ["grab", "close"], False),
    ],
)
def test_evdev_reader_reads_without_a_grab(
    grab: bool, grab_error: OSError | None, calls: list[str], grabbed: bool
) -> None:
    device = FakeInputDevice(keystrokes(CARD, 1.0), grab_error=grab_error)
    reader = EvdevWedgeReader("fake", grab=grab, open_device=lambda _: device)

    with reader:
        assert reader.grabbed is grabbed
        assert wait_for_taps(reader, 1) == [CARD]

    assert device.calls == calls


def test_evdev_reader_reopens_an_unplugged_device() -> None:
    devices = [
        FakeInputDevice(keystrokes(CARD, 1.0), lose_after_events=True),
        FakeInputDevice(keystrokes("04A1B2C4", 5.0)),
    ]
    opened: list[FakeInputDevice] = []

    def open_device(_: str) -> FakeInputDevice:
        opened.append(devices[len(opened)])
        return opened[-1]

    with EvdevWedgeReader("fake", open_device=open_device, reconnect_s=0.01) as reader:
        assert wait_for_taps(reader, 2) == [CARD, "04A1B2C4"]
        assert reader.reconnects == 1

    assert devices[0].calls == ["grab", "ungrab", "close"]
    assert devices[1].calls == ["grab", "ungrab", "close"]


def test_evdev_reader_with_a_file_descriptor_waits_on_it() -> None:
    """Real evdev devices are waited on with select, so a stop is not stuck in read_loop."""
    read_end, write_end = os.pipe()

    class FdDevice(FakeInputDevice):
        fd = read_end

        def read(self) -> list[FakeEvent]:
            os.read(read_end, 1)
            events, self.events = self.events, []
            return events

    device = FdDevice(keystrokes(CARD, 1.0))
    try:
        with EvdevWedgeReader("fake", open_device=lambda _: device) as reader:
            os.write(write_end, b"x")
            assert wait_for_taps(reader, 1) == [CARD]
        assert device.calls == ["grab", "ungrab", "close"]
    finally:
        os.close(read_end)
        os.close(write_end)


def test_evdev_reader_open_error_reaches_the_caller() -> None:
    def open_device(path: str) -> FakeInputDevice:
        raise CardReaderError(f"no input device at {path}")

    reader = EvdevWedgeReader("/dev/input/event99", open_device=open_device)

    with pytest.raises(CardReaderError, match="event99"):
        reader.start()


def raise_on_open(error: OSError) -> types.ModuleType:
    """A stand-in evdev module whose InputDevice fails with ``error``."""

    def input_device(path: str) -> None:
        raise error

    module = types.ModuleType("evdev")
    module.InputDevice = input_device  # type: ignore[attr-defined]
    return module


@pytest.mark.parametrize(
    ("evdev_module", "advice"),
    [
        (None, "pip install evdev"),
        (raise_on_open(FileNotFoundError(2, "No such file")), "check the device path"),
        (raise_on_open(PermissionError(13, "Permission denied")), "'input' group"),
        (raise_on_open(OSError(5, "Input/output error")), "check the device path"),
    ],
)
def test_opening_an_input_device_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, evdev_module: types.ModuleType | None, advice: str
) -> None:
    # None in sys.modules makes `import evdev` fail as if it were not installed.
    monkeypatch.setitem(sys.modules, "evdev", evdev_module)

    with pytest.raises(CardReaderError, match=advice):
        open_evdev_device("/dev/input/by-id/usb-reader-event-kbd")


# -- serial wire protocols, without a port ----------------------------------------------------


def test_frame_layout_byte_for_byte() -> None:
    # XOR of 00 04 A1 B2 C3 is D4.
    assert encode_frame("0004A1B2C3") == b"\x020004A1B2C3D4\r\n\x03"


@pytest.mark.parametrize(
    ("name", "chunks", "numbers", "bad_frames"),
    [
        ("one-frame", [b"\x020004A1B2C3D4\r\n\x03"], ["0004A1B2C3"], 0),
        ("without-crlf", [b"\x020004A1B2C3D4\x03"], ["0004A1B2C3"], 0),
        ("split-across-reads", [b"\x020004A1", b"B2C3D4\r", b"\n\x03"], ["0004A1B2C3"], 0),
        ("bad-checksum", [b"\x020004A1B2C3D5\r\n\x03"], [], 1),
        ("short-body", [b"\x020004A1B2\r\n\x03"], [], 1),
        ("not-hex", [b"\x020004A1B2CXD4\r\n\x03"], [], 1),
        ("noise-between-frames", [b"\xff\x00zz\x020004A1B2C3D4\r\n\x03\r\n"], ["0004A1B2C3"], 0),
        ("no-etx-then-next-frame", [b"\x020004A1", b"\x020004A1B2C3D4\x03"], ["0004A1B2C3"], 1),
        ("runaway-frame", [b"\x02" + b"0" * 40 + b"\x03"], [], 1),
    ],
)
def test_frame_protocol(
    name: str, chunks: list[bytes], numbers: list[str], bad_frames: int
) -> None:
    protocol = FrameProtocol()

    assert [n for chunk in chunks for n in protocol.feed(chunk)] == numbers, name
    assert protocol.bad_frames == bad_frames, name


@pytest.mark.parametrize(
    ("name", "chunks", "lines", "bad_frames"),
    [
        ("crlf", [b"04A1B2C3\r\n"], ["04A1B2C3"], 0),
        ("lf-only-two-lines", [b"04A1B2C3\n0077705923\n"], ["04A1B2C3", "0077705923"], 0),
        ("cr-only-split", [b"0077", b"705923\r"], ["0077705923"], 0),
        ("stx-etx-wrapped", [b"\x0204A1B2C3\x03\r\n"], ["04A1B2C3"], 0),
        ("runaway-line-then-good", [b"9" * 40 + b"\r\n04A1B2C3\r\n"], ["04A1B2C3"], 1),
    ],
)
def test_line_protocol(name: str, chunks: list[bytes], lines: list[str], bad_frames: int) -> None:
    protocol = LineProtocol()

    assert [line for chunk in chunks for line in protocol.feed(chunk)] == lines, name
    assert protocol.bad_frames == bad_frames, name


# -- the serial reader over a real pty pair ---------------------------------------------------


class SocatPty:
    """A pty pair joined by socat: a reader opens ``reader_path``, the test writes ``card_path``."""

    def __init__(self, socat: str, folder: Path) -> None:
        self.socat = socat
        self.reader_path = folder / "reader"
        self.card_path = folder / "card"
        self._log = folder / "socat.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._card_fd: int | None = None

    def start(self) -> None:
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    self.socat,
                    "-d",
                    "-d",
                    f"pty,raw,echo=0,link={self.reader_path}",
                    f"pty,raw,echo=0,link={self.card_path}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + WAIT_S
        while not (self.reader_path.exists() and self.card_path.exists()):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"socat gave no pty pair: {self._log.read_text(errors='replace')}")
            time.sleep(0.01)
        # Held open for the whole test: socat ends when the last writer of a pty closes it.
        self._card_fd = os.open(self.card_path, os.O_RDWR | os.O_NOCTTY)

    def write(self, data: bytes) -> None:
        assert self._card_fd is not None
        os.write(self._card_fd, data)

    def stop(self) -> None:
        if self._card_fd is not None:
            os.close(self._card_fd)
            self._card_fd = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(WAIT_S)
            self._process = None


@pytest.fixture
def socat_pty(tmp_path: Path) -> Iterator[SocatPty]:
    socat = shutil.which("socat") or ("/usr/bin/socat" if Path("/usr/bin/socat").exists() else None)
    if socat is None:
        pytest.skip("socat is not installed (apt-get install socat) : the pty tests need it")
    pair = SocatPty(socat, tmp_path)
    pair.start()
    yield pair
    pair.stop()


class StepClock:
    """A clock that moves ``step_s`` per reading, so debouncing never depends on real time."""

    def __init__(self, step_s: float) -> None:
        self.now = 1000.0
        self.step_s = step_s

    def __call__(self) -> float:
        self.now += self.step_s
        return self.now


def serial_reader(pty: SocatPty, clock: Callable[[], float], **options: str) -> SerialCardReader:
    return SerialCardReader(str(pty.reader_path), clock=clock, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("protocol", "wire", "wedge_keys"),
    [
        pytest.param("line", b"04A1B2C3\r\n", "04A1B2C3", id="line-8-hex"),
        pytest.param("line", b"04:a1:b2:c3\n", "04a1b2c3", id="line-hex-with-colons"),
        pytest.param("line", b"0077705923\r\n", CARD_10D, id="line-10-decimal"),
        pytest.param("line", b"0004A1B2C3\r", "0004A1B2C3", id="line-10-hex"),
        pytest.param("frame", encode_frame("0004A1B2C3"), CARD_10D, id="frame"),
        pytest.param("frame", b"\x021A04A1B2C3CE\r\n\x03", "04A1B2C3", id="frame-em-version"),
    ],
)
def test_serial_reader_gives_the_wedge_path_id(
    socat_pty: SocatPty, protocol: str, wire: bytes, wedge_keys: str
) -> None:
    wedge_ids = taps_of(type_keys(WedgeDecoder(), card_keys(wedge_keys)))

    with serial_reader(socat_pty, StepClock(10.0), protocol=protocol) as reader:
        assert reader.wait_connected(WAIT_S)
        socat_pty.write(wire)
        assert wait_for_taps(reader, 1) == wedge_ids == [CARD]


def test_serial_reader_skips_and_counts_a_bad_frame(socat_pty: SocatPty) -> None:
    good = encode_frame("0004A1B2C3")
    bad = good.replace(b"D4", b"D5")

    with serial_reader(socat_pty, StepClock(10.0), protocol="frame") as reader:
        assert reader.wait_connected(WAIT_S)
        socat_pty.write(bad + b"\xff\xfe" + good)
        assert wait_for_taps(reader, 1) == [CARD]
        assert reader.bad_frames == 1
        assert reader.poll() is None


def test_serial_reader_drops_repeats_of_a_resting_card(socat_pty: SocatPty) -> None:
    frame = encode_frame("0004A1B2C3")
    other = encode_frame("0004A1B2C4")

    # Each read 0.2 s apart: the resting card repeats inside the 1.5 s window.
    with serial_reader(socat_pty, StepClock(0.2), protocol="frame") as reader:
        assert reader.wait_connected(WAIT_S)
        socat_pty.write(frame * 3 + other)
        assert wait_for_taps(reader, 2) == [CARD, "04A1B2C4"]
        assert reader.repeats_dropped == 2


def test_serial_reader_counts_a_line_that_is_no_card(socat_pty: SocatPty) -> None:
    with serial_reader(socat_pty, StepClock(10.0)) as reader:
        assert reader.wait_connected(WAIT_S)
        socat_pty.write(b"hello\r\n04A1B2C3\r\n")
        assert wait_for_taps(reader, 1) == [CARD]
        assert reader.bad_frames == 1


def test_serial_reader_comes_back_after_the_port_disappears(socat_pty: SocatPty) -> None:
    with SerialCardReader(
        str(socat_pty.reader_path), clock=StepClock(10.0), reconnect_s=0.02
    ) as reader:
        assert reader.wait_connected(WAIT_S)
        socat_pty.write(b"04A1B2C3\r\n")
        assert wait_for_taps(reader, 1) == [CARD]

        socat_pty.stop()  # the USB reader is unplugged...
        deadline = time.monotonic() + WAIT_S
        while reader.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not reader.connected

        socat_pty.start()  # ...and plugged back in
        assert reader.wait_connected(WAIT_S)
        socat_pty.write(b"04A1B2C4\r\n")
        assert wait_for_taps(reader, 1) == ["04A1B2C4"]
        assert reader.reconnects >= 1


# -- the serial reader with an injected port --------------------------------------------------


@dataclass
class FakePort:
    """A pyserial port look-alike that hands out ``chunks`` and then fails like an unplug."""

    chunks: list[bytes]
    closed: bool = False

    @property
    def in_waiting(self) -> int:
        return len(self.chunks[0]) if self.chunks else 0

    def read(self, size: int = 1) -> bytes:
        if not self.chunks:
            raise serial.SerialException("device reports readiness to read but returned no data")
        return self.chunks.pop(0)

    def close(self) -> None:
        self.closed = True


def test_serial_reader_retries_until_the_port_opens_and_after_it_fails() -> None:
    ports = [FakePort([b"04A1B2C3\r\n"]), FakePort([b"0077705924\r\n"])]
    attempts: list[str] = []

    def open_port(url: str, **_: object) -> FakePort:
        attempts.append(url)
        if len(attempts) == 1:
            raise serial.SerialException(f"could not open port {url}: No such file or directory")
        return ports[len(attempts) - 2] if len(attempts) - 2 < len(ports) else FakePort([])

    reader = SerialCardReader(
        "/dev/ttyUSB7", open_port=open_port, clock=StepClock(10.0), reconnect_s=0.001
    )
    with reader:
        assert wait_for_taps(reader, 2) == [CARD, "04A1B2C4"]

    assert all(port.closed for port in ports)
    assert reader.reconnects >= 1


def test_serial_reader_keeps_the_newest_taps_when_nobody_polls() -> None:
    with SerialCardReader("loop://", clock=StepClock(10.0), queue_size=2) as reader:
        reader.feed(b"04A1B2C1\r\n04A1B2C2\r\n04A1B2C3\r\n")

        assert reader.dropped_taps == 1
        assert wait_for_taps(reader, 2) == ["04A1B2C2", "04A1B2C3"]
        assert reader.poll() is None


@pytest.mark.parametrize(
    ("options", "setting"),
    [
        ({"protocol": "wiegand"}, "protocol"),
        ({"byte_order": "middle"}, "byte_order"),
        ({"uid_format": "8H"}, "uid_format"),
    ],
)
def test_serial_reader_rejects_unknown_settings(options: dict[str, str], setting: str) -> None:
    with pytest.raises(ValueError, match=setting):
        SerialCardReader("loop://", **options)  # type: ignore[arg-type]
