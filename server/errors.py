"""The one error the server's layers raise: an HTTP status, a machine-readable code, a message.

Every 4xx/5xx answer is ``{"error": {"code": ..., "message": ...}}`` (see
``docs/backend-contract.md``); :class:`ApiError` carries exactly that, from the store up to the
HTTP handler, so the storage code never needs to know about FastAPI.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """A refusal the client is told about.

    Args:
        status: the HTTP status (4xx, or 5xx for the server's own trouble).
        code: the contract's code, e.g. ``insufficient_balance``.
        message: what happened, readable by a technician.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, dict[str, str]]:
        """The JSON body of the answer."""
        return {"error": {"code": self.code, "message": self.message}}

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.code!r}, {self.message!r})"
