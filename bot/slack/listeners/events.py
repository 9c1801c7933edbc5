"""Events: App Home shows the viewer's links and, for approvers, what waits for them (and,
for admins, the Settings section)."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from bot.slack import blocks
from bot.slack.admins import settings_home
from bot.slack.context import SlackContext


def register(app: App, ctx: SlackContext) -> None:
    """Register the event listeners."""

    @app.event("app_home_opened")
    def home(event: dict[str, Any], body: dict[str, Any]) -> None:
        if event.get("tab") == "home" and event.get("user"):
            # After the ack (Bolt acks an event once its listener returns), as modals are.
            ctx.later(ctx.after_ack, publish_home, ctx, event["user"], body.get("team_id"))


def publish_home(ctx: SlackContext, user: str, team_id: str | None) -> None:
    """Publish ``user``'s App Home tab in workspace ``team_id``."""
    store = ctx.service.store
    is_approver = ctx.approvers.is_approver(user, team_id)
    with store.reading() as s:
        mine = store.recent_for(s, user)
        waiting, waiting_total = (
            store.awaiting_approval(
                s, excluding=None if ctx.service.allow_self_approval else user, viewer=user
            )
            if is_approver
            else ([], 0)
        )
    permalinks = {
        link.id: url
        for link in [*mine, *waiting]
        if (url := ctx.permalink(link.channel_id, link.message_ts))
    }
    ctx.client.views_publish(
        user_id=user,
        view=blocks.home_view(
            my_links=mine,
            waiting=waiting,
            is_approver=is_approver,
            permalinks=permalinks,
            waiting_total=waiting_total,
            admin=settings_home(ctx, user, team_id),
        ),
    )
