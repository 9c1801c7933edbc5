"""Modal submissions: the link request and the rejection reason."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

from bot.checkout import CheckoutInvalid, parse_with_settings
from bot.links.service import Refused
from bot.links.store import DuplicateReference
from bot.slack import blocks
from bot.slack.blocks import FIELD_BLOCKS, BlockId, CallbackId
from bot.slack.context import SlackContext


def register(app: App, ctx: SlackContext) -> None:
    """Register the view_submission listeners."""
    settings = ctx.settings

    @app.view(CallbackId.REQUEST)
    def submit_request(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        fields = blocks.read_submission(view)
        try:
            request = parse_with_settings(fields, settings)
        except CheckoutInvalid as exc:
            ack(
                response_action="errors",
                errors={FIELD_BLOCKS[name]: msg for name, msg in exc.errors.items()},
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
                    FIELD_BLOCKS["order_reference"]: "This order reference is already "
                    "used by another link. Leave it blank to generate one."
                },
            )
            return
        ack()

    @app.view(CallbackId.REJECT)
    def submit_reject(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        reason = blocks.read_reason(view)
        try:
            link_id = int(view.get("private_metadata") or "")
        except ValueError:  # we always set it; a view without it cannot name a request
            ack(response_action="errors", errors={BlockId.REASON: "This request no longer exists."})
            return
        try:
            ctx.service.reject(link_id, body["user"]["id"], reason)
        except Refused as exc:
            ack(response_action="errors", errors={BlockId.REASON: exc.message})
            return
        ack()
