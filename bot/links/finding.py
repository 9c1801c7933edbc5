"""Finding links: pages of a workspace's links by status, counts, search, the approval queue
and the month's totals, for ``/paylink list|find|status`` and App Home.

Every query names the workspace (a link is seen only from its own) and is bounded: a page
is at most ``limit + 1`` rows read through an index per status (keyset, newest first), a
count at most ``COUNT_CAP + 1`` index entries per status, a search stops at ``limit + 1``
matches. See
docs/decisions/0023-app-home-paging.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import ColumnElement, Select, and_, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from bot.links.states import EXPIRING, SANDBOX_LABEL, Status
from bot.links.tables import History, Link, LinkIntent, of_workspace
from bot.links.workspaces import Workspace

PAGE_SIZE = 20
COUNT_CAP = 1_000  # per status: counted exactly up to this, shown as "1,000+" past it
SEARCH_MIN = 2  # characters: a shorter search would match nearly everything
SEARCH_WINDOW = 10_000  # a search looks through this many of the newest links
_PHONE = re.compile(r"[0-9 +()-]+")  # a phone number as people type it


class Filter(StrEnum):
    """What ``/paylink list`` and App Home filter on: every status is in exactly one group
    besides ``all``."""

    ALL = "all"
    PENDING = "pending"  # no link yet: waiting for approval, or for XPay
    UNPAID = "unpaid"  # a link the customer has not paid (yet)
    PAID = "paid"
    CLOSED = "closed"  # rejected or cancelled

    @property
    def statuses(self) -> tuple[Status, ...]:
        """The statuses this filter shows."""
        if self is Filter.ALL:
            return tuple(Status)
        return tuple(s for s in Status if GROUPS[s] is self)

    @property
    def label(self) -> str:
        """The filter's name as people see it."""
        return FILTER_LABELS[self]


#: The group of each status; a new status must be placed here (tests check every one is).
GROUPS: dict[Status, Filter] = {
    Status.AWAITING_APPROVAL: Filter.PENDING,
    Status.CREATING_LINK: Filter.PENDING,
    Status.LINK_FAILED: Filter.PENDING,
    Status.LINK_UNKNOWN: Filter.PENDING,
    Status.AWAITING_PAYMENT: Filter.UNPAID,
    Status.PAYMENT_FAILED: Filter.UNPAID,
    Status.EXPIRED: Filter.UNPAID,  # unpaid, and Renew makes it payable again
    Status.PAID: Filter.PAID,
    Status.REJECTED: Filter.CLOSED,
    Status.CANCELLED: Filter.CLOSED,
}

FILTER_LABELS = {
    Filter.ALL: "All",
    Filter.PENDING: "Pending",
    Filter.UNPAID: "Unpaid",
    Filter.PAID: "Paid",
    Filter.CLOSED: "Closed",
}


@dataclass(frozen=True)
class Scope:
    """Whose links: a workspace's, and one requester's (``requester``) or everyone's (None)."""

    workspace: Workspace
    requester: str | None = None

    def where(self) -> ColumnElement[bool]:
        """The condition selecting this scope's links."""
        condition = of_workspace(self.workspace)
        if self.requester is not None:
            condition = and_(condition, Link.requester_id == self.requester)
        return condition


@dataclass
class Page:
    """One page of links, newest first; ``newer``/``older``: more exist on either side."""

    links: list[Link]
    newer: bool
    older: bool


def page(
    session: Session,
    scope: Scope,
    chosen: Filter = Filter.ALL,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = PAGE_SIZE,
) -> Page:
    """The ``limit`` newest links of ``scope`` in ``chosen``'s statuses older than the link
    id ``before`` (Next), or the ``limit`` oldest newer than ``after`` (Previous); the first
    page when neither is given.

    One statement: per status, at most ``limit + 1`` ids read in order from the index on
    (team, [requester,] status, id), merged; then the rows of the page."""
    if scope.workspace.team_id is None:
        return Page([], newer=False, older=False)
    backwards = after is not None and before is None
    ids = _ids(
        session, scope, chosen, before=before, after=after if backwards else None, n=limit + 1
    )
    more = len(ids) > limit
    ids = ids[:limit]
    rows = {link.id: link for link in session.scalars(select(Link).where(Link.id.in_(ids)))}
    links = sorted((rows[i] for i in ids if i in rows), key=lambda link: -link.id)
    if backwards:
        return Page(links, newer=more, older=True)
    return Page(links, newer=before is not None, older=more)


def _ids(
    session: Session,
    scope: Scope,
    chosen: Filter,
    *,
    before: int | None = None,
    after: int | None = None,
    n: int,
) -> list[int]:
    """The ids of the ``n`` newest links of ``scope`` in ``chosen`` below ``before``, or
    of the ``n`` oldest above ``after`` (ascending): per status, ``n`` ids read in order
    from the index on (team, [requester,] status, id), merged, in one statement."""
    parts = []
    for status in chosen.statuses:
        query = select(Link.id).where(scope.where(), Link.status == status.value)
        if after is not None:
            query = query.where(Link.id > after).order_by(Link.id.asc())
        else:
            if before is not None:
                query = query.where(Link.id < before)
            query = query.order_by(Link.id.desc())
        parts.append(query.limit(n).subquery())
    merged = union_all(*(select(part.c.id) for part in parts)).subquery()
    order = merged.c.id.asc() if after is not None else merged.c.id.desc()
    return list(session.scalars(select(merged.c.id).order_by(order).limit(n)))


@dataclass
class Counts:
    """How many links of a scope each filter has. A status is counted up to
    :data:`COUNT_CAP` only (so a count reads at most that many index entries per status):
    a filter with a status past it is ``capped``, its count a lower bound."""

    values: dict[Filter, int]
    capped: set[Filter]

    def __getitem__(self, chosen: Filter) -> int:
        return self.values[chosen]

    def text(self, chosen: Filter) -> str:
        """``1,234``, or ``1,000+`` for a lower bound."""
        return f"{self.values[chosen]:,}" + ("+" if chosen in self.capped else "")


def counts(session: Session, scope: Scope) -> Counts:
    """How many links ``scope`` has in each filter: per status, an index-only count of at
    most ``COUNT_CAP + 1`` entries, in one statement."""
    result = Counts(dict.fromkeys(Filter, 0), set())
    if scope.workspace.team_id is None:
        return result
    parts = [
        select(literal(status.value).label("status"), func.count().label("n")).select_from(
            select(Link.id)
            .where(scope.where(), Link.status == status.value)
            .limit(COUNT_CAP + 1)
            .subquery()
        )
        for status in Status
    ]
    for status, count in session.execute(union_all(*parts)):
        group = GROUPS[Status(status)]
        capped = count > COUNT_CAP
        for chosen in (Filter.ALL, group):
            result.values[chosen] += min(count, COUNT_CAP)
            if capped:
                result.capped.add(chosen)
    return result


def search(
    session: Session, scope: Scope, text: str, *, contact: bool, limit: int = PAGE_SIZE
) -> tuple[list[Link], bool]:
    """Links of ``scope`` whose reference, current checkout link's reference (a renewal's
    ``REF-2``) or customer name contains ``text`` (any case), and with ``contact`` also
    whose e-mail or phone does; newest first, at most ``limit``, and whether more may match.

    The link with exactly that reference, or a checkout link of it with that reference (an
    earlier renewal's too), comes first, however old (an index lookup);
    the rest are looked for among the newest :data:`SEARCH_WINDOW` links only, so a search
    reads a bounded number of rows however many links there are."""
    needle = " ".join(text.split()).lower()
    if scope.workspace.team_id is None or len(needle) < SEARCH_MIN:
        return [], False
    pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    columns = [Link.reference, Link.checkout_reference, Link.customer_name]
    if contact:
        columns += [Link.customer_email, Link.customer_phone]
    matches = [func.lower(column).like(pattern, escape="\\") for column in columns]
    digits = "".join(ch for ch in needle if ch.isdigit())
    if contact and len(digits) >= 4 and digits != needle and _PHONE.fullmatch(needle):
        # "0341 5682456" finds 03415682456: phones are stored without spaces.
        matches.append(Link.customer_phone.like(f"%{digits}%"))
    exact = by_reference(session, scope, text)
    # The id of the oldest link in the window: an index walk of SEARCH_WINDOW entries.
    floor = session.scalar(
        select(Link.id)
        .where(scope.where())
        .order_by(Link.id.desc())
        .offset(SEARCH_WINDOW - 1)
        .limit(1)
    )
    query: Select[tuple[Link]] = select(Link).where(scope.where(), or_(*matches))
    if floor is not None:
        query = query.where(Link.id >= floor)
    # Newest first along the index on (team, [requester,] id): it stops at limit + 1 matches.
    found = [exact] if exact else []
    found += [
        link
        for link in session.scalars(query.order_by(Link.id.desc()).limit(limit + 1))
        if link is not exact
    ]
    return found[:limit], len(found) > limit or floor is not None


def by_reference(session: Session, scope: Scope, reference: str) -> Link | None:
    """The link of ``scope`` with this order reference, as typed, in capitals or in small
    letters: its own, or one of its checkout links' (a renewal's ``REF-2``, which customers
    and XPay's portal quote). References are unique; each spelling is an index lookup."""
    if scope.workspace.team_id is None:
        return None
    typed = reference.strip()
    spellings = {typed, typed.upper(), typed.lower()}
    found = session.scalar(
        select(Link).where(scope.where(), Link.reference.in_(spellings)).limit(1)
    )
    if found is None:
        found = session.scalar(
            select(Link)
            .join(LinkIntent, LinkIntent.link_id == Link.id)
            .where(scope.where(), LinkIntent.reference.in_(spellings))
            .limit(1)
        )
    return found


@dataclass
class Totals:
    """One currency's links in a period: how many and how much, requested and paid."""

    currency: str
    requested: int = 0
    requested_sum: Decimal = Decimal(0)
    paid: int = 0
    paid_sum: Decimal = Decimal(0)


@dataclass
class MonthTotals:
    """The links a workspace's reps requested from ``start`` until ``end``, per currency."""

    start: datetime
    end: datetime
    currencies: list[Totals] = field(default_factory=list)


def month_totals(session: Session, scope: Scope, start: datetime, end: datetime) -> MonthTotals:
    """Per currency, the links of ``scope`` created from ``start`` until ``end``: how many
    were requested (rejected and cancelled ones left out) and how many paid, with sums.
    Summed in cents, as integers, so no database rounds money as a float."""
    result = MonthTotals(start, end)
    if scope.workspace.team_id is None:
        return result
    cents = func.sum(func.round(Link.amount * 100))
    query = (
        select(Link.currency, Link.status, func.count(), cents)
        .where(
            scope.where(),
            Link.created_at >= start,
            Link.created_at < end,
            Link.status.not_in([s.value for s in Filter.CLOSED.statuses]),
        )
        .group_by(Link.currency, Link.status)
    )
    by_currency: dict[str, Totals] = {}
    for currency, status, count, total in session.execute(query):
        money = Decimal(int(total or 0)) / 100
        totals = by_currency.setdefault(currency, Totals(currency))
        totals.requested += count
        totals.requested_sum += money
        if status == Status.PAID.value:
            totals.paid += count
            totals.paid_sum += money
    result.currencies = [by_currency[c] for c in sorted(by_currency)]
    return result


def newest(links: Sequence[Link]) -> int | None:
    """The id of the newest link of a page (for its Previous), None when it is empty."""
    return max((link.id for link in links), default=None)


def oldest(links: Sequence[Link]) -> int | None:
    """The id of the oldest link of a page (for its Next), None when it is empty."""
    return min((link.id for link in links), default=None)


def may_see_contact(link: Link, user_id: str, *, is_approver: bool) -> bool:
    """Whether ``user_id`` may see the customer's full e-mail and phone: the rep who asked
    for the link, and approvers."""
    return is_approver or link.requester_id == user_id


def status_report(
    link: Link, history: Sequence[History], intents: Sequence[LinkIntent] = ()
) -> list[str]:
    """A link's status, its checkout links and every history row, as ``paylink status``
    prints them (and ``/paylink status`` shows them)."""
    lines = [f"{link.reference}: {link.status_label}"]
    if link.sandbox:
        lines.append(SANDBOX_LABEL)
    lines.append(f"amount: {link.currency} {link.amount:,}")
    if link.checkout_url:
        lines.append(f"link: {link.checkout_url}")
    if link.expires_at and Status(link.status) in (*EXPIRING, Status.EXPIRED):
        lines.append(f"expires: {_utc(link.expires_at)}")
    if len(intents) > 1:  # renewed: every checkout link it has had, each still payable
        lines.append("checkout links:")
        for intent in intents:
            paid = f", paid {_utc(intent.paid_at)}" if intent.paid_at else ""
            made = f"created {_utc(intent.created_at)}" if intent.intent_id else "being created"
            lines.append(f"  {intent.reference}: {made}{paid}")
    for row in history:
        label = Status(row.to_status).label
        if row.from_status == row.to_status:  # an event, no move: "reminder sent to the rep"
            lines.append(f"  {_utc(row.at)} {label}: {row.reason} (by {row.actor})")
            continue
        source = f"{Status(row.from_status).label} → " if row.from_status else ""
        why = f" ({row.reason})" if row.reason else ""
        lines.append(f"  {_utc(row.at)} {source}{label} by {row.actor}{why}")
    return lines


def _utc(at: datetime) -> str:
    """A time as ``status`` prints it (PostgreSQL hands times back in its session's zone)."""
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
