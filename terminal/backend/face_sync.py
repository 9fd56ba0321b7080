"""Face templates between the backend and the terminal: the records, their JSON, and the sync.

The backend (the embedded ledger or the reference server) keeps every enrolled account's
templates with the account, never the photos. A terminal keeps a copy in its encrypted cache
(:mod:`terminal.backend.face_cache`) so that it matches faces offline, and refreshes it with
``face_templates_since(cursor)``: the backend answers with every account whose templates changed
after ``cursor`` (all of that account's templates, which replace the cached ones), every account
whose templates were deleted (the terminal purges them), and the new cursor. A cursor of 0 asks
for everything.

On the wire a template is its float32 values, little-endian, in base64 (512 bytes for dlib's
128-d model), with the id of the model that made it: a terminal only matches templates of its
own model.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

#: The version of :data:`CONSENT_TEXT`, recorded with every enrolment.
CONSENT_TEXT_VERSION = "face-consent-v1"
#: What a diner agrees to before their face is enrolled, in Chinese and English; the version
#: recorded with the enrolment is :data:`CONSENT_TEXT_VERSION`. Change the text, change the version.
CONSENT_TEXT = (
    "我同意食堂在我的饭卡账户下保存我的人脸特征（由摄像头画面算出的一组数字，不保存照片），"
    "仅用于在食堂结算时认出我，并在我本人确认后从该账户付款。我可以随时要求删除，"
    "删除后全部人脸特征立即清除。",
    "I agree that the canteen keeps face templates (numbers computed from the camera picture; "
    "no photo is kept) with my meal account, used only to recognise me at the canteen's "
    "checkout and to charge that account after I confirm. I may ask for them to be deleted at "
    "any time; all of them are then removed.",
)
#: The most templates one account may hold.
MAX_TEMPLATES = 20


class FaceEnrolmentError(ValueError):
    """An enrolment the backend refuses: no consent, no templates, unknown account, ..."""


@dataclass(frozen=True)
class FaceConsent:
    """The diner's explicit consent, recorded with the templates.

    Attributes:
        given_by: who consented (the diner's name as they gave it, or the operator who took a
            signed form).
        text_version: the version of the consent text shown (:data:`CONSENT_TEXT_VERSION`).
        given_at: when, seconds since the epoch.
    """

    given_by: str
    text_version: str = CONSENT_TEXT_VERSION
    given_at: float = field(default_factory=time.time)

    def check(self) -> None:
        """Raises FaceEnrolmentError when the consent is incomplete."""
        if not self.given_by.strip():
            raise FaceEnrolmentError("consent: who consented must be recorded")
        if not self.text_version.strip():
            raise FaceEnrolmentError("consent: the consent text version must be recorded")

    def to_json(self) -> dict[str, Any]:
        return {
            "given_by": self.given_by,
            "text_version": self.text_version,
            "given_at": self.given_at,
        }


@dataclass(frozen=True)
class FaceEnrolmentReceipt:
    """What the backend answered to an enrolment."""

    account_id: str
    template_count: int
    model: str
    enrolled_at: float
    cursor: int


@dataclass(frozen=True)
class FaceAccountRecord:
    """One account's templates as the backend hands them to terminals."""

    account_id: str
    display_name: str
    model: str
    templates: npt.NDArray[np.float32]
    blocked: bool = False


@dataclass(frozen=True)
class FaceTemplateChanges:
    """The answer to ``face_templates_since``."""

    cursor: int
    accounts: list[FaceAccountRecord]
    deleted: list[str]


@runtime_checkable
class FaceTemplateBackend(Protocol):
    """What a backend offers for face accounts (the embedded ledger, the HTTP client)."""

    def enrol_face(
        self,
        account_id: str,
        templates: npt.NDArray[np.float32],
        model: str,
        consent: FaceConsent,
        *,
        card_id: str | None = None,
    ) -> FaceEnrolmentReceipt:
        """Store an account's templates (replacing any before) with the consent record.

        ``card_id``: a card of that account, the proof a terminal gives that the diner in
        front of it owns the account (the reference server requires it from terminals).

        Raises:
            FaceEnrolmentError: unknown account, no consent, bad templates.
        """
        ...

    def delete_face(self, account_id: str, *, card_id: str | None = None, reason: str = "") -> int:
        """Delete every template of the account; returns how many there were."""
        ...

    def face_templates_since(self, cursor: int) -> FaceTemplateChanges:
        """The accounts whose templates changed or were deleted after ``cursor``."""
        ...


def encode_template(template: npt.NDArray[np.float32]) -> str:
    """A template as base64 of its little-endian float32 values."""
    return base64.b64encode(np.asarray(template, dtype="<f4").tobytes()).decode("ascii")


def decode_template(text: str, dim: int | None = None) -> npt.NDArray[np.float32]:
    """The inverse of :func:`encode_template`.

    Raises:
        ValueError: not base64, a length that is not whole float32s (or not ``dim`` of them),
            or values that are not finite.
    """
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"template is not base64: {exc}") from None
    if not raw or len(raw) % 4:
        raise ValueError(f"template of {len(raw)} bytes is not a whole number of float32")
    values = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if dim is not None and values.shape[0] != dim:
        raise ValueError(f"template has {values.shape[0]} values, {dim} expected")
    if not np.isfinite(values).all():
        raise ValueError("template holds NaN or infinity")
    return values


def encode_templates(
    templates: Sequence[npt.NDArray[np.float32]] | npt.NDArray[np.float32],
) -> list[str]:
    return [encode_template(np.asarray(row, dtype=np.float32)) for row in templates]


def enrolment_body(
    templates: npt.NDArray[np.float32], model: str, consent: FaceConsent, card_id: str | None
) -> dict[str, Any]:
    """The body of an enrolment request."""
    body: dict[str, Any] = {
        "model": model,
        "templates": encode_templates(templates),
        "consent": consent.to_json(),
    }
    if card_id is not None:
        body["card_id"] = card_id
    return body


def changes_from_json(payload: dict[str, Any]) -> FaceTemplateChanges:
    """Read ``GET /v1/face-templates``'s answer."""
    accounts = [
        FaceAccountRecord(
            account_id=str(row["account_id"]),
            display_name=str(row.get("display_name", "")),
            model=str(row["model"]),
            templates=np.stack([decode_template(str(t)) for t in row["templates"]]),
            blocked=bool(row.get("blocked", False)),
        )
        for row in payload.get("accounts", [])
    ]
    return FaceTemplateChanges(
        int(payload["cursor"]), accounts, [str(a) for a in payload.get("deleted", [])]
    )


def changes_to_json(changes: FaceTemplateChanges) -> dict[str, Any]:
    """The inverse of :func:`changes_from_json` (the embedded ledger's answers in tests)."""
    return {
        "cursor": changes.cursor,
        "accounts": [
            {
                "account_id": record.account_id,
                "display_name": record.display_name,
                "model": record.model,
                "templates": encode_templates(record.templates),
                "blocked": record.blocked,
            }
            for record in changes.accounts
        ],
        "deleted": list(changes.deleted),
    }
