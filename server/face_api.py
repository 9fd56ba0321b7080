"""Face accounts on the reference server: enrolment with consent, deletion, and the terminals' sync.

Templates are kept with the account (``face_templates``: float32 bytes per template, the model
that made them), never photos: the API has no field that could carry one. ``face_events``
records every enrolment (who consented, the consent text's version, when) and every deletion;
its ``seq`` is the cursor of ``GET /v1/face-templates?since=``, so a terminal learns of every
account whose templates changed or were deleted and invalidates its cache accordingly.

Writes to ``face_events`` are serialised (on PostgreSQL a table lock held to the commit;
SQLite's writer lock does it anyway) so that sequence numbers become visible in order and a
terminal that synced to cursor N can never miss an event below N that committed later.

Terminals may enrol or delete only with a card of that account (``card_id``: the diner taps
the card on the enrolment screen, which proves the account is theirs); the admin API may do
either without one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import numpy as np
import sqlalchemy as sa
from fastapi import FastAPI, Query
from pydantic import Field
from sqlalchemy.engine import Connection

from server.app import _ADMIN, Claim, PathId, _errors
from server.errors import ApiError
from server.models import ID_PATTERN, Answer, RequestBody
from server.schema import accounts, cards, face_events, face_templates
from server.store import NonceClaim, Store, require_account
from terminal.backend.face_sync import MAX_TEMPLATES, decode_template, encode_template

logger = logging.getLogger(__name__)

MODEL_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
#: The longest template accepted (floats).
MAX_TEMPLATE_DIM = 2048


class FaceConsentBody(RequestBody):
    """The diner's explicit consent, recorded with the enrolment."""

    given_by: str = Field(min_length=1, max_length=200, description="who consented")
    text_version: str = Field(
        min_length=1, max_length=64, description="version of the consent text shown"
    )
    given_at: float = Field(description="when, unix seconds")


class FaceEnrolBody(RequestBody):
    """Templates to store for an account (they replace any enrolled before)."""

    model: str = Field(pattern=MODEL_PATTERN, examples=["dlib_resnet_v1"])
    templates: list[str] = Field(
        min_length=1,
        max_length=MAX_TEMPLATES,
        description="each template's float32 values, little-endian, base64",
    )
    consent: FaceConsentBody
    card_id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="a card of this account: required from terminals, as proof of ownership",
    )


class FaceDeleteBody(RequestBody):
    """A diner's request, at a terminal, to delete their face templates."""

    card_id: str = Field(pattern=ID_PATTERN)
    reason: str = Field(default="", max_length=500)


class FaceEnrolAnswer(Answer):
    account_id: str
    template_count: int
    model: str
    enrolled_at: float
    cursor: int


class FaceDeleteAnswer(Answer):
    account_id: str
    deleted_templates: int
    cursor: int


class FaceAccountEntry(Answer):
    account_id: str
    display_name: str
    blocked: bool
    model: str
    templates: list[str]


class FaceTemplatesAnswer(Answer):
    """What changed after ``since``: accounts with their templates now, and deleted accounts."""

    cursor: int
    accounts: list[FaceAccountEntry]
    deleted: list[str]
    server_time: float


class FaceStore:
    """The face operations on the server's database.

    Args:
        store: the server's store (its engine, transactions and nonce handling).
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def _serialise(self, conn: Connection) -> None:
        if self.store.database == "postgresql":
            conn.execute(sa.text("LOCK TABLE face_events IN SHARE ROW EXCLUSIVE MODE"))

    @staticmethod
    def _require_card(conn: Connection, account_id: str, card_id: str | None) -> None:
        if card_id is None:
            raise ApiError(422, "invalid_request", "card_id: a terminal must give the diner's card")
        owner = conn.execute(
            sa.select(cards.c.account_id).where(cards.c.card_id == card_id)
        ).scalar_one_or_none()
        if owner != account_id:
            raise ApiError(403, "card_mismatch", f"card is not a card of account {account_id}")

    @contextmanager
    def _changing(
        self, account_id: str, claim: NonceClaim | None, card_id: str | None
    ) -> Iterator[Connection]:
        """One database transaction that changes the account's templates: face events are
        serialised, the account must exist, and a terminal (``claim``) must give a card of it.

        Raises:
            ApiError: 404 ``unknown_account``, 403 ``card_mismatch``, 422 without a card.
        """
        with self.store._write(claim) as conn:
            self._serialise(conn)
            require_account(conn, account_id)
            if claim is not None:
                self._require_card(conn, account_id, card_id)
            yield conn

    @staticmethod
    def _record_event(
        conn: Connection,
        *,
        account_id: str,
        event: str,
        actor: str,
        template_count: int,
        at: float,
        **details: str | float | None,
    ) -> int:
        """Record an enrolment or a deletion (``details``: the consent, the reason); returns
        its sequence number, the terminals' sync cursor."""
        seq = conn.execute(
            sa.insert(face_events)
            .values(
                account_id=account_id,
                event=event,
                actor=actor,
                template_count=template_count,
                at=at,
                **details,
            )
            .returning(face_events.c.seq)
        ).scalar_one()
        return int(seq)

    def enrol(
        self, account_id: str, body: FaceEnrolBody, claim: NonceClaim | None = None
    ) -> FaceEnrolAnswer:
        """Replace the account's templates and record the enrolment and its consent.

        Raises:
            ApiError: 404 ``unknown_account``, 403 ``card_mismatch`` (terminals), 422 for a
                template that is not base64 float32 or templates of unequal length.
        """
        templates = _decode_all(body.templates)
        now = time.time()
        actor = claim.terminal_id if claim else "admin"
        with self._changing(account_id, claim, body.card_id) as conn:
            conn.execute(sa.delete(face_templates).where(face_templates.c.account_id == account_id))
            conn.execute(
                sa.insert(face_templates),
                [
                    {
                        "account_id": account_id,
                        "position": i,
                        "model": body.model,
                        "template": row.astype("<f4").tobytes(),
                        "enrolled_at": now,
                    }
                    for i, row in enumerate(templates)
                ],
            )
            seq = self._record_event(
                conn,
                account_id=account_id,
                event="enrolled",
                actor=actor,
                template_count=len(templates),
                consent_given_by=body.consent.given_by,
                consent_text_version=body.consent.text_version,
                consent_given_at=body.consent.given_at,
                at=now,
            )
        logger.info("face enrolled for %s by %s: %d templates", account_id, actor, len(templates))
        return FaceEnrolAnswer(
            account_id=account_id,
            template_count=len(templates),
            model=body.model,
            enrolled_at=now,
            cursor=seq,
        )

    def delete(
        self,
        account_id: str,
        *,
        claim: NonceClaim | None = None,
        card_id: str | None = None,
        reason: str = "",
    ) -> FaceDeleteAnswer:
        """Delete every template of the account and record the deletion.

        Raises:
            ApiError: 404 ``unknown_account``, 403 ``card_mismatch`` (terminals).
        """
        actor = claim.terminal_id if claim else "admin"
        with self._changing(account_id, claim, card_id) as conn:
            count = conn.execute(
                sa.delete(face_templates).where(face_templates.c.account_id == account_id)
            ).rowcount
            seq = self._record_event(
                conn,
                account_id=account_id,
                event="deleted",
                actor=actor,
                template_count=int(count),
                reason=reason or None,
                at=time.time(),
            )
        logger.info("face templates of %s deleted by %s (%d)", account_id, actor, count)
        return FaceDeleteAnswer(account_id=account_id, deleted_templates=int(count), cursor=seq)

    def changes_since(self, since: int, claim: NonceClaim | None = None) -> FaceTemplatesAnswer:
        """Every account whose templates changed or were deleted after ``since``."""
        with self.store._read_for(claim) as conn:
            cursor = int(
                conn.execute(
                    sa.select(sa.func.coalesce(sa.func.max(face_events.c.seq), 0))
                ).scalar_one()
            )
            changed = [
                str(row[0])
                for row in conn.execute(
                    sa.select(face_events.c.account_id)
                    .where(face_events.c.seq > since, face_events.c.seq <= cursor)
                    .distinct()
                    .order_by(face_events.c.account_id)
                )
            ]
            rows = (
                conn.execute(
                    sa.select(
                        face_templates.c.account_id,
                        face_templates.c.model,
                        face_templates.c.template,
                        accounts.c.display_name,
                        accounts.c.blocked,
                    )
                    .select_from(face_templates.join(accounts))
                    .where(face_templates.c.account_id.in_(changed))
                    .order_by(face_templates.c.account_id, face_templates.c.position)
                ).all()
                if changed
                else []
            )
        entries: dict[str, FaceAccountEntry] = {}
        for row in rows:
            entry = entries.get(row.account_id)
            if entry is None:
                entry = FaceAccountEntry(
                    account_id=row.account_id,
                    display_name=row.display_name,
                    blocked=bool(row.blocked),
                    model=row.model,
                    templates=[],
                )
                entries[row.account_id] = entry
            template = np.frombuffer(bytes(row.template), dtype="<f4").astype(np.float32)
            entry.templates.append(encode_template(template))
        return FaceTemplatesAnswer(
            cursor=cursor,
            accounts=[entries[a] for a in changed if a in entries],
            deleted=[a for a in changed if a not in entries],
            server_time=time.time(),
        )


def _decode_all(texts: list[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
    try:
        templates = [decode_template(text) for text in texts]
    except ValueError as exc:
        raise ApiError(422, "invalid_request", f"templates: {exc}") from None
    lengths = {len(t) for t in templates}
    if len(lengths) != 1:
        raise ApiError(422, "invalid_request", "templates: all must have the same length")
    if lengths.pop() > MAX_TEMPLATE_DIM:
        raise ApiError(422, "invalid_request", f"templates: at most {MAX_TEMPLATE_DIM} values")
    return np.stack(templates)


def add_face_routes(app: FastAPI, store: Store) -> None:
    """The face endpoints: the terminals' (signed) and the admin's (bearer token)."""
    faces = FaceStore(store)

    @app.get("/v1/face-templates", tags=["terminal"], responses=_errors(401, 422))
    def face_templates_since(
        claim: Claim,
        since: Annotated[int, Query(ge=0, description="the cursor of the last sync; 0: all")] = 0,
    ) -> FaceTemplatesAnswer:
        """Face templates that changed after `since` (their accounts' templates now) and the
        accounts whose templates were deleted, with the new cursor."""
        return faces.changes_since(since, claim)

    @app.post(
        "/v1/accounts/{account_id}/face",
        tags=["terminal"],
        status_code=201,
        responses=_errors(400, 401, 403, 404, 422),
    )
    def enrol_at_terminal(account_id: PathId, body: FaceEnrolBody, claim: Claim) -> FaceEnrolAnswer:
        """Enrol the diner's face templates with their consent; `card_id` (a card of the
        account) is required; 403 `card_mismatch`. Replaces earlier templates."""
        return faces.enrol(account_id, body, claim)

    @app.post(
        "/v1/accounts/{account_id}/face/delete",
        tags=["terminal"],
        responses=_errors(400, 401, 403, 404, 422),
    )
    def delete_at_terminal(
        account_id: PathId, body: FaceDeleteBody, claim: Claim
    ) -> FaceDeleteAnswer:
        """Delete every face template of the account at the diner's request (their card)."""
        return faces.delete(account_id, claim=claim, card_id=body.card_id, reason=body.reason)

    @app.post(
        "/v1/admin/accounts/{account_id}/face",
        tags=["admin"],
        status_code=201,
        dependencies=_ADMIN,
        responses=_errors(400, 401, 404, 422),
    )
    def enrol_by_admin(account_id: PathId, body: FaceEnrolBody) -> FaceEnrolAnswer:
        """Enrol face templates with the consent record; replaces earlier templates."""
        return faces.enrol(account_id, body)

    @app.delete(
        "/v1/admin/accounts/{account_id}/face",
        tags=["admin"],
        dependencies=_ADMIN,
        responses=_errors(401, 404, 422),
    )
    def delete_by_admin(
        account_id: PathId,
        reason: Annotated[str, Query(max_length=500, description="why, for the record")] = "",
    ) -> FaceDeleteAnswer:
        """Delete every face template of the account."""
        return faces.delete(account_id, reason=reason)
