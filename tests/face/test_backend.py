"""Face templates on the backend: the reference server (SQLite and PostgreSQL) and the embedded
ledger store templates with the account and a consent record, delete every template on request,
and tell terminals what changed since their last sync; the terminal's cache follows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import requests

from terminal.backend.face_cache import FaceTemplateCache
from terminal.backend.face_sync import (
    FaceConsent,
    FaceEnrolmentError,
    decode_template,
    encode_template,
)
from terminal.backend.http import HttpBackend
from terminal.backend.ledger import EmbeddedLedger
from terminal.core.audit import MemoryAuditLog
from terminal.devices.face.accounts import FaceAccounts
from terminal.devices.face.matcher import FaceMatcher, MatchKind
from tests.server.conftest import backend, db_url  # noqa: F401
from tests.server.helpers import AdminClient, Backend, serving

KEY = bytes(range(32))


def templates(seed: int, count: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=128)
    base /= np.linalg.norm(base)
    rows = [base + rng.normal(scale=0.01, size=128) for _ in range(count)]
    return np.asarray(rows, dtype=np.float32)


def enrol_body(seed: int, card_id: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {
        "model": "dlib_resnet_v1",
        "templates": [encode_template(t) for t in templates(seed)],
        "consent": {"given_by": "Li Lei", "text_version": "face-consent-v1", "given_at": 1.0e9},
    }
    if card_id:
        body["card_id"] = card_id
    return body


def test_server_enrols_syncs_and_deletes(backend: Backend) -> None:  # noqa: F811
    admin, terminal = backend.admin, backend.terminal
    admin.create_account("E1", "李雷")
    admin.create_account("E2", "Han Meimei")
    answer = admin.request("POST", "/v1/admin/accounts/E1/face", json=enrol_body(1))
    assert answer.status_code == 201, answer.text
    assert answer.json()["template_count"] == 3
    first = terminal.get("/v1/face-templates?since=0").json()
    assert [a["account_id"] for a in first["accounts"]] == ["E1"]
    got = np.stack([decode_template(t) for t in first["accounts"][0]["templates"]])
    np.testing.assert_array_equal(got, templates(1))
    assert first["accounts"][0]["display_name"] == "李雷"
    cursor = first["cursor"]
    # Nothing new: nothing sent.
    assert terminal.get(f"/v1/face-templates?since={cursor}").json()["accounts"] == []
    # A terminal enrols only with a card of the account.
    admin.add_card("E2", "CARD2")
    refused = terminal.post("/v1/accounts/E2/face", enrol_body(2, card_id="NOPE"))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "card_mismatch"
    missing = terminal.post("/v1/accounts/E2/face", enrol_body(2))
    assert missing.status_code == 422
    assert terminal.post("/v1/accounts/E2/face", enrol_body(2, card_id="CARD2")).status_code == 201
    deleted = admin.request("DELETE", "/v1/admin/accounts/E1/face?reason=asked")
    assert deleted.status_code == 200 and deleted.json()["deleted_templates"] == 3
    later = terminal.get(f"/v1/face-templates?since={cursor}").json()
    assert [a["account_id"] for a in later["accounts"]] == ["E2"]
    assert later["deleted"] == ["E1"]
    assert admin.request("DELETE", "/v1/admin/accounts/NOBODY/face").status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: b.update(templates=["not base64!"]), "templates"),
        (lambda b: b.update(templates=[]), "templates"),
        (lambda b: b.pop("consent"), "consent"),
        (lambda b: b["consent"].update(given_by=""), "consent.given_by"),  # type: ignore[index]
        (lambda b: b.update(photo="...", model="bad model!"), "model"),
    ],
)
def test_server_refuses_a_bad_enrolment(backend: Backend, change: object, field: str) -> None:  # noqa: F811
    backend.admin.create_account("E1", "Li")
    body = enrol_body(1)
    change(body)  # type: ignore[operator]
    answer = backend.admin.request("POST", "/v1/admin/accounts/E1/face", json=body)
    assert answer.status_code == 422
    assert field in answer.json()["error"]["message"]
    sync = backend.terminal.get("/v1/face-templates?since=0").json()
    assert sync["accounts"] == [] and sync["cursor"] == 0


def test_terminal_enrols_syncs_matches_and_deletes_through_the_real_server(
    db_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    with serving(db_url, tmp_path) as server:
        admin = AdminClient(requests.Session(), server.url)
        signed = admin.add_terminal("t1")
        admin.create_account("E1", "Wang Wei", balance_fen=1000)
        admin.add_card("E1", "C1")
        client = HttpBackend(server.url, "t1", signed.secret, retries=0)
        cache = FaceTemplateCache(tmp_path / "faces.cache", KEY)
        audit = MemoryAuditLog("t1")
        matcher = FaceMatcher()
        faces = FaceAccounts(client, matcher, model="dlib_resnet_v1", cache=cache, audit=audit)
        enrolment = _enrolment(templates(5))
        with pytest.raises(FaceEnrolmentError, match="card"):
            faces.enrol("E1", enrolment, actor="kiosk", card_id="OTHER")
        receipt = faces.enrol("E1", enrolment, actor="kiosk", card_id="C1")
        assert receipt.template_count == 3
        assert matcher.search(templates(5)[0]).kind is MatchKind.MATCH
        assert [r.account_id for r in cache.accounts()] == ["E1"]
        # Deleted by the admin elsewhere: the next sync purges the cache and the matcher.
        admin.request("DELETE", "/v1/admin/accounts/E1/face")
        report = faces.sync()
        assert report.purged == ["E1"]
        assert matcher.search(templates(5)[0]).kind is MatchKind.EMPTY
        assert len(FaceTemplateCache(tmp_path / "faces.cache", KEY)) == 0
        assert [e.action for e in audit.entries()] == ["face_enrolled"]
        client.close()


def _enrolment(matrix: np.ndarray) -> object:
    from terminal.devices.face.enrolment import FaceEnrolment

    return FaceEnrolment(matrix, "dlib_resnet_v1", FaceConsent("Wang Wei"))


def test_embedded_ledger_keeps_templates_with_the_account(tmp_path: Path) -> None:
    ledger = EmbeddedLedger(tmp_path / "ledger.sqlite")
    ledger.create_account("E1", "王伟")
    ledger.add_card("C1", "E1")
    with pytest.raises(FaceEnrolmentError, match="consent"):
        ledger.enrol_face("E1", templates(1), "dlib_resnet_v1", FaceConsent(" "))
    with pytest.raises(FaceEnrolmentError, match="no account"):
        ledger.enrol_face("E9", templates(1), "dlib_resnet_v1", FaceConsent("x"))
    with pytest.raises(FaceEnrolmentError, match="card"):
        ledger.enrol_face("E1", templates(1), "m", FaceConsent("x"), card_id="C9")
    receipt = ledger.enrol_face("E1", templates(1), "dlib_resnet_v1", FaceConsent("王伟"))
    changes = ledger.face_templates_since(0)
    assert [r.account_id for r in changes.accounts] == ["E1"]
    np.testing.assert_array_equal(changes.accounts[0].templates, templates(1))
    assert changes.cursor == receipt.cursor
    assert ledger.delete_face("E1", reason="asked") == 3
    after = ledger.face_templates_since(receipt.cursor)
    assert after.accounts == [] and after.deleted == ["E1"]
    # The consent and the deletion stay on record, without any template.
    ledger.close()
    import sqlite3

    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    events = db.execute(
        "SELECT event, template_count, consent_given_by, consent_text_version FROM face_events"
    ).fetchall()
    assert events == [("enrolled", 3, "王伟", "face-consent-v1"), ("deleted", 3, None, None)]
    assert db.execute("SELECT COUNT(*) FROM face_templates").fetchone()[0] == 0
