"""The daily digest in the approval channel: what waits for approval and for payment, what
was paid since the last digest, what needs someone and what expires within a day. Each
request it names is its order reference, linked to its card."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import Block

from bot.links.digest import Item, Report, Sum
from bot.links.states import Status
from bot.slack.blocks.common import (
    FALLBACK_MAX,
    STATUS_EMOJI,
    clip_mrkdwn,
    context,
    escape,
    format_amount,
    section,
    slack_date,
    slack_day,
    to_dicts,
    url_link,
    waited_text,
)
from bot.slack.blocks.ids import BlockId

TEST_MARK = ":test_tube: TEST"


def _sums(sums: list[Sum]) -> str:
    return " · ".join(
        (f"{TEST_MARK} " if s.sandbox else "") + escape(format_amount(s.total, s.currency))
        for s in sums
    )


def _named(item: Item, permalinks: dict[int, str]) -> str:
    """``<card|PL-1> PKR 5,000``: the reference linked to its card, and the amount."""
    reference = url_link(permalinks.get(item.link_id), item.reference) or escape(item.reference)
    return f"{reference} {escape(format_amount(item.amount, item.currency))}"


def _marked(line: str, item: Item) -> str:
    return line + (f" {TEST_MARK}" if item.sandbox else "")


def _item(item: Item, permalinks: dict[int, str], until: datetime) -> str:
    """``<card|PL-1> PKR 5,000, for 2 days (since …)``; a test link says so."""
    since = datetime.fromisoformat(item.since)
    return _marked(
        f"{_named(item, permalinks)}, "
        f"for {waited_text((until - since).total_seconds())} (since {slack_date(since)})",
        item,
    )


def _expiring(item: Item, permalinks: dict[int, str], until: datetime) -> str:
    """``<card|PL-1> PKR 5,000, expires in 5 hours (…)``; one past its time but not yet
    swept expires "now"."""
    # Listed only with an expiry (the report's query asks for one).
    expires = datetime.fromisoformat(item.expires_at) if item.expires_at else until
    left = (expires - until).total_seconds()
    when = f"in {waited_text(left)}" if left >= 1 else "now"
    return _marked(f"{_named(item, permalinks)}, expires {when} ({slack_date(expires)})", item)


def digest(report: Report, permalinks: dict[int, str]) -> tuple[str, list[dict[str, Any]]]:
    """The digest message: ``(fallback text, blocks)``; ``permalinks`` maps the ids of the
    links it names to their cards' permalinks (a link without one is named unlinked)."""
    until = datetime.fromisoformat(report.until)
    blocks: list[Block] = [section(BlockId.DIGEST_TITLE, f"*Paylink digest · {slack_day(until)}*")]
    summary: list[str] = []
    if report.approval_count:
        line = (
            f"{STATUS_EMOJI[Status.AWAITING_APPROVAL]} *Awaiting approval:* {report.approval_count}"
        )
        if report.approval_oldest:
            line += f"; oldest {_item(report.approval_oldest, permalinks, until)}"
        blocks.append(section(BlockId.DIGEST_APPROVAL, line))
        summary.append(f"{report.approval_count} awaiting approval")
    if report.payment_count:
        lines = [
            f"{STATUS_EMOJI[Status.AWAITING_PAYMENT]} *Awaiting payment:* {report.payment_count}, "
            f"{_sums(report.payment_sums)}",
            *(f"• {_item(i, permalinks, until)}" for i in report.payment_oldest),
        ]
        if report.payment_count > len(report.payment_oldest):
            lines.append(f"and {report.payment_count - len(report.payment_oldest)} more")
        blocks.append(section(BlockId.DIGEST_PAYMENT, "\n".join(lines)))
        summary.append(f"{report.payment_count} awaiting payment")
    if report.paid_count:
        blocks.append(
            section(
                BlockId.DIGEST_PAID,
                f"{STATUS_EMOJI[Status.PAID]} *Paid since the last digest:* {report.paid_count}, "
                f"{_sums(report.paid_sums)}",
            )
        )
        summary.append(f"{report.paid_count} paid")
    if report.action_count:
        lines = [":warning: *Needs action:*"]
        lines += [
            f"• {Status(i.status).label}: {_item(i, permalinks, until)}" for i in report.action
        ]
        if report.action_count > len(report.action):
            lines.append(f"and {report.action_count - len(report.action)} more")
        blocks.append(section(BlockId.DIGEST_ACTION, "\n".join(lines)))
        summary.append(f"{report.action_count} need action")
    if report.expiring_count:
        lines = [f":hourglass: *Expiring within a day:* {report.expiring_count}"]
        lines += [f"• {_expiring(i, permalinks, until)}" for i in report.expiring]
        if report.expiring_count > len(report.expiring):
            lines.append(f"and {report.expiring_count - len(report.expiring)} more")
        blocks.append(section(BlockId.DIGEST_EXPIRING, "\n".join(lines)))
        summary.append(f"{report.expiring_count} expiring within a day")
    blocks.append(
        context(
            BlockId.DIGEST_FOOTER,
            f"Paid counts payments since {slack_date(datetime.fromisoformat(report.since))}.",
        )
    )
    fallback = "Paylink digest: " + (", ".join(summary) or "nothing to report")
    return clip_mrkdwn(fallback, FALLBACK_MAX), to_dicts(blocks)
