"""The diner screen follows a whole checkout: what the person with the tray reads at each step."""

from __future__ import annotations

from pytestqt.qtbot import QtBot

from terminal.app import Terminal
from terminal.config import DEMO_CARDS
from terminal.core.session import CheckoutState
from terminal.payment import take_card_payment
from terminal.ui.diner import DinerScreen
from terminal.ui.drivers import ScaleView
from terminal.ui.status import BackendView, CameraView, DeviceStatus, ModelView

from .conftest import (
    put_tray,
    settle,
    table_rows,
    tray_frame,
    truth,
    unsure_and_unknown,
    visible_text,
)

#: tray-01 at the demo's simulated 1624 g, priced by the demo menu (README, "Example").
TRAY_01 = [
    ("蒜蓉空心菜", "127 g", "¥2.79"),
    ("米饭", "1 份", "¥1.50"),
    ("西瓜", "1 份", "¥2.00"),
    ("酱油", "1 份", "¥0.00"),
    ("青菜汤", "1 份", "¥1.50"),
    ("红烧鱼", "127 g", "¥4.83"),
]


def diner(qtbot: QtBot, terminal: Terminal) -> DinerScreen:
    screen = DinerScreen(terminal.session)
    qtbot.addWidget(screen)
    screen.resize(1280, 800)
    screen.show()
    return screen


def test_a_whole_checkout_as_the_diner_sees_it(qtbot: QtBot, terminal: Terminal) -> None:
    screen = diner(qtbot, terminal)
    session = terminal.session
    assert "请将餐盘放在识别区" in visible_text(screen)
    assert table_rows(screen.lines) == []

    frame = tray_frame("tray-01.jpg")
    session.tray_arrived()
    screen.show_frame(frame)
    assert screen.prompt_label.text() == "正在识别…"
    assert screen.camera.has_frame()

    settle(terminal, frame)
    assert session.state is CheckoutState.AWAITING_PAYMENT

    # The priced list, the total and every recognised dish outlined and named on the picture.
    assert table_rows(screen.lines) == TRAY_01
    assert screen.total_label.text() == "¥12.62"
    assert [o.label for o in screen.camera.outlines()] == [name for name, _, _ in TRAY_01]
    # The meal's nutrition against the daily reference (GB 28050 NRV: 2000 kcal, 60 g protein).
    shown = visible_text(screen)
    assert "671 kcal" in shown and "34% 占每日参考值" in shown
    assert "45.4 g" in shown and "76% 占每日参考值" in shown
    assert "20.9 g" in shown and "75.7 g" in shown
    # The payment prompt with the amount.
    assert screen.prompt_label.text() == "请刷卡"
    assert screen.amount_label.text() == "¥12.62"

    # The English toggle.
    screen.language_button.click()
    assert screen.prompt_label.text() == "Tap your card"
    assert table_rows(screen.lines)[0] == ("Water spinach with garlic", "127 g", "¥2.79")
    assert "Protein" in visible_text(screen)
    screen.language_button.click()

    # A tap: paid, with the new balance the ledger holds.
    outcome = take_card_payment(session, terminal.backend, DEMO_CARDS[0])
    assert outcome.receipt is not None and outcome.account is not None
    account = terminal.backend.lookup_card(DEMO_CARDS[0])
    assert account is not None
    assert screen.prompt_label.text() == "支付成功"
    balance = account.balance_fen
    assert f"余额 ¥{balance // 100}.{balance % 100:02d}" in screen.detail_label.text()
    assert "请取走餐盘" in screen.detail_label.text()

    # The tray leaves: back to idle, nothing left on screen.
    session.tray_removed()
    assert screen.prompt_label.text() == "请将餐盘放在识别区"
    assert table_rows(screen.lines) == []
    assert screen.total_label.text() == "—"
    assert not screen.camera.has_frame()


def test_a_held_tray_says_why_and_that_the_cashier_is_called(
    qtbot: QtBot, terminal: Terminal
) -> None:
    screen = diner(qtbot, terminal)
    frame = tray_frame("tray-01.jpg")
    put_tray(terminal, frame, unsure_and_unknown(truth(terminal, frame)))
    assert terminal.session.state is CheckoutState.HELD
    assert screen.prompt_label.text() == "请稍候，已呼叫收银员"
    detail = screen.detail_label.text()
    assert "有菜品未能识别，已呼叫收银员" in detail
    assert "有菜品无法确定，已呼叫收银员" in detail
    labels = [o.label for o in screen.camera.outlines()]
    assert labels[1] == "未识别" and labels[2] == "火龙果 ?"
    screen.toggle_language()
    assert screen.prompt_label.text() == "Please wait: the cashier has been called"
    assert "A dish was not recognised; the cashier has been called" in screen.detail_label.text()


def test_a_declined_card_asks_for_another_tap(qtbot: QtBot, terminal: Terminal) -> None:
    screen = diner(qtbot, terminal)
    put_tray(terminal, tray_frame("tray-01.jpg"))
    take_card_payment(terminal.session, terminal.backend, "DEADBEEF99")
    assert terminal.session.state is CheckoutState.AWAITING_PAYMENT
    assert screen.prompt_label.text() == "请刷卡"
    assert "支付未成功" in screen.detail_label.text()
    assert "not registered" in screen.detail_label.text()


def test_a_stalled_camera_shows_on_the_picture(qtbot: QtBot, terminal: Terminal) -> None:
    screen = diner(qtbot, terminal)

    def status(ok: bool) -> DeviceStatus:
        return DeviceStatus(
            CameraView("opencv", "ok" if ok else "reconnecting", None, ok),
            ScaleView(None, False),
            None,
            BackendView("embedded ledger", True),
            ModelView("m", None, False),
            0,
        )

    screen.show_status(status(False))
    assert screen.camera.message == "摄像头无画面"
    screen.show_status(status(True))
    assert screen.camera.message == "识别区空闲 · 等待餐盘"
