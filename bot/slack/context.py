"""What the Slack listeners share: settings, the link service and the approver directory."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

from bot.config import Settings
from bot.links.service import LinkService
from bot.slack.approvers import ApproverDirectory


@dataclass
class SlackContext:
    """Handed to every listener module's ``register``."""

    settings: Settings
    service: LinkService
    approvers: ApproverDirectory
    decisions: Executor  # runs button clicks' decisions after their ack
    after_ack: Executor  # Slack calls made after an ack (views.open)
    team_url: str | None = None

    def permalink(self, channel_id: str | None, ts: str | None) -> str | None:
        """A message permalink built from the team URL (no Web API call per message)."""
        if not (self.team_url and channel_id and ts):
            return None
        return f"{self.team_url.rstrip('/')}/archives/{channel_id}/p{ts.replace('.', '')}"
