"""Cashier records in SQLite: who may work the desk, their PIN hashes and lockout state.

Implements :class:`terminal.core.cashier.CashierStore`. PINs are stored only as the hashes
:func:`terminal.core.cashier.hash_pin` makes. The file is in WAL mode with ``synchronous=FULL``,
so a failure count written before a lockout survives a power cut: pulling the plug does not
buy a thief more PIN attempts.
"""

from __future__ import annotations

import logging
from pathlib import Path

from terminal.backend.durable import DurableSqlite
from terminal.core.cashier import CashierRecord, Role

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS cashiers (
    cashier_id   TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    pin_hash     TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('cashier', 'supervisor', 'technician')),
    failures     INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    locked_until REAL
);
"""

_COLUMNS = "cashier_id, name, pin_hash, role, failures, locked_until"


class CashierStoreError(RuntimeError):
    """The cashier file cannot be used (unreadable, not a trayscan cashier file, newer schema)."""


class SqliteCashierStore(DurableSqlite):
    """Cashier records in one SQLite file; implements ``CashierStore``.

    Args:
        path: the SQLite file; its folder is created when missing. ``":memory:"`` keeps
            nothing, for checks and tests.

    Raises:
        CashierStoreError: the file cannot be opened as a cashier store.
    """

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, what="cashier file", error=CashierStoreError)
        self._install_schema(SCHEMA, SCHEMA_VERSION)

    def get(self, cashier_id: str) -> CashierRecord | None:
        """The record of ``cashier_id``, or None."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM cashiers WHERE cashier_id = ?", (cashier_id,)
            ).fetchone()
        return _record(row) if row else None

    def put(self, record: CashierRecord) -> None:
        """Create or replace the record of ``record.cashier_id``; committed before it returns."""
        with self._lock:
            self._db.execute(
                f"INSERT INTO cashiers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(cashier_id) DO UPDATE SET name = excluded.name, "
                "pin_hash = excluded.pin_hash, role = excluded.role, "
                "failures = excluded.failures, locked_until = excluded.locked_until",
                (
                    record.cashier_id,
                    record.name,
                    record.pin_hash,
                    Role(record.role).value,
                    record.failures,
                    record.locked_until,
                ),
            )

    def cashiers(self) -> list[CashierRecord]:
        """Every record, by id."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM cashiers ORDER BY cashier_id"
            ).fetchall()
        return [_record(row) for row in rows]


def _record(row: tuple[object, ...]) -> CashierRecord:
    locked_until = row[5]
    return CashierRecord(
        cashier_id=str(row[0]),
        name=str(row[1]),
        pin_hash=str(row[2]),
        role=Role(str(row[3])),
        failures=int(str(row[4])),
        locked_until=float(str(locked_until)) if locked_until is not None else None,
    )
