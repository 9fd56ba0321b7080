"""The cashier screen: a PIN to enter, then everything the terminal could not decide.

- the held tray with the reason, its picture with every dish numbered, and for each unsure or
  unknown dish a picker: the recogniser's top candidates as photo tiles, and a search by name or
  pinyin initials ("mf" finds 米饭);
- the priced tray: add or remove a dish, override a price with a reason, void the checkout, take
  cash or another tender;
- a confirmed correction goes into the model's gallery with one tap;
- recent transactions, with a refund that asks for the PIN again;
- the outbox's flagged entries (offline payments the backend refused), to acknowledge.

Every action goes through :class:`terminal.core.cashier.CashierDesk` (PIN-checked, audited) on
the worker thread; the screen only shows the session's events and the desk's answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from terminal.backend.outbox import Outbox, OutboxEntry
from terminal.core.cashier import (
    CashierDesk,
    CashierLockedError,
    CashierRecord,
    PinRejectedError,
    RoleRequiredError,
    UnknownCashierError,
)
from terminal.core.holds import Hold, HoldReason
from terminal.core.menu import Menu, MenuItem, PricingMode
from terminal.core.ports import PaymentDeclinedError, RefundReceipt, TransactionRecord
from terminal.core.pricing import PricedTray
from terminal.core.session import (
    CheckoutEvent,
    CheckoutSession,
    CheckoutState,
    CheckoutVoided,
    Paid,
    PaymentRequested,
    TrayHeld,
    TrayRecognised,
    TrayRemoved,
)
from terminal.ui import pinyin
from terminal.ui.access import acknowledge_flagged
from terminal.ui.text import both, grams, money
from terminal.ui.thumbnails import ThumbnailIndex
from terminal.ui.tray import ShownTray
from terminal.ui.widgets import (
    CameraViewWidget,
    DishOutline,
    DishTileButton,
    StaffHeader,
    StaffScreen,
    name_tile,
    pixmap_from_bgr,
    restyle,
    say,
)
from terminal.ui.worker import CommandRunner, EventRelay, forward_event
from vision.recogniser import SwappableRecogniser
from vision.types import DishRecognition, Frame, TrayRecognition

logger = logging.getLogger(__name__)

#: The holds a picker resolves: one dish the recogniser could not name for sure.
DISH_HOLDS = frozenset({HoldReason.UNSURE_DISH, HoldReason.UNKNOWN_DISH, HoldReason.NOT_ON_MENU})
NOT_A_DISH = ""
#: The checkout's state as the cashier reads it.
STATE_NAMES = {
    CheckoutState.IDLE: "空闲 idle",
    CheckoutState.TRAY_ARRIVED: "餐盘到达 tray arrived",
    CheckoutState.TRAY_SETTLED: "识别中 recognising",
    CheckoutState.RECOGNISED: "已识别 recognised",
    CheckoutState.HELD: "待收银员处理 held for the cashier",
    CheckoutState.AWAITING_PAYMENT: "等待付款 awaiting payment",
    CheckoutState.PAYING: "付款中 paying",
    CheckoutState.PAID: "已付款 paid",
    CheckoutState.POSTED: "已入账 paid and posted",
    CheckoutState.VOIDED: "已作废 voided",
}
TOP_K = 4


def parse_yuan(text: str) -> int:
    """``"12.5"`` or ``"¥12.50"`` as fen (1250).

    Raises:
        ValueError: not an amount of money with at most two decimals.
    """
    cleaned = text.strip().lstrip("¥").strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount") from None
    fen = value * 100
    if fen != fen.to_integral_value() or not value.is_finite():
        raise ValueError(f"{text!r} has more than two decimals")
    return int(fen)


def auth_message(exc: Exception) -> str:
    """What the cashier reads when a PIN or a role is refused."""
    if isinstance(exc, CashierLockedError):
        until = time.strftime("%H:%M:%S", time.localtime(exc.locked_until))
        return (
            f"已锁定，{exc.remaining_s} 秒后（{until}）再试 · "
            f"Locked after too many wrong PINs: try again in {exc.remaining_s} s"
        )
    if isinstance(exc, PinRejectedError):
        return f"PIN 错误，还可尝试 {exc.attempts_left} 次 · Wrong PIN: {exc.attempts_left} left"
    if isinstance(exc, UnknownCashierError):
        return "无此工号 · No such staff id"
    if isinstance(exc, RoleRequiredError):
        return f"权限不足 · Not allowed: {exc}"
    if isinstance(exc, PaymentDeclinedError):
        return f"被拒绝 · Declined: {exc.reason}"
    return f"未完成 · Not done: {exc}"


def hold_text(hold: Hold, menu: Menu, recognition: TrayRecognition | None) -> str:
    """One hold as the cashier reads it: which dish, and why."""
    number = f"{hold.dish_index + 1}" if hold.dish_index is not None else ""
    if hold.reason is HoldReason.UNSURE_DISH and recognition is not None:
        dish = recognition.dishes[hold.dish_index or 0]
        names = " / ".join(
            menu.item(c.dish_id).name_zh for c in dish.candidates[:3] if c.dish_id in menu
        )
        return f"菜品 {number} 不确定（{names}）· dish {number} unsure"
    if hold.reason is HoldReason.UNKNOWN_DISH:
        return f"菜品 {number} 未识别 · dish {number} not recognised"
    if hold.reason is HoldReason.NOT_ON_MENU:
        return f"菜品 {number} 不在今日菜单（{hold.detail}）· not on today's menu"
    zh = hold.diner_text("zh").removesuffix("，已呼叫收银员")
    return f"{zh} · {hold.reason.value.replace('_', ' ')}: {hold.detail}"


@dataclass
class StaffContext:
    """What the staff screens work with besides the session.

    Attributes:
        desk: every cashier action, PIN-checked and audited.
        runner: runs the actions where the session lives (the worker thread).
        recogniser: the running model, for "add to gallery" (a swappable one can learn).
        thumbnails: dish photos for the picker.
        transactions: this terminal's recent transactions, newest first.
        outbox: the outbox, for its flagged entries (None with the embedded ledger).
    """

    desk: CashierDesk
    runner: CommandRunner
    recogniser: object | None = None
    thumbnails: ThumbnailIndex | None = None
    transactions: Callable[[], list[TransactionRecord]] | None = None
    outbox: Outbox | None = None


class DishPickerWidget(QFrame):
    """Names one dish: the recogniser's top candidates as photo tiles, a search by name or
    pinyin initials, and "not a dish"."""

    chosen = Signal(int, str)

    def __init__(
        self,
        dish_index: int,
        dish: DishRecognition,
        reason: str,
        menu: Menu,
        thumbnails: ThumbnailIndex | None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("dishPicker")
        self.dish_index = dish_index
        self.menu = menu
        self.thumbnails = thumbnails
        self.choice: str | None = None
        layout = QVBoxLayout(self)
        title = QLabel(reason)
        title.setObjectName("subTitle")
        title.setWordWrap(True)
        layout.addWidget(title)
        self.tiles: list[DishTileButton] = []
        tiles_row = QHBoxLayout()
        for candidate in dish.candidates[:TOP_K]:
            if candidate.dish_id not in menu:
                continue
            item = menu.item(candidate.dish_id)
            tile = self._tile(item, f"{item.name_zh}\n{candidate.score:.0%}")
            tiles_row.addWidget(tile)
        none_tile = DishTileButton(NOT_A_DISH, "不是菜品\nnot a dish", name_tile("✕", 96))
        none_tile.clicked.connect(lambda _=False: self.choose(NOT_A_DISH))
        self.tiles.append(none_tile)
        tiles_row.addWidget(none_tile)
        tiles_row.addStretch(1)
        layout.addLayout(tiles_row)
        self.search = QLineEdit()
        self.search.setObjectName("dishSearch")
        self.search.setPlaceholderText(
            "搜索：名称或拼音首字母（mf = 米饭）· search name or initials"
        )
        self.search.textChanged.connect(self._search)
        layout.addWidget(self.search)
        self.results = QListWidget()
        self.results.setObjectName("searchResults")
        self.results.setViewMode(QListWidget.ViewMode.IconMode)
        self.results.setIconSize(QSize(72, 72))
        self.results.setGridSize(QSize(132, 112))
        self.results.setFlow(QListWidget.Flow.LeftToRight)
        self.results.setWrapping(False)
        self.results.setFixedHeight(128)
        self.results.setMovement(QListWidget.Movement.Static)
        self.results.itemClicked.connect(
            lambda item: self.choose(str(item.data(Qt.ItemDataRole.UserRole)))
        )
        self.results.hide()
        layout.addWidget(self.results)

    def _picture(self, item: MenuItem, size: int = 96) -> Any:
        image = self.thumbnails.get(item.id) if self.thumbnails is not None else None
        return pixmap_from_bgr(image, size) if image is not None else name_tile(item.name_zh, size)

    def _tile(self, item: MenuItem, caption: str) -> DishTileButton:
        tile = DishTileButton(item.id, caption, self._picture(item))
        tile.clicked.connect(lambda _=False, dish_id=item.id: self.choose(dish_id))
        self.tiles.append(tile)
        return tile

    def _search(self, text: str) -> None:
        self.results.clear()
        if not text.strip():
            self.results.hide()
            return
        for item in pinyin.search(self.menu, text, limit=12):
            entry = QListWidgetItem(self._picture(item, 72), item.name_zh)
            entry.setData(Qt.ItemDataRole.UserRole, item.id)
            entry.setToolTip(item.name_en)
            self.results.addItem(entry)
        self.results.setVisible(self.results.count() > 0)

    def result_names(self) -> list[str]:
        """The names the search shows now."""
        return [self.results.item(i).text() for i in range(self.results.count())]

    def choose(self, dish_id: str) -> None:
        """The cashier picked ``dish_id`` ("" for not a dish)."""
        self.choice = dish_id
        for tile in self.tiles:
            tile.setChecked(tile.dish_id == dish_id)
        self.setProperty("resolved", "true")
        restyle(self)
        self.chosen.emit(self.dish_index, dish_id)


class CashierScreen(StaffScreen):
    """The cashier's touch screen beside the scanner.

    Args:
        session: the checkout session to follow.
        context: the desk, the runner and what else the actions need.
        idle_sign_out_ms: sign the cashier out after this long without a touch.
    """

    attention = Signal(bool)

    def __init__(
        self,
        session: CheckoutSession,
        context: StaffContext,
        *,
        idle_sign_out_ms: int = 180_000,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(
            both("收银台", "Cashier"), both("收银员登录", "Cashier sign-in"), parent=parent
        )
        self.setObjectName("cashierScreen")
        self.menu = session.menu
        self.context = context
        self.desk = context.desk
        self.runner = context.runner
        self.cashier: CashierRecord | None = None
        self._pin = ""
        # What is shown, from the session's events.
        self._tray = ShownTray(session.state)
        self._frame: Frame | None = None
        self._snapshot: Frame | None = None
        self._pickers: list[DishPickerWidget] = []
        self._choices: dict[int, str | None] = {}
        self._corrections: list[tuple[int, str]] = []
        self._transactions: list[TransactionRecord] = []
        self._flagged: list[OutboxEntry] = []
        self._idle = QTimer(self)
        self._idle.setSingleShot(True)
        self._idle.setInterval(idle_sign_out_ms)
        self._idle.timeout.connect(self.sign_out)
        self._build_work()
        self.relay = EventRelay(session.subscribe, self)
        self.relay.received.connect(forward_event(self.on_event))
        self._refresh_tray()

    # --- sign in ------------------------------------------------------------------------------

    def sign_in(self) -> None:
        """Check the typed id and PIN with the desk."""
        staff_id, pin = self.sign_in_page.take_credentials()
        self.runner.submit(
            lambda: self.desk.login(staff_id, pin),
            lambda record: self._signed_in(record, pin),
            lambda exc: say(self.login_message, auth_message(exc), error=True),
        )

    def _signed_in(self, record: CashierRecord, pin: str) -> None:
        self.cashier, self._pin = record, pin
        self.login_message.clear()
        self.staff_label.setText(f"收银员 {record.name}（{record.cashier_id}）")
        self.pages.setCurrentIndex(1)
        self._idle.start()
        self.presence_changed.emit(True)
        self.refresh_transactions()
        self.refresh_flagged()

    def sign_out(self) -> None:
        """Back to the PIN page; the PIN is forgotten."""
        signed_in = self.cashier is not None
        self.cashier, self._pin = None, ""
        self.pages.setCurrentIndex(0)
        self._idle.stop()
        if signed_in:
            self.presence_changed.emit(False)

    @property
    def signed_in(self) -> bool:
        """Whether a cashier is signed in."""
        return self.cashier is not None

    # --- the work page ------------------------------------------------------------------------

    def _build_work(self) -> None:
        page = QWidget()
        outer = QVBoxLayout(page)
        outer.setContentsMargins(0, 0, 0, 0)
        header = StaffHeader(both("收银台", "Cashier"), self.sign_out)
        self.staff_label = header.staff_label
        outer.addWidget(header)
        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_tray_tab(), both("当前餐盘", "Tray"))
        self.tabs.addTab(self._build_transactions_tab(), both("交易记录", "Transactions"))
        self.tabs.addTab(self._build_flagged_tab(), both("待处理", "Flagged"))
        self.tabs.currentChanged.connect(lambda _: self._touched())
        outer.addWidget(self.tabs, 1)
        self.pages.addWidget(page)

    def _build_tray_tab(self) -> QWidget:
        tab = QWidget()
        layout = QHBoxLayout(tab)
        left = QVBoxLayout()
        self.state_label = QLabel()
        self.state_label.setObjectName("subTitle")
        left.addWidget(self.state_label)
        self.snapshot = CameraViewWidget()
        self.snapshot.numbered = True
        self.snapshot.setMinimumSize(420, 360)
        left.addWidget(self.snapshot, 1)
        self.hold_label = QLabel()
        self.hold_label.setObjectName("holdReasons")
        self.hold_label.setWordWrap(True)
        left.addWidget(self.hold_label)
        layout.addLayout(left, 4)

        right_panel = QWidget()
        right = QVBoxLayout(right_panel)
        right.setContentsMargins(4, 0, 4, 0)
        self.pickers_box = QVBoxLayout()
        right.addLayout(self.pickers_box)
        self.confirm_button = QPushButton(both("确认菜品", "Confirm dishes"))
        self.confirm_button.setObjectName("primaryButton")
        self.confirm_button.clicked.connect(self.confirm_dishes)
        right.addWidget(self.confirm_button)
        self.gallery_box = QHBoxLayout()
        right.addLayout(self.gallery_box)

        self.lines = QTableWidget(0, 3)
        self.lines.setObjectName("staffTable")
        self.lines.setHorizontalHeaderLabels(["菜品 Dish", "重量 Weight", "金额 Price"])
        self.lines.verticalHeader().setVisible(False)
        self.lines.verticalHeader().setDefaultSectionSize(40)
        self.lines.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.lines.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.lines.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.lines.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.lines.setMinimumHeight(170)
        right.addWidget(self.lines)
        self.total_label = QLabel()
        self.total_label.setObjectName("sectionTitle")
        self.total_label.setAlignment(Qt.AlignmentFlag.AlignRight)
        right.addWidget(self.total_label)

        grid = QGridLayout()
        self.reason = QLineEdit()
        self.reason.setObjectName("reason")
        self.reason.setPlaceholderText("原因 Reason（改价、作废必填 · needed to override or void）")
        grid.addWidget(self.reason, 0, 0, 1, 4)
        self.price_edit = QLineEdit()
        self.price_edit.setObjectName("overridePrice")
        self.price_edit.setPlaceholderText("新价格 ¥")
        self.override_button = QPushButton(both("改价", "Set price"))
        self.override_button.clicked.connect(self.override_price)
        self.remove_button = QPushButton(both("删除所选", "Remove line"))
        self.remove_button.clicked.connect(self.remove_line)
        self.void_button = QPushButton(both("作废", "Void"))
        self.void_button.setObjectName("dangerButton")
        self.void_button.clicked.connect(self.void)
        grid.addWidget(self.price_edit, 1, 0)
        grid.addWidget(self.override_button, 1, 1)
        grid.addWidget(self.remove_button, 1, 2)
        grid.addWidget(self.void_button, 1, 3)
        self.add_search = QLineEdit()
        self.add_search.setObjectName("addDishSearch")
        self.add_search.setPlaceholderText("添加菜品：名称或拼音首字母 · add a dish")
        self.add_search.textChanged.connect(self._search_add)
        grid.addWidget(self.add_search, 2, 0, 1, 4)
        self.add_results = QListWidget()
        self.add_results.setObjectName("addResults")
        self.add_results.setFlow(QListWidget.Flow.LeftToRight)
        self.add_results.setFixedHeight(56)
        self.add_results.itemClicked.connect(
            lambda item: self.add_dish(str(item.data(Qt.ItemDataRole.UserRole)))
        )
        self.add_results.hide()
        grid.addWidget(self.add_results, 3, 0, 1, 4)
        self.cash_button = QPushButton(both("收现金", "Cash"))
        self.cash_button.setObjectName("primaryButton")
        self.cash_button.clicked.connect(lambda: self.take_other_tender("cash"))
        self.other_button = QPushButton(both("其他方式", "Other tender"))
        self.other_button.clicked.connect(lambda: self.take_other_tender("other"))
        grid.addWidget(self.cash_button, 4, 0, 1, 2)
        grid.addWidget(self.other_button, 4, 2, 1, 2)
        right.addLayout(grid)
        self.tray_message = QLabel()
        self.tray_message.setObjectName("message")
        self.tray_message.setWordWrap(True)
        right.addWidget(self.tray_message)
        right.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(right_panel)
        layout.addWidget(scroll, 5)
        return tab

    def _build_transactions_tab(self) -> QWidget:
        tab = QWidget()
        layout = QVBoxLayout(tab)
        self.transactions_table = QTableWidget(0, 6)
        self.transactions_table.setObjectName("staffTable")
        self.transactions_table.setHorizontalHeaderLabels(
            ["时间 Time", "交易 Id", "账户 Account", "方式 Method", "金额 Amount", "已退 Refunded"]
        )
        self.transactions_table.verticalHeader().setVisible(False)
        self.transactions_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.transactions_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.transactions_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.transactions_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.Stretch
        )
        self.transactions_table.itemSelectionChanged.connect(self._transaction_selected)
        layout.addWidget(self.transactions_table, 1)
        form = QHBoxLayout()
        self.refund_amount = QLineEdit()
        self.refund_amount.setObjectName("refundAmount")
        self.refund_amount.setPlaceholderText("退款金额 ¥")
        self.refund_reason = QLineEdit()
        self.refund_reason.setObjectName("refundReason")
        self.refund_reason.setPlaceholderText("原因 Reason")
        self.refund_pin = QLineEdit()
        self.refund_pin.setObjectName("refundPin")
        self.refund_pin.setPlaceholderText("再次输入 PIN")
        self.refund_pin.setEchoMode(QLineEdit.EchoMode.Password)
        self.refund_button = QPushButton(both("退款", "Refund"))
        self.refund_button.setObjectName("dangerButton")
        self.refund_button.clicked.connect(self.refund)
        refresh = QPushButton(both("刷新", "Refresh"))
        refresh.clicked.connect(self.refresh_transactions)
        for widget in (
            self.refund_amount,
            self.refund_reason,
            self.refund_pin,
            self.refund_button,
            refresh,
        ):
            form.addWidget(widget)
        layout.addLayout(form)
        self.refund_message = QLabel()
        self.refund_message.setObjectName("message")
        self.refund_message.setWordWrap(True)
        layout.addWidget(self.refund_message)
        return tab

    def _build_flagged_tab(self) -> QWidget:
        tab = QWidget()
        layout = QVBoxLayout(tab)
        explain = QLabel(
            "离线时收取、联网后被后台拒绝的付款：请核实后确认 · Offline payments the backend "
            "refused: settle them with the diner, then acknowledge"
        )
        explain.setWordWrap(True)
        layout.addWidget(explain)
        self.flagged_list = QListWidget()
        self.flagged_list.setObjectName("flaggedList")
        layout.addWidget(self.flagged_list, 1)
        row = QHBoxLayout()
        self.ack_button = QPushButton(both("确认已处理", "Acknowledge"))
        self.ack_button.clicked.connect(self.acknowledge)
        refresh = QPushButton(both("刷新", "Refresh"))
        refresh.clicked.connect(self.refresh_flagged)
        row.addWidget(self.ack_button)
        row.addWidget(refresh)
        row.addStretch(1)
        layout.addLayout(row)
        self.flagged_message = QLabel()
        self.flagged_message.setObjectName("message")
        layout.addWidget(self.flagged_message)
        return tab

    # --- following the session ----------------------------------------------------------------

    @Slot(object)
    def show_frame(self, frame: object) -> None:
        """Keep the newest camera frame: the picture of a held tray is taken from it."""
        if isinstance(frame, Frame):
            self._frame = frame

    def on_event(self, event: CheckoutEvent) -> None:
        """Follow one session event (on the GUI thread)."""
        self._tray.follow(event)
        if isinstance(event, TrayRecognised):
            self._snapshot = self._frame
            self._corrections = []
        elif isinstance(event, TrayHeld):
            self._build_pickers()
            self.attention.emit(True)
        elif isinstance(event, PaymentRequested | CheckoutVoided):
            self._clear_pickers()
            self.attention.emit(False)
        elif isinstance(event, Paid):
            if self.signed_in:
                self.refresh_transactions()
        elif isinstance(event, TrayRemoved):
            self._snapshot = None
            self._corrections = []
            self._clear_pickers()
            self._refresh_gallery_buttons()
            self.attention.emit(False)
        self._refresh_tray()

    def _dish_holds(self) -> dict[int, Hold]:
        return {
            hold.dish_index: hold
            for hold in self._tray.holds
            if hold.reason in DISH_HOLDS and hold.dish_index is not None
        }

    def _clear_pickers(self) -> None:
        for picker in self._pickers:
            picker.setParent(None)
            picker.deleteLater()
        self._pickers = []
        self._choices = {}

    def _build_pickers(self) -> None:
        self._clear_pickers()
        recognition = self._tray.recognition
        if recognition is None:
            return
        dish_holds = self._dish_holds()
        for index, dish in enumerate(recognition.dishes):
            hold = dish_holds.get(index)
            if hold is None:
                self._choices[index] = dish.dish_id if dish.dish_id in self.menu else None
                continue
            self._choices[index] = None
            picker = DishPickerWidget(
                index,
                dish,
                hold_text(hold, self.menu, recognition),
                self.menu,
                self.context.thumbnails,
            )
            picker.chosen.connect(self._picked)
            self.pickers_box.addWidget(picker)
            self._pickers.append(picker)

    def _picked(self, dish_index: int, dish_id: str) -> None:
        self._choices[dish_index] = dish_id
        self._touched()
        self._refresh_tray()

    def unresolved(self) -> int:
        """Dishes the cashier still has to name."""
        return sum(1 for picker in self._pickers if picker.choice is None)

    def pickers(self) -> list[DishPickerWidget]:
        """The pickers shown now, one per unsure or unknown dish."""
        return list(self._pickers)

    # --- drawing ------------------------------------------------------------------------------

    def _refresh_tray(self) -> None:
        state = self._tray.state
        self.state_label.setText(f"状态 State: {STATE_NAMES[state]}")
        recognition = self._tray.recognition
        holds = self._tray.holds
        if holds:
            texts = [hold_text(hold, self.menu, recognition) for hold in holds]
            self.hold_label.setText("\n".join(f"• {text}" for text in dict.fromkeys(texts)))
            self.hold_label.show()
        else:
            self.hold_label.hide()
        frame = self._snapshot
        self.snapshot.set_frame(frame.image if frame is not None else None)
        if recognition is not None:
            outlines = []
            for dish in recognition.dishes:
                name = (
                    self.menu.item(dish.dish_id).name_zh
                    if dish.dish_id in self.menu and dish.dish_id is not None
                    else "?"
                )
                outlines.append(DishOutline(dish.box_xyxy, name, dish.status))
            self.snapshot.set_outlines(outlines)
        else:
            self.snapshot.set_outlines([])
        self.snapshot.set_message("" if frame is not None else "无餐盘 · No tray")
        priced = self._tray.priced
        lines = priced.lines if priced is not None else ()
        self.lines.setRowCount(len(lines))
        for row, line in enumerate(lines):
            weight = grams(line.grams) if line.pricing is PricingMode.PER_100G else "1 份"
            price = money(line.price_fen) + (" ✎" if line.override is not None else "")
            for column, text in enumerate((line.name_zh, weight, price)):
                self.lines.setItem(row, column, QTableWidgetItem(text))
        self.total_label.setText(
            f"合计 Total {money(priced.total_fen)}" if priced is not None else ""
        )
        fixable = state in (CheckoutState.HELD, CheckoutState.AWAITING_PAYMENT)
        choosing = bool(self._pickers)
        self.confirm_button.setVisible(choosing)
        left = self.unresolved()
        self.confirm_button.setEnabled(choosing and left == 0)
        self.confirm_button.setText(
            both("确认菜品", "Confirm dishes")
            if left == 0
            else f"还有 {left} 个菜品待确认 · {left} dish(es) to name"
        )
        for button in (self.override_button, self.remove_button):
            button.setEnabled(fixable and not choosing and bool(lines))
        self.add_search.setEnabled(fixable and not choosing)
        self.void_button.setEnabled(
            state
            in (
                CheckoutState.TRAY_SETTLED,
                CheckoutState.RECOGNISED,
                CheckoutState.HELD,
                CheckoutState.AWAITING_PAYMENT,
            )
        )
        payable = state is CheckoutState.AWAITING_PAYMENT
        self.cash_button.setEnabled(payable)
        self.other_button.setEnabled(payable)

    def _refresh_gallery_buttons(self) -> None:
        while self.gallery_box.count():
            item = self.gallery_box.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        can_learn = isinstance(self.context.recogniser, SwappableRecogniser)
        if not can_learn or self._snapshot is None:
            return
        for dish_index, dish_id in self._corrections:
            name = self.menu.item(dish_id).name_zh
            button = QPushButton(f"加入图库 Add to gallery: {dish_index + 1} {name}")
            button.setObjectName("galleryButton")
            button.clicked.connect(
                lambda _=False, i=dish_index, d=dish_id, b=button: self.add_to_gallery(i, d, b)
            )
            self.gallery_box.addWidget(button)

    def _touched(self) -> None:
        if self.signed_in:
            self._idle.start()

    def _credentials(self) -> tuple[str, str]:
        assert self.cashier is not None, "no cashier signed in"
        return self.cashier.cashier_id, self._pin

    def _run(
        self,
        command: Callable[[], Any],
        done: Callable[[Any], None],
        message: QLabel | None = None,
    ) -> None:
        """Run a desk action on the worker; errors are shown under it."""
        self._touched()
        label = message or self.tray_message
        self.runner.submit(command, done, lambda exc: say(label, auth_message(exc), error=True))

    # --- actions --------------------------------------------------------------------------------

    def confirm_dishes(self) -> None:
        """Resolve the held tray with the dishes the cashier named."""
        if self.unresolved() or self.cashier is None:
            return
        recognition = self._tray.recognition
        order = sorted(self._choices)
        item_ids = [choice for i in order if (choice := self._choices[i])]
        corrections = []
        if recognition is not None:
            for picker in self._pickers:
                choice = picker.choice
                if choice:
                    corrections.append((picker.dish_index, choice))
        cashier_id, pin = self._credentials()
        reason = self.reason.text().strip() or "cashier named the dishes"

        def done(priced: PricedTray) -> None:
            self._corrections = corrections
            self._refresh_gallery_buttons()
            say(self.tray_message, f"已确认 Confirmed · 合计 {money(priced.total_fen)}")

        self._run(lambda: self.desk.resolve(cashier_id, pin, item_ids, reason=reason), done)

    def _selected_line(self) -> int | None:
        rows = self.lines.selectionModel().selectedRows()
        return rows[0].row() if rows else None

    def remove_line(self) -> None:
        """Remove the selected line."""
        line = self._selected_line()
        if line is None or self.cashier is None:
            say(self.tray_message, "请先选择一行 · Select a line first", error=True)
            return
        cashier_id, pin = self._credentials()
        reason = self.reason.text().strip() or "not on the tray"
        self._run(
            lambda: self.desk.remove_dish(cashier_id, pin, line, reason),
            lambda priced: say(self.tray_message, f"已删除 Removed · {money(priced.total_fen)}"),
        )

    def override_price(self) -> None:
        """Set the selected line's price, with the reason typed."""
        line = self._selected_line()
        reason = self.reason.text().strip()
        if line is None or self.cashier is None:
            say(self.tray_message, "请先选择一行 · Select a line first", error=True)
            return
        if not reason:
            say(self.tray_message, "请填写原因 · Give a reason", error=True)
            return
        try:
            price_fen = parse_yuan(self.price_edit.text())
        except ValueError as exc:
            say(self.tray_message, f"价格无效 · {exc}", error=True)
            return
        cashier_id, pin = self._credentials()
        self._run(
            lambda: self.desk.override_price(cashier_id, pin, line, price_fen, reason),
            lambda priced: say(
                self.tray_message, f"已改价 Price set · 合计 {money(priced.total_fen)}"
            ),
        )

    def _search_add(self, text: str) -> None:
        self.add_results.clear()
        for item in pinyin.search(self.menu, text, limit=10) if text.strip() else []:
            entry = QListWidgetItem(item.name_zh)
            entry.setData(Qt.ItemDataRole.UserRole, item.id)
            self.add_results.addItem(entry)
        self.add_results.setVisible(self.add_results.count() > 0)

    def add_dish(self, dish_id: str) -> None:
        """Add a dish the terminal missed."""
        if self.cashier is None:
            return
        cashier_id, pin = self._credentials()
        reason = self.reason.text().strip() or "missed by the terminal"
        self.add_search.clear()
        self._run(
            lambda: self.desk.add_dish(cashier_id, pin, dish_id, reason),
            lambda priced: say(self.tray_message, f"已添加 Added · {money(priced.total_fen)}"),
        )

    def void(self) -> None:
        """End the checkout without payment."""
        reason = self.reason.text().strip()
        if self.cashier is None:
            return
        if not reason:
            say(self.tray_message, "请填写原因 · Give a reason", error=True)
            return
        cashier_id, pin = self._credentials()
        self._run(
            lambda: self.desk.void(cashier_id, pin, reason),
            lambda _: say(self.tray_message, "已作废，未扣款 · Voided, nothing charged"),
        )

    def take_other_tender(self, method: str) -> None:
        """Take the payment in cash or another way."""
        if self.cashier is None:
            return
        cashier_id, pin = self._credentials()
        reason = self.reason.text().strip()
        self._run(
            lambda: self.desk.take_other_tender(cashier_id, pin, method, reason),
            lambda receipt: say(
                self.tray_message, f"已收款 Paid ({method}) {money(receipt.amount_fen)}"
            ),
        )

    def add_to_gallery(self, dish_index: int, dish_id: str, button: QPushButton) -> None:
        """Teach the model this dish from the held tray's picture (a new bundle version)."""
        recogniser = self.context.recogniser
        frame, recognition = self._snapshot, self._tray.recognition
        if not isinstance(recogniser, SwappableRecogniser) or frame is None or recognition is None:
            return
        box = recognition.dishes[dish_index].box_xyxy
        image = frame.image
        if self.context.thumbnails is not None:
            self.context.thumbnails.add(dish_id, image, box)
        button.setEnabled(False)
        name = self.menu.item(dish_id).name_zh
        names = {dish_id: (name, self.menu.item(dish_id).name_en)}
        self._run(
            lambda: recogniser.add_correction(image, box, dish_id, names=names),
            lambda version: say(
                self.tray_message, f"已加入图库 Added to the gallery: {name} · 模型 {version}"
            ),
        )

    # --- transactions and refunds ---------------------------------------------------------------

    def refresh_transactions(self) -> None:
        """Reload the recent transactions."""
        source = self.context.transactions
        if source is None:
            return
        self.runner.submit(source, self._show_transactions)

    def _show_transactions(self, records: Sequence[TransactionRecord]) -> None:
        self._transactions = list(records)
        table = self.transactions_table
        table.setRowCount(len(self._transactions))
        for row, record in enumerate(self._transactions):
            cells = (
                time.strftime("%H:%M:%S", time.localtime(record.created_at)),
                record.transaction_id[:8],
                record.account_id or "—",
                record.method + (" · 离线" if record.offline else ""),
                money(record.amount_fen),
                money(record.refunded_fen) if record.refunded_fen else "",
            )
            for column, text in enumerate(cells):
                table.setItem(row, column, QTableWidgetItem(text))

    def transaction_rows(self) -> list[str]:
        """The transactions shown, as their ids."""
        return [record.transaction_id for record in self._transactions]

    def _transaction_selected(self) -> None:
        record = self._selected_transaction()
        if record is not None:
            left = record.amount_fen - record.refunded_fen
            self.refund_amount.setText(f"{left / 100:.2f}")

    def _selected_transaction(self) -> TransactionRecord | None:
        rows = self.transactions_table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self._transactions):
            return None
        return self._transactions[rows[0].row()]

    def refund(self) -> None:
        """Refund the selected transaction; the PIN is asked again."""
        record = self._selected_transaction()
        message = self.refund_message
        if record is None or self.cashier is None:
            say(message, "请先选择一笔交易 · Select a transaction", error=True)
            return
        reason = self.refund_reason.text().strip()
        if not reason:
            say(message, "请填写原因 · Give a reason", error=True)
            return
        try:
            amount = parse_yuan(self.refund_amount.text())
        except ValueError as exc:
            say(message, f"金额无效 · {exc}", error=True)
            return
        cashier_id, pin = self.cashier.cashier_id, self.refund_pin.text()
        self.refund_pin.clear()
        transaction_id = record.transaction_id

        def done(receipt: RefundReceipt) -> None:
            balance = (
                f"，余额 {money(receipt.balance_after_fen)}"
                if receipt.balance_after_fen is not None
                else ""
            )
            say(message, f"已退款 Refunded {money(receipt.amount_fen)}{balance}")
            self.refresh_transactions()

        self._run(
            lambda: self.desk.refund(cashier_id, pin, transaction_id, amount, reason),
            done,
            message,
        )

    # --- flagged outbox entries -----------------------------------------------------------------

    def refresh_flagged(self) -> None:
        """Reload the outbox's flagged entries."""
        outbox = self.context.outbox
        if outbox is None:
            self.flagged_list.clear()
            self.flagged_list.addItem("无 · None (no outbox: the ledger is on this terminal)")
            self.ack_button.setEnabled(False)
            return
        self.runner.submit(outbox.flagged, self._show_flagged)

    def _show_flagged(self, entries: Sequence[OutboxEntry]) -> None:
        self._flagged = list(entries)
        self.flagged_list.clear()
        for entry in self._flagged:
            when = time.strftime("%m-%d %H:%M", time.localtime(entry.created_at))
            self.flagged_list.addItem(
                f"{when}  {money(entry.amount_fen)}  {entry.account_id or '—'}  "
                f"{entry.status}: {entry.last_error or ''}"
            )
        if not self._flagged:
            self.flagged_list.addItem("无待处理 · Nothing flagged")
        self.ack_button.setEnabled(bool(self._flagged))
        self.tabs.setTabText(
            2, both("待处理", "Flagged") + (f" ({len(self._flagged)})" if self._flagged else "")
        )

    def acknowledge(self) -> None:
        """Acknowledge the selected flagged entry."""
        row = self.flagged_list.currentRow()
        outbox = self.context.outbox
        if outbox is None or self.cashier is None or not 0 <= row < len(self._flagged):
            say(self.flagged_message, "请先选择一项 · Select an entry", error=True)
            return
        entry = self._flagged[row]
        cashier_id = self.cashier.cashier_id

        def done(_: object) -> None:
            say(self.flagged_message, "已确认 Acknowledged")
            self.refresh_flagged()

        self._run(
            lambda: acknowledge_flagged(self.desk, outbox, cashier_id, entry),
            done,
            self.flagged_message,
        )
