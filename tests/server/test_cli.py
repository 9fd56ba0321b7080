"""``trayscan backend`` commands: they prepare the database a real server then serves."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import requests

from server.openapi import render_openapi
from server.process import ServerProcess
from terminal.cli import main
from tests.conftest import DEMO_MENU
from tests.vision.bundle_builders import make_bundle

from .helpers import SignedClient, transaction_body


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_admin_commands_set_up_what_the_server_serves(
    running_server: ServerProcess, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = ("--db", running_server.db_url)
    assert (
        run(capsys, "backend", "create-account", "a1", "Li Lei", "--balance-fen", "1000", *db)[0]
        == 0
    )
    status, out, _ = run(capsys, "backend", "add-card", "a1", "04A1B2", *db)
    assert (status, json.loads(out)) == (0, {"card_id": "04A1B2", "account_id": "a1"})
    status, out, _ = run(capsys, "backend", "top-up", "a1", "500", *db)
    assert json.loads(out)["balance_fen"] == 1500
    status, out, _ = run(capsys, "backend", "add-terminal", "t1", *db)
    terminal_answer = json.loads(out)
    assert terminal_answer["terminal_id"] == "t1"
    assert len(terminal_answer["secret"]) == 64
    assert run(capsys, "backend", "set-menu", "--file", str(DEMO_MENU), *db)[0] == 0
    bundle = make_bundle(tmp_path / "bundle", version="2026.11.26-9")
    status, out, _ = run(capsys, "backend", "publish-bundle", str(bundle), *db)
    assert json.loads(out)["version"] == "2026.11.26-9"

    terminal = SignedClient(requests.Session(), running_server.url, "t1", terminal_answer["secret"])
    assert terminal.get("/v1/cards/04A1B2/account").json()["balance_fen"] == 1500
    lines = [{"item_id": "rice", "grams": 210, "price_fen": 300, "pricing": "per_portion"}]
    charged = terminal.post(
        "/v1/transactions", transaction_body("tx-1", "t1", "a1", 300, lines=lines)
    )
    assert charged.status_code == 201, charged.text
    assert charged.json()["balance_after_fen"] == 1200
    assert terminal.get("/v1/menu/today").json()["menu"]["items"][0]["id"] == "banh_mi"
    assert terminal.get("/v1/bundles/latest").json()["version"] == "2026.11.26-9"

    status, out, _ = run(capsys, "backend", "report", "--date", date.today().isoformat(), *db)
    report = json.loads(out)
    assert report["dishes"] == [{"item_id": "rice", "count": 1, "sales_fen": 300, "grams": 210}]
    assert report["totals"]["sales_fen"] == 300


def test_refusals_exit_1_with_the_reason(
    db_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = ("--db", db_url)
    assert run(capsys, "backend", "create-account", "a1", "Li Lei", *db)[0] == 0
    status, _, err = run(capsys, "backend", "create-account", "a1", "Other", *db)
    assert status == 1
    assert "conflict" in err
    status, _, err = run(capsys, "backend", "top-up", "nobody", "100", *db)
    assert (status, "unknown_account" in err) == (1, True)
    status, _, err = run(capsys, "backend", "publish-bundle", str(tmp_path), *db)
    assert status == 1
    assert "bundle.json" in err
    bad_menu = tmp_path / "menu.yaml"
    bad_menu.write_text("version: 1\nitems: nope\n", encoding="utf-8")
    status, _, err = run(capsys, "backend", "set-menu", "--file", str(bad_menu), *db)
    assert status == 1
    assert "items" in err


def test_serve_refuses_a_database_it_cannot_serve(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "backend", "serve", "--db", "mysql://u:p@localhost/x")
    assert status == 1
    assert "only sqlite" in err


def test_openapi_command_writes_the_generated_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "api" / "openapi.json"
    assert run(capsys, "backend", "openapi", "--to", str(target))[0] == 0
    assert target.read_text(encoding="utf-8") == render_openapi()


def test_bench_payment_takes_real_payments_and_prints_its_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "bench", "payment", "--taps", "3")
    assert code == 0
    figures = json.loads(out)
    assert figures["taps"] == 3 and figures["database"] == "sqlite"
    assert 0 < figures["tap_to_paid_p50_ms"] <= figures["tap_to_paid_max_ms"]
