"""Modal submissions: the link request, the rejection reason and App Home's search."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, BoltContext

from bot.checkout import CheckoutInvalid, parse_with_settings
from bot.links.finding import SEARCH_MIN
from bot.links.outcomes import Refused
from bot.links.store import DuplicateReference
from bot.slack import blocks
from bot.slack.blocks import FIELD_BLOCKS, BlockId, CallbackId
from bot.slack.context import SlackContext
from bot.slack.finding import Asker
from bot.slack.origin import installed_in, sender

log = logging.getLogger(__name__)

NOT_OURS = (
    "This came from another Slack workspace: Paylink takes requests from its own workspace "
    "only, so nothing was requested."
)


def register(app: App, ctx: SlackContext) -> None:
    """Register the view_submission listeners."""
    settings = ctx.settings

    @app.view(CallbackId.REQUEST)
    def submit_request(
        ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext
    ) -> None:
        # A new link becomes the workspace's it was asked in: it has to be the bot's own.
        origin = sender(body)
        if origin.team_id is None or origin != installed_in(context):
            log.info(
                "request from another workspace refused",
                extra={"user": body["user"]["id"], "team": origin.team_id},
            )
            ack(response_action="errors", errors={FIELD_BLOCKS["amount"]: NOT_OURS})
            return
        fields = blocks.read_submission(view)
        try:
            request = parse_with_settings(fields, settings)
        except CheckoutInvalid as exc:
            ack(
                response_action="errors",
                errors={FIELD_BLOCKS[name]: msg for name, msg in exc.errors.items()},
            )
            return
        origin_channel = blocks.submission_channel(view)
        channel = settings.paylink_approval_channel or origin_channel
        try:
            ctx.service.request_link(
                request,
                requester_id=body["user"]["id"],
                channel_id=channel,
                origin_channel_id=origin_channel,
                workspace=origin,
                view_id=view.get("id"),
            )
        except DuplicateReference:
            ack(
                response_action="errors",
                errors={
                    FIELD_BLOCKS["order_reference"]: "This order reference is already "
                    "used by another link. Leave it blank to generate one."
                },
            )
            return
        ack()

    @app.view(CallbackId.SEARCH)
    def submit_search(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        query = blocks.read_search(view)
        if len(query) < SEARCH_MIN:
            ack(
                response_action="errors",
                errors={BlockId.SEARCH: f"Type at least {SEARCH_MIN} characters."},
            )
            return
        user = body["user"]["id"]
        asker = Asker(user, sender(body), ctx.approvers.is_approver(user))
        # Bounded reads (bot.links.finding): the matches replace the modal in the ack.
        ack(response_action="update", view=ctx.finder.search(asker, query))

    @app.view(CallbackId.REJECT)
    def submit_reject(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        reason = blocks.read_reason(view)
        try:
            link_id = int(view.get("private_metadata") or "")
        except ValueError:  # we always set it; a view without it cannot name a request
            ack(response_action="errors", errors={BlockId.REASON: "This request no longer exists."})
            return
        try:
            ctx.service.reject(link_id, body["user"]["id"], reason, origin=sender(body))
        except Refused as exc:
            ack(response_action="errors", errors={BlockId.REASON: exc.message})
            return
        ack()
