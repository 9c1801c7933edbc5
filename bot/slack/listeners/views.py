"""Modal submissions: the link request, its duplicate guard's confirmation, the rejection
reason and App Home's search."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, BoltContext

from bot.checkout import CheckoutInvalid, CheckoutRequest, parse_with_settings
from bot.links.finding import SEARCH_MIN
from bot.links.outcomes import Refused
from bot.links.store import DuplicateReference
from bot.links.tables import Link
from bot.slack import blocks
from bot.slack.blocks import FIELD_BLOCKS, BlockId, CallbackId
from bot.slack.context import SlackContext
from bot.slack.finding import Asker
from bot.slack.origin import installed_in, sender

log = logging.getLogger(__name__)

TAKEN = "This order reference is already used by another link."
NOT_OURS = (
    "This came from another Slack workspace: Paylink takes requests from its own workspace "
    "only, so nothing was requested."
)


def _too_long(earlier: Link) -> str:
    return (
        f"A request like this one ({earlier.reference}, {earlier.status_label}) was made "
        "recently. This form is too long to hold while you confirm: change the amount or "
        "the customer, or shorten the long fields, to send another."
    )


def register(app: App, ctx: SlackContext) -> None:
    """Register the view_submission listeners."""

    def foreign(body: dict[str, Any], context: BoltContext) -> bool:
        """True (logged) when the submission is not from the bot's own workspace: a new
        link becomes the workspace's it was asked in, so it has to be the bot's."""
        origin = sender(body)
        if origin.team_id is not None and origin == installed_in(context):
            return False
        log.info(
            "request from another workspace refused",
            extra={"user": body["user"]["id"], "team": origin.team_id},
        )
        return True

    def make_request(
        body: dict[str, Any], request: CheckoutRequest, channel: str | None, view_id: str | None
    ) -> None:
        """The request of ``view_id``'s form (one, however often it is submitted);
        DuplicateReference when its order reference is taken."""
        origin = sender(body)
        settings = ctx.settings_for(origin.team_id)
        ctx.service.request_link(
            request,
            requester_id=body["user"]["id"],
            channel_id=settings.paylink_approval_channel or channel,
            origin_channel_id=channel,
            workspace=origin,
            view_id=view_id,
        )

    @app.view(CallbackId.REQUEST)
    def submit_request(
        ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext
    ) -> None:
        if foreign(body, context):
            ack(response_action="errors", errors={FIELD_BLOCKS["amount"]: NOT_OURS})
            return
        fields = blocks.read_submission(view)
        settings = ctx.settings_for(sender(body).team_id)
        try:
            request = parse_with_settings(fields, settings)
        except CheckoutInvalid as exc:
            ack(
                response_action="errors",
                errors={FIELD_BLOCKS[name]: msg for name, msg in exc.errors.items()},
            )
            return
        channel, view_id = blocks.submission_channel(view), view.get("id")
        # The duplicate guard: a database read, answered within the submission's 3 s.
        earlier = ctx.service.earlier_request(request, workspace=sender(body), view_id=view_id)
        if earlier is not None and ctx.service.reference_used(request.order_reference):
            earlier = None  # a typed reference that is taken: the form's error comes first
        if earlier is not None:
            metadata = blocks.duplicate_metadata(fields, channel, view_id)
            if metadata is None:  # too long to hold for a confirmation: said on the form
                ack(response_action="errors", errors={FIELD_BLOCKS["amount"]: _too_long(earlier)})
                return
            permalink = ctx.permalink(earlier.channel_id, earlier.message_ts)
            view = blocks.duplicate_modal(earlier, permalink=permalink, metadata=metadata)
            ack(response_action="push", view=view)
            log.info("possible duplicate shown", extra={"ref": earlier.reference})
            return
        try:
            make_request(body, request, channel, view_id)
        except DuplicateReference:
            ack(
                response_action="errors",
                errors={
                    FIELD_BLOCKS["order_reference"]: TAKEN + " Leave it blank to generate one."
                },
            )
            return
        ack()

    @app.view(CallbackId.DUPLICATE)
    def confirm_duplicate(
        ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext
    ) -> None:
        """ "Create anyway": the held form makes its request, and the modal closes."""
        held = blocks.read_duplicate_metadata(view)
        if foreign(body, context) or held is None:
            ack(response_action="update", view=blocks.duplicate_refused_modal(NOT_OURS))
            return
        fields, channel, view_id = held
        settings = ctx.settings_for(sender(body).team_id)
        try:
            request = parse_with_settings(fields, settings)
            make_request(body, request, channel, view_id)
        except CheckoutInvalid as exc:
            problem = next(iter(exc.errors.values()))
            message = f"Go back and correct the form: {problem}"
            ack(response_action="update", view=blocks.duplicate_refused_modal(message))
            return
        except DuplicateReference:
            message = f"{TAKEN} Go back, and leave it blank to generate one."
            ack(response_action="update", view=blocks.duplicate_refused_modal(message))
            return
        ack(response_action="clear")

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
        origin = sender(body)
        asker = Asker(user, origin, ctx.approvers.is_approver(user, origin.team_id))
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
