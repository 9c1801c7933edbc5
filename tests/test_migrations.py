"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import bot.links.tables  # noqa: F401  (registers the tables)
import bot.xpay.keys  # noqa: F401
import bot.xpay.sandbox  # noqa: F401
from bot.db import Base, make_engine
from bot.schema import SchemaOutdated, head_revision, require_current, upgrade
from tests.dbs import BACKENDS, database_url


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_match_the_models(backend: str, tmp_path: Path) -> None:
    with database_url(backend, tmp_path) as url:
        engine = make_engine(url)
        with pytest.raises(SchemaOutdated, match="paylink migrate"):
            require_current(engine)
        assert upgrade(engine) == (None, head_revision())
        require_current(engine)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        engine.dispose()
