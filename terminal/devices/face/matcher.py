"""1:N search of a face template among every enrolled diner's templates.

All templates sit in one float32 matrix; a search is one matrix-vector product
(``|a - b|^2 = |a|^2 + |b|^2 - 2 a.b``, the squared norms kept beside the matrix), so 10,000
templates take well under a millisecond of arithmetic. The answer is decided per *account*,
not per template: the best account is the one owning the nearest template, and the runner-up
is the nearest template of any *other* account. A diner is proposed only when

* the best distance is below ``threshold`` (a stranger is not proposed), and
* the runner-up account is at least ``margin`` farther away (two diners who look alike to the
  model are not guessed between: the diner is asked for the card instead).

A false match charges the wrong diner while a missed one only asks for the card, so the default
threshold, 0.5, is stricter than dlib's "same person" 0.6.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from terminal.devices.face.types import Template, as_templates

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5
DEFAULT_MARGIN = 0.08


class MatchKind(Enum):
    MATCH = "match"
    NO_MATCH = "no_match"
    TOO_CLOSE = "too_close"
    EMPTY = "empty"


@dataclass(frozen=True)
class EnrolledFace:
    """One account's templates as the matcher holds them."""

    account_id: str
    display_name: str
    templates: npt.NDArray[np.float32]
    blocked: bool = False


@dataclass(frozen=True)
class MatchResult:
    """The answer of one search.

    Attributes:
        kind: match, no match (nobody close enough), too close (two accounts nearly as close),
            or empty (nobody is enrolled).
        account_id: the nearest account (also given for no_match/too_close, for the audit).
        display_name: its name, unmasked (mask it before showing it: :func:`mask_name`).
        distance: distance to the nearest template.
        runner_up_distance: distance to the nearest template of another account (inf if none).
        runner_up_account_id: that other account.
    """

    kind: MatchKind
    account_id: str | None = None
    display_name: str = ""
    distance: float = float("inf")
    runner_up_distance: float = float("inf")
    runner_up_account_id: str | None = None

    @property
    def matched(self) -> bool:
        return self.kind is MatchKind.MATCH


class FaceMatcher:
    """Enrolled templates in one matrix, searched 1:N.

    Args:
        threshold: the largest distance accepted as the same person.
        margin: how much farther the second-best account must be.
        dim: the template length.

    Thread-safe: the sync worker may replace accounts while the payment path searches.
    """

    def __init__(
        self,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        margin: float = DEFAULT_MARGIN,
        dim: int = 128,
    ) -> None:
        if threshold <= 0 or margin < 0:
            raise ValueError("threshold must be positive and margin not negative")
        self.threshold = threshold
        self.margin = margin
        self.dim = dim
        self._lock = threading.Lock()
        self._accounts: dict[str, EnrolledFace] = {}
        self._matrix = np.zeros((0, dim), np.float32)
        self._norms = np.zeros(0, np.float32)
        self._owner = np.zeros(0, np.int64)
        self._ids: list[str] = []

    def __len__(self) -> int:
        """How many templates are enrolled."""
        return int(self._matrix.shape[0])

    @property
    def account_count(self) -> int:
        return len(self._accounts)

    def account_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._accounts)

    def replace_all(self, accounts: Iterable[EnrolledFace]) -> None:
        """Hold exactly these accounts."""
        with self._lock:
            self._accounts = {}
            for account in accounts:
                self._accounts[account.account_id] = self._checked(account)
            self._rebuild()

    def upsert(self, account: EnrolledFace) -> None:
        """Add an account or replace its templates."""
        with self._lock:
            self._accounts[account.account_id] = self._checked(account)
            self._rebuild()

    def remove(self, account_id: str) -> bool:
        """Forget an account's templates; whether it had any."""
        with self._lock:
            removed = self._accounts.pop(account_id, None) is not None
            if removed:
                self._rebuild()
            return removed

    def _checked(self, account: EnrolledFace) -> EnrolledFace:
        templates = as_templates(account.templates, self.dim)
        if templates.shape[0] == 0:
            raise ValueError(f"account {account.account_id}: no templates")
        return EnrolledFace(account.account_id, account.display_name, templates, account.blocked)

    def _rebuild(self) -> None:
        accounts = list(self._accounts.values())
        self._ids = [account.account_id for account in accounts]
        if not accounts:
            self._matrix = np.zeros((0, self.dim), np.float32)
            self._norms = np.zeros(0, np.float32)
            self._owner = np.zeros(0, np.int64)
            return
        self._matrix = np.ascontiguousarray(np.concatenate([a.templates for a in accounts]))
        self._norms = np.einsum("ij,ij->i", self._matrix, self._matrix)
        self._owner = np.repeat(
            np.arange(len(accounts), dtype=np.int64), [a.templates.shape[0] for a in accounts]
        )

    def search(self, template: Template) -> MatchResult:
        """The nearest account and whether it is a confident match."""
        query = as_templates(template, self.dim)[0]
        with self._lock:
            matrix, norms, owner, ids = self._matrix, self._norms, self._owner, self._ids
            accounts = self._accounts
        if matrix.shape[0] == 0:
            return MatchResult(MatchKind.EMPTY)
        squared = norms + float(query @ query) - 2.0 * (matrix @ query)
        best = int(np.argmin(squared))
        best_owner = int(owner[best])
        distance = float(np.sqrt(max(0.0, float(squared[best]))))
        others = owner != best_owner
        runner_up = float("inf")
        runner_up_id = None
        if others.any():
            masked = np.where(others, squared, np.inf)
            second = int(np.argmin(masked))
            runner_up = float(np.sqrt(max(0.0, float(masked[second]))))
            runner_up_id = ids[int(owner[second])]
        account = accounts[ids[best_owner]]
        if distance > self.threshold:
            kind = MatchKind.NO_MATCH
        elif runner_up - distance < self.margin:
            kind = MatchKind.TOO_CLOSE
        else:
            kind = MatchKind.MATCH
        return MatchResult(
            kind, account.account_id, account.display_name, distance, runner_up, runner_up_id
        )


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return (
        0x3400 <= code <= 0x9FFF
        or 0xF900 <= code <= 0xFAFF
        or 0x20000 <= code <= 0x2FA1F
        or 0x3040 <= code <= 0x30FF
        or 0xAC00 <= code <= 0xD7AF
    )


def mask_name(name: str) -> str:
    """A name as the confirm button shows it: enough for the diner, little for onlookers.

    Chinese (and other CJK) names keep their first character and mask each other one
    ("王伟" -> "王*", "欧阳娜娜" -> "欧***"); other names keep their first word and hide the rest
    behind a fixed "**", so the length does not show ("Wang Wei" -> "Wang **"); a single word
    keeps its first letter ("Madonna" -> "M**").
    """
    name = name.strip()
    if not name:
        return "**"
    if any(_is_cjk(char) for char in name):
        compact = name.replace(" ", "")
        return compact[0] + "*" * max(1, len(compact) - 1)
    words = name.split()
    if len(words) >= 2:
        return f"{words[0]} **"
    return f"{name[0]}**"
