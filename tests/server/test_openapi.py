"""The written contract, docs/api/openapi.json, is what the server generates."""

from __future__ import annotations

import json
import subprocess
import sys

from server.openapi import OPENAPI_PATH, render_openapi
from tests.conftest import REPO


def test_the_committed_document_is_what_the_server_generates() -> None:
    assert OPENAPI_PATH.read_text(encoding="utf-8") == render_openapi(), (
        "docs/api/openapi.json is out of date: "
        "run `trayscan backend openapi --to docs/api/openapi.json`"
    )


def test_every_body_and_answer_has_a_schema() -> None:
    document = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    schemas = document["components"]["schemas"]
    assert {
        "TransactionBody",
        "TransactionResult",
        "TransactionRecordAnswer",
        "ErrorAnswer",
        "RefundBody",
        "AccountAnswer",
        "MenuFileModel",
        "DailyReport",
    } <= set(schemas)
    assert set(schemas["TransactionBody"]["required"]) >= {
        "transaction_id",
        "terminal_id",
        "account_id",
        "method",
        "amount_fen",
        "lines",
        "created_at",
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                content = answer.get("content", {})
                assert content, f"{method} {path} {status} has no content"
                for media in content.values():
                    assert media["schema"], f"{method} {path} {status} has an empty schema"
                if status.startswith(("4", "5")):
                    assert content["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorAnswer"
                    }, f"{method} {path} {status}"
            if method in ("post", "put") and "admin/bundles" not in path:
                body = operation["requestBody"]["content"]["application/json"]["schema"]
                assert body.get("$ref"), f"{method} {path} has no body schema"


def test_the_kiosk_never_imports_the_server_stack() -> None:
    code = (
        "import sys\n"
        "from terminal.cli import build_parser\n"
        "build_parser().parse_args(['kiosk', '--demo'])\n"
        "loaded = {'fastapi', 'sqlalchemy', 'uvicorn', 'starlette', 'psycopg'} & {\n"
        "    name.split('.')[0] for name in sys.modules}\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
