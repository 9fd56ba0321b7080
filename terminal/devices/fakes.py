"""Shipped fakes of the devices, used by the demo and the tests alike.

Each records what happened to it so a test can assert on it.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable

from terminal.core.ports import CardTap, ScaleReading

logger = logging.getLogger(__name__)


class FakeScale:
    """A scale whose load is set by the caller.

    After ``place`` the readings wobble for ``settle_readings`` reads with the motion flag set,
    then hold the placed weight as stable, the way a real indicator behaves.

    Args:
        settle_readings: unstable readings after each change of load.
        wobble_g: the amplitude of the wobble while unstable.
        seed: seed of the wobble, so runs repeat.
        clock: the time source of readings.
    """

    def __init__(
        self,
        *,
        settle_readings: int = 3,
        wobble_g: int = 25,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settle_readings = settle_readings
        self.wobble_g = wobble_g
        self._rng = random.Random(seed)
        self._clock = clock
        self._load_g = 0
        self._unstable_left = 0
        self.reads = 0

    @property
    def load_g(self) -> int:
        return self._load_g

    def place(self, gross_g: int) -> None:
        """Put ``gross_g`` on the scale (a tray, or more food on the tray)."""
        self._load_g = gross_g
        self._unstable_left = self.settle_readings

    def remove(self) -> None:
        """Take everything off the scale."""
        self.place(0)

    def read(self) -> ScaleReading:
        self.reads += 1
        if self._unstable_left > 0:
            self._unstable_left -= 1
            wobble = self._rng.randint(-self.wobble_g, self.wobble_g)
            return ScaleReading(
                max(self._load_g + wobble, 0), stable=False, timestamp=self._clock()
            )
        return ScaleReading(self._load_g, stable=True, timestamp=self._clock())

    def read_stable(self, max_reads: int = 100) -> ScaleReading:
        """Read until the scale reports a stable weight."""
        for _ in range(max_reads):
            reading = self.read()
            if reading.stable:
                return reading
        raise TimeoutError(f"fake scale not stable after {max_reads} readings")


class FakeCardReader:
    """A card reader that hands out queued taps, or cycles through a list of cards.

    Args:
        cards: canonical card ids that ``tap_next`` cycles through.
    """

    def __init__(self, cards: Iterable[str] = (), clock: Callable[[], float] = time.time) -> None:
        self.cards = list(cards)
        self._clock = clock
        self._queue: deque[CardTap] = deque()
        self._cycle = 0
        self.taps: list[str] = []

    def tap(self, card_id: str) -> None:
        """A diner taps ``card_id``."""
        self.taps.append(card_id)
        self._queue.append(CardTap(card_id, self._clock()))

    def tap_next(self) -> str:
        """Tap the next card of ``cards`` in turn; returns its id."""
        if not self.cards:
            raise RuntimeError("the fake card reader has no cards to cycle through")
        card_id = self.cards[self._cycle % len(self.cards)]
        self._cycle += 1
        self.tap(card_id)
        return card_id

    def poll(self) -> CardTap | None:
        return self._queue.popleft() if self._queue else None
