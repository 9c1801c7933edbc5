"""slack_sdk's SQLAlchemy installation store with each workspace's Slack tokens sealed with
PAYLINK_SECRET_KEY: a dump of the database holds no token anyone could use
(docs/decisions/0029).

Whatever reads or writes a token column goes through :class:`~bot.links.installations.
SealedToken`: ``save`` and ``save_bot`` (Bolt's install, Bolt's and the worker's token
refreshes) write sealed tokens; ``find_installation`` and ``find_bot`` (Bolt's authorize,
:class:`~bot.slack.clients.InstalledTokens`) return them opened, so everything else sees
plain tokens as before. A row stored before tokens were sealed is read as it is.
"""

from __future__ import annotations

from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from sqlalchemy import Engine

from bot.links.installations import SealedToken, token_columns
from bot.secretbox import SecretBox, WrongKey


class SealedInstallationStore(SQLAlchemyInstallationStore):
    """The installations of app ``client_id`` in ``engine``'s database, their tokens sealed
    with ``box``. A token ``box`` cannot open raises WrongKey naming the workspace and
    ``paylink check`` (a job then retries, a request fails): never a token's value."""

    def __init__(self, client_id: str, engine: Engine, box: SecretBox):
        super().__init__(client_id=client_id, engine=engine)
        # The tables slack_sdk built for this store alone (its own MetaData), before any
        # statement uses them: every statement the store makes binds and reads through these.
        sealed = SealedToken(box)
        for table in (self.installations, self.bots):
            for name in token_columns(table):
                table.c[name].type = sealed

    def find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        try:
            return super().find_installation(
                enterprise_id=enterprise_id,
                team_id=team_id,
                user_id=user_id,
                is_enterprise_install=is_enterprise_install,
            )
        except WrongKey:
            raise WrongKey(_unopened(enterprise_id, team_id)) from None

    def find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        try:
            return super().find_bot(
                enterprise_id=enterprise_id,
                team_id=team_id,
                is_enterprise_install=is_enterprise_install,
            )
        except WrongKey:
            raise WrongKey(_unopened(enterprise_id, team_id)) from None


def _unopened(enterprise_id: str | None, team_id: str | None) -> str:
    workspace = team_id or enterprise_id or "no workspace"
    return (
        f"the Slack tokens of workspace {workspace} do not decrypt with PAYLINK_SECRET_KEY: "
        "run `paylink check`"
    )
