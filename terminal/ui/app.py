"""The kiosk application: the diner screen, the staff window (cashier and maintenance), and the
worker thread that runs the terminal under them.

``trayscan kiosk`` calls :func:`run_kiosk`. In demo mode the windows open side by side on a
desktop and the simulated diners of :class:`terminal.ui.drivers.DemoDriver` check out one tray
after another; on a terminal the diner screen fills the customer display and the staff window
opens on the second screen, or comes to the front when a tray is held (F12 shows it too).

With face accounts (``face.enabled``) the staff window has a third tab, the face enrolment
screen, and, given a customer camera, the diner screen offers paying by face
(:mod:`terminal.ui.face`).
"""

from __future__ import annotations

import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import QApplication, QTabWidget, QVBoxLayout, QWidget

from terminal.app import Terminal
from terminal.backend.http import HttpBackend
from terminal.backend.payments import OutboxBackend
from terminal.config import SAMPLE_DATASET, ReplayCameraConfig
from terminal.ui.cashier import CashierScreen, StaffContext
from terminal.ui.diner import DinerScreen, icon
from terminal.ui.drivers import DemoDriver, DemoTimings, KioskDriver, LiveDriver
from terminal.ui.enrolment import EnrolmentContext, FaceEnrolmentScreen
from terminal.ui.face import CustomerCamera, FaceCheckout, FaceEnrolmentDesk
from terminal.ui.maintenance import MaintenanceContext, MaintenanceScreen
from terminal.ui.status import ErrorLog, collect_status, model_view, recent_transactions
from terminal.ui.style import apply_kiosk_style
from terminal.ui.text import both
from terminal.ui.thumbnails import ThumbnailIndex
from terminal.ui.worker import CommandRunner, KioskController, TerminalWorker
from vision.recogniser import SwappableRecogniser

logger = logging.getLogger(__name__)


def thumbnail_sources(terminal: Terminal) -> list[Path]:
    """Labelled photo sets to take dish thumbnails from: the replayed photos' and the sample's."""
    sources = []
    camera = terminal.loaded.config.camera
    if isinstance(camera, ReplayCameraConfig):
        sources.append(terminal.loaded.resolve(camera.folder).parent / "dataset.yaml")
    sample = terminal.loaded.home / SAMPLE_DATASET / "dataset.yaml"
    if sample not in sources:
        sources.append(sample)
    return [source for source in sources if source.is_file()]


class StaffWindow(QWidget):
    """The cashier and maintenance screens (and the face enrolment screen when face accounts are
    on), as tabs of one window beside the scanner."""

    def __init__(
        self,
        cashier: CashierScreen,
        maintenance: MaintenanceScreen,
        enrolment: FaceEnrolmentScreen | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("staffWindow")
        self.setWindowTitle("trayscan · 收银 Cashier")
        self.setWindowIcon(icon("cashier"))
        self.tabs = QTabWidget()
        self.tabs.addTab(cashier, icon("cashier"), both("收银", "Cashier"))
        self.tabs.addTab(maintenance, icon("gear"), both("维护", "Maintenance"))
        if enrolment is not None:
            self.tabs.addTab(enrolment, icon("card"), both("人脸", "Face"))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        self.cashier = cashier
        self.maintenance = maintenance
        self.enrolment = enrolment

    def call_cashier(self, held: bool) -> None:
        """A tray is held: bring the cashier tab to the front."""
        if held:
            self.tabs.setCurrentWidget(self.cashier)
            self.show()
            self.raise_()
            self.activateWindow()


@dataclass
class Kiosk:
    """The screens of one terminal, wired to its session and worker."""

    diner: DinerScreen
    cashier: CashierScreen
    maintenance: MaintenanceScreen
    staff: StaffWindow
    enrolment: FaceEnrolmentScreen | None = None
    face: FaceCheckout | None = None


def build_kiosk(
    terminal: Terminal,
    driver: KioskDriver,
    runner: CommandRunner,
    *,
    errors: ErrorLog | None = None,
    thumbnails: ThumbnailIndex | None = None,
    customer_camera: CustomerCamera | None = None,
) -> Kiosk:
    """Make the screens over ``terminal`` (the session, the desk, the model, the faces).

    With face accounts on, the enrolment screen is added; with a ``customer_camera`` too, the
    driver steps a :class:`FaceCheckout` and the diner screen offers paying by face.
    """
    assert terminal.desk is not None, "the kiosk needs the terminal's cashier desk"
    session = terminal.session
    recogniser = terminal.recogniser
    if thumbnails is None:
        thumbnails = ThumbnailIndex(terminal.menu, thumbnail_sources(terminal))
    outbox = terminal.backend.outbox if isinstance(terminal.backend, OutboxBackend) else None
    face = terminal.face
    checkout: FaceCheckout | None = None
    enrolment: FaceEnrolmentScreen | None = None
    if face is not None:
        if customer_camera is not None:
            checkout = FaceCheckout(face.payment, customer_camera, session)
            driver.face = checkout
        else:
            logger.warning(
                "face accounts are on but the kiosk has no customer camera: the diner screen "
                "asks for cards only and the enrolment screen cannot capture"
            )
        enrolment = FaceEnrolmentScreen(
            EnrolmentContext(
                desk=terminal.desk,
                runner=runner,
                faces=FaceEnrolmentDesk(face, customer_camera),
                card_required=isinstance(face.accounts.backend, HttpBackend),
            )
        )
    diner = DinerScreen(
        session, language=terminal.loaded.config.language, face=checkout, runner=runner
    )
    cashier = CashierScreen(
        session,
        StaffContext(
            desk=terminal.desk,
            runner=runner,
            recogniser=recogniser,
            thumbnails=thumbnails,
            transactions=lambda: recent_transactions(terminal),
            outbox=outbox,
        ),
    )
    maintenance = MaintenanceScreen(
        MaintenanceContext(
            desk=terminal.desk,
            runner=runner,
            model_info=lambda: model_view(terminal, with_card=True),
            rollback=recogniser.rollback if isinstance(recogniser, SwappableRecogniser) else None,
            errors=errors,
        )
    )

    def presence(_: bool) -> None:
        driver.cashier_present = (
            cashier.signed_in
            or maintenance.technician is not None
            or (enrolment is not None and enrolment.staff is not None)
        )

    cashier.presence_changed.connect(presence)
    maintenance.presence_changed.connect(presence)
    if enrolment is not None:
        enrolment.presence_changed.connect(presence)
    staff = StaffWindow(cashier, maintenance, enrolment)
    cashier.attention.connect(staff.call_cashier)
    return Kiosk(diner, cashier, maintenance, staff, enrolment, checkout)


def connect_worker(kiosk: Kiosk, worker: TerminalWorker) -> None:
    """Frames and device snapshots from the worker thread to the screens (queued)."""
    worker.frame_ready.connect(kiosk.diner.show_frame)
    worker.frame_ready.connect(kiosk.cashier.show_frame)
    worker.status_ready.connect(kiosk.diner.show_status)
    worker.status_ready.connect(kiosk.maintenance.show_status)


def _place_windows(kiosk: Kiosk, *, demo: bool) -> None:
    screens = QGuiApplication.screens()
    if demo or len(screens) < 2:
        kiosk.diner.resize(1280, 800)
        kiosk.staff.resize(1280, 860)
        kiosk.diner.show()
        if demo:
            # Side by side as far as the desktop allows: the staff window to the right.
            screen = kiosk.diner.screen() or QGuiApplication.primaryScreen()
            area = screen.availableGeometry()
            kiosk.diner.move(area.left(), area.top())
            x = max(area.left() + 60, area.right() - kiosk.staff.width())
            kiosk.staff.move(x, area.top() + 40)
            kiosk.staff.show()
        else:
            kiosk.diner.showFullScreen()
        return
    kiosk.diner.setScreen(screens[0])
    kiosk.diner.showFullScreen()
    kiosk.staff.setScreen(screens[1])
    kiosk.staff.showFullScreen()


def run_kiosk(
    terminal: Terminal,
    *,
    demo: bool,
    max_trays: int | None = None,
    out: TextIO | None = None,
    timings: DemoTimings | None = None,
    customer_camera: CustomerCamera | None = None,
) -> int:
    """Open the kiosk over ``terminal`` and run until its window closes (or ``max_trays``).

    ``customer_camera``: the camera facing the diner, for paying by face and enrolment when the
    terminal has face accounts (``face.camera`` in the config; ``trayscan kiosk`` passes it).

    Returns the process exit status.
    """
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication(sys.argv[:1])
    app.setApplicationName("trayscan")
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    family = apply_kiosk_style(app)
    logger.info("kiosk font: %s", family or "(no CJK font)")
    driver: KioskDriver = (
        DemoDriver(terminal, timings=timings, max_trays=max_trays, out=out)
        if demo
        else LiveDriver(terminal, out)
    )
    worker = TerminalWorker(driver, lambda fps: collect_status(terminal, driver, frames_per_s=fps))
    controller = KioskController(worker)
    kiosk = build_kiosk(
        terminal, driver, controller, errors=errors, customer_camera=customer_camera
    )
    connect_worker(kiosk, worker)
    if max_trays is not None:
        controller.driver_finished.connect(app.quit)
    for window in (kiosk.diner, kiosk.staff):
        QShortcut(QKeySequence("Ctrl+Q"), window, app.quit)
        QShortcut(QKeySequence("F12"), window, lambda: kiosk.staff.call_cashier(True))
    QShortcut(
        QKeySequence("F11"),
        kiosk.diner,
        lambda: (
            kiosk.diner.showNormal() if kiosk.diner.isFullScreen() else kiosk.diner.showFullScreen()
        ),
    )
    _place_windows(kiosk, demo=demo)
    # Let Ctrl-C in the terminal reach Python while Qt's loop runs.
    signal.signal(signal.SIGINT, lambda *_: app.quit())
    signal.signal(signal.SIGTERM, lambda *_: app.quit())
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(200)
    controller.start()
    try:
        status = app.exec()
    finally:
        wake.stop()
        controller.stop()
        logging.getLogger().removeHandler(errors)
    return int(status)
