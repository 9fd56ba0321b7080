"""Model bundle distribution end to end: data staff publish a bundle on the reference server,
a running terminal's heartbeat brings it, verifies it and swaps it in; a bad one is refused and
the terminal goes on with the bundle it had."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import requests

from terminal.backend.http import BundleOffer, HttpBackend
from terminal.backend.sync import Heartbeat
from terminal.core.ports import BackendRequestError
from tests.server.helpers import AdminClient, serving
from tests.vision.bundle_builders import make_bundle
from vision.bundle import BundleStore, pack_bundle, write_manifest
from vision.recogniser import SwappableRecogniser


def test_a_published_bundle_reaches_a_running_terminal_and_a_bad_one_does_not(
    tmp_path: Path,
) -> None:
    store = BundleStore(tmp_path / "terminal" / "models")
    store.install(make_bundle(tmp_path / "v1", version="2026.11.26-1"))
    recogniser = SwappableRecogniser(store, threads=1)
    with serving(f"sqlite:///{tmp_path / 'backend.db'}", tmp_path) as server:
        admin = AdminClient(requests.Session(), server.url)
        signed = admin.add_terminal("t1")
        online = HttpBackend(server.url, "t1", signed.secret, retries=0)
        heartbeat = Heartbeat(
            online, recogniser, tmp_path / "downloads", status=lambda: {"outbox_depth": 0}
        )
        assert heartbeat() is None  # nothing published yet: nothing changes
        assert recogniser.model_version == "2026.11.26-1"

        _, archive = pack_bundle(make_bundle(tmp_path / "v2", version="2026.11.26-2"))
        answer = admin.request(
            "POST", "/v1/admin/bundles", data=archive, headers={"Content-Type": "application/gzip"}
        )
        assert answer.status_code == 201, answer.text
        offer = heartbeat()
        assert offer is not None and offer.version == "2026.11.26-2"
        assert recogniser.model_version == "2026.11.26-2"
        assert store.previous() is not None and store.previous().version == "2026.11.26-1"  # type: ignore[union-attr]
        assert not (tmp_path / "downloads" / "2026.11.26-2").exists()

        # An archive whose bytes are not what the backend vouched for is refused, once.
        bad = BundleOffer("2026.11.26-2", hashlib.sha256(b"something else").hexdigest(), 10)
        folder = tmp_path / "downloads-bad"
        with pytest.raises(BackendRequestError, match="SHA-256"):
            online.download_bundle(bad, folder)
        assert recogniser.model_version == "2026.11.26-2"

        # A bundle whose hashes hold but whose detector does not load is refused at the
        # terminal, which goes on with the bundle it runs, and does not fetch it again.
        broken = make_bundle(tmp_path / "v3", version="2026.11.26-3")
        (broken / "detector.onnx").write_bytes(b"not an onnx model")
        fields = json.loads((broken / "bundle.json").read_text(encoding="utf-8"))
        fields.pop("files", None)
        write_manifest(broken, fields)
        answer = admin.request(
            "POST",
            "/v1/admin/bundles",
            data=pack_bundle(broken)[1],
            headers={"Content-Type": "application/gzip"},
        )
        # The server checks the hashes; whether the models load is found at the terminal.
        assert answer.status_code == 201, answer.text
        heartbeat()
        assert recogniser.model_version == "2026.11.26-2"
        assert "2026.11.26-3" in heartbeat.refused
        assert store.current().version == "2026.11.26-2"  # type: ignore[union-attr]
        online.close()
