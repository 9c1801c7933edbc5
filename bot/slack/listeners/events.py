"""Events: App Home shows the viewer's links and, for approvers, what waits for them (of its
own workspace only; for admins, the Settings section); in multi-workspace mode, an uninstall
or a revoked token."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App, BoltContext

from bot.db import utcnow
from bot.links.workspaces import Workspace
from bot.slack import blocks
from bot.slack.admins import settings_home
from bot.slack.blocks.home import EXPIRING_WITHIN
from bot.slack.context import SlackContext
from bot.slack.origin import is_ours, named_in

log = logging.getLogger(__name__)

UNINSTALLED = "Paylink was uninstalled from the workspace"
REVOKED = "the workspace revoked Paylink's bot token"


def register(app: App, ctx: SlackContext) -> None:
    """Register the event listeners."""

    @app.event("app_home_opened")
    def home(event: dict[str, Any], body: dict[str, Any], context: BoltContext) -> None:
        workspace = named_in(body)
        if not is_ours(workspace, context):
            log.info("App Home of another workspace ignored", extra={"team": workspace.team_id})
            return
        if event.get("tab") == "home" and event.get("user"):
            # After the ack (Bolt acks an event once its listener returns), as modals are.
            team_url = context.authorize_result.url if context.authorize_result else None
            ctx.later(ctx.after_ack, publish_home, ctx, event["user"], workspace, team_url)

    if ctx.clients.multi_workspace:
        _register_departures(app, ctx)


def publish_home(
    ctx: SlackContext, user: str, workspace: Workspace, team_url: str | None = None
) -> None:
    """Publish ``user``'s App Home tab in ``workspace`` (its links only); ``team_url``: the
    workspace's, for links to cards."""
    store = ctx.service.store
    is_approver = ctx.approvers.is_approver(user, workspace.team_id)
    with store.reading() as s:
        mine = store.recent_for(s, user, workspace=workspace)
        expiring = store.expiring_for(s, user, utcnow() + EXPIRING_WITHIN)
        waiting, waiting_total = (
            store.awaiting_approval(
                s,
                excluding=None if ctx.service.allow_self_approval else user,
                viewer=user,
                workspace=workspace,
            )
            if is_approver
            else ([], 0)
        )
    permalinks = {
        link.id: url
        for link in [*mine, *waiting, *expiring]
        if (url := ctx.permalink(link.channel_id, link.message_ts, team_url))
    }
    ctx.client_of(workspace.team_id).views_publish(
        user_id=user,
        view=blocks.home_view(
            my_links=mine,
            waiting=waiting,
            is_approver=is_approver,
            permalinks=permalinks,
            waiting_total=waiting_total,
            admin=settings_home(ctx, user, workspace.team_id),
            expiring=expiring,
        ),
    )


def _register_departures(app: App, ctx: SlackContext) -> None:
    """``app_uninstalled`` and ``tokens_revoked``: the installation's tokens are deleted (by
    Bolt's own listeners) and the workspace's pending Slack jobs stopped; its links stay."""
    delete_all = app.default_app_uninstalled_event_listener()
    delete_revoked = app.default_tokens_revoked_event_listener()

    @app.event("app_uninstalled")
    def uninstalled(context: BoltContext) -> None:
        delete_all(context)
        ctx.service.workspace_left(Workspace(context.team_id, context.enterprise_id), UNINSTALLED)

    @app.event("tokens_revoked")
    def revoked(event: dict[str, Any], context: BoltContext) -> None:
        if not (event.get("tokens") or {}).get("bot"):
            delete_revoked(event, context)  # users' tokens only: Paylink asks for none
            return
        # Bolt's listener would delete the bot row only, leaving the token in the
        # installation row where Bolt and the worker read it: without its bot token an
        # installation of Paylink is none at all.
        delete_all(context)
        ctx.service.workspace_left(Workspace(context.team_id, context.enterprise_id), REVOKED)
