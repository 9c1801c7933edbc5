"""Modal submissions: the link request and the rejection reason."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App

from bot.checkout import CheckoutInvalid, parse_with_settings
from bot.links.service import Refused
from bot.links.store import DuplicateReference
from bot.slack import blocks
from bot.slack.context import SlackContext

log = logging.getLogger("bot.slack")


def register(app: App, ctx: SlackContext) -> None:
    """Register the view_submission listeners."""
    settings = ctx.settings

    @app.view(blocks.CALLBACK_REQUEST)
    def submit_request(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        fields = blocks.read_submission(view)
        try:
            request = parse_with_settings(fields, settings)
        except CheckoutInvalid as exc:
            ack(
                response_action="errors",
                errors={blocks.FIELD_BLOCKS[name]: msg for name, msg in exc.errors.items()},
            )
            return
        origin = blocks.submission_channel(view)
        channel = settings.paylink_approval_channel or origin
        try:
            ctx.service.request_link(
                request,
                requester_id=body["user"]["id"],
                channel_id=channel,
                origin_channel_id=origin,
            )
        except DuplicateReference:
            ack(
                response_action="errors",
                errors={
                    blocks.FIELD_BLOCKS["order_reference"]: "This order reference is already "
                    "used by another link. Leave it blank to generate one."
                },
            )
            return
        ack()

    @app.view(blocks.CALLBACK_REJECT)
    def submit_reject(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        reason = view["state"]["values"]["reason"]["value"].get("value") or ""
        try:
            link_id = int(view.get("private_metadata") or "")
        except ValueError:  # we always set it; a view without it cannot name a request
            ack(response_action="errors", errors={"reason": "This request no longer exists."})
            return
        try:
            ctx.service.reject(link_id, body["user"]["id"], reason)
        except Refused as exc:
            ack(response_action="errors", errors={"reason": exc.message})
            return
        ack()
