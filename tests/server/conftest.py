"""Fixtures of the reference backend server's tests; the helpers are in ``helpers.py``.

``db_url`` runs a test on SQLite (a file in its tmp folder) and on PostgreSQL (a new schema on
``$TRAYSCAN_TEST_PG_URL``, dropped afterwards; ``.ci/postgres.sh`` starts one and prints the
URL). Without that variable the PostgreSQL case is skipped, except under CI (``$CI`` set), where
it fails: CI must really run against PostgreSQL.

``running_server`` is ``trayscan backend serve`` on ``db_url`` as a real subprocess on a free
loopback port (a ``server.process.ServerProcess``; see ``helpers.serving``). ``backend`` is the
app in this process behind a ``TestClient``, with an admin client and terminal ``t1``.

Tests in other folders can use them with
``from tests.server.conftest import backend, db_url, running_server  # noqa: F401``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.process import ServerProcess

from .helpers import Backend, open_backend, pg_schema_url, serving

PG_URL_ENV = "TRAYSCAN_TEST_PG_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL with no tables yet: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'backend.db'}"
        return
    base = os.environ.get(PG_URL_ENV)
    if not base:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {PG_URL_ENV} is not: run .ci/postgres.sh and export it")
        pytest.skip(f"{PG_URL_ENV} is not set (export TRAYSCAN_TEST_PG_URL=$(.ci/postgres.sh))")
    with pg_schema_url(base) as url:
        yield url


@pytest.fixture
def running_server(db_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """``trayscan backend serve`` on ``db_url``, a real subprocess on a free loopback port."""
    with serving(db_url, tmp_path) as server:
        yield server


@pytest.fixture
def backend(db_url: str) -> Iterator[Backend]:
    """The app in this process on ``db_url``, with an admin client and terminal ``t1``."""
    with open_backend(db_url) as opened:
        yield opened
