"""The audit log's rules: what an entry holds, how entries are chained, how a chain is checked.

Every cashier action (and every refused PIN) becomes one :class:`AuditEntry`. Entries are
numbered from 1 and chained: each carries the hash of the entry before it (the first carries
:data:`GENESIS_HASH`), and its own hash is::

    entry_hash = sha256(prev_hash + canonical_json(seq, timestamp, actor, terminal_id,
                                                    action, details))

where the canonical JSON has sorted keys, no whitespace and UTF-8 text. Editing, inserting,
reordering or deleting an entry in the middle of the log therefore breaks the chain at that
point, and :func:`verify_chain` names it. Cutting entries off the *end* leaves a shorter chain
that is still intact; only a head recorded elsewhere (``anchor``) shows that, which is why
:func:`verify_chain` accepts one.

This module is pure: storage lives in :mod:`terminal.backend.audit_store`.
:class:`MemoryAuditLog` is the shipped fake, for tests and the demo.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

logger = logging.getLogger(__name__)

#: The ``prev_hash`` of the first entry of every log.
GENESIS_HASH = hashlib.sha256(b"trayscan audit log genesis").hexdigest()

JsonDict = dict[str, Any]
"""A dict that survives a JSON round trip unchanged (str keys; str, int, float, bool, None,
lists and dicts as values)."""


class AuditError(ValueError):
    """An entry that cannot be logged: details that are not JSON, an empty actor or action."""


def canonical_json(value: object) -> str:
    """The one serialisation the hashes are computed over: sorted keys, no spaces, no NaN.

    Raises:
        AuditError: ``value`` holds something JSON cannot represent.
    """
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit details must be plain JSON: {exc}") from None


def normalise_details(details: Mapping[str, object]) -> JsonDict:
    """``details`` as it will read back from storage (tuples become lists, and so on).

    Hashing the normalised form is what lets a stored entry verify after a round trip.

    Raises:
        AuditError: a key is not a string or a value is not JSON.
    """
    if any(not isinstance(key, str) for key in details):
        raise AuditError("audit detail keys must be strings")
    normalised: JsonDict = json.loads(canonical_json(dict(details)))
    return normalised


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log.

    Attributes:
        seq: position in the log, from 1, without gaps.
        timestamp: seconds since the epoch when the entry was written.
        actor: who acted: a cashier id, or ``technician`` for the command line.
        terminal_id: the terminal the action happened on.
        action: what was done, e.g. ``price_override`` or ``pin_rejected``.
        details: everything needed to understand the action later (plain JSON).
        prev_hash: ``entry_hash`` of the entry before, or :data:`GENESIS_HASH`.
        entry_hash: this entry's hash, by the rule in the module docstring.
    """

    seq: int
    timestamp: float
    actor: str
    terminal_id: str
    action: str
    details: JsonDict
    prev_hash: str
    entry_hash: str

    def canonical(self) -> bytes:
        """The entry's hashed content (everything but the two hashes), canonical UTF-8 JSON."""
        body = {
            "seq": self.seq,
            "timestamp": self.timestamp,
            "actor": self.actor,
            "terminal_id": self.terminal_id,
            "action": self.action,
            "details": self.details,
        }
        return canonical_json(body).encode("utf-8")

    def computed_hash(self) -> str:
        """What ``entry_hash`` must be for this content and ``prev_hash``."""
        return compute_hash(self.prev_hash, self.canonical())


def compute_hash(prev_hash: str, canonical: bytes) -> str:
    """``sha256(prev_hash + canonical)`` as lowercase hex."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical).hexdigest()


def make_entry(
    head: tuple[int, str] | None,
    *,
    actor: str,
    terminal_id: str,
    action: str,
    details: Mapping[str, object],
    timestamp: float,
) -> AuditEntry:
    """The entry that follows ``head``, hash included.

    Args:
        head: ``(seq, entry_hash)`` of the log's last entry, or None for an empty log.
        actor: who acted.
        terminal_id: where.
        action: what was done.
        details: the particulars, plain JSON.
        timestamp: seconds since the epoch.

    Raises:
        AuditError: an empty actor or action, or details that are not plain JSON.
    """
    if not actor:
        raise AuditError("an audit entry needs an actor")
    if not action:
        raise AuditError("an audit entry needs an action")
    unhashed = AuditEntry(
        seq=head[0] + 1 if head else 1,
        timestamp=float(timestamp),
        actor=actor,
        terminal_id=terminal_id,
        action=action,
        details=normalise_details(details),
        prev_hash=head[1] if head else GENESIS_HASH,
        entry_hash="",
    )
    return replace(unhashed, entry_hash=unhashed.computed_hash())


def verify_chain(
    entries: Sequence[AuditEntry], *, anchor: tuple[int, str] | None = None
) -> list[str]:
    """Check a whole log; returns one line per problem, each naming a seq, empty when intact.

    Entries are checked in seq order, whatever order they are given in: storage order is
    not evidence, and the seq of every entry is covered by its hash.

    Args:
        entries: every entry of the log.
        anchor: ``(seq, entry_hash)`` of an entry recorded elsewhere earlier (a printed head,
            a copy on the backend): the log must still hold that entry with that hash, which
            is what reveals entries cut off the end or a log rewritten from scratch.
    """
    problems: list[str] = []
    expected_seq = 1
    expected_prev = GENESIS_HASH
    for entry in sorted(entries, key=lambda e: e.seq):
        gap = entry.seq > expected_seq
        if gap:
            missing = (
                f"seq {expected_seq}"
                if entry.seq == expected_seq + 1
                else f"seq {expected_seq}..{entry.seq - 1}"
            )
            problems.append(f"{missing} missing (deleted from the log)")
        elif entry.seq < expected_seq:
            problems.append(f"seq {entry.seq} appears more than once (an entry was slipped in)")
        if entry.computed_hash() != entry.entry_hash:
            problems.append(f"seq {entry.seq} altered: its content does not match its hash")
        if not gap and entry.prev_hash != expected_prev:
            problems.append(
                f"seq {entry.seq} broken link: it does not follow seq {entry.seq - 1} "
                "(an entry before it was altered or replaced)"
            )
        expected_seq = max(expected_seq, entry.seq + 1)
        expected_prev = entry.entry_hash
    if anchor is not None:
        anchor_seq, anchor_hash = anchor
        held = {entry.seq: entry.entry_hash for entry in entries}
        if anchor_seq not in held:
            problems.append(
                f"seq {anchor_seq} missing: the log ends at seq {expected_seq - 1} but seq "
                f"{anchor_seq} was recorded earlier (entries cut off the end)"
            )
        elif held[anchor_seq] != anchor_hash:
            problems.append(
                f"seq {anchor_seq} differs from the head recorded earlier (the log was rewritten)"
            )
    return problems


@runtime_checkable
class AuditLog(Protocol):
    """An append-only, hash-chained log of cashier actions."""

    def append(self, actor: str, action: str, details: Mapping[str, object]) -> AuditEntry:
        """Write one entry, durably, and return it with its seq and hashes."""
        ...

    def entries(self) -> list[AuditEntry]:
        """Every entry, oldest first."""
        ...

    def verify(self) -> list[str]:
        """Re-read the whole log and check its chain; empty when intact."""
        ...


@dataclass
class MemoryAuditLog:
    """An audit log in a list: the shipped fake, for tests and the demo. Keeps nothing."""

    terminal_id: str = ""
    clock: Callable[[], float] = time.time
    _entries: list[AuditEntry] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def append(self, actor: str, action: str, details: Mapping[str, object]) -> AuditEntry:
        """Chain and keep one entry."""
        with self._lock:
            last = self._entries[-1] if self._entries else None
            entry = make_entry(
                (last.seq, last.entry_hash) if last else None,
                actor=actor,
                terminal_id=self.terminal_id,
                action=action,
                details=details,
                timestamp=self.clock(),
            )
            self._entries.append(entry)
        logger.info("audit %d: %s by %s", entry.seq, action, actor)
        return entry

    def entries(self) -> list[AuditEntry]:
        """Every entry, oldest first."""
        with self._lock:
            return list(self._entries)

    def verify(self) -> list[str]:
        """Check the chain of what is held."""
        return verify_chain(self.entries())
