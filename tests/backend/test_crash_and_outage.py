"""Money is never lost or taken twice: a terminal killed mid-payment, and a backend outage.

Both run a real terminal payment path (outbox + HTTP client) against the reference server as a
real subprocess, on SQLite and on PostgreSQL (see ``tests/server/conftest.py``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Empty, Queue
from urllib.parse import urlsplit

import requests

from server.process import start_server
from terminal.backend.http import HttpBackend
from terminal.backend.outbox import Outbox
from terminal.backend.payments import OfflinePolicy, OutboxBackend, OutboxWorker
from terminal.core.menu import Menu
from terminal.core.session import CheckoutSession, CheckoutState
from terminal.payment import take_card_payment
from tests.core.test_session import sure, tray
from tests.server.conftest import db_url  # noqa: F401  (the fixture)
from tests.server.helpers import ADMIN_TOKEN, AdminClient, SignedClient, serving

REPO = Path(__file__).resolve().parents[2]
CARDS = {"C1": ("a1", 30_000), "C2": ("a2", 30_000), "C3": ("a3", 30_000), "C4": ("a4", 2_000)}
CHECKOUTS = 100


def open_accounts(admin: AdminClient) -> None:
    for card_id, (account_id, balance) in CARDS.items():
        admin.create_account(account_id, name=f"diner {account_id}", balance_fen=balance)
        admin.add_card(account_id, card_id)


class Terminal:
    """``tests/backend/crash_terminal.py`` as a child process whose lines are read as they come."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.backend.crash_terminal", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines: Queue[str | None] = Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


def test_a_terminal_killed_at_random_points_loses_and_doubles_nothing(
    db_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    rng = random.Random(20261126)
    outbox_path = tmp_path / "outbox.sqlite"
    with serving(db_url, tmp_path) as server:
        admin = AdminClient(requests.Session(), server.url)
        signed = admin.add_terminal("crash-1")
        open_accounts(admin)
        common = [
            "--url", server.url, "--terminal-id", "crash-1", "--secret", signed.secret,
            "--outbox", str(outbox_path), "--cards", ",".join(CARDS),
        ]  # fmt: skip
        told_paid: set[str] = set()
        next_index, kills = 0, 0
        for _ in range(80):
            if next_index >= CHECKOUTS:
                break
            child = Terminal([*common, "--start", str(next_index), "--count", str(CHECKOUTS)])
            # Kill while it starts, recovers and drains (about 0.3 s), or a moment after the k-th
            # checkout (one takes about 7 ms): mid-post.
            early = rng.random() < 0.2
            deadline = time.monotonic() + (rng.uniform(0.05, 0.35) if early else 60.0)
            wanted = rng.randint(1, 3)
            seen = 0
            while True:
                try:
                    line = child.lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except Empty:
                    child.kill()
                    kills += 1
                    break
                if line is None:
                    child.process.wait()
                    break
                kind, *rest = line.split(" ", 2)
                if kind == "PAID":
                    told_paid.add(rest[0])
                elif kind == "DONE":
                    next_index = int(rest[0]) + 1
                    seen += 1
                    if not early and seen == wanted:
                        time.sleep(rng.uniform(0.0, 0.01))
                        child.kill()
                        kills += 1
                        # What it printed before it died still counts as told.
                        while (late := child.lines.get()) is not None:
                            if late.startswith("PAID "):
                                told_paid.add(late.split(" ")[1])
                            elif late.startswith("DONE "):
                                next_index = int(late.split(" ")[1]) + 1
                        break
        assert next_index == CHECKOUTS, "the checkouts did not finish"
        assert kills >= 15
        final = Terminal([*common, "--drain-only"])
        assert final.lines.get(timeout=60) == "DRAINED 0"
        final.process.wait()

        outbox = Outbox(outbox_path)
        entries = outbox.entries()
        assert not outbox.entries("charging", "pending", "cancelling")
        charged_by_account = dict.fromkeys((a for a, _ in CARDS.values()), 0)
        for entry in entries:
            answer = signed.get(f"/v1/transactions/{entry.transaction_id}")
            record = answer.json() if answer.status_code == 200 else None
            if entry.status == "posted":
                assert record is not None and record["status"] == "charged", entry
                assert record["amount_fen"] == entry.amount_fen
                charged_by_account[entry.account_id or ""] += entry.amount_fen
            else:
                # Declined, or voided after a crash: nothing charged on the backend.
                assert entry.status in ("declined", "cancelled"), entry
                assert record is None or record["status"] == "voided", (entry, record)
        posted = {e.transaction_id for e in entries if e.status == "posted"}
        assert told_paid <= posted
        assert len(told_paid) >= 60
        for account_id, balance in CARDS.values():
            assert signed.balance(account_id) == balance - charged_by_account[account_id]
        outbox.close()


class OutageTerminal:
    """A terminal in this process: session, outbox, HTTP client and worker."""

    def __init__(self, url: str, secret: str, outbox_path: Path, menu: Menu) -> None:
        self.online = HttpBackend(url, "t-out", secret, timeout_s=3.0, retries=0)
        self.outbox = Outbox(outbox_path)
        self.backend = OutboxBackend(
            self.online, self.outbox, policy=OfflinePolicy(per_account_daily_fen=2_000)
        )
        self.session = CheckoutSession(menu, "t-out")
        self.worker = OutboxWorker(
            self.outbox, self.online, min_backoff_s=0.0, on_posted=self.session.posted
        )

    def checkout(self, card_id: str) -> tuple[str | None, str | None]:
        """One tray of rice and pork (7.50 yuan); returns (transaction id, decline reason)."""
        session = self.session
        session.tray_arrived()
        session.tray_settled(750)
        session.recognised(tray(sure("rice"), sure("pork")))
        outcome = take_card_payment(session, self.backend, card_id)
        transaction_id = outcome.receipt.transaction_id if outcome.receipt else None
        if outcome.receipt is None:
            assert session.state is CheckoutState.AWAITING_PAYMENT
            session.void("declined")
        session.tray_removed()
        return transaction_id, outcome.declined


def test_an_outage_is_survived_within_the_offline_limit(
    db_url: str,  # noqa: F811
    tmp_path: Path,
    menu: Menu,
) -> None:
    with serving(db_url, tmp_path) as server:
        admin = AdminClient(requests.Session(), server.url)
        signed: SignedClient = admin.add_terminal("t-out")
        open_accounts(admin)
        terminal = OutageTerminal(server.url, signed.secret, tmp_path / "outbox.sqlite", menu)
        assert terminal.backend.sync_accounts() == len(CARDS)
        online_ids = [terminal.checkout("C1")[0], terminal.checkout("C2")[0]]
        assert all(online_ids) and terminal.outbox.depth() == 0
        port = urlsplit(server.url).port
        server.stop()

        # The backend is down: within the limit a diner still pays, beyond it is told why.
        offline_ids = [terminal.checkout("C1")[0], terminal.checkout("C1")[0]]
        over_id, over_reason = terminal.checkout("C1")  # 3 x 7.50 > the 20.00 offline limit
        other_id, _ = terminal.checkout("C3")
        assert all(offline_ids) and other_id and over_id is None
        assert over_reason is not None and "limited to ¥20.00 per card per day" in over_reason
        assert terminal.outbox.depth() == 4  # three offline payments and one void
        assert terminal.worker.drain_once().unreachable

        restarted = start_server(
            server.db_url, ADMIN_TOKEN, tmp_path / "server-again.log", port=port
        )
        try:
            report = terminal.worker.drain_once()
            assert sorted(report.posted) == sorted([*offline_ids, other_id])
            assert len(report.cancelled) == 1 and report.waiting == 0
            for transaction_id in [*offline_ids, other_id]:
                record = signed.get(f"/v1/transactions/{transaction_id}").json()
                assert record["status"] == "charged" and record["offline"] is True
            voided = signed.get(f"/v1/transactions/{report.cancelled[0]}").json()
            assert voided["status"] == "voided"
            price = 750
            assert signed.balance("a1") == 30_000 - 3 * price
            assert signed.balance("a3") == 30_000 - price
            # Reconciled: the terminal's view of the balance is the backend's again.
            account = terminal.backend.lookup_card("C1")
            assert account is not None and account.balance_fen == 30_000 - 3 * price
        finally:
            restarted.stop()
            terminal.online.close()
            terminal.outbox.close()
