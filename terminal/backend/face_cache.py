"""The terminal's copy of the enrolled face templates, encrypted at rest with AES-256-GCM.

The cache lets a terminal match faces while its backend is down. It is one file: a short
header (``TSFACE1`` and a random 12-byte nonce) followed by the AES-GCM ciphertext of a JSON
document holding the sync cursor and every cached account (id, display name, model, blocked,
templates as base64 float32). Nothing readable is left on disk: not the templates, not who is
enrolled. GCM's tag makes any change to the file, or a wrong key, fail to decrypt, and that is
reported as :class:`FaceCacheKeyError` rather than read as an empty cache. Every write goes to
a temporary file that is fsynced and renamed over the old one, so a power cut leaves the old
cache or the new one, never half of either.

The key is 32 bytes from a file (64 hex characters, or base64) or an environment variable,
named in the ``face:`` section of the config; :func:`create_key_file` makes one readable only
by its owner. Losing the key loses nothing that matters: delete the file and the next sync
fetches every template again.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Any

import numpy as np

from terminal.backend.face_sync import (
    FaceAccountRecord,
    FaceTemplateChanges,
    decode_template,
    encode_templates,
)

logger = logging.getLogger(__name__)

MAGIC = b"TSFACE1\n"
NONCE_BYTES = 12
KEY_BYTES = 32


class FaceCacheError(RuntimeError):
    """The face template cache cannot be used (unreadable file, bad key file, ...)."""


class FaceCacheKeyError(FaceCacheError):
    """The cache does not decrypt with this key: a wrong key, or a damaged file."""


def parse_key(text: str | bytes, where: str) -> bytes:
    """A 32-byte key from 64 hex characters or base64 of 32 bytes.

    Raises:
        FaceCacheError: anything else, naming ``where`` the key came from.
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", errors="replace")
    text = text.strip()
    key: bytes | None = None
    if len(text) == 2 * KEY_BYTES:
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = None
    if key is None:
        try:
            key = base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            key = None
    if key is None or len(key) != KEY_BYTES:
        raise FaceCacheError(
            f"{where}: a face cache key must be {KEY_BYTES} bytes, written as "
            f"{2 * KEY_BYTES} hex characters or base64 (make one with "
            "`trayscan face new-key FILE`)"
        )
    return key


def load_key(key_file: Path | None = None, env: str | None = None) -> bytes:
    """The cache key from ``key_file`` or, if not given, the environment variable ``env``.

    Raises:
        FaceCacheError: neither is set, the file cannot be read, or the key is malformed.
    """
    if key_file is not None:
        try:
            return parse_key(key_file.read_text(encoding="ascii"), str(key_file))
        except OSError as exc:
            raise FaceCacheError(f"cannot read the face cache key {key_file}: {exc}") from None
    if env:
        value = os.environ.get(env)
        if value:
            return parse_key(value, f"${env}")
        raise FaceCacheError(f"the face cache key variable ${env} is not set")
    raise FaceCacheError("no face cache key configured (face.cache_key_file or face.cache_key_env)")


def create_key_file(path: Path) -> None:
    """Write a new random key (hex) readable only by its owner; an existing file is kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(secrets.token_hex(KEY_BYTES) + "\n")


def _aesgcm(key: bytes) -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:
        raise FaceCacheError(
            "the face template cache needs `cryptography`: pip install -e '.[face]'"
        ) from exc
    return AESGCM(key)


class FaceTemplateCache:
    """Cached face templates, encrypted in one file.

    Args:
        path: the cache file (created at the first write).
        key: the 32-byte AES key.

    Raises:
        FaceCacheKeyError: the existing file does not decrypt with ``key``.
        FaceCacheError: the file cannot be read or is not a trayscan face cache.
    """

    def __init__(self, path: Path | str, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise FaceCacheError(f"a face cache key must be {KEY_BYTES} bytes")
        self.path = Path(path)
        self._cipher = _aesgcm(key)
        self._lock = threading.Lock()
        self.cursor = 0
        self._accounts: dict[str, FaceAccountRecord] = {}
        if self.path.exists():
            self._load()

    # --- reading --------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            blob = self.path.read_bytes()
        except OSError as exc:
            raise FaceCacheError(f"cannot read the face cache {self.path}: {exc}") from None
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + NONCE_BYTES + 16:
            raise FaceCacheError(f"{self.path} is not a trayscan face template cache")
        nonce = blob[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
        from cryptography.exceptions import InvalidTag

        try:
            plain = self._cipher.decrypt(nonce, blob[len(MAGIC) + NONCE_BYTES :], MAGIC)
        except InvalidTag:
            raise FaceCacheKeyError(
                f"the face cache {self.path} does not decrypt with the configured key (a wrong "
                "key, or the file was changed); give the right key, or delete the file so that "
                "the next sync fetches every template again"
            ) from None
        document = json.loads(plain.decode("utf-8"))
        self.cursor = int(document["cursor"])
        self._accounts = {
            row["account_id"]: FaceAccountRecord(
                account_id=row["account_id"],
                display_name=row["display_name"],
                model=row["model"],
                templates=np.stack([decode_template(t) for t in row["templates"]]),
                blocked=bool(row.get("blocked", False)),
            )
            for row in document["accounts"]
        }
        logger.info("face cache: %d accounts, cursor %d", len(self._accounts), self.cursor)

    def accounts(self) -> list[FaceAccountRecord]:
        """Every cached account, by id."""
        with self._lock:
            return [self._accounts[key] for key in sorted(self._accounts)]

    def get(self, account_id: str) -> FaceAccountRecord | None:
        with self._lock:
            return self._accounts.get(account_id)

    def __len__(self) -> int:
        return len(self._accounts)

    # --- writing --------------------------------------------------------------------------

    def apply(self, changes: FaceTemplateChanges) -> tuple[list[str], list[str]]:
        """Take a sync's answer: replace changed accounts, purge deleted ones, move the cursor.

        Returns the ids updated and the ids purged (only those that were cached).
        """
        with self._lock:
            updated = []
            for record in changes.accounts:
                self._accounts[record.account_id] = record
                updated.append(record.account_id)
            purged = [a for a in changes.deleted if self._accounts.pop(a, None) is not None]
            self.cursor = max(self.cursor, changes.cursor)
            self._save()
        return updated, purged

    def purge(self, account_id: str) -> bool:
        """Forget one account's templates now (a deletion done at this terminal)."""
        with self._lock:
            removed = self._accounts.pop(account_id, None) is not None
            if removed:
                self._save()
        return removed

    def clear(self) -> None:
        """Forget everything; the next sync starts from cursor 0."""
        with self._lock:
            self._accounts = {}
            self.cursor = 0
            self._save()

    def _save(self) -> None:
        document = {
            "cursor": self.cursor,
            "accounts": [
                {
                    "account_id": record.account_id,
                    "display_name": record.display_name,
                    "model": record.model,
                    "blocked": record.blocked,
                    "templates": encode_templates(record.templates),
                }
                for record in self._accounts.values()
            ],
        }
        plain = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        nonce = secrets.token_bytes(NONCE_BYTES)
        blob = MAGIC + nonce + self._cipher.encrypt(nonce, plain, MAGIC)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_name(self.path.name + ".tmp")
        descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(scratch, self.path)
        finally:
            scratch.unlink(missing_ok=True)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
