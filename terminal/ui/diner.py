"""The diner screen: what the person with the tray sees, with no button to press.

The live camera picture with each recognised dish outlined and named; the priced list (dish,
grams where weighed, price) and the total; the meal's energy, protein, fat and carbohydrate with
bars against a daily reference; a banner that says what to do next: put the tray down, wait,
tap the card, the result with the new balance, or why the tray is held and that the cashier has
been called. Chinese by default, with an English toggle.

With face accounts (a :class:`terminal.ui.face.FaceCheckout`) the prompt is "请刷卡或看摄像头";
when the customer camera's burst matches an account, the banner asks "王*，是您吗？" with one big
"是我，支付" button and a "不是我" button. The tap is the only click a diner ever makes, and it
runs on the worker thread like everything slow; an answer that is not a proposal shows its
reason and the card prompt stays. No face picture is shown on this screen.

The screen takes the session, subscribes to its events and draws what they say; it keeps only
what it shows.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from terminal.core.menu import PricingMode
from terminal.core.session import (
    CheckoutEvent,
    CheckoutSession,
    CheckoutState,
    Paid,
    PaymentDeclined,
    PaymentRequested,
    TrayRemoved,
)
from terminal.devices.face.payment import AskForCard, FaceProposal
from terminal.ui.face import FaceCheckout
from terminal.ui.status import DeviceStatus
from terminal.ui.text import DailyReference, face_prompt, face_refusal, grams, money, tr
from terminal.ui.tray import ShownTray
from terminal.ui.widgets import CameraViewWidget, DishOutline, NutritionWidget, restyle
from terminal.ui.worker import CommandRunner, EventRelay, InlineRunner, forward_event
from vision.types import DishStatus, Frame

logger = logging.getLogger(__name__)

#: The confirm button is the one button a diner presses: bigger than the staff screens' buttons.
FACE_CONFIRM_STYLE = "font-size: 34px; min-height: 72px; padding: 8px 34px;"
FACE_REJECT_STYLE = "font-size: 24px; min-height: 72px; padding: 8px 22px;"

ICONS = Path(__file__).resolve().parent.parent.parent / "assets" / "ui"


def icon(name: str) -> QIcon:
    """An icon of ``assets/ui`` by file stem."""
    return QIcon(str(ICONS / f"{name}.svg"))


class DinerScreen(QWidget):
    """The full-screen, touch, no-click screen for the diner.

    Args:
        session: the checkout session to follow.
        language: "zh" or "en" to start in.
        reference: the daily intakes the nutrition bars compare against.
        face: paying by face (None: cards only).
        runner: where the diner's "that's me" / "not me" runs (the worker thread); inline when
            not given.
    """

    language_changed = Signal(str)

    def __init__(
        self,
        session: CheckoutSession,
        *,
        language: str = "zh",
        reference: DailyReference | None = None,
        face: FaceCheckout | None = None,
        runner: CommandRunner | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("dinerScreen")
        self.setWindowTitle("trayscan")
        self.menu = session.menu
        self.language = language
        self.face = face
        self.runner: CommandRunner = runner or InlineRunner()
        # What is on screen, from the events; the session keeps the truth.
        self._tray = ShownTray(session.state)
        self._paid: Paid | None = None
        self._declined: str | None = None
        self._camera_ok = True
        # The face payment's last answer for this checkout, and who paid by face.
        self._proposal: FaceProposal | None = None
        self._refusal: AskForCard | None = None
        self._not_me = False
        self._confirming = False
        self._face_name: str | None = None
        self._build(reference)
        self.relay = EventRelay(session.subscribe, self)
        self.relay.received.connect(forward_event(self.on_event))
        self.face_relay: EventRelay | None = None
        if face is not None:
            self.face_relay = EventRelay(face.subscribe, self)
            self.face_relay.received.connect(self.on_face_answer)
        self._refresh()

    # --- layout -----------------------------------------------------------------------------

    def _build(self, reference: DailyReference | None) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        root.setSpacing(0)

        header = QFrame()
        header.setObjectName("header")
        header_row = QHBoxLayout(header)
        header_row.setContentsMargins(24, 10, 16, 10)
        logo = QLabel()
        logo.setPixmap(icon("tray").pixmap(40, 40))
        self.title_label = QLabel()
        self.title_label.setObjectName("title")
        self.language_button = QPushButton()
        self.language_button.setObjectName("languageButton")
        self.language_button.setIcon(icon("language"))
        self.language_button.setIconSize(QSize(28, 28))
        self.language_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.language_button.clicked.connect(self.toggle_language)
        header_row.addWidget(logo)
        header_row.addWidget(self.title_label)
        header_row.addStretch(1)
        header_row.addWidget(self.language_button)
        root.addWidget(header)

        body = QHBoxLayout()
        body.setContentsMargins(16, 16, 16, 8)
        body.setSpacing(16)
        self.camera = CameraViewWidget()
        body.addWidget(self.camera, 11)

        side = QFrame()
        side.setObjectName("trayPanel")
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(16, 10, 16, 12)
        self.tray_title = QLabel()
        self.tray_title.setObjectName("sectionTitle")
        self.tray_title.hide()  # the table's header says it; the rows need the room
        self.lines = QTableWidget(0, 3)
        self.lines.setObjectName("pricedLines")
        self.lines.verticalHeader().setVisible(False)
        self.lines.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.lines.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.lines.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.lines.setShowGrid(False)
        self.lines.verticalHeader().setDefaultSectionSize(40)
        header_view = self.lines.horizontalHeader()
        header_view.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        header_view.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header_view.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header_view.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.lines.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        side_layout.addWidget(self.lines, 1)
        total_row = QHBoxLayout()
        self.total_caption = QLabel()
        self.total_caption.setObjectName("totalCaption")
        self.total_label = QLabel()
        self.total_label.setObjectName("total")
        self.total_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        total_row.addWidget(self.total_caption)
        total_row.addStretch(1)
        total_row.addWidget(self.total_label)
        side_layout.addLayout(total_row)
        rule = QFrame()
        rule.setObjectName("rule")
        rule.setFixedHeight(2)
        side_layout.addWidget(rule)
        self.nutrition = NutritionWidget(reference)
        side_layout.addWidget(self.nutrition)
        body.addWidget(side, 9)
        root.addLayout(body, 1)

        self.banner = QFrame()
        self.banner.setObjectName("banner")
        banner_row = QHBoxLayout(self.banner)
        banner_row.setContentsMargins(28, 14, 28, 14)
        banner_row.setSpacing(20)
        self.banner_icon = QLabel()
        self.banner_icon.setFixedSize(72, 72)
        banner_text = QVBoxLayout()
        self.prompt_label = QLabel()
        self.prompt_label.setObjectName("prompt")
        self.detail_label = QLabel()
        self.detail_label.setObjectName("promptDetail")
        self.detail_label.setWordWrap(True)
        banner_text.addWidget(self.prompt_label)
        banner_text.addWidget(self.detail_label)
        banner_row.addWidget(self.banner_icon)
        banner_row.addLayout(banner_text, 1)
        self.face_reject_button = QPushButton()
        self.face_reject_button.setObjectName("faceReject")
        self.face_reject_button.setStyleSheet(FACE_REJECT_STYLE)
        self.face_reject_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.face_reject_button.clicked.connect(self.reject_face)
        self.face_confirm_button = QPushButton()
        self.face_confirm_button.setObjectName("primaryButton")
        self.face_confirm_button.setStyleSheet(FACE_CONFIRM_STYLE)
        self.face_confirm_button.setIcon(icon("check"))
        self.face_confirm_button.setIconSize(QSize(40, 40))
        self.face_confirm_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.face_confirm_button.clicked.connect(self.confirm_face)
        for button in (self.face_reject_button, self.face_confirm_button):
            button.hide()
            banner_row.addWidget(button)
        self.amount_label = QLabel()
        self.amount_label.setObjectName("bannerAmount")
        banner_row.addWidget(self.amount_label)
        root.addWidget(self.banner)

    # --- inputs -----------------------------------------------------------------------------

    def on_event(self, event: CheckoutEvent) -> None:
        """Follow one session event (on the GUI thread)."""
        self._tray.follow(event)
        if isinstance(event, PaymentDeclined):
            self._declined = event.reason
        elif isinstance(event, Paid):
            self._paid = event
            self._declined = None
        elif isinstance(event, PaymentRequested):
            self._refusal, self._not_me = None, False
        elif isinstance(event, TrayRemoved):
            self._paid = None
            self._declined = None
            self._refusal, self._not_me, self._face_name = None, False, None
            self.camera.set_frame(None)
        if self._tray.state is not CheckoutState.AWAITING_PAYMENT:
            # A card was tapped, the tray left or went to the cashier: the question is void.
            self._proposal = None
        self._refresh()

    @Slot(object)
    def on_face_answer(self, answer: object) -> None:
        """The face payment's answer to a burst (on the GUI thread)."""
        if self._tray.state is not CheckoutState.AWAITING_PAYMENT:
            return
        if isinstance(answer, FaceProposal):
            self._proposal, self._refusal = answer, None
            self._declined = None
        elif isinstance(answer, AskForCard):
            self._proposal, self._refusal = None, answer
        self._refresh()

    def confirm_face(self) -> None:
        """The diner tapped “that's me, pay”: charge the proposed account, on the worker thread."""
        proposal, face = self._proposal, self.face
        if proposal is None or face is None or self._confirming:
            return
        self._confirming = True
        self._face_name = proposal.masked_name
        self._refresh_banner()

        def done(result: object) -> None:
            self._confirming = False
            self._proposal = None
            if isinstance(result, AskForCard):
                self._refusal = result
            self._refresh()

        def failed(exc: Exception) -> None:
            logger.error("face payment failed: %s", exc)
            self._confirming = False
            self._proposal = None
            self._refusal = AskForCard("failed", f"payment failed: {exc}")
            self._refresh()

        self.runner.submit(lambda: face.confirm(proposal), done, failed)

    def reject_face(self) -> None:
        """The diner tapped “not me”: drop the proposal; the card prompt stays."""
        proposal, face = self._proposal, self.face
        if proposal is None or face is None or self._confirming:
            return
        self._proposal, self._not_me = None, True
        self._refresh()
        self.runner.submit(lambda: face.reject(proposal))

    @Slot(object)
    def show_frame(self, frame: object) -> None:
        """Show a camera frame (a :class:`Frame`, or None for an empty scanner)."""
        if isinstance(frame, Frame):
            self.camera.set_frame(frame.image)
        elif frame is None and self._tray.state is CheckoutState.IDLE:
            self.camera.set_frame(None)
        self._refresh_camera_message()

    @Slot(object)
    def show_status(self, status: object) -> None:
        """Follow the devices: a camera that stalls says so on the picture."""
        if isinstance(status, DeviceStatus):
            self._camera_ok = status.camera.ok
            self._refresh_camera_message()

    def toggle_language(self) -> None:
        """Switch between Chinese and English."""
        self.set_language("en" if self.language == "zh" else "zh")

    def set_language(self, language: str) -> None:
        """Show everything in ``language``."""
        self.language = language
        self._refresh()
        self.language_changed.emit(language)

    # --- drawing ----------------------------------------------------------------------------

    def _dish_name(self, dish_id: str | None) -> str:
        if dish_id is None or dish_id not in self.menu:
            return tr("unknown_dish", self.language)
        return self.menu.item(dish_id).name(self.language)

    def _refresh(self) -> None:
        language = self.language
        self.title_label.setText(tr("title", language))
        self.language_button.setText(tr("toggle_language", language))
        self.tray_title.setText(tr("your_tray", language))
        self.total_caption.setText(tr("total", language))
        self.lines.setHorizontalHeaderLabels(
            [tr("dish", language), tr("weight", language), tr("price", language)]
        )
        self._refresh_lines()
        self._refresh_outlines()
        self._refresh_banner()
        self._refresh_camera_message()

    def _refresh_lines(self) -> None:
        priced = self._tray.priced
        lines = priced.lines if priced is not None else ()
        self.lines.setRowCount(len(lines))
        for row, line in enumerate(lines):
            weight = (
                grams(line.grams)
                if line.pricing is PricingMode.PER_100G
                else f"1 {tr('per_portion', self.language)}"
            )
            cells = (line.name(self.language), weight, money(line.price_fen))
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.lines.setItem(row, column, item)
        self.total_label.setText(money(priced.total_fen) if priced is not None else "—")
        self.nutrition.language = self.language
        self.nutrition.set_nutrition(priced.nutrition if priced is not None and lines else None)

    def _refresh_outlines(self) -> None:
        recognition = self._tray.recognition
        if recognition is None:
            self.camera.set_outlines([])
            return
        outlines = []
        for dish in recognition.dishes:
            label = self._dish_name(dish.dish_id)
            if dish.status is DishStatus.UNSURE:
                label = f"{label} ?"
            outlines.append(DishOutline(dish.box_xyxy, label, dish.status))
        self.camera.set_outlines(outlines)

    def _refresh_camera_message(self) -> None:
        if not self._camera_ok:
            self.camera.set_message(tr("camera_stalled", self.language))
        elif self._tray.state is CheckoutState.IDLE and not self.camera.has_frame():
            self.camera.set_message(tr("scanner_ready", self.language))
        else:
            self.camera.set_message("")

    def _set_banner(self, tone: str, icon_name: str, prompt: str, detail: str, amount: str) -> None:
        self.banner.setProperty("tone", tone)
        restyle(self.banner, self.prompt_label, self.detail_label, self.amount_label)
        self.banner_icon.setPixmap(icon(icon_name).pixmap(72, 72))
        self.prompt_label.setText(prompt)
        self.detail_label.setText(detail)
        self.amount_label.setText(amount)

    def _refresh_banner(self) -> None:
        language, state = self.language, self._tray.state
        total = money(self._tray.priced.total_fen) if self._tray.priced is not None else ""
        if state is CheckoutState.IDLE:
            self._set_banner("idle", "tray", tr("idle", language), tr("idle_hint", language), "")
        elif state in (
            CheckoutState.TRAY_ARRIVED,
            CheckoutState.TRAY_SETTLED,
            CheckoutState.RECOGNISED,
        ):
            self._set_banner(
                "info", "scan", tr("recognising", language), tr("hold_still", language), ""
            )
        elif state is CheckoutState.HELD:
            reasons = dict.fromkeys(hold.diner_text(language) for hold in self._tray.holds)
            self._set_banner("warning", "cashier", tr("held", language), "\n".join(reasons), total)
        elif state is CheckoutState.AWAITING_PAYMENT:
            if self._proposal is not None:
                self._set_banner(
                    "action",
                    "check",
                    tr("face_is_this_you", language).format(name=self._proposal.masked_name),
                    tr("face_confirm_hint", language),
                    total,
                )
            elif self._declined:
                detail = (
                    f"{tr('declined', language)}: {self._declined}. {tr('try_again', language)}"
                )
                self._set_banner("warning", "card", tr("tap_card", language), detail, total)
            elif self._refusal is not None:
                refusal = self._refusal
                detail = face_refusal(refusal.code, refusal.reason, language)
                self._set_banner("action", "card", tr("tap_card", language), detail, total)
            elif self._not_me:
                self._set_banner(
                    "action", "card", tr("tap_card", language), tr("face_not_me", language), total
                )
            elif self.face is not None:
                detail = (
                    f"{tr('tap_card_hint', language)} · "
                    f"{face_prompt(self.face.prompt_text, language)}"
                )
                prompt = tr("tap_card_or_face", language)
                self._set_banner("action", "card", prompt, detail, total)
            else:
                self._set_banner(
                    "action", "card", tr("tap_card", language), tr("tap_card_hint", language), total
                )
        elif state is CheckoutState.PAYING:
            self._set_banner(
                "info", "card", tr("paying", language), tr("paying_hint", language), total
            )
        elif state in (CheckoutState.PAID, CheckoutState.POSTED):
            self._set_banner("success", "check", *self._paid_text(), total)
        elif state is CheckoutState.VOIDED:
            self._set_banner("warning", "cashier", tr("voided", language), "", "")
        self._refresh_face_buttons()

    def _refresh_face_buttons(self) -> None:
        asking = self._proposal is not None and self._tray.state is CheckoutState.AWAITING_PAYMENT
        language = self.language
        self.face_confirm_button.setText(tr("face_confirm", language))
        self.face_reject_button.setText(tr("face_reject", language))
        for button in (self.face_confirm_button, self.face_reject_button):
            button.setVisible(asking)
            button.setEnabled(asking and not self._confirming)

    def _paid_text(self) -> tuple[str, str]:
        language = self.language
        paid = self._paid
        prompt = tr("paid", language)
        details = []
        if paid is not None:
            receipt = paid.receipt
            if receipt.method == "face" and self._face_name:
                details.append(self._face_name)
            if receipt.balance_after_fen is not None:
                details.append(f"{tr('balance', language)} {money(receipt.balance_after_fen)}")
            if receipt.offline:
                details.append(tr("offline", language))
        details.append(tr("take_tray", language))
        return prompt, "  ·  ".join(details)
