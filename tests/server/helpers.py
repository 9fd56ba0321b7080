"""Reusable helpers for tests that talk to the reference backend server.

Any test may import these (``from tests.server.helpers import ...``):

``ADMIN_TOKEN``
    The admin bearer token every helper-started server uses.

``serving(db_url: str, log_dir: Path, *, workers: int = 1) -> Iterator[ServerProcess]``
    Context manager: ``trayscan backend serve`` as a real subprocess on a free loopback port,
    returned once ``GET /v1/health`` answers, stopped on exit. ``ServerProcess`` (from
    ``server.process``) has ``.url`` (``http://127.0.0.1:PORT``), ``.db_url``, ``.admin_token``,
    ``.log_tail()``. The ``running_server`` fixture of ``tests/server/conftest.py`` wraps it.

``pg_schema_url(base_url: str) -> Iterator[str]``
    Context manager: a new, empty PostgreSQL schema on ``base_url`` (dropped on exit) and a URL
    whose connections use it, so each test starts from no tables.

``AdminClient(http, base_url: str = "", token: str = ADMIN_TOKEN)``
    The admin API. ``http`` is a ``requests.Session`` (real server, with ``base_url``) or a
    FastAPI ``TestClient`` (``base_url=""``). Methods return the decoded JSON and raise
    ``AssertionError`` on a refusal: ``create_account(account_id, name="Diner", balance_fen=0)``,
    ``add_card(account_id, card_id)``, ``top_up(account_id, amount_fen)``,
    ``block(account_id, blocked=True)``, ``add_terminal(terminal_id) -> SignedClient``,
    ``set_menu(document)``, ``report(day: str)``; ``request(method, path, **kwargs)`` for
    anything else (returns the response).

``SignedClient(http, base_url, terminal_id, secret)``
    A terminal: ``request(method, path, body=None, *, raw=None, nonce=None, now=None,
    secret=None, headers=None)`` signs with ``terminal.backend.signing.sign_headers`` and returns
    the response; ``get(path)``, ``post(path, body)``; ``balance(account_id) -> int``.

``transaction_body(transaction_id, terminal_id, account_id, amount_fen, *, method="card",
lines=None, created_at=None, offline=False) -> dict``
    A ``POST /v1/transactions`` body (the shape of ``terminal.backend.wire.transaction_body``).

``open_backend(db_url: str, terminal_id: str = "t1") -> Iterator[Backend]``
    Context manager: the app in this process (``TestClient``) on ``db_url``, with ``.admin``,
    ``.terminal`` (a registered ``SignedClient``) and ``.client``.

Example, from any test file::

    from tests.server.helpers import serving, AdminClient, transaction_body

    def test_my_client(tmp_path):
        with serving("sqlite:///" + str(tmp_path / "b.db"), tmp_path) as server:
            admin = AdminClient(requests.Session(), server.url)
            terminal = admin.add_terminal("t1")
            admin.create_account("a1", balance_fen=1000)
            answer = terminal.post("/v1/transactions", transaction_body("x1", "t1", "a1", 300))
            assert answer.status_code == 201
"""

from __future__ import annotations

import json
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from server.process import ServerProcess, start_server
from terminal.backend.signing import sign_headers

ADMIN_TOKEN = "test-admin-token"


@contextmanager
def serving(db_url: str, log_dir: Path, *, workers: int = 1) -> Iterator[ServerProcess]:
    """``trayscan backend serve`` on a free loopback port until the block ends."""
    server = start_server(
        db_url, ADMIN_TOKEN, log_dir / f"server-{uuid.uuid4().hex[:6]}.log", workers=workers
    )
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def pg_schema_url(base_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema on ``base_url``, and a URL whose connections use it."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    url = sa.engine.make_url(base_url).update_query_dict({"options": f"-csearch_path={name}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
        engine.dispose()


def transaction_body(
    transaction_id: str,
    terminal_id: str,
    account_id: str | None,
    amount_fen: int,
    *,
    method: str = "card",
    lines: list[dict[str, Any]] | None = None,
    created_at: float | None = None,
    offline: bool = False,
) -> dict[str, Any]:
    """A ``POST /v1/transactions`` body; one rice line for the whole amount by default."""
    return {
        "transaction_id": transaction_id,
        "checkout_id": f"co-{transaction_id}",
        "terminal_id": terminal_id,
        "account_id": account_id,
        "method": method,
        "amount_fen": amount_fen,
        "lines": lines
        if lines is not None
        else [{"item_id": "rice", "grams": 200, "price_fen": amount_fen, "pricing": "per_portion"}],
        "created_at": created_at if created_at is not None else time.time(),
        "offline": offline,
    }


def _send(http: Any, method: str, url: str, data: bytes | None, headers: dict[str, str]) -> Any:
    if isinstance(http, requests.Session):
        return http.request(method, url, data=data, headers=headers, timeout=30)
    return http.request(method, url, content=data, headers=headers)


class SignedClient:
    """A terminal that signs its requests with its own secret."""

    def __init__(self, http: Any, base_url: str, terminal_id: str, secret: str) -> None:
        self.http = http
        self.base_url = base_url
        self.terminal_id = terminal_id
        self.secret = secret

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        nonce: str | None = None,
        now: float | None = None,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send one signed request; ``raw`` sends those bytes instead of ``body`` as JSON."""
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        signed = sign_headers(
            self.terminal_id, secret or self.secret, method, path, data, now=now, nonce=nonce
        )
        if data:
            signed["Content-Type"] = "application/json"
        signed.update(headers or {})
        return _send(self.http, method, self.base_url + path, data or None, signed)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self.request("POST", path, body, **kwargs)

    def balance(self, account_id: str) -> int:
        answer = self.get(f"/v1/accounts/{account_id}")
        assert answer.status_code == 200, answer.text
        return int(answer.json()["balance_fen"])


class AdminClient:
    """The admin API with the bearer token."""

    def __init__(self, http: Any, base_url: str = "", token: str = ADMIN_TOKEN) -> None:
        self.http = http
        self.base_url = base_url
        self.token = token

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        if isinstance(self.http, requests.Session):
            kwargs.setdefault("timeout", 30)
        return self.http.request(method, self.base_url + path, headers=headers, **kwargs)

    def _ok(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.request(method, path, **kwargs)
        assert answer.status_code < 300, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json()

    def create_account(
        self, account_id: str, name: str = "Diner", balance_fen: int = 0
    ) -> dict[str, Any]:
        body = {"account_id": account_id, "display_name": name, "balance_fen": balance_fen}
        result: dict[str, Any] = self._ok("POST", "/v1/admin/accounts", json=body)
        return result

    def add_card(self, account_id: str, card_id: str) -> dict[str, Any]:
        path = f"/v1/admin/accounts/{account_id}/cards"
        result: dict[str, Any] = self._ok("POST", path, json={"card_id": card_id})
        return result

    def top_up(self, account_id: str, amount_fen: int) -> dict[str, Any]:
        path = f"/v1/admin/accounts/{account_id}/top-ups"
        result: dict[str, Any] = self._ok("POST", path, json={"amount_fen": amount_fen})
        return result

    def block(self, account_id: str, blocked: bool = True) -> dict[str, Any]:
        path = f"/v1/admin/accounts/{account_id}/block"
        result: dict[str, Any] = self._ok("POST", path, json={"blocked": blocked})
        return result

    def add_terminal(self, terminal_id: str) -> SignedClient:
        answer = self._ok("POST", "/v1/admin/terminals", json={"terminal_id": terminal_id})
        return SignedClient(self.http, self.base_url, answer["terminal_id"], answer["secret"])

    def set_menu(self, document: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._ok("PUT", "/v1/admin/menu", json=document)
        return result

    def report(self, day: str) -> dict[str, Any]:
        result: dict[str, Any] = self._ok("GET", f"/v1/admin/reports/daily?date={day}")
        return result


@dataclass
class Backend:
    """The app in this process with an admin and one registered terminal."""

    client: Any
    admin: AdminClient
    terminal: SignedClient


@contextmanager
def open_backend(db_url: str, terminal_id: str = "t1") -> Iterator[Backend]:
    """The app on ``db_url`` behind a ``TestClient``, with terminal ``terminal_id`` registered."""
    with warnings.catch_warnings():
        # Starlette asks for httpx2 instead of httpx; the client works the same for these tests.
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from server.app import create_app

    app = create_app(db_url, ADMIN_TOKEN)
    with TestClient(app) as client:
        admin = AdminClient(client)
        yield Backend(client, admin, admin.add_terminal(terminal_id))
