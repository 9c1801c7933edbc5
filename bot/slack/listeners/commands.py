"""``/paylink``: open the request modal at once (``/paylink 5000 PKR`` pre-filled);
``/paylink list|find|status|help`` answer at once, visible only to the caller; anything
else answers with help."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk.errors import SlackApiError

from bot.slack import blocks
from bot.slack.context import SlackContext
from bot.slack.finding import Asker, prefill
from bot.slack.origin import workspace_of

log = logging.getLogger(__name__)


def register(app: App, ctx: SlackContext) -> None:
    """Register the slash command."""

    @app.command("/paylink")
    def paylink(ack: Ack, body: dict[str, Any]) -> None:
        text = (body.get("text") or "").strip()
        user = body.get("user_id", "")
        asker = Asker(user, workspace_of(body), ctx.approvers.is_approver(user))
        # Bounded reads only (bot.links.finding): the answer goes out in the ack.
        answer = ctx.finder.command(asker, text)
        if answer is not None:
            ack(text=answer[0], blocks=answer[1] or None)
            return
        channel_id = body.get("channel_id", "")
        if not ctx.settings.paylink_approval_channel and channel_id.startswith("D"):
            ack(
                text="Run /paylink in a channel the approvers can see (or ask your admin to "
                "set PAYLINK_APPROVAL_CHANNEL): requests are posted there for approval."
            )
            return
        ack()
        amount, currency = prefill(text, ctx.settings.paylink_currencies) or (None, None)

        def open_modal() -> None:
            view = blocks.request_modal(
                ctx.settings, channel_id=channel_id, amount=amount, currency=currency
            )
            try:
                ctx.client.views_open(trigger_id=body["trigger_id"], view=view)
            except SlackApiError as exc:
                log.warning("views.open failed: %s", exc.response.get("error"))

        # After the ack: the answer to Slack must not wait on Slack's own views.open (Slack
        # gives up on an ack after 3 s, and would then show the user an error).
        ctx.later(ctx.after_ack, open_modal)
