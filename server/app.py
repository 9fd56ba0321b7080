"""The HTTP side of the reference server: the FastAPI app of ``docs/backend-contract.md``.

:func:`create_app` builds the app on a database URL and an admin token. Terminals sign every
request (``terminal.backend.signing``); administration uses ``Authorization: Bearer <token>``.
Every refusal is answered as ``{"error": {"code", "message"}}`` with the contract's status:
FastAPI's own answers (validation, unknown routes) are rewritten to that shape, a body that is
not JSON is 400 ``malformed_json`` and a wrong field is 422 ``invalid_request`` naming it.

Handlers are plain functions, run by FastAPI in its thread pool, because the storage is the
synchronous :class:`server.store.Store`.

``uvicorn`` runs several worker processes through :func:`app_from_env` (``factory=True``),
which reads :data:`DB_URL_ENV`, :data:`ADMIN_TOKEN_ENV` and :data:`POOL_SIZE_ENV`.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Query, Request, Response, Security
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from server import schema
from server.bundles import BundleArchiveError, check_archive
from server.errors import ApiError
from server.models import (
    AccountAnswer,
    AddCardBody,
    AddTerminalBody,
    BlockBody,
    BundleInfo,
    CardAnswer,
    CardsAnswer,
    CreateAccountBody,
    DailyReport,
    ErrorAnswer,
    HealthAnswer,
    HeartbeatAnswer,
    HeartbeatBody,
    MenuAnswer,
    MenuVersionAnswer,
    RefundAnswer,
    RefundBody,
    TerminalAnswer,
    TopUpBody,
    TransactionBody,
    TransactionRecordAnswer,
    TransactionResult,
    VoidAnswer,
    VoidBody,
)
from server.store import NonceClaim, Store
from terminal.backend.signing import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TERMINAL_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    verify_signature,
)
from terminal.menu_file import MenuFileModel

logger = logging.getLogger(__name__)

API_VERSION = "1"
DB_URL_ENV = "TRAYSCAN_BACKEND_DB"
ADMIN_TOKEN_ENV = "TRAYSCAN_ADMIN_TOKEN"
POOL_SIZE_ENV = "TRAYSCAN_BACKEND_POOL"

_ID_PATH = r"^[0-9A-Za-z_.:-]{1,64}$"
_SIGNATURE_CODES = {
    "missing_signature": "missing_signature",
    "stale_timestamp": "stale_timestamp",
    "bad_nonce": "bad_nonce",
    "bad_timestamp": "unauthorized",
    "bad_signature": "unauthorized",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "the body is not JSON (`malformed_json`)",
        401: "not authenticated (`unauthorized`, `stale_timestamp`, `replayed`, ...)",
        402: "the balance does not cover the amount (`insufficient_balance`)",
        403: "`terminal_mismatch` or `blocked`",
        404: "not found (`unknown_card`, `unknown_account`, `unknown_transaction`, ...)",
        409: "`conflict`, `voided` or `refund_exceeds`",
        422: "a field is missing or wrong (`invalid_request`, naming the field)",
    }
    return {status: {"model": ErrorAnswer, "description": described[status]} for status in statuses}


@dataclass
class _Context:
    store: Store
    admin_token: str


def create_app(
    db_url: str, admin_token: str, *, create_tables: bool = True, pool_size: int = 10
) -> FastAPI:
    """The reference server on the database at ``db_url``.

    Args:
        db_url: ``sqlite:///path.db`` or ``postgresql+psycopg://user:pw@host:port/db``.
        admin_token: the bearer token of the admin API; empty turns the admin API off (every
            admin request is refused with 401).
        create_tables: create missing tables now (the ``serve`` command does it once, before
            starting several workers, and passes False to them).
        pool_size: database connections kept per process (PostgreSQL).

    Raises:
        server.schema.DatabaseUrlError: a URL that is neither SQLite nor PostgreSQL.
    """
    engine = schema.make_engine(db_url, pool_size=pool_size)
    if create_tables:
        schema.create_schema(engine)
    context = _Context(Store(engine), admin_token)
    if not admin_token:
        logger.warning("no admin token: the admin API refuses every request")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        context.store.close()

    app = FastAPI(
        lifespan=lifespan,
        title="trayscan reference backend",
        version=API_VERSION,
        description=(
            "The backend contract of trayscan terminals (docs/backend-contract.md). Money is "
            "integer fen; terminals sign every request with HMAC-SHA256 "
            "(X-Trayscan-Terminal, -Timestamp, -Nonce, -Signature); administration uses a "
            "bearer token."
        ),
        openapi_tags=[
            {"name": "terminal", "description": "what a terminal calls, signed"},
            {"name": "admin", "description": "administration, with the admin bearer token"},
        ],
    )
    app.state.trayscan = context
    _install_error_handlers(app)
    _add_terminal_routes(app, context.store)
    _add_admin_routes(app, context.store)
    from server.face_api import add_face_routes  # it imports this module's auth types

    add_face_routes(app, context.store)
    _use_contract_errors_in_openapi(app)

    return app


def app_from_env() -> FastAPI:
    """The app for ``uvicorn --factory``: database, token and pool size from the environment."""
    db_url = os.environ.get(DB_URL_ENV, schema.DEFAULT_SQLITE_URL)
    pool_size = int(os.environ.get(POOL_SIZE_ENV) or 10)
    return create_app(
        db_url, os.environ.get(ADMIN_TOKEN_ENV, ""), create_tables=False, pool_size=pool_size
    )


# --- authentication ---------------------------------------------------------------------------

_signature_scheme = APIKeyHeader(
    name=SIGNATURE_HEADER,
    scheme_name="terminalSignature",
    description=(
        "HMAC-SHA256 with the terminal's secret over METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\n"
        "sha256hex(BODY), with the headers X-Trayscan-Terminal, X-Trayscan-Timestamp and "
        "X-Trayscan-Nonce (terminal/backend/signing.py)"
    ),
    auto_error=False,
)
_bearer_scheme = HTTPBearer(
    scheme_name="adminToken", description="the server's admin token", auto_error=False
)


def _context(request: Request) -> _Context:
    context: _Context = request.app.state.trayscan
    return context


async def terminal_signature(
    request: Request,
    signature: Annotated[str | None, Security(_signature_scheme)],
) -> NonceClaim:
    """Check a terminal's request signature; the claim of its nonce goes to the store.

    Raises:
        ApiError: 401 ``missing_signature``, ``stale_timestamp``, ``bad_nonce`` or
            ``unauthorized`` (unknown terminal, wrong signature).
    """
    store = _context(request).store
    headers = request.headers
    terminal_id = headers.get(TERMINAL_HEADER)
    if not terminal_id or not signature:
        raise ApiError(401, "missing_signature", "the request is not signed")
    body = await request.body()
    path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    if query:
        path = f"{path}?{query}"
    timestamp, nonce = headers.get(TIMESTAMP_HEADER), headers.get(NONCE_HEADER)

    def check(secret: str) -> None:
        verify_signature(secret, request.method, path, body, timestamp, nonce, signature)

    # The remembered secret needs no thread; only a database read does.
    secret = store.cached_secret(terminal_id)
    if secret is None:
        secret = await run_in_threadpool(store.terminal_secret, terminal_id)
    if secret is None:
        raise ApiError(401, "unauthorized", f"unknown terminal {terminal_id!r}")
    try:
        try:
            check(secret)
        except SignatureError as exc:
            if exc.code != "bad_signature":
                raise
            # The secret may have been changed through another server process: read it again.
            fresh = await run_in_threadpool(store.terminal_secret, terminal_id, fresh=True)
            if fresh is None or fresh == secret:
                raise
            check(fresh)
    except SignatureError as exc:
        raise ApiError(401, _SIGNATURE_CODES.get(exc.code, "unauthorized"), str(exc)) from None
    assert nonce is not None
    return NonceClaim(terminal_id, nonce)


def admin_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer_scheme)],
) -> None:
    """Check the admin bearer token.

    Raises:
        ApiError: 401 ``unauthorized``.
    """
    expected = _context(request).admin_token
    if not expected:
        raise ApiError(401, "unauthorized", "the admin API is off (no admin token configured)")
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "unauthorized", "missing Authorization: Bearer <admin token>")
    if not hmac.compare_digest(credentials.credentials.encode("utf-8"), expected.encode("utf-8")):
        raise ApiError(401, "unauthorized", "wrong admin token")


Claim = Annotated[NonceClaim, Depends(terminal_signature)]
PathId = Annotated[
    str, PathParam(pattern=_ID_PATH, description="1-64 characters of [0-9A-Za-z_.:-]")
]
BundleVersion = Annotated[
    str,
    PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$", description="a bundle version string"),
]
_ADMIN = [Depends(admin_token)]


def _same_terminal(claim: NonceClaim, body_terminal: str) -> None:
    if claim.terminal_id != body_terminal:
        raise ApiError(
            403,
            "terminal_mismatch",
            f"body names terminal {body_terminal!r} but {claim.terminal_id!r} signed it",
        )


# --- routes -----------------------------------------------------------------------------------


def _add_terminal_routes(app: FastAPI, store: Store) -> None:
    signed = _errors(401)

    @app.get("/v1/health", tags=["terminal"], responses={503: {"model": ErrorAnswer}})
    def health() -> HealthAnswer:
        """Whether the server and its database answer (no authentication)."""
        store.ping()
        return HealthAnswer.model_validate({"status": "ok", "database": store.database})

    @app.get("/v1/menu/today", tags=["terminal"], responses=_errors(401, 404))
    def menu_today(claim: Claim) -> MenuAnswer:
        """Today's menu; 404 `no_menu` when none is set."""
        return store.menu_today(claim)

    @app.get("/v1/cards/{card_id}/account", tags=["terminal"], responses=_errors(401, 404, 422))
    def card_account(card_id: PathId, claim: Claim) -> AccountAnswer:
        """The account a card pays from; 404 `unknown_card`."""
        return store.card_account(card_id, claim)

    @app.get("/v1/accounts/{account_id}", tags=["terminal"], responses=_errors(401, 404, 422))
    def account(account_id: PathId, claim: Claim) -> AccountAnswer:
        """An account by its id (a face match names one); 404 `unknown_account`."""
        return store.account(account_id, claim)

    @app.get("/v1/cards", tags=["terminal"], responses=signed)
    def all_cards(claim: Claim) -> CardsAnswer:
        """Every card with its account, for the terminal's offline cache."""
        return store.all_cards(claim)

    @app.post(
        "/v1/transactions",
        tags=["terminal"],
        status_code=201,
        response_model=TransactionResult,
        responses={
            200: {"model": TransactionResult, "description": "a repeat of a posted id"},
            **_errors(400, 401, 402, 403, 404, 409, 422),
        },
    )
    def post_transaction(body: TransactionBody, claim: Claim) -> Response:
        """Record a transaction and debit its account (card, face) atomically, once per id.

        201 on the first post; a repeat of the same id and body gets 200 with the first answer.
        """
        _same_terminal(claim, body.terminal_id)
        result, created = store.post_transaction(claim, body)
        # The hot path: the answer is serialised once here instead of validated again by FastAPI.
        return Response(
            result.model_dump_json(),
            status_code=201 if created else 200,
            media_type="application/json",
        )

    @app.get("/v1/transactions/{transaction_id}", tags=["terminal"], responses=_errors(401, 404))
    def transaction(transaction_id: PathId, claim: Claim) -> TransactionRecordAnswer:
        """A transaction as recorded; 404 `unknown_transaction`."""
        return store.transaction(transaction_id, claim)

    @app.post(
        "/v1/transactions/{transaction_id}/void",
        tags=["terminal"],
        responses=_errors(400, 401, 422),
    )
    def void(transaction_id: PathId, body: VoidBody, claim: Claim) -> VoidAnswer:
        """Void a transaction in full (less refunds already made); idempotent.

        Voiding an id never posted records a tombstone: a later post of it gets 409 `voided`.
        """
        return store.void(claim, transaction_id, body.reason)

    @app.post(
        "/v1/refunds",
        tags=["terminal"],
        status_code=201,
        responses={
            200: {"model": RefundAnswer, "description": "a repeat of a refund id"},
            **_errors(400, 401, 404, 409, 422),
        },
    )
    def refund(body: RefundBody, claim: Claim, response: Response) -> RefundAnswer:
        """Give back part of a transaction; idempotent by `refund_id`."""
        answer, created = store.refund(claim, body)
        response.status_code = 201 if created else 200
        return answer

    @app.post("/v1/terminals/heartbeat", tags=["terminal"], responses=_errors(400, 401, 403, 422))
    def heartbeat(body: HeartbeatBody, claim: Claim) -> HeartbeatAnswer:
        """The terminal says it is alive; the answer names the bundle it should run."""
        _same_terminal(claim, body.terminal_id)
        return store.heartbeat(claim, body)

    @app.get("/v1/bundles/latest", tags=["terminal"], responses=_errors(401, 404))
    def latest_bundle(claim: Claim) -> BundleInfo:
        """The latest published bundle; 404 `no_bundle`."""
        return store.latest_bundle(claim)

    @app.get(
        "/v1/bundles/{version}/archive",
        tags=["terminal"],
        response_class=Response,
        responses={
            200: {
                "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
                "description": "the bundle folder as tar.gz; its SHA-256 is in X-Trayscan-Sha256",
            },
            **_errors(401, 404),
        },
    )
    def bundle_archive(version: BundleVersion, claim: Claim) -> Response:
        """Download a bundle's archive."""
        archive, digest = store.bundle_archive(version, claim)
        return Response(
            content=archive,
            media_type="application/gzip",
            headers={
                "X-Trayscan-Sha256": digest,
                "Content-Disposition": f'attachment; filename="{version}.tar.gz"',
            },
        )


def _add_admin_routes(app: FastAPI, store: Store) -> None:
    dependencies = _ADMIN

    @app.post(
        "/v1/admin/accounts",
        tags=["admin"],
        status_code=201,
        dependencies=dependencies,
        responses=_errors(400, 401, 409, 422),
    )
    def create_account(body: CreateAccountBody) -> AccountAnswer:
        """Open an account; 409 `conflict` when the id is taken."""
        return store.create_account(body.account_id, body.display_name, body.balance_fen)

    @app.post(
        "/v1/admin/accounts/{account_id}/cards",
        tags=["admin"],
        status_code=201,
        dependencies=dependencies,
        responses=_errors(400, 401, 404, 422),
    )
    def add_card(account_id: PathId, body: AddCardBody) -> CardAnswer:
        """Link a card to the account (a card linked elsewhere moves)."""
        return store.add_card(account_id, body.card_id)

    @app.post(
        "/v1/admin/accounts/{account_id}/top-ups",
        tags=["admin"],
        dependencies=dependencies,
        responses=_errors(400, 401, 404, 422),
    )
    def top_up(account_id: PathId, body: TopUpBody) -> AccountAnswer:
        """Add money to the account."""
        return store.top_up(account_id, body.amount_fen)

    @app.post(
        "/v1/admin/accounts/{account_id}/block",
        tags=["admin"],
        dependencies=dependencies,
        responses=_errors(400, 401, 404, 422),
    )
    def block(account_id: PathId, body: BlockBody) -> AccountAnswer:
        """Block or unblock the account."""
        return store.set_blocked(account_id, body.blocked)

    @app.post(
        "/v1/admin/terminals",
        tags=["admin"],
        status_code=201,
        dependencies=dependencies,
        responses=_errors(400, 401, 422),
    )
    def add_terminal(body: AddTerminalBody) -> TerminalAnswer:
        """Register a terminal (or give it a new secret); the secret is shown only here."""
        return store.add_terminal(body.terminal_id)

    @app.put(
        "/v1/admin/menu",
        tags=["admin"],
        dependencies=dependencies,
        responses=_errors(400, 401, 422),
    )
    def set_menu(body: MenuFileModel) -> MenuVersionAnswer:
        """Set today's menu (the shape of assets/menu/demo-menu.yaml)."""
        _check_menu(body)
        return store.set_menu(body)

    @app.post(
        "/v1/admin/bundles",
        tags=["admin"],
        status_code=201,
        dependencies=dependencies,
        responses={
            200: {"model": BundleInfo, "description": "the same archive was published before"},
            **_errors(401, 409, 422),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
                "description": "the bundle folder as tar.gz, files at the top level",
            }
        },
    )
    async def publish_bundle(request: Request, response: Response) -> BundleInfo:
        """Publish a model bundle; it is verified first and becomes the latest."""
        archive = await request.body()
        if not archive:
            raise ApiError(422, "invalid_request", "body: a tar.gz bundle archive is required")

        def publish() -> tuple[BundleInfo, bool]:
            try:
                version = check_archive(archive)
            except BundleArchiveError as exc:
                raise ApiError(422, "invalid_request", f"bundle: {exc}") from None
            return store.publish_bundle(version, archive)

        info, created = await run_in_threadpool(publish)
        response.status_code = 201 if created else 200
        return info

    @app.get(
        "/v1/admin/reports/daily",
        tags=["admin"],
        dependencies=dependencies,
        responses=_errors(401, 422),
    )
    def daily_report(
        day: Annotated[
            str | None,
            Query(alias="date", pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD"),
        ] = None,
    ) -> DailyReport:
        """Per-dish count, sales and grams of one day (default today), and totals."""
        try:
            wanted = date.fromisoformat(day) if day else date.today()
        except ValueError:
            raise ApiError(422, "invalid_request", f"date: {day!r} is not a date") from None
        return store.daily_report(wanted)


def _check_menu(menu: MenuFileModel) -> None:
    """Run the menu through ``load_menu``, which also checks tableware references and ids."""
    from terminal.menu_file import load_menu
    from terminal.yamlmodels import FileError

    document = json.dumps(menu.model_dump(mode="json"), ensure_ascii=False)
    with tempfile.TemporaryDirectory(prefix="trayscan-menu-") as scratch:
        path = Path(scratch) / "menu.yaml"
        path.write_text(document, encoding="utf-8")
        try:
            load_menu(path)
        except FileError as exc:
            message = "; ".join(line.replace(str(path), "menu") for line in exc.errors)
            raise ApiError(422, "invalid_request", message) from None


# --- errors -----------------------------------------------------------------------------------


def _use_contract_errors_in_openapi(app: FastAPI) -> None:
    """Describe 422 answers as the contract's error body, not FastAPI's own validation shape."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        error_schema = {"$ref": "#/components/schemas/ErrorAnswer"}
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                invalid = operation.get("responses", {}).get("422")
                if invalid is not None:
                    invalid["description"] = (
                        "a field is missing or wrong (`invalid_request`, naming the field)"
                    )
                    invalid["content"] = {"application/json": {"schema": error_schema}}
        schemas = document.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _field_name(loc: tuple[int | str, ...]) -> str:
    where = loc[0] if loc else "body"
    text = ""
    for part in loc[1:]:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    if where == "body":
        return text or "body"
    return f"{where} {text}".strip()


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        if exc.status >= 500:
            logger.error("%s: %s", exc.code, exc.message)
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = list(exc.errors())
        if any(problem.get("type") == "json_invalid" for problem in problems):
            detail = next(p for p in problems if p.get("type") == "json_invalid")
            message = f"the body is not JSON: {detail.get('ctx', {}).get('error', 'invalid')}"
            return JSONResponse(ApiError(400, "malformed_json", message).body(), status_code=400)
        message = "; ".join(
            f"{_field_name(tuple(problem.get('loc', ())))}: {problem.get('msg', 'invalid')}"
            for problem in problems
        )
        return JSONResponse(ApiError(422, "invalid_request", message).body(), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        error = ApiError(exc.status_code, code, str(exc.detail))
        return JSONResponse(error.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(sa.exc.OperationalError)
    async def database_down(_request: Request, exc: sa.exc.OperationalError) -> JSONResponse:
        logger.error("database unavailable: %s", exc)
        error = ApiError(503, "database_unavailable", "the database does not answer")
        return JSONResponse(error.body(), status_code=503)

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        logger.error("unexpected error", exc_info=exc)
        error = ApiError(500, "internal_error", f"internal error: {type(exc).__name__}")
        return JSONResponse(error.body(), status_code=500)
