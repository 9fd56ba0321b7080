"""Fixtures for calibration tests: a pty pair made by socat, as in ``tests/devices``.

One end stands for the terminal's serial port, the other for the scale's, so a calibration
runs through the kernel's tty layer exactly as it does against a USB-serial adapter.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SOCAT = shutil.which("socat")


@dataclass(frozen=True)
class PtyPair:
    """Two linked ptys: ``host`` is what ``SerialScale`` opens, ``scale`` the indicator's end."""

    host: Path
    scale: Path


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[PtyPair]:
    """A live pty pair; socat is stopped at teardown."""
    if SOCAT is None:
        pytest.skip("socat is not installed (apt-get install socat); CI installs it")
    pair = PtyPair(tmp_path / "host", tmp_path / "scale")
    log_path = tmp_path / "socat.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                SOCAT,
                "-d",
                "-d",
                f"pty,raw,echo=0,link={pair.host}",
                f"pty,raw,echo=0,link={pair.scale}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 5.0
        while not (pair.host.exists() and pair.scale.exists()):
            if process.poll() is not None:
                pytest.fail(f"socat exited early: {log_path.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                pytest.fail("socat made no ptys within 5 s")
            time.sleep(0.01)
        yield pair
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
