"""``trayscan bench backend``: how many signed transactions a second the reference server takes.

The server runs as it would in production, ``trayscan backend serve`` with uvicorn workers, in
a child process on loopback. The bench registers one terminal per client and a set of accounts
through the admin API, then ``concurrency`` clients (threads spread over a few processes, each
with its own keep-alive connection and its own terminal secret) post signed
``POST /v1/transactions`` as fast as the answers come. After a warm-up second the answers are
counted and timed. At the end every account's balance is read back and compared with the sum
of the transactions the server accepted, so the figures are for correct work only.

The clients run on the same machine as the server and its database and take their share of the
CPU; the figures are a floor for what a separate server machine would do.
"""

from __future__ import annotations

import http.client
import json
import logging
import multiprocessing
import os
import platform
import random
import secrets
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.process import ServerProcess, ServerStartError, start_server
from terminal.backend.signing import sign_headers

logger = logging.getLogger(__name__)

WARM_UP_S = 1.0
ACCOUNTS_PER_CLIENT = 4
OPENING_BALANCE_FEN = 10**12


class BenchError(RuntimeError):
    """The bench could not run (the server did not start, the set-up was refused, ...)."""


@dataclass(frozen=True)
class _ClientPlan:
    host: str
    port: int
    terminal_id: str
    secret: str
    account_ids: tuple[str, ...]
    start_at: float
    measure_from: float
    stop_at: float
    seed: int


@dataclass
class _ClientResult:
    latencies_s: list[float]
    statuses: dict[int, int]
    errors: int
    charged: dict[str, int]


def _request(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    headers: dict[str, str],
) -> tuple[int, bytes]:
    data = json.dumps(body).encode("utf-8") if body is not None else b""
    if body is not None:
        headers = {**headers, "Content-Type": "application/json"}
    connection.request(method, path, body=data, headers=headers)
    answer = connection.getresponse()
    return answer.status, answer.read()


def _admin(server: ServerProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        status, raw = _request(
            connection, "POST", path, body, {"Authorization": f"Bearer {server.admin_token}"}
        )
    finally:
        connection.close()
    if status >= 300:
        raise BenchError(f"set-up {path} refused with {status}: {raw.decode(errors='replace')}")
    answer: dict[str, Any] = json.loads(raw)
    return answer


def _run_client(plan: _ClientPlan) -> _ClientResult:
    """One client: post signed transactions on one keep-alive connection until ``stop_at``."""
    chooser = random.Random(plan.seed)
    result = _ClientResult([], {}, 0, {})
    connection = http.client.HTTPConnection(plan.host, plan.port, timeout=30)
    path = "/v1/transactions"
    while time.time() < plan.start_at:
        time.sleep(0.001)
    while True:
        sent_at = time.time()
        if sent_at >= plan.stop_at:
            break
        account_id = chooser.choice(plan.account_ids)
        amount = chooser.randrange(300, 2500)
        body = {
            "transaction_id": uuid.uuid4().hex,
            "checkout_id": uuid.uuid4().hex,
            "terminal_id": plan.terminal_id,
            "account_id": account_id,
            "method": "card",
            "amount_fen": amount,
            "lines": [
                {"item_id": "rice", "grams": 210, "price_fen": 150, "pricing": "per_portion"},
                {"item_id": "pork", "grams": 95, "price_fen": amount - 150, "pricing": "per_100g"},
            ],
            "created_at": sent_at,
            "offline": False,
        }
        data = json.dumps(body).encode("utf-8")
        headers = sign_headers(plan.terminal_id, plan.secret, "POST", path, data, now=sent_at)
        headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            connection.request("POST", path, body=data, headers=headers)
            answer = connection.getresponse()
            answer.read()
            status = answer.status
        except (OSError, http.client.HTTPException):
            result.errors += 1
            connection.close()
            connection = http.client.HTTPConnection(plan.host, plan.port, timeout=30)
            continue
        elapsed = time.perf_counter() - started
        if status == 201:
            result.charged[account_id] = result.charged.get(account_id, 0) + amount
        if sent_at < plan.measure_from:
            continue
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if status == 201:
            result.latencies_s.append(elapsed)
        else:
            result.errors += 1
    connection.close()
    return result


def _run_client_group(plans: list[_ClientPlan]) -> list[_ClientResult]:
    """Several clients as threads of one process."""
    results: list[_ClientResult | None] = [None] * len(plans)

    def run(index: int) -> None:
        results[index] = _run_client(plans[index])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(plans))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [result for result in results if result is not None]


def _percentile_ms(sorted_s: list[float], fraction: float) -> float | None:
    if not sorted_s:
        return None
    index = min(len(sorted_s) - 1, max(0, round(fraction * len(sorted_s)) - 1))
    return round(sorted_s[index] * 1000.0, 2)


def machine() -> dict[str, Any]:
    """The CPU model and core count of this machine."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version()}


def bench_backend(
    *,
    db_url: str | None = None,
    seconds: float = 10.0,
    concurrency: int = 8,
    workers: int = 2,
    client_processes: int = 2,
    pool_size: int | None = None,
) -> dict[str, Any]:
    """Run the bench and return its figures.

    Args:
        db_url: the database to load; a new SQLite file when None. Accounts, cards and
            terminals named ``bench-<run>-...`` are left in it.
        seconds: how long to measure (after a warm-up second).
        concurrency: clients posting at once.
        workers: server processes.
        client_processes: processes the clients are spread over.
        pool_size: database connections per server worker.

    Raises:
        BenchError: the server did not start or the set-up was refused.
    """
    if concurrency < 1 or seconds <= 0 or workers < 1 or client_processes < 1:
        raise BenchError("--concurrency, --seconds, --workers and --client-processes must be > 0")
    with tempfile.TemporaryDirectory(prefix="trayscan-bench-") as scratch:
        url = db_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        token = secrets.token_hex(16)
        try:
            server = start_server(
                url, token, Path(scratch) / "server.log", workers=workers, pool_size=pool_size
            )
        except ServerStartError as exc:
            raise BenchError(str(exc)) from None
        try:
            return _bench(server, seconds, concurrency, workers, client_processes, pool_size)
        finally:
            server.stop()


def _bench(
    server: ServerProcess,
    seconds: float,
    concurrency: int,
    workers: int,
    client_processes: int,
    pool_size: int | None,
) -> dict[str, Any]:
    run = secrets.token_hex(3)
    host, port = server.url.removeprefix("http://").split(":")
    account_ids = [f"bench-{run}-a{i}" for i in range(concurrency * ACCOUNTS_PER_CLIENT)]
    for index, account_id in enumerate(account_ids):
        _admin(
            server,
            "/v1/admin/accounts",
            {
                "account_id": account_id,
                "display_name": f"Bench diner {index}",
                "balance_fen": OPENING_BALANCE_FEN,
            },
        )
        _admin(server, f"/v1/admin/accounts/{account_id}/cards", {"card_id": f"{account_id}-c"})
    terminals = [
        _admin(server, "/v1/admin/terminals", {"terminal_id": f"bench-{run}-t{i}"})
        for i in range(concurrency)
    ]
    start_at = time.time() + 0.5
    measure_from = start_at + WARM_UP_S
    stop_at = measure_from + seconds
    plans = [
        _ClientPlan(
            host=host,
            port=int(port),
            terminal_id=terminal["terminal_id"],
            secret=terminal["secret"],
            account_ids=tuple(account_ids[i::concurrency]),
            start_at=start_at,
            measure_from=measure_from,
            stop_at=stop_at,
            seed=i,
        )
        for i, terminal in enumerate(terminals)
    ]
    processes = min(client_processes, concurrency)
    groups = [plans[i::processes] for i in range(processes)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        results = [item for group in pool.map(_run_client_group, groups) for item in group]

    latencies = sorted(s for result in results for s in result.latencies_s)
    statuses: dict[str, int] = {}
    charged: dict[str, int] = {}
    for result in results:
        for status, count in result.statuses.items():
            statuses[str(status)] = statuses.get(str(status), 0) + count
        for account_id, amount in result.charged.items():
            charged[account_id] = charged.get(account_id, 0) + amount
    consistent = _balances_match(server, terminals[0], account_ids, charged)
    return {
        "tx_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": _percentile_ms(latencies, 0.50),
        "p95_ms": _percentile_ms(latencies, 0.95),
        "p99_ms": _percentile_ms(latencies, 0.99),
        "transactions": len(latencies),
        "errors": sum(result.errors for result in results),
        "statuses": statuses,
        "balances_consistent": consistent,
        "database": server.health.get("database"),
        "seconds": seconds,
        "concurrency": concurrency,
        "server_workers": workers,
        "client_processes": processes,
        "pool_size": pool_size,
        "machine": machine(),
    }


def _balances_match(
    server: ServerProcess,
    terminal: dict[str, Any],
    account_ids: list[str],
    charged: dict[str, int],
) -> bool:
    """Whether every account lost exactly what the accepted transactions took."""
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        for account_id in account_ids:
            path = f"/v1/accounts/{account_id}"
            headers = sign_headers(terminal["terminal_id"], terminal["secret"], "GET", path, b"")
            status, raw = _request(connection, "GET", path, None, headers)
            if status != 200:
                raise BenchError(f"reading {account_id} answered {status}")
            balance = int(json.loads(raw)["balance_fen"])
            if OPENING_BALANCE_FEN - balance != charged.get(account_id, 0):
                logger.error(
                    "account %s: balance %d, expected %d",
                    account_id,
                    balance,
                    OPENING_BALANCE_FEN - charged.get(account_id, 0),
                )
                return False
    finally:
        connection.close()
    return True


def bench_payment(*, db_url: str | None = None, taps: int = 200) -> dict[str, Any]:
    """Card tap to "paid" as a terminal sees it, with the backend up.

    One terminal's real payment path: the outbox (SQLite, ``synchronous=FULL``) in front of the
    signed HTTP client, against ``trayscan backend serve`` on loopback. Each tap is timed from
    the card id to the session being told "paid": the card lookup, the durable outbox record,
    the post and the outbox update. The budget is 0.3 s.

    Raises:
        BenchError: the server did not start or the set-up was refused.
    """
    from terminal.backend.http import HttpBackend
    from terminal.backend.outbox import Outbox
    from terminal.backend.payments import OutboxBackend
    from terminal.core.menu import Menu, MenuItem, Nutrition, PricingMode, Tableware, TablewareKind
    from terminal.core.session import CheckoutSession, CheckoutState
    from terminal.payment import take_card_payment
    from vision.types import Candidate, DishRecognition, DishStatus, TrayRecognition

    if taps < 1:
        raise BenchError("--taps must be > 0")
    menu = Menu(
        items=(
            MenuItem(
                "rice", "米饭", "Rice", PricingMode.PER_PORTION, 150, 200,
                Nutrition(130.0, 2.7, 0.3, 28.0),
            ),
        ),
        tableware=(Tableware("tray", TablewareKind.TRAY, "餐盘", "tray", 400),),
    )  # fmt: skip
    box = (0.0, 0.0, 10.0, 10.0)
    rice = TrayRecognition(
        dishes=(DishRecognition(box, DishStatus.SURE, "rice", 0.9, (Candidate("rice", 0.9),)),),
        model_version="bench",
    )
    with tempfile.TemporaryDirectory(prefix="trayscan-bench-") as scratch:
        url = db_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        token = secrets.token_hex(16)
        try:
            server = start_server(url, token, Path(scratch) / "server.log")
        except ServerStartError as exc:
            raise BenchError(str(exc)) from None
        try:
            run = uuid.uuid4().hex[:8]
            terminal_id, account_id, card_id = f"bench-{run}-t", f"bench-{run}-a", f"B{run}"
            secret = _admin(server, "/v1/admin/terminals", {"terminal_id": terminal_id})["secret"]
            _admin(
                server,
                "/v1/admin/accounts",
                {"account_id": account_id, "display_name": "bench", "balance_fen": 10**9},
            )
            _admin(server, f"/v1/admin/accounts/{account_id}/cards", {"card_id": card_id})
            online = HttpBackend(server.url, terminal_id, secret)
            backend = OutboxBackend(online, Outbox(Path(scratch) / "outbox.sqlite"))
            session = CheckoutSession(menu, terminal_id)
            times: list[float] = []
            for _ in range(taps + 5):
                session.tray_arrived()
                session.tray_settled(600)
                session.recognised(rice)
                started = time.perf_counter()
                outcome = take_card_payment(session, backend, card_id)
                elapsed = time.perf_counter() - started
                if outcome.receipt is None or session.state is not CheckoutState.POSTED:
                    raise BenchError(f"a bench payment was not taken: {outcome.declined}")
                times.append(elapsed)
                session.tray_removed()
            backend.close()
        finally:
            server.stop()
    measured = sorted(times[5:])  # the first few warm the connection up
    return {
        "taps": taps,
        "tap_to_paid_p50_ms": _percentile_ms(measured, 0.50),
        "tap_to_paid_p95_ms": _percentile_ms(measured, 0.95),
        "tap_to_paid_max_ms": round(measured[-1] * 1000, 2),
        "budget_ms": 300,
        "database": "postgresql" if url.startswith("postgresql") else "sqlite",
        "machine": machine(),
    }
