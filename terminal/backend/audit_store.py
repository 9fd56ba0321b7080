"""The audit log on disk: one SQLite table that only grows, hash-chained entry by entry.

The chain rules are in :mod:`terminal.core.audit`; this module stores them. Each append reads
the last entry and inserts the next one inside a single ``BEGIN IMMEDIATE`` transaction, so two
threads (or the kiosk and the command line) never chain onto the same entry. The file is in WAL
mode with ``synchronous=FULL``: an entry survives a power cut once ``append`` returns.

Triggers refuse every UPDATE and DELETE, so no code path of trayscan can rewrite history. Someone
holding the file can still drop the triggers and edit it; :meth:`SqliteAuditLog.verify` re-reads
the whole chain and names the entries that were altered or removed, and reports the triggers
missing.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from terminal.backend.durable import DurableSqlite
from terminal.core.audit import AuditEntry, make_entry, verify_chain

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_TRIGGERS = ("audit_log_no_update", "audit_log_no_delete")

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq          INTEGER PRIMARY KEY,
    timestamp    REAL NOT NULL,
    actor        TEXT NOT NULL,
    terminal_id  TEXT NOT NULL,
    action       TEXT NOT NULL,
    details_json TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    entry_hash   TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: entries cannot be changed');
END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: entries cannot be deleted');
END;
"""

_COLUMNS = "seq, timestamp, actor, terminal_id, action, details_json, prev_hash, entry_hash"


class AuditStoreError(RuntimeError):
    """The audit file cannot be used (unreadable, not a trayscan audit log, newer schema)."""


class SqliteAuditLog(DurableSqlite):
    """An append-only, hash-chained audit log in SQLite; implements ``AuditLog``.

    Args:
        path: the SQLite file; its folder is created when missing. ``":memory:"`` keeps
            nothing, for checks and tests.
        terminal_id: written into every entry.
        clock: seconds since the epoch (``time.time`` by default).
        read_only: open an existing log only to read and verify it (``trayscan audit
            verify``): nothing is created or written, and :meth:`append` fails.

    Raises:
        AuditStoreError: the file cannot be opened as an audit log.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        terminal_id: str = "",
        clock: Callable[[], float] = time.time,
        read_only: bool = False,
    ) -> None:
        super().__init__(path, what="audit log", error=AuditStoreError, read_only=read_only)
        self.terminal_id = terminal_id
        self._clock = clock
        if not read_only:
            self._install_schema(SCHEMA, SCHEMA_VERSION)
            return
        try:
            version = self._schema_version()
        except sqlite3.DatabaseError as exc:
            raise AuditStoreError(f"cannot open audit log {self.path}: {exc}") from exc
        if version == 0:
            raise AuditStoreError(f"{self.path} is not a trayscan audit log")
        if version > SCHEMA_VERSION:
            raise AuditStoreError(
                f"audit log {self.path} is schema version {version}, newer than this "
                f"trayscan ({SCHEMA_VERSION}); upgrade trayscan"
            )

    def append(self, actor: str, action: str, details: Mapping[str, object]) -> AuditEntry:
        """Chain one entry onto the last and commit it durably.

        Raises:
            AuditError: an empty actor or action, or details that are not plain JSON.
        """
        with self._write() as db:
            # Only the head's seq and hash: a damaged last entry must not stop the logging.
            row = db.execute(
                "SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            entry = make_entry(
                (int(row[0]), str(row[1])) if row else None,
                actor=actor,
                terminal_id=self.terminal_id,
                action=action,
                details=details,
                timestamp=self._clock(),
            )
            db.execute(
                f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.seq,
                    entry.timestamp,
                    entry.actor,
                    entry.terminal_id,
                    entry.action,
                    json.dumps(entry.details, sort_keys=True, ensure_ascii=False),
                    entry.prev_hash,
                    entry.entry_hash,
                ),
            )
        logger.info("audit %d: %s by %s", entry.seq, action, actor)
        return entry

    def entries(self) -> list[AuditEntry]:
        """Every entry, oldest first."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq").fetchall()
        return [_entry(row) for row in rows]

    def head(self) -> tuple[int, str] | None:
        """``(seq, entry_hash)`` of the last entry, to record elsewhere as an anchor."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def verify(self, *, anchor: tuple[int, str] | None = None) -> list[str]:
        """Re-read the whole log and check it; one line per problem, empty when intact.

        Args:
            anchor: ``(seq, entry_hash)`` recorded earlier (see :meth:`head`), to catch entries
                cut off the end.
        """
        problems: list[str] = []
        with self._lock:
            triggers = {
                str(row[0])
                for row in self._db.execute(
                    "SELECT name FROM sqlite_master "
                    "WHERE type = 'trigger' AND tbl_name = 'audit_log'"
                )
            }
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq").fetchall()
        missing = [name for name in _TRIGGERS if name not in triggers]
        if missing:
            problems.append(
                f"append-only trigger(s) {', '.join(missing)} missing: "
                "the file was changed outside trayscan"
            )
        entries: list[AuditEntry] = []
        for row in rows:
            try:
                entries.append(_entry(row))
            except (ValueError, TypeError) as exc:
                problems.append(f"seq {row[0]} unreadable: {exc}")
        return problems + verify_chain(entries, anchor=anchor)


def _entry(row: tuple[object, ...]) -> AuditEntry:
    details = json.loads(str(row[5]))
    if not isinstance(details, dict):
        raise ValueError(f"seq {row[0]}: details are not a JSON object")
    return AuditEntry(
        seq=int(str(row[0])),
        timestamp=float(str(row[1])),
        actor=str(row[2]),
        terminal_id=str(row[3]),
        action=str(row[4]),
        details=details,
        prev_hash=str(row[6]),
        entry_hash=str(row[7]),
    )
