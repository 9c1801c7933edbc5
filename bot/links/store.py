"""Persistence for links: transactions, compare-and-set status moves, history, outbox rows."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Insert,
    Select,
    Table,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from bot.checkout import CheckoutRequest
from bot.db import make_sessionmaker, reader, server_hung_up
from bot.links.batching import GroupCommit
from bot.links.states import Status, can_move
from bot.links.tables import History, Link, OutboxMessage, WebhookEvent, utcnow
from bot.sqlite import BUSY_TIMEOUT

LINKS = Link.__table__
OUTBOX = OutboxMessage.__table__
_INSERT_OUTBOX = insert(OUTBOX)
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


def _present(column: Column[Any]) -> Select[Any]:
    """Which of the values given as ``values`` ``column`` holds. Built once: a select built
    per batch cost more than running it (group commit, 3 lookups: 640-920 → 350-390 µs)."""
    return select(column).where(column.in_(bindparam("values", expanding=True)))


_KNOWN_INTENTS = _present(LINKS.c.intent_id)
_KNOWN_IDS = _present(LINKS.c.id)
_QUEUED_KEYS = _present(OUTBOX.c.dedupe_key)
_ROWCOUNT = {"preserve_rowcount": True}
# Outbox kinds a worker handles itself (PAYLINK_WORKER=separate), beside Slack's:
CREATE = "create"  # call XPay for this link
PAYMENT = "payment"  # apply this verified payment webhook to the link
DECISION = "decision"  # carry out this button click (approve, retry, cancel)
WORKER_KINDS = frozenset({CREATE, PAYMENT, DECISION})


# How long the group commit keeps its connection between two batches. Busy, each batch
# skips a pool checkout (on PostgreSQL a ping, a round trip: a batch of one took 1.90 →
# 1.43-1.56 ms, see README); idle, the next batch takes a pinged connection again. A kept
# connection the server has hung up on meanwhile is not used (see ``server_hung_up``).
WRITER_KEEP_SECONDS = 5.0

# What queueing a row for the worker did (a payment event's key may be queued already).
Queued = Literal["queued", "duplicate", "unknown_intent"]


class DuplicateReference(Exception):
    """The order reference is already used by another link."""


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
        # sleeps of up to 100 ms: queueing our own threads on a lock first hands the file
        # over as soon as it is free (p99 of webhooks at 200/s: 342 → see README).
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None
        insert_or_skip = pg_insert if self.is_postgres else sqlite_insert
        self._queue_for_intent = _queue_statement(insert_or_skip, LINKS.c.intent_id, "intent")
        self._queue_for_id = _queue_statement(insert_or_skip, LINKS.c.id, "id")
        self._record_webhook = (
            insert_or_skip(WebhookEvent.__table__)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(WebhookEvent.__table__.c.id)
        )
        self._queued = GroupCommit(self._queue_batch, name="queue", timeout=2 * BUSY_TIMEOUT)
        self._writer: Connection | None = None  # the group commit's, between batches
        self._writer_used = 0.0

    @property
    def is_postgres(self) -> bool:
        """True on PostgreSQL, where jobs are claimed with FOR UPDATE SKIP LOCKED."""
        return self.engine.dialect.name == "postgresql"

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each commit that queued outbox rows (wakes the drainer)."""
        with self._lock:
            self._after_commit.append(callback)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold this process's SQLite write lock (no-op elsewhere) for one transaction."""
        lock = self._write_lock
        if lock is not None and not lock.acquire(timeout=BUSY_TIMEOUT):
            raise TimeoutError("the database stayed busy")
        try:
            yield
        finally:
            if lock is not None:
                lock.release()

    def _committed(self, queued: bool) -> None:
        # Only commits that queued outbox work wake the drainer (its own writes must not, or
        # it would wake itself forever).
        if queued:
            for callback in list(self._after_commit):
                callback()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self._writing(), self.sessions() as session, session.begin():
            yield session
            queued = session.info.get("outbox_queued", False)
        self._committed(queued)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads only (never waits for writers)."""
        with self._read_sessions() as session:
            yield session

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
    ) -> Link:
        """Insert a new link with its first history row; DuplicateReference if taken."""
        now = utcnow()
        link = Link.from_request(
            request,
            requester_id=requester_id,
            origin_channel_id=origin_channel_id,
            channel_id=channel_id,
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

    def update_fields(self, session: Session, link_id: int, **changes: Any) -> None:
        """Change fields that are not the status (e.g. the card's ts once posted)."""
        session.execute(update(LINKS).where(LINKS.c.id == link_id).values(**changes))

    def enqueue(
        self,
        session: Session,
        link: Link,
        kind: str,
        *,
        payload: dict[str, Any] | None = None,
        dedupe_key: str | None = None,
    ) -> None:
        """Queue a side effect in the caller's transaction: a Slack message (links without a
        card skip these) or, with kind CREATE, the gateway call for a worker."""
        if link.channel_id is None and kind not in WORKER_KINDS:
            return
        session.info["outbox_queued"] = True
        session.execute(
            _INSERT_OUTBOX,
            {
                "link_id": link.id,
                "kind": kind,
                "payload": payload or {},
                "dedupe_key": dedupe_key,
                "next_attempt_at": utcnow(),
            },
        )

    def queue_payment(self, intent_id: str, payload: dict[str, Any], dedupe_key: str) -> Queued:
        """Queue a verified payment event for the worker: one row for the link of
        ``intent_id`` unless the same event is already queued, committed before this returns
        (with whatever else is being queued meanwhile: see :mod:`bot.links.batching`)."""
        params = {"intent": intent_id, "kind": PAYMENT, "payload": payload, "key": dedupe_key}
        return self._queued.submit((self._queue_for_intent, params))

    def queue_for_link(self, link_id: int, kind: str, payload: dict[str, Any]) -> bool:
        """Queue work of ``kind`` on a link for the worker, committed before this returns;
        False when there is no such link."""
        params = {"id": link_id, "kind": kind, "payload": payload, "key": None}
        return self._queued.submit((self._queue_for_id, params)) != "unknown_intent"

    @contextmanager
    def _writer_connection(self) -> Iterator[Connection]:
        """The group commit's connection (it writes one batch at a time): the one kept from
        the batch before unless that was over WRITER_KEEP_SECONDS ago or the server has
        hung up on it since (a restart), else one from the pool. A batch that fails gives
        its connection back to the pool, which drops it if it is broken."""
        conn, self._writer = self._writer, None
        if conn is not None and (
            time.monotonic() - self._writer_used > WRITER_KEEP_SECONDS or server_hung_up(conn)
        ):
            conn.close()
            conn = None
        if conn is None:
            conn = self.engine.connect()
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        self._writer, self._writer_used = conn, time.monotonic()

    def _queue_batch(self, items: Sequence[tuple[Insert, dict[str, Any]]]) -> list[Queued]:
        """Insert the rows of several queue_* calls in one transaction (a Core connection,
        not a Session: this is a webhook's or click's critical path).

        Each INSERT … SELECT skips a row whose link does not exist or whose event is queued
        already. When every row went in, the usual case, that is each item's outcome; when
        some did not, the transaction is rolled back and :meth:`_queue_checked` tells them
        apart (two reads in the same transaction beforehand cost a batch of one as much as
        the insert and the commit together)."""
        now = utcnow()
        with self._writer_connection() as conn:
            with self._writing(), conn.begin() as transaction:
                all_in = _insert(conn, items, now) == len(items)
                if not all_in:
                    transaction.rollback()
            if not all_in:
                return self._queue_checked(conn, items, now)
        self._committed(True)
        return ["queued"] * len(items)

    def _queue_checked(
        self, conn: Connection, items: Sequence[tuple[Insert, dict[str, Any]]], now: datetime
    ) -> list[Queued]:
        """:meth:`_queue_batch` for a batch where some row would be skipped: two reads tell
        which links exist and which events are queued already, then the rest is inserted.

        On PostgreSQL another replica may queue the same event between the read and the
        insert: the insert then skips it (ON CONFLICT), and both answer "queued"."""
        intents = {p["intent"] for _, p in items if "intent" in p}
        ids = {p["id"] for _, p in items if "id" in p}
        keys = {p["key"] for _, p in items if p["key"]}
        outcomes: list[Queued] = []
        rows: list[tuple[Insert, dict[str, Any]]] = []
        with self._writing(), conn.begin():
            known = _values(conn, _KNOWN_INTENTS, intents) | _values(conn, _KNOWN_IDS, ids)
            queued = _values(conn, _QUEUED_KEYS, keys)
            for statement, params in items:
                key = params["key"]
                if params.get("intent", params.get("id")) not in known:
                    outcomes.append("unknown_intent")
                elif key in queued:
                    outcomes.append("duplicate")
                else:
                    outcomes.append("queued")
                    if key:  # the same event twice in one batch: the second is a duplicate
                        queued.add(key)
                    rows.append((statement, params))
            _insert(conn, rows, now)
        self._committed(bool(rows))
        return outcomes

    def close(self) -> None:
        """Finish queued writes and release the database connections."""
        self._queued.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.engine.dispose()

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

    def by_reference(self, session: Session, reference: str) -> Link | None:
        """The link with this order reference."""
        return session.scalar(select(Link).where(Link.reference == reference))

    def by_intents(self, session: Session, intent_ids: set[str]) -> dict[str, Link]:
        """The links created as these XPay payment intents, by intent id."""
        links = session.scalars(select(Link).where(Link.intent_id.in_(intent_ids)))
        return {link.intent_id: link for link in links if link.intent_id}

    def recent_for(self, session: Session, requester_id: str, limit: int = 20) -> list[Link]:
        """A requester's most recent links, newest first."""
        return list(
            session.scalars(
                select(Link)
                .where(Link.requester_id == requester_id)
                .order_by(Link.created_at.desc(), Link.id.desc())
                .limit(limit)
            )
        )

    def awaiting_approval(
        self, session: Session, *, excluding: str | None = None, limit: int = 20
    ) -> tuple[list[Link], int]:
        """Requests waiting for a decision, oldest first (one page), and how many there are.

        ``excluding`` leaves out that requester's own requests (they cannot approve them).
        """
        condition = Link.status == Status.AWAITING_APPROVAL.value
        if excluding is not None:
            condition = condition & (Link.requester_id != excluding)
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

    def outbox_backlog(self, session: Session) -> tuple[int, float]:
        """(pending messages, age in seconds of the oldest)."""
        count, oldest = session.execute(
            select(func.count(OutboxMessage.id), func.min(OutboxMessage.created_at)).where(
                OutboxMessage.delivered_at.is_(None)
            )
        ).one()
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=utcnow().tzinfo)
        age = (utcnow() - oldest).total_seconds() if oldest else 0.0
        return int(count), max(age, 0.0)


def _queue_statement(insert: Callable[[Table], Any], column: Column[Any], name: str) -> Insert:
    """INSERT an outbox row (:kind, :payload, :key, :now) for the link whose ``column``
    equals :``name``, unless one with the same :key exists (built once: building it costs as
    much as running it)."""
    row = select(
        LINKS.c.id,
        bindparam("kind", type_=OUTBOX.c.kind.type),
        bindparam("payload", type_=OUTBOX.c.payload.type),
        bindparam("key", type_=OUTBOX.c.dedupe_key.type),
        bindparam("now", type_=OUTBOX.c.next_attempt_at.type),
    ).where(column == bindparam(name))
    columns = ("link_id", "kind", "payload", "dedupe_key", "next_attempt_at")
    return (
        insert(OUTBOX)
        .from_select(columns, row)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )


def _insert(conn: Connection, items: Sequence[tuple[Insert, dict[str, Any]]], now: datetime) -> int:
    """Run queue_* inserts, one executemany per statement; how many rows went in."""
    rows: dict[Insert, list[dict[str, Any]]] = {}
    for statement, params in items:
        rows.setdefault(statement, []).append(params | {"now": now})
    # Without preserve_rowcount psycopg's INSERT counts come back as -1.
    return sum(
        conn.execute(statement, batch, execution_options=_ROWCOUNT).rowcount
        for statement, batch in rows.items()
    )


def _values(conn: Connection, present: Select[Any], candidates: set[Any]) -> set[Any]:
    """Those of ``candidates`` that the column of ``present`` (see :func:`_present`) holds."""
    if not candidates:
        return set()
    return set(conn.scalars(present, {"values": list(candidates)}))
