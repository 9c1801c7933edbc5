"""What ``/paylink list|find|status`` answer (ephemeral), the search modal, and the
"Show contact" ephemeral."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.checkout import mask_email, mask_phone
from bot.links.finding import SEARCH_WINDOW
from bot.links.states import Status
from bot.links.tables import Link
from bot.slack.blocks.common import (
    CONTEXT_TEXT_MAX,
    FALLBACK_MAX,
    NAME_BUDGET,
    SANDBOX_NOTE,
    SECTION_TEXT_MAX,
    STATUS_EMOJI,
    age,
    amount_text,
    clip_mrkdwn,
    context,
    escape,
    mention,
    safe,
    section,
    test_prefix,
    to_dicts,
    url_link,
)
from bot.slack.blocks.ids import ActionId, BlockId, CallbackId
from bot.urls import is_http_url

Answer = tuple[str, list[dict[str, Any]]]  # (fallback text, blocks) of an ephemeral answer

SEARCH_MAX = 100  # characters typed in the search box
MORE_MAY_MATCH = "More may match: type more of it, or a whole reference, to narrow it down."


def _nothing(asked: str, more: bool) -> str:
    """What a search with no match answers (``asked`` is escaped); ``more``: it stopped at
    the search window, so older links were not looked at."""
    if not more:
        return f"No link matches “{asked}”."
    return (
        f"None of the newest {SEARCH_WINDOW:,} links matches “{asked}”: type a whole "
        "reference to find an older one."
    )


def link_line(
    link: Link,
    permalink: str | None,
    now: datetime,
    *,
    show_requester: bool = False,
    age_prefix: str = "",
) -> str:
    """One link in a list (mrkdwn): reference, amount, status, a TEST label, the customer,
    who asked (in everyone's lists), its age (after ``age_prefix``) and a link to its card."""
    status = Status(link.status)
    text = (
        f"*{safe(link.reference, 64)}* · {amount_text(link)} · "
        f"{STATUS_EMOJI[status]} {status.label}"
        + (" · :test_tube: TEST" if link.sandbox else "")
        + f"\n{safe(link.customer_name, NAME_BUDGET)}"
    )
    if show_requester:
        text += f" · requested by {mention(link.requester_id)}"
    if link.created_at:
        text += f" · {age_prefix}{age(link.created_at, now)}"
    if is_http_url(permalink):
        text += f" · {url_link(permalink, 'card')}"
    return clip_mrkdwn(text, SECTION_TEXT_MAX)


def contact_line(link: Link, *, full: bool) -> str:
    """The customer's e-mail and phone (mrkdwn), masked unless ``full``; "" when neither."""
    email = link.customer_email if full else mask_email(link.customer_email)
    phone = link.customer_phone if full else mask_phone(link.customer_phone)
    parts = [f"e-mail {escape(email)}" if email else "", f"phone {escape(phone)}" if phone else ""]
    return " · ".join(p for p in parts if p)


def contact_button(link: Link) -> ButtonElement:
    """Show contact: the requester and approvers get the full e-mail and phone (ephemeral)."""
    return ButtonElement(action_id=ActionId.SHOW_CONTACT, text="Show contact", value=str(link.id))


def list_answer(
    links: Sequence[Link],
    *,
    title: str,
    more: bool,
    permalinks: Mapping[int, str],
    now: datetime,
    everyone: bool,
    note: str = "",
) -> Answer:
    """``/paylink list``: ``title`` (mrkdwn, already escaped) and one section per link,
    after ``note`` (mrkdwn) if any."""
    first = [section(BlockId.NOTE, note)] if note else []
    if not links:
        text = f"{title}: none."
        return f"{note} {text}".strip(), to_dicts([*first, section(BlockId.ANSWER, text)])
    shown = f"the {len(links)} newest" if more else f"all {len(links)}"
    blocks: list[Block] = [*first, context(BlockId.ANSWER, f"{title} · {shown}")]
    blocks += [
        section(
            f"{BlockId.RESULT}_{link.id}",
            link_line(link, permalinks.get(link.id), now, show_requester=everyone),
        )
        for link in links
    ]
    if more:
        blocks.append(context(BlockId.RESULTS, "Older ones: the app's Home tab pages through all."))
    return clip_mrkdwn(f"{note} {title}: {shown}".strip(), FALLBACK_MAX), to_dicts(blocks)


def find_answer(
    query: str,
    links: Sequence[Link],
    more: bool,
    *,
    permalinks: Mapping[int, str],
    now: datetime,
    contact_for: Collection[int],
    everyone: bool,
) -> Answer:
    """``/paylink find``: the matches, each with its masked contact and a Show contact
    button when the caller may see it (``contact_for``: those link ids)."""
    asked = safe(query, SEARCH_MAX)
    if not links:
        text = _nothing(asked, more)
        return text, to_dicts([section(BlockId.ANSWER, text)])
    head = f"{len(links)}{'+' if more else ''} link(s) matching “{asked}”, newest first"
    blocks: list[Block] = [context(BlockId.ANSWER, head)]
    for link in links:
        line = link_line(link, permalinks.get(link.id), now, show_requester=everyone)
        allowed = link.id in contact_for
        contact = contact_line(link, full=False) if allowed else ""
        blocks.append(
            SectionBlock(
                block_id=f"{BlockId.RESULT}_{link.id}",
                text=MarkdownTextObject(
                    text=clip_mrkdwn(line + (f"\n{contact}" if contact else ""), SECTION_TEXT_MAX)
                ),
                accessory=contact_button(link) if allowed and contact else None,
            )
        )
    if more:
        blocks.append(context(BlockId.RESULTS, MORE_MAY_MATCH))
    return clip_mrkdwn(head, FALLBACK_MAX), to_dicts(blocks)


def status_answer(
    link: Link, report: Sequence[str], permalink: str | None, *, contact: bool
) -> Answer:
    """``/paylink status REF``: the report ``paylink status`` prints, the masked contact
    and a Show contact button (``contact``: the caller may see it), a link to the card."""
    blocks: list[Block] = []
    if link.sandbox:
        blocks.append(context(BlockId.SANDBOX, SANDBOX_NOTE))
    blocks.append(section(BlockId.STATUS_REPORT, _report_text(report)))
    masked = contact_line(link, full=False) if contact else ""
    if masked:
        blocks.append(context(BlockId.DETAILS, f"Customer: {masked}"))
    buttons: list[ButtonElement] = []
    if is_http_url(permalink):
        buttons.append(
            ButtonElement(
                action_id=ActionId.OPEN_CARD, text="Open request", url=permalink, value=str(link.id)
            )
        )
    if masked:
        buttons.append(contact_button(link))
    if buttons:
        blocks.append(ActionsBlock(block_id=BlockId.ACTIONS, elements=buttons))
    text = f"{test_prefix(link)}{safe(link.reference, 64)}: {Status(link.status).label}"
    return text, to_dicts(blocks)


def _report_text(report: Sequence[str]) -> str:
    """The report as a code block within one section; when too long, its oldest history
    rows (indented) give way to a line saying how many, so the newest always show."""
    head = [line for line in report if not line.startswith("  ")]
    rows = [escape(line) for line in report if line.startswith("  ")]
    budget = SECTION_TEXT_MAX - len("```\n```") - 60 - sum(len(escape(h)) + 1 for h in head)
    kept: list[str] = []
    for row in reversed(rows):
        budget -= len(row) + 1
        if budget < 0:
            break
        kept.insert(0, row)
    if len(kept) < len(rows):
        kept.insert(0, f"  … {len(rows) - len(kept)} earlier rows (paylink status shows all)")
    body = "\n".join([*(escape(h) for h in head), *kept])
    return clip_mrkdwn(f"```{body}```", SECTION_TEXT_MAX)


def contact_text(link: Link) -> str:
    """The ephemeral "Show contact" answers with: the customer's full e-mail and phone."""
    name = safe(link.customer_name, NAME_BUDGET)
    full = contact_line(link, full=True) or "no e-mail or phone recorded"
    return clip_mrkdwn(
        f"{test_prefix(link)}:bust_in_silhouette: *{safe(link.reference, 64)}*, {name}: {full}\n"
        "Recorded in the request's history: you were shown these details.",
        CONTEXT_TEXT_MAX,
    )


def search_modal(
    *,
    is_approver: bool,
    query: str | None = None,
    results: Sequence[Link] = (),
    more: bool = False,
    permalinks: Mapping[int, str] | None = None,
    now: datetime | None = None,
    everyone: bool = False,
) -> dict[str, Any]:
    """App Home's search modal; after a search (``query``), the same modal again with the
    matches under the box, so the next search is one edit away."""
    hint = (
        "Reference, customer name, e-mail or phone (everyone's links)"
        if is_approver
        else "Reference or customer name (your links)"
    )
    blocks: list[Block] = [
        InputBlock(
            block_id=BlockId.SEARCH,
            label="Find links",
            hint=hint,
            element=PlainTextInputElement(
                action_id=ActionId.INPUT,
                initial_value=query or None,
                max_length=SEARCH_MAX,
                placeholder="PL-1A2B3C4D or Ayesha",
            ),
        )
    ]
    if query is not None:
        asked = safe(query, SEARCH_MAX)
        if not results:
            blocks.append(section(BlockId.RESULTS, _nothing(asked, more)))
        else:
            head = f"{len(results)}{'+' if more else ''} match(es) for “{asked}”, newest first"
            blocks.append(context(BlockId.RESULTS, head + (f". {MORE_MAY_MATCH}" if more else "")))
            for link in results:
                permalink = (permalinks or {}).get(link.id)
                blocks.append(
                    section(
                        f"{BlockId.RESULT}_{link.id}",
                        link_line(link, permalink, now or link.created_at, show_requester=everyone),
                    )
                )
    return View(
        type="modal",
        callback_id=CallbackId.SEARCH,
        title="Find payment links",
        submit="Search",
        close="Close",
        blocks=blocks,
    ).to_dict()


def read_search(view: Mapping[str, Any]) -> str:
    """What was typed in the search modal ("" when nothing)."""
    values = (view.get("state") or {}).get("values") or {}
    value = (values.get(BlockId.SEARCH) or {}).get(ActionId.INPUT) or {}
    return " ".join(str(value.get("value") or "").split())
