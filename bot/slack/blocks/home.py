"""The App Home tab: the viewer's recent links and, for approvers, what waits for them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.links.states import Status
from bot.links.tables import Link
from bot.slack.blocks.common import (
    SECTION_TEXT_MAX,
    STATUS_EMOJI,
    amount_text,
    clip_mrkdwn,
    context,
    mention,
    safe,
    section,
    slack_date,
    slack_day,
)
from bot.slack.blocks.ids import ActionId, BlockId
from bot.urls import is_http_url

HOME_LIST_MAX = 20
#: A link whose checkout link expires within this is listed under "Expiring soon".
EXPIRING_WITHIN = timedelta(days=1)


def _home_row(prefix: BlockId, link: Link, permalink: str | None, *, show_requester: bool) -> Block:
    status = Status(link.status)
    text = (
        f"*{safe(link.reference, 64)}* · {amount_text(link)} · "
        f"{STATUS_EMOJI[status]} {status.label}"
        + (" · :test_tube: TEST" if link.sandbox else "")
        + f"\n{safe(link.customer_name, 100)}"
    )
    if show_requester:
        text += f" · requested by {mention(link.requester_id)}"
    if link.created_at:
        text += f" · {slack_day(link.created_at)}"
    accessory = None
    if is_http_url(permalink):
        accessory = ButtonElement(
            action_id=ActionId.OPEN_CARD,
            text="Open request",
            url=permalink,
            value=str(link.id),
        )
    return SectionBlock(
        block_id=f"{prefix}_{link.id}",
        text=MarkdownTextObject(text=clip_mrkdwn(text, SECTION_TEXT_MAX)),
        accessory=accessory,
    )


def expiring_section(links: list[Link], permalinks: dict[int, str]) -> list[Block]:
    """**Expiring soon**: the viewer's links whose checkout link expires within a day
    (soonest first, each with when), or nothing when there are none."""
    if not links:
        return []
    blocks: list[Block] = [HeaderBlock(block_id=BlockId.EXPIRING_TITLE, text="Expiring soon")]
    for link in links[:HOME_LIST_MAX]:
        row = _home_row(BlockId.EXPIRING, link, permalinks.get(link.id), show_requester=False)
        if isinstance(row, SectionBlock) and row.text:  # a row's text is far under the limit
            row.text.text += f"\n:hourglass: expires {slack_date(link.expires_at)}"
        blocks.append(row)
    return blocks


def home_view(
    *,
    my_links: list[Link],
    waiting: list[Link],
    is_approver: bool,
    permalinks: dict[int, str],
    waiting_total: int | None = None,
    admin: list[Block] | None = None,
    expiring: list[Link] | None = None,
) -> dict[str, Any]:
    """The App Home tab (``views.publish``): the user's recent links and, for approvers, the queue.

    At most :data:`HOME_LIST_MAX` rows per list, one section per link, so the view stays far
    under Slack's 100-block limit. ``waiting_total`` is how many requests wait in all (when
    ``waiting`` is only the first page of them); the rest are counted in a note. ``admin``:
    the Settings section, for a workspace admin.
    ``expiring``: the user's links whose checkout link expires soon (:func:`expiring_section`).
    """
    waiting_total = len(waiting) if waiting_total is None else max(waiting_total, len(waiting))
    blocks: list[Block] = [
        HeaderBlock(block_id=BlockId.HOME_TITLE, text="Paylink"),
        context(BlockId.HOME_INTRO, "Type `/paylink` in any channel to request a payment link."),
        *(admin or []),
    ]
    if is_approver:
        blocks.append(HeaderBlock(block_id=BlockId.WAITING_TITLE, text="Waiting for your approval"))
        if waiting:
            blocks.extend(
                _home_row(BlockId.WAITING, link, permalinks.get(link.id), show_requester=True)
                for link in waiting[:HOME_LIST_MAX]
            )
            if waiting_total > HOME_LIST_MAX:
                blocks.append(
                    context(
                        BlockId.WAITING_MORE,
                        f"…and {waiting_total - HOME_LIST_MAX} more in the approval channel.",
                    )
                )
        else:
            blocks.append(section(BlockId.WAITING_EMPTY, "Nothing is waiting for you. :tada:"))
        blocks.append(DividerBlock(block_id=BlockId.HOME_DIVIDER))
    blocks += expiring_section(expiring or [], permalinks)
    blocks.append(HeaderBlock(block_id=BlockId.MINE_TITLE, text="Your recent links"))
    if my_links:
        blocks.extend(
            _home_row(BlockId.MINE, link, permalinks.get(link.id), show_requester=False)
            for link in my_links[:HOME_LIST_MAX]
        )
    else:
        blocks.append(
            section(
                BlockId.MINE_EMPTY,
                "You have not requested any payment links yet. Type `/paylink` to start one.",
            )
        )
    return View(type="home", blocks=blocks).to_dict()
