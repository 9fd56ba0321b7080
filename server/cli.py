"""``trayscan backend ...`` and ``trayscan bench backend``: run and administer the reference server.

The administration commands work on the database directly (``--db URL``), the same operations as
the admin API. This module's top level imports only the standard library: ``terminal.cli``
registers these commands on every start, and the kiosk must never import FastAPI or SQLAlchemy,
so each handler imports the server's modules when it runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.store import Store

logger = logging.getLogger(__name__)

DEFAULT_DB = "sqlite:///var/backend.db"
DEFAULT_PORT = 8700
ADMIN_TOKEN_ENV = "TRAYSCAN_ADMIN_TOKEN"


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False))


def _fail(command: str, message: str) -> int:
    print(f"trayscan backend {command}: {message}", file=sys.stderr)
    return 1


def _open_store(db_url: str) -> Store:
    from server.schema import create_schema, make_engine
    from server.store import Store

    engine = make_engine(db_url, pool_size=2)
    create_schema(engine)
    return Store(engine)


def _run_admin(command: str, db_url: str, action: Any) -> int:
    """Run ``action(store)`` and print its answer as JSON; an ApiError becomes exit status 1."""
    from server.errors import ApiError
    from server.schema import DatabaseUrlError

    try:
        store = _open_store(db_url)
    except DatabaseUrlError as exc:
        return _fail(command, str(exc))
    try:
        answer = action(store)
    except ApiError as exc:
        return _fail(command, f"{exc.code}: {exc.message}")
    finally:
        store.close()
    _print_json(answer.model_dump(mode="json") if hasattr(answer, "model_dump") else answer)
    return 0


# --- handlers -------------------------------------------------------------------------------


def _admin_token(args: argparse.Namespace) -> str:
    if args.admin_token_file is not None:
        return str(args.admin_token_file.read_text(encoding="utf-8").strip())
    return os.environ.get(ADMIN_TOKEN_ENV, "")


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the server with uvicorn (``--workers`` processes)."""
    import uvicorn

    from server.app import ADMIN_TOKEN_ENV as APP_TOKEN_ENV
    from server.app import DB_URL_ENV, POOL_SIZE_ENV
    from server.schema import DatabaseUrlError, create_schema, make_engine

    try:
        token = _admin_token(args)
    except OSError as exc:
        return _fail("serve", f"cannot read the admin token: {exc}")
    if not token:
        logger.warning("no --admin-token-file or %s: the admin API is off", ADMIN_TOKEN_ENV)
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        logger.warning(
            "listening on %s: terminals should reach the server through HTTPS only", args.host
        )
    try:
        engine = make_engine(args.db, pool_size=1)
        create_schema(engine)  # once here, not racing in every worker
        engine.dispose()
    except DatabaseUrlError as exc:
        return _fail("serve", str(exc))
    os.environ[DB_URL_ENV] = args.db
    os.environ[APP_TOKEN_ENV] = token
    if args.pool_size is not None:
        os.environ[POOL_SIZE_ENV] = str(args.pool_size)
    print(
        f"trayscan backend: serving {args.db} on http://{args.host}:{args.port} "
        f"({args.workers} worker{'s' if args.workers != 1 else ''})",
        file=sys.stderr,
    )
    uvicorn.run(
        "server.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        http="httptools",
        loop="uvloop",
        access_log=args.verbose > 0,
        log_level="info" if args.verbose > 0 else "warning",
        backlog=2048,
    )
    return 0


def cmd_create_account(args: argparse.Namespace) -> int:
    return _run_admin(
        "create-account",
        args.db,
        lambda store: store.create_account(args.account_id, args.name, args.balance_fen),
    )


def cmd_add_card(args: argparse.Namespace) -> int:
    return _run_admin(
        "add-card", args.db, lambda store: store.add_card(args.account_id, args.card_id)
    )


def cmd_top_up(args: argparse.Namespace) -> int:
    return _run_admin("top-up", args.db, lambda store: store.top_up(args.account_id, args.fen))


def cmd_block(args: argparse.Namespace) -> int:
    return _run_admin(
        "block", args.db, lambda store: store.set_blocked(args.account_id, not args.unblock)
    )


def cmd_add_terminal(args: argparse.Namespace) -> int:
    """Register a terminal and print its secret; it is not shown again."""
    return _run_admin("add-terminal", args.db, lambda store: store.add_terminal(args.terminal_id))


def cmd_set_menu(args: argparse.Namespace) -> int:
    from terminal.menu_file import MenuFileModel, load_menu
    from terminal.yamlmodels import FileError, load_yaml_model

    try:
        load_menu(args.file)
        model = load_yaml_model(MenuFileModel, args.file)
    except FileError as exc:
        return _fail("set-menu", str(exc))
    return _run_admin("set-menu", args.db, lambda store: store.set_menu(model))


def cmd_publish_bundle(args: argparse.Namespace) -> int:
    from server.bundles import BundleArchiveError, pack_bundle

    try:
        version, archive = pack_bundle(args.folder)
    except BundleArchiveError as exc:
        return _fail("publish-bundle", str(exc))
    return _run_admin(
        "publish-bundle", args.db, lambda store: store.publish_bundle(version, archive)[0]
    )


def cmd_report(args: argparse.Namespace) -> int:
    from datetime import date

    try:
        day = date.fromisoformat(args.date) if args.date else date.today()
    except ValueError:
        return _fail("report", f"--date {args.date!r} is not YYYY-MM-DD")
    return _run_admin("report", args.db, lambda store: store.daily_report(day))


def cmd_openapi(args: argparse.Namespace) -> int:
    """Write the OpenAPI document of the server."""
    from server.openapi import write_openapi

    write_openapi(args.to)
    print(f"trayscan backend openapi: wrote {args.to}", file=sys.stderr)
    return 0


def _run_bench(name: str, bench: Callable[[], Any]) -> int:
    """Run ``bench()`` and print its figures as JSON; a BenchError becomes exit status 1."""
    from server.bench import BenchError

    try:
        result = bench()
    except BenchError as exc:
        print(f"trayscan bench {name}: {exc}", file=sys.stderr)
        return 1
    _print_json(result)
    return 0


def cmd_bench_backend(args: argparse.Namespace) -> int:
    """Load the server with signed transactions and print the figures."""
    from server.bench import bench_backend

    return _run_bench(
        "backend",
        lambda: bench_backend(
            db_url=args.db,
            seconds=args.seconds,
            concurrency=args.concurrency,
            workers=args.workers,
            client_processes=args.client_processes,
            pool_size=args.pool_size,
        ),
    )


def cmd_bench_payment(args: argparse.Namespace) -> int:
    """Time card taps to "paid" through a terminal's outbox and print the figures."""
    from server.bench import bench_payment

    return _run_bench("payment", lambda: bench_payment(db_url=args.db, taps=args.taps))


# --- parsers --------------------------------------------------------------------------------


def _db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="URL",
        help=f"sqlite:///FILE or postgresql+psycopg://USER:PW@HOST:PORT/DB (default {DEFAULT_DB})",
    )


def add_parsers(sub: Any) -> None:
    """Register ``trayscan backend ...`` on the top-level subparsers."""
    backend = sub.add_parser("backend", help="the reference backend server and its database")
    actions = backend.add_subparsers(dest="backend_command", required=True, metavar="ACTION")

    serve = actions.add_parser("serve", help="run the server (HTTP/JSON, docs/backend-contract.md)")
    _db_argument(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument(
        "--admin-token-file",
        type=Path,
        metavar="F",
        help=f"file holding the admin bearer token (else ${ADMIN_TOKEN_ENV}; none: admin API off)",
    )
    serve.add_argument("--workers", type=int, default=1, metavar="N", help="server processes")
    serve.add_argument(
        "--pool-size", type=int, metavar="N", help="database connections per worker (10)"
    )
    serve.set_defaults(func=cmd_serve)

    create = actions.add_parser("create-account", help="open an account")
    create.add_argument("account_id", metavar="ID")
    create.add_argument("name", metavar="NAME", help="the diner's display name")
    create.add_argument("--balance-fen", type=int, default=0, metavar="N")
    _db_argument(create)
    create.set_defaults(func=cmd_create_account)

    card = actions.add_parser("add-card", help="link a card to an account")
    card.add_argument("account_id", metavar="ACCOUNT_ID")
    card.add_argument("card_id", metavar="CARD_ID")
    _db_argument(card)
    card.set_defaults(func=cmd_add_card)

    top_up = actions.add_parser("top-up", help="add money to an account")
    top_up.add_argument("account_id", metavar="ID")
    top_up.add_argument("fen", type=int, metavar="FEN")
    _db_argument(top_up)
    top_up.set_defaults(func=cmd_top_up)

    block = actions.add_parser("block", help="block an account (--unblock to lift it)")
    block.add_argument("account_id", metavar="ID")
    block.add_argument("--unblock", action="store_true")
    _db_argument(block)
    block.set_defaults(func=cmd_block)

    terminal = actions.add_parser(
        "add-terminal", help="register a terminal and print its secret (shown once)"
    )
    terminal.add_argument("terminal_id", metavar="ID")
    _db_argument(terminal)
    terminal.set_defaults(func=cmd_add_terminal)

    menu = actions.add_parser("set-menu", help="set today's menu from a menu YAML file")
    menu.add_argument("--file", type=Path, required=True, metavar="YAML")
    _db_argument(menu)
    menu.set_defaults(func=cmd_set_menu)

    bundle = actions.add_parser("publish-bundle", help="publish a model bundle folder")
    bundle.add_argument("folder", type=Path, metavar="DIR")
    _db_argument(bundle)
    bundle.set_defaults(func=cmd_publish_bundle)

    report = actions.add_parser("report", help="one day's per-dish sales and grams (JSON)")
    report.add_argument("--date", metavar="YYYY-MM-DD", help="the day (default today)")
    _db_argument(report)
    report.set_defaults(func=cmd_report)

    openapi = actions.add_parser("openapi", help="write the server's OpenAPI document")
    openapi.add_argument("--to", type=Path, required=True, metavar="PATH")
    openapi.set_defaults(func=cmd_openapi)


def add_bench_parser(bench_sub: Any) -> None:
    """Register ``trayscan bench backend`` on the ``bench`` subparsers."""
    bench = bench_sub.add_parser(
        "backend", help="signed transactions per second and latency of the reference server"
    )
    bench.add_argument(
        "--db",
        metavar="URL",
        help="database to load (default: a new SQLite file in a temporary folder)",
    )
    bench.add_argument("--seconds", type=float, default=10.0, metavar="S")
    bench.add_argument("--concurrency", type=int, default=8, metavar="C", help="clients at once")
    bench.add_argument("--workers", type=int, default=2, metavar="N", help="server processes")
    bench.add_argument(
        "--client-processes", type=int, default=2, metavar="P", help="processes the clients use"
    )
    bench.add_argument("--pool-size", type=int, metavar="N", help="connections per worker")
    bench.set_defaults(func=cmd_bench_backend)
    payment = bench_sub.add_parser(
        "payment", help="card tap to 'paid' through the outbox, against the reference server"
    )
    payment.add_argument("--db", metavar="URL", help="database (default: a new SQLite file)")
    payment.add_argument("--taps", type=int, default=200, metavar="N")
    payment.set_defaults(func=cmd_bench_payment)
