"""Cashier operations: PINs, lockout, and the desk every cashier action goes through.

A cashier fixes what the terminal could not decide (a held tray, a wrong dish, a price) and
handles money by hand (void, refund, cash). Each of those needs the cashier's PIN, and each is
written to the audit log with everything needed to understand it later.

- **PINs** are 4 to 8 digits (:func:`validate_pin`), stored only as a salted scrypt hash in a
  self-describing string (:func:`hash_pin`), checked in constant time (:func:`check_pin`).
- **Lockout** (:class:`PinPolicy`): ``max_failures`` wrong PINs in a row lock the cashier for
  ``lockout_s`` seconds, even against the right PIN; a right PIN resets the count, and a lock
  that has run out starts a fresh count. These are pure functions over a
  :class:`CashierRecord` and the time (:func:`is_locked`, :func:`after_failure`,
  :func:`after_success`, :func:`attempts_left`).
- **Roles** (:class:`Role`): cashiers and supervisors work the desk; a refund above
  ``refund_supervisor_above_fen`` needs a supervisor; technicians enrol and unlock cashiers
  from the command line and cannot move money.
- **The desk** (:class:`CashierDesk`) checks the PIN, acts through the checkout session or the
  backend, and appends one audit entry per action. Refused PINs and lockouts are audited too.

No I/O here: the cashier records live behind :class:`CashierStore`
(:mod:`terminal.backend.cashier_store`), the log behind :class:`~terminal.core.audit.AuditLog`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol, runtime_checkable

from terminal.core.audit import AuditLog
from terminal.core.money import Fen, require_fen
from terminal.core.ports import (
    BackendRequestError,
    BackendUnavailableError,
    LedgerBackend,
    PaymentDeclinedError,
    RefundReceipt,
    RefundRequest,
)
from terminal.core.pricing import PricedLine, PricedTray, PriceOverride
from terminal.core.session import CheckoutSession, PaymentReceipt

logger = logging.getLogger(__name__)

# --- PINs ---------------------------------------------------------------------------------

PIN_PATTERN = re.compile(r"[0-9]{4,8}")
"""A PIN is 4 to 8 ASCII digits."""

SCRYPT_N = 2**14
"""scrypt's CPU/memory cost for new hashes (16 MiB, tens of milliseconds per check)."""
SCRYPT_R = 8
SCRYPT_P = 1
_SALT_BYTES = 16
_KEY_BYTES = 32
_MAX_N = 2**20
_HASH_PREFIX = "scrypt"


class PinFormatError(ValueError):
    """A PIN that is not 4 to 8 digits."""


def validate_pin(pin: str) -> str:
    """Return ``pin`` if it is 4 to 8 digits, else raise.

    Raises:
        PinFormatError: anything else (letters, spaces, too short or too long).
    """
    if not isinstance(pin, str) or not PIN_PATTERN.fullmatch(pin):
        raise PinFormatError("a PIN is 4 to 8 digits")
    return pin


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        pin.encode("ascii"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * n * r + (1 << 20),
        dklen=_KEY_BYTES,
    )


def hash_pin(pin: str, salt: bytes | None = None, *, n: int = SCRYPT_N) -> str:
    """Hash a PIN for storage: ``scrypt$n=16384,r=8,p=1$<salt base64>$<key base64>``.

    The string carries its own parameters, so :func:`check_pin` still checks old hashes after
    the cost is raised.

    Args:
        pin: 4 to 8 digits.
        salt: random 16 bytes unless given (give one only to reproduce a hash).
        n: scrypt's cost, a power of two.

    Raises:
        PinFormatError: ``pin`` is not 4 to 8 digits.
    """
    validate_pin(pin)
    if n < 2 or n > _MAX_N or n & (n - 1):
        raise ValueError(f"scrypt n must be a power of two up to {_MAX_N}")
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    key = _scrypt(pin, salt, n, SCRYPT_R, SCRYPT_P)
    return f"{_HASH_PREFIX}$n={n},r={SCRYPT_R},p={SCRYPT_P}${_b64(salt)}${_b64(key)}"


def check_pin(pin: str, stored: str) -> bool:
    """Whether ``pin`` matches a hash made by :func:`hash_pin`, compared in constant time.

    Raises:
        ValueError: ``stored`` is not a PIN hash (a damaged cashier record).
    """
    try:
        prefix, params, salt_b64, key_b64 = stored.split("$")
        fields = dict(part.split("=", 1) for part in params.split(","))
        n, r, p = int(fields["n"]), int(fields["r"]), int(fields["p"])
        salt = base64.b64decode(salt_b64, validate=True)
        key = base64.b64decode(key_b64, validate=True)
    except (ValueError, KeyError) as exc:
        raise ValueError("the stored PIN hash is damaged; enrol the cashier again") from exc
    if prefix != _HASH_PREFIX or not (2 <= n <= _MAX_N and 1 <= r <= 32 and 1 <= p <= 16):
        raise ValueError("the stored PIN hash is not a trayscan scrypt hash")
    if not isinstance(pin, str) or not PIN_PATTERN.fullmatch(pin):
        return False
    return hmac.compare_digest(_scrypt(pin, salt, n, r, p), key)


# --- cashiers and lockout -----------------------------------------------------------------


class Role(StrEnum):
    """What a person may do at the terminal."""

    CASHIER = "cashier"
    SUPERVISOR = "supervisor"
    TECHNICIAN = "technician"


#: The roles that may act at the cashier desk (technicians service the terminal, not money).
DESK_ROLES = frozenset({Role.CASHIER, Role.SUPERVISOR})


@dataclass(frozen=True)
class PinPolicy:
    """How many wrong PINs in a row lock a cashier, and for how long."""

    max_failures: int = 5
    lockout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if self.lockout_s <= 0:
            raise ValueError("lockout_s must be positive")


@dataclass(frozen=True)
class CashierRecord:
    """One enrolled person, as the cashier store keeps them.

    Attributes:
        cashier_id: the id typed on the PIN pad (a staff number).
        name: shown on screen and in the audit log.
        pin_hash: from :func:`hash_pin`; the PIN itself is never stored.
        role: what they may do.
        failures: wrong PINs in a row.
        locked_until: seconds since the epoch the lock lasts until, or None.
    """

    cashier_id: str
    name: str
    pin_hash: str
    role: Role = Role.CASHIER
    failures: int = 0
    locked_until: float | None = None


def is_locked(record: CashierRecord, now: float) -> bool:
    """Whether ``record`` is locked at ``now``."""
    return record.locked_until is not None and now < record.locked_until


def _lock_ran_out(record: CashierRecord, now: float) -> bool:
    return record.locked_until is not None and now >= record.locked_until


def attempts_left(record: CashierRecord, policy: PinPolicy, now: float) -> int:
    """How many wrong PINs ``record`` may still enter before it is locked (0 while locked)."""
    if is_locked(record, now):
        return 0
    if _lock_ran_out(record, now):
        return policy.max_failures
    return max(0, policy.max_failures - record.failures)


def after_failure(record: CashierRecord, policy: PinPolicy, now: float) -> CashierRecord:
    """``record`` after one more wrong PIN at ``now``: counted, and locked at the limit."""
    failures = 1 if _lock_ran_out(record, now) else record.failures + 1
    locked_until = now + policy.lockout_s if failures >= policy.max_failures else None
    return replace(record, failures=failures, locked_until=locked_until)


def after_success(record: CashierRecord) -> CashierRecord:
    """``record`` after a right PIN (or a technician's unlock): no failures, no lock."""
    return replace(record, failures=0, locked_until=None)


@runtime_checkable
class CashierStore(Protocol):
    """Where cashier records live."""

    def get(self, cashier_id: str) -> CashierRecord | None:
        """The record of ``cashier_id``, or None."""
        ...

    def put(self, record: CashierRecord) -> None:
        """Create or replace the record of ``record.cashier_id``, durably."""
        ...

    def cashiers(self) -> list[CashierRecord]:
        """Every record, by id."""
        ...


class MemoryCashierStore:
    """Cashier records in a dict: the shipped fake, for tests and the demo. Keeps nothing."""

    def __init__(self, records: Sequence[CashierRecord] = ()) -> None:
        self._records = {record.cashier_id: record for record in records}
        self._lock = threading.Lock()

    def get(self, cashier_id: str) -> CashierRecord | None:
        """The record of ``cashier_id``, or None."""
        with self._lock:
            return self._records.get(cashier_id)

    def put(self, record: CashierRecord) -> None:
        """Create or replace the record of ``record.cashier_id``."""
        with self._lock:
            self._records[record.cashier_id] = record

    def cashiers(self) -> list[CashierRecord]:
        """Every record, by id."""
        with self._lock:
            return [self._records[key] for key in sorted(self._records)]


# --- errors -------------------------------------------------------------------------------


class CashierAuthError(PermissionError):
    """A cashier action refused because of who asked: the message is for the cashier."""

    def __init__(self, message: str, cashier_id: str) -> None:
        super().__init__(message)
        self.cashier_id = cashier_id


class UnknownCashierError(CashierAuthError):
    """No cashier is enrolled with that id."""

    def __init__(self, cashier_id: str) -> None:
        super().__init__(f"no cashier {cashier_id!r} is enrolled", cashier_id)


class PinRejectedError(CashierAuthError):
    """A wrong PIN; ``attempts_left`` more wrong ones lock the cashier."""

    def __init__(self, cashier_id: str, attempts_left: int) -> None:
        super().__init__(
            f"wrong PIN for cashier {cashier_id}: {attempts_left} attempt(s) left before the "
            "cashier is locked",
            cashier_id,
        )
        self.attempts_left = attempts_left


class CashierLockedError(CashierAuthError):
    """Too many wrong PINs: the cashier is locked until ``locked_until`` (epoch seconds)."""

    def __init__(self, cashier_id: str, locked_until: float, now: float) -> None:
        until = time.strftime("%H:%M:%S", time.localtime(locked_until))
        remaining = max(0, int(locked_until - now + 0.999))
        super().__init__(
            f"cashier {cashier_id} is locked after too many wrong PINs until {until} "
            f"({remaining} s); a technician can unlock it sooner",
            cashier_id,
        )
        self.locked_until = locked_until
        self.remaining_s = remaining


class RoleRequiredError(CashierAuthError):
    """The right PIN, but this action needs another role (a supervisor for a large refund)."""

    def __init__(self, cashier_id: str, role: Role, needed: Sequence[Role], action: str) -> None:
        names = " or ".join(sorted(r.value for r in needed))
        super().__init__(f"{action} needs a {names}; {cashier_id} is a {role.value}", cashier_id)
        self.role = role
        self.needed = tuple(needed)


class CashierExistsError(ValueError):
    """Enrolling an id that is already enrolled."""


# --- enrolment (technician) ---------------------------------------------------------------

TECHNICIAN_ACTOR = "technician"
"""The audit actor for changes made from the command line."""


def enrol_cashier(
    store: CashierStore,
    cashier_id: str,
    name: str,
    pin: str,
    role: Role | str = Role.CASHIER,
    *,
    audit: AuditLog | None = None,
    actor: str = TECHNICIAN_ACTOR,
    replace_existing: bool = False,
) -> CashierRecord:
    """Enrol a cashier (or a supervisor, or a technician) with a PIN.

    Args:
        store: where cashier records live.
        cashier_id: the id typed on the PIN pad; letters, digits, ``-`` and ``_``.
        name: the person's name.
        pin: 4 to 8 digits; only its hash is stored.
        role: what they may do.
        audit: where to log the enrolment (the PIN is not logged).
        actor: who enrolled them, for the log.
        replace_existing: replace an enrolled id (a forgotten PIN) instead of refusing it.

    Raises:
        PinFormatError: the PIN is not 4 to 8 digits.
        CashierExistsError: the id is enrolled and ``replace_existing`` is false.
        ValueError: an empty or malformed id or name, or an unknown role.
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", cashier_id):
        raise ValueError("a cashier id is 1 to 32 letters, digits, '-' or '_'")
    if not name.strip():
        raise ValueError("a cashier needs a name")
    role = Role(role)
    existing = store.get(cashier_id)
    if existing is not None and not replace_existing:
        raise CashierExistsError(f"cashier {cashier_id} is already enrolled")
    record = CashierRecord(cashier_id, name.strip(), hash_pin(pin), role)
    store.put(record)
    if audit is not None:
        audit.append(
            actor,
            "cashier_enrolled",
            {
                "cashier_id": cashier_id,
                "name": record.name,
                "role": role.value,
                "replaced": existing is not None,
            },
        )
    logger.info("cashier %s enrolled as %s", cashier_id, role.value)
    return record


def unlock_cashier(
    store: CashierStore,
    cashier_id: str,
    *,
    audit: AuditLog | None = None,
    actor: str = TECHNICIAN_ACTOR,
) -> CashierRecord:
    """Lift a lockout before it runs out and clear the failure count.

    Raises:
        UnknownCashierError: no such cashier.
    """
    record = store.get(cashier_id)
    if record is None:
        raise UnknownCashierError(cashier_id)
    unlocked = after_success(record)
    store.put(unlocked)
    if audit is not None:
        audit.append(
            actor,
            "cashier_unlocked",
            {
                "cashier_id": cashier_id,
                "failures": record.failures,
                "locked_until": record.locked_until,
            },
        )
    return unlocked


# --- the desk -----------------------------------------------------------------------------

OTHER_TENDERS = ("cash", "other")
"""Ways a cashier takes payment without a card or face: cash, or anything else (a voucher)."""


def _require_reason(reason: str, what: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError(f"{what} needs a reason")
    return reason.strip()


def _item_ids(priced: PricedTray | None) -> list[str]:
    return [line.item_id for line in priced.lines] if priced else []


def _overrides(priced: PricedTray | None) -> dict[int, PriceOverride]:
    if priced is None:
        return {}
    return {i: line.override for i, line in enumerate(priced.lines) if line.override}


def _multiset_minus(left: Sequence[str], right: Sequence[str]) -> list[str]:
    return sorted((Counter(left) - Counter(right)).elements())


class CashierDesk:
    """Every cashier action on one terminal: PIN first, then the action, then the audit entry.

    Args:
        session: the terminal's checkout session.
        backend: the ledger or backend that charges and refunds.
        store: the cashier records.
        audit: the audit log.
        policy: the lockout rule.
        clock: seconds since the epoch (``time.time`` by default).
        new_id: makes refund ids (uuid4 hex by default).
        refund_supervisor_above_fen: a refund of more than this needs a supervisor.
    """

    def __init__(
        self,
        session: CheckoutSession,
        backend: LedgerBackend,
        store: CashierStore,
        audit: AuditLog,
        *,
        policy: PinPolicy | None = None,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] | None = None,
        refund_supervisor_above_fen: Fen = 5000,
    ) -> None:
        self.session = session
        self.backend = backend
        self.store = store
        self.audit = audit
        self.policy = policy or PinPolicy()
        self.refund_supervisor_above_fen = require_fen(
            refund_supervisor_above_fen, "refund_supervisor_above_fen"
        )
        self._clock = clock
        self._new_id = new_id or (lambda: uuid.uuid4().hex)
        # One action at a time: a PIN check and the action it allows must not interleave.
        self._lock = threading.RLock()

    # --- who --------------------------------------------------------------------------------

    def login(self, cashier_id: str, pin: str) -> CashierRecord:
        """Check a PIN to open the cashier screen; audited as ``login``.

        Raises:
            UnknownCashierError, PinRejectedError, CashierLockedError, RoleRequiredError.
        """
        with self._lock:
            record = self._authorise(cashier_id, pin, "login")
            self._log(record, "login", {"role": record.role.value})
            return record

    def change_pin(self, cashier_id: str, old_pin: str, new_pin: str) -> None:
        """A cashier changes their own PIN (any role); the old PIN counts as an attempt.

        Raises:
            PinFormatError: the new PIN is not 4 to 8 digits, or is the old one.
            UnknownCashierError, PinRejectedError, CashierLockedError.
        """
        validate_pin(new_pin)
        if new_pin == old_pin:
            raise PinFormatError("the new PIN must differ from the old one")
        with self._lock:
            record = self._authorise(cashier_id, old_pin, "change_pin", roles=frozenset(Role))
            self.store.put(after_success(replace(record, pin_hash=hash_pin(new_pin))))
            self._log(record, "pin_changed", {})

    def new_refund_id(self) -> str:
        """A fresh refund id: give it to :meth:`refund` to make a retry after a lost answer
        refund once."""
        return self._new_id()

    # --- the tray ---------------------------------------------------------------------------

    def resolve(
        self,
        cashier_id: str,
        pin: str,
        item_ids: Sequence[str],
        overrides: Mapping[int, tuple[Fen, str]] | None = None,
        reason: str = "",
        *,
        confirm_weight: bool = True,
    ) -> PricedTray:
        """Confirm what is on the tray: every dish, and any price overrides.

        Args:
            cashier_id: who.
            pin: their PIN.
            item_ids: menu ids of every dish on the tray.
            overrides: ``{line index: (price_fen, reason)}``; None keeps the overrides of lines
                that still hold the same dish at the same index.
            reason: why, for the log.
            confirm_weight: the cashier looked at the tray, so an odd weight no longer holds it.

        Returns:
            The priced tray the diner now sees.

        Raises:
            ValueError: an override without a reason, a negative price, a line out of range.
            UnknownDishError: an id is not on the menu.
            IllegalTransitionError: the session has no tray to resolve.
            CashierAuthError: the PIN or role was refused (see :meth:`login`).
        """
        items = list(item_ids)
        new_overrides = (
            self._checked_overrides(cashier_id, overrides, len(items))
            if overrides is not None
            else None
        )
        with self._lock:
            record = self._authorise(cashier_id, pin, "resolve")
            if new_overrides is None:
                priced = self.session.priced
                current = _item_ids(priced)
                new_overrides = {
                    i: override
                    for i, override in _overrides(priced).items()
                    if i < len(items) and items[i] == current[i]
                }
            return self._reprice(
                record, "tray_resolved", items, new_overrides, reason.strip(), confirm_weight, {}
            )

    def add_dish(
        self, cashier_id: str, pin: str, item_id: str, reason: str, *, confirm_weight: bool = True
    ) -> PricedTray:
        """Add a dish the terminal missed; returns the priced tray the diner now sees.

        Raises:
            ValueError: no reason. UnknownDishError: not on the menu.
            IllegalTransitionError, CashierAuthError: as for :meth:`resolve`.
        """
        reason = _require_reason(reason, "adding a dish")
        with self._lock:
            record = self._authorise(cashier_id, pin, "add_dish")
            priced = self.session.priced
            items = [*_item_ids(priced), item_id]
            return self._reprice(
                record,
                "dish_added",
                items,
                _overrides(priced),
                reason,
                confirm_weight,
                {"item_id": item_id, "line": len(items) - 1},
            )

    def remove_dish(
        self,
        cashier_id: str,
        pin: str,
        line_index: int,
        reason: str,
        *,
        confirm_weight: bool = True,
    ) -> PricedTray:
        """Remove a line the terminal saw wrongly (its override goes with it; later lines move up).

        Raises:
            ValueError: no reason. IndexError: no such line.
            IllegalTransitionError, CashierAuthError: as for :meth:`resolve`.
        """
        reason = _require_reason(reason, "removing a dish")
        with self._lock:
            record = self._authorise(cashier_id, pin, "remove_dish")
            priced = self.session.priced
            line = self._line(priced, line_index)
            items = _item_ids(priced)
            del items[line_index]
            overrides = {
                (i - 1 if i > line_index else i): override
                for i, override in _overrides(priced).items()
                if i != line_index
            }
            return self._reprice(
                record,
                "dish_removed",
                items,
                overrides,
                reason,
                confirm_weight,
                {"item_id": line.item_id, "line": line_index, "price_fen": line.price_fen},
            )

    def override_price(
        self,
        cashier_id: str,
        pin: str,
        line_index: int,
        price_fen: Fen,
        reason: str,
        *,
        confirm_weight: bool = True,
    ) -> PricedTray:
        """Set the price of one line; returns the priced tray the diner now sees.

        Raises:
            ValueError: no reason, a price that is not whole fen or is negative.
            IndexError: no such line.
            IllegalTransitionError, CashierAuthError: as for :meth:`resolve`.
        """
        reason = _require_reason(reason, "a price override")
        require_fen(price_fen, "override price")
        if price_fen < 0:
            raise ValueError("an override price must not be negative")
        with self._lock:
            record = self._authorise(cashier_id, pin, "override_price")
            priced = self.session.priced
            line = self._line(priced, line_index)
            overrides = _overrides(priced)
            overrides[line_index] = PriceOverride(price_fen, reason, record.cashier_id)
            return self._reprice(
                record,
                "price_override",
                _item_ids(priced),
                overrides,
                reason,
                confirm_weight,
                {
                    "line": line_index,
                    "item_id": line.item_id,
                    "old_price_fen": line.price_fen,
                    "new_price_fen": price_fen,
                    "unit_price_fen": line.unit_price_fen,
                    "grams": line.grams,
                },
            )

    # --- money ------------------------------------------------------------------------------

    def void(self, cashier_id: str, pin: str, reason: str) -> None:
        """End the checkout without payment (before the diner has paid); nothing is charged.

        Raises:
            ValueError: no reason.
            IllegalTransitionError: payment is under way or done (refund instead).
            CashierAuthError: as for :meth:`login`.
        """
        reason = _require_reason(reason, "a void")
        with self._lock:
            record = self._authorise(cashier_id, pin, "void")
            session = self.session
            priced = session.priced
            state_before = session.state
            checkout_id = session.checkout_id
            holds = [hold.reason.value for hold in session.holds]
            session.void(reason)
            self._log(
                record,
                "checkout_voided",
                {
                    "checkout_id": checkout_id,
                    "state_before": state_before.value,
                    "items": _item_ids(priced),
                    "total_fen": priced.total_fen if priced else 0,
                    "holds": holds,
                    "reason": reason,
                },
            )

    def refund(
        self,
        cashier_id: str,
        pin: str,
        transaction_id: str,
        amount_fen: Fen,
        reason: str,
        *,
        refund_id: str | None = None,
    ) -> RefundReceipt:
        """Give back part or all of a paid transaction.

        Args:
            cashier_id: who; a supervisor when ``amount_fen`` is above
                ``refund_supervisor_above_fen``.
            pin: their PIN.
            transaction_id: the paid transaction.
            amount_fen: how much to give back, more than 0.
            reason: why, for the log and the backend.
            refund_id: the idempotency key. Pass one (see :meth:`new_refund_id`) to retry after
                a lost answer without refunding twice; a fresh one is made when omitted.

        Raises:
            ValueError: no reason, an amount that is not positive whole fen.
            RoleRequiredError: the amount needs a supervisor.
            PaymentDeclinedError: ``unknown_transaction``, ``refund_exceeds``, ``voided``, ...
            BackendUnavailableError: the outcome is unknown; retry with the same ``refund_id``.
            CashierAuthError: as for :meth:`login`.
        """
        reason = _require_reason(reason, "a refund")
        require_fen(amount_fen, "refund amount")
        if amount_fen <= 0:
            raise ValueError("a refund must be more than 0 fen")
        with self._lock:
            record = self._authorise(cashier_id, pin, "refund")
            refund_id = refund_id or self._new_id()
            details: dict[str, object] = {
                "transaction_id": transaction_id,
                "refund_id": refund_id,
                "amount_fen": amount_fen,
                "reason": reason,
            }
            if amount_fen > self.refund_supervisor_above_fen and record.role is not Role.SUPERVISOR:
                self._log(
                    record,
                    "refund_refused",
                    {
                        **details,
                        "why": "supervisor_required",
                        "supervisor_above_fen": self.refund_supervisor_above_fen,
                    },
                )
                raise RoleRequiredError(
                    record.cashier_id,
                    record.role,
                    [Role.SUPERVISOR],
                    f"a refund above {self.refund_supervisor_above_fen} fen",
                )
            request = RefundRequest(refund_id, transaction_id, amount_fen, reason, cashier_id)
            try:
                receipt = self.backend.refund(request)
            except PaymentDeclinedError as exc:
                self._log(
                    record, "refund_declined", {**details, "code": exc.code, "why": exc.reason}
                )
                raise
            except (BackendUnavailableError, BackendRequestError) as exc:
                self._log(record, "refund_unconfirmed", {**details, "why": str(exc)})
                raise
            self._log(record, "refund", {**details, "balance_after_fen": receipt.balance_after_fen})
            return receipt

    def take_other_tender(
        self, cashier_id: str, pin: str, method: str, reason: str = ""
    ) -> PaymentReceipt:
        """Take payment for the tray another way: cash, or ``other`` (a voucher, an invoice).

        The payment is recorded by the backend (cash moves no account balance) before the
        session is told it is paid.

        Raises:
            ValueError: a method other than ``cash`` or ``other``.
            PaymentDeclinedError, BackendUnavailableError, BackendRequestError: nothing was
                recorded as paid; the session is back to awaiting payment (any other error
                from the backend does the same and is re-raised too).
            IllegalTransitionError: the tray is not awaiting payment.
            CashierAuthError: as for :meth:`login`.
        """
        if method not in OTHER_TENDERS:
            raise ValueError(f"other tender is one of {', '.join(OTHER_TENDERS)}, not {method!r}")
        reason = reason.strip()
        with self._lock:
            record = self._authorise(cashier_id, pin, "take_other_tender")
            session = self.session
            request = session.start_payment(method, record.cashier_id)
            details: dict[str, object] = {
                "checkout_id": request.checkout_id,
                "transaction_id": request.transaction_id,
                "method": method,
                "amount_fen": request.amount_fen,
                "items": _item_ids(request.priced),
                "reason": reason,
            }
            try:
                receipt = self.backend.charge(request, "")
            except PaymentDeclinedError as exc:
                session.payment_declined(exc.reason)
                self._log(record, "tender_failed", {**details, "code": exc.code, "why": exc.reason})
                raise
            except Exception as exc:
                # Nothing durable says "paid": the tray must stay payable, not stuck in PAYING.
                session.payment_declined(f"the payment was not recorded: {exc}")
                self._log(record, "tender_failed", {**details, "why": str(exc)})
                raise
            session.payment_approved(receipt)
            if not receipt.offline:
                # The backend holds it now: either it *is* the ledger or it answered the post.
                session.posted(receipt.transaction_id)
            details["offline"] = receipt.offline
            self._log(record, "other_tender", details)
            return receipt

    # --- internals --------------------------------------------------------------------------

    def _authorise(
        self,
        cashier_id: str,
        pin: str,
        operation: str,
        *,
        roles: frozenset[Role] = DESK_ROLES,
    ) -> CashierRecord:
        now = self._clock()
        actor = cashier_id or "(none)"
        record = self.store.get(cashier_id)
        if record is None:
            self.audit.append(
                actor, "pin_rejected", {"operation": operation, "why": "unknown_cashier"}
            )
            raise UnknownCashierError(cashier_id)
        if is_locked(record, now):
            assert record.locked_until is not None
            self._log(
                record, "locked_out", {"operation": operation, "locked_until": record.locked_until}
            )
            raise CashierLockedError(cashier_id, record.locked_until, now)
        if not check_pin(pin, record.pin_hash):
            failed = after_failure(record, self.policy, now)
            self.store.put(failed)
            if failed.locked_until is not None:
                logger.warning("cashier %s locked after %d wrong PINs", cashier_id, failed.failures)
                self._log(
                    record,
                    "cashier_locked",
                    {
                        "operation": operation,
                        "failures": failed.failures,
                        "locked_until": failed.locked_until,
                    },
                )
                raise CashierLockedError(cashier_id, failed.locked_until, now)
            left = attempts_left(failed, self.policy, now)
            self._log(
                record,
                "pin_rejected",
                {
                    "operation": operation,
                    "why": "wrong_pin",
                    "failures": failed.failures,
                    "attempts_left": left,
                },
            )
            raise PinRejectedError(cashier_id, left)
        if record.failures or record.locked_until is not None:
            record = after_success(record)
            self.store.put(record)
        if record.role not in roles:
            self._log(record, "role_refused", {"operation": operation, "role": record.role.value})
            raise RoleRequiredError(cashier_id, record.role, sorted(roles), operation)
        return record

    def _log(self, record: CashierRecord, action: str, details: Mapping[str, object]) -> None:
        self.audit.append(record.cashier_id, action, details)

    @staticmethod
    def _line(priced: PricedTray | None, line_index: int) -> PricedLine:
        count = len(priced.lines) if priced else 0
        if priced is None or not 0 <= line_index < count:
            raise IndexError(f"no line {line_index}: the tray has {count} line(s)")
        return priced.lines[line_index]

    def _checked_overrides(
        self, cashier_id: str, overrides: Mapping[int, tuple[Fen, str]], line_count: int
    ) -> dict[int, PriceOverride]:
        checked: dict[int, PriceOverride] = {}
        for index, (price_fen, reason) in overrides.items():
            if not 0 <= index < line_count:
                raise IndexError(f"override for line {index}, but the tray has {line_count}")
            require_fen(price_fen, f"override price of line {index}")
            if price_fen < 0:
                raise ValueError(f"override price of line {index} must not be negative")
            checked[index] = PriceOverride(
                price_fen, _require_reason(reason, f"the override of line {index}"), cashier_id
            )
        return checked

    def _reprice(
        self,
        record: CashierRecord,
        action: str,
        items: list[str],
        overrides: dict[int, PriceOverride],
        reason: str,
        confirm_weight: bool,
        extra: Mapping[str, object],
    ) -> PricedTray:
        session = self.session
        before = session.priced
        state_before = session.state
        items_before = _item_ids(before)
        session.resolve(items, overrides=overrides, confirm_weight=confirm_weight)
        after = session.priced
        assert after is not None
        self._log(
            record,
            action,
            {
                **extra,
                "checkout_id": session.checkout_id,
                "reason": reason,
                "state_before": state_before.value,
                "state_after": session.state.value,
                "items_before": items_before,
                "items_after": list(items),
                "added": _multiset_minus(items, items_before),
                "removed": _multiset_minus(items_before, items),
                "total_before_fen": before.total_fen if before else None,
                "total_after_fen": after.total_fen,
                "overrides": [
                    {
                        "line": index,
                        "item_id": items[index],
                        "price_fen": override.price_fen,
                        "reason": override.reason,
                        "cashier_id": override.cashier_id,
                    }
                    for index, override in sorted(overrides.items())
                ],
                "holds_after": [hold.reason.value for hold in session.holds],
            },
        )
        return after
