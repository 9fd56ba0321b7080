"""Run ``trayscan backend serve`` as a child process on a free loopback port, and wait for it.

Used by ``trayscan bench backend`` and by the tests (``tests/server/helpers.py``), which both
want the real server, with its real worker processes, not an app in the same interpreter.
Only the standard library is used, so this works without the ``server`` extra's packages being
imported by the caller.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

#: The repository (or installed tree) root, where ``python -m terminal.cli`` runs.
ROOT = Path(__file__).resolve().parent.parent


class ServerStartError(RuntimeError):
    """The server process exited or did not answer ``/v1/health`` in time; has its log's tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass
class ServerProcess:
    """A running ``trayscan backend serve``.

    Attributes:
        url: its base URL, ``http://127.0.0.1:PORT``.
        db_url: the database it serves.
        admin_token: the bearer token of its admin API.
        process: the child process.
        log_path: where its stdout and stderr go.
    """

    url: str
    db_url: str
    admin_token: str
    process: subprocess.Popen[bytes]
    log_path: Path
    health: dict[str, str] = field(default_factory=dict)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log, for error messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL when it does not go)."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("server %s did not stop in %.0f s; killing it", self.url, timeout_s)
            self.process.kill()
            self.process.wait(timeout=timeout_s)


def start_server(
    db_url: str,
    admin_token: str,
    log_path: Path,
    *,
    workers: int = 1,
    port: int | None = None,
    pool_size: int | None = None,
    timeout_s: float = 60.0,
    python: str = sys.executable,
) -> ServerProcess:
    """Start ``trayscan backend serve`` on loopback and return once ``/v1/health`` answers.

    Args:
        db_url: the database (its tables are created when missing).
        admin_token: passed in ``TRAYSCAN_ADMIN_TOKEN``.
        log_path: file for the server's output.
        workers: uvicorn worker processes.
        port: the port; a free one by default.
        pool_size: database connections per worker (default: the server's).
        timeout_s: how long to wait for health.

    Raises:
        ServerStartError: the server exited or did not become healthy in time.
    """
    port = port or free_port()
    command = [
        python,
        "-m",
        "terminal.cli",
        "backend",
        "serve",
        "--db",
        db_url,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if pool_size is not None:
        command += ["--pool-size", str(pool_size)]
    env = dict(os.environ, TRAYSCAN_ADMIN_TOKEN=admin_token)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(f"http://127.0.0.1:{port}", db_url, admin_token, process, log_path)
    try:
        server.health = wait_healthy(server, timeout_s)
    except BaseException:
        server.stop()
        raise
    logger.info("backend server up at %s (%s)", server.url, server.health.get("database"))
    return server


def wait_healthy(server: ServerProcess, timeout_s: float) -> dict[str, str]:
    """Poll ``GET /v1/health`` until it answers 200; its body.

    Raises:
        ServerStartError: the process exited, or no answer within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerStartError(
                f"backend server exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}/v1/health", timeout=2.0) as answer:
                body: dict[str, str] = json.loads(answer.read())
                return body
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            last_error = str(exc)
        time.sleep(0.1)
    raise ServerStartError(
        f"backend server at {server.url} not healthy after {timeout_s:.0f} s ({last_error}):\n"
        f"{server.log_tail()}"
    )
