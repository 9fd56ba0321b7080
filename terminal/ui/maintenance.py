"""The maintenance screen, for the technician (PIN): how every part of the terminal is doing.

Device states (camera fps and health, the scale's reading and stability, the card reader's last
read, whether the backend answers, the outbox's depth), the model bundle in use with its model
card and a switch back to the previous bundle, launchers for the calibration commands, and the
last warnings and errors of the log.

The figures come as :class:`terminal.ui.status.DeviceStatus` snapshots from the worker thread.
A snapshot that stops coming (a device or the backend hangs the worker) shows as its age, in
red, while the screen goes on answering.
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PySide6.QtCore import QProcess, Qt, QTimer, Slot
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from terminal.core.cashier import CashierDesk, CashierRecord
from terminal.ui.access import technician_login
from terminal.ui.cashier import auth_message
from terminal.ui.status import DeviceStatus, ErrorLog, ModelView
from terminal.ui.text import both
from terminal.ui.widgets import StaffHeader, StaffScreen, restyle, say
from terminal.ui.worker import CommandRunner

logger = logging.getLogger(__name__)

#: A snapshot older than this means the worker is stuck in a device or the backend.
STALE_AFTER_S = 3.0


@dataclass(frozen=True)
class Launcher:
    """A calibration command: run here when it needs no answers, else shown to type in a
    terminal (the scale calibration asks for weights step by step)."""

    label: str
    args: tuple[str, ...]
    interactive: bool = False

    def command_line(self) -> str:
        """How a technician types it."""
        return "trayscan " + shlex.join(self.args)


DEFAULT_LAUNCHERS = (
    Launcher(both("检查校准", "Check profile"), ("calibrate", "check")),
    Launcher(
        both("秤演练", "Scale rehearsal"),
        ("calibrate", "scale", "--fake"),
        interactive=True,
    ),
    Launcher(
        both("校准秤", "Scale"),
        ("calibrate", "scale", "--url", "/dev/ttyUSB0", "--protocol", "mt-sics"),
        interactive=True,
    ),
    Launcher(
        both("校准摄像头", "Camera"),
        ("calibrate", "camera", "--device", "0", "--auto"),
        interactive=True,
    ),
)


@dataclass
class MaintenanceContext:
    """What the maintenance screen works with.

    Attributes:
        desk: checks the technician's PIN (with the desk's lockout and audit log).
        runner: runs the slow parts where the session lives (the worker thread).
        model_info: the model in use, with its card.
        rollback: switches to the previous bundle and returns its version (None: cannot).
        errors: the log's last warnings and errors.
        launchers: the calibration commands offered.
        program: how to start ``trayscan`` (this Python running ``terminal.cli``).
        clock: seconds since the epoch, for the PIN lockout and the age of the last card.
    """

    desk: CashierDesk
    runner: CommandRunner
    model_info: Callable[[], ModelView]
    rollback: Callable[[], str] | None = None
    errors: ErrorLog | None = None
    launchers: Sequence[Launcher] = DEFAULT_LAUNCHERS
    program: tuple[str, ...] = field(default_factory=lambda: (sys.executable, "-m", "terminal.cli"))
    clock: Callable[[], float] = time.time


class DeviceCardWidget(QFrame):
    """One part of the terminal: its name, its state in a word, and the figures."""

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("deviceCard")
        layout = QVBoxLayout(self)
        title = QLabel(name)
        title.setObjectName("deviceName")
        self.state = QLabel("—")
        self.state.setObjectName("deviceState")
        self.detail = QLabel("")
        self.detail.setObjectName("deviceDetail")
        self.detail.setWordWrap(True)
        layout.addWidget(title)
        layout.addWidget(self.state)
        layout.addWidget(self.detail)
        layout.addStretch(1)

    def show_state(self, ok: bool, state: str, detail: str = "") -> None:
        """Show a state; not ``ok`` turns the card red."""
        self.setProperty("ok", "true" if ok else "false")
        restyle(self, self.state)
        self.state.setText(state)
        self.detail.setText(detail)


def _age(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class MaintenanceScreen(StaffScreen):
    """The technician's screen (PIN to enter).

    Args:
        context: the desk, the runner, the model and the log.
        monotonic: clock for the snapshot's age.
    """

    def __init__(
        self,
        context: MaintenanceContext,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(
            both("维护", "Maintenance"), both("技术员登录", "Technician sign-in"), parent=parent
        )
        self.setObjectName("maintenanceScreen")
        self.context = context
        self.monotonic = monotonic
        self.technician: CashierRecord | None = None
        self.status: DeviceStatus | None = None
        self._process: QProcess | None = None
        self._partial = ""
        self._build_work()
        self._ticker = QTimer(self)
        self._ticker.setInterval(1000)
        self._ticker.timeout.connect(self._refresh_age)
        self._ticker.start()

    # --- sign in ------------------------------------------------------------------------------

    def sign_in(self) -> None:
        """Check the technician's id and PIN."""
        staff_id, pin = self.sign_in_page.take_credentials()
        context = self.context
        self.context.runner.submit(
            lambda: technician_login(context.desk, staff_id, pin, clock=context.clock),
            self._signed_in,
            lambda exc: say(self.login_message, auth_message(exc), error=True),
        )

    def _signed_in(self, record: CashierRecord) -> None:
        self.technician = record
        self.staff_label.setText(f"{record.name}（{record.cashier_id}）")
        self.pages.setCurrentIndex(1)
        self.presence_changed.emit(True)
        self.refresh_model()
        self._refresh_errors()

    def sign_out(self) -> None:
        """Back to the PIN page."""
        self.technician = None
        self.pages.setCurrentIndex(0)
        self.presence_changed.emit(False)

    # --- the work page ------------------------------------------------------------------------

    def _build_work(self) -> None:
        page = QWidget()
        outer = QVBoxLayout(page)
        outer.setContentsMargins(0, 0, 0, 0)
        self.age_label = QLabel()
        self.age_label.setObjectName("staffName")
        header = StaffHeader(both("维护", "Maintenance"), self.sign_out, extras=[self.age_label])
        self.staff_label = header.staff_label
        outer.addWidget(header)

        body = QHBoxLayout()
        body.setContentsMargins(16, 12, 16, 12)
        left = QVBoxLayout()
        cards = QGridLayout()
        cards.setSpacing(10)
        self.cards = {
            "camera": DeviceCardWidget(both("摄像头", "Camera")),
            "scale": DeviceCardWidget(both("电子秤", "Scale")),
            "card": DeviceCardWidget(both("读卡器", "Card reader")),
            "backend": DeviceCardWidget(both("后台", "Backend")),
            "outbox": DeviceCardWidget(both("待上传", "Outbox")),
            "worker": DeviceCardWidget(both("结算线程", "Worker")),
        }
        for index, card in enumerate(self.cards.values()):
            cards.addWidget(card, index // 3, index % 3)
        left.addLayout(cards)
        errors_title = QLabel(both("最近错误", "Last errors"))
        errors_title.setObjectName("sectionTitle")
        left.addWidget(errors_title)
        self.errors = QListWidget()
        self.errors.setObjectName("errorList")
        self.errors.setWordWrap(True)
        self.errors.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        left.addWidget(self.errors, 1)
        body.addLayout(left, 3)

        right = QVBoxLayout()
        model_title = QLabel(both("识别模型", "Model bundle"))
        model_title.setObjectName("sectionTitle")
        right.addWidget(model_title)
        self.model_label = QLabel("—")
        self.model_label.setObjectName("subTitle")
        self.model_label.setWordWrap(True)
        right.addWidget(self.model_label)
        self.model_card = QTextBrowser()
        self.model_card.setObjectName("modelCard")
        right.addWidget(self.model_card, 3)
        self.rollback_button = QPushButton(both("切换到上一版本", "Switch to the previous bundle"))
        self.rollback_button.setObjectName("dangerButton")
        self.rollback_button.clicked.connect(self.rollback)
        right.addWidget(self.rollback_button)
        launch_title = QLabel(both("校准", "Calibration"))
        launch_title.setObjectName("sectionTitle")
        right.addWidget(launch_title)
        launchers = QGridLayout()
        self.launch_buttons: list[QPushButton] = []
        for index, launcher in enumerate(self.context.launchers):
            button = QPushButton(launcher.label)
            button.setToolTip(launcher.command_line())
            # Long labels must not widen the screen: the button takes the width it is given.
            button.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
            button.clicked.connect(lambda _=False, item=launcher: self.launch(item))
            launchers.addWidget(button, index // 2, index % 2)
            self.launch_buttons.append(button)
        right.addLayout(launchers)
        self.output = QPlainTextEdit()
        self.output.setObjectName("launcherOutput")
        self.output.setReadOnly(True)
        self.output.setMaximumBlockCount(500)
        right.addWidget(self.output, 1)
        self.message = QLabel()
        self.message.setObjectName("message")
        self.message.setWordWrap(True)
        right.addWidget(self.message)
        body.addLayout(right, 2)
        outer.addLayout(body, 1)
        self.pages.addWidget(page)

    # --- figures --------------------------------------------------------------------------------

    @Slot(object)
    def show_status(self, status: object) -> None:
        """Draw a snapshot of the devices (from the worker thread's ``status_ready``)."""
        if not isinstance(status, DeviceStatus):
            return
        self.status = status
        camera = status.camera
        fps = f"{camera.fps:.1f} fps" if camera.fps is not None else "— fps"
        self.cards["camera"].show_state(
            camera.ok, f"{camera.state} · {fps}", f"{camera.kind} {camera.detail}".strip()
        )
        scale = status.scale
        if scale.fault:
            self.cards["scale"].show_state(False, "故障 fault", scale.fault)
        else:
            reading = f"{scale.gross_g} g" if scale.gross_g is not None else "— g"
            steady = "稳定 stable" if scale.stable else "不稳定 moving"
            self.cards["scale"].show_state(True, reading, steady)
        card = status.card
        if card is None:
            self.cards["card"].show_state(True, "未刷卡 no tap yet")
        else:
            ago = _age(max(0.0, self.context.clock() - card.at))
            self.cards["card"].show_state(True, card.masked, f"{ago} 前 ago")
        backend = status.backend
        self.cards["backend"].show_state(
            backend.reachable,
            "在线 reachable" if backend.reachable else "离线 unreachable",
            f"{backend.kind} {backend.detail}".strip(),
        )
        if backend.outbox_depth is None:
            self.cards["outbox"].show_state(True, "—", "本机账本 embedded ledger")
        else:
            flagged = len(backend.flagged)
            self.cards["outbox"].show_state(
                flagged == 0,
                f"{backend.outbox_depth} 待上传 queued",
                f"{flagged} 待处理 flagged" if flagged else "",
            )
        self.model_label.setText(self._model_text(status.model))
        self.rollback_button.setEnabled(
            status.model.previous is not None and self.context.rollback is not None
        )
        self._refresh_age()
        self._refresh_errors()

    def _model_text(self, model: ModelView) -> str:
        previous = model.previous or "无 none"
        return f"版本 Version {model.version}\n上一版本 Previous: {previous}"

    def _refresh_age(self) -> None:
        status = self.status
        card = self.cards["worker"]
        if status is None:
            card.show_state(False, "等待 waiting", "no report from the worker yet")
            self.age_label.setText("")
            return
        age = self.monotonic() - status.taken_at
        if age > STALE_AFTER_S:
            card.show_state(
                False,
                f"忙 busy {_age(age)}",
                "无响应：设备或后台可能卡住 · no report: a device or the backend may hang",
            )
        else:
            card.show_state(True, "运行 running", f"{status.checkouts} 单 checkouts")
        self.age_label.setText(f"更新于 {_age(age)} 前 · updated {_age(age)} ago")

    def _refresh_errors(self) -> None:
        log = self.context.errors
        if log is None:
            return
        entries = log.entries()
        self.errors.clear()
        for entry in entries[:30]:
            when = time.strftime("%H:%M:%S", time.localtime(entry.at))
            self.errors.addItem(f"{when} {entry.level} {entry.logger_name}: {entry.message}")
        if not entries:
            self.errors.addItem("无 · none")

    def refresh_model(self) -> None:
        """Reload the model's version and card (read on the worker thread)."""
        self.context.runner.submit(self.context.model_info, self._show_model)

    def _show_model(self, model: ModelView) -> None:
        self.model_label.setText(self._model_text(model))
        self.model_card.setMarkdown(model.card_markdown or "(no model card)")
        self.rollback_button.setEnabled(
            model.previous is not None and self.context.rollback is not None
        )

    def rollback(self) -> None:
        """Switch the recogniser back to the previous bundle."""
        rollback = self.context.rollback
        if rollback is None or self.technician is None:
            return
        actor = self.technician.cashier_id

        def done(version: str) -> None:
            self.context.desk.audit.append(actor, "model_rollback", {"version": version})
            say(self.message, f"已切换到 {version} · now running {version}")
            self.refresh_model()

        self.context.runner.submit(
            rollback, done, lambda exc: say(self.message, f"未切换 · {exc}", error=True)
        )

    # --- calibration ----------------------------------------------------------------------------

    def launch(self, launcher: Launcher) -> None:
        """Run a calibration command, or show how to type it when it asks questions."""
        if launcher.interactive:
            self.output.appendPlainText(
                f"$ {launcher.command_line()}\n  在终端中运行（会逐步提问）· run it in a terminal: "
                "it asks for each step\n"
            )
            return
        if self._process is not None:
            say(self.message, "上一个命令仍在运行 · a command is still running", error=True)
            return
        process = QProcess(self)
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        process.readyReadStandardOutput.connect(
            lambda: self._output(bytes(process.readAllStandardOutput().data()))
        )
        process.finished.connect(lambda code, _status: self._finished(launcher, code))
        self.output.appendPlainText(f"$ {launcher.command_line()}")
        self._process = process
        program, *arguments = self.context.program
        process.start(program, [*arguments, *launcher.args])

    def _output(self, chunk: bytes) -> None:
        # Output arrives in pieces: show whole lines, keep the rest for the next piece.
        text = self._partial + chunk.decode(errors="replace")
        *lines, self._partial = text.split("\n")
        for line in lines:
            self.output.appendPlainText(line.rstrip("\r"))

    def _finished(self, launcher: Launcher, code: int) -> None:
        if self._partial:
            self.output.appendPlainText(self._partial)
            self._partial = ""
        self.output.appendPlainText(f"[exit {code}]\n")
        self._process = None
        say(self.message, f"{launcher.label}: exit {code}", error=code != 0)

    def wait_for_launcher(self, timeout_ms: int = 30_000) -> bool:
        """Wait for a running calibration command to end (for tests); True when it ended."""
        process = self._process
        return process is None or bool(process.waitForFinished(timeout_ms))


__all__ = [
    "DEFAULT_LAUNCHERS",
    "DeviceCardWidget",
    "Launcher",
    "MaintenanceContext",
    "MaintenanceScreen",
]
