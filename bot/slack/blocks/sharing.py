"""What only the person sharing a link sees: the e-mail's confirmation, the question before a
second e-mail, and the export's notes."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import ActionsBlock, ButtonElement

from bot.links.sharing import AlreadySent
from bot.slack.blocks.common import NAME_BUDGET, safe, section, slack_date, to_dicts
from bot.slack.blocks.ids import ActionId, BlockId


def mail_queued_text(to: str) -> str:
    """The ephemeral note once the e-mail is on its way."""
    return f":email: Sending the checkout link to {safe(to, NAME_BUDGET)}… the thread will say when it is sent."


def send_again(link_id: int, sent: AlreadySent) -> tuple[str, list[dict[str, Any]]]:
    """The ephemeral question when the current checkout link was e-mailed already:
    ``(text, blocks)`` with a "Send again" button, whose value ``<link id>:<sends tried>``
    lets a click on a question that another send overtook be refused."""
    text = (
        f"The checkout link {safe(sent.reference, NAME_BUDGET)} was already sent to "
        f"{safe(sent.to, NAME_BUDGET)} on {slack_date(sent.at)}. Send it again?"
    )
    blocks = [
        section(BlockId.SEND_AGAIN, text),
        ActionsBlock(
            block_id=BlockId.REPLY_ACTIONS,
            elements=[
                ButtonElement(
                    text="Send again",
                    action_id=ActionId.SEND_AGAIN,
                    value=f"{link_id}:{sent.tried}",
                    style="primary",
                )
            ],
        ),
    ]
    return text, to_dicts(blocks)


def export_comment(period_name: str, zone: str, count: int) -> str:
    """The note the export file arrives with."""
    links = "no links" if count == 0 else f"{count} link{'s' if count != 1 else ''}"
    return f"Paylink export for {period_name} ({zone}): {links}, one row each."
