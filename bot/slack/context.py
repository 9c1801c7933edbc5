"""What the Slack listeners share: settings, the link service and the approver directory."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from slack_sdk import WebClient

from bot.config import Settings
from bot.links.service import LinkService
from bot.slack.approvers import ApproverDirectory
from bot.slack.finding import Finder

log = logging.getLogger("bot.slack")


@dataclass
class SlackContext:
    """Handed to every listener module's ``register``."""

    settings: Settings
    service: LinkService
    approvers: ApproverDirectory
    # Listeners call Slack through this one client rather than the one Bolt builds for each
    # request: it keeps its connections open (bot.slack.transport), Bolt's would not.
    client: WebClient
    decisions: Executor  # runs button clicks' decisions after their ack
    after_ack: Executor  # Slack calls made after an ack (views.open, views.publish)
    team_url: str | None = None

    @cached_property
    def finder(self) -> Finder:
        """Reads links for ``/paylink list|find|status``, App Home and its search."""
        return Finder(
            self.service.store,
            currencies=self.settings.paylink_currencies,
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

    def permalink(self, channel_id: str | None, ts: str | None) -> str | None:
        """A message permalink built from the team URL (no Web API call per message)."""
        if not (self.team_url and channel_id and ts):
            return None
        return f"{self.team_url.rstrip('/')}/archives/{channel_id}/p{ts.replace('.', '')}"
