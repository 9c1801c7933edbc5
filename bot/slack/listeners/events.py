"""Events: App Home shows the viewer's links (filtered, paged, of its own workspace only)
and, for approvers, what waits for them and the month's totals; for admins, the Settings
section; in multi-workspace mode, an uninstall or a revoked token."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk.errors import SlackApiError

from bot.links.workspaces import Workspace
from bot.slack import blocks
from bot.slack.admins import settings_home
from bot.slack.context import SlackContext
from bot.slack.finding import Asker
from bot.slack.origin import is_ours, named_in

log = logging.getLogger(__name__)

UNINSTALLED = "Paylink was uninstalled from the workspace"
REVOKED = "the workspace revoked Paylink's bot token"


def publish_home(
    ctx: SlackContext,
    user: str,
    workspace: Workspace,
    state: blocks.HomeState | None = None,
    team_url: str | None = None,
) -> None:
    """Publish ``user``'s Home tab in ``workspace`` in ``state`` (the first page by default;
    bounded reads, one views.publish); ``team_url``: the workspace's, for links to cards."""
    approver = ctx.approvers.is_approver(user, workspace.team_id)
    asker = Asker(user, workspace, approver, team_url)
    data = ctx.finder.home(asker, state or blocks.HomeState())
    data.admin = settings_home(ctx, user, workspace.team_id)
    try:
        ctx.client_of(workspace.team_id).views_publish(user_id=user, view=blocks.home_view(data))
    except SlackApiError as exc:
        log.warning("views.publish failed: %s", exc.response.get("error"))


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
            # Opening the tab again shows the first page: Slack keeps no state for us.
            team_url = context.authorize_result.url if context.authorize_result else None
            ctx.later(ctx.after_ack, publish_home, ctx, event["user"], workspace, None, team_url)

    if ctx.clients.multi_workspace:
        _register_departures(app, ctx)


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
