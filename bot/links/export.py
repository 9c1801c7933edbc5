"""The CSV export of links: one row per request created in a period (whatever its status),
for ``paylink export`` and ``/paylink export``.

The file is UTF-8 with a byte-order mark (so spreadsheets read Urdu names right), has a header
row, and defuses every cell a spreadsheet would run as a formula. Rows are read from the
database and written a batch at a time: memory stays flat however many links there are.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from bot.links.states import Status
from bot.links.store import LinkStore
from bot.links.tables import History, Link, LinkApproval, LinkIntent
from bot.links.workspaces import Workspace

#: Rows fetched from the database at a time.
BATCH = 500
#: The encoding of the file: UTF-8 with a byte-order mark.
ENCODING = "utf-8-sig"
# A cell starting with one of these is a formula to a spreadsheet (OWASP's CSV injection
# list; tab and carriage return start one too in some of them).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def header(timezone: ZoneInfo) -> list[str]:
    """The header row; times are in ``timezone``, which the time columns name."""
    zone = timezone.key
    return [
        "reference",
        f"created ({zone})",
        "requester",
        "approver(s)",
        "status",
        "amount",
        "currency",
        "customer name",
        "customer e-mail",
        "customer phone",
        "XPay intent id",
        f"paid at ({zone})",
        "payment method",
        "bank message",
        "test",
    ]


@dataclass(frozen=True)
class Period:
    """Links created at or after ``start`` and before ``end`` (UTC); ``name`` for people."""

    start: datetime
    end: datetime
    name: str


def days(first: date, last: date, timezone: ZoneInfo) -> Period:
    """From the start of ``first`` to the end of ``last`` (both included) in ``timezone``.
    ValueError when ``last`` is before ``first``."""
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    return Period(
        start=_midnight(first, timezone),
        end=_midnight(last + timedelta(days=1), timezone),
        name=f"{first} to {last}",
    )


def month(text: str, timezone: ZoneInfo, today: date) -> Period:
    """The month ``YYYY-MM`` in ``timezone``; an empty ``text`` is ``today``'s month.
    ValueError for anything else."""
    text = text.strip()
    if not text:
        year, number = today.year, today.month
    else:
        match = _MONTH.match(text)
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise ValueError(f"expected a month as YYYY-MM (e.g. {today:%Y-%m}), got {text!r}")
        year, number = int(match.group(1)), int(match.group(2))
    first = date(year, number, 1)
    following = date(year + number // 12, number % 12 + 1, 1)
    return Period(
        start=_midnight(first, timezone),
        end=_midnight(following, timezone),
        name=first.strftime("%B %Y"),
    )


def _midnight(day: date, timezone: ZoneInfo) -> datetime:
    # In UTC, as stored: SQLite compares the times as text, so the offset would be lost.
    return datetime.combine(day, time(0), tzinfo=timezone).astimezone(UTC)


def parse_status(text: str) -> Status:
    """A status by its name (``awaiting_payment``) or its label (``Awaiting payment``), in
    any case. ValueError naming the statuses for anything else."""
    wanted = "_".join(text.lower().replace("-", " ").split())
    for status in Status:
        if wanted in (status.value, "_".join(status.label.lower().split())):
            return status
    raise ValueError(f"expected one of {', '.join(s.value for s in Status)}, got {text!r}")


def defuse(cell: str) -> str:
    """``cell`` as a spreadsheet shows it rather than runs it: one starting like a formula
    gets a leading ``'``."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def rows(
    store: LinkStore,
    period: Period,
    *,
    timezone: ZoneInfo,
    status: Status | None = None,
    workspace: Workspace | None = None,
) -> Iterator[list[str]]:
    """The rows of the links created in ``period``, oldest first, optionally of one
    ``status`` and only ``workspace``'s (None: every link, for the operator's CLI)."""
    paid_at = (
        select(func.min(History.at))
        .where(History.link_id == Link.id, History.to_status == Status.PAID.value)
        .scalar_subquery()
    )
    # A request for two approvers has one link_approvals row each (at most two, the second
    # decides): both, in the order they approved. No portable ordered string aggregate
    # spans SQLite and PostgreSQL, so the first and the second are read apart.
    approvals = (
        select(LinkApproval.approver_id)
        .where(LinkApproval.link_id == Link.id)
        .order_by(LinkApproval.at, LinkApproval.id)
    )
    first_approver = approvals.limit(1).scalar_subquery()
    second_approver = approvals.offset(1).limit(1).scalar_subquery()
    # The intent the customer paid, which after a renewal may be an earlier checkout link
    # than the current one (links.intent_id); paid on two (a double payment), the first,
    # whose payment made the request Paid. Unpaid: the current checkout link.
    paid_intent = (
        select(LinkIntent.intent_id)
        .where(LinkIntent.link_id == Link.id, LinkIntent.paid_at.is_not(None))
        .order_by(LinkIntent.paid_at, LinkIntent.id)
        .limit(1)
        .scalar_subquery()
    )
    query = (
        select(
            Link.reference,
            Link.created_at,
            Link.requester_id,
            Link.decided_by,
            first_approver.label("first_approver"),
            second_approver.label("second_approver"),
            Link.status,
            Link.amount,
            Link.currency,
            Link.customer_name,
            Link.customer_email,
            Link.customer_phone,
            func.coalesce(paid_intent, Link.intent_id).label("intent_id"),
            paid_at.label("paid_at"),
            Link.paid_method,
            Link.bank_message,
            Link.sandbox,
        )
        .where(Link.created_at >= period.start, Link.created_at < period.end)
        .order_by(Link.created_at, Link.id)
        .execution_options(yield_per=BATCH)
    )
    if status is not None:
        query = query.where(Link.status == status.value)
    if workspace is not None:
        query = query.where(
            Link.team_id == workspace.team_id,
            Link.enterprise_id.is_(None)
            if workspace.enterprise_id is None
            else Link.enterprise_id == workspace.enterprise_id,
        )
    with store.reading() as session:
        for row in session.execute(query):
            yield [
                row.reference,
                _local(row.created_at, timezone),
                row.requester_id,
                _approvers(row.first_approver, row.second_approver, row.decided_by),
                Status(row.status).label,
                f"{row.amount:f}",  # a plain number: no separators, never negative
                row.currency,
                row.customer_name,
                row.customer_email or "",
                row.customer_phone or "",
                row.intent_id or "",
                _local(row.paid_at, timezone),
                row.paid_method or "",
                row.bank_message or "",
                "TEST" if row.sandbox else "",
            ]


def _approvers(first: str | None, second: str | None, decided_by: str | None) -> str:
    """The approver(s) cell: both approvers of a request two approved, in order; else
    whoever decided it (approved, rejected, cancelled), or its first approver so far."""
    if first and second:
        return f"{first}, {second}"
    return decided_by or first or ""


def _local(at: datetime | None, timezone: ZoneInfo) -> str:
    return at.astimezone(timezone).strftime("%Y-%m-%d %H:%M:%S") if at else ""


def write(out: TextIO, body: Iterator[list[str]], timezone: ZoneInfo) -> int:
    """Write the header and ``body`` to ``out`` (opened with :data:`ENCODING` and
    ``newline=""``, so the byte-order mark leads); returns how many links were written."""
    writer = csv.writer(out)
    writer.writerow(header(timezone))
    count = 0
    for row in body:
        writer.writerow([defuse(cell) for cell in row])
        count += 1
    return count
