"""A terminal process for the crash test: checkouts paid through the outbox to a real server.

Run as ``python -m tests.backend.crash_terminal --url URL --secret S --outbox PATH --start N
--count M --cards C1,C2``. It first recovers what a previous, killed run left in the outbox and
drains it, then checks out trays ``N`` to ``M - 1``, printing (flushed) one line per outcome:

    PAID <transaction id> <index>       after the session was told "paid"
    DECLINED <index> <reason>
    DONE <index>

``--drain-only`` recovers and drains, then prints ``DRAINED <depth>`` and exits.
"""

from __future__ import annotations

import argparse
import sys

from terminal.backend.http import HttpBackend
from terminal.backend.outbox import Outbox
from terminal.backend.payments import OfflinePolicy, OutboxBackend, OutboxWorker
from terminal.core.session import CheckoutSession
from terminal.payment import take_card_payment
from tests.conftest import small_menu
from tests.core.test_session import sure, tray

TRAYS = (("rice", "pork"), ("rice", "greens"), ("rice", "pork", "greens"), ("soup", "rice"))
GROSS_G = {("rice", "pork"): 750, ("rice", "greens"): 720, ("soup", "rice"): 1030}


def drain(worker: OutboxWorker) -> int:
    for _ in range(50):
        report = worker.drain_once()
        if report.unreachable or not report.waiting:
            return report.waiting
    return worker.outbox.depth()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--terminal-id", default="crash-1")
    parser.add_argument("--secret", required=True)
    parser.add_argument("--outbox", required=True)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--cards", default="C1")
    parser.add_argument("--drain-only", action="store_true")
    args = parser.parse_args(argv)

    online = HttpBackend(args.url, args.terminal_id, args.secret, timeout_s=5.0, retries=1)
    outbox = Outbox(args.outbox)
    # Offline payments are off: with the server up, an answer that does not come is a crash.
    backend = OutboxBackend(online, outbox, policy=OfflinePolicy(enabled=False))
    worker = OutboxWorker(outbox, online, min_backoff_s=0.0)
    outbox.recover()
    depth = drain(worker)
    if args.drain_only:
        print(f"DRAINED {depth}", flush=True)
        return 0

    menu = small_menu()
    session = CheckoutSession(menu, args.terminal_id)
    cards = args.cards.split(",")
    for index in range(args.start, args.count):
        items = TRAYS[index % len(TRAYS)]
        session.tray_arrived()
        session.tray_settled(GROSS_G.get(items, 830))
        session.recognised(tray(*(sure(item) for item in items)))
        outcome = take_card_payment(session, backend, cards[index % len(cards)])
        if outcome.receipt is not None:
            print(f"PAID {outcome.receipt.transaction_id} {index}", flush=True)
        else:
            print(f"DECLINED {index} {outcome.declined}", flush=True)
            session.void("declined in the crash test")
        session.tray_removed()
        print(f"DONE {index}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
