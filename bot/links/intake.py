"""The web process's way into the job queue: payment webhooks and clicks, each stored as a
job before it is answered, many callers' jobs to a commit (see :mod:`bot.links.batching`
and docs/decisions/0002-group-commit.md), on a connection kept between batches (see
docs/decisions/0007-kept-writer-connection.md)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, Insert, Select, Table, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bot.db import server_hung_up, utcnow
from bot.links.batching import GroupCommit
from bot.links.kinds import JobKind, WebhookOutcome
from bot.links.queue import JOBS
from bot.links.store import INTENTS, LINKS, LinkStore
from bot.sqlite import BUSY_TIMEOUT

# How long the group commit keeps its connection between two batches: busy, each batch
# skips a pool checkout (on PostgreSQL a ping, a round trip); idle, the next batch takes a
# pinged connection again. A kept connection the server has hung up on meanwhile is not
# used (see ``server_hung_up``).
WRITER_KEEP_SECONDS = 5.0

_ROWCOUNT = {"preserve_rowcount": True}
Item = tuple[Insert, dict[str, Any]]  # a prepared INSERT … SELECT and its parameters


def _present(column: Column[Any]) -> Select[Any]:
    """Which of the values given as ``values`` ``column`` holds (built once: a select built
    per batch costs more than running it)."""
    return select(column).where(column.in_(bindparam("values", expanding=True)))


_KNOWN_INTENTS = _present(INTENTS.c.intent_id)  # any of a link's checkout links
_KNOWN_IDS = _present(LINKS.c.id)
_QUEUED_KEYS = _present(JOBS.c.dedupe_key)


class JobIntake:
    """Queues jobs from outside any transaction, each committed before its call returns."""

    def __init__(self, store: LinkStore):
        self.store = store
        insert_or_skip = pg_insert if store.is_postgres else sqlite_insert
        self._for_intent = _job_statement(
            insert_or_skip, INTENTS.c.link_id, INTENTS.c.intent_id, "intent"
        )
        self._for_id = _job_statement(insert_or_skip, LINKS.c.id, LINKS.c.id, "id")
        self._batches = GroupCommit(self._write, name="intake", timeout=2 * BUSY_TIMEOUT)
        self._writer: Connection | None = None  # kept between batches
        self._writer_used = 0.0

    def payment(self, intent_id: str, payload: dict[str, Any], dedupe_key: str) -> WebhookOutcome:
        """Queue a verified payment event: one job for the link of ``intent_id`` unless the
        same event is queued already (``duplicate``) or no link has it (``unknown_intent``)."""
        params = {"intent": intent_id, "kind": JobKind.PAYMENT.value, "payload": payload}
        return self._batches.submit((self._for_intent, params | {"key": dedupe_key}))

    def for_link(self, link_id: int, kind: JobKind, payload: dict[str, Any]) -> bool:
        """Queue a job of ``kind`` on a link; False when there is no such link."""
        params = {"id": link_id, "kind": kind.value, "payload": payload, "key": None}
        return self._batches.submit((self._for_id, params)) != WebhookOutcome.UNKNOWN_INTENT

    def close(self) -> None:
        """Finish the batch being written and give the kept connection back."""
        self._batches.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """The connection kept from the batch before unless that was over
        WRITER_KEEP_SECONDS ago or the server has hung up on it since (a restart), else one
        from the pool. A batch that fails gives its connection back to the pool, which
        drops it if it is broken."""
        conn, self._writer = self._writer, None
        if conn is not None and (
            time.monotonic() - self._writer_used > WRITER_KEEP_SECONDS or server_hung_up(conn)
        ):
            conn.close()
            conn = None
        if conn is None:
            conn = self.store.engine.connect()
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        self._writer, self._writer_used = conn, time.monotonic()

    def _write(self, items: Sequence[Item]) -> list[WebhookOutcome]:
        """Insert the jobs of several callers in one transaction (a Core connection, not a
        Session: this is a webhook's or click's critical path).

        Each INSERT … SELECT skips a job whose link does not exist or whose event is queued
        already. When every job went in, the usual case, that is each item's outcome; when
        some did not, the transaction is rolled back and :meth:`_write_checked` tells them
        apart (reading first would cost every batch as much as the insert and the commit)."""
        now = utcnow()
        with self._connection() as conn:
            with self.store.writing(), conn.begin() as transaction:
                all_in = _insert(conn, items, now) == len(items)
                if not all_in:
                    transaction.rollback()
            if not all_in:
                return self._write_checked(conn, items, now)
        self.store.jobs_committed()
        return [WebhookOutcome.QUEUED] * len(items)

    def _write_checked(
        self, conn: Connection, items: Sequence[Item], now: datetime
    ) -> list[WebhookOutcome]:
        """:meth:`_write` for a batch where some job would be skipped: two reads tell which
        links exist and which events are queued already, then the rest is inserted.

        On PostgreSQL another replica may queue the same event between the read and the
        insert: the insert then skips it (ON CONFLICT), and both answer ``queued``."""
        intents = {p["intent"] for _, p in items if "intent" in p}
        ids = {p["id"] for _, p in items if "id" in p}
        keys = {p["key"] for _, p in items if p["key"]}
        outcomes: list[WebhookOutcome] = []
        rows: list[Item] = []
        with self.store.writing(), conn.begin():
            known = _values(conn, _KNOWN_INTENTS, intents) | _values(conn, _KNOWN_IDS, ids)
            queued = _values(conn, _QUEUED_KEYS, keys)
            for statement, params in items:
                key = params["key"]
                if params.get("intent", params.get("id")) not in known:
                    outcomes.append(WebhookOutcome.UNKNOWN_INTENT)
                elif key in queued:
                    outcomes.append(WebhookOutcome.DUPLICATE)
                else:
                    outcomes.append(WebhookOutcome.QUEUED)
                    if key:  # the same event twice in one batch: the second is a duplicate
                        queued.add(key)
                    rows.append((statement, params))
            _insert(conn, rows, now)
        if rows:
            self.store.jobs_committed()
        return outcomes


def _job_statement(
    dialect_insert: Callable[[Table], Any], link_id: Column[Any], column: Column[Any], name: str
) -> Insert:
    """INSERT a job (:kind, :payload, :key, :now) for the link ``link_id`` of the row whose
    ``column`` equals :``name``, unless one with the same :key exists (built once: building
    it costs as much as running it)."""
    row = select(
        link_id,
        bindparam("kind", type_=JOBS.c.kind.type),
        bindparam("payload", type_=JOBS.c.payload.type),
        bindparam("key", type_=JOBS.c.dedupe_key.type),
        bindparam("now", type_=JOBS.c.next_attempt_at.type),
    ).where(column == bindparam(name))
    columns = ("link_id", "kind", "payload", "dedupe_key", "next_attempt_at")
    return (
        dialect_insert(JOBS)
        .from_select(columns, row)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )


def _insert(conn: Connection, items: Sequence[Item], now: datetime) -> int:
    """Run the items' inserts, one executemany per statement; how many rows went in."""
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
