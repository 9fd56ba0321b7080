"""Two staff actions the screens need that :class:`terminal.core.cashier.CashierDesk` has no
method for yet, built from its public parts (the PIN and lockout functions, its store, its
audit log) so they follow the same rules and leave the same kind of audit entries.

- :func:`technician_login`: the maintenance screen is for technicians (and supervisors);
  ``CashierDesk.login`` admits cashiers and supervisors only.
- :func:`acknowledge_flagged`: a cashier has dealt with an outbox entry the backend refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from terminal.backend.outbox import Outbox, OutboxEntry
from terminal.core.cashier import (
    CashierDesk,
    CashierLockedError,
    CashierRecord,
    PinRejectedError,
    Role,
    RoleRequiredError,
    UnknownCashierError,
    after_failure,
    after_success,
    attempts_left,
    check_pin,
    is_locked,
)

logger = logging.getLogger(__name__)

#: Who may open the maintenance screen.
MAINTENANCE_ROLES = frozenset({Role.TECHNICIAN, Role.SUPERVISOR})


def technician_login(
    desk: CashierDesk,
    staff_id: str,
    pin: str,
    *,
    clock: Callable[[], float] = time.time,
) -> CashierRecord:
    """Check a PIN to open the maintenance screen, with the desk's lockout and audit rules.

    Raises:
        UnknownCashierError, PinRejectedError, CashierLockedError, RoleRequiredError: as
        ``CashierDesk.login`` does.
    """
    now = clock()
    store, audit, policy = desk.store, desk.audit, desk.policy
    record = store.get(staff_id)
    if record is None:
        audit.append(
            staff_id or "(none)", "pin_rejected", {"operation": "maintenance", "why": "unknown"}
        )
        raise UnknownCashierError(staff_id)
    if is_locked(record, now):
        assert record.locked_until is not None
        audit.append(staff_id, "locked_out", {"operation": "maintenance"})
        raise CashierLockedError(staff_id, record.locked_until, now)
    if not check_pin(pin, record.pin_hash):
        failed = after_failure(record, policy, now)
        store.put(failed)
        if failed.locked_until is not None:
            audit.append(
                staff_id,
                "cashier_locked",
                {"operation": "maintenance", "failures": failed.failures},
            )
            raise CashierLockedError(staff_id, failed.locked_until, now)
        left = attempts_left(failed, policy, now)
        audit.append(
            staff_id,
            "pin_rejected",
            {"operation": "maintenance", "why": "wrong_pin", "attempts_left": left},
        )
        raise PinRejectedError(staff_id, left)
    if record.failures or record.locked_until is not None:
        record = after_success(record)
        store.put(record)
    if record.role not in MAINTENANCE_ROLES:
        audit.append(staff_id, "role_refused", {"operation": "maintenance"})
        raise RoleRequiredError(staff_id, record.role, sorted(MAINTENANCE_ROLES), "maintenance")
    audit.append(staff_id, "maintenance_login", {"role": record.role.value})
    return record


def acknowledge_flagged(
    desk: CashierDesk, outbox: Outbox, cashier_id: str, entry: OutboxEntry
) -> None:
    """Mark a flagged outbox entry as dealt with by a signed-in cashier, and log it."""
    outbox.acknowledge(entry.entry_id, by=cashier_id)
    desk.audit.append(
        cashier_id,
        "outbox_acknowledged",
        {
            "entry_id": entry.entry_id,
            "transaction_id": entry.transaction_id,
            "status": entry.status,
            "amount_fen": entry.amount_fen,
            "account_id": entry.account_id,
            "error": entry.last_error,
        },
    )
    logger.info("outbox entry %s acknowledged by %s", entry.entry_id, cashier_id)
