"""Builders for the kiosk screen tests: a demo terminal on the ground-truth recogniser, trays put
on it, and what a screen shows as text.

Qt draws offscreen here, so the tests run without a display.
"""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QLabel,
    QListWidget,
    QProgressBar,
    QTableWidget,
    QWidget,
)

from terminal.app import Terminal, build_terminal
from terminal.config import load_config
from terminal.demo import simulated_gross_g
from terminal.ui.style import apply_kiosk_style
from terminal.ui.thumbnails import ThumbnailIndex
from vision.sources import read_image
from vision.types import (
    Candidate,
    DishRecognition,
    DishStatus,
    Frame,
    TrayRecognition,
)

from ..conftest import SAMPLE

#: The demo's cashier (terminal.app.DEMO_CASHIER): a supervisor.
CASHIER_ID, CASHIER_PIN = "demo", "1234"


@pytest.fixture(autouse=True)
def kiosk_style(qapp: QApplication) -> None:
    """The kiosk's stylesheet and CJK font, as the application sets them."""
    apply_kiosk_style(qapp)


def write_config(folder: Path) -> Path:
    """A demo terminal config keeping everything in ``folder``, on the label-reading recogniser."""
    config = folder / "terminal.yaml"
    config.write_text(
        f"data_dir: {folder}\n"
        f"calibration: {folder / 'calibration.yaml'}\n"
        f"backend:\n  ledger: {folder / 'ledger.sqlite'}\n"
        f"model:\n  type: ground_truth\n  dataset: {SAMPLE / 'dataset.yaml'}\n",
        encoding="utf-8",
    )
    return config


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    """A demo terminal: replayed photos, fake scale and cards, the embedded ledger with the
    demo diners, the demo cashier enrolled."""
    built = build_terminal(load_config(write_config(tmp_path)), seed_demo_accounts=True)
    yield built
    built.close()


@pytest.fixture(scope="session")
def thumbnails() -> ThumbnailIndex:
    from terminal.menu_file import load_menu

    from ..conftest import DEMO_MENU

    return ThumbnailIndex(load_menu(DEMO_MENU), [SAMPLE / "dataset.yaml"])


def tray_frame(name: str = "tray-01.jpg") -> Frame:
    """One of the sample tray photos as a camera frame."""
    path = SAMPLE / "images" / name
    return Frame(read_image(path), 0.0, 0, str(path))


def truth(terminal: Terminal, frame: Frame) -> TrayRecognition:
    """Every dish of the photo, named for sure (its labels)."""
    assert terminal.truth is not None
    return terminal.truth.recognise(frame)


def put_tray(
    terminal: Terminal, frame: Frame, recognition: TrayRecognition | None = None
) -> TrayRecognition:
    """A tray arrives, settles at the demo's believable weight and is recognised."""
    terminal.session.tray_arrived()
    return settle(terminal, frame, recognition)


def settle(
    terminal: Terminal, frame: Frame, recognition: TrayRecognition | None = None
) -> TrayRecognition:
    """The tray on the scanner settles at the demo's believable weight and is recognised."""
    session = terminal.session
    seen = recognition or truth(terminal, frame)
    weighed = truth(terminal, frame)
    session.tray_settled(simulated_gross_g(terminal, weighed, Path(frame.source).name))
    session.recognised(seen)
    return seen


def unsure_and_unknown(recognition: TrayRecognition) -> TrayRecognition:
    """tray-01 as an unsure recogniser sees it: the rice (dish 2) unknown, the watermelon
    (dish 3) unsure between watermelon and dragon fruit."""
    dishes = list(recognition.dishes)
    assert [d.dish_id for d in dishes][:3] == ["rau_muong", "com", "dua_hau"]
    dishes[1] = DishRecognition(
        dishes[1].box_xyxy,
        DishStatus.UNKNOWN,
        None,
        0.41,
        (Candidate("banh_mi", 0.41), Candidate("com", 0.40)),
    )
    dishes[2] = DishRecognition(
        dishes[2].box_xyxy,
        DishStatus.UNSURE,
        "thanh_long",
        0.74,
        (Candidate("thanh_long", 0.74), Candidate("dua_hau", 0.71), Candidate("oi", 0.52)),
    )
    return replace(recognition, dishes=tuple(dishes))


def visible_text(root: QWidget) -> str:
    """Every piece of text a person sees on ``root``: labels, buttons, tables, lists, bars."""
    parts: list[str] = []
    for widget in [root, *root.findChildren(QWidget)]:
        if widget is not root and not widget.isVisibleTo(root):
            continue
        if isinstance(widget, QLabel | QAbstractButton | QProgressBar):
            parts.append(widget.text())
        elif isinstance(widget, QTableWidget):
            for row in range(widget.rowCount()):
                for column in range(widget.columnCount()):
                    item = widget.item(row, column)
                    if item is not None:
                        parts.append(item.text())
        elif isinstance(widget, QListWidget):
            parts.extend(widget.item(i).text() for i in range(widget.count()))
    return "\n".join(part for part in parts if part)


def table_rows(table: QTableWidget) -> list[tuple[str, ...]]:
    """The cells of a table, row by row."""
    return [
        tuple(
            (item.text() if (item := table.item(row, column)) is not None else "")
            for column in range(table.columnCount())
        )
        for row in range(table.rowCount())
    ]
