"""``/paylink``: open the request modal at once; ``/paylink help`` explains usage."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk.errors import SlackApiError

from bot.checkout import parse_amount
from bot.slack import blocks
from bot.slack.context import SlackContext
from bot.slack.listeners.export import export
from bot.slack.listeners.settings import open_settings
from bot.slack.origin import is_ours, named_in

log = logging.getLogger(__name__)

NOT_OURS = (
    "This came from another Slack workspace: Paylink takes requests from its own workspace "
    "only, so nothing was opened."
)


def prefill(text: str, currencies: list[str]) -> tuple[str | None, str | None]:
    """``5000 PKR`` → ("5000", "PKR"); anything unparseable is simply not pre-filled."""
    amount = currency = None
    for word in text.split():
        if word.upper() in currencies:
            currency = word.upper()
        elif amount is None:
            with contextlib.suppress(ValueError):
                value = parse_amount(word)
                amount = str(value.to_integral()) if value == value.to_integral() else str(value)
    return amount, currency


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
        if text.lower() in ("help", "?", "-h", "--help"):
            ack(text=blocks.help_text(settings.paylink_currencies))
            return
        if text.lower() == "settings":
            open_settings(ctx, ack, body)
            return
        word, _, rest = text.partition(" ")
        if word.lower() == "export":
            export(ctx, ack, body, rest)
            return
        channel_id = body.get("channel_id", "")
        if not settings.paylink_approval_channel and channel_id.startswith("D"):
            ack(
                text="Run /paylink in a channel the approvers can see (or ask your admin to "
                "set PAYLINK_APPROVAL_CHANNEL): requests are posted there for approval."
            )
            return
        ack()
        amount, currency = prefill(text, settings.paylink_currencies)
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
