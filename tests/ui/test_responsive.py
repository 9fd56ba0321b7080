"""The GUI thread keeps answering while the recogniser and the backend are slow: recognition,
payment and device I/O run on the kiosk's worker thread, and the screens hear of them through
queued signals."""

from __future__ import annotations

import threading
import time
from typing import Any

from PySide6.QtCore import QTimer
from pytestqt.qtbot import QtBot

from terminal.app import Terminal
from terminal.core.session import CheckoutState
from terminal.ui.diner import DinerScreen
from terminal.ui.drivers import DemoDriver, DemoTimings
from terminal.ui.status import collect_status
from terminal.ui.worker import KioskController, TerminalWorker
from vision.types import Frame, TrayRecognition


class Ticks:
    """A counter the GUI thread's timer moves on; what the diner screen said at each tick."""

    def __init__(self, screen: DinerScreen) -> None:
        self.count = 0
        self.prompts: set[str] = set()
        self.screen = screen

    def tick(self) -> None:
        self.count += 1
        self.prompts.add(self.screen.prompt_label.text())


class SlowCall:
    """Records how far the GUI's counter moved while one slow call ran."""

    def __init__(self, ticks: Ticks, delay_s: float) -> None:
        self.ticks = ticks
        self.delay_s = delay_s
        self.moved: list[int] = []
        self.threads: set[str] = set()

    def run(self) -> None:
        self.threads.add(threading.current_thread().name)
        start = self.ticks.count
        time.sleep(self.delay_s)
        self.moved.append(self.ticks.count - start)


class SlowRecogniser:
    def __init__(self, inner: Any, slow: SlowCall) -> None:
        self.inner = inner
        self.slow = slow
        self.model_version = inner.model_version

    def recognise(self, frame: Frame) -> TrayRecognition:
        self.slow.run()
        result: TrayRecognition = self.inner.recognise(frame)
        return result


class SlowBackend:
    """The ledger behind a slow network: every lookup and charge takes a while."""

    def __init__(self, inner: Any, slow: SlowCall) -> None:
        self.inner = inner
        self.slow = slow

    def lookup_card(self, card_id: str) -> Any:
        self.slow.run()
        return self.inner.lookup_card(card_id)

    def charge(self, request: Any, account_id: str) -> Any:
        self.slow.run()
        return self.inner.charge(request, account_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_the_screen_keeps_answering_while_recognition_and_payment_are_slow(
    qtbot: QtBot, terminal: Terminal
) -> None:
    screen = DinerScreen(terminal.session)
    qtbot.addWidget(screen)
    screen.show()
    ticks = Ticks(screen)
    recognising = SlowCall(ticks, 0.8)
    paying = SlowCall(ticks, 0.4)
    terminal.recogniser = SlowRecogniser(terminal.recogniser, recognising)
    terminal.backend = SlowBackend(terminal.backend, paying)  # type: ignore[assignment]
    driver = DemoDriver(
        terminal,
        timings=DemoTimings(idle_s=0, settle_s=0, tap_after_s=0, paid_s=0.3),
        max_trays=1,
    )
    worker = TerminalWorker(driver, lambda fps: collect_status(terminal, driver, frames_per_s=fps))
    worker.frame_ready.connect(screen.show_frame)
    worker.status_ready.connect(screen.show_status)
    controller = KioskController(worker)
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(ticks.tick)
    timer.start()
    controller.start()
    try:
        with qtbot.waitSignal(controller.driver_finished, timeout=30_000):
            pass
    finally:
        controller.stop()
        timer.stop()
    # The slow calls ran on the worker thread, and the GUI's timer went on ticking through them.
    assert recognising.threads and "MainThread" not in recognising.threads
    assert paying.threads and "MainThread" not in paying.threads
    assert recognising.moved and min(recognising.moved) >= 5
    assert len(paying.moved) == 2 and min(paying.moved) >= 3
    # Meanwhile the diner screen said what was going on, and ended on the idle prompt.
    assert {"正在识别…", "正在支付…", "支付成功"} <= ticks.prompts
    assert terminal.session.state is CheckoutState.IDLE
    assert screen.prompt_label.text() == "请将餐盘放在识别区"
