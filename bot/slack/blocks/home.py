"""The App Home tab, built from sections: tools (search), what waits for an approver, the
month's totals, and the viewer's links, filtered by status and paged.

Each section is a function of :class:`HomeData` returning its blocks; :data:`HOME_SECTIONS`
lists them in order, so a new section is one function and one line there. Every button that
shows another page carries the whole :class:`HomeState` in its value (the view's
``private_metadata`` has it too), so no page state is kept on the server. Whatever the number
of links, the view has at most about 50 blocks (Slack allows 100).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.links.finding import PAGE_SIZE, Counts, Filter, MonthTotals, Page
from bot.links.tables import Link
from bot.slack.blocks.common import (
    HEADER_MAX,
    SECTION_TEXT_MAX,
    clip,
    clip_mrkdwn,
    context,
    escape,
    format_amount,
    section,
    slack_date,
)
from bot.slack.blocks.finding import link_line
from bot.slack.blocks.ids import ActionId, BlockId
from bot.urls import is_http_url

HOME_LIST_MAX = 20  # rows in "Waiting for you"; the links list shows PAGE_SIZE a page
#: A link whose checkout link expires within this is listed under "Expiring soon".
EXPIRING_WITHIN = timedelta(days=1)


@dataclass(frozen=True)
class HomeState:
    """Which page of which links the Home tab shows: the filter, everyone's links or the
    viewer's own (approvers), the page number, and the keyset cursor that reaches it (the
    id of the oldest link of the page before, or of the newest link of the page after)."""

    filter: Filter = Filter.ALL
    everyone: bool = False
    page: int = 1
    before: int | None = None
    after: int | None = None

    def encode(self) -> str:
        """The state as a button value: ``all|0|3|1234|``."""
        return "|".join(
            [
                self.filter.value,
                "1" if self.everyone else "0",
                str(self.page),
                str(self.before or ""),
                str(self.after or ""),
            ]
        )

    @classmethod
    def decode(cls, value: str | None) -> HomeState:
        """A state from :meth:`encode`; the first page of all links for anything else
        (a value is only ever ours, but a malformed one must not fail the click)."""
        try:
            name, everyone, number, before, after = (value or "").split("|")
            return cls(
                Filter(name),
                everyone == "1",
                max(int(number), 1),
                int(before) if before else None,
                int(after) if after else None,
            )
        except ValueError:
            return cls()

    def first(self, **changes: Any) -> HomeState:
        """The first page with ``changes`` (another filter, or scope)."""
        return replace(self, page=1, before=None, after=None, **changes)


@dataclass
class HomeData:
    """Everything the Home tab shows, read for one viewer."""

    state: HomeState
    is_approver: bool
    page: Page
    counts: Counts
    now: datetime
    permalinks: dict[int, str] = field(default_factory=dict)
    waiting: list[Link] = field(default_factory=list)  # approvers: oldest first
    waiting_total: int = 0
    month: MonthTotals | None = None  # approvers: this month's totals
    month_label: str = ""  # e.g. "December 2026 (Asia/Karachi)"
    expiring: list[Link] = field(default_factory=list)  # checkout links expiring soon
    admin: list[Block] | None = None  # the Settings section, for a workspace admin


def _row(
    prefix: str, link: Link, data: HomeData, *, show_requester: bool, age_prefix: str = ""
) -> Block:
    permalink = data.permalinks.get(link.id)
    accessory = None
    if is_http_url(permalink):
        accessory = ButtonElement(
            action_id=ActionId.OPEN_CARD, text="Open request", url=permalink, value=str(link.id)
        )
    return SectionBlock(
        block_id=f"{prefix}_{link.id}",
        # The card is the button here, so the line names no link of its own.
        text=MarkdownTextObject(
            text=clip_mrkdwn(
                link_line(
                    link, None, data.now, show_requester=show_requester, age_prefix=age_prefix
                ),
                SECTION_TEXT_MAX,
            )
        ),
        accessory=accessory,
    )


def _page_button(name: str, text: str, state: HomeState, *, chosen: bool = False) -> ButtonElement:
    return ButtonElement(
        action_id=f"{ActionId.HOME_PAGE}_{name}",
        text=text,
        value=state.encode(),
        style="primary" if chosen else None,
    )


# --- sections ---------------------------------------------------------------------------


def tools(data: HomeData) -> list[Block]:
    """The title, how to start, and the Search button."""
    return [
        HeaderBlock(block_id=BlockId.HOME_TITLE, text="Paylink"),
        context(BlockId.HOME_INTRO, "Type `/paylink` in any channel to request a payment link."),
        ActionsBlock(
            block_id=BlockId.HOME_TOOLS,
            elements=[ButtonElement(action_id=ActionId.HOME_SEARCH, text="Search", value="search")],
        ),
    ]


def waiting_for_you(data: HomeData) -> list[Block]:
    """Approvers: requests awaiting their approval, oldest first, with how long each waited."""
    if not data.is_approver:
        return []
    blocks: list[Block] = [HeaderBlock(block_id=BlockId.WAITING_TITLE, text="Waiting for you")]
    if not data.waiting:
        blocks.append(section(BlockId.WAITING_EMPTY, "Nothing is waiting for you. :tada:"))
    blocks += [
        _row(
            BlockId.WAITING,
            link,
            data,
            show_requester=True,
            age_prefix="waiting ",
        )
        for link in data.waiting[:HOME_LIST_MAX]
    ]
    if data.waiting_total > HOME_LIST_MAX:
        blocks.append(
            context(
                BlockId.WAITING_MORE,
                f"…and {data.waiting_total - HOME_LIST_MAX:,} more in the approval channel.",
            )
        )
    blocks.append(DividerBlock(block_id=BlockId.HOME_DIVIDER))
    return blocks


def month_totals(data: HomeData) -> list[Block]:
    """Approvers: this month's requests and payments, per currency."""
    if not data.is_approver or data.month is None:
        return []
    lines = [
        f"*{escape(t.currency)}*: requested {escape(format_amount(t.requested_sum, t.currency))}"
        f" ({t.requested:,}) · paid {escape(format_amount(t.paid_sum, t.currency))} ({t.paid:,})"
        for t in data.month.currencies
    ] or ["No requests yet this month."]
    return [
        HeaderBlock(
            block_id=BlockId.MONTH_TITLE, text=clip(f"This month: {data.month_label}", HEADER_MAX)
        ),
        section(BlockId.MONTH, "\n".join(lines)),
        context(BlockId.MONTH_NOTE, "Requested: made this month, not rejected or cancelled."),
        DividerBlock(block_id=BlockId.MONTH_DIVIDER),
    ]


def links(data: HomeData) -> list[Block]:
    """The viewer's links (approvers: or everyone's), by filter with counts, a page at a time."""
    state, page, counts = data.state, data.page, data.counts
    whose = "Everyone's links" if state.everyone else "Your links"
    blocks: list[Block] = [HeaderBlock(block_id=BlockId.MINE_TITLE, text=whose)]
    if data.is_approver:
        blocks.append(
            ActionsBlock(
                block_id=BlockId.SCOPES,
                elements=[
                    _page_button(
                        "mine", "Mine", state.first(everyone=False), chosen=not state.everyone
                    ),
                    _page_button(
                        "everyone", "Everyone's", state.first(everyone=True), chosen=state.everyone
                    ),
                ],
            )
        )
    blocks.append(
        ActionsBlock(
            block_id=BlockId.FILTERS,
            elements=[
                _page_button(
                    f.value,
                    f"{f.label} ({counts.text(f)})",
                    state.first(filter=f),
                    chosen=f is state.filter,
                )
                for f in Filter
            ],
        )
    )
    if not page.links:
        empty = (
            "You have not requested any payment links yet. Type `/paylink` to start one."
            if counts[Filter.ALL] == 0 and not state.everyone
            else f"No links in {state.filter.label}."
        )
        blocks.append(section(BlockId.MINE_EMPTY, empty))
        return blocks
    first = (state.page - 1) * PAGE_SIZE + 1
    last = first + len(page.links) - 1
    # A count is a lower bound past COUNT_CAP, or behind links made since: never below the page.
    total = counts.text(state.filter) if counts[state.filter] >= last else f"{last:,}+"
    blocks.append(context(BlockId.SHOWING, f"{first:,}–{last:,} of {total}, newest first"))
    blocks += [_row(BlockId.MINE, link, data, show_requester=state.everyone) for link in page.links]
    pager: list[ButtonElement] = []
    if page.newer and state.page > 1:
        previous = (
            state.first()
            if state.page == 2
            else replace(state, page=state.page - 1, before=None, after=page.links[0].id)
        )
        pager.append(_page_button("previous", "Previous", previous))
    if page.older:
        following = replace(state, page=state.page + 1, before=page.links[-1].id, after=None)
        pager.append(_page_button("next", "Next", following))
    if pager:
        blocks.append(ActionsBlock(block_id=BlockId.PAGER, elements=pager))
    return blocks


#: The Home tab's sections, top to bottom.
def expiring_soon(data: HomeData) -> list[Block]:
    """**Expiring soon**: the viewer's links whose checkout link expires within a day
    (soonest first, each with when), or nothing when there are none."""
    if not data.expiring:
        return []
    blocks: list[Block] = [HeaderBlock(block_id=BlockId.EXPIRING_TITLE, text="Expiring soon")]
    for link in data.expiring[:HOME_LIST_MAX]:
        row = _row(BlockId.EXPIRING, link, data, show_requester=False)
        if isinstance(row, SectionBlock) and row.text:  # a row's text is far under the limit
            row.text.text += f"\n:hourglass: expires {slack_date(link.expires_at)}"
        blocks.append(row)
    return blocks


def settings_section(data: HomeData) -> list[Block]:
    """A workspace admin's Settings section (bot.slack.admins), or nothing."""
    return data.admin or []


HOME_SECTIONS: tuple[Callable[[HomeData], list[Block]], ...] = (
    tools,
    waiting_for_you,
    expiring_soon,
    month_totals,
    links,
    settings_section,
)


def home_view(data: HomeData) -> dict[str, Any]:
    """The App Home tab (``views.publish``) for ``data``."""
    blocks = [block for build in HOME_SECTIONS for block in build(data)]
    return View(type="home", blocks=blocks, private_metadata=data.state.encode()).to_dict()
