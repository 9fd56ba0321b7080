"""Face accounts on the kiosk screens, on the real models (YuNet and dlib) and the shipped
public-domain photos: a cashier enrols a diner through the enrolment screen (consent first),
the diner pays by looking at the camera and one tap, "not me" and a camera that sees no face
leave the card prompt, and the face data is deleted on request. What the screens show is
checked, and no face picture ends up in a log or a file."""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from terminal.app import Terminal, build_terminal
from terminal.backend.face_cache import create_key_file
from terminal.backend.face_sync import CONSENT_TEXT_VERSION, FaceConsent
from terminal.config import DEMO_CARDS, load_config
from terminal.core.session import CheckoutState
from terminal.devices.face.payment import AskForCard, FaceProposal
from terminal.devices.face.types import Image
from terminal.payment import take_card_payment
from terminal.ui.app import build_kiosk
from terminal.ui.diner import DinerScreen
from terminal.ui.drivers import DemoDriver, DemoTimings
from terminal.ui.enrolment import EnrolmentContext, FaceEnrolmentScreen
from terminal.ui.face import (
    CONSENT_TEXT,
    FaceAnswer,
    FaceCheckout,
    FaceEnrolmentDesk,
    ReplayCustomerCamera,
)
from terminal.ui.status import collect_status
from terminal.ui.text import money
from terminal.ui.thumbnails import ThumbnailIndex
from terminal.ui.worker import InlineRunner, KioskController, TerminalWorker
from tests.face.builders import (
    ASTRONAUT,
    COFFEE,
    head_turn_burst,
    load,
    relit,
    shifted,
    with_sensor_noise,
)

from .conftest import CASHIER_ID, CASHIER_PIN, put_tray, tray_frame, visible_text, write_config
from .test_screenshots import assert_picture, save

#: The demo diner the face is enrolled for (terminal.app.DEMO_ACCOUNTS), and how it is shown.
ACCOUNT, NAME, MASKED = "E1001", "王伟", "王*"


def need_dlib() -> None:
    if importlib.util.find_spec("dlib") is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but dlib is not installed: pip install -e '.[dev]'")
        pytest.skip("dlib is not installed (pip install -e '.[face]')")


@pytest.fixture
def face_terminal(tmp_path: Path) -> Iterator[Terminal]:
    """The demo terminal of the screen tests with face accounts on (the real models)."""
    need_dlib()
    config = write_config(tmp_path)
    key = tmp_path / "face.key"
    create_key_file(key)
    with config.open("a", encoding="utf-8") as out:
        out.write(f"face:\n  enabled: true\n  cache_key_file: {key}\n")
        out.write(f"  cache: {tmp_path / 'face-templates.cache'}\n")
    built = build_terminal(load_config(config), seed_demo_accounts=True)
    assert built.face is not None
    yield built
    built.close()


@pytest.fixture(scope="module")
def astronaut() -> Image:
    return load(ASTRONAUT)


@pytest.fixture
def enrolment_frames(astronaut: Image) -> list[Image]:
    """Three good, slightly different frames of the same face."""
    return [astronaut, shifted(astronaut), relit(astronaut, 0.8)]


@pytest.fixture
def live_burst(face_terminal: Terminal, astronaut: Image) -> list[Image]:
    """About a second of her in front of the customer camera, turning her head a little."""
    assert face_terminal.face is not None
    (face,) = face_terminal.face.pipeline.detector.detect(astronaut)
    return with_sensor_noise(head_turn_burst(astronaut, face), seed=3)


def enrol_directly(terminal: Terminal, frames: list[Image]) -> None:
    assert terminal.face is not None
    flow = terminal.face.new_enrolment()
    for frame in frames:
        flow.feed(frame)
    terminal.face.accounts.enrol(ACCOUNT, flow.finish(FaceConsent(NAME)), actor=CASHIER_ID)


def face_diner(
    qtbot: QtBot, terminal: Terminal, frames: list[Image]
) -> tuple[DinerScreen, FaceCheckout, list[FaceAnswer]]:
    """The diner screen with paying by face, the customer camera showing ``frames``; a burst
    is taken in six steps of the driver (no pause between frames here)."""
    assert terminal.face is not None
    face = FaceCheckout(
        terminal.face.payment,
        ReplayCustomerCamera(frames),
        terminal.session,
        burst_s=0.0,
        retry_after_s=0.0,
    )
    answers: list[FaceAnswer] = []
    face.subscribe(answers.append)
    screen = DinerScreen(terminal.session, face=face, runner=InlineRunner())
    qtbot.addWidget(screen)
    screen.resize(1280, 800)
    screen.show()
    return screen, face, answers


def look(face: FaceCheckout, answers: list[FaceAnswer], steps: int = 6) -> FaceAnswer:
    """What the driver does while the tray waits: step until the burst is answered."""
    before = len(answers)
    for _ in range(steps):
        face.step()
    assert len(answers) == before + 1, answers
    return answers[-1]


def signed_in_enrolment(
    qtbot: QtBot, terminal: Terminal, camera: ReplayCustomerCamera
) -> FaceEnrolmentScreen:
    assert terminal.face is not None and terminal.desk is not None
    screen = FaceEnrolmentScreen(
        EnrolmentContext(
            terminal.desk,
            InlineRunner(),
            FaceEnrolmentDesk(terminal.face, camera),
            capture_interval_ms=1,
        )
    )
    qtbot.addWidget(screen)
    screen.resize(1280, 800)
    screen.show()
    assert "收银员登录" in visible_text(screen) and not screen.account_edit.isVisible()
    screen.login_id.setText(CASHIER_ID)
    screen.login_pin.setText(CASHIER_PIN)
    screen.sign_in()
    assert screen.account_edit.isVisible()
    return screen


def test_enrol_on_the_screen_with_consent_then_pay_by_face_and_delete(
    qtbot: QtBot,
    face_terminal: Terminal,
    enrolment_frames: list[Image],
    live_burst: list[Image],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    terminal = face_terminal
    assert terminal.face is not None and terminal.desk is not None
    camera = ReplayCustomerCamera([load(COFFEE)])
    screen = signed_in_enrolment(qtbot, terminal, camera)
    qtbot.keyClicks(screen.account_edit, ACCOUNT)
    screen.name_edit.setText(NAME)  # QTest types ASCII only
    assert not screen.enrol_button.isEnabled()

    # Nobody in front of the camera yet: the live picture, with why no frame is taken.
    qtbot.mouseClick(screen.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(screen.reasons_label.isVisible, timeout=10_000)
    assert "no face found" in screen.reasons_label.text()
    assert screen.camera.has_frame()
    assert screen.progress_label.text().startswith("已采集 0 / 3")
    # She faces the camera: three good frames are taken.
    camera.show(enrolment_frames)
    qtbot.waitUntil(lambda: not screen.capturing, timeout=15_000)
    assert screen.progress_label.text().startswith("已采集 3 / 3")
    assert screen.progress.value() == screen.progress.maximum() == 3
    assert "consent" in screen.guidance_label.text()
    assert not screen.reasons_label.isVisible()

    # The consent text and its version are shown; without the tick there is no enrolling.
    shown = visible_text(screen)
    assert CONSENT_TEXT_VERSION in shown and CONSENT_TEXT[0] in shown and CONSENT_TEXT[1] in shown
    assert not screen.consent_check.isChecked() and not screen.enrol_button.isEnabled()
    screen.enrol()  # a click that gets through anyway does nothing
    assert terminal.face.matcher.account_ids() == []
    qtbot.mouseClick(screen.consent_check, Qt.MouseButton.LeftButton)
    assert screen.consent_check.isChecked() and screen.enrol_button.isEnabled()
    assert_picture(save(screen, "face-enrolment"))

    qtbot.mouseClick(screen.enrol_button, Qt.MouseButton.LeftButton)
    assert "已登记 E1001：3 个人脸模板" in screen.message.text()
    assert not screen.camera.has_frame() and not screen.consent_check.isChecked()
    # The account has its templates on the backend and in the matcher; the enrolment is audited.
    (record,) = terminal.backend.face_templates_since(0).accounts  # type: ignore[attr-defined]
    assert record.account_id == ACCOUNT and record.templates.shape == (3, 128)
    assert terminal.face.matcher.account_ids() == [ACCOUNT]
    (enrolled,) = [e for e in terminal.desk.audit.entries() if e.action == "face_enrolled"]
    assert enrolled.actor == CASHIER_ID
    assert enrolled.details["consent_given_by"] == NAME
    assert enrolled.details["consent_text_version"] == CONSENT_TEXT_VERSION

    # At the checkout she looks at the camera instead of tapping her card.
    diner, face, answers = face_diner(qtbot, terminal, live_burst)
    frame = tray_frame("tray-01.jpg")
    diner.show_frame(frame)
    put_tray(terminal, frame)
    assert terminal.session.state is CheckoutState.AWAITING_PAYMENT
    assert diner.prompt_label.text() == "请刷卡或看摄像头"
    assert "请看摄像头，并稍微左右转动头部" in diner.detail_label.text()
    assert not diner.face_confirm_button.isVisible()
    proposal = look(face, answers)
    assert isinstance(proposal, FaceProposal) and proposal.account_id == ACCOUNT
    assert diner.prompt_label.text() == f"{MASKED}，是您吗？"
    assert NAME not in visible_text(diner)
    assert diner.face_confirm_button.isVisible() and diner.face_reject_button.isVisible()
    assert diner.face_confirm_button.text() == "是我，支付"
    assert diner.face_reject_button.text() == "不是我"
    assert diner.amount_label.text() == "¥12.62"
    diner.toggle_language()
    assert diner.prompt_label.text() == "王*, is this you?"
    assert diner.face_confirm_button.text() == "That's me, pay"
    diner.toggle_language()
    assert_picture(save(diner, "diner-face-proposal"))

    qtbot.mouseClick(diner.face_confirm_button, Qt.MouseButton.LeftButton)
    assert diner.prompt_label.text() == "支付成功"
    receipt = terminal.session.receipt
    assert receipt is not None and receipt.method == "face" and receipt.account_id == ACCOUNT
    account = terminal.backend.lookup_account(ACCOUNT)  # type: ignore[attr-defined]
    assert account.balance_fen == receipt.balance_after_fen
    detail = diner.detail_label.text()
    assert MASKED in detail and f"余额 {money(account.balance_fen)}" in detail
    assert not diner.face_confirm_button.isVisible()
    terminal.session.tray_removed()
    assert diner.prompt_label.text() == "请将餐盘放在识别区"

    # She asks for her face data to be deleted: asked to confirm, then every template is gone.
    qtbot.mouseClick(screen.delete_button, Qt.MouseButton.LeftButton)
    assert screen.delete_yes.isVisible()
    assert "删除账户 E1001 的全部人脸数据" in screen.delete_question.text()
    qtbot.mouseClick(screen.delete_yes, Qt.MouseButton.LeftButton)
    assert "已删除 E1001 的 3 个人脸模板" in screen.message.text()
    assert terminal.face.matcher.account_ids() == []
    assert terminal.backend.face_templates_since(0).accounts == []  # type: ignore[attr-defined]
    actions = [e.action for e in terminal.desk.audit.entries() if e.action.startswith("face_")]
    assert actions[0] == "face_enrolled" and actions[-1] == "face_deleted"
    assert "face_payment" in actions

    # No face picture in the logs, the audit log or a file.
    text = caplog.text + repr([e.details for e in terminal.desk.audit.entries()])
    assert "array(" not in text and "[[" not in text
    written = [p for p in tmp_path.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    assert written == []


def test_not_me_leaves_the_card_prompt(
    qtbot: QtBot,
    face_terminal: Terminal,
    enrolment_frames: list[Image],
    live_burst: list[Image],
) -> None:
    terminal = face_terminal
    assert terminal.desk is not None
    enrol_directly(terminal, enrolment_frames)
    diner, face, answers = face_diner(qtbot, terminal, live_burst)
    put_tray(terminal, tray_frame("tray-01.jpg"))
    assert isinstance(look(face, answers), FaceProposal)
    assert diner.face_reject_button.isVisible()

    qtbot.mouseClick(diner.face_reject_button, Qt.MouseButton.LeftButton)
    assert diner.prompt_label.text() == "请刷卡"
    assert diner.detail_label.text() == "好的，请刷卡"
    assert not diner.face_confirm_button.isVisible()
    assert MASKED not in visible_text(diner)
    assert terminal.session.state is CheckoutState.AWAITING_PAYMENT
    # The same face is not proposed again for this tray.
    for _ in range(18):
        face.step()
    assert len(answers) == 1
    assert "face_rejected" in [e.action for e in terminal.desk.audit.entries()]
    # The card still pays.
    take_card_payment(terminal.session, terminal.backend, DEMO_CARDS[1])
    assert diner.prompt_label.text() == "支付成功"
    receipt = terminal.session.receipt
    assert receipt is not None and receipt.method == "card"


def test_a_camera_that_sees_no_face_asks_for_the_card_with_the_reason(
    qtbot: QtBot, face_terminal: Terminal, enrolment_frames: list[Image]
) -> None:
    terminal = face_terminal
    enrol_directly(terminal, enrolment_frames)
    coffee = with_sensor_noise([load(COFFEE)] * 6)
    diner, face, answers = face_diner(qtbot, terminal, coffee)
    put_tray(terminal, tray_frame("tray-01.jpg"))
    answer = look(face, answers)
    assert isinstance(answer, AskForCard) and answer.code == "not_live"
    assert "please keep looking at the camera" in answer.reason
    assert diner.prompt_label.text() == "请刷卡"
    detail = diner.detail_label.text()
    assert detail.startswith("未能确认您在看摄像头，请刷卡") and answer.reason in detail
    assert not diner.face_confirm_button.isVisible()
    diner.toggle_language()
    assert diner.prompt_label.text() == "Tap your card"
    assert diner.detail_label.text() == answer.reason
    # Two more tries, then no more for this tray; the card prompt stays throughout.
    look(face, answers)
    look(face, answers)
    for _ in range(12):
        face.step()
    assert len(answers) == 3
    assert diner.prompt_label.text() == "Tap your card"


def test_the_burst_is_taken_and_judged_on_the_worker_thread(
    qtbot: QtBot,
    face_terminal: Terminal,
    enrolment_frames: list[Image],
    live_burst: list[Image],
) -> None:
    terminal = face_terminal
    assert terminal.face is not None
    enrol_directly(terminal, enrolment_frames)
    payment = terminal.face.payment
    threads: set[str] = set()
    propose = payment.propose

    def on_which_thread(frames: list[Image]) -> FaceAnswer:
        threads.add(threading.current_thread().name)
        return propose(frames)

    payment.propose = on_which_thread  # type: ignore[method-assign, assignment]
    # The simulated diner would tap the card after 20 s: the face comes first.
    driver = DemoDriver(
        terminal,
        timings=DemoTimings(idle_s=0, settle_s=0, tap_after_s=20, paid_s=0.2),
        max_trays=1,
    )
    face = FaceCheckout(payment, ReplayCustomerCamera(live_burst), terminal.session, burst_s=0.3)
    driver.face = face
    worker = TerminalWorker(driver, lambda fps: collect_status(terminal, driver, frames_per_s=fps))
    controller = KioskController(worker)
    diner = DinerScreen(terminal.session, face=face, runner=controller)
    qtbot.addWidget(diner)
    diner.show()
    controller.start()
    try:
        qtbot.waitUntil(diner.face_confirm_button.isVisible, timeout=20_000)
        assert diner.prompt_label.text() == f"{MASKED}，是您吗？"
        with qtbot.waitSignal(controller.driver_finished, timeout=20_000):
            qtbot.mouseClick(diner.face_confirm_button, Qt.MouseButton.LeftButton)
    finally:
        controller.stop()
    assert threads and "MainThread" not in threads
    assert driver.counts == {"posted": 1}
    assert diner.prompt_label.text() == "请将餐盘放在识别区"
    assert terminal.desk is not None
    (paid,) = [e for e in terminal.desk.audit.entries() if e.action == "face_payment"]
    assert paid.details["paid"] is True and paid.details["account_id"] == ACCOUNT


def test_the_kiosk_wires_face_accounts_in_when_they_are_on(
    qtbot: QtBot, face_terminal: Terminal, thumbnails: ThumbnailIndex, live_burst: list[Image]
) -> None:
    terminal = face_terminal
    driver = DemoDriver(terminal)
    kiosk = build_kiosk(
        terminal,
        driver,
        InlineRunner(),
        thumbnails=thumbnails,
        customer_camera=ReplayCustomerCamera(live_burst),
    )
    for widget in (kiosk.diner, kiosk.staff):
        qtbot.addWidget(widget)
    tabs = kiosk.staff.tabs
    assert [tabs.tabText(i) for i in range(tabs.count())] == [
        "收银 Cashier",
        "维护 Maintenance",
        "人脸 Face",
    ]
    assert kiosk.face is not None and driver.face is kiosk.face and kiosk.diner.face is kiosk.face
    put_tray(terminal, tray_frame("tray-01.jpg"))
    assert kiosk.diner.prompt_label.text() == "请刷卡或看摄像头"
    # Signed in on the face tab counts as a cashier at the kiosk (the demo's cashier waits).
    assert kiosk.enrolment is not None
    kiosk.enrolment.login_id.setText(CASHIER_ID)
    kiosk.enrolment.login_pin.setText(CASHIER_PIN)
    kiosk.enrolment.sign_in()
    assert driver.cashier_present
    kiosk.enrolment.sign_out()
    assert not driver.cashier_present


def test_without_a_customer_camera_cards_only_and_no_capture(
    qtbot: QtBot, face_terminal: Terminal, thumbnails: ThumbnailIndex
) -> None:
    terminal = face_terminal
    driver = DemoDriver(terminal)
    kiosk = build_kiosk(terminal, driver, InlineRunner(), thumbnails=thumbnails)
    for widget in (kiosk.diner, kiosk.staff):
        qtbot.addWidget(widget)
    assert kiosk.face is None and driver.face is None and kiosk.enrolment is not None
    put_tray(terminal, tray_frame("tray-01.jpg"))
    assert kiosk.diner.prompt_label.text() == "请刷卡"
    screen = kiosk.enrolment
    screen.login_id.setText(CASHIER_ID)
    screen.login_pin.setText(CASHIER_PIN)
    screen.sign_in()
    screen.start_capture()
    assert "No customer camera" in screen.message.text() and not screen.capturing
