"""Many terminals debiting one account at once through a real multi-process server.

The server runs with two uvicorn workers, so the debits race in separate processes and
connections; only the database's atomic update keeps the balance right.
"""

from __future__ import annotations

import random
import threading
import uuid
from pathlib import Path
from typing import Any

import requests

from .helpers import AdminClient, SignedClient, serving, transaction_body

TERMINALS = 8
POSTS_EACH = 25
OPENING_FEN = 20_000


def test_concurrent_debits_never_overdraw(db_url: str, tmp_path: Path) -> None:
    with serving(db_url, tmp_path, workers=2) as server:
        admin = AdminClient(requests.Session(), server.url)
        admin.create_account("shared", "Shared account", OPENING_FEN)
        terminals = [admin.add_terminal(f"t{i}") for i in range(TERMINALS)]
        outcomes: list[list[tuple[str, int, int]]] = [[] for _ in terminals]
        failures: list[BaseException] = []
        start = threading.Barrier(TERMINALS)

        def hammer(index: int) -> None:
            terminal = terminals[index]
            terminal.http = requests.Session()  # one keep-alive connection per terminal
            chooser = random.Random(index)
            try:
                start.wait()
                for _ in range(POSTS_EACH):
                    transaction_id = uuid.uuid4().hex
                    amount = chooser.randrange(50, 250)
                    answer = terminal.post(
                        "/v1/transactions",
                        transaction_body(transaction_id, terminal.terminal_id, "shared", amount),
                    )
                    outcomes[index].append((transaction_id, amount, answer.status_code))
            except BaseException as exc:  # surfaced below, in the test's thread
                failures.append(exc)

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(TERMINALS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not failures, failures

        results = [result for per_terminal in outcomes for result in per_terminal]
        charged = [(tid, amount) for tid, amount, status in results if status == 201]
        declined = [(tid, amount) for tid, amount, status in results if status == 402]
        assert len(results) == TERMINALS * POSTS_EACH
        assert len(charged) + len(declined) == len(results), {s for *_, s in results}
        total_asked = sum(amount for _, amount, _ in results)
        assert total_asked > OPENING_FEN, "the test must ask for more than the balance"
        assert charged and declined

        reader = terminals[0]
        reader.http = requests.Session()
        balance = reader.balance("shared")
        assert balance >= 0
        assert balance == OPENING_FEN - sum(amount for _, amount in charged)
        # A decline means the balance was below that amount then, and it only fell afterwards.
        assert balance < min(amount for _, amount in declined)
        for transaction_id, amount in charged[:20]:
            record = reader.get(f"/v1/transactions/{transaction_id}").json()
            assert (record["status"], record["amount_fen"]) == ("charged", amount)
        for transaction_id, _ in declined[:20]:
            assert reader.get(f"/v1/transactions/{transaction_id}").status_code == 404


def test_a_transaction_posted_by_many_at_once_debits_once(db_url: str, tmp_path: Path) -> None:
    with serving(db_url, tmp_path, workers=2) as server:
        admin = AdminClient(requests.Session(), server.url)
        admin.create_account("a1", "Diner", 10_000)
        terminal = admin.add_terminal("t1")
        body = transaction_body("same-id", "t1", "a1", 700)
        answers: list[Any] = []
        start = threading.Barrier(TERMINALS)

        def post_it() -> None:
            client = SignedClient(requests.Session(), server.url, "t1", terminal.secret)
            start.wait()
            answers.append(client.post("/v1/transactions", body))

        threads = [threading.Thread(target=post_it) for _ in range(TERMINALS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200] * (TERMINALS - 1) + [201]
        assert {answer.json()["balance_after_fen"] for answer in answers} == {9_300}
        terminal.http = requests.Session()
        assert terminal.balance("a1") == 9_300
