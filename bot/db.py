"""Database engines, the ORM base and UTC timestamps: SQLite by default (see
:mod:`bot.sqlite`), PostgreSQL via URL."""

from __future__ import annotations

import select
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.orm import DeclarativeBase, sessionmaker
from sqlalchemy.types import DateTime, TypeDecorator

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


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url``: SQLite as :func:`bot.sqlite.sqlite_engine` sets it up,
    PostgreSQL through psycopg with connections checked before use."""
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
