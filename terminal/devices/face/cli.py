"""``trayscan face ...`` and ``trayscan bench face``: enrol, delete and diagnose face accounts.

Enrolment and deletion go to the terminal's backend as its config names it (the embedded ledger,
or the HTTP backend with ``--card``, the diner's card, as proof), or straight to a reference
server's database with ``--db URL``; each is written to the terminal's audit log. Face images are
read from the given files only, never copied, logged or kept.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)


def _print_json(data: object) -> None:
    print(json.dumps(data, ensure_ascii=False))


def _fail(command: str, message: str, status: int = 1) -> int:
    print(f"trayscan face {command}: {message}", file=sys.stderr)
    return status


class ServerTemplates:
    """A reference server's database as a ``FaceTemplateBackend`` (``--db URL``)."""

    def __init__(self, db_url: str) -> None:
        from server.face_api import FaceStore
        from server.schema import create_schema, make_engine
        from server.store import Store

        engine = make_engine(db_url, pool_size=2)
        create_schema(engine)
        self.store = Store(engine)
        self.faces = FaceStore(self.store)

    def close(self) -> None:
        self.store.close()

    def enrol_face(
        self,
        account_id: str,
        templates: npt.NDArray[np.float32],
        model: str,
        consent: Any,
        *,
        card_id: str | None = None,
    ) -> Any:
        from server.errors import ApiError
        from server.face_api import FaceEnrolBody
        from terminal.backend.face_sync import (
            FaceEnrolmentError,
            FaceEnrolmentReceipt,
            enrolment_body,
        )

        body = FaceEnrolBody.model_validate(enrolment_body(templates, model, consent, None))
        try:
            answer = self.faces.enrol(account_id, body)
        except ApiError as exc:
            raise FaceEnrolmentError(f"{exc.code}: {exc.message}") from None
        return FaceEnrolmentReceipt(
            answer.account_id,
            answer.template_count,
            answer.model,
            answer.enrolled_at,
            answer.cursor,
        )

    def delete_face(self, account_id: str, *, card_id: str | None = None, reason: str = "") -> int:
        from server.errors import ApiError
        from terminal.backend.face_sync import FaceEnrolmentError

        try:
            return self.faces.delete(account_id, reason=reason).deleted_templates
        except ApiError as exc:
            raise FaceEnrolmentError(f"{exc.code}: {exc.message}") from None

    def face_templates_since(self, cursor: int) -> Any:
        from terminal.backend.face_sync import changes_from_json

        return changes_from_json(self.faces.changes_since(cursor).model_dump(mode="json"))


def _backend(args: argparse.Namespace) -> Any:
    """Where templates go: ``--db``, else the config's embedded ledger or HTTP backend."""
    if args.db:
        return ServerTemplates(args.db)
    from terminal.app import _remote
    from terminal.backend.ledger import EmbeddedLedger
    from terminal.config import EmbeddedBackendConfig, HttpBackendConfig, load_config

    loaded = load_config(args.config)
    backend = loaded.config.backend
    if isinstance(backend, EmbeddedBackendConfig):
        return EmbeddedLedger(loaded.resolve(backend.ledger))
    if isinstance(backend, HttpBackendConfig):
        return _remote(loaded)
    raise ValueError("this terminal's backend keeps no face templates: use --db URL")


def _audit(args: argparse.Namespace) -> Any:
    from terminal.backend.audit_store import SqliteAuditLog
    from terminal.config import load_config

    loaded = load_config(args.config)
    return SqliteAuditLog(
        loaded.resolve(loaded.config.data_dir) / "audit.db", terminal_id=loaded.config.terminal_id
    )


def _pipeline(args: argparse.Namespace) -> Any:
    from terminal.config import load_config
    from terminal.devices.face.pipeline import default_pipeline
    from terminal.devices.face.quality import QualityPolicy

    loaded = load_config(getattr(args, "config", None))
    face = loaded.config.face
    policy = QualityPolicy(min_face_px=face.min_face_px, min_sharpness=face.min_sharpness)
    return default_pipeline(policy, loaded.resolve(face.detector_model))


def cmd_enroll(args: argparse.Namespace) -> int:
    """Enrol an account's face from a folder of photos, with the consent given by a person."""
    from terminal.backend.face_sync import CONSENT_TEXT_VERSION, FaceConsent, FaceEnrolmentError
    from terminal.devices.face.enrolment import enrol_photos, photos_in
    from terminal.devices.face.types import FaceModelError

    if not args.consent_by:
        return _fail(
            "enroll",
            "refused: explicit consent is needed: --consent-by NAME (who consented to the "
            f"consent text {CONSENT_TEXT_VERSION})",
            2,
        )
    if not args.photos.is_dir():
        return _fail("enroll", f"{args.photos} is not a folder of photos", 2)
    started = time.perf_counter()
    try:
        pipeline = _pipeline(args)
        templates, reports = enrol_photos(pipeline, photos_in(args.photos))
    except FaceModelError as exc:
        return _fail("enroll", str(exc))
    for report in reports:
        line = "accepted" if report.accepted else "refused: " + "; ".join(report.reasons)
        print(f"{report.path.name}: {line}", file=sys.stderr)
    if len(templates) < args.min_photos:
        return _fail(
            "enroll",
            f"only {len(templates)} usable photos, {args.min_photos} needed; nothing enrolled",
        )
    consent = FaceConsent(args.consent_by, args.consent_text_version)
    backend = _backend(args)
    audit = _audit(args)
    try:
        receipt = backend.enrol_face(
            args.account, templates, pipeline.model_id, consent, card_id=args.card
        )
        audit.append(
            "technician",
            "face_enrolled",
            {
                "account_id": args.account,
                "templates": receipt.template_count,
                "model": receipt.model,
                "consent_given_by": consent.given_by,
                "consent_text_version": consent.text_version,
                "consent_given_at": consent.given_at,
                "photos": len(reports),
            },
        )
    except FaceEnrolmentError as exc:
        return _fail("enroll", str(exc))
    finally:
        backend.close()
        audit.close()
    _print_json(
        {
            "account": args.account,
            "templates": receipt.template_count,
            "model": receipt.model,
            "photos": [
                {"photo": r.path.name, "accepted": r.accepted, "reasons": list(r.reasons)}
                for r in reports
            ],
            "consent": consent.to_json(),
            "seconds": round(time.perf_counter() - started, 2),
        }
    )
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete every face template of an account (the backend's; caches follow at their sync)."""
    from terminal.backend.face_sync import FaceEnrolmentError

    backend = _backend(args)
    audit = _audit(args)
    try:
        count = backend.delete_face(args.account, card_id=args.card, reason=args.reason)
        audit.append(
            "technician",
            "face_deleted",
            {"account_id": args.account, "templates": count, "reason": args.reason},
        )
    except FaceEnrolmentError as exc:
        return _fail("delete", str(exc))
    finally:
        backend.close()
        audit.close()
    _print_json({"account": args.account, "deleted_templates": count})
    return 0


def cmd_match(args: argparse.Namespace) -> int:
    """Diagnose one photo: its quality and the nearest enrolled accounts."""
    from terminal.devices.face.matcher import EnrolledFace, FaceMatcher, mask_name
    from terminal.devices.face.pipeline import read_image
    from terminal.devices.face.types import FaceModelError

    try:
        pipeline = _pipeline(args)
        image = read_image(args.photo)
    except (FaceModelError, ValueError) as exc:
        return _fail("match", str(exc))
    observation = pipeline.observe(image, force=True)
    backend = _backend(args)
    try:
        changes = backend.face_templates_since(0)
    finally:
        backend.close()
    matcher = FaceMatcher(threshold=args.threshold, margin=args.margin)
    matcher.replace_all(
        EnrolledFace(r.account_id, r.display_name, r.templates)
        for r in changes.accounts
        if r.model == pipeline.model_id
    )
    answer: dict[str, Any] = {
        "photo": str(args.photo),
        "faces": len(observation.faces),
        "quality_ok": observation.quality.ok,
        "reasons": observation.quality.reasons,
        "measures": observation.quality.measures,
        "enrolled_accounts": matcher.account_count,
    }
    if observation.template is not None:
        result = matcher.search(observation.template)
        answer.update(
            {
                "result": result.kind.value,
                "account": result.account_id,
                "masked_name": mask_name(result.display_name) if result.account_id else None,
                "distance": round(result.distance, 4) if result.account_id else None,
                "runner_up_distance": round(result.runner_up_distance, 4)
                if result.runner_up_account_id
                else None,
                "threshold": matcher.threshold,
                "margin": matcher.margin,
            }
        )
    _print_json(answer)
    return 0


def cmd_new_key(args: argparse.Namespace) -> int:
    """Write a new random template-cache key, readable only by its owner."""
    from terminal.backend.face_cache import create_key_file

    try:
        create_key_file(args.file)
    except FileExistsError:
        return _fail("new-key", f"{args.file} exists: not overwritten")
    print(f"{args.file}: new face cache key (keep it private; set face.cache_key_file)")
    return 0


def cmd_bench_face(args: argparse.Namespace) -> int:
    """Time enrolment, 1:N search and one frame's detection + embedding; say what is known of
    the model's error rates."""
    from terminal.devices.face.bench import bench_face
    from terminal.devices.face.types import FaceModelError

    try:
        result = bench_face(templates=args.templates, searches=args.searches, frames=args.frames)
    except FaceModelError as exc:
        return _fail("bench", str(exc))
    _print_json(result)
    return 0


def _target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="terminal config (default: demo defaults)")
    parser.add_argument("--db", help="a reference server's database URL instead of the config's")
    parser.add_argument("--card", help="the diner's card (an http backend needs it as proof)")


def add_parsers(sub: Any, bench_sub: Any) -> None:
    """Register ``trayscan face ...`` and ``trayscan bench face``."""
    face = sub.add_parser("face", help="face accounts: enrol, delete, diagnose")
    actions = face.add_subparsers(dest="face_command", required=True, metavar="ACTION")

    enroll = actions.add_parser("enroll", help="enrol an account's face from photos, with consent")
    enroll.add_argument("--account", required=True, help="the account id")
    enroll.add_argument("--photos", type=Path, required=True, help="folder of photos of the diner")
    enroll.add_argument(
        "--consent-by", help="who gave explicit consent (required: nothing is enrolled without)"
    )
    enroll.add_argument("--consent-text-version", default="face-consent-v1")
    enroll.add_argument("--min-photos", type=int, default=2, help="usable photos needed")
    _target_arguments(enroll)
    enroll.set_defaults(func=cmd_enroll)

    delete = actions.add_parser("delete", help="delete every face template of an account")
    delete.add_argument("--account", required=True)
    delete.add_argument("--reason", default="deletion requested")
    _target_arguments(delete)
    delete.set_defaults(func=cmd_delete)

    match = actions.add_parser("match", help="diagnose a photo against the enrolled faces")
    match.add_argument("--photo", type=Path, required=True)
    match.add_argument("--threshold", type=float, default=0.5)
    match.add_argument("--margin", type=float, default=0.08)
    _target_arguments(match)
    match.set_defaults(func=cmd_match)

    key = actions.add_parser("new-key", help="write a new key for the encrypted template cache")
    key.add_argument("file", type=Path)
    key.set_defaults(func=cmd_new_key)

    bench = bench_sub.add_parser("face", help="face enrolment, 1:N search and per-frame times")
    bench.add_argument("--templates", type=int, default=10_000, help="synthetic enrolled templates")
    bench.add_argument("--searches", type=int, default=500)
    bench.add_argument("--frames", type=int, default=20, help="frames timed for detect + embed")
    bench.set_defaults(func=cmd_bench_face)
