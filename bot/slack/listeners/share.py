"""Send to customer: e-mail the checkout link from its reply in the thread (and Send again,
asked before a second e-mail)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk.errors import SlackApiError

from bot.links.outcomes import Refused
from bot.links.sharing import AlreadySent, Sharing
from bot.slack.blocks import ActionId
from bot.slack.blocks.sharing import mail_queued_text, send_again
from bot.slack.context import SlackContext
from bot.slack.listeners.actions import _channel, _clicked, _tell
from bot.slack.origin import sender

log = logging.getLogger(__name__)


def register(app: App, ctx: SlackContext) -> None:
    """Register the sharing buttons' listeners."""
    sharing = Sharing(ctx.service, ctx.settings)

    def on_send(action_id: ActionId) -> None:
        @app.action(action_id)
        def handler(ack: Ack, body: dict[str, Any]) -> None:
            ack()
            clicked = _clicked(action_id, body)
            if clicked is None:
                return
            link_id, user = clicked
            tried = _tried(body)

            def decide() -> None:
                try:
                    answer = sharing.request_mail(link_id, user, sender(body), again=tried)
                except Refused as exc:
                    _tell(ctx.client_of(sender(body).team_id), body, exc.message)
                    return
                if isinstance(answer, AlreadySent):
                    ask(body, link_id, answer)
                else:
                    _tell(ctx.client_of(sender(body).team_id), body, mail_queued_text(answer.to))

            # After the ack, as the card's buttons are: the e-mail itself is a job.
            ctx.later(ctx.decisions, decide)

    def ask(body: dict[str, Any], link_id: int, sent: AlreadySent) -> None:
        text, blocks = send_again(link_id, sent.to, sent.at, sent.tried, sent.reference)
        try:
            ctx.client_of(sender(body).team_id).chat_postEphemeral(
                channel=_channel(body), user=body["user"]["id"], text=text, blocks=blocks
            )
        except SlackApiError as exc:
            log.warning("could not ask before sending again: %s", exc.response.get("error"))

    on_send(ActionId.SEND_TO_CUSTOMER)
    on_send(ActionId.SEND_AGAIN)


def _tried(body: dict[str, Any]) -> int | None:
    """The sends tried when "Send again" was asked (its value's ``:N``); None for "Send to
    customer", and for a question from before the count (it is then asked again)."""
    _, _, tried = str(body["actions"][0]["value"]).partition(":")
    return int(tried) if tried.isdigit() else None
