"""The cashier screen: sign in with a PIN, fix a held tray with the picker, refund, lock out."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QListWidget, QPushButton
from pytestqt.qtbot import QtBot

from terminal.app import Terminal
from terminal.backend.ledger import EmbeddedLedger
from terminal.config import DEMO_CARDS
from terminal.core.audit import MemoryAuditLog
from terminal.core.cashier import CashierDesk, MemoryCashierStore, PinPolicy, enrol_cashier
from terminal.core.session import CheckoutState
from terminal.payment import take_card_payment
from terminal.ui.cashier import CashierScreen, DishPickerWidget, StaffContext, parse_yuan
from terminal.ui.diner import DinerScreen
from terminal.ui.status import recent_transactions
from terminal.ui.thumbnails import ThumbnailIndex
from terminal.ui.worker import InlineRunner

from .conftest import (
    CASHIER_ID,
    CASHIER_PIN,
    put_tray,
    table_rows,
    tray_frame,
    truth,
    unsure_and_unknown,
    visible_text,
)


def cashier_screen(
    qtbot: QtBot,
    terminal: Terminal,
    thumbnails: ThumbnailIndex | None = None,
    desk: CashierDesk | None = None,
) -> CashierScreen:
    desk = desk or terminal.desk
    assert desk is not None
    screen = CashierScreen(
        terminal.session,
        StaffContext(
            desk=desk,
            runner=InlineRunner(),
            recogniser=terminal.recogniser,
            thumbnails=thumbnails,
            transactions=lambda: recent_transactions(terminal),
        ),
    )
    qtbot.addWidget(screen)
    screen.resize(1280, 860)
    screen.show()
    return screen


def sign_in(qtbot: QtBot, screen: CashierScreen, staff_id: str, pin: str) -> None:
    screen.login_id.setText("")
    qtbot.keyClicks(screen.login_id, staff_id)
    # The PIN is typed on the screen's own pad, as on the touch screen.
    keys = {button.text(): button for button in screen.findChildren(type(screen.login_button))}
    for digit in pin:
        qtbot.mouseClick(keys[digit], Qt.MouseButton.LeftButton)
    qtbot.mouseClick(screen.login_button, Qt.MouseButton.LeftButton)


def click_result(qtbot: QtBot, results: QListWidget, row: int) -> None:
    rect = results.visualItemRect(results.item(row))
    qtbot.mouseClick(results.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def test_a_held_tray_is_fixed_with_the_picker_and_paid(
    qtbot: QtBot, terminal: Terminal, thumbnails: ThumbnailIndex
) -> None:
    screen = cashier_screen(qtbot, terminal, thumbnails)
    diner = DinerScreen(terminal.session)
    qtbot.addWidget(diner)
    sign_in(qtbot, screen, CASHIER_ID, CASHIER_PIN)
    assert screen.signed_in and "演示收银员" in screen.staff_label.text()

    frame = tray_frame("tray-01.jpg")
    screen.show_frame(frame)
    put_tray(terminal, frame, unsure_and_unknown(truth(terminal, frame)))
    assert terminal.session.state is CheckoutState.HELD

    # Why it is held, dish by dish, and one picker per dish to name.
    reasons = screen.hold_label.text()
    assert "菜品 2 未识别" in reasons
    assert "菜品 3 不确定（火龙果 / 西瓜 / 番石榴）" in reasons
    pickers = screen.pickers()
    assert [p.dish_index for p in pickers] == [1, 2]
    assert screen.confirm_button.text().startswith("还有 2 个菜品待确认")
    assert not screen.confirm_button.isEnabled()
    held_total = screen.total_label.text()
    assert held_total.startswith("合计 Total ¥")

    # The unsure dish: its candidates are photo tiles; the cashier taps the watermelon.
    unsure: DishPickerWidget = pickers[1]
    tiles = {tile.dish_id: tile for tile in unsure.tiles}
    assert list(tiles) == ["thanh_long", "dua_hau", "oi", ""]
    assert tiles["dua_hau"].text() == "西瓜\n71%"
    assert not tiles["dua_hau"].icon().isNull()
    qtbot.mouseClick(tiles["dua_hau"], Qt.MouseButton.LeftButton)
    assert tiles["dua_hau"].isChecked()

    # The unknown dish: found by its pinyin initials.
    unknown = pickers[0]
    qtbot.keyClicks(unknown.search, "mf")
    assert unknown.result_names()[0] == "米饭"
    click_result(qtbot, unknown.results, 0)
    assert unknown.choice == "com"

    assert screen.confirm_button.isEnabled()
    qtbot.mouseClick(screen.confirm_button, Qt.MouseButton.LeftButton)

    # Resolved through the desk: the total changes, the diner is asked to pay.
    assert terminal.session.state is CheckoutState.AWAITING_PAYMENT
    assert screen.total_label.text() == "合计 Total ¥12.62" != held_total
    assert [row[0] for row in table_rows(screen.lines)] == [
        "蒜蓉空心菜",
        "米饭",
        "西瓜",
        "酱油",
        "青菜汤",
        "红烧鱼",
    ]
    assert diner.prompt_label.text() == "请刷卡" and diner.amount_label.text() == "¥12.62"
    assert not screen.hold_label.isVisible() and screen.pickers() == []
    assert terminal.desk is not None
    resolved = [e for e in terminal.desk.audit.entries() if e.action == "tray_resolved"]
    assert resolved and resolved[-1].actor == CASHIER_ID
    assert resolved[-1].details["items_after"] == [
        "rau_muong",
        "com",
        "dua_hau",
        "nuoc_tuong",
        "canh_cai",
        "ca_kho",
    ]

    take_card_payment(terminal.session, terminal.backend, DEMO_CARDS[1])
    assert terminal.session.state in (CheckoutState.PAID, CheckoutState.POSTED)
    assert diner.prompt_label.text() == "支付成功"


def test_lines_can_be_repriced_removed_added_and_the_checkout_voided(
    qtbot: QtBot, terminal: Terminal
) -> None:
    screen = cashier_screen(qtbot, terminal)
    sign_in(qtbot, screen, CASHIER_ID, CASHIER_PIN)
    put_tray(terminal, tray_frame("tray-01.jpg"))
    assert screen.total_label.text() == "合计 Total ¥12.62"

    screen.lines.selectRow(5)  # 红烧鱼 ¥4.83
    screen.price_edit.setText("3.50")
    qtbot.mouseClick(screen.override_button, Qt.MouseButton.LeftButton)
    assert "请填写原因" in screen.tray_message.text()  # an override needs a reason
    qtbot.keyClicks(screen.reason, "small portion")
    qtbot.mouseClick(screen.override_button, Qt.MouseButton.LeftButton)
    assert table_rows(screen.lines)[5] == ("红烧鱼", "127 g", "¥3.50 ✎")
    assert screen.total_label.text() == "合计 Total ¥11.29"

    screen.lines.selectRow(3)  # 酱油
    qtbot.mouseClick(screen.remove_button, Qt.MouseButton.LeftButton)
    assert "酱油" not in [row[0] for row in table_rows(screen.lines)]

    qtbot.keyClicks(screen.add_search, "xj")  # 香蕉, by its initials
    assert screen.add_results.item(0).text() == "香蕉"
    click_result(qtbot, screen.add_results, 0)
    assert table_rows(screen.lines)[-1][0] == "香蕉"

    qtbot.mouseClick(screen.void_button, Qt.MouseButton.LeftButton)
    assert terminal.session.state is CheckoutState.VOIDED
    assert "已作废" in screen.tray_message.text()
    assert terminal.desk is not None
    actions = [e.action for e in terminal.desk.audit.entries()]
    assert actions[-4:] == ["price_override", "dish_removed", "dish_added", "checkout_voided"]


def test_a_refund_needs_the_pin_and_gives_the_money_back(qtbot: QtBot, terminal: Terminal) -> None:
    ledger = terminal.backend
    assert isinstance(ledger, EmbeddedLedger)
    account = ledger.lookup_card(DEMO_CARDS[2])
    assert account is not None
    before = account.balance_fen
    put_tray(terminal, tray_frame("tray-01.jpg"))
    outcome = take_card_payment(terminal.session, ledger, DEMO_CARDS[2])
    assert outcome.receipt is not None
    transaction_id = outcome.receipt.transaction_id
    terminal.session.tray_removed()

    screen = cashier_screen(qtbot, terminal)
    sign_in(qtbot, screen, CASHIER_ID, CASHIER_PIN)
    screen.tabs.setCurrentIndex(1)
    assert screen.transaction_rows()[0] == transaction_id
    assert transaction_id[:8] in visible_text(screen)
    screen.transactions_table.selectRow(0)
    assert screen.refund_amount.text() == "12.62"
    qtbot.keyClicks(screen.refund_reason, "dish was cold")

    qtbot.keyClicks(screen.refund_pin, "9999")  # the PIN is asked again, and checked
    qtbot.mouseClick(screen.refund_button, Qt.MouseButton.LeftButton)
    assert "PIN 错误" in screen.refund_message.text()
    refunded = ledger.transaction(transaction_id)
    assert refunded is not None and refunded.refunded_fen == 0

    qtbot.keyClicks(screen.refund_pin, CASHIER_PIN)
    qtbot.mouseClick(screen.refund_button, Qt.MouseButton.LeftButton)
    after = ledger.lookup_card(DEMO_CARDS[2])
    assert after is not None and after.balance_fen == before
    assert f"已退款 Refunded ¥12.62，余额 ¥{before // 100}.{before % 100:02d}" in (
        screen.refund_message.text()
    )
    refunded = ledger.transaction(transaction_id)
    assert refunded is not None and refunded.refunded_fen == 1262
    assert terminal.desk is not None
    entry = [e for e in terminal.desk.audit.entries() if e.action == "refund"][-1]
    assert entry.actor == CASHIER_ID
    assert entry.details["transaction_id"] == transaction_id
    assert entry.details["amount_fen"] == 1262
    assert entry.details["reason"] == "dish was cold"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_wrong_pins_lock_the_cashier_out_until_the_time_has_passed(
    qtbot: QtBot, terminal: Terminal
) -> None:
    clock = Clock()
    store, audit = MemoryCashierStore(), MemoryAuditLog(clock=clock)
    enrol_cashier(store, "c7", "李收银", "2468", audit=audit)
    desk = CashierDesk(
        terminal.session,
        terminal.backend,
        store,
        audit,
        policy=PinPolicy(max_failures=3, lockout_s=60),
        clock=clock,
    )
    screen = cashier_screen(qtbot, terminal, desk=desk)

    sign_in(qtbot, screen, "c7", "1111")
    assert "PIN 错误，还可尝试 2 次" in screen.login_message.text()
    sign_in(qtbot, screen, "c7", "1112")
    assert "还可尝试 1 次" in screen.login_message.text()
    sign_in(qtbot, screen, "c7", "1113")
    assert "已锁定，60 秒后" in screen.login_message.text()

    clock.now += 30
    sign_in(qtbot, screen, "c7", "2468")  # the right PIN is refused while locked
    assert "已锁定，30 秒后" in screen.login_message.text()
    assert not screen.signed_in and screen.pages.currentIndex() == 0

    clock.now += 31
    sign_in(qtbot, screen, "c7", "2468")
    assert screen.signed_in and screen.pages.currentIndex() == 1
    assert "李收银" in screen.staff_label.text()
    assert [e.action for e in audit.entries()][-3:] == ["cashier_locked", "locked_out", "login"]

    qtbot.mouseClick(
        next(b for b in screen.findChildren(type(screen.login_button)) if "Sign out" in b.text()),
        Qt.MouseButton.LeftButton,
    )
    assert not screen.signed_in and screen.pages.currentIndex() == 0


@pytest.mark.parametrize(("text", "fen"), [("12.62", 1262), ("¥3.5", 350), (" 0 ", 0), ("7", 700)])
def test_amounts_typed_in_yuan(text: str, fen: int) -> None:
    assert parse_yuan(text) == fen


@pytest.mark.parametrize("text", ["", "abc", "1.234", "nan"])
def test_amounts_that_are_not_money(text: str) -> None:
    with pytest.raises(ValueError):
        parse_yuan(text)


def test_a_confirmed_correction_goes_into_the_gallery_with_one_tap(
    qtbot: QtBot, tmp_path: Path
) -> None:
    from terminal.app import build_terminal
    from terminal.config import load_config
    from vision.recogniser import SwappableRecogniser

    config = tmp_path / "terminal.yaml"
    config.write_text(
        f"data_dir: {tmp_path}\ncalibration: {tmp_path / 'calibration.yaml'}\n"
        f"backend:\n  ledger: {tmp_path / 'ledger.sqlite'}\n"
        f"model:\n  store: {tmp_path / 'models'}\n  threads: 1\n",
        encoding="utf-8",
    )
    terminal = build_terminal(load_config(config), seed_demo_accounts=True)
    try:
        recogniser = terminal.recogniser
        assert isinstance(recogniser, SwappableRecogniser)
        before = recogniser.model_version
        screen = cashier_screen(qtbot, terminal)
        sign_in(qtbot, screen, CASHIER_ID, CASHIER_PIN)
        frame = tray_frame("tray-01.jpg")
        screen.show_frame(frame)
        put_tray(terminal, frame, unsure_and_unknown(truth(terminal, frame)))
        unknown, unsure = screen.pickers()
        unsure.choose("dua_hau")
        unknown.choose("com")
        qtbot.mouseClick(screen.confirm_button, Qt.MouseButton.LeftButton)
        buttons = [b for b in screen.findChildren(QPushButton) if b.objectName() == "galleryButton"]
        assert [b.text() for b in buttons] == [
            "加入图库 Add to gallery: 2 米饭",
            "加入图库 Add to gallery: 3 西瓜",
        ]
        qtbot.mouseClick(buttons[0], Qt.MouseButton.LeftButton)
        after = recogniser.model_version
        assert after != before
        assert recogniser.active.gallery.origins.count("cashier") == 1
        assert f"已加入图库 Added to the gallery: 米饭 · 模型 {after}" in screen.tray_message.text()
        assert not buttons[0].isEnabled()
    finally:
        terminal.close()
