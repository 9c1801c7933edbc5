"""slack_sdk's SQLAlchemy installation store with each workspace's Slack tokens sealed with
PAYLINK_SECRET_KEY: a dump of the database holds no token anyone could use
(docs/decisions/0028).

Whatever reads or writes a token column goes through :class:`~bot.links.installations.
SealedToken`: ``save`` and ``save_bot`` (Bolt's install, Bolt's and the worker's token
refreshes) write sealed tokens; ``find_installation`` and ``find_bot`` (Bolt's authorize,
:class:`~bot.slack.clients.InstalledTokens`) return them opened, so everything else sees
plain tokens as before. A row stored before tokens were sealed is read as it is.
"""

from __future__ import annotations

from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from sqlalchemy import Engine

from bot.links.installations import SealedToken, token_columns
from bot.secretbox import SecretBox


class SealedInstallationStore(SQLAlchemyInstallationStore):
    """The installations of app ``client_id`` in ``engine``'s database, their tokens sealed
    with ``box``. A token ``box`` cannot open raises WrongKey (``paylink check`` says so)."""

    def __init__(self, client_id: str, engine: Engine, box: SecretBox):
        super().__init__(client_id=client_id, engine=engine)
        # The tables slack_sdk built for this store alone (its own MetaData), before any
        # statement uses them: every statement the store makes binds and reads through these.
        sealed = SealedToken(box)
        for table in (self.installations, self.bots):
            for name in token_columns(table):
                table.c[name].type = sealed
