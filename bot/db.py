"""Database engines, the ORM base and UTC timestamps: SQLite by default (see
:mod:`bot.sqlite`), PostgreSQL via URL."""

from __future__ import annotations

import select
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, sessionmaker
from sqlalchemy.types import DateTime, TypeDecorator

from bot.errors import ConfigError
from bot.sqlite import READ_ONLY, sqlite_engine


class Base(DeclarativeBase):
    """Declarative base for every table (links, history, webhook events, jobs, sandbox)."""


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


class DatabaseUnusable(ConfigError):
    """DATABASE_URL names no database this process can use: one line saying what went wrong
    and what to do, never the URL itself (it may carry a password)."""

    def __init__(self, url: str, exc: Exception):
        super().__init__([f"DATABASE_URL: {_what_failed(url, exc)}"])


def _what_failed(url: str, exc: Exception) -> str:
    if not isinstance(exc, DBAPIError):  # SQLAlchemy could not make an engine of the URL
        return (
            f"not a database URL Paylink can use ({exc}): expected sqlite:///paylink.db "
            "or postgresql://user:password@host:5432/dbname"
        )
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
    if url.startswith("sqlite"):
        return (
            f"cannot use the SQLite database {make_url(url).database} ({reason}): check that "
            "its directory exists and that this user may write there"
        )
    if isinstance(exc, OperationalError | InterfaceError):
        return (
            f"cannot connect ({reason}): check the host, port, user and password, and that "
            "the database server is running"
        )
    return f"the database refused ({reason}): check that its user may create and change tables"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url``: SQLite as :func:`bot.sqlite.sqlite_engine` sets it up,
    PostgreSQL through psycopg with connections checked before use.
    :class:`DatabaseUnusable` when the URL names no database SQLAlchemy can open."""
    try:
        return _engine(url, **kwargs)
    except (ArgumentError, ImportError) as exc:  # unknown scheme, driver not installed
        raise DatabaseUnusable(url, exc) from None


def _engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        return sqlite_engine(url, **kwargs)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


def reader(engine: Engine) -> Engine:
    """The same engine and pool, for transactions that only read (SQLite: a deferred BEGIN,
    so reads neither take nor wait for the write lock)."""
    return engine.execution_options(**{READ_ONLY: True})


def make_sessionmaker(engine: Engine) -> sessionmaker:
    """Sessions that keep loaded attributes after commit (we hand records to renderers)."""
    return sessionmaker(engine, expire_on_commit=False)


def server_hung_up(conn: Connection) -> bool:
    """True when an idle connection's server has said something unasked: on PostgreSQL that
    is the notice it sends before it closes the connection (a restart, an administrator's
    ``pg_terminate_backend``), after which the next statement would fail. Costs one
    ``select`` rather than a round trip; SQLite has no server (False)."""
    raw = conn.connection.dbapi_connection
    fileno = getattr(raw, "fileno", None)
    if fileno is None:
        return False
    if raw.closed:
        return True
    readable, _, _ = select.select([fileno()], [], [], 0)
    return bool(readable)
