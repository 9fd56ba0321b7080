"""Model bundles: a terminal refuses incomplete, corrupt or mismatched bundles and rolls back."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vision.bundle import (
    BUNDLE_FORMAT,
    BundleError,
    BundleManifest,
    BundleStore,
    bump_version,
    sha256_file,
    verify_bundle,
    write_manifest,
)

DISHES = [
    {"id": "com", "name_zh": "米饭", "name_en": "Steamed rice"},
    {"id": "rau", "name_zh": "青菜", "name_en": "Greens"},
]


def manifest_fields(version: str = "2026.11.26-1") -> dict[str, Any]:
    """Every manifest key except ``files``, with the values a real bundle would have."""
    return {
        "format": BUNDLE_FORMAT,
        "version": version,
        "created": "2026-11-26T10:00:00+08:00",
        "detector": {
            "file": "detector.onnx",
            "imgsz": 384,
            "conf": 0.25,
            "iou": 0.5,
            "containment": 0.85,
            "classes": ["dish"],
        },
        "identifier": {
            "file": "identifier.onnx",
            "input_size": 224,
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "embedding_dim": 1280,
        },
        "gallery": {"file": "gallery.npz", "mode": "prototype"},
        "thresholds": {"unknown_below": 0.5, "unsure_margin": 0.04},
        "classes_file": "classes.json",
        "model_card": "MODEL_CARD.md",
    }


def make_bundle(folder: Path, version: str = "2026.11.26-1", gallery: bytes = b"g1") -> Path:
    """A small bundle: the model files are a few bytes, since verifying never loads them."""
    folder.mkdir(parents=True)
    (folder / "detector.onnx").write_bytes(b"detector-" + version.encode())
    (folder / "identifier.onnx").write_bytes(b"identifier")
    (folder / "gallery.npz").write_bytes(gallery)
    (folder / "MODEL_CARD.md").write_text(f"# Bundle {version}\n", encoding="utf-8")
    (folder / "classes.json").write_text(json.dumps({"dishes": DISHES}), encoding="utf-8")
    write_manifest(folder, manifest_fields(version))
    return folder


def edit_manifest(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = folder / "bundle.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_a_written_bundle_verifies(tmp_path: Path) -> None:
    folder = make_bundle(tmp_path / "b")

    bundle = verify_bundle(folder)

    assert bundle.version == "2026.11.26-1"
    assert bundle.dish_ids == ["com", "rau"]
    assert bundle.manifest.detector.imgsz == 384
    assert bundle.manifest.identifier.mean == (0.485, 0.456, 0.406)
    assert set(bundle.manifest.files) == {
        "detector.onnx",
        "identifier.onnx",
        "gallery.npz",
        "MODEL_CARD.md",
        "classes.json",
    }
    assert bundle.manifest.files["gallery.npz"] == sha256_file(folder / "gallery.npz")
    assert bundle.path_of("detector.onnx").read_bytes().startswith(b"detector")


def test_files_in_subfolders_are_hashed_too(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "refs").mkdir()
    (folder / "refs" / "com-1.jpg").write_bytes(b"jpeg")
    for name in ("detector.onnx", "identifier.onnx", "gallery.npz", "MODEL_CARD.md"):
        (folder / name).write_bytes(b"x")
    (folder / "classes.json").write_text(json.dumps({"dishes": DISHES}), encoding="utf-8")

    manifest = write_manifest(folder, manifest_fields())
    (folder / "refs" / "com-1.jpg").write_bytes(b"changed")

    assert "refs/com-1.jpg" in manifest.files
    with pytest.raises(BundleError, match=r"corrupt.*refs/com-1\.jpg"):
        verify_bundle(folder)


def test_manifest_round_trips_through_json(tmp_path: Path) -> None:
    manifest = verify_bundle(make_bundle(tmp_path / "b")).manifest
    again = BundleManifest.from_dict(json.loads(json.dumps(manifest.to_dict())))
    assert again == manifest


def test_write_manifest_refuses_a_bundle_without_its_detector(tmp_path: Path) -> None:
    folder = make_bundle(tmp_path / "b")
    (folder / "detector.onnx").unlink()
    with pytest.raises(BundleError, match=r"incomplete.*detector\.file 'detector\.onnx'"):
        write_manifest(folder, manifest_fields())


def corrupt_detector(folder: Path) -> None:
    (folder / "detector.onnx").write_bytes(b"flipped bits")


def delete_gallery(folder: Path) -> None:
    (folder / "gallery.npz").unlink()


def delete_manifest(folder: Path) -> None:
    (folder / "bundle.json").unlink()


def garble_manifest(folder: Path) -> None:
    (folder / "bundle.json").write_text('{"format": "trayscan-bundle/1",', encoding="utf-8")


def future_format(folder: Path) -> None:
    edit_manifest(folder, lambda data: data.update(format="trayscan-bundle/2"))


def drop_imgsz(folder: Path) -> None:
    edit_manifest(folder, lambda data: data["detector"].pop("imgsz"))


def text_for_number(folder: Path) -> None:
    edit_manifest(folder, lambda data: data["thresholds"].update(unknown_below="high"))


def unlist_gallery(folder: Path) -> None:
    edit_manifest(folder, lambda data: data["files"].pop("gallery.npz"))


def escape_the_folder(folder: Path) -> None:
    edit_manifest(folder, lambda data: data["gallery"].update(file="../gallery.npz"))


def duplicate_dish(folder: Path) -> None:
    dishes = [*DISHES, {"id": "com", "name_zh": "白饭", "name_en": "Rice"}]
    (folder / "classes.json").write_text(json.dumps({"dishes": dishes}), encoding="utf-8")
    write_manifest(folder, manifest_fields())  # rehashed, so only the duplicate is wrong


def remove_folder(folder: Path) -> None:
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (corrupt_detector, r"corrupt: .*detector\.onnx sha256 [0-9a-f]{64} expected [0-9a-f]{64}"),
        (delete_gallery, r"incomplete: .* is missing gallery\.npz"),
        (delete_manifest, r"incomplete: .* has no bundle\.json"),
        (garble_manifest, r"bundle\.json is not valid JSON \(line 1"),
        (future_format, r"mismatched: .*bundle\.json: format 'trayscan-bundle/2'"),
        (drop_imgsz, r"bundle\.json: key 'detector\.imgsz' is missing"),
        (text_for_number, r"key 'thresholds\.unknown_below' must be a number"),
        (unlist_gallery, r"incomplete: .*gallery\.file 'gallery\.npz' is not listed in 'files'"),
        (escape_the_folder, r"key 'gallery\.file' must be a file name inside the bundle"),
        (duplicate_dish, r"classes\.json: dishes\[2\]\.id 'com' duplicates dishes\[0\]\.id"),
        (remove_folder, r"model bundle folder .* does not exist"),
    ],
)
def test_a_faulty_bundle_is_refused_naming_the_problem(
    tmp_path: Path, fault: Callable[[Path], None], message: str
) -> None:
    folder = make_bundle(tmp_path / "bundle")
    fault(folder)
    with pytest.raises(BundleError, match=message):
        verify_bundle(folder)


def test_a_version_other_than_expected_is_mismatched(tmp_path: Path) -> None:
    folder = make_bundle(tmp_path / "b", version="2026.11.26-1")
    with pytest.raises(
        BundleError, match=r"mismatched: .*'2026\.11\.26-1', expected '2026\.12\.01-1'"
    ):
        verify_bundle(folder, expected_version="2026.12.01-1")


@pytest.mark.parametrize(
    ("version", "bumped"),
    [
        ("2026.11.26-1", "2026.11.26-2"),
        ("2026.11.26-9", "2026.11.26-10"),
        ("2026.11.26", "2026.11.26-1"),
        ("1.4", "1.4-1"),
        ("demo", "demo-1"),
    ],
)
def test_bump_version(version: str, bumped: str) -> None:
    assert bump_version(version) == bumped


# --- the terminal's store --------------------------------------------------------------------


def test_install_switches_current_and_keeps_previous(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    assert store.current() is None

    first = store.install(make_bundle(tmp_path / "v1", "2026.11.26-1"))
    assert first.version == "2026.11.26-1"
    assert store.previous() is None

    store.install(make_bundle(tmp_path / "v2", "2026.11.26-2"))
    current, previous = store.current(), store.previous()

    assert current is not None and current.version == "2026.11.26-2"
    assert previous is not None and previous.version == "2026.11.26-1"
    assert current.path == tmp_path / "store" / "versions" / "2026.11.26-2"
    assert store.versions() == ["2026.11.26-1", "2026.11.26-2"]


def test_rollback_returns_to_the_previous_bundle(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    store.install(make_bundle(tmp_path / "v1", "2026.11.26-1"))
    store.install(make_bundle(tmp_path / "v2", "2026.11.26-2"))

    rolled = store.rollback()
    current, previous = store.current(), store.previous()

    assert rolled.version == "2026.11.26-1"
    assert current is not None and current.version == "2026.11.26-1"
    assert previous is not None and previous.version == "2026.11.26-2"


def test_rollback_without_a_previous_bundle_is_refused(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    store.install(make_bundle(tmp_path / "v1", "2026.11.26-1"))
    with pytest.raises(BundleError, match="no previous bundle"):
        store.rollback()
    current = store.current()
    assert current is not None and current.version == "2026.11.26-1"


def test_a_corrupt_bundle_is_refused_and_current_stays(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    store.install(make_bundle(tmp_path / "v1", "2026.11.26-1"))
    bad = make_bundle(tmp_path / "v2", "2026.11.26-2")
    corrupt_detector(bad)

    with pytest.raises(BundleError, match=r"corrupt: .*detector\.onnx"):
        store.install(bad)

    current = store.current()
    assert current is not None and current.version == "2026.11.26-1"
    assert store.versions() == ["2026.11.26-1"]


def test_a_different_bundle_under_an_installed_version_is_refused(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    store.install(make_bundle(tmp_path / "v1", "2026.11.26-1", gallery=b"old"))
    changed = make_bundle(tmp_path / "v1-changed", "2026.11.26-1", gallery=b"new gallery")

    with pytest.raises(BundleError, match="already holds a different bundle"):
        store.install(changed)

    current = store.current()
    assert current is not None
    assert current.path_of("gallery.npz").read_bytes() == b"old"


def test_installing_the_same_bundle_again_changes_nothing(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    source = make_bundle(tmp_path / "v1", "2026.11.26-1")
    store.install(source)
    store.install(source)
    assert store.versions() == ["2026.11.26-1"]
    assert store.previous() is None


def test_a_damaged_current_bundle_is_reported(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    store.install(make_bundle(tmp_path / "v1", "2026.11.26-1"))
    (tmp_path / "store" / "versions" / "2026.11.26-1" / "gallery.npz").write_bytes(b"bad")
    with pytest.raises(BundleError, match=r"corrupt: .*gallery\.npz"):
        store.current()
