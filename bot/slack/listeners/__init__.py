"""Slack listeners, one module per kind of thing Slack sends."""

from __future__ import annotations

from slack_bolt import App

from bot.slack.context import SlackContext
from bot.slack.listeners import actions, commands, events, settings, share, views


def register_all(app: App, ctx: SlackContext) -> None:
    """Register every listener on ``app``."""
    for module in (commands, views, actions, events, settings, share):
        module.register(app, ctx)
