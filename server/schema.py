"""The server's tables (SQLAlchemy Core) and how to open a database for them.

One schema serves SQLite and PostgreSQL. The rules that keep money right live in the database
where they can: balances and refunds carry CHECK constraints, ids are primary keys so a repeated
post or refund cannot insert twice, and foreign keys from transactions and refunds are deferred
to the commit so that a transaction can be inserted before its debit (see :mod:`server.store`).

SQLite runs in WAL mode with ``synchronous=FULL`` and a busy timeout, and every transaction that
may write starts with ``BEGIN IMMEDIATE``; PostgreSQL is reached through psycopg 3 with a
connection pool.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url

logger = logging.getLogger(__name__)

metadata = sa.MetaData()

ID = sa.String(64)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("account_id", ID, primary_key=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("balance_fen", sa.BigInteger, nullable=False),
    sa.Column("blocked", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.CheckConstraint("balance_fen >= 0", name="accounts_balance_not_negative"),
)

cards = sa.Table(
    "cards",
    metadata,
    sa.Column("card_id", ID, primary_key=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.account_id"), nullable=False),
)

terminals = sa.Table(
    "terminals",
    metadata,
    sa.Column("terminal_id", ID, primary_key=True),
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_seen_at", sa.Float),
    sa.Column("bundle_version", sa.String(64)),
    sa.Column("outbox_depth", sa.Integer),
    sa.Column("status", sa.JSON),
)

nonces = sa.Table(
    "nonces",
    metadata,
    sa.Column("terminal_id", ID, primary_key=True),
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("seen_at", sa.Float, nullable=False, index=True),
)

transactions = sa.Table(
    "transactions",
    metadata,
    sa.Column("transaction_id", ID, primary_key=True),
    sa.Column("checkout_id", sa.String(64), nullable=False),
    sa.Column("terminal_id", ID, nullable=False),
    # Deferred: the row is inserted first (the idempotency lock) and the debit that proves the
    # account exists comes after it; an unknown account rolls the whole transaction back.
    sa.Column(
        "account_id",
        ID,
        sa.ForeignKey("accounts.account_id", deferrable=True, initially="DEFERRED"),
    ),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("balance_after_fen", sa.BigInteger),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("refunded_fen", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("offline", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("lines", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("posted_at", sa.Float, nullable=False),
    # A void of an id never posted leaves a tombstone, so a late post of it charges nothing.
    sa.Column("tombstone", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("void_refunded_fen", sa.BigInteger),
    sa.Column("void_balance_after_fen", sa.BigInteger),
    sa.Column("void_reason", sa.String(500)),
    sa.Column("voided_at", sa.Float),
    sa.CheckConstraint("amount_fen >= 0", name="transactions_amount_not_negative"),
    sa.CheckConstraint("status IN ('charged', 'voided')", name="transactions_status"),
    sa.CheckConstraint(
        "refunded_fen >= 0 AND refunded_fen <= amount_fen", name="transactions_refunds_covered"
    ),
)

refunds = sa.Table(
    "refunds",
    metadata,
    sa.Column("refund_id", ID, primary_key=True),
    sa.Column(
        "transaction_id",
        ID,
        sa.ForeignKey("transactions.transaction_id", deferrable=True, initially="DEFERRED"),
        nullable=False,
        index=True,
    ),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("balance_after_fen", sa.BigInteger),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("cashier_id", ID, nullable=False),
    sa.Column("terminal_id", ID, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.CheckConstraint("amount_fen > 0", name="refunds_amount_positive"),
)

top_ups = sa.Table(
    "top_ups",
    metadata,
    sa.Column("top_up_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", ID, sa.ForeignKey("accounts.account_id"), nullable=False),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.CheckConstraint("amount_fen > 0", name="top_ups_amount_positive"),
)

menus = sa.Table(
    "menus",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

bundles = sa.Table(
    "bundles",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("version", sa.String(64), nullable=False, unique=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("archive", sa.LargeBinary, nullable=False),
    sa.Column("published_at", sa.Float, nullable=False),
)

# Face accounts (server/face_api.py): templates with the account, never photos, and the record of
# every enrolment (with its consent) and deletion, whose seq is the terminals' sync cursor.
face_templates = sa.Table(
    "face_templates",
    metadata,
    sa.Column("account_id", ID, sa.ForeignKey("accounts.account_id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("template", sa.LargeBinary, nullable=False),
    sa.Column("enrolled_at", sa.Float, nullable=False),
)

face_events = sa.Table(
    "face_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", ID, nullable=False, index=True),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(80), nullable=False),
    sa.Column("template_count", sa.Integer, nullable=False),
    sa.Column("consent_given_by", sa.String(200)),
    sa.Column("consent_text_version", sa.String(64)),
    sa.Column("consent_given_at", sa.Float),
    sa.Column("reason", sa.String(500)),
    sa.Column("at", sa.Float, nullable=False),
    sa.CheckConstraint("event IN ('enrolled', 'deleted')", name="face_events_event"),
)

#: Execution option for a connection that only reads: on SQLite it begins a deferred
#: transaction instead of taking the write lock.
READ_ONLY = "trayscan_read_only"

DEFAULT_SQLITE_URL = "sqlite:///var/backend.db"


class DatabaseUrlError(ValueError):
    """A database URL this server cannot use."""


def normalise_url(db_url: str) -> URL:
    """The URL with the psycopg 3 driver named for PostgreSQL.

    Raises:
        DatabaseUrlError: not a SQLite or PostgreSQL URL.
    """
    try:
        url = make_url(db_url)
    except sa.exc.ArgumentError as exc:
        raise DatabaseUrlError(f"cannot read database URL {db_url!r}: {exc}") from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return url
    raise DatabaseUrlError(f"database URL {db_url!r}: only sqlite:/// and postgresql:// are served")


def make_engine(db_url: str, *, pool_size: int = 10) -> Engine:
    """Open the database at ``db_url`` (SQLite or PostgreSQL); tables are not created here.

    Args:
        db_url: ``sqlite:///path.db`` (its folder is created) or
            ``postgresql+psycopg://user:password@host:port/name``.
        pool_size: connections kept open to PostgreSQL per process.

    Raises:
        DatabaseUrlError: the URL names another kind of database.
    """
    url = normalise_url(db_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            # One connection shared by every thread, or each would see its own empty database.
            engine = sa.create_engine(
                url, connect_args={"check_same_thread": False}, poolclass=sa.pool.StaticPool
            )
            _configure_sqlite(engine)
            return engine
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30.0},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        _configure_sqlite(engine)
        return engine
    return sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        pool_pre_ping=False,
    )


def _configure_sqlite(engine: Engine) -> None:
    """WAL, full sync, a busy timeout, foreign keys, and transactions begun by us."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own transaction handling is turned off so that "begin" below decides.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # IMMEDIATE takes the write lock at the start, so two writers never deadlock upgrading
        # a read lock; readers that ask for READ_ONLY share the database in WAL mode.
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_schema(engine: Engine) -> None:
    """Create the tables that are missing (existing ones are left as they are)."""
    metadata.create_all(engine, checkfirst=True)
    logger.info("schema ready on %s", engine.url.render_as_string(hide_password=True))


def database_kind(engine: Engine) -> str:
    """``sqlite`` or ``postgresql``."""
    return str(engine.dialect.name)
