"""Who may change a workspace's settings: Slack's workspace admins and owners (users.info),
and the people in PAYLINK_ADMINS."""

from __future__ import annotations

import logging

from slack_sdk.models.blocks import Block

from bot.slack.blocks.settings import home_settings
from bot.slack.context import SlackContext

log = logging.getLogger("bot.slack")


def is_admin(ctx: SlackContext, user_id: str, team_id: str) -> bool:
    """True when ``user_id`` may change Paylink's settings in workspace ``team_id``; False (and a
    warning) when Slack cannot say."""
    if user_id in ctx.settings.paylink_admins:
        return True
    try:
        user = ctx.client_of(team_id).users_info(user=user_id)["user"]
    except Exception as exc:  # refused or out of reach: nobody is an admin meanwhile
        log.warning("users.info failed: %s", type(exc).__name__)
        return False
    return bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))


def settings_home(ctx: SlackContext, user_id: str, team_id: str | None) -> list[Block] | None:
    """App Home's Settings section for ``user_id`` if they are an admin, else None."""
    if ctx.workspaces is None or team_id is None or not is_admin(ctx, user_id, team_id):
        return None
    return home_settings(ctx.workspaces.stores(team_id), ctx.settings.public_url)
