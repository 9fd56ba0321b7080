"""Keyboard-wedge card readers: tell a card's burst of keystrokes from a person's typing.

Most meal-card readers are USB keyboards: on a tap they type the card number and Enter in a few
milliseconds. Left alone, those keystrokes land in whatever text field has focus. Two ways to
catch them, both built on :class:`WedgeDecoder` (pure logic, fed ``(key, timestamp)``):

* the UI feeds every key event through a decoder before any widget sees it; a card comes out as
  a :class:`~terminal.core.ports.CardTap`, a person's typing as :class:`PassthroughKeys` to
  deliver to the focused field (late by at most ``max_gap_s``, see :meth:`WedgeDecoder.tick`);
* on Linux, :class:`EvdevWedgeReader` reads the reader's own input device and grabs it
  exclusively, so its keystrokes never reach the desktop at all. ``evdev`` is imported only when
  such a reader is opened; without it everything else here works.
"""

from __future__ import annotations

import importlib
import logging
import select
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from terminal.core.ports import CardTap
from terminal.devices.cards import (
    BackgroundReader,
    ByteOrder,
    CardFormatError,
    CardReaderError,
    Debouncer,
    UidFormat,
    check_uid_settings,
    normalise_uid,
)

logger = logging.getLogger(__name__)

ENTER_KEYS = frozenset({"ENTER", "KP_ENTER"})
_CARD_CHARACTERS = frozenset("0123456789ABCDEFabcdef")


@dataclass(frozen=True)
class PassthroughKeys:
    """Keystrokes that were not a card, handed back in the order they were typed.

    Attributes:
        keys: single characters, or names such as "ENTER" for other keys.
        timestamp: when the first of them was typed.
    """

    keys: tuple[str, ...]
    timestamp: float

    @property
    def text(self) -> str:
        """The printable characters among ``keys``, for a text field."""
        return "".join(key for key in self.keys if len(key) == 1)


WedgeResult = CardTap | PassthroughKeys


class WedgeDecoder:
    """Splits a key stream into card taps and a person's keystrokes.

    A card is a burst of hex digits, each typed within ``max_gap_s`` of the one before, ended by
    Enter within ``max_gap_s`` too, ``min_length`` to ``max_length`` long, that
    :func:`~terminal.devices.cards.normalise_uid` accepts. Anything else goes back as
    :class:`PassthroughKeys`: slow typing, a short number, a long barcode burst, other keys.

    Args:
        max_gap_s: longest pause between two keys of a card; readers type a key every 5-20 ms,
            people every 100 ms or more.
        min_length: fewest digits of a card number.
        max_length: most digits; a longer burst (a barcode scanner) is not a card.
        byte_order: "lsb" for readers that type the UID bytes reversed.
        uid_format: how the reader prints numbers; see :func:`normalise_uid`.
    """

    def __init__(
        self,
        *,
        max_gap_s: float = 0.05,
        min_length: int = 8,
        max_length: int = 20,
        byte_order: ByteOrder = "msb",
        uid_format: UidFormat = "auto",
    ) -> None:
        if max_gap_s <= 0:
            raise ValueError(f"WedgeDecoder.max_gap_s must be positive, got {max_gap_s!r}")
        if not 1 <= min_length <= max_length:
            raise ValueError(
                f"WedgeDecoder needs 1 <= min_length <= max_length, got {min_length}, {max_length}"
            )
        check_uid_settings(byte_order, uid_format)
        self.max_gap_s = max_gap_s
        self.min_length = min_length
        self.max_length = max_length
        self.byte_order: ByteOrder = byte_order
        self.uid_format: UidFormat = uid_format
        self._burst: list[tuple[str, float]] = []
        self._last_key_at: float | None = None
        # Set once a fast burst outgrows max_length: the rest of it is not a card either.
        self._overlong = False

    def feed(self, key: str, timestamp: float) -> list[WedgeResult]:
        """Take one key press; return what is now decided, oldest first.

        Args:
            key: a character, or a key name ("ENTER", "KP_ENTER", "BACKSPACE", ...).
            timestamp: when it was pressed, in seconds.
        """
        results: list[WedgeResult] = []
        if self._last_key_at is not None and timestamp - self._last_key_at > self.max_gap_s:
            results.extend(self._release())
            self._overlong = False
        self._last_key_at = timestamp

        if self._overlong and key not in ENTER_KEYS and key in _CARD_CHARACTERS:
            results.append(PassthroughKeys((key,), timestamp))
        elif key in ENTER_KEYS:
            tap = self._card(timestamp)
            if tap is not None:
                results.append(tap)
            else:
                results.append(self._passthrough(extra=(key, timestamp)))
            self._burst.clear()
            self._overlong = False
        elif key in _CARD_CHARACTERS:
            self._burst.append((key, timestamp))
            if len(self._burst) > self.max_length:
                self._overlong = True
                results.extend(self._release())
        else:
            results.append(self._passthrough(extra=(key, timestamp)))
            self._burst.clear()
        return results

    def tick(self, now: float) -> list[WedgeResult]:
        """Release held keys once no card can follow; call every ``max_gap_s`` or so.

        A person's first keystrokes are held until the decoder knows they are not the start of
        a card; without a tick they would wait for the next key.
        """
        if (
            self._burst
            and self._last_key_at is not None
            and now - self._last_key_at > self.max_gap_s
        ):
            self._overlong = False
            return self._release()
        return []

    def _card(self, enter_at: float) -> CardTap | None:
        if not self.min_length <= len(self._burst) <= self.max_length:
            return None
        digits = "".join(key for key, _ in self._burst)
        try:
            card_id = normalise_uid(digits, byte_order=self.byte_order, uid_format=self.uid_format)
        except CardFormatError as error:
            logger.debug("fast burst is no card, passed through: %s", error)
            return None
        return CardTap(card_id, enter_at)

    def _release(self) -> list[WedgeResult]:
        if not self._burst:
            return []
        released = self._passthrough()
        self._burst.clear()
        return [released]

    def _passthrough(self, extra: tuple[str, float] | None = None) -> PassthroughKeys:
        keys = [*self._burst, extra] if extra is not None else list(self._burst)
        return PassthroughKeys(tuple(key for key, _ in keys), keys[0][1])


# -- Linux input events -----------------------------------------------------------------------

EV_KEY = 0x01
KEY_DOWN = 1
# Linux key codes (linux/input-event-codes.h), fixed by the kernel ABI; spelt out here so the
# mapping works, and is tested, without evdev installed.
KEY_CODES: dict[int, str] = {
    2: "1", 3: "2", 4: "3", 5: "4", 6: "5", 7: "6", 8: "7", 9: "8", 10: "9", 11: "0",
    30: "A", 48: "B", 46: "C", 32: "D", 18: "E", 33: "F",
    28: "ENTER", 96: "KP_ENTER",
    82: "0", 79: "1", 80: "2", 81: "3", 75: "4", 76: "5", 77: "6", 71: "7", 72: "8", 73: "9",
}  # fmt: skip
# Shift and Caps Lock accompany upper-case hex; they carry no character of their own.
MODIFIER_CODES = frozenset({42, 54, 58})


def key_for_code(code: int) -> str | None:
    """The decoder key of a Linux key code: a character, "ENTER"/"KP_ENTER", or ``KEYCODE_<n>``.

    Returns:
        None for modifiers, which must not break a burst.
    """
    if code in MODIFIER_CODES:
        return None
    return KEY_CODES.get(code, f"KEYCODE_{code}")


class InputEventLike(Protocol):
    """What is used of an ``evdev.InputEvent``."""

    @property
    def type(self) -> int: ...

    @property
    def code(self) -> int: ...

    @property
    def value(self) -> int: ...

    def timestamp(self) -> float: ...


class InputDeviceLike(Protocol):
    """What is used of an ``evdev.InputDevice``."""

    def read_loop(self) -> Iterator[InputEventLike]: ...

    def grab(self) -> None: ...

    def ungrab(self) -> None: ...

    def close(self) -> None: ...


def open_evdev_device(device_path: str) -> InputDeviceLike:
    """Open a Linux input device with evdev, imported here so nothing else needs it.

    Raises:
        CardReaderError: evdev missing, no such device, or no permission; says what to do.
    """
    try:
        evdev = importlib.import_module("evdev")
    except ImportError as error:
        raise CardReaderError(
            "the keyboard-wedge card reader needs python-evdev: install it with "
            "`pip install evdev` (Linux only), or configure the reader as a serial reader"
        ) from error
    try:
        device: InputDeviceLike = evdev.InputDevice(device_path)
    except FileNotFoundError as error:
        raise CardReaderError(
            f"no input device at {device_path}: check the device path; "
            "`ls -l /dev/input/by-id/` lists the reader, usually as ...-event-kbd"
        ) from error
    except PermissionError as error:
        raise CardReaderError(
            f"no permission to read {device_path}: add the kiosk user to the 'input' group "
            "(`sudo usermod -aG input <user>`, then log in again) or install a udev rule"
        ) from error
    except OSError as error:
        raise CardReaderError(
            f"cannot open input device {device_path} ({error}): check the device path"
        ) from error
    return device


class EvdevWedgeReader(BackgroundReader):
    """A keyboard-wedge card reader read straight from its Linux input device.

    The device is grabbed exclusively where possible, so the card's keystrokes reach no window.
    A thread decodes key presses with a :class:`WedgeDecoder`, drops repeats with a
    :class:`~terminal.devices.cards.Debouncer`, and queues taps for :meth:`poll`. A reader that
    is unplugged is reopened every ``reconnect_s``.

    Args:
        device_path: the reader's event device, best a stable ``/dev/input/by-id/...`` link.
        grab: take the device exclusively; without it the UI must filter the keystrokes itself.
        decoder: the burst decoder; a default one when omitted.
        debounce_s: repeats of a card within this are dropped.
        open_device: opens the device; evdev unless a test injects a fake.
        queue_size: taps kept when nobody polls; the oldest are dropped beyond it.
        reconnect_s: pause between attempts to reopen a lost device.
    """

    def __init__(
        self,
        device_path: str,
        *,
        grab: bool = True,
        decoder: WedgeDecoder | None = None,
        debounce_s: float = 1.5,
        open_device: Callable[[str], InputDeviceLike] = open_evdev_device,
        queue_size: int = 16,
        reconnect_s: float = 1.0,
    ) -> None:
        self.device_path = device_path
        self.grab = grab
        self.decoder = decoder or WedgeDecoder()
        self.reconnect_s = reconnect_s
        self._open_device = open_device
        # A card left resting on the reader is one tap (see SerialCardReader).
        self._debouncer = Debouncer(debounce_s, extend_on_repeat=True)
        self._queue_size = queue_size
        self._taps: deque[CardTap] = deque()
        self._lock = threading.Lock()
        # stop() and the reading thread may both let go of a lost device.
        self._device_lock = threading.Lock()
        self._stop = threading.Event()
        self._device: InputDeviceLike | None = None
        self._grabbed = False
        self._thread: threading.Thread | None = None
        self.ignored_keys = 0
        self.dropped_taps = 0
        self.reconnects = 0

    @property
    def grabbed(self) -> bool:
        """Whether the device is held exclusively, so no window sees its keystrokes."""
        return self._grabbed

    @property
    def thread_name(self) -> str:
        return f"wedge-reader {self.device_path}"

    def _on_start(self) -> None:
        """Open (and grab) the device.

        Raises:
            CardReaderError: the device cannot be opened; the message says what to check.
        """
        self._attach(self._open_device(self.device_path))

    def _on_stop(self) -> None:
        self._detach()

    def handle_events(self, events: Iterable[InputEventLike]) -> list[CardTap]:
        """Decode input events into new taps and queue them; the reading thread calls this."""
        taps: list[CardTap] = []
        for event in events:
            if event.type != EV_KEY or event.value != KEY_DOWN:
                continue  # key releases and autorepeat carry nothing new
            key = key_for_code(event.code)
            if key is None:
                continue
            for result in self.decoder.feed(key, event.timestamp()):
                if isinstance(result, PassthroughKeys):
                    # Nobody types on a card reader; these are misreads, kept out of any window.
                    self.ignored_keys += len(result.keys)
                    logger.debug("wedge reader keys that are no card: %s", result.keys)
                elif self._debouncer.accept(result.card_id, result.timestamp):
                    taps.append(result)
                    self._queue(result)
        return taps

    def _queue(self, tap: CardTap) -> None:
        with self._lock:
            if len(self._taps) >= self._queue_size:
                # Nobody is polling; the newest taps are the ones a diner waits on.
                self._taps.popleft()
                self.dropped_taps += 1
            self._taps.append(tap)

    def _attach(self, device: InputDeviceLike) -> None:
        self._device = device
        self._grabbed = False
        if not self.grab:
            return
        try:
            device.grab()
            self._grabbed = True
        except OSError as error:
            # Another process holds it (EBUSY): cards still read, but also reach the focused
            # window, so the UI's own decoder must filter them.
            logger.warning(
                "cannot grab %s exclusively (%s); its keystrokes also reach the desktop",
                self.device_path,
                error,
            )

    def _detach(self) -> None:
        with self._device_lock:
            device, self._device = self._device, None
        if device is None:
            return
        if self._grabbed:
            try:
                device.ungrab()
            except OSError:
                logger.debug("ungrab of %s failed", self.device_path, exc_info=True)
            self._grabbed = False
        try:
            device.close()
        except OSError:
            logger.debug("close of %s failed", self.device_path, exc_info=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            device = self._device
            if device is not None:
                try:
                    self.handle_events(self._events(device))
                except OSError as error:
                    if not self._stop.is_set():
                        logger.warning(
                            "wedge reader %s lost (%s); reconnecting", self.device_path, error
                        )
                if self._stop.is_set():
                    return
                self._detach()
            self._reopen()

    def _reopen(self) -> None:
        reported = False
        while not self._stop.wait(self.reconnect_s):
            try:
                device = self._open_device(self.device_path)
            except CardReaderError as error:
                if not reported:
                    logger.error("wedge reader %s: %s; retrying", self.device_path, error)
                    reported = True
                continue
            self.reconnects += 1
            self._attach(device)
            logger.info("wedge reader %s is back", self.device_path)
            return

    def _events(self, device: InputDeviceLike) -> Iterator[InputEventLike]:
        """The device's events until it is lost or the reader stops.

        A real evdev device is waited on with a timeout, so :meth:`stop` takes effect at once:
        a ``read_loop`` blocked in select would not notice the device being closed under it.
        Devices without a file descriptor (fakes) use their ``read_loop``.
        """
        fd = getattr(device, "fd", None)
        read = getattr(device, "read", None)
        if not isinstance(fd, int) or not callable(read):
            for event in device.read_loop():
                if self._stop.is_set():
                    return
                yield event
            return
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            try:
                events = list(read())
            except BlockingIOError:
                continue
            yield from events
