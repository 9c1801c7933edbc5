"""``/paylink export [YYYY-MM]``: an approver gets the month's CSV of their workspace's links
as a file in a direct message from the bot (the subcommand dispatcher calls :func:`export`)."""

from __future__ import annotations

import logging
import tempfile
from datetime import datetime
from typing import Any

from slack_bolt import Ack
from slack_sdk.errors import SlackApiError, SlackRequestError

from bot.links import export as csv_export
from bot.links.workspaces import Workspace
from bot.slack.blocks.sharing import export_comment
from bot.slack.context import SlackContext
from bot.slack.delivery import tell

log = logging.getLogger(__name__)

APPROVERS_ONLY = "Only approvers can export links (they hold customers' contact details)."


def export(ctx: SlackContext, ack: Ack, body: dict[str, Any], argument: str) -> None:
    """Answer ``/paylink export [YYYY-MM]`` (``argument``: what follows ``export``): ack at
    once, then build the CSV and deliver it in the background."""
    user = str(body.get("user_id") or "")
    settings = ctx.settings_for(body.get("team_id"))
    if not ctx.approvers.is_approver(user, body.get("team_id")):
        ack(text=APPROVERS_ONLY)
        return
    team = body.get("team_id") or None
    if team is None:  # a command names its workspace; one that does not gets nothing
        ack(text="This command did not say which Slack workspace it came from: nothing exported.")
        return
    now = datetime.now(settings.timezone)
    try:
        period = csv_export.month(argument, settings.timezone, now.date())
    except ValueError as exc:
        ack(text=f"`/paylink export [YYYY-MM]`: {exc}.")
        return
    ack(
        text=f":hourglass_flowing_sand: Preparing your export of {period.name}… it will arrive "
        "as a direct message from Paylink."
    )
    workspace = Workspace(team, body.get("enterprise_id") or None)
    ctx.later(ctx.after_ack, deliver, ctx, user, period, workspace, body.get("channel_id"))


def deliver(
    ctx: SlackContext,
    user: str,
    period: csv_export.Period,
    workspace: Workspace,
    channel: str | None,
) -> None:
    """Write ``workspace``'s CSV for ``period`` to a temporary file (rows streamed from the
    database) and upload it into the direct message with ``user``; tell them if it fails."""
    timezone = ctx.settings_for(workspace.team_id).timezone
    with tempfile.NamedTemporaryFile(
        "w+", encoding=csv_export.ENCODING, newline="", suffix=".csv"
    ) as out:
        rows = csv_export.rows(ctx.service.store, period, timezone=timezone, workspace=workspace)
        count = csv_export.write(out, rows, timezone)
        out.flush()
        name = f"paylink-{period.start.astimezone(timezone):%Y-%m}.csv"
        client = ctx.clients.for_workspace(workspace)
        try:
            dm = client.conversations_open(users=user)["channel"]["id"]
            client.files_upload_v2(
                file=out.name,
                filename=name,
                title=f"Paylink links, {period.name}",
                channel=dm,
                initial_comment=export_comment(period.name, timezone.key, count),
            )
        except (SlackApiError, SlackRequestError) as exc:
            error = (
                exc.response.get("error")
                if isinstance(exc, SlackApiError) and exc.response is not None
                else "the upload failed"
            )
            log.warning("export not delivered: %s", error, extra={"user": user})
            tell(
                client,
                channel,
                user,
                f"Your export could not be delivered: Slack said `{error}`.",
            )
            return
    log.info("export delivered", extra={"user": user})
