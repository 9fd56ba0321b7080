"""The headless demo: replayed trays, a simulated scale and card taps, real checkouts.

Each replayed photo is one diner: the tray arrives, the fake scale is loaded with a believable
weight (tray and tableware tares plus each dish's nominal portion, varied per tray), the
recogniser names the dishes, the session prices the tray, a demo card is tapped and charged in
the ledger, and the tray leaves. One JSON line per checkout goes to the output, built from the
session's events the way a screen would see them.
"""

from __future__ import annotations

import json
import logging
import random
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from terminal.app import StartupError, Terminal
from terminal.core.pricing import PricedTray
from terminal.core.session import (
    CheckoutEvent,
    CheckoutState,
    Paid,
    PaymentDeclined,
    PaymentRequest,
    PaymentRequested,
    Posted,
    TrayHeld,
    TrayRecognised,
    TrayRemoved,
)
from terminal.devices.fakes import FakeCardReader, FakeScale
from terminal.payment import mask_card, take_card_payment
from vision.types import Frame, TrayRecognition

logger = logging.getLogger(__name__)


def simulated_gross_g(terminal: Terminal, recognition: TrayRecognition, tray_name: str) -> int:
    """A believable gross weight for a replayed tray, the same every run for the same photo."""
    rng = random.Random(zlib.crc32(tray_name.encode()))
    menu = terminal.menu
    tray = terminal.session.tray
    gross = tray.tare_g if tray is not None else 0
    for dish in recognition.dishes:
        if dish.dish_id is None or dish.dish_id not in menu:
            gross += rng.randint(60, 150)
            continue
        item = menu.item(dish.dish_id)
        gross += round(item.portion_g * rng.uniform(0.85, 1.15))
        if item.tableware is not None:
            gross += menu.tableware_type(item.tableware).tare_g
    return gross


@dataclass
class CheckoutRecord:
    """What one checkout looked like from the outside, collected from the session's events."""

    tray: str
    checkout_id: str = ""
    recognition: TrayRecognition | None = None
    priced: PricedTray | None = None
    holds: list[str] = field(default_factory=list)
    payment: dict[str, Any] | None = None
    declined: list[str] = field(default_factory=list)
    transaction_id: str | None = None
    status: str = "started"
    cashier_fixed: bool = False

    def apply(self, event: CheckoutEvent, request: PaymentRequest | None) -> None:
        """Update the record from one of the session's events, as a screen would."""
        self.checkout_id = event.checkout_id or self.checkout_id
        if isinstance(event, TrayRecognised):
            self.recognition = event.recognition
            self.priced = event.priced
        elif isinstance(event, TrayHeld):
            self.priced = event.priced or self.priced
            self.holds.extend(str(h) for h in event.holds)
            self.status = "held"
        elif isinstance(event, PaymentRequested):
            self.priced = event.priced
            self.status = "awaiting_payment"
        elif isinstance(event, PaymentDeclined):
            self.declined.append(event.reason)
            self.status = "declined"
        elif isinstance(event, Paid):
            receipt = event.receipt
            self.transaction_id = receipt.transaction_id
            self.payment = {
                "method": receipt.method,
                "card": mask_card(request.credential) if request else None,
                "account": receipt.account_id,
                "amount_fen": receipt.amount_fen,
                "balance_after_fen": receipt.balance_after_fen,
                "offline": receipt.offline,
            }
            self.status = "paid"
        elif isinstance(event, Posted):
            if event.transaction_id == self.transaction_id:
                self.status = "posted"
        elif (
            isinstance(event, TrayRemoved)
            and not event.charged
            and self.status in ("awaiting_payment", "started", "declined")
        ):
            self.status = "abandoned"

    def to_json(self, language: str) -> dict[str, Any]:
        priced = self.priced
        dishes = []
        if priced is not None:
            for line in priced.lines:
                dishes.append(
                    {
                        "id": line.item_id,
                        "name": line.name_en,
                        "name_zh": line.name_zh,
                        "pricing": line.pricing.value,
                        "unit_price_fen": line.unit_price_fen,
                        "grams": line.grams,
                        "price_fen": line.price_fen,
                    }
                )
        nutrition = priced.nutrition.rounded() if priced else None
        return {
            "tray": self.tray,
            "checkout_id": self.checkout_id,
            "dishes": dishes,
            "gross_g": priced.gross_g if priced else None,
            "net_g": priced.net_g if priced else None,
            "total_fen": priced.total_fen if priced else 0,
            "kcal": nutrition.kcal if nutrition else 0,
            "nutrition": {
                "kcal": nutrition.kcal,
                "protein_g": nutrition.protein_g,
                "fat_g": nutrition.fat_g,
                "carbohydrate_g": nutrition.carbohydrate_g,
            }
            if nutrition
            else None,
            "payment": self.payment,
            "transaction_id": self.transaction_id,
            "status": self.status,
            "holds": self.holds,
            "cashier_fixed": self.cashier_fixed,
            "recognised": [
                {"id": d.dish_id, "status": d.status.value, "score": round(d.score, 3)}
                for d in self.recognition.dishes
            ]
            if self.recognition
            else [],
            "declined": self.declined,
            "model": self.recognition.model_version if self.recognition else None,
        }


def settle_replayed_tray(
    terminal: Terminal, scale: FakeScale, frame: Frame
) -> TrayRecognition | None:
    """A replayed tray comes to rest: recognise it, weigh it on the fake scale, tell the session.

    The scale weighs what is really on the tray: the photo's labels when there are any, else
    what the recogniser saw. Returns the labels' view (None without labels), which the demo's
    simulated cashier confirms when the tray is held.
    """
    session = terminal.session
    name = Path(frame.source).name
    recognition: TrayRecognition | None = None
    error = ""
    try:
        recognition = terminal.recogniser.recognise(frame)
    except Exception as exc:  # any recogniser failure goes to the cashier
        logger.exception("recognition failed on %s", name)
        error = f"{type(exc).__name__}: {exc}"
    truth = terminal.truth.recognise(frame) if terminal.truth is not None else None
    weighed = truth or recognition
    scale.place(simulated_gross_g(terminal, weighed, name) if weighed else 0)
    session.tray_settled(scale.read_stable().gross_g)
    terminal.frame_settled(frame)
    if recognition is None:
        session.recognition_failed(error)
    else:
        session.recognised(recognition)
    return truth


class HeadlessDemo:
    """Runs replayed checkouts through a terminal built by :func:`terminal.app.build_terminal`.

    Args:
        terminal: the wired terminal (fake scale and card reader, replay camera).
        out: where the JSON lines go.
        interval_s: pause between trays, so a person can follow along.
    """

    def __init__(self, terminal: Terminal, out: TextIO, *, interval_s: float = 0.0) -> None:
        if not isinstance(terminal.scale, FakeScale) or not isinstance(
            terminal.card_reader, FakeCardReader
        ):
            raise StartupError(
                "the demo simulates the diners: it needs scale.type fake and card_reader.type fake"
            )
        self.scale: FakeScale = terminal.scale
        self.cards: FakeCardReader = terminal.card_reader
        self.terminal = terminal
        self.out = out
        self.interval_s = interval_s
        self.language = terminal.loaded.config.language
        self._record: CheckoutRecord | None = None
        terminal.session.subscribe(self._on_event)
        self.counts: dict[str, int] = {}

    def run(self, max_trays: int | None = None) -> dict[str, int]:
        """Check out trays until the camera runs dry or ``max_trays`` is reached."""
        done = 0
        while max_trays is None or done < max_trays:
            frame = self.terminal.camera.read()
            if frame is None:
                break
            if done and self.interval_s > 0:
                time.sleep(self.interval_s)
            record = self.checkout(frame)
            self.terminal.deliver_posted()
            self.counts[record.status] = self.counts.get(record.status, 0) + 1
            done += 1
        return self.counts

    def checkout(self, frame: Frame) -> CheckoutRecord:
        """One diner, from tray down to tray gone; returns the record printed for it."""
        terminal, session = self.terminal, self.terminal.session
        record = self._record = CheckoutRecord(tray=Path(frame.source).name)
        session.tray_arrived()
        truth = settle_replayed_tray(terminal, self.scale, frame)
        if session.state is CheckoutState.HELD and truth is not None:
            # The demo's cashier looks at the tray and confirms the dishes really on it.
            session.resolve([d.dish_id for d in truth.dishes if d.dish_id is not None])
            record.cashier_fixed = True
        if session.state is CheckoutState.AWAITING_PAYMENT:
            self._pay()
        self.scale.remove()
        session.tray_removed()
        self.out.write(json.dumps(record.to_json(self.language), ensure_ascii=False) + "\n")
        self.out.flush()
        return record

    def _pay(self) -> None:
        self.cards.tap_next()
        tap = self.cards.poll()
        assert tap is not None
        outcome = take_card_payment(self.terminal.session, self.terminal.backend, tap.card_id)
        record = self._record
        if outcome.account is not None and record is not None and record.payment is not None:
            record.payment["account_name"] = outcome.account.display_name

    def _on_event(self, event: CheckoutEvent) -> None:
        if self._record is not None:
            self._record.apply(event, self.terminal.session.payment_request)


__all__ = ["CheckoutRecord", "HeadlessDemo", "simulated_gross_g"]
