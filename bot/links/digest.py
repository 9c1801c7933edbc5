"""The daily digest: what waits, what was paid, what needs someone, read from the links and
taken once a day across every process (see docs/decisions/0021-timers-as-stored-due-jobs.md).

The worker's periodic pass calls :meth:`Digests.take_daily`. Once the day's time has passed
in PAYLINK_TIMEZONE, one transaction reads the report, records the day in ``digests`` (its
unique key decides between replicas) and queues the post as a job of no link; a report with
nothing in it is recorded but not posted. ``paylink digest`` reads one now
(:meth:`Digests.read_now`) and records it once posted (:meth:`Digests.record_now`).

In single-workspace mode a digest reads every link in the database: it is the deployment's,
keyed by the day. In multi-workspace mode (``installed`` given) each installed workspace has
its own: only its links, in its own approval channel, keyed ``<team>:<day>``, its "paid since"
counted from its own last digest, posted with its own token (the job's payload names it). A
workspace not installed (never, or no more) gets none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, func, select, true
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.db import utcnow
from bot.links.kinds import JobKind
from bot.links.queue import JobQueue
from bot.links.states import Status
from bot.links.tables import Digest, History, Link, of_workspace
from bot.links.workspaces import Workspace

log = logging.getLogger(__name__)

OLDEST_SHOWN = 5  # links awaiting payment listed by name, oldest first
ACTION_SHOWN = 10  # links needing action listed
EXPIRING_SHOWN = 5  # links expiring within a day listed, soonest first
EXPIRING_WITHIN = timedelta(days=1)
CENT = Decimal("0.01")
# Before the first digest, "paid since the last digest" looks back this far.
FIRST_LOOKBACK = timedelta(days=1)
NEEDS_ACTION = (Status.PAYMENT_FAILED, Status.LINK_FAILED, Status.LINK_UNKNOWN)


@dataclass(frozen=True)
class Item:
    """A link a digest names: by its reference, linked to its card when it has one."""

    link_id: int
    reference: str
    amount: str  # a Decimal, as text (the report is stored as JSON in its job)
    currency: str
    status: str
    since: str  # ISO time: created (awaiting approval) or last moved (the others)
    sandbox: bool
    channel_id: str | None
    message_ts: str | None
    expires_at: str | None = None  # ISO time; reports stored before expiry existed have none

    @classmethod
    def of(cls, link: Link, since: datetime) -> Item:
        """``link`` as the digest names it, waiting since ``since``."""
        return cls(
            link_id=link.id,
            reference=link.reference,
            amount=str(link.amount),
            currency=link.currency,
            status=link.status,
            since=since.isoformat(),
            sandbox=link.sandbox,
            channel_id=link.channel_id,
            message_ts=link.message_ts,
            expires_at=link.expires_at.isoformat() if link.expires_at else None,
        )


@dataclass(frozen=True)
class Sum:
    """The total of some links in one currency; test (sandbox) links are summed apart."""

    currency: str
    total: str  # a Decimal, as text
    sandbox: bool = False


@dataclass(frozen=True)
class Report:
    """A digest's figures, read at ``until``; "paid" counts payments after ``since``."""

    since: str
    until: str
    approval_count: int = 0
    approval_oldest: Item | None = None
    payment_count: int = 0
    payment_sums: list[Sum] = field(default_factory=list)
    payment_oldest: list[Item] = field(default_factory=list)
    paid_count: int = 0
    paid_sums: list[Sum] = field(default_factory=list)
    action_count: int = 0
    action: list[Item] = field(default_factory=list)
    expiring_count: int = 0
    expiring: list[Item] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing to report: no message."""
        return not (
            self.approval_count
            or self.payment_count
            or self.paid_count
            or self.action_count
            or self.expiring_count
        )

    def named(self) -> list[Item]:
        """Every link the digest names (each is linked to its card)."""
        first = [self.approval_oldest] if self.approval_oldest else []
        return first + self.payment_oldest + self.action + self.expiring

    def to_json(self) -> dict[str, Any]:
        """The report as the digest job's payload."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        """A report read back from :meth:`to_json`."""
        oldest = data.get("approval_oldest")
        return cls(
            **{
                **data,
                "approval_oldest": Item(**oldest) if oldest else None,
                "payment_oldest": [Item(**v) for v in data.get("payment_oldest", [])],
                "action": [Item(**v) for v in data.get("action", [])],
                "expiring": [Item(**v) for v in data.get("expiring", [])],
                "payment_sums": [Sum(**v) for v in data.get("payment_sums", [])],
                "paid_sums": [Sum(**v) for v in data.get("paid_sums", [])],
            }
        )


def _counted(session: Session, where: ColumnElement[bool]) -> tuple[int, list[Sum]]:
    """How many links match ``where``, and their sums per currency, test (sandbox) links
    apart: added up by the database in cents, as integers, so no database rounds money as
    a float and no link is loaded."""
    cents = func.sum(func.round(Link.amount * 100))
    rows = session.execute(
        select(Link.currency, Link.sandbox, func.count(), cents)
        .where(where)
        .group_by(Link.currency, Link.sandbox)
    ).all()
    sums = [
        Sum(currency, str((Decimal(int(total or 0)) / 100).quantize(CENT)), bool(sandbox))
        for currency, sandbox, _count, total in sorted(rows, key=lambda r: (bool(r[1]), r[0]))
    ]
    return sum(int(count) for _c, _s, count, _t in rows), sums


def _in(*statuses: Status) -> Any:
    return Link.status.in_([s.value for s in statuses])


def _links_of(workspace: Workspace | None) -> ColumnElement[bool]:
    """Whose links a digest reads: ``workspace``'s, or every link (None: the deployment's)."""
    return true() if workspace is None else of_workspace(workspace)


def read_report(
    session: Session, since: datetime, until: datetime, workspace: Workspace | None = None
) -> Report:
    """The figures of a digest taken at ``until``, paid counted after ``since``, of
    ``workspace``'s links (None: every link, single-workspace mode).

    Counts and sums are the database's; only the few links named are loaded, so a digest's
    memory and time do not grow with the links it counts."""
    mine = _links_of(workspace)
    approval = session.scalar(
        select(func.count()).select_from(Link).where(mine, _in(Status.AWAITING_APPROVAL))
    )
    oldest_request = session.scalar(
        select(Link)
        .where(mine, _in(Status.AWAITING_APPROVAL))
        .order_by(Link.created_at, Link.id)
        .limit(1)
    )
    awaiting = and_(mine, _in(Status.AWAITING_PAYMENT))
    payment_count, payment_sums = _counted(session, awaiting)
    oldest = session.scalars(
        select(Link).where(awaiting).order_by(Link.updated_at, Link.id).limit(OLDEST_SHOWN)
    )
    paid_now = Link.id.in_(
        select(History.link_id).where(
            History.to_status == Status.PAID.value,
            History.from_status != Status.PAID.value,
            History.at > since,
            History.at <= until,
        )
    )
    paid_count, paid_sums = _counted(session, and_(mine, paid_now))
    needs_action = and_(mine, _in(*NEEDS_ACTION))
    action_count = session.scalar(select(func.count()).select_from(Link).where(needs_action))
    action = session.scalars(
        select(Link).where(needs_action).order_by(Link.updated_at, Link.id).limit(ACTION_SHOWN)
    )
    # Awaiting payment only: a failed payment's link is listed under its status already.
    expiring_soon = and_(
        awaiting, Link.expires_at.is_not(None), Link.expires_at <= until + EXPIRING_WITHIN
    )
    expiring_count = session.scalar(select(func.count()).select_from(Link).where(expiring_soon))
    expiring = session.scalars(
        select(Link).where(expiring_soon).order_by(Link.expires_at, Link.id).limit(EXPIRING_SHOWN)
    )
    return Report(
        since=since.isoformat(),
        until=until.isoformat(),
        approval_count=int(approval or 0),
        approval_oldest=Item.of(oldest_request, oldest_request.created_at)
        if oldest_request
        else None,
        payment_count=payment_count,
        payment_sums=payment_sums,
        payment_oldest=[Item.of(link, link.updated_at) for link in oldest],
        paid_count=paid_count,
        paid_sums=paid_sums,
        action_count=int(action_count or 0),
        action=[Item.of(link, link.updated_at) for link in action],
        expiring_count=int(expiring_count or 0),
        expiring=[Item.of(link, link.updated_at) for link in expiring],
    )


class Digests:
    """Takes digests: ``at`` o'clock in ``zone`` daily (None: never by itself), posted in
    the channel ``channel()`` names when one is taken (None: the channel of the newest
    card).

    Multi-workspace mode: ``installed()`` lists the workspaces Paylink is installed in, each
    of which gets its own digest, in the channel ``channel_of(workspace)`` names (None: the
    channel of that workspace's newest card)."""

    def __init__(
        self,
        queue: JobQueue,
        *,
        at: time | None,
        zone: ZoneInfo,
        channel: Callable[[], str | None],
        installed: Callable[[], Sequence[Workspace]] | None = None,
        channel_of: Callable[[Workspace], str | None] = lambda _w: None,
    ):
        self.queue = queue
        self.store = queue.store
        self.at = at
        self.zone = zone
        self.channel = channel
        self.installed = installed
        self.channel_of = channel_of
        self._taken: str | None = None  # the last day this process saw taken
        # Multi-workspace mode: the day, and the workspaces' keys this process saw taken on it.
        self._taken_keys: tuple[str, set[str]] = ("", set())
        insert_or_skip = pg_insert if self.store.is_postgres else sqlite_insert
        self._record = (
            insert_or_skip(Digest.__table__)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(Digest.__table__.c.id)
        )

    def day_due(self, now: datetime) -> str | None:
        """The day (``2026-12-02``, in the digest's zone) whose digest is due at ``now``:
        today's once its time has passed; None before, or with no digest time."""
        if self.at is None:
            return None
        local = now.astimezone(self.zone)
        return local.date().isoformat() if local.time() >= self.at else None

    def take_daily(self, now: datetime | None = None) -> int:
        """Take today's digest if it is due and no process has taken it; True when this call
        queued its post. One transaction reads it, records the day (unique) and queues the
        post, so of two processes one takes it. In multi-workspace mode, the same for each
        installed workspace (one transaction each): how many posts this call queued."""
        now = now or utcnow()
        day = self.day_due(now)
        if day is None:
            return False
        if self.installed is not None:
            return self._take_each(self.installed(), day, now)
        if day == self._taken:
            return False
        # The channel may be asked of Slack: only for a digest to post, and not while
        # holding a transaction.
        to_post = self._to_post(day, now)
        configured = self.channel() if to_post else None
        queued = self._take(day, day, now, configured, None, channel_asked=to_post)
        if queued is None:  # something to report came meanwhile: its channel next pass
            return False
        self._taken = day
        return queued

    def _take_each(self, workspaces: Sequence[Workspace], day: str, now: datetime) -> int:
        """Take ``day``'s digest of each workspace in ``workspaces`` no process took yet."""
        if self._taken_keys[0] != day:
            self._taken_keys = (day, set())
        taken = self._taken_keys[1]
        queued = 0
        for workspace in workspaces:
            key = workspace_key(workspace, day)
            if key in taken:
                continue
            try:
                configured = self.channel_of(workspace)
                queued += bool(self._take(day, key, now, configured, workspace))
            except Exception:  # one workspace's trouble must not keep the others' digests
                log.exception("digest not taken", extra={"team": workspace.team_id})
                continue  # tried again on the next pass
            taken.add(key)
        return queued

    def _take(
        self,
        day: str,
        key: str,
        now: datetime,
        configured: str | None,
        workspace: Workspace | None,
        *,
        channel_asked: bool = True,
    ) -> bool | None:
        """Read, record (``key``, unique) and queue one digest in one transaction; True when
        its post was queued. None, with nothing recorded, when there is something to report
        although the channel was not asked for (``channel_asked``: it was empty before)."""
        with self.store.transaction() as s:
            if s.scalar(select(Digest.id).where(Digest.key == key)) is not None:
                return False
            report = self._report(s, now, workspace)
            if not channel_asked and not report.empty:
                return None
            channel = self._channel(s, report, configured, workspace)
            queued = self._recorded(s, key, now, channel, workspace) and channel is not None
            if queued:
                self.queue.enqueue(
                    s,
                    None,
                    JobKind.DIGEST,
                    payload={
                        "channel": channel,
                        "report": report.to_json(),
                        **({} if workspace is None else _owner(workspace)),
                    },
                    dedupe_key=f"digest:{key}",
                )
        if queued:
            extra = {"team": workspace.team_id} if workspace else {}
            log.info("daily digest queued for %s", day, extra=extra)
        return queued

    def read_now(
        self, now: datetime | None = None, workspace: Workspace | None = None
    ) -> tuple[Report, str | None]:
        """A digest as of now (``paylink digest``) and the channel it goes to: of
        ``workspace`` (multi-workspace mode), or the deployment's (None)."""
        configured = self.channel() if workspace is None else self.channel_of(workspace)
        with self.store.reading() as s:
            return self._read(s, now or utcnow(), configured, workspace)

    def record_now(self, report: Report, channel: str, workspace: Workspace | None = None) -> None:
        """Record a digest ``paylink digest`` posted: the next one's "paid since" (of
        ``workspace``, when it is one's) starts at its figures' time."""
        until = datetime.fromisoformat(report.until)
        key = (
            f"now:{report.until}"
            if workspace is None
            else f"now:{workspace_key(workspace, report.until)}"
        )
        with self.store.transaction() as s:
            self._recorded(s, key, until, channel, workspace)

    def _to_post(self, day: str, now: datetime) -> bool:
        """True when ``day``'s digest (the deployment's) is not taken yet and has something
        to say as of ``now``."""
        with self.store.reading() as s:
            if s.scalar(select(Digest.id).where(Digest.key == day)) is not None:
                return False
            return not self._report(s, now, None).empty

    def _report(self, session: Session, now: datetime, workspace: Workspace | None) -> Report:
        """The report as of ``now``, "paid" counted since the last digest (``workspace``'s)."""
        last_of = select(func.max(Digest.covered_until))
        if workspace is not None:
            last_of = last_of.where(_digest_of(workspace))
        last = session.scalar(last_of)
        return read_report(session, last or now - FIRST_LOOKBACK, now, workspace)

    def _read(
        self,
        session: Session,
        now: datetime,
        configured: str | None,
        workspace: Workspace | None,
    ) -> tuple[Report, str | None]:
        report = self._report(session, now, workspace)
        return report, self._channel(session, report, configured, workspace)

    def _channel(
        self,
        session: Session,
        report: Report,
        configured: str | None,
        workspace: Workspace | None,
    ) -> str | None:
        """Where ``report`` goes: ``configured``, else the channel of the newest card (of
        ``workspace``); None for an empty report, or with nowhere to post (logged)."""
        if report.empty:
            return None
        channel = configured or session.scalar(
            select(Link.channel_id)
            .where(_links_of(workspace), Link.message_ts.is_not(None))
            .order_by(Link.created_at.desc(), Link.id.desc())
            .limit(1)
        )
        if channel is None:
            team = workspace.team_id if workspace else None
            log.warning(
                "digest: no channel to post %s in (set the approval channel in Settings, or "
                "PAYLINK_APPROVAL_CHANNEL)",
                f"workspace {team}'s" if team else "it",
                extra={"team": team} if team else {},
            )
        return channel

    def _recorded(
        self,
        session: Session,
        key: str,
        until: datetime,
        channel: str | None,
        workspace: Workspace | None,
    ) -> bool:
        row = {
            "key": key,
            "covered_until": until,
            "channel_id": channel,
            "created_at": utcnow(),
            **_owner(workspace),
        }
        return session.execute(self._record, row).first() is not None


def workspace_key(workspace: Workspace, day: str) -> str:
    """A workspace's digest's key: ``T0123:2026-12-02`` (the day alone is the deployment's)."""
    return f"{workspace.team_id}:{day}"


def digest_owner(payload: dict[str, Any]) -> Workspace | None:
    """The workspace a digest job's post is for (None: the deployment's, single-workspace
    mode)."""
    team = payload.get("team_id")
    return Workspace(team, payload.get("enterprise_id")) if team else None


def _owner(workspace: Workspace | None) -> dict[str, str | None]:
    if workspace is None:
        return {"team_id": None, "enterprise_id": None}
    return {"team_id": workspace.team_id, "enterprise_id": workspace.enterprise_id}


def _digest_of(workspace: Workspace) -> ColumnElement[bool]:
    enterprise = workspace.enterprise_id
    return and_(
        Digest.team_id == workspace.team_id,
        Digest.enterprise_id.is_(None)
        if enterprise is None
        else Digest.enterprise_id == enterprise,
    )
