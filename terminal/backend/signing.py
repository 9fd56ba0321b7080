"""Request signatures between a terminal and the backend: HMAC-SHA256 with a timestamp and nonce.

Each terminal has its own secret. A request carries four headers::

    X-Trayscan-Terminal:  the terminal id
    X-Trayscan-Timestamp: unix seconds, as an integer
    X-Trayscan-Nonce:     16 to 64 characters of [0-9a-zA-Z_-], new for every request
    X-Trayscan-Signature: hex HMAC-SHA256(secret, canonical string)

and the canonical string is ``METHOD \\n PATH?QUERY \\n TIMESTAMP \\n NONCE \\n hex SHA-256(body)``.
The server refuses a timestamp more than :data:`MAX_SKEW_S` away from its clock and a nonce it
has seen from that terminal, so a captured request cannot be replayed; the body hash means a
signature cannot be moved onto another amount.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time

logger = logging.getLogger(__name__)

TERMINAL_HEADER = "X-Trayscan-Terminal"
TIMESTAMP_HEADER = "X-Trayscan-Timestamp"
NONCE_HEADER = "X-Trayscan-Nonce"
SIGNATURE_HEADER = "X-Trayscan-Signature"

#: How far a request's timestamp may be from the server's clock, in seconds.
MAX_SKEW_S = 300

_NONCE = re.compile(r"^[0-9A-Za-z_-]{16,64}$")


class SignatureError(Exception):
    """A request's signature headers are missing, malformed, stale or wrong.

    ``code`` is one of ``missing_signature``, ``bad_timestamp``, ``stale_timestamp``,
    ``bad_nonce``, ``bad_signature``.
    """

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def canonical_string(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """What is signed: method, path with query, timestamp, nonce and the body's SHA-256."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((method.upper(), path, timestamp, nonce, digest)).encode("utf-8")


def signature(secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    message = canonical_string(method, path, timestamp, nonce, body)
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign_headers(
    terminal_id: str,
    secret: str,
    method: str,
    path: str,
    body: bytes,
    *,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that authenticate one request from ``terminal_id``.

    Args:
        path: the request path with its query string, exactly as sent (``/v1/cards/04A1/account``).
        body: the exact bytes of the body (``b""`` for none).
    """
    timestamp = str(int(now if now is not None else time.time()))
    nonce = nonce or secrets.token_hex(16)
    return {
        TERMINAL_HEADER: terminal_id,
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: signature(secret, method, path, timestamp, nonce, body),
    }


def verify_signature(
    secret: str,
    method: str,
    path: str,
    body: bytes,
    timestamp: str | None,
    nonce: str | None,
    given: str | None,
    *,
    now: float | None = None,
    max_skew_s: int = MAX_SKEW_S,
) -> None:
    """Check one request's signature; the caller still has to reject a nonce seen before.

    Raises:
        SignatureError: naming what is wrong.
    """
    if not timestamp or not nonce or not given:
        raise SignatureError("the request is not signed", "missing_signature")
    if not timestamp.isdigit():
        raise SignatureError(f"timestamp {timestamp!r} is not unix seconds", "bad_timestamp")
    clock = now if now is not None else time.time()
    if abs(clock - int(timestamp)) > max_skew_s:
        raise SignatureError(
            f"timestamp {timestamp} is more than {max_skew_s} s from the server's clock",
            "stale_timestamp",
        )
    if not _NONCE.match(nonce):
        raise SignatureError("nonce must be 16-64 characters of [0-9A-Za-z_-]", "bad_nonce")
    expected = signature(secret, method, path, timestamp, nonce, body)
    if not hmac.compare_digest(expected, given.lower()):
        raise SignatureError("signature does not match", "bad_signature")
