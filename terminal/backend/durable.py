"""One SQLite file for records that must survive a power cut.

The ledger, the outbox, the cashier PINs and the audit log all keep state whose loss would cost
money or trust. Each is a :class:`DurableSqlite`: WAL mode with ``synchronous=FULL`` (a committed
transaction is on disk before ``COMMIT`` returns), one connection shared between threads behind
a lock, and writes in ``BEGIN IMMEDIATE`` transactions that roll back on any error. The schema is
versioned with ``PRAGMA user_version``, and a file from a newer trayscan is refused rather than
misread.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)


class DurableSqlite:
    """The shared opening, locking and transaction handling of trayscan's SQLite files.

    Args:
        path: the file; its folder is created when missing. ``":memory:"`` keeps nothing.
        what: how messages name the file ("ledger", "outbox", ...).
        error: the exception type a subclass raises when the file cannot be used.
        read_only: open an existing file to read only (nothing is created).
        reentrant: use a re-entrant lock (a subclass calling its own locked methods).

    Raises:
        error: the file cannot be opened.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        what: str,
        error: type[Exception],
        read_only: bool = False,
        reentrant: bool = False,
    ) -> None:
        self.path = Path(path)
        self._what = what
        self._error = error
        self._lock: AbstractContextManager[bool] = (
            threading.RLock() if reentrant else threading.Lock()
        )
        try:
            if read_only:
                self._db = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro",
                    uri=True,
                    check_same_thread=False,
                    isolation_level=None,
                    timeout=10.0,
                )
            else:
                if str(path) != ":memory:":
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(
                    str(path), check_same_thread=False, isolation_level=None, timeout=10.0
                )
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError as exc:
            raise error(f"cannot open {what} {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before anything is read, committed durably."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def _schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _install_schema(
        self, schema: str, version: int, *, migrate_from: dict[int, str] | None = None
    ) -> int:
        """Create the tables of a new file, migrate an older one, refuse a newer one.

        Returns the version the file had when opened (0 for a new file).
        """
        try:
            found = self._schema_version()
            if found > version:
                raise self._error(
                    f"{self._what} {self.path} is schema version {found}, newer than this "
                    f"trayscan ({version}); upgrade trayscan"
                )
            if found < version:
                script = (migrate_from or {}).get(found, schema)
                self._db.executescript(f"BEGIN; {script}; PRAGMA user_version = {version}; COMMIT;")
            return found
        except sqlite3.DatabaseError as exc:
            raise self._error(f"cannot open {self._what} {self.path}: {exc}") from exc
