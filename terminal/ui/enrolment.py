"""The face enrolment screen, in the staff window: a cashier or supervisor (PIN) enrols a diner's
face with the diner's consent, or deletes an account's face data on request.

The page: the account id (and a card of that account when the backend asks for one as proof),
the diner's name as they consent; the live picture of the customer camera with what the
enrolment says of each frame (the guidance, and why a frame was not taken) and how many good
frames it has (accepted / needed); the consent text (version ``face-consent-v1``) with a
checkbox the diner must tick before "登记 Enrol" is enabled. Enrolling stores the templates
with the account through ``FaceAccounts.enrol``, which writes the audit entry (who consented,
the text's version, when). "删除人脸 Delete face data" asks to confirm, then removes every
template of the account (audited too).

Frames are read and fed on the worker thread (:class:`terminal.ui.face.FaceEnrolmentDesk`);
the screen only draws the last one, and forgets it when the enrolment ends. Nothing is saved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from terminal.backend.face_sync import FaceEnrolmentReceipt
from terminal.core.cashier import CashierDesk, CashierRecord
from terminal.devices.face.enrolment import EnrolmentStep
from terminal.devices.face.types import Image
from terminal.ui.cashier import auth_message
from terminal.ui.face import CONSENT_TEXT, CONSENT_VERSION, FaceEnrolmentDesk
from terminal.ui.text import both
from terminal.ui.widgets import CameraViewWidget, StaffHeader, StaffScreen, say
from terminal.ui.worker import CommandRunner

logger = logging.getLogger(__name__)


@dataclass
class EnrolmentContext:
    """What the enrolment screen works with.

    Attributes:
        desk: checks the staff PIN (cashiers and supervisors, the desk's lockout and audit).
        runner: runs capture, enrolment and deletion where the session lives.
        faces: the enrolment's work (the flow, the accounts, the customer camera).
        card_required: the backend wants a card of the account as proof (the reference
            server does from a terminal).
        capture_interval_ms: pause between two captured frames.
    """

    desk: CashierDesk
    runner: CommandRunner
    faces: FaceEnrolmentDesk
    card_required: bool = False
    capture_interval_ms: int = 120


class FaceEnrolmentScreen(StaffScreen):
    """Enrol or delete a diner's face (PIN to enter).

    Args:
        context: the desk, the runner and the enrolment's work.
    """

    def __init__(self, context: EnrolmentContext, parent: QWidget | None = None) -> None:
        super().__init__(
            both("人脸登记", "Face enrolment"), both("收银员登录", "Cashier sign-in"), parent=parent
        )
        self.setObjectName("enrolmentScreen")
        self.context = context
        self.staff: CashierRecord | None = None
        self.capturing = False
        self._step: EnrolmentStep | None = None
        self._busy = False
        self._no_frame = 0
        self._build_work()
        self._refresh_buttons()

    # --- sign in ------------------------------------------------------------------------------

    def sign_in(self) -> None:
        """Check the typed id and PIN with the desk (cashiers and supervisors)."""
        staff_id, pin = self.sign_in_page.take_credentials()
        desk = self.context.desk
        self.context.runner.submit(
            lambda: desk.login(staff_id, pin),
            self._signed_in,
            lambda exc: say(self.login_message, auth_message(exc), error=True),
        )

    def _signed_in(self, record: CashierRecord) -> None:
        self.staff = record
        self.login_message.clear()
        self.staff_label.setText(f"{record.name}（{record.cashier_id}）")
        self.pages.setCurrentIndex(1)
        self.presence_changed.emit(True)

    def sign_out(self) -> None:
        """Back to the PIN page; an enrolment in progress is dropped."""
        signed_in = self.staff is not None
        self.staff = None
        self._reset()
        self.pages.setCurrentIndex(0)
        if signed_in:
            self.presence_changed.emit(False)

    # --- the work page ------------------------------------------------------------------------

    def _build_work(self) -> None:
        page = QWidget()
        outer = QVBoxLayout(page)
        outer.setContentsMargins(0, 0, 0, 0)
        header = StaffHeader(both("人脸登记", "Face enrolment"), self.sign_out)
        self.staff_label = header.staff_label
        outer.addWidget(header)
        body = QHBoxLayout()
        body.setContentsMargins(16, 12, 16, 12)
        body.setSpacing(16)

        left = QVBoxLayout()
        self.camera = CameraViewWidget()
        self.camera.setObjectName("customerCamera")
        left.addWidget(self.camera, 1)
        self.guidance_label = QLabel()
        self.guidance_label.setObjectName("subTitle")
        self.guidance_label.setWordWrap(True)
        left.addWidget(self.guidance_label)
        self.reasons_label = QLabel()
        self.reasons_label.setObjectName("holdReasons")
        self.reasons_label.setWordWrap(True)
        self.reasons_label.hide()
        left.addWidget(self.reasons_label)
        progress_row = QHBoxLayout()
        self.progress_label = QLabel()
        self.progress_label.setObjectName("subTitle")
        self.progress = QProgressBar()
        self.progress.setObjectName("enrolProgress")
        self.progress.setTextVisible(False)
        progress_row.addWidget(self.progress_label)
        progress_row.addWidget(self.progress, 1)
        self.start_button = QPushButton(both("开始采集", "Start capture"))
        self.start_button.clicked.connect(self.start_capture)
        progress_row.addWidget(self.start_button)
        left.addLayout(progress_row)
        body.addLayout(left, 1)

        right = QVBoxLayout()
        form = QGridLayout()
        form.setHorizontalSpacing(10)
        self.account_edit = QLineEdit()
        self.account_edit.setObjectName("faceAccount")
        self.account_edit.setPlaceholderText("E1001")
        self.card_edit = QLineEdit()
        self.card_edit.setObjectName("faceCard")
        self.card_edit.setPlaceholderText(
            "必填 required" if self.context.card_required else "选填 optional"
        )
        self.name_edit = QLineEdit()
        self.name_edit.setObjectName("faceConsentBy")
        self.name_edit.setPlaceholderText("王伟")
        for line, (label, edit) in enumerate(
            (
                (both("账户", "Account"), self.account_edit),
                (both("卡号", "Card"), self.card_edit),
                (both("本人姓名", "Diner's name"), self.name_edit),
            )
        ):
            caption = QLabel(label)
            form.addWidget(caption, line, 0)
            form.addWidget(edit, line, 1)
            edit.textChanged.connect(lambda _=None: self._refresh_buttons())
        right.addLayout(form)

        consent_box = QFrame()
        consent_box.setObjectName("panel")
        consent_layout = QVBoxLayout(consent_box)
        consent_title = QLabel(both("同意书", "Consent") + f" · {CONSENT_VERSION}")
        consent_title.setObjectName("subTitle")
        self.consent_text = QLabel("\n".join(CONSENT_TEXT))
        self.consent_text.setObjectName("consentText")
        self.consent_text.setWordWrap(True)
        self.consent_text.setStyleSheet("font-size: 16px;")
        self.consent_check = QCheckBox(
            both("本人已阅读并同意", "I have read and agree") + f" ({CONSENT_VERSION})"
        )
        self.consent_check.setObjectName("consentCheck")
        self.consent_check.toggled.connect(lambda _=False: self._refresh_buttons())
        consent_layout.addWidget(consent_title)
        consent_layout.addWidget(self.consent_text)
        consent_layout.addWidget(self.consent_check)
        right.addWidget(consent_box)

        self.enrol_button = QPushButton(both("登记", "Enrol"))
        self.enrol_button.setObjectName("primaryButton")
        self.enrol_button.clicked.connect(self.enrol)
        right.addWidget(self.enrol_button)
        right.addStretch(1)

        self.delete_button = QPushButton(both("删除人脸", "Delete face data"))
        self.delete_button.setObjectName("dangerButton")
        self.delete_button.clicked.connect(self.ask_delete)
        right.addWidget(self.delete_button)
        self.delete_confirm = QFrame()
        confirm_layout = QVBoxLayout(self.delete_confirm)
        confirm_layout.setContentsMargins(0, 0, 0, 0)
        self.delete_question = QLabel()
        self.delete_question.setObjectName("holdReasons")
        self.delete_question.setWordWrap(True)
        self.delete_yes = QPushButton(both("确认删除", "Yes, delete"))
        self.delete_yes.setObjectName("dangerButton")
        self.delete_yes.clicked.connect(self.delete)
        self.delete_no = QPushButton(both("取消", "Cancel"))
        self.delete_no.clicked.connect(self._cancel_delete)
        confirm_layout.addWidget(self.delete_question)
        buttons = QHBoxLayout()
        buttons.addWidget(self.delete_no)
        buttons.addWidget(self.delete_yes)
        confirm_layout.addLayout(buttons)
        self.delete_confirm.hide()
        right.addWidget(self.delete_confirm)

        self.message = QLabel()
        self.message.setObjectName("message")
        self.message.setWordWrap(True)
        right.addWidget(self.message)
        body.addLayout(right, 1)
        outer.addLayout(body, 1)
        self.pages.addWidget(page)
        self._show_step(None)

    # --- capture ------------------------------------------------------------------------------

    def start_capture(self) -> None:
        """Start (or start again) taking frames of the diner's face."""
        if self.staff is None:
            return
        if not self.context.faces.can_capture:
            say(
                self.message,
                "没有顾客摄像头，无法采集 · No customer camera on this kiosk: cannot capture",
                error=True,
            )
            return
        self.consent_check.setChecked(False)
        self.message.clear()
        looping = self.capturing  # a capture loop already runs: only the flow starts again
        self.capturing = True
        self._no_frame = 0
        self.start_button.setText(both("重新采集", "Start again"))
        self.context.runner.submit(
            self.context.faces.start, self._show_step if looping else self._started, self._failed
        )

    def _started(self, step: EnrolmentStep) -> None:
        self._show_step(step)
        self._capture_next()

    def _capture_next(self) -> None:
        if self.capturing and self.staff is not None:
            self.context.runner.submit(self.context.faces.capture, self._captured, self._failed)

    def _captured(self, result: tuple[Image | None, EnrolmentStep | None]) -> None:
        if not self.capturing:
            return
        image, step = result
        if image is None or step is None:
            self._no_frame += 1
            self.camera.set_frame(None)
            self.camera.set_message("摄像头无画面 · no picture")
            if self._no_frame >= 50:
                self.capturing = False
                say(
                    self.message,
                    "顾客摄像头无画面 · No picture from the customer camera",
                    error=True,
                )
                self._refresh_buttons()
                return
        else:
            self._no_frame = 0
            self.camera.set_frame(image)
            self._show_step(step)
            if step.done:
                self.capturing = False
                self._refresh_buttons()
                return
        QTimer.singleShot(self.context.capture_interval_ms, self._capture_next)

    def _failed(self, exc: Exception) -> None:
        self.capturing = False
        self._busy = False
        say(self.message, f"出错 · {exc}", error=True)
        self._refresh_buttons()

    def _show_step(self, step: EnrolmentStep | None) -> None:
        self._step = step
        needed = step.needed if step is not None else self.context.faces.frames_needed
        accepted = step.accepted if step is not None else 0
        self.progress.setRange(0, needed)
        self.progress.setValue(accepted)
        self.progress_label.setText(f"已采集 {accepted} / {needed} · accepted")
        if step is None:
            self.guidance_label.setText(
                "请顾客看顾客摄像头，然后点“开始采集” · "
                "Ask the diner to face the customer camera, then Start capture"
            )
            self.camera.set_message("" if self.camera.has_frame() else "顾客摄像头 customer camera")
        else:
            self.guidance_label.setText(step.guidance)
            self.camera.set_message("")
        reasons = step.reasons if step is not None else ()
        self.reasons_label.setText("\n".join(reasons))
        self.reasons_label.setVisible(bool(reasons))
        self._refresh_buttons()

    # --- enrol and delete ---------------------------------------------------------------------

    def _refresh_buttons(self) -> None:
        account = self.account_edit.text().strip()
        card_ok = bool(self.card_edit.text().strip()) or not self.context.card_required
        done = self._step is not None and self._step.done
        self.enrol_button.setEnabled(
            done
            and self.consent_check.isChecked()
            and bool(account)
            and bool(self.name_edit.text().strip())
            and card_ok
            and not self._busy
        )
        self.delete_button.setEnabled(bool(account) and card_ok and not self._busy)
        self.start_button.setEnabled(not self._busy)

    def _card(self) -> str | None:
        return self.card_edit.text().strip() or None

    def enrol(self) -> None:
        """Store the templates with the account, under the diner's consent."""
        if self.staff is None or not self.enrol_button.isEnabled():
            return
        account = self.account_edit.text().strip()
        given_by = self.name_edit.text().strip()
        actor, card, faces = self.staff.cashier_id, self._card(), self.context.faces
        self._busy = True
        self._refresh_buttons()
        self.context.runner.submit(
            lambda: faces.enrol(account, given_by=given_by, actor=actor, card_id=card),
            self._enrolled,
            self._failed,
        )

    def _enrolled(self, receipt: FaceEnrolmentReceipt) -> None:
        self._busy = False
        self._reset()
        say(
            self.message,
            f"已登记 {receipt.account_id}：{receipt.template_count} 个人脸模板 · "
            f"enrolled {receipt.account_id}: {receipt.template_count} templates",
        )

    def ask_delete(self) -> None:
        """Ask to confirm deleting the account's face data."""
        account = self.account_edit.text().strip()
        if self.staff is None or not account:
            return
        self.delete_question.setText(
            f"删除账户 {account} 的全部人脸数据？此操作不可恢复 · "
            f"Delete every face template of {account}? This cannot be undone."
        )
        self.delete_button.hide()
        self.delete_confirm.show()

    def _cancel_delete(self) -> None:
        self.delete_confirm.hide()
        self.delete_button.show()

    def delete(self) -> None:
        """Delete every face template of the account (confirmed)."""
        account = self.account_edit.text().strip()
        self._cancel_delete()
        if self.staff is None or not account:
            return
        actor, card, faces = self.staff.cashier_id, self._card(), self.context.faces
        self._busy = True
        self._refresh_buttons()

        def done(count: int) -> None:
            self._busy = False
            self._refresh_buttons()
            say(
                self.message,
                f"已删除 {account} 的 {count} 个人脸模板 · deleted {count} templates of {account}",
            )

        self.context.runner.submit(
            lambda: faces.delete(account, actor=actor, card_id=card, reason="diner's request"),
            done,
            self._failed,
        )

    def _reset(self) -> None:
        """Forget the enrolment in progress and the picture."""
        self.capturing = False
        self.context.runner.submit(self.context.faces.cancel)
        self.camera.set_frame(None)
        self.consent_check.setChecked(False)
        self.name_edit.clear()
        self.start_button.setText(both("开始采集", "Start capture"))
        self._show_step(None)


__all__ = ["EnrolmentContext", "FaceEnrolmentScreen"]
