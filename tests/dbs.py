"""Test databases: a SQLite file, or a fresh schema on the PostgreSQL in PAYLINK_TEST_DATABASE_URL.

Each PostgreSQL test gets its own schema (``t_<uuid>``) reached through ``search_path`` in the
URL, so tests can run in parallel (pytest-xdist) against one database without seeing each
other's rows; the schema is dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from bot.db import make_engine

PG_ENV = "PAYLINK_TEST_DATABASE_URL"
BACKENDS = ["sqlite", "postgresql"]


def _psycopg_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


@contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A URL for an empty database on ``backend``; skips PostgreSQL when it is not configured."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'paylink-test.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} not set")
    schema = f"t_{uuid.uuid4().hex}"
    admin = _admin(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def _admin(base: str) -> Engine:
    return create_engine(_psycopg_url(base), poolclass=NullPool)


@contextmanager
def migrated_engine(backend: str, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a fresh database whose schema was created by the Alembic migration."""
    from bot.schema import upgrade

    with database_url(backend, tmp_path) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            yield engine
        finally:
            engine.dispose()
