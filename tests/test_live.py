"""The live loop: camera frames and scale readings drive whole checkouts with no button pressed."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
from pathlib import Path

import cv2
import numpy as np

from terminal.app import build_terminal
from terminal.config import DEMO_CARDS, load_config
from terminal.core.session import CheckoutEvent, PaymentRequested
from terminal.demo import simulated_gross_g
from terminal.devices.fakes import FakeCardReader, FakeScale
from terminal.live import LiveTerminal
from vision.sources import FrameSource, list_images
from vision.types import Frame

from .conftest import SAMPLE


class ScannerScene(FrameSource):
    """An empty scanner, then each tray photo held still for a while, then empty again.

    It loads the fake scale when a tray appears and empties it when the tray goes, like a
    diner putting a tray down and taking it away.
    """

    def __init__(
        self, photos: list[Path], scale: FakeScale, weights: dict[str, int], clock: list[float]
    ) -> None:
        rng = np.random.default_rng(0)
        self.empty = np.clip(rng.normal(90, 12, (640, 640, 3)), 0, 255).astype(np.uint8)
        self.script: list[Path | None] = [None] * 8
        for photo in photos:
            self.script += [photo] * 14 + [None] * 10
        self.scale, self.weights, self.clock = scale, weights, clock
        self.index = 0
        self.current: Path | None = None

    def read(self) -> Frame | None:
        if self.index >= len(self.script):
            return None
        photo = self.script[self.index]
        if photo != self.current:
            if photo is None:
                self.scale.remove()
            else:
                self.scale.place(self.weights[photo.name])
            self.current = photo
        image = self.empty if photo is None else cv2.imread(str(photo))
        self.clock[0] += 0.1
        frame = Frame(image, self.clock[0], self.index, str(photo) if photo else "")
        self.index += 1
        return frame


def test_three_trays_are_checked_out_once_each_with_no_button(tmp_path: Path) -> None:
    config = tmp_path / "terminal.yaml"
    config.write_text(
        f"backend:\n  ledger: {tmp_path / 'ledger.sqlite'}\nmodel:\n  type: ground_truth\n",
        encoding="utf-8",
    )
    terminal = build_terminal(load_config(config), seed_demo_accounts=True)
    clock = [1000.0]
    scale = FakeScale(settle_readings=3, wobble_g=2, clock=lambda: clock[0])
    cards = FakeCardReader(clock=lambda: clock[0])
    photos = list_images(SAMPLE / "images")[:3]
    assert terminal.truth is not None
    weights = {}
    for photo in photos:
        truth = terminal.truth.recognise(Frame(cv2.imread(str(photo)), 0.0, 0, str(photo)))
        weights[photo.name] = simulated_gross_g(terminal, truth, photo.name)
    terminal.scale, terminal.card_reader = scale, cards
    terminal.camera = ScannerScene(photos, scale, weights, clock)

    def diner_taps(event: CheckoutEvent) -> None:
        if isinstance(event, PaymentRequested):
            cards.tap(DEMO_CARDS[0])

    terminal.session.subscribe(diner_taps)
    out = io.StringIO()
    live = LiveTerminal(terminal, out, clock=lambda: clock[0])
    records = live.run(threading.Event())
    terminal.close()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["tray"] for r in lines] == [p.name for p in photos]
    assert [r["status"] for r in lines] == ["posted"] * 3, [r["holds"] for r in lines]
    assert len(records) == 3
    assert [r["gross_g"] for r in lines] == [weights[p.name] for p in photos]
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        charged = db.execute("SELECT amount_fen FROM transactions ORDER BY created_at").fetchall()
    assert [c[0] for c in charged] == [r["total_fen"] for r in lines], "one charge per tray"
    assert len(cards.taps) == 3
