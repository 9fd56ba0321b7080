"""`trayscan devices check` tells the technician whether the backend answers and what waits for
it, for a terminal whose payments go through the outbox."""

from __future__ import annotations

from pathlib import Path

import requests

from terminal.app import build_terminal
from terminal.config import load_config
from terminal.diagnostics import check_backend
from tests.server.helpers import AdminClient, serving


def config_for(tmp_path: Path, url: str, secret: str) -> Path:
    path = tmp_path / "terminal.yaml"
    path.write_text(
        f"terminal_id: t1\nbackend:\n  type: http\n  url: {url}\n  secret: {secret}\n"
        f"  outbox: {tmp_path / 'outbox.sqlite'}\n  retries: 0\n"
        f"model:\n  store: {tmp_path / 'models'}\ndata_dir: {tmp_path / 'var'}\n",
        encoding="utf-8",
    )
    return path


def test_a_backend_that_is_down_is_reported_with_what_waits(tmp_path: Path) -> None:
    terminal = build_terminal(load_config(config_for(tmp_path, "http://127.0.0.1:9", "s" * 32)))
    try:
        state = check_backend(terminal)
    finally:
        terminal.close()
    assert not state.ok
    assert "unreachable" in state.summary and "0 waiting in the outbox" in state.summary
    assert "offline" in state.advice


def test_a_reachable_backend_is_ok(tmp_path: Path) -> None:
    with serving(f"sqlite:///{tmp_path / 'backend.db'}", tmp_path) as server:
        secret = AdminClient(requests.Session(), server.url).add_terminal("t1").secret
        terminal = build_terminal(load_config(config_for(tmp_path, server.url, secret)))
        try:
            state = check_backend(terminal)
        finally:
            terminal.close()
    assert state.ok and "reachable" in state.summary
