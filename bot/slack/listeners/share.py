"""Send to customer: e-mail the checkout link from its reply in the thread (and Send again,
asked before a second e-mail)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.links.outcomes import Refused
from bot.links.sharing import AlreadySent, Sharing
from bot.slack.blocks import ActionId
from bot.slack.blocks.sharing import mail_queued_text, send_again
from bot.slack.context import SlackContext
from bot.slack.listeners.actions import _channel, _clicked, _tell
from bot.slack.origin import sender

log = logging.getLogger(__name__)
# slack_sdk's WebhookClient logs the URL it posts to (debug, and info on a retry) and an error
# of its own on a failure: it gets this silent logger, and _replace_question says what failed.
_webhook_log = logging.getLogger(f"{__name__}.response_url")
_webhook_log.setLevel(logging.CRITICAL + 1)


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
                    outcome(body, exc.message)
                    return
                if isinstance(answer, AlreadySent):
                    ask(body, link_id, answer)
                else:
                    outcome(body, mail_queued_text(answer.to))

            # After the ack, as the card's buttons are: the e-mail itself is a job.
            ctx.later(ctx.decisions, decide)

    def ask(body: dict[str, Any], link_id: int, sent: AlreadySent) -> None:
        text, blocks = send_again(link_id, sent)
        try:
            ctx.client_of(sender(body).team_id).chat_postEphemeral(
                channel=_channel(body), user=body["user"]["id"], text=text, blocks=blocks
            )
        except SlackApiError as exc:
            log.warning("could not ask before sending again: %s", exc.response.get("error"))

    def outcome(body: dict[str, Any], text: str) -> None:
        """Say what came of a click: a "Send again" question is replaced by it (through the
        click's ``response_url``), so its button goes; anything else, a new ephemeral."""
        client = ctx.client_of(sender(body).team_id)
        if body["actions"][0].get("action_id") == ActionId.SEND_AGAIN and _replace_question(
            client, body, text
        ):
            return
        _tell(client, body, text)

    on_send(ActionId.SEND_TO_CUSTOMER)
    on_send(ActionId.SEND_AGAIN)


def _tried(body: dict[str, Any]) -> int | None:
    """The sends tried when "Send again" was asked (its value's ``:N``); None for "Send to
    customer", and for a question from before the count (it is then asked again)."""
    _, _, tried = str(body["actions"][0]["value"]).partition(":")
    return int(tried) if tried.isdigit() else None


def _replace_question(client: WebClient, body: dict[str, Any], text: str) -> bool:
    """Replace the ephemeral message clicked with ``text`` through the click's
    ``response_url``; False (logged) when that could not be done. The URL is never logged:
    whoever has it may write to the user for 30 minutes."""
    url = body.get("response_url")
    if not url:
        log.warning("a Send again click without a response_url: the question stays")
        return False
    try:
        answer = WebhookClient(
            url, timeout=client.timeout, ssl=client.ssl, logger=_webhook_log
        ).send_dict({"replace_original": True, "text": text})
    except Exception as exc:  # noqa: BLE001 - any failure falls back to a new ephemeral
        why = type(exc).__name__
    else:
        if answer.status_code == 200:
            return True
        why = f"HTTP {answer.status_code} {answer.body[:40]!r}"
    log.warning("could not replace the Send again question (%s): told in a new ephemeral", why)
    return False
