"""Card buttons: Approve, Reject, Retry, Cancel, Renew, Show contact (and URL buttons, which
only need an ack); App Home's page buttons and its Search."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.links.kinds import Click
from bot.links.outcomes import Refused
from bot.slack import blocks
from bot.slack.blocks import ActionId
from bot.slack.context import SlackContext
from bot.slack.delivery import tell
from bot.slack.listeners.events import publish_home
from bot.slack.origin import sender

log = logging.getLogger(__name__)

#: The buttons whose click the service decides.
CLICKS = {
    ActionId.APPROVE: Click.APPROVE,
    ActionId.RETRY: Click.RETRY,
    ActionId.CANCEL: Click.CANCEL,
    ActionId.RENEW: Click.RENEW,
}


def _tell(client: WebClient, body: dict[str, Any], text: str) -> None:
    """An ephemeral note to the person who clicked, in the channel where they clicked."""
    tell(client, _channel(body), body["user"]["id"], text)


def _channel(body: dict[str, Any]) -> str | None:
    return (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")


def _clicked(action_id: ActionId, body: dict[str, Any]) -> tuple[int, str] | None:
    """The link id and user of a button click, or None (logged) when the click did not come
    from one of our buttons. Listeners run in the request's thread, so a parse error here
    would answer Slack with a 500. A value may carry more after the id (``<id>:…``)."""
    try:
        return int(str(body["actions"][0]["value"]).partition(":")[0]), str(body["user"]["id"])
    except (KeyError, IndexError, TypeError, ValueError):
        log.warning("%s click without a link id or user: ignored", action_id)
        return None


def register(app: App, ctx: SlackContext) -> None:
    """Register the block_actions listeners."""
    service = ctx.service

    def on_click(action_id: ActionId, click: Click) -> None:
        @app.action(action_id)
        def handler(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
            ack()
            clicked = _clicked(action_id, body)
            if clicked is None:
                return
            link_id, user = clicked

            def decide() -> None:
                refusal = service.receive_click(
                    click, link_id, user, sender(body), channel=_channel(body)
                )
                if refusal:
                    _tell(ctx.client_for(context), body, refusal)

            # After the ack, on a pool of its own: the request's thread answers Slack at once,
            # and a burst of decisions cannot hold up later acks. Beside a worker the click is
            # only stored here and the worker decides it; storing it before the ack would make
            # the ack wait for the database. Each decision is one compare-and-set, however
            # many clicks.
            ctx.later(ctx.decisions, decide)

    for action_id, click in CLICKS.items():
        on_click(action_id, click)

    @app.action(ActionId.REJECT)
    def open_reject(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        ack()
        clicked = _clicked(ActionId.REJECT, body)
        if clicked is None:
            return
        link_id, user = clicked

        def open_modal() -> None:
            client = ctx.client_for(context)
            try:
                link = service.check_decision(link_id, user, sender(body))
            except Refused as exc:
                _tell(client, body, exc.message)
                return
            try:
                client.views_open(trigger_id=body["trigger_id"], view=blocks.reject_modal(link))
            except SlackApiError as exc:
                log.warning("views.open (reject) failed: %s", exc.response.get("error"))

        ctx.later(ctx.after_ack, open_modal)  # as /paylink's modal

    @app.action(ActionId.OPEN_CARD)
    def open_card(ack: Ack) -> None:
        ack()

    @app.action(ActionId.SHOW_CONTACT)
    def show_contact(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        clicked = _clicked(ActionId.SHOW_CONTACT, body)
        if clicked is None:
            return
        link_id, user = clicked

        def reveal() -> None:
            # Recorded before it is shown: a reveal that cannot be recorded shows nothing.
            try:
                link = service.show_contact(link_id, user, origin=sender(body))
            except Refused as exc:
                _tell(ctx.client_of(sender(body).team_id), body, exc.message)
                return
            _tell(ctx.client_of(sender(body).team_id), body, blocks.contact_text(link))

        ctx.later(ctx.decisions, reveal)  # a write, as a click's decision

    @app.action(re.compile(f"^{ActionId.HOME_PAGE}_"))
    def home_page(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        actions = body.get("actions") or [{}]
        state = blocks.HomeState.decode(actions[0].get("value"))
        user = str((body.get("user") or {}).get("id") or "")
        if user:
            ctx.later(ctx.after_ack, publish_home, ctx, user, sender(body), state)

    @app.action(ActionId.HOME_SEARCH)
    def open_search(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        user = str((body.get("user") or {}).get("id") or "")
        team = sender(body).team_id
        view = blocks.search_modal(is_approver=ctx.approvers.is_approver(user, team))

        def open_modal() -> None:
            try:
                ctx.client_of(team).views_open(trigger_id=body["trigger_id"], view=view)
            except SlackApiError as exc:
                log.warning("views.open (search) failed: %s", exc.response.get("error"))

        ctx.later(ctx.after_ack, open_modal)  # as /paylink's modal
