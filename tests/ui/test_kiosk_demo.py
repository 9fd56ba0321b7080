"""`trayscan kiosk --demo` opens the screens when there is a display (here: Qt's offscreen
platform) and checks out replayed trays on the real recogniser; with no display it says so and
runs headless."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from terminal.ui.launch import screens_unavailable

from .conftest import write_config


def kiosk(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "terminal.cli", "kiosk", "--demo", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def test_the_demo_runs_on_the_screens_with_the_shipped_model(tmp_path: Path) -> None:
    config = tmp_path / "terminal.yaml"
    config.write_text(
        f"data_dir: {tmp_path}\ncalibration: {tmp_path / 'calibration.yaml'}\n"
        f"backend:\n  ledger: {tmp_path / 'ledger.sqlite'}\n"
        f"model:\n  store: {tmp_path / 'models'}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    result = kiosk(config, env, "--max-trays", "2")
    assert result.returncode == 0, result.stderr
    assert "running headless" not in result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["tray"] for r in records] == ["tray-01.jpg", "tray-02.jpg"]
    for record in records:
        assert record["status"] == "posted"
        assert record["model"] == "2026.11.27-2"  # the shipped bundle, not a stand-in
        assert record["payment"]["amount_fen"] == record["total_fen"] > 0


def test_with_no_display_it_says_so_and_runs_headless(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    result = kiosk(write_config(tmp_path), env, "--max-trays", "1")
    assert result.returncode == 0, result.stderr
    assert "no display (DISPLAY and WAYLAND_DISPLAY are unset); running headless" in result.stderr
    assert json.loads(result.stdout.splitlines()[0])["status"] == "posted"


@pytest.mark.parametrize(
    ("environ", "opens"),
    [
        ({}, False),
        ({"QT_QPA_PLATFORM": "xcb"}, False),
        ({"DISPLAY": ":0"}, True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, True),
        ({"QT_QPA_PLATFORM": "offscreen"}, True),
        ({"QT_QPA_PLATFORM": "eglfs"}, True),
    ],
)
def test_when_the_screens_can_open(environ: dict[str, str], opens: bool) -> None:
    assert (screens_unavailable(environ) is None) is opens
