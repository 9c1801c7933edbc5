"""``/paylink``: open the request modal at once (``/paylink 5000 PKR`` pre-filled);
``/paylink list|find|status|help`` answer at once, visible only to the caller; ``settings``
and ``export`` start their own flows; anything else answers with help."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk.errors import SlackApiError

from bot.slack import blocks
from bot.slack.context import SlackContext
from bot.slack.finding import Asker, prefill
from bot.slack.listeners.export import export
from bot.slack.listeners.settings import open_settings
from bot.slack.origin import is_ours, named_in

log = logging.getLogger(__name__)

NOT_OURS = (
    "This came from another Slack workspace: Paylink takes requests from its own workspace "
    "only, so nothing was opened."
)


def register(app: App, ctx: SlackContext) -> None:
    """Register the slash command."""

    @app.command("/paylink")
    def paylink(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        if not is_ours(named_in(body), context):
            log.info(
                "command from another workspace refused",
                extra={"user": body.get("user_id"), "team": body.get("team_id")},
            )
            ack(text=NOT_OURS)
            return
        text = (body.get("text") or "").strip()
        settings = ctx.settings_for(body.get("team_id"))
        word, _, rest = text.partition(" ")
        if word.lower() == "settings":
            open_settings(ctx, ack, body)
            return
        if word.lower() == "export":
            export(ctx, ack, body, rest)
            return
        user = body.get("user_id", "")
        team_url = context.authorize_result.url if context.authorize_result else None
        approver = ctx.approvers.is_approver(user, body.get("team_id"))
        asker = Asker(user, named_in(body), approver, team_url)
        # Bounded reads only (bot.links.finding): the answer goes out in the ack.
        answer = ctx.finder.command(asker, text)
        if answer is not None:
            ack(text=answer[0], blocks=answer[1] or None)
            return
        channel_id = body.get("channel_id", "")
        if not settings.paylink_approval_channel and channel_id.startswith("D"):
            ack(
                text="Run /paylink in a channel the approvers can see (or ask your admin to "
                "set PAYLINK_APPROVAL_CHANNEL): requests are posted there for approval."
            )
            return
        ack()
        amount, currency = prefill(text, settings.paylink_currencies) or (None, None)
        client = ctx.client_for(context)

        def open_modal() -> None:
            view = blocks.request_modal(
                settings, channel_id=channel_id, amount=amount, currency=currency
            )
            try:
                client.views_open(trigger_id=body["trigger_id"], view=view)
            except SlackApiError as exc:
                log.warning("views.open failed: %s", exc.response.get("error"))

        # After the ack: the answer to Slack must not wait on Slack's own views.open (Slack
        # gives up on an ack after 3 s, and would then show the user an error).
        ctx.later(ctx.after_ack, open_modal)
