"""The written contract, ``docs/api/openapi.json``, made from the server's own routes and models.

``trayscan backend openapi --to docs/api/openapi.json`` rewrites it; a test fails when the
committed file differs from what the server generates, so the document never drifts from the
code.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Where the repository keeps the generated document.
OPENAPI_PATH = Path(__file__).resolve().parent.parent / "docs" / "api" / "openapi.json"


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of an app on a throw-away in-memory database."""
    from server.app import create_app

    app = create_app("sqlite://", "openapi")
    document: dict[str, Any] = app.openapi()
    app.state.trayscan.store.close()
    return document


def render_openapi() -> str:
    """The document as the repository keeps it: indented JSON, UTF-8, a final newline."""
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


def write_openapi(path: Path) -> None:
    """Write the document to ``path`` (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_openapi(), encoding="utf-8")
    logger.info("wrote %s", path)
