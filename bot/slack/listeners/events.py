"""Events: App Home shows the viewer's links (filtered, paged) and, for approvers, what waits
for them and the month's totals."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App
from slack_sdk.errors import SlackApiError

from bot.links.workspaces import Workspace
from bot.slack import blocks
from bot.slack.context import SlackContext
from bot.slack.finding import Asker
from bot.slack.origin import workspace_of

log = logging.getLogger(__name__)


def publish_home(
    ctx: SlackContext, user: str, workspace: Workspace, state: blocks.HomeState
) -> None:
    """Publish ``user``'s Home tab in ``state`` (bounded reads, one views.publish)."""
    asker = Asker(user, workspace, ctx.approvers.is_approver(user))
    view = blocks.home_view(ctx.finder.home(asker, state))
    try:
        ctx.client.views_publish(user_id=user, view=view)
    except SlackApiError as exc:
        log.warning("views.publish failed: %s", exc.response.get("error"))


def register(app: App, ctx: SlackContext) -> None:
    """Register the event listeners."""

    @app.event("app_home_opened")
    def home(event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("tab") == "home" and event.get("user"):
            # After the ack (Bolt acks an event once its listener returns), as modals are.
            # Opening the tab again shows the first page: Slack keeps no state for us.
            ctx.later(
                ctx.after_ack,
                publish_home,
                ctx,
                event["user"],
                workspace_of(body),
                blocks.HomeState(),
            )
