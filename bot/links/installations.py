"""The tables of slack_sdk's SQLAlchemy installation and OAuth state stores, in our schema, and
how their Slack tokens are kept: sealed with PAYLINK_SECRET_KEY.

In multi-workspace mode (SLACK_CLIENT_ID) each workspace that installs Paylink gets a row in
``slack_installations`` and ``slack_bots`` (its bot token, and with token rotation its refresh
token), and every install started at ``/slack/install`` a row in ``slack_oauth_states``.
Migration 0011 creates them; they are registered here, built by slack_sdk's own table
builders, so the migration test proves the schema is the one those stores query. The one
difference, migration 0013: the token columns are Text, wide enough for a sealed token.

The tokens are stored as Fernet tokens (:mod:`bot.secretbox`) by
:class:`bot.slack.installation_store.SealedInstallationStore`, through :class:`SealedToken`;
a row stored before that (a token starting with ``xox``) is read as it is until
``paylink rotate-key`` seals it (see docs/decisions/0029).
"""

from __future__ import annotations

from typing import Any

from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from sqlalchemy import Table, Text
from sqlalchemy.types import TypeDecorator

from bot.db import Base
from bot.secretbox import SecretBox

#: The columns that hold Slack tokens, in either table (slack_bots has the bot's two).
TOKEN_COLUMNS = ("bot_token", "bot_refresh_token", "user_token", "user_refresh_token")


def token_columns(table: Table) -> list[str]:
    """The names of ``table``'s columns that hold Slack tokens."""
    return [name for name in TOKEN_COLUMNS if name in table.c]


def widened(table: Table) -> Table:
    """``table`` with its token columns made Text (migration 0013)."""
    for name in token_columns(table):
        table.c[name].type = Text()
    return table


INSTALLATIONS = widened(
    SQLAlchemyInstallationStore.build_installations_table(
        Base.metadata, SQLAlchemyInstallationStore.default_installations_table_name
    )
)
BOTS = widened(
    SQLAlchemyInstallationStore.build_bots_table(
        Base.metadata, SQLAlchemyInstallationStore.default_bots_table_name
    )
)
OAUTH_STATES = SQLAlchemyOAuthStateStore.build_oauth_states_table(
    Base.metadata, SQLAlchemyOAuthStateStore.default_table_name
)


def is_plain(stored: str) -> bool:
    """True for a token stored in plain text, before tokens were sealed: Slack's all start
    with ``xox`` (``xoxb-``, ``xoxp-``, ``xoxe.xoxb-``, ``xoxe-1-``), a Fernet token with
    ``gAAAAA``."""
    return stored.startswith("xox")


def open_token(box: SecretBox, stored: str) -> str:
    """The token ``stored`` holds (as it is when plain); WrongKey when ``box`` did not seal
    it."""
    return stored if not stored or is_plain(stored) else box.open(stored)


def reseal(box: SecretBox, stored: str) -> str:
    """``stored`` sealed with ``box``'s first key: a plain token sealed, a sealed one
    re-encrypted; WrongKey when no key of ``box`` opens it."""
    return box.seal(stored) if is_plain(stored) else box.rotate(stored)


class SealedToken(TypeDecorator):
    """A token column as slack_sdk's store sees it: written sealed with ``box``, read opened
    (a plain one as it is). Never in the metadata the migrations are checked against."""

    impl = Text
    cache_ok = True  # ``box`` is part of the cache key: each box's statements are its own

    def __init__(self, box: SecretBox):
        super().__init__()
        self.box = box

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return self.box.seal(value) if value else value

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        return open_token(self.box, value) if value else value
