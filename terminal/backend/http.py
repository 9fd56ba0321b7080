"""The terminal's client of the canteen backend: the contract of ``docs/backend-contract.md``
over HTTP/JSON with ``requests``.

Every request is signed (``terminal.backend.signing``), has connect and read timeouts, and is
retried with exponential backoff when the backend cannot be reached or answers 5xx. Retrying is
safe for every call: reads change nothing, and every write carries an idempotency key (the
transaction, refund or void id), so a post whose answer was lost is charged once however often
it is sent. When the retries are spent the client raises ``BackendUnavailableError``: the
caller (the outbox and offline mode in ``terminal.backend.payments``) decides what the diner is
told. A 4xx is never retried; a refusal of the payment becomes ``PaymentDeclinedError`` with
the server's code, anything else ``BackendRequestError``.
"""

from __future__ import annotations

import json
import logging
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np
import numpy.typing as npt
import requests

from terminal.backend.face_sync import (
    FaceConsent,
    FaceEnrolmentError,
    FaceEnrolmentReceipt,
    FaceTemplateChanges,
    changes_from_json,
    enrolment_body,
)
from terminal.backend.signing import sign_headers
from terminal.backend.wire import (
    ACCOUNT_METHODS,
    account_from_json,
    receipt_from_json,
    record_from_json,
    refund_from_json,
    transaction_body,
    void_from_json,
)
from terminal.core.ports import (
    Account,
    BackendRequestError,
    BackendUnavailableError,
    PaymentDeclinedError,
    RefundReceipt,
    RefundRequest,
    TransactionRecord,
    VoidResult,
)
from terminal.core.session import PaymentReceipt, PaymentRequest

logger = logging.getLogger(__name__)

#: Server error codes that refuse a payment (the diner or cashier is told), as opposed to a bug.
DECLINE_CODES = frozenset(
    {
        "insufficient_balance",
        "unknown_account",
        "unknown_card",
        "blocked",
        "voided",
        "conflict",
        "refund_exceeds",
        "unknown_transaction",
    }
)


@dataclass(frozen=True)
class BundleOffer:
    """A model bundle the backend offers."""

    version: str
    sha256: str
    size: int


class HttpBackend:
    """``LedgerBackend`` over the reference server's HTTP API (or any server of the contract).

    Args:
        base_url: the backend's root, e.g. ``https://canteen.example/api`` (``/v1/...`` is added).
        terminal_id: this terminal's id, as registered on the backend.
        secret: this terminal's signing secret.
        timeout_s: the read timeout; the connect timeout is the smaller of it and 2 s.
        verify: verify HTTPS certificates (True), not (False), or a CA bundle's path.
        retries: further tries after the first when the backend cannot be reached.
        backoff_s: the wait before the first retry; it doubles for each next one.
        sleep: how to wait (tests pass a no-op).
    """

    def __init__(
        self,
        base_url: str,
        terminal_id: str,
        secret: str,
        *,
        timeout_s: float = 3.0,
        verify: bool | str = True,
        retries: int = 2,
        backoff_s: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"backend url must start with http:// or https://: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._prefix = urlsplit(self.base_url).path
        self.terminal_id = terminal_id
        self._secret = secret
        self._timeout = (min(2.0, timeout_s), timeout_s)
        self._verify = verify
        self._retries = max(0, retries)
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._http = requests.Session()

    def close(self) -> None:
        self._http.close()

    # --- transport ------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        retries: int | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """Send one signed request, retrying while the backend cannot be reached.

        Returns the response of any status below 500; raises BackendUnavailableError when
        the retries are spent.
        """
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        url = self.base_url + path
        tries = 1 + (self._retries if retries is None else retries)
        problem = ""
        for attempt in range(tries):
            if attempt:
                self._sleep(self._backoff_s * 2 ** (attempt - 1))
            # A new timestamp and nonce for every try: the server refuses a replayed nonce.
            headers = sign_headers(
                self.terminal_id, self._secret, method, self._prefix + path, data
            )
            if body is not None:
                headers["Content-Type"] = "application/json"
            try:
                response = self._http.request(
                    method,
                    url,
                    data=data or None,
                    headers=headers,
                    timeout=self._timeout,
                    verify=self._verify,
                    stream=stream,
                )
            except requests.exceptions.SSLError as exc:
                # A certificate that does not verify will not verify on the next try either.
                raise BackendUnavailableError(f"TLS to {self.base_url} failed: {exc}") from exc
            except requests.RequestException as exc:
                problem = f"{type(exc).__name__}: {exc}"
                logger.warning(
                    "%s %s: %s (try %d of %d)", method, path, problem, attempt + 1, tries
                )
                continue
            if response.status_code >= 500:
                problem = f"HTTP {response.status_code}: {_error_message(response)}"
                logger.warning(
                    "%s %s: %s (try %d of %d)", method, path, problem, attempt + 1, tries
                )
                response.close()
                continue
            return response
        raise BackendUnavailableError(f"backend {self.base_url} unreachable: {problem}")

    def _json(
        self, method: str, path: str, body: dict[str, Any] | None = None, **kwargs: Any
    ) -> tuple[int, dict[str, Any]]:
        response = self._call(method, path, body, **kwargs)
        try:
            payload = response.json()
        except ValueError:
            raise BackendUnavailableError(
                f"{method} {path}: HTTP {response.status_code} with a body that is not JSON"
            ) from None
        if not isinstance(payload, dict):
            raise BackendUnavailableError(f"{method} {path}: answer is not a JSON object")
        if response.status_code >= 400:
            _raise_for(response.status_code, payload, f"{method} {path}")
        return response.status_code, payload

    # --- the contract ---------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``GET /v1/health``: raises BackendUnavailableError when the backend is down."""
        return self._json("GET", "/v1/health", retries=0)[1]

    def lookup_card(self, card_id: str) -> Account | None:
        try:
            return account_from_json(self._json("GET", f"/v1/cards/{_seg(card_id)}/account")[1])
        except PaymentDeclinedError as exc:
            if exc.code in ("unknown_card", "unknown_account"):
                return None
            raise

    def lookup_account(self, account_id: str) -> Account | None:
        try:
            return account_from_json(self._json("GET", f"/v1/accounts/{_seg(account_id)}")[1])
        except PaymentDeclinedError as exc:
            if exc.code == "unknown_account":
                return None
            raise

    def cards(self) -> tuple[list[tuple[str, Account]], float]:
        """Every card with its account and balance, and the server's time of the snapshot."""
        payload = self._json("GET", "/v1/cards")[1]
        cards = [(str(row["card_id"]), account_from_json(row)) for row in payload["cards"]]
        return cards, float(payload.get("synced_at", time.time()))

    # --- face accounts (docs/backend-contract.md, "Face accounts") ----------------------------

    def face_templates_since(self, cursor: int) -> FaceTemplateChanges:
        """``GET /v1/face-templates?since=``: templates changed or deleted after ``cursor``."""
        return changes_from_json(self._json("GET", f"/v1/face-templates?since={int(cursor)}")[1])

    def enrol_face(
        self,
        account_id: str,
        templates: npt.NDArray[np.float32],
        model: str,
        consent: FaceConsent,
        *,
        card_id: str | None = None,
    ) -> FaceEnrolmentReceipt:
        """``POST /v1/accounts/{id}/face``; the server requires ``card_id`` from a terminal.

        Raises:
            FaceEnrolmentError: refused (unknown account, card of another account, bad body).
        """
        consent.check()
        body = enrolment_body(templates, model, consent, card_id)
        try:
            answer = self._json("POST", f"/v1/accounts/{_seg(account_id)}/face", body)[1]
        except (PaymentDeclinedError, BackendRequestError) as exc:
            raise FaceEnrolmentError(str(exc)) from exc
        return FaceEnrolmentReceipt(
            str(answer["account_id"]),
            int(answer["template_count"]),
            str(answer["model"]),
            float(answer["enrolled_at"]),
            int(answer["cursor"]),
        )

    def delete_face(self, account_id: str, *, card_id: str | None = None, reason: str = "") -> int:
        """``POST /v1/accounts/{id}/face/delete`` with the diner's card; returns the count."""
        if card_id is None:
            raise FaceEnrolmentError("a terminal deletes face templates only with the diner's card")
        body = {"card_id": card_id, "reason": reason}
        try:
            answer = self._json("POST", f"/v1/accounts/{_seg(account_id)}/face/delete", body)[1]
        except (PaymentDeclinedError, BackendRequestError) as exc:
            raise FaceEnrolmentError(str(exc)) from exc
        return int(answer["deleted_templates"])

    def charge(self, request: PaymentRequest, account_id: str) -> PaymentReceipt:
        target = account_id if request.method in ACCOUNT_METHODS else None
        return self.post_transaction(transaction_body(request, target))

    def post_transaction(self, body: dict[str, Any]) -> PaymentReceipt:
        """``POST /v1/transactions`` with a ready body (the outbox keeps bodies as written)."""
        return receipt_from_json(self._json("POST", "/v1/transactions", body)[1])

    def void(self, transaction_id: str, reason: str) -> VoidResult:
        path = f"/v1/transactions/{_seg(transaction_id)}/void"
        return void_from_json(self._json("POST", path, {"reason": reason})[1])

    def refund(self, request: RefundRequest) -> RefundReceipt:
        body = {
            "refund_id": request.refund_id,
            "transaction_id": request.transaction_id,
            "amount_fen": request.amount_fen,
            "reason": request.reason,
            "cashier_id": request.cashier_id,
        }
        return refund_from_json(self._json("POST", "/v1/refunds", body)[1])

    def transaction(self, transaction_id: str) -> TransactionRecord | None:
        try:
            payload = self._json("GET", f"/v1/transactions/{_seg(transaction_id)}")[1]
        except PaymentDeclinedError as exc:
            if exc.code == "unknown_transaction":
                return None
            raise
        return record_from_json(payload)

    def menu_today(self) -> dict[str, Any]:
        """``GET /v1/menu/today``: ``{"date", "version", "menu"}``."""
        return self._json("GET", "/v1/menu/today")[1]

    def heartbeat(
        self, bundle_version: str, outbox_depth: int, status: dict[str, Any]
    ) -> BundleOffer | None:
        """Tell the backend this terminal is alive; returns the bundle it should run."""
        body = {
            "terminal_id": self.terminal_id,
            "bundle_version": bundle_version,
            "outbox_depth": outbox_depth,
            "status": status,
        }
        offer = self._json("POST", "/v1/terminals/heartbeat", body, retries=0)[1].get("bundle")
        if not offer:
            return None
        return BundleOffer(str(offer["version"]), str(offer["sha256"]), int(offer["size"]))

    def download_bundle(self, offer: BundleOffer, into: Path) -> Path:
        """Fetch a bundle archive, check its SHA-256 and unpack it under ``into``.

        Returns the unpacked bundle folder. Raises BackendRequestError on a wrong checksum or
        an archive that tries to write outside ``into``.
        """
        import hashlib

        response = self._call("GET", f"/v1/bundles/{_seg(offer.version)}/archive", stream=True)
        if response.status_code >= 400:
            _raise_for(response.status_code, _safe_json(response), "bundle download")
        digest = hashlib.sha256()
        into.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=into, suffix=".tar.gz", delete=False) as archive:
            for chunk in response.iter_content(1 << 16):
                digest.update(chunk)
                archive.write(chunk)
        archive_path = Path(archive.name)
        try:
            if digest.hexdigest() != offer.sha256:
                raise BackendRequestError(
                    f"bundle {offer.version}: SHA-256 {digest.hexdigest()} is not the "
                    f"offered {offer.sha256}",
                    "bad_bundle",
                )
            target = into / offer.version
            with tarfile.open(archive_path) as tar:
                tar.extractall(target, filter="data")
        except tarfile.TarError as exc:
            raise BackendRequestError(f"bundle {offer.version}: {exc}", "bad_bundle") from exc
        finally:
            archive_path.unlink(missing_ok=True)
        children = [p for p in target.iterdir() if p.is_dir()]
        return (
            children[0]
            if len(children) == 1 and not (target / "manifest.json").exists()
            else target
        )


def _seg(value: str) -> str:
    return quote(value, safe="")


def _safe_json(response: requests.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _error_message(response: requests.Response) -> str:
    error = _safe_json(response).get("error")
    if isinstance(error, dict):
        return str(error.get("message", ""))
    return response.text[:200]


def _raise_for(status: int, payload: dict[str, Any], what: str) -> None:
    error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
    assert isinstance(error, dict)
    code = str(error.get("code", f"http_{status}"))
    message = str(error.get("message", f"HTTP {status}"))
    if code in DECLINE_CODES or status == 402:
        raise PaymentDeclinedError(message, code)
    raise BackendRequestError(f"{what}: {message} ({code})", code, status)
