"""The Web API client for a workspace, in either mode, so the code that talks to Slack never
asks which mode it runs in.

Single-workspace mode (SLACK_BOT_TOKEN): every workspace's client is the one token's.
Multi-workspace mode (SLACK_CLIENT_ID): a workspace's client carries the bot token of its
installation, from the installation store, refreshed first when token rotation is on and
the token is close to expiring; a workspace with no installation (never installed,
uninstalled, its bot token revoked) is :class:`NotInstalled`. Every client shares the one
pool of connections of :class:`~bot.slack.transport.PooledWebClient`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_sdk.errors import SlackTokenRotationError
from slack_sdk.oauth.installation_store import InstallationStore
from slack_sdk.oauth.token_rotation import TokenRotator

from bot.links.workspaces import Workspace
from bot.slack.transport import PooledWebClient

log = logging.getLogger("bot.slack")

# Refresh a rotating token this long before it expires (Bolt's default too): a job that waits
# behind a backlog must not find it expired.
ROTATE_BEFORE_MINUTES = 120


class NotInstalled(Exception):
    """Paylink has no token for this workspace: it was never installed there, or it was
    uninstalled, or its bot token was revoked."""

    def __init__(self, workspace: Workspace):
        super().__init__(f"not installed in {workspace.team_id or 'no workspace'}")
        self.workspace = workspace


# token_of(workspace) -> that workspace's bot token, or NotInstalled
TokenSource = Callable[[Workspace], str]


class SlackClients:
    """Hands out the Web API client of a workspace (see the module's docstring)."""

    def __init__(self, base: PooledWebClient, token_of: TokenSource | None = None):
        """``base``: the client whose connections all share (in single-workspace mode, with
        the one token); ``token_of``: the installations' tokens (multi-workspace mode)."""
        self.base = base
        self._token_of = token_of

    @property
    def multi_workspace(self) -> bool:
        """True when each workspace has a token of its own."""
        return self._token_of is not None

    def for_workspace(self, workspace: Workspace) -> PooledWebClient:
        """The client to act in ``workspace`` with; NotInstalled when Paylink has no token
        there (multi-workspace mode only: one token serves every link otherwise)."""
        if self._token_of is None:
            return self.base
        if workspace.team_id is None:
            raise NotInstalled(workspace)
        return self.base.with_token(self._token_of(workspace))

    def for_token(self, token: str | None) -> PooledWebClient:
        """The client with ``token`` (the one Bolt authorized a request with)."""
        return self.base.with_token(token)


class InstalledTokens:
    """The bot token of each workspace's installation (a :data:`TokenSource`)."""

    def __init__(self, store: InstallationStore, rotator: TokenRotator | None):
        """``rotator``: refreshes tokens that expire (None: rotation is never refreshed)."""
        self.store = store
        self.rotator = rotator

    def __call__(self, workspace: Workspace) -> str:
        installation = self.store.find_installation(
            enterprise_id=workspace.enterprise_id, team_id=workspace.team_id
        )
        if installation is None or not installation.bot_token:
            raise NotInstalled(workspace)
        if installation.bot_refresh_token and self.rotator is not None:
            try:
                refreshed = self.rotator.perform_token_rotation(
                    installation=installation, minutes_before_expiration=ROTATE_BEFORE_MINUTES
                )
            except SlackTokenRotationError as exc:
                answer = exc.api_error.response
                if answer.status_code != 200:  # Slack unwell (5xx, 429): try again later
                    raise
                # Slack refused the refresh token: the installation is gone in all but name.
                log.warning(
                    "token refresh refused: %s",
                    answer.get("error"),
                    extra={"team": workspace.team_id},
                )
                raise NotInstalled(workspace) from None
            if refreshed is not None:
                # Saved as Bolt saves it, so that Bolt and the worker read the same token.
                self.store.save(refreshed)
                log.info("bot token refreshed", extra={"team": workspace.team_id})
                return str(refreshed.bot_token)
        return installation.bot_token
