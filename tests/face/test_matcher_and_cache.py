"""1:N matching decides per account with a margin, names are masked, and the terminal's template
cache is encrypted at rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from terminal.backend.face_cache import (
    FaceCacheError,
    FaceCacheKeyError,
    FaceTemplateCache,
    create_key_file,
    load_key,
)
from terminal.backend.face_sync import FaceAccountRecord, FaceTemplateChanges, encode_template
from terminal.devices.face.matcher import EnrolledFace, FaceMatcher, MatchKind, mask_name


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=128)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def near(vector: np.ndarray, distance: float, seed: int = 99) -> np.ndarray:
    """A point exactly ``distance`` from ``vector``."""
    step = np.random.default_rng(seed).normal(size=128)
    step /= np.linalg.norm(step)
    return (vector + distance * step).astype(np.float32)


@pytest.fixture
def matcher() -> FaceMatcher:
    matcher = FaceMatcher(threshold=0.5, margin=0.08)
    matcher.replace_all(
        [
            EnrolledFace("E1", "Wang Wei", np.stack([unit(1), near(unit(1), 0.1)])),
            EnrolledFace("E2", "李娜", unit(2)[None]),
        ]
    )
    return matcher


def test_the_nearest_account_is_proposed(matcher: FaceMatcher) -> None:
    result = matcher.search(near(unit(1), 0.2))
    assert (result.kind, result.account_id, result.display_name) == (
        MatchKind.MATCH,
        "E1",
        "Wang Wei",
    )
    assert result.distance == pytest.approx(0.2, abs=0.11)
    assert result.runner_up_account_id == "E2"


def test_a_stranger_is_not_proposed(matcher: FaceMatcher) -> None:
    assert matcher.search(unit(3)).kind is MatchKind.NO_MATCH


def test_two_accounts_nearly_as_close_ask_for_the_card(matcher: FaceMatcher) -> None:
    # A third account almost on top of E1: the margin between *accounts* decides, not the
    # margin between E1's own two templates.
    matcher.upsert(EnrolledFace("E3", "Twin", near(unit(1), 0.05, seed=5)[None]))
    result = matcher.search(unit(1))
    assert result.kind is MatchKind.TOO_CLOSE
    assert {result.account_id, result.runner_up_account_id} == {"E1", "E3"}


def test_removing_an_account_forgets_its_templates(matcher: FaceMatcher) -> None:
    assert matcher.remove("E1")
    assert matcher.search(unit(1)).account_id != "E1"
    assert len(matcher) == 1 and not matcher.remove("E1")
    matcher.remove("E2")
    assert matcher.search(unit(1)).kind is MatchKind.EMPTY


def test_search_among_10000_templates_finds_the_right_one() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(10_000, 128)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    matcher = FaceMatcher()
    matcher.replace_all(
        EnrolledFace(f"A{i:05d}", f"Diner {i}", matrix[2 * i : 2 * i + 2]) for i in range(5000)
    )
    result = matcher.search(near(matrix[4321], 0.1))
    assert (result.kind, result.account_id) == (MatchKind.MATCH, "A02160")


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("Wang Wei", "Wang **"),
        ("Li Xiao Long", "Li **"),
        ("Madonna", "M**"),
        ("王伟", "王*"),
        ("欧阳娜娜", "欧***"),
        ("", "**"),
    ],
)
def test_names_are_masked(name: str, masked: str) -> None:
    assert mask_name(name) == masked


KEY = bytes(range(32))


def record(account_id: str, seed: int) -> FaceAccountRecord:
    return FaceAccountRecord(account_id, "王伟", "dlib_resnet_v1", np.stack([unit(seed)]))


def test_cache_is_encrypted_at_rest_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "faces.cache"
    cache = FaceTemplateCache(path, KEY)
    cache.apply(FaceTemplateChanges(7, [record("E1", 1), record("E2", 2)], []))
    blob = path.read_bytes()
    plain_template = unit(1).tobytes()
    for needle in (
        *(plain_template[i : i + 8] for i in range(0, len(plain_template), 8)),
        encode_template(unit(1))[:12].encode(),
        "王伟".encode(),
        b"dlib_resnet",
        b"account_id",
    ):
        assert needle not in blob
    assert (path.stat().st_mode & 0o777) == 0o600
    again = FaceTemplateCache(path, KEY)
    assert again.cursor == 7 and [r.account_id for r in again.accounts()] == ["E1", "E2"]
    np.testing.assert_array_equal(again.get("E1").templates, record("E1", 1).templates)  # type: ignore[union-attr]
    again.apply(FaceTemplateChanges(8, [], ["E1"]))
    assert [r.account_id for r in FaceTemplateCache(path, KEY).accounts()] == ["E2"]


def test_a_wrong_key_or_a_changed_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "faces.cache"
    FaceTemplateCache(path, KEY).apply(FaceTemplateChanges(1, [record("E1", 1)], []))
    with pytest.raises(FaceCacheKeyError, match="does not decrypt"):
        FaceTemplateCache(path, bytes(32))
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(FaceCacheKeyError):
        FaceTemplateCache(path, KEY)
    (tmp_path / "other").write_bytes(b"hello")
    with pytest.raises(FaceCacheError, match="not a trayscan face template cache"):
        FaceTemplateCache(tmp_path / "other", KEY)


def test_keys_come_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "face.key"
    create_key_file(key_file)
    assert len(load_key(key_file)) == 32 and (key_file.stat().st_mode & 0o777) == 0o600
    monkeypatch.setenv("TRAYSCAN_FACE_KEY", KEY.hex())
    assert load_key(None, "TRAYSCAN_FACE_KEY") == KEY
    (tmp_path / "short.key").write_text("abcd")
    with pytest.raises(FaceCacheError, match="32 bytes"):
        load_key(tmp_path / "short.key")
    monkeypatch.delenv("TRAYSCAN_FACE_KEY")
    with pytest.raises(FaceCacheError, match="not set"):
        load_key(None, "TRAYSCAN_FACE_KEY")
