"""Face accounts at the terminal: enrol, delete, and keep the matcher in step with the backend.

:class:`FaceAccounts` is the one place that changes which faces a terminal knows. It talks to
the backend (``FaceTemplateBackend``: the embedded ledger or the reference server's client),
keeps the encrypted cache and the in-memory :class:`FaceMatcher` in step with it, and writes an
audit entry for every enrolment and deletion (``face_enrolled``, ``face_deleted``: the account,
the number of templates, the consent record; never a template or an image).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from terminal.backend.face_cache import FaceTemplateCache
from terminal.backend.face_sync import (
    FaceAccountRecord,
    FaceEnrolmentReceipt,
    FaceTemplateBackend,
    FaceTemplateChanges,
)
from terminal.core.audit import AuditLog
from terminal.devices.face.enrolment import FaceEnrolment
from terminal.devices.face.matcher import EnrolledFace, FaceMatcher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncReport:
    """What one sync changed."""

    cursor: int
    updated: list[str]
    purged: list[str]
    accounts: int
    templates: int


class FaceAccounts:
    """Enrolment, deletion and sync of face templates for one terminal.

    Args:
        backend: where templates live.
        matcher: the matcher the payment path searches.
        model: the embedding model id this terminal makes (other models' templates are ignored).
        cache: the encrypted cache (None: no offline matching, the matcher is filled by syncs).
        audit: the audit log.
        terminal_id: for the audit entries' details.
    """

    def __init__(
        self,
        backend: FaceTemplateBackend,
        matcher: FaceMatcher,
        *,
        model: str,
        cache: FaceTemplateCache | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.backend = backend
        self.matcher = matcher
        self.model = model
        self.cache = cache
        self.audit = audit
        self._cursor = 0
        if cache is not None:
            self._cursor = cache.cursor
            self.matcher.replace_all(self._enrolled(cache.accounts()))

    def _enrolled(self, records: list[FaceAccountRecord]) -> list[EnrolledFace]:
        return [
            EnrolledFace(r.account_id, r.display_name, r.templates, r.blocked)
            for r in records
            if r.model == self.model and len(r.templates)
        ]

    def sync(self) -> SyncReport:
        """Fetch what changed since the last sync and apply it to the cache and the matcher.

        Raises:
            terminal.core.ports.BackendUnavailableError: the backend cannot be reached (the
                cache and the matcher stay as they were).
        """
        changes = self.backend.face_templates_since(self._cursor)
        return self._apply(changes)

    def _apply(self, changes: FaceTemplateChanges) -> SyncReport:
        # Templates of another model cannot be matched here: they count as deleted.
        foreign = [r.account_id for r in changes.accounts if r.model != self.model]
        usable = [r for r in changes.accounts if r.model == self.model]
        effective = FaceTemplateChanges(changes.cursor, usable, [*changes.deleted, *foreign])
        updated = [r.account_id for r in usable]
        purged = list(effective.deleted)
        if self.cache is not None:
            self.cache.apply(effective)
        for account in self._enrolled(usable):
            self.matcher.upsert(account)
        for account_id in effective.deleted:
            self.matcher.remove(account_id)
        self._cursor = max(self._cursor, changes.cursor)
        if updated or purged:
            logger.info(
                "face templates synced to cursor %d: %d updated, %d removed",
                self._cursor,
                len(updated),
                len(purged),
            )
        return SyncReport(
            self._cursor, updated, purged, self.matcher.account_count, len(self.matcher)
        )

    def enrol(
        self,
        account_id: str,
        enrolment: FaceEnrolment,
        *,
        actor: str,
        card_id: str | None = None,
    ) -> FaceEnrolmentReceipt:
        """Store the templates on the backend, audit it, and sync them into the matcher.

        Raises:
            terminal.backend.face_sync.FaceEnrolmentError: refused (no consent, unknown
                account, ...).
        """
        enrolment.consent.check()
        receipt = self.backend.enrol_face(
            account_id, enrolment.templates, enrolment.model, enrolment.consent, card_id=card_id
        )
        if self.audit is not None:
            self.audit.append(
                actor,
                "face_enrolled",
                {
                    "account_id": account_id,
                    "templates": receipt.template_count,
                    "model": receipt.model,
                    "consent_given_by": enrolment.consent.given_by,
                    "consent_text_version": enrolment.consent.text_version,
                    "consent_given_at": enrolment.consent.given_at,
                    "card_proof": card_id is not None,
                },
            )
        logger.info(
            "face enrolled for account %s: %d templates", account_id, receipt.template_count
        )
        self.sync()
        return receipt

    def delete(
        self, account_id: str, *, actor: str, reason: str = "", card_id: str | None = None
    ) -> int:
        """Delete every template of the account on the backend, in the cache and the matcher.

        Returns how many templates the backend deleted.
        """
        deleted = self.backend.delete_face(account_id, card_id=card_id, reason=reason)
        if self.cache is not None:
            self.cache.purge(account_id)
        self.matcher.remove(account_id)
        if self.audit is not None:
            self.audit.append(
                actor,
                "face_deleted",
                {"account_id": account_id, "templates": deleted, "reason": reason},
            )
        logger.info("face templates of account %s deleted (%d)", account_id, deleted)
        return deleted
