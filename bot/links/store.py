"""The links' repository: transactions, inserts, compare-and-set status moves, leases and
the queries the bot runs on links."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, bindparam, func, insert, or_, select, text, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from bot.checkout import CheckoutRequest, phone_forms
from bot.db import make_sessionmaker, reader, utcnow
from bot.links.policy import TWO
from bot.links.states import EXPIRING, Status, can_move
from bot.links.tables import (
    History,
    Link,
    LinkApproval,
    LinkIntent,
    WebhookEvent,
    of_workspace,
)
from bot.links.workspaces import Workspace
from bot.sqlite import BUSY_TIMEOUT

LINKS = Link.__table__
INTENTS = LinkIntent.__table__
# A payment recorded on an intent, once: the first caller gets rowcount 1.
_MARK_PAID = (
    update(INTENTS)
    .where(INTENTS.c.intent_id == bindparam("b_intent"), INTENTS.c.paid_at.is_(None))
    .values(paid_at=bindparam("b_now"))
)
_INSERT_HISTORY = insert(History.__table__)
_VERSION = select(LINKS.c.version).where(LINKS.c.id == bindparam("id"))
_LINK_COLUMNS = frozenset(LINKS.c.keys())
# A status move's compare-and-set; the columns to set come as parameters named after them.
_MOVE = (
    update(LINKS)
    .where(
        LINKS.c.id == bindparam("b_id"),
        LINKS.c.status == bindparam("b_status"),
        LINKS.c.status.in_(bindparam("b_sources", expanding=True)),
        LINKS.c.version == bindparam("b_version"),
    )
    .values(version=LINKS.c.version + 1)
)
# Taken before an order reference is checked and used (a new request's, a renewal's), so
# that the two tables holding them (links, link_intents) never both take one: see
# docs/decisions/0028-one-order-reference-lock.md.
_LOCK_REFERENCE = text("SELECT pg_advisory_xact_lock(:key)")
# How long a lease on a link's creation lasts: after that a stuck creation is resumed.
LEASE = timedelta(seconds=60)
_QUEUED = "paylink_jobs_queued"  # Session.info key: this transaction queues jobs


class DuplicateReference(Exception):
    """The order reference is already used by another link."""


class RepeatedView(Exception):
    """The modal view was submitted before: ``link`` is the request it made."""

    def __init__(self, link: Link):
        super().__init__(link.reference)
        self.link = link


class IllegalMove(Exception):
    """A status move the state machine does not allow."""


class LinkStore:
    """Owns the engine and the rules every write follows (one transaction per change)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.sessions = make_sessionmaker(engine)
        self._reader = reader(engine)
        self._read_sessions = make_sessionmaker(self._reader)
        self._after_commit: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        # SQLite has one writer at a time, and a writer that finds the file locked polls in
        # sleeps: our own threads queue on a lock first, which hands the file over as soon
        # as it is free (see docs/decisions/0003-sqlite-write-lock.md).
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None
        insert_or_skip = pg_insert if self.is_postgres else sqlite_insert
        self._record_webhook = (
            insert_or_skip(WebhookEvent.__table__)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(WebhookEvent.__table__.c.id)
        )

    @property
    def is_postgres(self) -> bool:
        """True on PostgreSQL, where rows are claimed with FOR UPDATE SKIP LOCKED."""
        return self.engine.dialect.name == "postgresql"

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each commit that queued jobs (wakes a job runner)."""
        with self._lock:
            self._after_commit.append(callback)

    def mark_queued(self, session: Session) -> None:
        """Note that ``session``'s transaction queues jobs: its commit calls the
        :meth:`on_commit` callbacks."""
        session.info[_QUEUED] = True

    def jobs_committed(self) -> None:
        """Call the :meth:`on_commit` callbacks: jobs were committed outside
        :meth:`transaction`. (Commits that queued nothing must not call them: a runner's own
        writes would wake it forever.)"""
        for callback in list(self._after_commit):
            callback()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold this process's SQLite write lock (no-op elsewhere) for one transaction."""
        lock = self._write_lock
        if lock is not None and not lock.acquire(timeout=BUSY_TIMEOUT):
            raise TimeoutError("the database stayed busy")
        try:
            yield
        finally:
            if lock is not None:
                lock.release()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self.writing(), self.sessions() as session, session.begin():
            yield session
            queued = session.info.get(_QUEUED, False)
        if queued:
            self.jobs_committed()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads only (never waits for writers)."""
        with self._read_sessions() as session:
            yield session

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    # Writes -------------------------------------------------------------------------

    def insert_link(
        self,
        session: Session,
        request: CheckoutRequest,
        *,
        requester_id: str,
        actor: str,
        status: Status = Status.AWAITING_APPROVAL,
        origin_channel_id: str | None = None,
        channel_id: str | None = None,
        workspace: Workspace | None = None,
        view_id: str | None = None,
        sandbox: bool = False,
        store_id: int | None = None,
        approvals_needed: int = 1,
        policy_threshold: Decimal | None = None,
    ) -> Link:
        """Insert a new link with its first history row, owned by ``workspace``;
        ``sandbox``: it is for the sandbox gateway; ``store_id``: the XPay store it is for;
        ``approvals_needed`` and ``policy_threshold``: the approval policy's rule for it
        (bot/links/policy.py).

        RepeatedView when ``workspace``'s modal ``view_id`` made a link already (the unique
        index decides, so copies of a submission that race make one link);
        DuplicateReference when another link has the order reference (or a renewal of
        another link uses it: checked holding the reference's lock, which a renewal takes
        too)."""
        self.lock_reference(session, request.order_reference)
        if self._renewal_uses(session, request.order_reference):
            raise DuplicateReference(request.order_reference)
        now = utcnow()
        link = Link.from_request(
            request,
            requester_id=requester_id,
            origin_channel_id=origin_channel_id,
            channel_id=channel_id,
            sandbox=sandbox,
            store_id=store_id,
            team_id=workspace.team_id if workspace else None,
            enterprise_id=workspace.enterprise_id if workspace else None,
            view_id=view_id,
            approvals_needed=approvals_needed,
            policy_threshold=policy_threshold,
            status=status.value,
            version=1,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        try:
            with session.begin_nested():
                session.add(link)
                session.flush()
        except IntegrityError:
            # Either index may be the one reported when both are hit: the view comes first.
            # (PostgreSQL reports a clash only once the other insert has committed.)
            earlier = self._by_view(session, link.team_id, view_id)
            if earlier is not None:
                session.expunge(earlier)  # kept as loaded: the caller rolls back
                raise RepeatedView(earlier) from None
            raise DuplicateReference(request.order_reference) from None
        session.add(
            History(link_id=link.id, from_status=None, to_status=status.value, actor=actor, at=now)
        )
        return link

    def move(
        self,
        session: Session,
        link_id: int,
        sources: Status | Sequence[Status],
        target: Status,
        *,
        actor: str,
        reason: str | None = None,
        **changes: Any,
    ) -> Link | None:
        """Compare-and-set: move the link to ``target`` only if its status is one of ``sources``.

        Returns the updated link, or None when another actor moved it first (nothing changed).
        """
        sources = (sources,) if isinstance(sources, Status) else tuple(sources)
        for src in sources:
            if not can_move(src, target):
                raise IllegalMove(f"{src.value} → {target.value}")
        if unknown := changes.keys() - _LINK_COLUMNS:  # as parameters they would be ignored
            raise TypeError(f"not columns of links: {sorted(unknown)}")
        current = session.get(Link, link_id)
        if current is None:
            return None
        src_value = current.status
        now = utcnow()
        # Core statements built once, executed with parameters, here and below: the ORM's
        # unit of work, and even building a statement anew, cost more than running it, and
        # these run on every webhook and click.
        result = session.execute(
            _MOVE,
            {
                "b_id": link_id,
                "b_status": src_value,
                "b_sources": [s.value for s in sources],
                "b_version": current.version,
                "status": target.value,
                "updated_at": now,
                **changes,
            },
        )
        if result.rowcount != 1:
            return None
        session.execute(
            _INSERT_HISTORY,
            {
                "link_id": link_id,
                "from_status": src_value,
                "to_status": target.value,
                "actor": actor,
                "reason": reason,
                "at": now,
            },
        )
        # Reflect the update on the loaded object without another SELECT (nor a second
        # UPDATE: committed values do not mark it dirty).
        for key, value in {
            "status": target.value,
            "version": current.version + 1,
            "updated_at": now,
            **changes,
        }.items():
            set_committed_value(current, key, value)
        session.expire(current, ["history"])
        return current

    def note(self, session: Session, link: Link, *, actor: str, reason: str) -> Link | None:
        """Record an event that is not a status change (a first approval) and give the link
        a new version, so a card rendered before it is rendered again. Compare-and-set on
        ``link``'s version: None when it moved meanwhile."""
        now = utcnow()
        result = session.execute(
            update(LINKS)
            .where(LINKS.c.id == link.id, LINKS.c.version == link.version)
            .values(version=link.version + 1, updated_at=now)
        )
        if result.rowcount != 1:
            return None
        self.record_event(session, link.id, Status(link.status), actor=actor, reason=reason, at=now)
        set_committed_value(link, "version", link.version + 1)
        set_committed_value(link, "updated_at", now)
        session.expire(link, ["history"])
        return link

    def record_event(
        self,
        session: Session,
        link_id: int,
        status: Status,
        *,
        actor: str,
        reason: str,
        at: datetime | None = None,
    ) -> None:
        """A history row for an event that is no status change (a reminder sent): ``status``
        is the link's, before and after; the card is left as it is."""
        session.execute(
            _INSERT_HISTORY,
            {
                "link_id": link_id,
                "from_status": status.value,
                "to_status": status.value,
                "actor": actor,
                "reason": reason,
                "at": at or utcnow(),
            },
        )

    def add_approval(self, session: Session, link_id: int, approver_id: str) -> bool:
        """Record ``approver_id``'s approval of a link; False when they had approved it
        already (the unique constraint decides, so two clicks at once are one approval)."""
        try:
            with session.begin_nested():
                session.add(LinkApproval(link_id=link_id, approver_id=approver_id, at=utcnow()))
                session.flush()
        except IntegrityError:
            return False
        return True

    def lock(self, session: Session, link_id: int) -> Link | None:
        """The link read again and locked until the transaction ends (PostgreSQL; SQLite's
        one writer at a time needs no lock): decisions that depend on more than its status
        (counting approvals) take turns."""
        return session.get(Link, link_id, with_for_update=True, populate_existing=True)

    def take_lease(self, session: Session, link_id: int, until: datetime) -> bool:
        """Lease a link in ``Creating link`` that nobody holds yet; False if it is held."""
        result = session.execute(
            update(LINKS)
            .where(
                LINKS.c.id == link_id,
                LINKS.c.status == Status.CREATING_LINK.value,
                LINKS.c.lease_until.is_(None),
            )
            .values(lease_until=until)
        )
        return result.rowcount == 1

    def release_leases(self, session: Session, now: datetime) -> int:
        """End every lease on a link in ``Creating link`` now (their holder is gone);
        returns how many."""
        result = session.execute(
            update(LINKS)
            .where(LINKS.c.status == Status.CREATING_LINK.value, LINKS.c.lease_until > now)
            .values(lease_until=now)
        )
        return result.rowcount or 0

    def adopt(self, session: Session, workspace: Workspace) -> int:
        """Record ``workspace`` as the owner of every link that has none recorded (made
        before owners were, or from the command line without Slack); returns how many."""
        result = session.execute(
            update(LINKS)
            .where(LINKS.c.team_id.is_(None))
            .values(team_id=workspace.team_id, enterprise_id=workspace.enterprise_id)
        )
        return result.rowcount or 0

    def update_fields(self, session: Session, link_id: int, **changes: Any) -> None:
        """Change fields that are not the status (e.g. the card's ts once posted)."""
        session.execute(update(LINKS).where(LINKS.c.id == link_id).values(**changes))

    # A link's checkout links (link_intents) ---------------------------------------------

    def lock_reference(self, session: Session, reference: str) -> None:
        """Hold the lock of the order reference ``reference`` until ``session``'s transaction
        ends, so that checking it is free and using it are one step: a new request and a
        renewal wanting the same reference take turns, and the second sees the first's row
        (links and link_intents each keep their references unique, but neither sees the
        other's uncommitted ones). A PostgreSQL transaction-level advisory lock keyed on a
        hash of the reference (another reference sharing the hash only waits its turn); on
        SQLite nothing, as its write transactions take turns already. See
        docs/decisions/0028-one-order-reference-lock.md."""
        if not self.is_postgres:
            return
        digest = hashlib.blake2b(f"paylink reference {reference}".encode(), digest_size=8)
        key = int.from_bytes(digest.digest(), "big", signed=True)
        session.execute(_LOCK_REFERENCE, {"key": key})

    def reference_taken(self, session: Session, reference: str) -> bool:
        """True when a link or any of the links' checkout links has ``reference``."""
        if session.scalar(select(LinkIntent.id).where(LinkIntent.reference == reference)):
            return True
        return self.by_reference(session, reference) is not None

    def _renewal_uses(self, session: Session, reference: str) -> bool:
        """True when a renewal's checkout link has ``reference`` (a link's first has the
        link's own, which the unique index of links guards)."""
        return (
            session.scalar(
                select(LinkIntent.id)
                .join(Link, Link.id == LinkIntent.link_id)
                .where(LinkIntent.reference == reference, Link.reference != reference)
            )
            is not None
        )

    def reserve_renewal(self, session: Session, link: Link) -> str:
        """Reserve the order reference of ``link``'s next checkout link: ``<reference>-N``,
        N its number among the link's checkout links (2 for the first renewal), or the next
        one free of every link's and checkout link's reference (each checked holding its
        lock, which a new request takes too); clipped to 64 characters. Its row has no
        intent until XPay creates it (:meth:`record_intent`)."""
        count = session.scalar(select(func.count()).where(LinkIntent.link_id == link.id)) or 0
        number = max(count + 1, 2)
        while True:
            suffix = f"-{number}"
            reference = link.reference[: 64 - len(suffix)] + suffix
            self.lock_reference(session, reference)
            if not self.reference_taken(session, reference):
                break
            number += 1
        session.add(LinkIntent(link_id=link.id, reference=reference, created_at=utcnow()))
        session.flush()
        return reference

    def pending_intent(self, session: Session, link_id: int) -> LinkIntent | None:
        """The checkout link a renewal reserved and XPay has not created yet, if any."""
        return session.scalar(
            select(LinkIntent).where(LinkIntent.link_id == link_id, LinkIntent.intent_id.is_(None))
        )

    def record_intent(
        self,
        session: Session,
        link_id: int,
        reference: str,
        *,
        intent_id: str,
        checkout_url: str,
        created_at: datetime,
        expires_at: datetime,
    ) -> None:
        """Record the intent XPay created for ``reference``: fills the row a renewal
        reserved, or adds the link's first."""
        values = {
            "intent_id": intent_id,
            "checkout_url": checkout_url,
            "created_at": created_at,
            "expires_at": expires_at,
        }
        filled = session.execute(
            update(INTENTS)
            .where(
                INTENTS.c.link_id == link_id,
                INTENTS.c.reference == reference,
                INTENTS.c.intent_id.is_(None),
            )
            .values(**values)
        )
        if filled.rowcount != 1:
            session.execute(insert(INTENTS).values(link_id=link_id, reference=reference, **values))

    def update_intent(self, session: Session, intent_id: str, **changes: Any) -> None:
        """Change fields of the checkout link of ``intent_id``."""
        session.execute(update(INTENTS).where(INTENTS.c.intent_id == intent_id).values(**changes))

    def mark_intent_paid(self, session: Session, intent_id: str, now: datetime) -> bool:
        """Record a payment on ``intent_id``; False when one was recorded already."""
        result = session.execute(_MARK_PAID, {"b_intent": intent_id, "b_now": now})
        return result.rowcount == 1

    def by_checkout_reference(self, session: Session, reference: str) -> LinkIntent | None:
        """The checkout link with this order reference (a renewal's, or a link's first)."""
        return session.scalar(select(LinkIntent).where(LinkIntent.reference == reference))

    def intent(self, session: Session, intent_id: str) -> LinkIntent | None:
        """The checkout link of this XPay intent."""
        return session.scalar(select(LinkIntent).where(LinkIntent.intent_id == intent_id))

    def intent_paid(self, session: Session, intent_id: str) -> bool:
        """True when a payment on ``intent_id`` is recorded (or no link has that intent)."""
        found = self.intent(session, intent_id)
        return found is None or found.paid_at is not None

    def intents_of(self, session: Session, link_id: int) -> list[LinkIntent]:
        """The link's checkout links, oldest first (a reserved one included)."""
        return list(
            session.scalars(
                select(LinkIntent).where(LinkIntent.link_id == link_id).order_by(LinkIntent.id)
            )
        )

    def unpaid_intents(
        self, session: Session, link_ids: Sequence[int]
    ) -> list[tuple[int, str, datetime]]:
        """(link id, intent id, created at) of every created checkout link of these links
        with no payment recorded, oldest first."""
        rows = session.execute(
            select(LinkIntent.link_id, LinkIntent.intent_id, LinkIntent.created_at)
            .where(
                LinkIntent.link_id.in_(link_ids),
                LinkIntent.intent_id.is_not(None),
                LinkIntent.paid_at.is_(None),
            )
            .order_by(LinkIntent.id)
        )
        return [(link_id, intent_id, created) for link_id, intent_id, created in rows]

    def record_webhook(
        self, session: Session, *, dedupe_key: str, intent_id: str, status: str
    ) -> bool:
        """Remember a webhook; False when the same event was already recorded."""
        result = session.execute(
            self._record_webhook,
            {
                "dedupe_key": dedupe_key,
                "intent_id": intent_id,
                "status": status,
                "outcome": "received",
                "received_at": utcnow(),
            },
        )
        return result.first() is not None

    # Reads --------------------------------------------------------------------------

    def get(self, session: Session, link_id: int) -> Link | None:
        """The link with this id."""
        return session.get(Link, link_id)

    def version(self, link_id: int) -> int | None:
        """The link's version now (bumped by every status move), read on its own: a
        connection and one prepared statement, no session (checked after each card update)."""
        with self._reader.connect() as conn:
            return conn.scalar(_VERSION, {"id": link_id})

    def _by_view(self, session: Session, team_id: str | None, view_id: str | None) -> Link | None:
        if team_id is None or view_id is None:
            return None
        return session.scalar(select(Link).where(Link.team_id == team_id, Link.view_id == view_id))

    def approvers(self, session: Session, link_id: int) -> list[str]:
        """Who approved a link that needs two approvers, first approval first."""
        return list(
            session.scalars(
                select(LinkApproval.approver_id)
                .where(LinkApproval.link_id == link_id)
                .order_by(LinkApproval.at, LinkApproval.id)
            )
        )

    def similar(
        self,
        session: Session,
        request: CheckoutRequest,
        *,
        statuses: Sequence[Status],
        since: datetime,
        workspace: Workspace | None,
        view_id: str | None = None,
    ) -> Link | None:
        """The newest link of ``workspace`` in one of ``statuses``, created since ``since``,
        for the same sum as ``request`` and its customer's e-mail (in any case) or phone;
        None when ``workspace``'s modal ``view_id`` made one of them: that is the same
        submission, sent again."""
        customer = request.customer
        contact = []
        if customer.email:
            contact.append(func.lower(Link.customer_email) == customer.email.lower())
        if customer.phone:
            contact.append(Link.customer_phone.in_(sorted(phone_forms(customer.phone))))
        if not contact:
            return None
        team = workspace.team_id if workspace else None
        query = select(Link).where(
            Link.amount == request.amount,
            Link.currency == request.currency,
            Link.team_id.is_(None) if team is None else Link.team_id == team,
            Link.created_at >= since,
            Link.status.in_([s.value for s in statuses]),
            or_(*contact),
        )
        found = list(session.scalars(query.order_by(Link.created_at.desc(), Link.id.desc())))
        if view_id is not None and any(link.view_id == view_id for link in found):
            return None
        return found[0] if found else None

    def by_reference(self, session: Session, reference: str) -> Link | None:
        """The link with this order reference."""
        return session.scalar(select(Link).where(Link.reference == reference))

    def by_intents(self, session: Session, intent_ids: set[str]) -> dict[str, Link]:
        """The links these XPay payment intents belong to (any of a link's checkout links,
        the current one or an earlier one), by intent id."""
        rows = session.execute(
            select(LinkIntent.intent_id, Link)
            .join(Link, Link.id == LinkIntent.link_id)
            .where(LinkIntent.intent_id.in_(intent_ids))
        )
        return {intent_id: link for intent_id, link in rows}

    def expiring_for(
        self,
        session: Session,
        requester_id: str,
        until: datetime,
        limit: int = 20,
        *,
        workspace: Workspace | None = None,
    ) -> list[Link]:
        """A requester's unpaid links whose checkout link expires by ``until``, soonest
        first (only ``workspace``'s, when given)."""
        scope = of_workspace(workspace) if workspace is not None else true()
        return list(
            session.scalars(
                select(Link)
                .where(
                    scope,
                    Link.requester_id == requester_id,
                    Link.status.in_([s.value for s in EXPIRING]),
                    Link.expires_at.is_not(None),
                    Link.expires_at <= until,
                )
                .order_by(Link.expires_at)
                .limit(limit)
            )
        )

    def without_expiry(self, session: Session, limit: int) -> list[Link]:
        """Links awaiting payment whose checkout link has no expiry (made before expiry
        existed), claimed for this process."""
        query = (
            select(Link)
            .where(
                Link.status.in_([s.value for s in EXPIRING]),
                Link.intent_id.is_not(None),
                Link.expires_at.is_(None),
            )
            .order_by(Link.id)
            .limit(limit)
        )
        if self.is_postgres:
            query = query.with_for_update(skip_locked=True)
        return list(session.scalars(query))

    def awaiting_approval(
        self,
        session: Session,
        *,
        excluding: str | None = None,
        viewer: str | None = None,
        limit: int = 20,
        workspace: Workspace | None = None,
    ) -> tuple[list[Link], int]:
        """Requests waiting for a decision, oldest first (one page), and how many there are.

        ``excluding`` leaves out that requester's own requests (they cannot approve them);
        ``viewer`` leaves out those needing two approvers that the viewer asked for or has
        approved already (they wait for someone else); ``workspace`` keeps only that
        workspace's.
        """
        condition = Link.status == Status.AWAITING_APPROVAL.value
        if workspace is not None:
            condition = condition & of_workspace(workspace)
        if excluding is not None:
            condition = condition & (Link.requester_id != excluding)
        if viewer is not None:
            approved = select(LinkApproval.link_id).where(LinkApproval.approver_id == viewer)
            theirs = (Link.requester_id == viewer) | Link.id.in_(approved)
            condition = condition & ~((Link.approvals_needed == TWO) & theirs)
        page = list(session.scalars(select(Link).where(condition).order_by(Link.id).limit(limit)))
        total = session.scalar(select(func.count()).select_from(Link).where(condition)) or 0
        return page, int(total)

    def due(
        self,
        session: Session,
        status: Status | tuple[Status, ...],
        column: Any,
        now: datetime,
        limit: int,
    ) -> list[Link]:
        """Links in ``status`` whose ``column`` time has passed, claimed for this process."""
        statuses = (status,) if isinstance(status, Status) else status
        query = (
            select(Link)
            .where(
                Link.status.in_([s.value for s in statuses]),
                column.is_not(None),
                column <= now,
            )
            .order_by(column)
            .limit(limit)
        )
        if self.is_postgres:
            query = query.with_for_update(skip_locked=True)
        return list(session.scalars(query))
