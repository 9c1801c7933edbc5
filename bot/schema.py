"""Schema versions through Alembic: ``paylink migrate`` upgrades; ``serve`` checks first (and
creates the schema in a new, empty database)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

MIGRATIONS = Path(__file__).parent / "migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest migration this code knows."""
    return ScriptDirectory.from_config(_config()).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None when it has never been migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_empty(engine: Engine) -> bool:
    """True when the database (its default schema) has no tables at all."""
    return not inspect(engine).get_table_names()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Bring the schema up to date (or to ``revision``); returns (before, after) revisions."""
    before = current_revision(engine)
    config = _config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    return before, head_revision() if revision == "head" else revision


class SchemaOutdated(Exception):
    """The database is not at the code's revision."""


def require_current(engine: Engine) -> None:
    """Raise SchemaOutdated with a message naming ``paylink migrate`` when behind."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutdated(
            f"DATABASE_URL: the schema is at {current or 'nothing (new database)'}, "
            f"this version needs {head}: run `paylink migrate` first"
        )
