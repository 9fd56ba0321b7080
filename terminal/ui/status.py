"""What the maintenance and cashier screens show about the terminal's parts, gathered off the GUI
thread, and the last errors of the log.

:func:`collect_status` reads the devices, the backend and the outbox into a frozen
:class:`DeviceStatus` on the worker thread; the screens only ever draw a snapshot, so a device
that hangs shows as an old snapshot ("no news for 12 s"), never as a frozen window.
:class:`ErrorLog` is a logging handler that keeps the last warnings and errors for the
maintenance screen.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from terminal.app import Terminal
from terminal.backend.ledger import EmbeddedLedger
from terminal.backend.outbox import OutboxEntry
from terminal.backend.payments import OutboxBackend
from terminal.core.ports import TransactionRecord
from terminal.ui.drivers import CardView, KioskDriver, ScaleView
from vision.recogniser import SwappableRecogniser
from vision.sources import CameraSource

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraView:
    """The camera as the maintenance screen shows it."""

    kind: str
    state: str
    fps: float | None
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class BackendView:
    """The backend: what it is, whether it answers, what is waiting to be posted."""

    kind: str
    reachable: bool
    detail: str = ""
    outbox_depth: int | None = None
    flagged: tuple[OutboxEntry, ...] = ()


@dataclass(frozen=True)
class ModelView:
    """The model bundle in use, the one a rollback returns to, and its card."""

    version: str
    previous: str | None
    can_learn: bool
    card_markdown: str = ""


@dataclass(frozen=True)
class DeviceStatus:
    """One snapshot of every part, taken on the worker thread.

    ``taken_at`` is ``time.monotonic`` seconds.
    """

    camera: CameraView
    scale: ScaleView
    card: CardView | None
    backend: BackendView
    model: ModelView
    checkouts: int
    taken_at: float = field(default_factory=time.monotonic)


def camera_view(terminal: Terminal, frames_per_s: float | None) -> CameraView:
    """The camera's health: a live camera's own report, or the replay's pace."""
    camera = terminal.camera
    if isinstance(camera, CameraSource):
        health = camera.health()
        ok = health.state == "ok" and not health.blocked and health.brightness_ok
        detail = health.last_error or ""
        if health.blocked:
            detail = "lens blocked"
        elif not health.brightness_ok:
            detail = f"brightness {health.mean_brightness or 0:.0f} out of range"
        return CameraView("opencv", str(health.state), health.fps, ok, detail)
    return CameraView(type(camera).__name__, "ok", frames_per_s, True, "replayed photos")


def backend_view(terminal: Terminal) -> BackendView:
    """Whether the backend answers, and the outbox's depth and flagged entries."""
    backend = terminal.backend
    if isinstance(backend, OutboxBackend):
        outbox = backend.outbox
        return BackendView(
            type(backend.online).__name__,
            backend.reachable,
            backend.last_online_error or "",
            outbox.depth(),
            tuple(outbox.flagged()),
        )
    if isinstance(backend, EmbeddedLedger):
        return BackendView("embedded ledger", True, "accounts kept on this terminal")
    return BackendView(type(backend).__name__, True)


def model_view(terminal: Terminal, *, with_card: bool = False) -> ModelView:
    """The bundle in use and the one before it; ``with_card`` also reads its model card."""
    recogniser = terminal.recogniser
    if not isinstance(recogniser, SwappableRecogniser):
        return ModelView(recogniser.model_version, None, False)
    previous_link = recogniser.store.previous_link
    previous = previous_link.resolve().name if previous_link.is_symlink() else None
    card = ""
    if with_card:
        bundle = recogniser.active.bundle
        try:
            card = bundle.path_of(bundle.manifest.model_card).read_text(encoding="utf-8")
        except (OSError, ValueError, RuntimeError) as exc:
            card = f"(model card unreadable: {exc})"
    return ModelView(recogniser.model_version, previous, True, card)


def collect_status(
    terminal: Terminal,
    driver: KioskDriver,
    *,
    frames_per_s: float | None = None,
    with_card: bool = False,
) -> DeviceStatus:
    """Everything the maintenance screen shows, read now (call on the worker thread)."""
    return DeviceStatus(
        camera=camera_view(terminal, frames_per_s),
        scale=driver.scale_view(),
        card=driver.last_card(),
        backend=backend_view(terminal),
        model=model_view(terminal, with_card=with_card),
        checkouts=driver.checkouts_done(),
    )


def recent_transactions(terminal: Terminal, limit: int = 20) -> list[TransactionRecord]:
    """This terminal's latest transactions, newest first: from the embedded ledger, or the ones
    the backend reports for the outbox's latest entries."""
    backend = terminal.backend
    if isinstance(backend, EmbeddedLedger):
        records = [r for r in backend.transactions() if r.status != "voided" or r.amount_fen]
        return list(reversed(records))[:limit]
    if isinstance(backend, OutboxBackend):
        entries = [e for e in backend.outbox.entries() if e.kind == "transaction"]
        entries.sort(key=lambda e: e.created_at, reverse=True)
        found = []
        for entry in entries[:limit]:
            try:
                record = backend.transaction(entry.transaction_id)
            except Exception as exc:  # the backend is down: show what the outbox knows
                logger.info("transaction %s not looked up: %s", entry.transaction_id, exc)
                record = None
            found.append(record or _from_entry(entry, terminal.loaded.config.terminal_id))
        return found
    return []


def _from_entry(entry: OutboxEntry, terminal_id: str) -> TransactionRecord:
    return TransactionRecord(
        transaction_id=entry.transaction_id,
        checkout_id=str(entry.body.get("checkout_id", "")),
        terminal_id=terminal_id,
        account_id=entry.account_id,
        method=str(entry.body.get("method", "")),
        amount_fen=entry.amount_fen,
        balance_after_fen=None,
        status=entry.status,
        refunded_fen=0,
        offline=entry.offline,
        created_at=entry.created_at,
    )


@dataclass(frozen=True)
class LoggedError:
    """One warning or error from the log."""

    at: float
    level: str
    logger_name: str
    message: str


class ErrorLog(logging.Handler):
    """Keeps the last ``capacity`` warnings and errors of the log, for the maintenance screen.

    Thread-safe: records come from every thread, the screen reads :meth:`entries`.
    """

    def __init__(self, capacity: int = 50, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self._entries: collections.deque[LoggedError] = collections.deque(maxlen=capacity)
        self._entries_lock = threading.Lock()
        self.total = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            message = f"{message}: {record.exc_info[1]!r}"
        with self._entries_lock:
            self._entries.append(
                LoggedError(record.created, record.levelname, record.name, message)
            )
            self.total += 1

    def entries(self) -> list[LoggedError]:
        """The kept entries, newest first."""
        with self._entries_lock:
            return list(reversed(self._entries))


def calibration_profile(terminal: Terminal) -> Path:
    """The terminal's calibration profile file (it may not exist yet)."""
    return terminal.loaded.resolve(terminal.loaded.config.calibration)
