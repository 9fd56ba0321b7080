"""The face parts of one terminal, built together: what the kiosk's screens use.

``terminal.app`` builds a :class:`FaceParts` when the config's ``face.enabled`` is true and puts
it on ``Terminal.face``. A diner screen uses ``face.payment`` (``propose`` then ``confirm``), an
enrolment screen ``face.new_enrolment()`` and ``face.accounts.enrol``; the outbox worker calls
``face.sync`` with its periodic account refresh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from terminal.backend.face_cache import FaceTemplateCache
from terminal.backend.face_sync import FaceTemplateBackend
from terminal.core.audit import AuditLog
from terminal.core.ports import BackendUnavailableError, LedgerBackend
from terminal.devices.face.accounts import FaceAccounts
from terminal.devices.face.enrolment import EnrolmentFlow
from terminal.devices.face.liveness import LivenessCheck, LivenessPolicy
from terminal.devices.face.matcher import FaceMatcher
from terminal.devices.face.payment import FacePayment
from terminal.devices.face.pipeline import FacePipeline, default_pipeline
from terminal.devices.face.quality import QualityPolicy

logger = logging.getLogger(__name__)


@dataclass
class FaceParts:
    """Everything face accounts need at one terminal."""

    pipeline: FacePipeline
    matcher: FaceMatcher
    accounts: FaceAccounts
    payment: FacePayment

    def new_enrolment(self, frames_needed: int = 3) -> EnrolmentFlow:
        """A fresh enrolment flow for the enrolment screen."""
        return EnrolmentFlow(self.pipeline, frames_needed=frames_needed)

    def sync(self) -> int:
        """Refresh the templates from the backend; returns how many accounts are enrolled.
        An unreachable backend leaves the cache as it is (logged)."""
        try:
            return self.accounts.sync().accounts
        except BackendUnavailableError as exc:
            logger.info("face templates not refreshed: %s", exc)
            return self.matcher.account_count


def build_face_parts(
    *,
    templates: FaceTemplateBackend,
    payments: LedgerBackend,
    audit: AuditLog | None,
    cache_path: Path,
    cache_key: bytes,
    detector_model: Path,
    quality: QualityPolicy,
    liveness: LivenessPolicy,
    threshold: float,
    margin: float,
) -> FaceParts:
    """Load the models, open the encrypted cache and wire the parts.

    Args:
        templates: where face templates live (the embedded ledger or the HTTP client).
        payments: what a confirmed face payment is charged through (the ledger or the outbox).
        audit: the terminal's audit log.
        cache_path: the encrypted template cache.
        cache_key: its 32-byte key.
        detector_model: the YuNet ONNX file.
        quality: the quality thresholds.
        liveness: the liveness thresholds and prompt.
        threshold: the matcher's distance threshold.
        margin: the matcher's margin over the second-best account.

    Raises:
        terminal.devices.face.types.FaceModelError: a model cannot be loaded.
        terminal.backend.face_cache.FaceCacheError: the cache cannot be opened with the key.
    """
    pipeline = default_pipeline(quality, detector_model)
    matcher = FaceMatcher(threshold=threshold, margin=margin, dim=pipeline.embedder.dim)
    cache = FaceTemplateCache(cache_path, cache_key)
    accounts = FaceAccounts(templates, matcher, model=pipeline.model_id, cache=cache, audit=audit)
    payment = FacePayment(
        pipeline, matcher, LivenessCheck(liveness, audit=audit), payments, audit=audit
    )
    parts = FaceParts(pipeline, matcher, accounts, payment)
    parts.sync()
    return parts
