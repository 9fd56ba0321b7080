"""Fixtures for device tests: a pair of connected pseudo-terminals made by socat.

One end stands for the terminal's serial port, the other for the scale's, so the driver is
tested through the kernel's tty layer exactly as it runs against a USB-serial adapter, and
"pulling the cable" is stopping socat.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SOCAT = shutil.which("socat")


class PtyPair:
    """Two linked ptys at fixed paths; ``unplug`` and ``plug_in`` simulate the cable.

    Attributes:
        host: the terminal's end, the path ``SerialScale`` opens.
        scale: the scale's end, where the test plays the indicator.
    """

    def __init__(self, directory: Path) -> None:
        self.host = directory / "host"
        self.scale = directory / "scale"
        self._log = directory / "socat.log"
        self._process: subprocess.Popen[bytes] | None = None

    def plug_in(self, budget_s: float = 5.0) -> None:
        """Start socat and wait until both links exist."""
        assert SOCAT is not None
        for link in (self.host, self.scale):
            link.unlink(missing_ok=True)  # a link left by a killed socat would mislead
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    SOCAT,
                    "-d",
                    "-d",
                    f"pty,raw,echo=0,link={self.host}",
                    f"pty,raw,echo=0,link={self.scale}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + budget_s
        while not (self.host.exists() and self.scale.exists()):
            if self._process.poll() is not None:
                pytest.fail(f"socat exited early: {self._log.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                self.unplug()
                pytest.fail(f"socat made no ptys within {budget_s} s")
            time.sleep(0.01)

    def unplug(self) -> None:
        """Stop socat (SIGTERM, so it removes its links), as if the cable were pulled."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)
        self._process = None


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[PtyPair]:
    """A live pty pair (``.host``, ``.scale``); socat is stopped at teardown."""
    if SOCAT is None:
        pytest.skip("socat is not installed (apt-get install socat); CI installs it")
    pair = PtyPair(tmp_path)
    pair.plug_in()
    try:
        yield pair
    finally:
        pair.unplug()
