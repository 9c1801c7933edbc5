"""Short texts only one person sees: ``/paylink help`` and the sent-for-approval note."""

from __future__ import annotations

from bot.links.policy import AUTO, TWO, threshold_note
from bot.links.tables import Link
from bot.slack.blocks.common import (
    NAME_BUDGET,
    SECTION_TEXT_MAX,
    amount_text,
    channel_mention,
    clip_mrkdwn,
    escape,
    safe,
    url_link,
)


def help_text(currencies: list[str]) -> str:
    """Usage for ``/paylink help`` (mrkdwn); examples use the currencies on offer."""
    currency_line = (
        [f"• `/paylink 5000 {currencies[-1]}`: amount and currency filled in"]
        if len(currencies) > 1
        else []
    )
    return "\n".join(
        [
            "*Paylink: XPay checkout links, approved in Slack*",
            "• `/paylink`: open the form for a new payment link",
            "• `/paylink 5000`: the same, with the amount filled in",
            *currency_line,
            "• `/paylink list [pending|unpaid|paid] [all]`: your 20 newest links (`all`: "
            "everyone's, for approvers)",
            "• `/paylink find TEXT`: search by reference or customer name (approvers: also "
            "e-mail and phone, in everyone's links)",
            "• `/paylink status REF`: a link's status and history",
            "• `/paylink export [YYYY-MM]`: a month's links as a CSV file",
            "• `/paylink help`: this message",
            "",
            "*What happens next*",
            "1. The request is posted in the approval channel with Approve / Reject buttons.",
            "2. When an approver approves, the checkout link is created and posted in the "
            "request's thread: share it with the customer.",
            "3. When the customer pays (or the payment fails), the request's status changes and "
            "the thread says so.",
            "The customer's e-mail and phone are masked in the channel; *Show contact* on the "
            "card shows them to the rep and approvers (and records who saw them). All your "
            "links, with filters and search, are on the app's Home tab.",
        ]
    )


def sent_for_approval_text(link: Link, permalink: str | None) -> str:
    """The ephemeral confirmation shown to the rep after the modal is submitted."""
    if permalink:
        where = url_link(permalink, "View the request")
    else:
        where = f"Posted in {channel_mention(link.channel_id)}"
    what = f"*{safe(link.reference, 64)}*, {amount_text(link)} for {safe(link.customer_name, NAME_BUDGET)}"
    if link.approvals_needed == AUTO:
        note = threshold_note(AUTO, link.policy_threshold, link.currency)
        text = (
            f":white_check_mark: Approved automatically ({escape(note)}): {what}. {where}. "
            "The checkout link will appear in the request's thread."
        )
    else:
        approved = (
            "two approvers have approved it" if link.approvals_needed == TWO else "it is approved"
        )
        text = (
            f":outbox_tray: Sent for approval: {what}. {where}. "
            f"The checkout link will appear in the request's thread once {approved}."
        )
    return clip_mrkdwn(text, SECTION_TEXT_MAX)
