"""The maintenance screen: a technician's PIN, the devices' states, the model and its rollback,
the calibration launchers and the last errors."""

from __future__ import annotations

import logging
import sys
import time

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from terminal.app import Terminal
from terminal.core.cashier import enrol_cashier
from terminal.ui.drivers import CardView, ScaleView
from terminal.ui.maintenance import Launcher, MaintenanceContext, MaintenanceScreen
from terminal.ui.status import BackendView, CameraView, DeviceStatus, ErrorLog, ModelView
from terminal.ui.worker import InlineRunner

from .conftest import CASHIER_ID, CASHIER_PIN, visible_text

MODEL = ModelView(
    "2026.11.26-3", "2026.11.26-2", True, "# Model card\n\nDetector mAP50 **0.605** on test-strict"
)


def status(
    *, camera_ok: bool = True, reachable: bool = True, taken_at: float = 100.0
) -> DeviceStatus:
    return DeviceStatus(
        camera=CameraView(
            "opencv",
            "ok" if camera_ok else "reconnecting",
            14.8 if camera_ok else 0.0,
            camera_ok,
            "" if camera_ok else "read failed",
        ),
        scale=ScaleView(1624, True),
        card=CardView("04A1****D4", time.time() - 5),
        backend=BackendView(
            "HttpBackend", reachable, "" if reachable else "connection refused", 3, ()
        ),
        model=MODEL,
        checkouts=42,
        taken_at=taken_at,
    )


class Monotonic:
    def __init__(self) -> None:
        self.now = 100.5

    def __call__(self) -> float:
        return self.now


def maintenance(
    qtbot: QtBot, terminal: Terminal, monotonic: Monotonic
) -> tuple[MaintenanceScreen, list[str]]:
    assert terminal.desk is not None
    errors = ErrorLog()
    errors.handle(
        logging.LogRecord(
            "vision.sources", logging.ERROR, __file__, 1, "camera lost: %s", ("EIO",), None
        )
    )
    rolled: list[str] = []

    def rollback() -> str:
        rolled.append("2026.11.26-2")
        return "2026.11.26-2"

    screen = MaintenanceScreen(
        MaintenanceContext(
            desk=terminal.desk,
            runner=InlineRunner(),
            model_info=lambda: MODEL,
            rollback=rollback,
            errors=errors,
            launchers=(
                Launcher("Check calibration", ("calibrate", "check")),
                Launcher("Scale calibration", ("calibrate", "scale", "--fake"), interactive=True),
            ),
            program=(sys.executable, "-c", "import sys; print('ran', *sys.argv[1:])"),
        ),
        monotonic=monotonic,
    )
    qtbot.addWidget(screen)
    screen.resize(1280, 860)
    screen.show()
    return screen, rolled


def sign_in(qtbot: QtBot, screen: MaintenanceScreen, staff_id: str, pin: str) -> None:
    screen.login_id.setText(staff_id)
    screen.login_pin.setText(pin)
    screen.sign_in()


def test_only_technicians_and_supervisors_enter(qtbot: QtBot, terminal: Terminal) -> None:
    screen, _ = maintenance(qtbot, terminal, Monotonic())
    assert terminal.desk is not None
    enrol_cashier(terminal.desk.store, "c1", "王收银", "2468", "cashier")
    sign_in(qtbot, screen, "c1", "2468")
    assert screen.pages.currentIndex() == 0 and "权限不足" in screen.login_message.text()
    sign_in(qtbot, screen, CASHIER_ID, "0000")
    assert "PIN 错误" in screen.login_message.text()
    sign_in(qtbot, screen, CASHIER_ID, CASHIER_PIN)
    assert screen.pages.currentIndex() == 1
    assert terminal.desk.audit.entries()[-1].action == "maintenance_login"


def test_devices_model_rollback_launchers_and_errors(qtbot: QtBot, terminal: Terminal) -> None:
    monotonic = Monotonic()
    screen, rolled = maintenance(qtbot, terminal, monotonic)
    sign_in(qtbot, screen, CASHIER_ID, CASHIER_PIN)
    screen.show_status(status())
    shown = visible_text(screen)
    for expected in (
        "ok · 14.8 fps",
        "1624 g",
        "稳定 stable",
        "04A1****D4",
        "在线 reachable",
        "3 待上传 queued",
        "运行 running",
        "版本 Version 2026.11.26-3",
        "上一版本 Previous: 2026.11.26-2",
        "ERROR vision.sources: camera lost: EIO",
    ):
        assert expected in shown, expected
    assert "0.605" in screen.model_card.toPlainText()
    assert screen.cards["camera"].property("ok") == "true"

    # A camera that is lost and a backend that does not answer show as states.
    screen.show_status(status(camera_ok=False, reachable=False))
    assert screen.cards["camera"].property("ok") == "false"
    assert "reconnecting" in screen.cards["camera"].state.text()
    assert screen.cards["backend"].state.text() == "离线 unreachable"
    # A worker stuck in a device or the backend: its last report grows old, the screen says so.
    monotonic.now = 109.0
    qtbot.waitUntil(lambda: screen.cards["worker"].state.text() == "忙 busy 9 s", timeout=3000)
    assert screen.cards["worker"].property("ok") == "false"

    qtbot.mouseClick(screen.rollback_button, Qt.MouseButton.LeftButton)
    assert rolled == ["2026.11.26-2"]
    assert "已切换到 2026.11.26-2" in screen.message.text()
    assert terminal.desk is not None
    assert terminal.desk.audit.entries()[-1].action == "model_rollback"

    qtbot.mouseClick(screen.launch_buttons[1], Qt.MouseButton.LeftButton)
    assert "$ trayscan calibrate scale --fake" in screen.output.toPlainText()
    qtbot.mouseClick(screen.launch_buttons[0], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "[exit 0]" in screen.output.toPlainText(), timeout=20_000)
    assert "ran calibrate check" in screen.output.toPlainText()
