"""The terminal's heartbeat: tell the backend it is alive, and take the model bundle it offers.

The backend answers each heartbeat with the bundle this terminal should run. When that is not
the one running, the archive is downloaded, its SHA-256 checked, and it is handed to the
recogniser, which verifies the bundle and swaps it in while running (keeping the previous one
for rollback). A bundle that fails is remembered and not fetched again until another is offered.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from terminal.backend.http import BundleOffer, HttpBackend

logger = logging.getLogger(__name__)


class Installable(Protocol):
    """A recogniser that can take a new bundle while running."""

    @property
    def model_version(self) -> str: ...

    def install(self, source: Path) -> str: ...


class Heartbeat:
    """One heartbeat per call; run by the outbox worker.

    Args:
        online: the backend client.
        recogniser: the running recogniser; bundles are installed into it when it can take them.
        downloads: where archives are unpacked before they are installed.
        status: what the terminal reports about itself (device health, outbox depth, ...).
    """

    def __init__(
        self,
        online: HttpBackend,
        recogniser: object,
        downloads: Path,
        status: Callable[[], dict[str, Any]],
    ) -> None:
        self.online = online
        self.recogniser = recogniser
        self.downloads = downloads
        self.status = status
        self.refused: set[str] = set()
        self.installed: list[str] = []

    def __call__(self) -> BundleOffer | None:
        version = str(getattr(self.recogniser, "model_version", ""))
        status = self.status()
        offer = self.online.heartbeat(version, int(status.get("outbox_depth", 0)), status)
        if offer is None or offer.version == version or offer.version in self.refused:
            return offer
        install = getattr(self.recogniser, "install", None)
        if not callable(install):
            logger.info("bundle %s offered, but this recogniser cannot swap bundles", offer.version)
            return offer
        try:
            folder = self.online.download_bundle(offer, self.downloads)
            installed = install(folder)
        except Exception as exc:  # any failure of a new bundle leaves the running one
            logger.error("bundle %s refused, still running %s: %s", offer.version, version, exc)
            self.refused.add(offer.version)
            return offer
        finally:
            shutil.rmtree(self.downloads / offer.version, ignore_errors=True)
        logger.info("bundle %s installed (was %s)", installed, version)
        self.installed.append(str(installed))
        return offer
