"""The tables of slack_sdk's SQLAlchemy installation and OAuth state stores, in our schema.

In multi-workspace mode (SLACK_CLIENT_ID) each workspace that installs Paylink gets a row in
``slack_installations`` and ``slack_bots`` (its bot token, and with token rotation its refresh
token), and every install started at ``/slack/install`` a row in ``slack_oauth_states``.
Migration 0011 creates them; they are registered here, built by slack_sdk's own table
builders, so the migration test proves the schema is exactly the one those stores query.
"""

from __future__ import annotations

from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore

from bot.db import Base

INSTALLATIONS = SQLAlchemyInstallationStore.build_installations_table(
    Base.metadata, SQLAlchemyInstallationStore.default_installations_table_name
)
BOTS = SQLAlchemyInstallationStore.build_bots_table(
    Base.metadata, SQLAlchemyInstallationStore.default_bots_table_name
)
OAUTH_STATES = SQLAlchemyOAuthStateStore.build_oauth_states_table(
    Base.metadata, SQLAlchemyOAuthStateStore.default_table_name
)
