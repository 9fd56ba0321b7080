"""Screenshots of each kiosk screen, saved to docs/screenshots/ for the README.

Each is taken with fixed data (tray-01 of the sample, the demo menu, a fixed device snapshot), so
the pictures change only when the screens do.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from terminal.app import Terminal
from terminal.ui.cashier import CashierScreen, StaffContext
from terminal.ui.diner import DinerScreen
from terminal.ui.drivers import CardView, ScaleView
from terminal.ui.maintenance import MaintenanceContext, MaintenanceScreen
from terminal.ui.status import BackendView, CameraView, DeviceStatus, ErrorLog, ModelView
from terminal.ui.thumbnails import ThumbnailIndex
from terminal.ui.worker import InlineRunner

from ..conftest import REPO
from .conftest import CASHIER_ID, CASHIER_PIN, put_tray, tray_frame, truth, unsure_and_unknown

SCREENSHOTS = REPO / "docs" / "screenshots"
SIZE = (1280, 800)


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """Times on screen in UTC, so the pictures are the same on every machine."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


def save(widget: QWidget, name: str) -> Path:
    widget.resize(*SIZE)
    widget.show()
    QApplication.processEvents()  # let the layouts settle before the picture is taken
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    assert widget.grab().save(str(path), "PNG")
    return path


def assert_picture(path: Path) -> None:
    image = QImage(str(path))
    assert (image.width(), image.height()) == SIZE
    colours = {image.pixel(x, y) for x in range(0, SIZE[0], 16) for y in range(0, SIZE[1], 16)}
    assert len(colours) > 50, f"{path.name} looks blank"


def test_screenshots_of_every_screen(
    qtbot: QtBot, terminal: Terminal, thumbnails: ThumbnailIndex
) -> None:
    assert terminal.desk is not None
    diner = DinerScreen(terminal.session)
    qtbot.addWidget(diner)
    cashier = CashierScreen(
        terminal.session,
        StaffContext(terminal.desk, InlineRunner(), thumbnails=thumbnails),
    )
    qtbot.addWidget(cashier)
    paths = [save(diner, "diner-idle")]

    frame = tray_frame("tray-01.jpg")
    diner.show_frame(frame)
    put_tray(terminal, frame)
    paths.append(save(diner, "diner-priced"))
    assert diner.total_label.text() == "¥12.62"
    terminal.session.void("screenshot")
    terminal.session.tray_removed()

    cashier.login_id.setText(CASHIER_ID)
    cashier.login_pin.setText(CASHIER_PIN)
    cashier.sign_in()
    cashier.show_frame(frame)
    put_tray(terminal, frame, unsure_and_unknown(truth(terminal, frame)))
    unknown, unsure = cashier.pickers()
    unsure.choose("dua_hau")
    qtbot.keyClicks(unknown.search, "mf")
    paths.append(save(cashier, "cashier-held"))
    assert "菜品 2 未识别" in cashier.hold_label.text()

    errors = ErrorLog()
    for message in ("camera lost: read failed; reopening", "backend unreachable: timed out"):
        record = logging.LogRecord("vision.sources", logging.WARNING, "", 1, message, (), None)
        record.created = 1_795_000_000.0
        errors.handle(record)
    shipped = REPO / "assets" / "models" / "default"
    # The shipped bundle's own version and card, with the bundle before it kept for rollback.
    model = ModelView(
        json.loads((shipped / "bundle.json").read_text(encoding="utf-8"))["version"],
        "2026.11.26-3",
        True,
        (shipped / "MODEL_CARD.md").read_text(encoding="utf-8"),
    )
    maintenance = MaintenanceScreen(
        MaintenanceContext(
            terminal.desk,
            InlineRunner(),
            model_info=lambda: model,
            rollback=lambda: "2026.11.26-3",
            errors=errors,
            program=(sys.executable, "-c", "pass"),
            clock=lambda: 1_795_000_100.0,
        ),
        monotonic=lambda: 100.4,
    )
    qtbot.addWidget(maintenance)
    maintenance.login_id.setText(CASHIER_ID)
    maintenance.login_pin.setText(CASHIER_PIN)
    maintenance.sign_in()
    maintenance.show_status(
        DeviceStatus(
            camera=CameraView("opencv", "ok", 14.9, True),
            scale=ScaleView(1624, True),
            card=CardView("04A1****D4", 1_795_000_095.8),
            backend=BackendView("HttpBackend", True, "", 0, ()),
            model=model,
            checkouts=128,
            taken_at=100.0,
        )
    )
    maintenance.launch(maintenance.context.launchers[1])
    paths.append(save(maintenance, "maintenance"))

    for path in paths:
        assert_picture(path)
