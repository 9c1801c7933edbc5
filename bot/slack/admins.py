"""Who may change a workspace's settings: Slack's workspace admins and owners (users.info),
and the people in PAYLINK_ADMINS."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block

from bot.slack.blocks.settings import CANNOT_CHECK_ADMIN, NOT_ADMIN, home_settings
from bot.slack.context import SlackContext

log = logging.getLogger("bot.slack")


def settings_refusal(ctx: SlackContext, user_id: str, team_id: str | None) -> str | None:
    """None when ``user_id`` may change Paylink's settings in workspace ``team_id``; else
    what to tell them: that they may not, or that Slack could not say (users.info failed:
    an admin must not be told they are none)."""
    if ctx.workspaces is None or team_id is None:
        return NOT_ADMIN
    if user_id in ctx.settings.paylink_admins:
        return None
    try:
        user = ctx.client_of(team_id).users_info(user=user_id)["user"]
    except Exception as exc:  # refused or out of reach: nobody is an admin meanwhile
        error = exc.response.get("error") if isinstance(exc, SlackApiError) else None
        log.warning("users.info failed: %s", error or type(exc).__name__)
        return CANNOT_CHECK_ADMIN
    if user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"):
        return None
    return NOT_ADMIN


def settings_home(ctx: SlackContext, user_id: str, team_id: str | None) -> list[Block] | None:
    """App Home's Settings section for ``user_id`` if they are an admin, else None."""
    if ctx.workspaces is None or team_id is None or settings_refusal(ctx, user_id, team_id):
        return None
    return home_settings(ctx.workspaces.stores(team_id), ctx.settings.public_url)
