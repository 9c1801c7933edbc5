"""Alembic environment: runs on the connection handed over by bot.schema."""

from __future__ import annotations

from alembic import context

import bot.links.tables  # noqa: F401  (registers the tables)
import bot.links.workspace_settings  # noqa: F401
import bot.xpay.keys  # noqa: F401
import bot.xpay.sandbox  # noqa: F401
from bot.db import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
