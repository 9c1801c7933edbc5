"""Delivers queued side effects (Slack posts and updates) with retries, at least once each.

Rows are written in the same transaction as the status change that caused them, so a crash
or a Slack outage delays a message but never loses it. Several processes may drain at once:
on PostgreSQL rows are claimed with ``FOR UPDATE SKIP LOCKED`` and a lease.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import bindparam, func, or_, select, update

from bot.db import utcnow
from bot.links.store import OUTBOX, LinkStore
from bot.links.tables import Link, OutboxMessage

log = logging.getLogger("bot.outbox")

CLAIM_LEASE = timedelta(seconds=60)
BASE_BACKOFF = 0.5  # then 1, 2, 4 … seconds: Slack's 5xx are usually over in a moment
MAX_BACKOFF = 300.0
# last_error of a row whose delivery was started but whose outcome was not recorded (yet).
ATTEMPTED = "delivery started, outcome not recorded"


class RetryLater(Exception):
    """Delivery should be tried again after ``delay`` seconds (e.g. Slack's Retry-After)."""

    def __init__(self, reason: str, delay: float | None = None):
        super().__init__(reason)
        self.delay = delay


# Rows claimed per drain. On SQLite the worker's transactions (the claim, a batch of
# payments) hold the write lock that `serve`'s webhooks and clicks wait for: batches of 20
# rather than 50 cut webhook p99 at 1131/s beside the worker from 61-100 to 20-22 ms, for
# 6-10% more of the worker's CPU per payment. PostgreSQL has no such lock, and there the
# smaller batch only cost CPU (10% more, no change in webhook latency).
BATCH = 50
SQLITE_BATCH = 20

Claimed = tuple[OutboxMessage, Link]

# deliver(message, link) performs the side effect; raise RetryLater (or anything) to retry.
Deliver = Callable[[OutboxMessage, Link], None]
# deliver_together(messages) performs several rows' effects at once (all or none).
DeliverTogether = Callable[[list[OutboxMessage]], object]


class OutboxDrainer:
    """Claims due outbox rows and hands them to ``deliver``; a thread wakes on each commit."""

    def __init__(
        self,
        store: LinkStore,
        deliver: Deliver,
        *,
        together: dict[str, DeliverTogether] | None = None,
        poll_interval: float = 2.0,
        workers: int = 4,
    ):
        self.store = store
        self.batch = BATCH if store.is_postgres else SQLITE_BATCH
        self.deliver = deliver
        # Kinds whose due rows are handed over in one call (database work: one transaction
        # for the lot instead of one each); should that call fail, each row goes on its own.
        self.together = together or {}
        self.poll_interval = poll_interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="outbox")
        self._lock = threading.Lock()
        self._soonest_retry = float("inf")
        store.on_commit(self._wake.set)

    def start(self) -> None:
        """Run the drain loop in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for due rows now (rows committed by another process)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the loop and wait for the current delivery to finish."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.drain_once()
            except Exception:
                log.exception("outbox drain failed")
                worked = 0
            if not worked:
                # Sleep until woken by a commit, a retry of ours falls due, or the poll.
                with self._lock:
                    soonest, self._soonest_retry = self._soonest_retry, float("inf")
                wait = min(self.poll_interval, max(0.01, soonest - time.monotonic()))
                self._wake.wait(wait)
                self._wake.clear()

    def _claim(self, limit: int) -> list[Claimed]:
        """Claim up to ``limit`` due rows with their links, oldest first, in one transaction.

        The claim also marks each row as attempted: from here on a crash or a lost answer
        leaves an outcome the next attempt must check rather than repeat. The returned
        messages keep the ``last_error`` they had before (None: a first attempt).
        """
        now = utcnow()
        with self.store.transaction() as s:
            query = (
                select(OutboxMessage)
                .where(
                    OutboxMessage.delivered_at.is_(None),
                    OutboxMessage.next_attempt_at <= now,
                    or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
                )
                # next_attempt_at first: the pending index gives that order, so a backlog of
                # thousands is not sorted for every claim (ids break ties: a link's card
                # before its replies).
                .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                .limit(limit)
            )
            if self.store.is_postgres:
                query = query.with_for_update(skip_locked=True)
            messages = list(s.scalars(query))
            if not messages:
                return []
            s.execute(
                update(OUTBOX)
                .where(OutboxMessage.id.in_([m.id for m in messages]))
                .values(
                    claimed_until=now + CLAIM_LEASE,
                    last_error=func.coalesce(OutboxMessage.last_error, ATTEMPTED),
                )
            )
            links = {
                link.id: link
                for link in s.scalars(
                    select(Link).where(Link.id.in_({m.link_id for m in messages}))
                )
            }
            s.expunge_all()
        return [(m, links[m.link_id]) for m in messages if m.link_id in links]

    def drain_once(self, limit: int | None = None) -> int:
        """Deliver what is due now, up to ``limit`` rows (by default :data:`BATCH`, on SQLite
        :data:`SQLITE_BATCH`); returns how many rows were handled.

        First the rows of each kind delivered together, then the rest grouped by link: one
        link's messages go out in order, different links' in parallel (Slack's latency, not
        our CPU, is what a serial drainer waits on). The rows delivered are then marked in
        one transaction. (The batches are not run beside the Slack deliveries: on SQLite
        that held the write lock against `serve`, webhooks at 400/s: p99 60 ms → 1.5 s.)
        """
        claimed = self._claim(limit or self.batch)
        delivered: list[OutboxMessage] = []
        for kind, deliver in self.together.items():
            rows = [row for row in claimed if row[0].kind == kind]
            if rows:
                delivered += self._deliver_together(deliver, rows)
        rest = [row for row in claimed if row[0].kind not in self.together]
        batches = [_coalesce_cards(group) for group in _by_link(rest)]
        if len(batches) == 1:
            done = [self._deliver_batch(batches[0])]
        else:
            done = list(self._pool.map(self._deliver_batch, batches))
        delivered += [message for batch in done for message in batch]
        if delivered:
            self._mark_delivered(delivered)
        return len(claimed)

    def _deliver_together(
        self, deliver: DeliverTogether, rows: list[Claimed]
    ) -> list[OutboxMessage]:
        messages = [message for message, _link in rows]
        try:
            deliver(messages)
        except Exception:
            log.exception("outbox batch failed; delivering its rows one by one")
            return self._deliver_batch(rows)
        return messages

    def _deliver_batch(self, batch: list[Claimed]) -> list[OutboxMessage]:
        """One link's messages, in order; returns those delivered."""
        return [message for message, link in batch if self._deliver_one(message, link)]

    def _deliver_one(self, message: OutboxMessage, link: Link) -> bool:
        try:
            self.deliver(message, link)
        except Exception as exc:  # every failure is retried; nothing is dropped
            delay = exc.delay if isinstance(exc, RetryLater) and exc.delay else None
            backoff = delay or min(MAX_BACKOFF, BASE_BACKOFF * 2.0 ** min(message.attempts, 10))
            backoff *= 1 if delay else random.uniform(0.8, 1.2)
            log.warning(
                "outbox delivery failed, retrying in %.1fs: %s",
                backoff,
                type(exc).__name__ if not isinstance(exc, RetryLater) else exc,
                extra={"link_id": message.link_id, "kind": message.kind},
            )
            with self.store.transaction() as s:
                s.execute(
                    update(OUTBOX)
                    .where(OutboxMessage.id == message.id)
                    .values(
                        attempts=OutboxMessage.attempts + 1,
                        next_attempt_at=utcnow() + timedelta(seconds=backoff),
                        claimed_until=None,
                        last_error=str(exc)[:500],
                    )
                )
            # Noted after the row is written, with a margin, so that waking then finds it due.
            with self._lock:
                self._soonest_retry = min(self._soonest_retry, time.monotonic() + backoff + 0.05)
            return False
        log.info(
            "outbox delivered after %d attempt(s)",
            message.attempts + 1,
            extra={"link_id": message.link_id, "kind": message.kind, "ref": link.reference},
        )
        return True

    def _mark_delivered(self, messages: list[OutboxMessage]) -> None:
        """Mark the batch delivered in one transaction: its rows by primary key, and for
        each card the older card rows of its link (a card job renders the link's latest
        state, so those are covered too), by the link's index. (One statement with every
        row's condition OR-ed made SQLite scan the whole backlog, every batch, while
        holding the write lock.)"""
        now = utcnow()
        with self.store.transaction() as s:
            s.execute(
                update(OUTBOX)
                .where(OutboxMessage.id.in_([m.id for m in messages]))
                .values(
                    delivered_at=func.coalesce(OutboxMessage.delivered_at, now),
                    attempts=OutboxMessage.attempts + 1,
                    claimed_until=None,
                )
            )
            cards = [
                {"b_link": m.link_id, "b_id": m.id, "b_now": now}
                for m in messages
                if m.kind == "card"
            ]
            if cards:
                s.execute(_COVER_OLDER_CARDS, cards)


# Older undelivered card rows of a link, covered by the card delivered after them.
_COVER_OLDER_CARDS = (
    update(OUTBOX)
    .where(
        OutboxMessage.link_id == bindparam("b_link"),
        OutboxMessage.kind == "card",
        OutboxMessage.id < bindparam("b_id"),
        OutboxMessage.delivered_at.is_(None),
    )
    .values(
        delivered_at=bindparam("b_now"),
        attempts=OutboxMessage.attempts + 1,
        claimed_until=None,
    )
)


def _by_link(rows: list[Claimed]) -> list[list[Claimed]]:
    groups: dict[int, list[Claimed]] = {}
    for row in rows:
        groups.setdefault(row[0].link_id, []).append(row)
    return list(groups.values())


def _coalesce_cards(group: list[Claimed]) -> list[Claimed]:
    """One card delivery per link and batch: it renders the latest state, so the newest card
    row is delivered where the first stood (a first post still precedes thread replies)."""
    cards = [row for row in group if row[0].kind == "card"]
    out: list[Claimed] = []
    for row in group:
        if row[0].kind != "card":
            out.append(row)
        elif row is cards[0]:
            out.append(cards[-1])
    return out
