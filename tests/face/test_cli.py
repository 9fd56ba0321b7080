"""``trayscan face``: enrolment refuses without consent, reports each photo, and the account's
face can be matched and deleted; every step is in the audit log."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
import yaml

from terminal.backend.audit_store import SqliteAuditLog
from terminal.backend.ledger import EmbeddedLedger
from terminal.cli import main
from terminal.devices.face.pipeline import FacePipeline
from terminal.devices.face.types import Image

from .builders import COFFEE, load, relit, shifted


def test_enroll_match_delete(
    pipeline: FacePipeline,
    astronaut: Image,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ledger_path = tmp_path / "var" / "ledger.sqlite"
    ledger = EmbeddedLedger(ledger_path)
    ledger.create_account("E1", "Eileen Collins", 1000)
    ledger.close()
    config = tmp_path / "terminal.yaml"
    config.write_text(
        yaml.safe_dump({"data_dir": str(tmp_path / "var"), "backend": {"ledger": str(ledger_path)}})
    )
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, image in {
        "1.png": astronaut,
        "2.png": shifted(astronaut),
        "3.png": relit(astronaut, 0.7),
        "4.png": load(COFFEE),
    }.items():
        cv2.imwrite(str(photos / name), image)
    base = ["face", "enroll", "--account", "E1", "--photos", str(photos), "--config", str(config)]
    assert main(base) == 2
    assert "explicit consent" in capsys.readouterr().err
    assert main([*base, "--consent-by", "Eileen Collins"]) == 0
    captured = capsys.readouterr()
    answer = json.loads(captured.out)
    assert answer["templates"] == 3
    assert "4.png: refused: no face found" in captured.err
    assert main(["face", "match", "--photo", str(photos / "2.png"), "--config", str(config)]) == 0
    matched = json.loads(capsys.readouterr().out)
    assert (matched["result"], matched["account"], matched["masked_name"]) == (
        "match",
        "E1",
        "Eileen **",
    )
    assert main(["face", "delete", "--account", "E1", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["deleted_templates"] == 3
    assert main(["face", "match", "--photo", str(photos / "2.png"), "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["result"] == "empty"
    audit = SqliteAuditLog(tmp_path / "var" / "audit.db", read_only=True)
    assert [e.action for e in audit.entries()] == ["face_enrolled", "face_deleted"]
    assert audit.verify() == []
