"""What every Slack surface shares: Slack's limits, escaping and clipping, amounts, mentions,
dates and links, and the two text blocks that clip themselves."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from bot.links.states import SANDBOX_LABEL, Status
from bot.links.tables import Link
from bot.money import amount_problem, money_text
from bot.payment_methods import method_label
from bot.urls import is_http_url

# --- limits (Slack's Block Kit reference) ---------------------------------------------------

SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
CONTEXT_TEXT_MAX = 2000
HEADER_MAX = 150
OPTION_TEXT_MAX = 75
# Raw (unescaped) budgets for free text typed by people or returned by gateways: escaping
# can grow text five-fold (``&`` → ``&amp;``), so these keep every block under its limit.
NAME_BUDGET = 200
REASON_BUDGET = 500
MESSAGE_BUDGET = 400
SHIPPING_BUDGET = 300
FALLBACK_MAX = 500

STATUS_EMOJI: dict[Status, str] = {
    Status.AWAITING_APPROVAL: ":hourglass_flowing_sand:",
    Status.REJECTED: ":no_entry:",
    Status.CREATING_LINK: ":gear:",
    Status.LINK_FAILED: ":warning:",
    Status.LINK_UNKNOWN: ":grey_question:",
    Status.AWAITING_PAYMENT: ":link:",
    Status.PAID: ":white_check_mark:",
    Status.PAYMENT_FAILED: ":x:",
    Status.CANCELLED: ":no_entry_sign:",
    Status.EXPIRED: ":hourglass:",
}

#: On the card, and in the replies showing its link or a payment, of a sandbox link.
SANDBOX_NOTE = f":test_tube: {SANDBOX_LABEL}"

#: Said on the card and in the thread when XPay's answer to a create never came.
UNKNOWN_NOTE = (
    "XPay did not confirm whether the link was created. Retry only if the customer has no link."
)

#: Said on the card and in the thread wherever a renewal leaves an earlier checkout link.
OLD_LINK_NOTE = (
    "XPay offers no way to void a checkout link, so the earlier one may still work: a payment "
    "on it counts, and if both are paid this thread flags the second for a refund."
)
#: Said on the card and in the thread when a checkout link expires.
EXPIRED_LINK_NOTE = (
    "XPay offers no way to void a checkout link, so the expired one may still work: a payment "
    "on it still counts, and this thread will say so."
)

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")


# --- text -------------------------------------------------------------------------------


def escape(text: Any) -> str:
    """Escape ``&``, ``<`` and ``>`` so Slack mrkdwn shows ``text`` literally.

    ``None`` becomes ``""``. Apply to every user- or gateway-supplied string placed in mrkdwn.
    """
    if text is None:
        return ""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """Shorten raw text to ``limit`` characters, ending with an ellipsis when cut."""
    text = " ".join(text.split()) if "\n" not in text else text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def clip_mrkdwn(text: str, limit: int) -> str:
    """Shorten already-escaped mrkdwn without leaving half an entity or half a ``<…>`` token."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    lt = cut.rfind("<")
    if lt != -1 and ">" not in cut[lt:]:
        cut = cut[:lt]
    return cut.rstrip() + "…"


def safe(text: Any, budget: int) -> str:
    """Clip raw user text to ``budget`` characters, then escape it for mrkdwn."""
    return escape(clip(str(text or ""), budget))


def mention(user_id: str | None) -> str:
    """A mention for Slack user IDs; anything else (CLI actors, "system") as escaped text."""
    if not user_id:
        return "someone"
    if _USER_ID.match(user_id):
        return f"<@{user_id}>"
    return escape(clip(user_id, 64))


def approver_mention(approver_id: str) -> str:
    """A mention of an approver in PAYLINK_APPROVERS: a user, or a user group (``S…``)."""
    if _GROUP_ID.match(approver_id):
        return f"<!subteam^{approver_id}>"
    return mention(approver_id)


def waited_text(seconds: int | float) -> str:
    """How long something has waited, in its largest units: ``3 seconds``, ``25 minutes``,
    ``4 hours``, ``1 day 2 hours``."""
    left = max(0, int(seconds))
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return " ".join(parts[:2]) or "0 seconds"


def channel_mention(channel_id: str | None) -> str:
    """A mention for a Slack channel ID; "the approval channel" for anything else."""
    if channel_id and _CHANNEL_ID.match(channel_id):
        return f"<#{channel_id}>"
    return "the approval channel"


def slack_date(at: datetime | None) -> str:
    """A Slack date token shown in the reader's time zone, with a UTC fallback."""
    if at is None:
        return ""
    fallback = at.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def slack_day(at: datetime | None) -> str:
    """As :func:`slack_date`, the day only."""
    if at is None:
        return ""
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}}|{at.strftime('%Y-%m-%d')}>"


def age(at: datetime | None, now: datetime) -> str:
    """How long ago ``at`` was, roughly: ``just now``, ``5 min``, ``3 h``, ``2 days``."""
    if at is None:
        return ""
    seconds = max((now - at).total_seconds(), 0)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    days = int(seconds // 86400)
    return "1 day" if days == 1 else f"{days} days"


def url_link(url: str | None, label: str | None = None) -> str:
    """A clickable mrkdwn link to an http(s) URL; anything else is shown as escaped text."""
    if not url:
        return ""
    if not is_http_url(url):
        return escape(url)
    # The URL is shown as itself: "|" and ">" could otherwise smuggle in a label or end it.
    quoted = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    return f"<{quoted}|{escape(label)}>" if label else f"<{quoted}>"


def format_amount(amount: Decimal | int | str | None, currency: str | None) -> str:
    """``PKR 1,500.50`` / ``PKR 5,000``: thousands separators, decimals only when needed.
    Anything that is no amount (a job an older version queued) is shown as short text,
    never written out digit by digit."""
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        value = None
    if value is None or amount_problem(value):
        return f"{currency or ''} {clip(str(amount), 32)}".strip()
    return money_text(value, currency)


def test_prefix(link: Link) -> str:
    """``"TEST: "`` for a sandbox link's notification text, so even that says so."""
    return "TEST: " if link.sandbox else ""


def amount_text(link: Link) -> str:
    """The link's amount and currency, escaped for mrkdwn."""
    return escape(format_amount(link.amount, link.currency))


def paid_method(link: Link) -> str:
    """The label of the method the customer paid with, escaped; "" when not known."""
    return safe(method_label(link.paid_method), 64)


def methods_text(methods: Iterable[str] | None) -> str:
    """The labels of the methods a link offers; "All methods" when it names none."""
    chosen = list(methods or [])
    if not chosen:
        return "All methods"
    return ", ".join(method_label(m) for m in chosen)


# --- blocks -------------------------------------------------------------------------------


def section(block_id: str, text: str) -> SectionBlock:
    """A mrkdwn section, clipped to Slack's limit."""
    return SectionBlock(
        block_id=block_id, text=MarkdownTextObject(text=clip_mrkdwn(text, SECTION_TEXT_MAX))
    )


def context(block_id: str, *texts: str) -> ContextBlock:
    """A context block of mrkdwn texts, each clipped to Slack's limit."""
    return ContextBlock(
        block_id=block_id,
        elements=[MarkdownTextObject(text=clip_mrkdwn(t, CONTEXT_TEXT_MAX)) for t in texts],
    )


def to_dicts(blocks: Iterable[Block]) -> list[dict[str, Any]]:
    """Block Kit models as the plain dicts the Web API takes."""
    return [b.to_dict() for b in blocks]
