"""The reference server's endpoints against docs/backend-contract.md, on SQLite and PostgreSQL.

Each test runs the app in this process over a real database (``backend`` fixture); the refusal
tests check the status and code *and* that nothing changed.
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import yaml

from terminal.backend.signing import sign_headers
from tests.conftest import DEMO_MENU

from .helpers import Backend, SignedClient, transaction_body


def error_code(answer: Any) -> str:
    body = answer.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    return str(body["error"]["code"])


def funded(backend: Backend, account_id: str = "a1", balance_fen: int = 1000) -> str:
    backend.admin.create_account(account_id, "Li Lei", balance_fen)
    return account_id


def post(terminal: SignedClient, body: dict[str, Any]) -> Any:
    return terminal.post("/v1/transactions", body)


def test_health_names_the_database(backend: Backend, db_url: str) -> None:
    answer = backend.client.get("/v1/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "database": db_url.split(":")[0].split("+")[0]}


def test_accounts_and_cards_are_looked_up(backend: Backend) -> None:
    created = backend.admin.create_account("a1", "Li Lei", 500)
    assert created == {
        "account_id": "a1",
        "display_name": "Li Lei",
        "balance_fen": 500,
        "blocked": False,
    }
    assert backend.admin.add_card("a1", "04A1B2") == {"card_id": "04A1B2", "account_id": "a1"}
    assert backend.admin.top_up("a1", 250)["balance_fen"] == 750

    by_card = backend.terminal.get("/v1/cards/04A1B2/account")
    assert by_card.status_code == 200
    assert by_card.json() == {
        "account_id": "a1",
        "display_name": "Li Lei",
        "balance_fen": 750,
        "blocked": False,
    }
    assert backend.terminal.get("/v1/accounts/a1").json() == by_card.json()
    cards = backend.terminal.get("/v1/cards").json()
    assert cards["cards"] == [{"card_id": "04A1B2", **by_card.json()}]
    assert abs(cards["synced_at"] - time.time()) < 60

    assert backend.admin.block("a1")["blocked"] is True
    assert backend.terminal.get("/v1/accounts/a1").json()["blocked"] is True


def test_unknown_card_account_and_transaction_are_404(backend: Backend) -> None:
    for path, code in [
        ("/v1/cards/FFFF/account", "unknown_card"),
        ("/v1/accounts/nobody", "unknown_account"),
        ("/v1/transactions/nothing", "unknown_transaction"),
    ]:
        answer = backend.terminal.get(path)
        assert answer.status_code == 404, path
        assert error_code(answer) == code


def test_duplicate_account_is_a_conflict(backend: Backend) -> None:
    funded(backend, "a1", 100)
    answer = backend.admin.request(
        "POST",
        "/v1/admin/accounts",
        json={"account_id": "a1", "display_name": "Other", "balance_fen": 99999},
    )
    assert answer.status_code == 409
    assert error_code(answer) == "conflict"
    assert backend.terminal.balance("a1") == 100


def test_a_card_transaction_debits_once_and_a_repeat_gets_the_first_answer(
    backend: Backend,
) -> None:
    funded(backend, "a1", 1000)
    body = transaction_body("tx-1", "t1", "a1", 300)
    first = post(backend.terminal, body)
    assert first.status_code == 201
    assert first.json() == {
        "transaction_id": "tx-1",
        "account_id": "a1",
        "method": "card",
        "amount_fen": 300,
        "balance_after_fen": 700,
        "offline": False,
        "created": True,
    }
    again = post(backend.terminal, body)
    assert again.status_code == 200
    assert again.json() == {**first.json(), "created": False}
    assert backend.terminal.balance("a1") == 700

    record = backend.terminal.get("/v1/transactions/tx-1").json()
    assert record == {
        **first.json(),
        "created": False,
        "checkout_id": "co-tx-1",
        "terminal_id": "t1",
        "status": "charged",
        "refunded_fen": 0,
        "created_at": pytest.approx(body["created_at"]),
        "lines": body["lines"],
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount_fen": 301}, "amount_fen"),
        ({"method": "face"}, "method"),
        ({"account_id": "a2"}, "account_id"),
    ],
)
def test_reusing_an_id_with_another_body_is_a_conflict(
    backend: Backend, change: dict[str, Any], field: str
) -> None:
    funded(backend, "a1", 1000)
    funded(backend, "a2", 1000)
    assert post(backend.terminal, transaction_body("tx-1", "t1", "a1", 300)).status_code == 201
    answer = post(backend.terminal, {**transaction_body("tx-1", "t1", "a1", 300), **change})
    assert answer.status_code == 409
    assert error_code(answer) == "conflict"
    assert field in answer.json()["error"]["message"]
    assert backend.terminal.balance("a1") == 700
    assert backend.terminal.balance("a2") == 1000


def test_no_overdraft_blocked_and_unknown_accounts_change_nothing(backend: Backend) -> None:
    funded(backend, "a1", 299)
    funded(backend, "b1", 5000)
    backend.admin.block("b1")
    cases = [
        (transaction_body("tx-1", "t1", "a1", 300), 402, "insufficient_balance"),
        (transaction_body("tx-2", "t1", "b1", 300), 403, "blocked"),
        (transaction_body("tx-3", "t1", "nobody", 300), 404, "unknown_account"),
    ]
    for body, status, code in cases:
        answer = post(backend.terminal, body)
        assert answer.status_code == status, answer.text
        assert error_code(answer) == code
        assert backend.terminal.get(f"/v1/transactions/{body['transaction_id']}").status_code == 404
    assert backend.terminal.balance("a1") == 299
    assert backend.terminal.balance("b1") == 5000
    exact = post(backend.terminal, transaction_body("tx-4", "t1", "a1", 299))
    assert exact.status_code == 201
    assert exact.json()["balance_after_fen"] == 0


def test_a_declined_transaction_can_be_posted_again_after_a_top_up(backend: Backend) -> None:
    funded(backend, "a1", 100)
    body = transaction_body("tx-1", "t1", "a1", 300)
    assert post(backend.terminal, body).status_code == 402
    backend.admin.top_up("a1", 500)
    answer = post(backend.terminal, body)
    assert answer.status_code == 201
    assert answer.json()["balance_after_fen"] == 300


def test_cash_and_offline_transactions(backend: Backend) -> None:
    funded(backend, "a1", 1000)
    cash = post(backend.terminal, transaction_body("tx-c", "t1", None, 800, method="cash"))
    assert cash.status_code == 201
    assert cash.json()["balance_after_fen"] is None
    assert cash.json()["account_id"] is None
    offline = post(backend.terminal, transaction_body("tx-o", "t1", "a1", 400, offline=True))
    assert offline.status_code == 201
    assert offline.json()["offline"] is True
    refused = post(backend.terminal, transaction_body("tx-o2", "t1", "a1", 700, offline=True))
    assert refused.status_code == 402
    assert backend.terminal.balance("a1") == 600


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount_fen": -5}, "amount_fen"),
        ({"amount_fen": "300"}, "amount_fen"),
        ({"amount_fen": 300.0}, "amount_fen"),
        ({"method": "bitcoin"}, "method"),
        ({"account_id": None}, "account_id"),
        ({"transaction_id": "bad id with spaces"}, "transaction_id"),
        (
            {"lines": [{"item_id": "rice", "grams": -1, "price_fen": 1, "pricing": "per_100g"}]},
            "lines[0].grams",
        ),
        (
            {"lines": [{"item_id": "rice", "grams": 1, "price_fen": 1, "pricing": "free"}]},
            "lines[0].pricing",
        ),
        ({"offline": "yes"}, "offline"),
    ],
)
def test_invalid_transactions_are_422_naming_the_field(
    backend: Backend, change: dict[str, Any], field: str
) -> None:
    funded(backend, "a1", 1000)
    answer = post(backend.terminal, {**transaction_body("tx-1", "t1", "a1", 300), **change})
    assert answer.status_code == 422, answer.text
    assert error_code(answer) == "invalid_request"
    assert field in answer.json()["error"]["message"]
    assert backend.terminal.balance("a1") == 1000


def test_a_missing_field_and_a_cash_account_are_422(backend: Backend) -> None:
    funded(backend, "a1", 1000)
    body = transaction_body("tx-1", "t1", "a1", 300)
    del body["amount_fen"]
    answer = post(backend.terminal, body)
    assert answer.status_code == 422
    assert "amount_fen" in answer.json()["error"]["message"]
    cash = post(backend.terminal, transaction_body("tx-2", "t1", "a1", 300, method="cash"))
    assert cash.status_code == 422
    assert "account_id" in cash.json()["error"]["message"]
    assert backend.terminal.balance("a1") == 1000


def test_malformed_json_is_400(backend: Backend) -> None:
    funded(backend, "a1", 1000)
    answer = backend.terminal.request("POST", "/v1/transactions", raw=b'{"transaction_id": "x1",')
    assert answer.status_code == 400
    assert error_code(answer) == "malformed_json"
    assert backend.terminal.balance("a1") == 1000


def test_a_body_naming_another_terminal_is_403(backend: Backend) -> None:
    funded(backend, "a1", 1000)
    backend.admin.add_terminal("t2")
    answer = post(backend.terminal, transaction_body("tx-1", "t2", "a1", 300))
    assert answer.status_code == 403
    assert error_code(answer) == "terminal_mismatch"
    heartbeat = backend.terminal.post(
        "/v1/terminals/heartbeat", {"terminal_id": "t2", "outbox_depth": 0, "status": {}}
    )
    assert heartbeat.status_code == 403
    assert backend.terminal.balance("a1") == 1000


def test_signature_refusals_are_401_and_change_nothing(backend: Backend) -> None:
    funded(backend, "a1", 1000)
    terminal = backend.terminal
    other = backend.admin.add_terminal("t2")
    body = transaction_body("tx-1", "t1", "a1", 300)
    path = "/v1/transactions"

    unsigned = backend.client.post(path, json=body)
    assert unsigned.status_code == 401
    assert error_code(unsigned) == "missing_signature"

    wrong_secret = terminal.post(path, body, secret=other.secret)
    assert wrong_secret.status_code == 401
    assert error_code(wrong_secret) == "unauthorized"

    stranger = SignedClient(backend.client, "", "t9", "0" * 64)
    unknown = stranger.post(path, {**body, "terminal_id": "t9"})
    assert unknown.status_code == 401
    assert error_code(unknown) == "unauthorized"

    stale = terminal.post(path, body, now=time.time() - 301)
    assert stale.status_code == 401
    assert error_code(stale) == "stale_timestamp"

    bad_nonce = terminal.post(path, body, nonce="short")
    assert bad_nonce.status_code == 401
    assert error_code(bad_nonce) == "bad_nonce"

    # A signature made for one body does not carry another amount.
    signed = sign_headers("t1", terminal.secret, "POST", path, json.dumps(body).encode())
    tampered = backend.client.post(
        path,
        content=json.dumps({**body, "amount_fen": 1}).encode(),
        headers={**signed, "Content-Type": "application/json"},
    )
    assert tampered.status_code == 401
    assert error_code(tampered) == "unauthorized"

    assert terminal.get("/v1/transactions/tx-1").status_code == 404
    assert terminal.balance("a1") == 1000


def test_a_replayed_nonce_is_refused(backend: Backend) -> None:
    funded(backend, "a1", 1000)
    nonce = "n" * 32
    first = post_with_nonce(backend.terminal, transaction_body("tx-1", "t1", "a1", 300), nonce)
    assert first.status_code == 201
    replay = post_with_nonce(backend.terminal, transaction_body("tx-2", "t1", "a1", 300), nonce)
    assert replay.status_code == 401
    assert error_code(replay) == "replayed"
    assert backend.terminal.balance("a1") == 700
    assert backend.terminal.get("/v1/transactions/tx-2").status_code == 404
    # The same nonce from another terminal is that terminal's own.
    other = backend.admin.add_terminal("t2")
    assert (
        post_with_nonce(other, transaction_body("tx-3", "t2", "a1", 100), nonce).status_code == 201
    )


def test_a_refused_request_cannot_be_replayed_after_a_top_up(backend: Backend) -> None:
    funded(backend, "a1", 100)
    nonce = "declined" * 4
    body = transaction_body("tx-1", "t1", "a1", 300)
    assert post_with_nonce(backend.terminal, body, nonce).status_code == 402
    backend.admin.top_up("a1", 1000)
    replay = post_with_nonce(backend.terminal, body, nonce)
    assert replay.status_code == 401
    assert error_code(replay) == "replayed"
    assert backend.terminal.balance("a1") == 1100


def post_with_nonce(terminal: SignedClient, body: dict[str, Any], nonce: str) -> Any:
    return terminal.post("/v1/transactions", body, nonce=nonce)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/admin/accounts", {"account_id": "x", "display_name": "X", "balance_fen": 9}),
        ("POST", "/v1/admin/accounts/a1/cards", {"card_id": "C9"}),
        ("POST", "/v1/admin/accounts/a1/top-ups", {"amount_fen": 1000000}),
        ("POST", "/v1/admin/accounts/a1/block", {"blocked": True}),
        ("POST", "/v1/admin/terminals", {"terminal_id": "evil"}),
        ("PUT", "/v1/admin/menu", {}),
        ("GET", "/v1/admin/reports/daily", None),
    ],
)
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_admin_needs_the_admin_token(
    backend: Backend, method: str, path: str, body: Any, token: str | None
) -> None:
    funded(backend, "a1", 1000)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = backend.client.request(method, path, json=body, headers=headers)
    assert answer.status_code == 401
    assert error_code(answer) == "unauthorized"
    assert backend.terminal.get("/v1/accounts/a1").json() == {
        "account_id": "a1",
        "display_name": "Li Lei",
        "balance_fen": 1000,
        "blocked": False,
    }
    assert backend.terminal.get("/v1/cards").json()["cards"] == []


def test_void_gives_back_what_refunds_left_and_is_idempotent(backend: Backend) -> None:
    funded(backend, "a1", 1000)
    assert post(backend.terminal, transaction_body("tx-1", "t1", "a1", 600)).status_code == 201
    refund = refund_body("r-1", "tx-1", 100)
    assert backend.terminal.post("/v1/refunds", refund).json()["balance_after_fen"] == 500
    voided = backend.terminal.post("/v1/transactions/tx-1/void", {"reason": "wrong tray"})
    assert voided.status_code == 200
    assert voided.json() == {
        "transaction_id": "tx-1",
        "refunded_fen": 500,
        "balance_after_fen": 1000,
    }
    again = backend.terminal.post("/v1/transactions/tx-1/void", {"reason": "wrong tray"})
    assert again.json() == voided.json()
    assert backend.terminal.balance("a1") == 1000
    record = backend.terminal.get("/v1/transactions/tx-1").json()
    assert record["status"] == "voided"
    assert record["refunded_fen"] == 600
    late = post(backend.terminal, transaction_body("tx-1", "t1", "a1", 600))
    assert late.status_code == 409
    assert error_code(late) == "voided"
    assert backend.terminal.balance("a1") == 1000


def test_void_before_post_leaves_a_tombstone_and_the_late_post_charges_nothing(
    backend: Backend,
) -> None:
    funded(backend, "a1", 1000)
    voided = backend.terminal.post("/v1/transactions/tx-9/void", {"reason": "cancelled"})
    assert voided.status_code == 200
    assert voided.json() == {"transaction_id": "tx-9", "refunded_fen": 0, "balance_after_fen": None}
    record = backend.terminal.get("/v1/transactions/tx-9").json()
    assert record["status"] == "voided"
    assert record["amount_fen"] == 0
    late = post(backend.terminal, transaction_body("tx-9", "t1", "a1", 300))
    assert late.status_code == 409
    assert error_code(late) == "voided"
    assert backend.terminal.balance("a1") == 1000


def refund_body(refund_id: str, transaction_id: str, amount_fen: int) -> dict[str, Any]:
    return {
        "refund_id": refund_id,
        "transaction_id": transaction_id,
        "amount_fen": amount_fen,
        "reason": "cold soup",
        "cashier_id": "cashier-7",
    }


def test_refunds_are_idempotent_and_never_exceed_the_transaction(backend: Backend) -> None:
    funded(backend, "a1", 1000)
    assert post(backend.terminal, transaction_body("tx-1", "t1", "a1", 500)).status_code == 201
    first = backend.terminal.post("/v1/refunds", refund_body("r-1", "tx-1", 200))
    assert first.status_code == 201
    assert first.json() == {
        "refund_id": "r-1",
        "transaction_id": "tx-1",
        "amount_fen": 200,
        "balance_after_fen": 700,
    }
    again = backend.terminal.post("/v1/refunds", refund_body("r-1", "tx-1", 200))
    assert again.status_code == 200
    assert again.json() == first.json()
    assert backend.terminal.balance("a1") == 700

    too_much = backend.terminal.post("/v1/refunds", refund_body("r-2", "tx-1", 301))
    assert too_much.status_code == 409
    assert error_code(too_much) == "refund_exceeds"
    reused = backend.terminal.post("/v1/refunds", refund_body("r-1", "tx-1", 250))
    assert reused.status_code == 409
    assert error_code(reused) == "conflict"
    unknown = backend.terminal.post("/v1/refunds", refund_body("r-3", "tx-404", 1))
    assert unknown.status_code == 404
    assert error_code(unknown) == "unknown_transaction"
    zero = backend.terminal.post("/v1/refunds", refund_body("r-4", "tx-1", 0))
    assert zero.status_code == 422
    assert "amount_fen" in zero.json()["error"]["message"]
    assert backend.terminal.balance("a1") == 700
    assert backend.terminal.get("/v1/transactions/tx-1").json()["refunded_fen"] == 200

    rest = backend.terminal.post("/v1/refunds", refund_body("r-5", "tx-1", 300))
    assert rest.status_code == 201
    assert backend.terminal.balance("a1") == 1000
    backend.terminal.post("/v1/transactions/tx-9/void", {"reason": "x"})
    on_voided = backend.terminal.post("/v1/refunds", refund_body("r-6", "tx-9", 1))
    assert on_voided.status_code == 409
    assert error_code(on_voided) == "voided"


def demo_menu() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(DEMO_MENU.read_text(encoding="utf-8"))
    return document


def test_menu_is_set_and_served(backend: Backend) -> None:
    missing = backend.terminal.get("/v1/menu/today")
    assert missing.status_code == 404
    assert error_code(missing) == "no_menu"
    document = demo_menu()
    first = backend.admin.set_menu(document)
    assert first["dishes"] == len(document["items"])
    today = backend.terminal.get("/v1/menu/today").json()
    assert today["date"] == date.today().isoformat()
    assert today["version"] == first["version"]
    assert [item["id"] for item in today["menu"]["items"]] == [i["id"] for i in document["items"]]
    assert today["menu"]["items"][0]["price_fen"] == document["items"][0]["price_fen"]
    document["items"][0]["price_fen"] += 50
    second = backend.admin.set_menu(document)
    assert second["version"] != first["version"]
    served = backend.terminal.get("/v1/menu/today").json()
    assert served["version"] == second["version"]
    assert served["menu"]["items"][0]["price_fen"] == document["items"][0]["price_fen"]


def test_a_wrong_menu_is_refused_naming_the_field(backend: Backend) -> None:
    document = demo_menu()
    document["items"][1]["price_fen"] = -1
    answer = backend.admin.request("PUT", "/v1/admin/menu", json=document)
    assert answer.status_code == 422
    assert "items[1].price_fen" in answer.json()["error"]["message"]
    unknown_ware = demo_menu()
    unknown_ware["items"][0]["tableware"] = "teapot"
    answer = backend.admin.request("PUT", "/v1/admin/menu", json=unknown_ware)
    assert answer.status_code == 422, answer.text
    assert "teapot" in answer.json()["error"]["message"]
    assert backend.terminal.get("/v1/menu/today").status_code == 404


def test_daily_report_counts_dishes_sales_and_grams(backend: Backend) -> None:
    funded(backend, "a1", 10_000)
    today = datetime.now()
    yesterday = (today - timedelta(days=1)).timestamp()

    def line(item: str, grams: int, price: int) -> dict[str, Any]:
        return {"item_id": item, "grams": grams, "price_fen": price, "pricing": "per_100g"}

    posts = [
        transaction_body(
            "tx-1", "t1", "a1", 700, lines=[line("rice", 200, 150), line("pork", 130, 550)]
        ),
        transaction_body(
            "tx-2",
            "t1",
            None,
            330,
            method="cash",
            lines=[line("rice", 210, 150), line("greens", 100, 180)],
        ),
        transaction_body("tx-3", "t1", "a1", 550, lines=[line("pork", 120, 550)]),
        transaction_body(
            "tx-old", "t1", "a1", 150, lines=[line("rice", 200, 150)], created_at=yesterday
        ),
    ]
    for body in posts:
        assert post(backend.terminal, body).status_code == 201
    backend.terminal.post("/v1/transactions/tx-3/void", {"reason": "wrong tray"})
    backend.terminal.post("/v1/refunds", refund_body("r-1", "tx-1", 100))

    report = backend.admin.report(today.date().isoformat())
    assert report["date"] == today.date().isoformat()
    assert report["dishes"] == [
        {"item_id": "greens", "count": 1, "sales_fen": 180, "grams": 100},
        {"item_id": "pork", "count": 1, "sales_fen": 550, "grams": 130},
        {"item_id": "rice", "count": 2, "sales_fen": 300, "grams": 410},
    ]
    assert report["totals"] == {
        "transactions": 2,
        "sales_fen": 1030,
        "grams": 640,
        "refunded_fen": 100,
        "voided": 1,
    }
    old = backend.admin.report((today - timedelta(days=1)).date().isoformat())
    assert old["dishes"] == [{"item_id": "rice", "count": 1, "sales_fen": 150, "grams": 200}]
    bad = backend.admin.request("GET", "/v1/admin/reports/daily?date=2026-13-45")
    assert bad.status_code == 422
    assert "date" in bad.json()["error"]["message"]


def test_unknown_routes_and_methods_use_the_error_shape(backend: Backend) -> None:
    missing = backend.client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert error_code(missing) == "not_found"
    wrong_method = backend.client.delete("/v1/health")
    assert wrong_method.status_code == 405
    assert error_code(wrong_method) == "method_not_allowed"
