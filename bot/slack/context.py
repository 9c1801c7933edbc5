"""What the Slack listeners share: settings, the link service, the approver directories and
each workspace's Web API client."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient

from bot.config import Settings
from bot.links.service import LinkService
from bot.links.workspace_settings import WorkspaceSettings
from bot.links.workspaces import Workspace
from bot.slack.approvers import WorkspaceApprovers
from bot.slack.clients import SlackClients
from bot.slack.finding import Finder

log = logging.getLogger("bot.slack")


@dataclass
class SlackContext:
    """Handed to every listener module's ``register``."""

    settings: Settings
    service: LinkService
    approvers: WorkspaceApprovers
    # Listeners call Slack through these clients rather than the one Bolt builds for each
    # request: they keep their connections open (bot.slack.transport), Bolt's would not.
    clients: SlackClients
    decisions: Executor  # runs button clicks' decisions after their ack
    after_ack: Executor  # Slack calls made after an ack (views.open, views.publish)
    team_url: str | None = None
    # Each workspace's own settings and stores (Slack's Settings); None: the environment's.
    workspaces: WorkspaceSettings | None = None

    def settings_for(self, team_id: str | None) -> Settings:
        """The effective settings of workspace ``team_id``: its stored ones over the
        environment's."""
        return self.workspaces.for_team(team_id) if self.workspaces else self.settings

    @cached_property
    def finder(self) -> Finder:
        """Reads links for ``/paylink list|find|status``, App Home and its search."""
        return Finder(
            self.service.store,
            currencies_for=lambda team: self.settings_for(team).paylink_currencies,
            timezone=self.settings.timezone,
            allow_self_approval=self.service.allow_self_approval,
            permalink=self.permalink,
        )

    def later(self, pool: Executor, work: Callable[..., None], *args: Any) -> None:
        """Run ``work(*args)`` on ``pool`` once the listener has acked; nobody waits for it,
        so a failure is logged here rather than kept in a future nobody reads."""

        def run() -> None:
            try:
                work(*args)
            except Exception as exc:
                log.error("work after an ack failed: %s", type(exc).__name__, exc_info=exc)

        pool.submit(run)

    def client_for(self, context: BoltContext) -> WebClient:
        """The client for the workspace a request came from, with the token Bolt authorized
        it with (the one token in single-workspace mode)."""
        return self.clients.for_token(context.bot_token)

    def client_of(self, team_id: str | None) -> WebClient:
        """The client for workspace ``team_id`` (work done after an ack, where Bolt's
        context is gone); NotInstalled when Paylink has no token there."""
        return self.clients.for_workspace(Workspace(team_id))

    def permalink(
        self, channel_id: str | None, ts: str | None, team_url: str | None = None
    ) -> str | None:
        """A message permalink built from the team URL (no Web API call per message):
        ``team_url``, the workspace's a request was authorized in, else auth.test's at
        start-up (single-workspace mode)."""
        team_url = team_url or self.team_url
        if not (team_url and channel_id and ts):
            return None
        return f"{team_url.rstrip('/')}/archives/{channel_id}/p{ts.replace('.', '')}"
