"""Events: App Home shows the viewer's links and, for approvers, what waits for them."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from bot.db import utcnow
from bot.slack import blocks
from bot.slack.blocks.home import EXPIRING_WITHIN
from bot.slack.context import SlackContext


def register(app: App, ctx: SlackContext) -> None:
    """Register the event listeners."""
    store = ctx.service.store

    @app.event("app_home_opened")
    def home(event: dict[str, Any]) -> None:
        if event.get("tab") == "home" and event.get("user"):
            # After the ack (Bolt acks an event once its listener returns), as modals are.
            ctx.later(ctx.after_ack, publish_home, event["user"])

    def publish_home(user: str) -> None:
        is_approver = ctx.approvers.is_approver(user)
        with store.reading() as s:
            mine = store.recent_for(s, user)
            expiring = store.expiring_for(s, user, utcnow() + EXPIRING_WITHIN)
            waiting, waiting_total = (
                store.awaiting_approval(
                    s, excluding=None if ctx.service.allow_self_approval else user
                )
                if is_approver
                else ([], 0)
            )
        permalinks = {
            link.id: url
            for link in [*mine, *waiting, *expiring]
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
                expiring=expiring,
            ),
        )
