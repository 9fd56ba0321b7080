"""The live terminal loop: camera, scale and card reader drive the checkout, no button pressed.

Every step reads the newest frame, the newest weight and any card tap:

- the tray watcher or the weight filter notices a tray: the checkout starts;
- the watcher says the tray is *settled* (still in the tray area) and the weight filter has a
  stable weight that may be charged: the settled frame is recognised and the tray priced;
- a tap while awaiting payment charges the card (a tap a moment early is kept for a few seconds);
- the scale returns to empty, or the watcher sees the tray gone while the scale is empty: the
  checkout ends; the weight filter remembers the charge so one tray is never charged twice.

A scale that stops answering mid-checkout holds the tray for the cashier instead of guessing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from terminal.app import Terminal
from terminal.core.holds import HoldReason
from terminal.core.ports import CardTap
from terminal.core.session import (
    ALLOWED,
    CheckoutEvent,
    CheckoutState,
    Paid,
    TrayArrived,
    TrayRemoved,
)
from terminal.demo import CheckoutRecord
from terminal.devices.scale import ScaleError
from terminal.devices.weight_filter import WeightFilter, WeightFilterConfig
from terminal.payment import take_card_payment
from vision.sources import CameraSource
from vision.types import Frame
from vision.watcher import TrayWatcher, WatcherConfig

logger = logging.getLogger(__name__)

EARLY_TAP_S = 5.0


class LiveTerminal:
    """Runs checkouts from real (or fake) devices until stopped.

    Args:
        terminal: the wired terminal.
        out: where one JSON line per finished checkout goes (None: nowhere).
        watcher_config: tray watcher thresholds (settle time from the config by default).
        weight_config: weight filter thresholds.
        tray_area: the calibrated tray area in pixels, or None for the whole frame.
        clock: seconds, for card-tap ages and scale faults.
    """

    def __init__(
        self,
        terminal: Terminal,
        out: TextIO | None = None,
        *,
        watcher_config: WatcherConfig | None = None,
        weight_config: WeightFilterConfig | None = None,
        tray_area: tuple[int, int, int, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.terminal = terminal
        self.session = terminal.session
        self.out = out
        settle_s = terminal.loaded.config.thresholds.settle_s
        self.watcher = TrayWatcher(
            watcher_config or WatcherConfig(settle_s=settle_s), tray_area=tray_area
        )
        self.weight = WeightFilter(weight_config)
        self.clock = clock
        self.settled_frame: Frame | None = None
        self.pending_tap: CardTap | None = None
        self.pending_tap_at = 0.0
        self.scale_fault: str | None = None
        self.records: list[CheckoutRecord] = []
        self._record: CheckoutRecord | None = None
        self._last_frame: Frame | None = None
        self.session.subscribe(self._on_event)

    # --- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event, max_trays: int | None = None) -> list[CheckoutRecord]:
        """Step until ``stop`` is set, the camera ends, or ``max_trays`` checkouts finished."""
        while not stop.is_set():
            if not self.step():
                break
            if max_trays is not None and len(self.records) >= max_trays:
                break
        return self.records

    def step(self) -> bool:
        """One pass over the devices; False when the camera has ended."""
        frame = self._read_frame()
        if frame is None and not isinstance(self.terminal.camera, CameraSource):
            return False
        if frame is not None:
            self._last_frame = frame
            event = self.watcher.update(frame)
            if event is not None:
                self._on_watcher(event.kind, event.frame)
        self._read_scale()
        self._read_card()
        self.terminal.deliver_posted()
        self._advance()
        return True

    def _read_frame(self) -> Frame | None:
        camera = self.terminal.camera
        if isinstance(camera, CameraSource):
            return camera.read(timeout_s=0.2)
        return camera.read()

    def _read_scale(self) -> None:
        try:
            reading = self.terminal.scale.read()
        except ScaleError as exc:
            if self.scale_fault is None:
                logger.warning("scale fault: %s", exc)
            self.scale_fault = str(exc)
            if self.session.state in ALLOWED["fail"]:
                self.session.fail(HoldReason.DEVICE_FAILED, f"scale: {exc}")
            return
        self.scale_fault = None
        event = self.weight.update(reading)
        if event is None:
            return
        if event.kind == "loaded" and self.session.state is CheckoutState.IDLE:
            self.session.tray_arrived()
        elif event.kind == "unloaded":
            self._tray_gone()
        elif event.kind == "fault" and self.session.state in ALLOWED["fail"]:
            self.session.fail(HoldReason.DEVICE_FAILED, f"scale: {event.reason}")

    def _read_card(self) -> None:
        tap = self.terminal.card_reader.poll()
        if tap is not None:
            self.pending_tap, self.pending_tap_at = tap, self.clock()
        if self.pending_tap is not None and self.clock() - self.pending_tap_at > EARLY_TAP_S:
            logger.info("card tap dropped: no tray was waiting for payment")
            self.pending_tap = None

    def _on_watcher(self, kind: str, frame: Frame) -> None:
        if kind == "arrived" and self.session.state is CheckoutState.IDLE:
            self.session.tray_arrived()
        elif kind == "settled":
            self.settled_frame = frame
        elif kind == "removed" and self.weight.stable_g is not None and not self.weight.loaded:
            self._tray_gone()

    def _advance(self) -> None:
        session = self.session
        stable = self.weight.stable_g
        if (
            session.state is CheckoutState.TRAY_ARRIVED
            and self.settled_frame is not None
            and stable is not None
            and self.weight.may_charge()
        ):
            session.tray_settled(stable)
            self.terminal.frame_settled(self.settled_frame)
            try:
                recognition = self.terminal.recogniser.recognise(self.settled_frame)
            except Exception as exc:  # any recogniser failure goes to the cashier
                logger.exception("recognition failed")
                session.recognition_failed(f"{type(exc).__name__}: {exc}")
            else:
                session.recognised(recognition)
        if session.state is CheckoutState.AWAITING_PAYMENT and self.pending_tap is not None:
            tap, self.pending_tap = self.pending_tap, None
            take_card_payment(session, self.terminal.backend, tap.card_id)

    def _tray_gone(self) -> None:
        self.settled_frame = None
        if self.session.state in ALLOWED["tray_removed"]:
            self.session.tray_removed()

    # --- records --------------------------------------------------------------------------

    def _on_event(self, event: CheckoutEvent) -> None:
        if isinstance(event, TrayArrived):
            source = self._last_frame.source if self._last_frame else ""
            self._record = CheckoutRecord(tray=Path(source).name or f"tray-{len(self.records) + 1}")
        record = self._record
        if record is None:
            return
        record.apply(event, self.session.payment_request)
        if isinstance(event, Paid) and self.weight.stable_g is not None:
            self.weight.charged(self.weight.stable_g)
        if isinstance(event, TrayRemoved):
            self.records.append(record)
            self._record = None
            if self.out is not None:
                language = self.terminal.loaded.config.language
                self.out.write(json.dumps(record.to_json(language), ensure_ascii=False) + "\n")
                self.out.flush()
