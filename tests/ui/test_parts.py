"""The kiosk's parts without a screen: pinyin search, dish thumbnails, the demo's cashier rule."""

from __future__ import annotations

import numpy as np
import pytest

from terminal.app import Terminal
from terminal.core.session import CheckoutState
from terminal.menu_file import load_menu
from terminal.ui import pinyin
from terminal.ui.drivers import DemoDriver, DemoTimings
from terminal.ui.text import money, share_percent
from terminal.ui.thumbnails import ThumbnailIndex, crop_square

from ..conftest import DEMO_MENU, SAMPLE


@pytest.mark.parametrize(
    ("name", "letters"),
    [("米饭", "mf"), ("蒜蓉空心菜", "srkxc"), ("胡椒焖猪肉", "hjmzr"), ("Rice 2", "rice2")],
)
def test_pinyin_initials(name: str, letters: str) -> None:
    assert pinyin.initials(name) == letters


@pytest.mark.parametrize(
    ("query", "first"),
    [("mf", "米饭"), ("xj", "香蕉"), ("srk", "蒜蓉空心菜"), ("rice", "米饭"), ("西瓜", "西瓜")],
)
def test_search_finds_by_initials_name_or_english(query: str, first: str) -> None:
    menu = load_menu(DEMO_MENU)
    assert pinyin.search(menu, query)[0].name_zh == first


def test_search_finds_nothing_for_nonsense() -> None:
    assert pinyin.search(load_menu(DEMO_MENU), "zzzq") == []


def test_thumbnails_are_square_crops_of_the_labelled_photos() -> None:
    menu = load_menu(DEMO_MENU)
    index = ThumbnailIndex(menu, [SAMPLE / "dataset.yaml"])
    rice = index.get("com")
    assert rice is not None and rice.shape == (128, 128, 3)
    assert "com" in index and len(index) >= 30
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, 150:] = 255
    crop = crop_square(image, (160.0, 10.0, 190.0, 20.0), size=32)
    assert crop.shape == (32, 32, 3) and crop.min() == 255  # grown to a square around the box


def test_money_and_shares() -> None:
    assert [money(1262), money(5), money(-50)] == ["¥12.62", "¥0.05", "-¥0.50"]
    assert share_percent(671, 2000) == 34 and share_percent(1, 0) == 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def held_demo(terminal: Terminal, clock: Clock) -> DemoDriver:
    """A demo whose recogniser is unsure of every dish, so each tray is held."""
    from vision.types import DishStatus, Frame, TrayRecognition

    truth = terminal.truth
    assert truth is not None

    class Unsure:
        model_version = "unsure"

        def recognise(self, frame: Frame) -> TrayRecognition:
            seen = truth.recognise(frame)
            dishes = tuple(
                type(d)(d.box_xyxy, DishStatus.UNSURE, d.dish_id, 0.5, d.candidates)
                for d in seen.dishes
            )
            return TrayRecognition(dishes, "unsure")

    terminal.recogniser = Unsure()
    timings = DemoTimings(idle_s=0, settle_s=0, tap_after_s=0, paid_s=0, cashier_timeout_s=30)
    driver = DemoDriver(terminal, timings=timings, max_trays=1, clock=clock)
    for _ in range(3):
        driver.step()
    assert terminal.session.state is CheckoutState.HELD
    return driver


def test_a_held_tray_waits_for_the_signed_in_cashier(terminal: Terminal) -> None:
    clock = Clock()
    driver = held_demo(terminal, clock)
    driver.cashier_present = True
    clock.now += 600
    driver.step()
    assert terminal.session.state is CheckoutState.HELD


def test_with_no_cashier_the_simulated_one_confirms_after_the_timeout(terminal: Terminal) -> None:
    clock = Clock()
    driver = held_demo(terminal, clock)
    clock.now += 29
    driver.step()
    assert terminal.session.state is CheckoutState.HELD
    clock.now += 2
    driver.step()
    assert terminal.session.state is CheckoutState.AWAITING_PAYMENT
    while driver.step():
        pass
    assert driver.counts == {"posted": 1}
