"""Model bundles through the server: publish, heartbeat answer, download with its SHA-256."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from server.bundles import pack_bundle
from tests.vision.bundle_builders import make_bundle
from vision.bundle import verify_bundle

from .helpers import Backend


@pytest.fixture(scope="module")
def bundle_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    folder = make_bundle(tmp_path_factory.mktemp("bundle") / "b", version="2026.11.26-7")
    return pack_bundle(folder)


def publish(backend: Backend, archive: bytes) -> Any:
    return backend.admin.request(
        "POST", "/v1/admin/bundles", content=archive, headers={"Content-Type": "application/gzip"}
    )


def test_packing_is_reproducible(tmp_path: Path, bundle_archive: tuple[str, bytes]) -> None:
    folder = make_bundle(tmp_path / "b", version="2026.11.26-7")
    assert pack_bundle(folder) == pack_bundle(folder)


def test_a_published_bundle_round_trips_with_its_sha256(
    backend: Backend, bundle_archive: tuple[str, bytes], tmp_path: Path
) -> None:
    version, archive = bundle_archive
    assert backend.terminal.get("/v1/bundles/latest").status_code == 404
    beat = backend.terminal.post(
        "/v1/terminals/heartbeat",
        {"terminal_id": "t1", "bundle_version": None, "outbox_depth": 3, "status": {"ok": True}},
    )
    assert beat.status_code == 200
    assert beat.json()["bundle"] is None

    published = publish(backend, archive)
    assert published.status_code == 201, published.text
    info = {"version": version, "sha256": hashlib.sha256(archive).hexdigest(), "size": len(archive)}
    assert published.json() == info
    assert publish(backend, archive).status_code == 200

    assert backend.terminal.get("/v1/bundles/latest").json() == info
    beat = backend.terminal.post(
        "/v1/terminals/heartbeat",
        {"terminal_id": "t1", "bundle_version": "old", "outbox_depth": 0, "status": {}},
    )
    assert beat.json()["bundle"] == info

    download = backend.terminal.get(f"/v1/bundles/{version}/archive")
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/gzip"
    assert hashlib.sha256(download.content).hexdigest() == info["sha256"]
    assert download.headers["x-trayscan-sha256"] == info["sha256"]
    with tarfile.open(fileobj=io.BytesIO(download.content), mode="r:gz") as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert verify_bundle(tmp_path / "unpacked").version == version


def test_broken_archives_are_refused(
    backend: Backend, bundle_archive: tuple[str, bytes], tmp_path: Path
) -> None:
    garbage = publish(backend, b"not a tarball")
    assert garbage.status_code == 422
    assert garbage.json()["error"]["code"] == "invalid_request"
    # A bundle whose file changed after its manifest was written does not verify.
    folder = make_bundle(tmp_path / "b", version="2026.11.26-8")
    (folder / "MODEL_CARD.md").write_text("changed\n", encoding="utf-8")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
    corrupt = publish(backend, buffer.getvalue())
    assert corrupt.status_code == 422
    assert "corrupt" in corrupt.json()["error"]["message"]
    assert backend.terminal.get("/v1/bundles/latest").status_code == 404
    assert backend.terminal.get("/v1/bundles/2026.11.26-8/archive").status_code == 404
