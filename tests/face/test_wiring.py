"""The ``face:`` section of the config: off by default, refused without a cache key, and wired
to the embedded ledger and the audit log when enabled."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from terminal.app import StartupError, build_terminal
from terminal.backend.face_cache import create_key_file
from terminal.backend.face_sync import FaceConsent
from terminal.config import load_config
from terminal.devices.face.pipeline import FacePipeline
from terminal.devices.face.types import Image
from terminal.yamlmodels import FileError
from tests.conftest import REPO

from .builders import shifted


def write_config(tmp_path: Path, face: dict[str, object]) -> Path:
    path = tmp_path / "terminal.yaml"
    document = {
        "data_dir": str(tmp_path / "var"),
        "backend": {"type": "embedded", "ledger": str(tmp_path / "var" / "ledger.sqlite")},
        "captures": {"enabled": False},
        "face": face,
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_face_is_off_by_default_and_needs_a_key(tmp_path: Path) -> None:
    assert load_config(None).config.face.enabled is False
    with pytest.raises(FileError, match="cache key"):
        load_config(write_config(tmp_path, {"enabled": True}), home=REPO)


def test_enabled_face_is_wired_to_the_ledger_and_the_audit_log(
    pipeline: FacePipeline, astronaut: Image, tmp_path: Path
) -> None:
    key = tmp_path / "face.key"
    create_key_file(key)
    config = write_config(
        tmp_path,
        {"enabled": True, "cache_key_file": str(key), "cache": str(tmp_path / "var" / "f.cache")},
    )
    terminal = build_terminal(load_config(config, home=REPO), seed_demo_accounts=True)
    try:
        face = terminal.face
        assert face is not None and terminal.desk is not None
        flow = face.new_enrolment()
        for frame in (astronaut, shifted(astronaut), shifted(astronaut, -20, 10)):
            flow.feed(frame)
        face.accounts.enrol("E1001", flow.finish(FaceConsent("王伟")), actor="demo")
        assert face.matcher.account_ids() == ["E1001"]
        assert "face_enrolled" in [e.action for e in terminal.desk.audit.entries()]
        assert (tmp_path / "var" / "f.cache").is_file()
    finally:
        terminal.close()
    # Wrong key: the terminal refuses to start rather than read the cache as empty.
    key.write_text("00" * 32)
    with pytest.raises(StartupError, match="does not decrypt"):
        build_terminal(load_config(config, home=REPO))
