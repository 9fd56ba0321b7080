"""The kiosk's worker thread, and how the GUI thread talks to it.

The checkout session is not thread-safe and recognition, card payments and device reads can take
a while, so one worker thread owns all of them: it steps the driver (the live devices or the
simulated diners), runs the commands the screens submit (a cashier's fix, a refund, a rollback),
and reports back through queued signals. The GUI thread only draws; a stalled camera or backend
leaves it free to show that state.

- :class:`EventRelay` turns the events of the session or the face payment, raised on the worker
  thread, into a Qt signal delivered on the GUI thread.
- :class:`KioskController` starts the worker thread and carries commands to it
  (:meth:`KioskController.submit`); :class:`InlineRunner` runs commands on the spot, for tests
  and tools that drive the session from the GUI thread.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from terminal.core.session import CheckoutEvent
from terminal.ui.drivers import KioskDriver
from terminal.ui.status import DeviceStatus

logger = logging.getLogger(__name__)

Done = Callable[[Any], None]
Failed = Callable[[Exception], None]


class CommandRunner(Protocol):
    """Runs a command where the session lives and reports back on the GUI thread."""

    def submit(
        self,
        command: Callable[[], Any],
        on_done: Done | None = None,
        on_error: Failed | None = None,
    ) -> None:
        """Run ``command``; call ``on_done(result)`` or ``on_error(exception)`` afterwards."""
        ...


class InlineRunner:
    """Runs each command at once on the calling thread (tests; a session with no worker)."""

    def submit(
        self,
        command: Callable[[], Any],
        on_done: Done | None = None,
        on_error: Failed | None = None,
    ) -> None:
        try:
            result = command()
        except Exception as exc:
            if on_error is None:
                logger.exception("command failed")
            else:
                on_error(exc)
            return
        if on_done is not None:
            on_done(result)


class EventRelay(QObject):
    """Re-emits every event of a plain-Python publisher as :attr:`received`, always on the
    relay's own (GUI) thread.

    The checkout session and the face payment call their handlers on whatever thread acted on
    them (the worker thread in the kiosk). The relay hops each event over to its own thread
    through a queued signal, so whatever a screen connects to :attr:`received` runs on the GUI
    thread; when everything runs on one thread (the tests) the event is delivered at once.

    Args:
        subscribe: registers a handler with the publisher and returns the unsubscribe function
            (``CheckoutSession.subscribe``, ``FaceCheckout.subscribe``).
    """

    received = Signal(object)
    _arrived = Signal(object)

    def __init__(
        self,
        subscribe: Callable[[Callable[[Any], None]], Callable[[], None]],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._arrived.connect(self._deliver)
        unsubscribe = subscribe(self._arrived.emit)
        self._unsubscribe = unsubscribe
        self.destroyed.connect(lambda *_: unsubscribe())

    @Slot(object)
    def _deliver(self, event: object) -> None:
        self.received.emit(event)

    def close(self) -> None:
        """Stop relaying."""
        self._unsubscribe()


class TerminalWorker(QObject):
    """Lives on the worker thread: steps the driver, runs commands, reports the devices.

    Args:
        driver: what moves the checkout.
        status: gathers a :class:`DeviceStatus`, given the frames per second shown lately.
        step_interval_ms: pause between two driver steps.
        status_interval_s: how often the devices are reported.
    """

    frame_ready = Signal(object)
    status_ready = Signal(object)
    busy_changed = Signal(str)
    command_finished = Signal(int, object, object)
    driver_finished = Signal()

    def __init__(
        self,
        driver: KioskDriver,
        status: Callable[[float | None], DeviceStatus],
        *,
        step_interval_ms: int = 30,
        status_interval_s: float = 1.0,
        frame_interval_s: float = 1.0 / 15.0,
    ) -> None:
        super().__init__()
        self.driver = driver
        self._status = status
        self.step_interval_ms = step_interval_ms
        self.status_interval_s = status_interval_s
        self.frame_interval_s = frame_interval_s
        self._stop = threading.Event()
        self._timer: QTimer | None = None
        self._last_frame: object = None
        self._last_frame_at = 0.0
        self._last_status_at = 0.0
        self._frame_times: collections.deque[float] = collections.deque(maxlen=60)
        self._finished = False

    @Slot()
    def start(self) -> None:
        """Begin stepping (called on the worker thread when it starts)."""
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._tick)
        self._timer.start(0)

    def stop(self) -> None:
        """Ask the loop to stop after the current step; safe from any thread."""
        self._stop.set()

    @Slot()
    def shutdown(self) -> None:
        """Stop stepping and end the worker thread's loop (runs on the worker thread, where the
        step timer lives)."""
        self._stop.set()
        if self._timer is not None:
            self._timer.stop()
            self._timer.deleteLater()
            self._timer = None
        thread = self.thread()
        if thread is not None:
            thread.quit()

    @Slot(int, object)
    def run_command(self, token: int, command: Callable[[], Any]) -> None:
        """Run one command submitted by the GUI thread and report its outcome."""
        self.busy_changed.emit(getattr(command, "__name__", "command"))
        try:
            result = command()
        except Exception as exc:
            logger.info("command %s failed: %s", getattr(command, "__name__", "?"), exc)
            self.command_finished.emit(token, None, exc)
        else:
            self.command_finished.emit(token, result, None)
        finally:
            self.busy_changed.emit("")

    def frames_per_s(self) -> float | None:
        """Frames shown per second over the last few seconds."""
        times = self._frame_times
        if len(times) < 2 or times[-1] - times[0] <= 0:
            return None
        return (len(times) - 1) / (times[-1] - times[0])

    def _tick(self) -> None:
        if self._stop.is_set():
            return
        if not self._finished:
            try:
                if not self.driver.step():
                    self._finished = True
                    self.driver_finished.emit()
            except Exception:
                # A bug in one step must not kill the terminal: log it, keep going.
                logger.exception("kiosk step failed")
        now = time.monotonic()
        self._emit_frame(now)
        if now - self._last_status_at >= self.status_interval_s:
            self._last_status_at = now
            try:
                self.status_ready.emit(self._status(self.frames_per_s()))
            except Exception:
                logger.exception("device status failed")
        if self._timer is not None and not self._stop.is_set():
            self._timer.start(self.step_interval_ms)

    def _emit_frame(self, now: float) -> None:
        frame = self.driver.view_frame()
        changed = frame is not self._last_frame
        due = frame is not None and now - self._last_frame_at >= self.frame_interval_s
        if changed or due:
            self._last_frame, self._last_frame_at = frame, now
            self._frame_times.append(now)
            self.frame_ready.emit(frame)


class KioskController(QObject):
    """Owns the worker thread; the GUI thread's way to reach the session.

    Args:
        worker: the worker to run on its own thread.
    """

    _command = Signal(int, object)
    _shutdown = Signal()
    #: The driver has nothing more to do (the replay ended, max trays); on the GUI thread.
    driver_finished = Signal()

    def __init__(self, worker: TerminalWorker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.worker_thread = QThread()
        self.worker_thread.setObjectName("kiosk-worker")
        worker.moveToThread(self.worker_thread)
        self.worker_thread.started.connect(worker.start)
        self._command.connect(worker.run_command)
        self._shutdown.connect(worker.shutdown)
        worker.command_finished.connect(self._finished)
        worker.driver_finished.connect(self._driver_finished)
        self._pending: dict[int, tuple[Done | None, Failed | None]] = {}
        self._next_token = 0

    def start(self) -> None:
        """Start the worker thread."""
        self.worker_thread.start()

    def stop(self, timeout_ms: int = 5000) -> bool:
        """Stop the worker after its current step; False when it did not end in time (a device
        or the backend still hangs; the thread is left to end on its own)."""
        self.worker.stop()
        if not self.worker_thread.isRunning():
            return True
        self._shutdown.emit()
        ended = self.worker_thread.wait(timeout_ms)
        if not ended:
            logger.warning("the kiosk worker did not stop within %d ms", timeout_ms)
        return bool(ended)

    def submit(
        self,
        command: Callable[[], Any],
        on_done: Done | None = None,
        on_error: Failed | None = None,
    ) -> None:
        """Run ``command`` on the worker thread; the callbacks run on the GUI thread."""
        self._next_token += 1
        token = self._next_token
        self._pending[token] = (on_done, on_error)
        self._command.emit(token, command)

    @Slot()
    def _driver_finished(self) -> None:
        self.driver_finished.emit()

    @Slot(int, object, object)
    def _finished(self, token: int, result: object, error: object) -> None:
        on_done, on_error = self._pending.pop(token, (None, None))
        if isinstance(error, Exception):
            if on_error is not None:
                on_error(error)
            else:
                logger.error("command failed: %s", error)
        elif on_done is not None:
            on_done(result)


def forward_event(handler: Callable[[CheckoutEvent], None]) -> Callable[[object], None]:
    """Adapt a typed event handler to a slot taking ``object``."""

    def slot(event: object) -> None:
        if isinstance(event, CheckoutEvent):
            handler(event)

    return slot
