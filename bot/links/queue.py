"""The job queue: work written in the transaction that caused it, claimed when due, marked
done, or put back with a delay; see docs/decisions/0001-job-queue-in-the-database.md.

Several processes may take jobs at once: on PostgreSQL they are claimed with
``FOR UPDATE SKIP LOCKED`` and a lease, on SQLite the write lock serialises the claims.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, exists, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.db import utcnow
from bot.links.kinds import JobKind
from bot.links.store import LinkStore, of_workspace
from bot.links.tables import Job, Link
from bot.links.workspaces import Workspace

JOBS = Job.__table__
CLAIM_LEASE = timedelta(seconds=60)
# last_error of a job that was started but whose outcome was not recorded (yet).
ATTEMPTED = "started, outcome not recorded"
# Kinds that are work for the bot itself rather than Slack messages: queued for links
# without a card too.
OWN_WORK = frozenset(
    {JobKind.CREATE, JobKind.PAYMENT, JobKind.DECISION, JobKind.CONFIRM, JobKind.EXPIRE}
)
# Work that keeps a link's record true whatever happens in Slack: still done for a workspace
# that uninstalled Paylink (a payment made there still marks its link Paid).
RECORD_KEEPING = frozenset({JobKind.CREATE, JobKind.PAYMENT, JobKind.CONFIRM, JobKind.EXPIRE})

_INSERT = insert(JOBS)
# Older cards of a link not yet done, covered by the card done after them.
_COVER_OLDER_CARDS = (
    update(JOBS)
    .where(
        Job.link_id == bindparam("b_link"),
        Job.kind == JobKind.CARD.value,
        Job.id < bindparam("b_id"),
        Job.done_at.is_(None),
    )
    .values(done_at=bindparam("b_now"), attempts=Job.attempts + 1, claimed_until=None)
)

# A job of no link (the daily digest) is claimed with None for its link.
Claimed = tuple[Job, Link | None]


# A timer put back (restarted or re-armed): as if queued anew, claimed by nobody.
_AS_QUEUED = {"done_at": None, "claimed_until": None, "attempts": 0, "last_error": None}


class JobQueue:
    """The jobs table of ``store``'s database."""

    def __init__(self, store: LinkStore):
        self.store = store
        # A keyed job queued again (two replicas' timers, a status entered twice) is
        # skipped by the unique key, without failing the transaction that queues it.
        insert_or_skip = pg_insert if store.is_postgres else sqlite_insert
        self._insert_keyed = (
            insert_or_skip(JOBS)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(JOBS.c.id)
        )

    def enqueue(
        self,
        session: Session,
        link: Link | None,
        kind: JobKind,
        *,
        payload: dict[str, Any] | None = None,
        dedupe_key: str | None = None,
        due: datetime | None = None,
    ) -> bool:
        """Queue a job in the caller's transaction: a Slack message (links without a card
        skip these), work for the bot itself (:data:`OWN_WORK`), or with ``link`` None a job
        of no link (the digest). ``due`` makes it a timer: it runs no earlier than then
        (claimed with a lease like any job, so restarts and replicas neither skip nor double
        it). ``dedupe_key`` makes it at most once: True when queued, False when a job with
        that key exists already (or the link has no card for a Slack message)."""
        kind = JobKind(kind)
        if link is not None and link.channel_id is None and kind not in OWN_WORK:
            return False
        row = {
            "link_id": link.id if link is not None else None,
            "kind": kind.value,
            "payload": payload or {},
            "dedupe_key": dedupe_key,
            "next_attempt_at": due or utcnow(),
        }
        if dedupe_key is None:
            session.execute(_INSERT, row)
        elif session.execute(self._insert_keyed, row).first() is None:
            return False
        self.store.mark_queued(session)
        return True

    def restart_timer(self, session: Session, key: str, due: datetime, *, unless: str) -> bool:
        """In the caller's transaction, make the timer ``key`` due at ``due``, whether it is
        waiting or done already, unless the job ``unless`` (the timer's effect) was queued,
        or a runner holds the timer now (it decides, with what it finds). True when
        restarted."""
        now = utcnow()
        effect = JOBS.alias("effect")
        restarted = session.execute(
            update(JOBS)
            .where(
                Job.dedupe_key == key,
                or_(Job.claimed_until.is_(None), Job.claimed_until < now),
                ~exists().where(effect.c.dedupe_key == unless),
            )
            # As if queued now: a timer not due yet is no backlog (see backlog()).
            .values(next_attempt_at=due, **_AS_QUEUED)
        )
        return bool(restarted.rowcount)

    def rearm(self, session: Session, job: Job, due: datetime, *, unless: str) -> bool:
        """In the caller's transaction, put the claimed timer ``job`` back, due at ``due`` and
        no longer claimed, as if queued now (:meth:`restart_timer`'s reset), unless the job
        ``unless`` (the timer's effect) was queued. True when re-armed; the handler then
        raises :class:`~bot.links.runner.Rearmed` so that the runner leaves it so."""
        effect = JOBS.alias("effect")
        rearmed = session.execute(
            update(JOBS)
            .where(Job.id == job.id, ~exists().where(effect.c.dedupe_key == unless))
            .values(next_attempt_at=due, **_AS_QUEUED)
        )
        return bool(rearmed.rowcount)

    def attempted_before(self, job: Job) -> bool:
        """True when ``job`` was attempted before this claim, or, for a card, any other card
        job of its link (the newest card job runs for the older ones): the effect may have
        happened even though no answer said so. Older card jobs claimed with it (their claim
        marks them, but nothing was tried) count through the runner, which hands ``job``
        their ``last_error``."""
        if job.last_error is not None or job.kind != JobKind.CARD:
            return job.last_error is not None
        with self.store.reading() as s:
            return bool(
                s.scalar(
                    select(Job.id)
                    .where(
                        Job.link_id == job.link_id,
                        Job.kind == job.kind,
                        Job.id != job.id,
                        Job.last_error.is_not(None),
                        or_(Job.claimed_until.is_(None), Job.claimed_until < utcnow()),
                    )
                    .limit(1)
                )
            )

    def claim(self, limit: int) -> list[Claimed]:
        """Claim up to ``limit`` due jobs with their links, in one transaction, in the order
        they fell due (ids break ties: a link's card before its replies).

        The claim also marks each job as attempted: from here on a crash or a lost answer
        leaves an outcome the next attempt must check rather than repeat. The jobs returned
        keep the ``last_error`` they had before (None: a first attempt).
        """
        now = utcnow()
        with self.store.transaction() as s:
            query = (
                select(Job)
                .where(
                    Job.done_at.is_(None),
                    Job.next_attempt_at <= now,
                    or_(Job.claimed_until.is_(None), Job.claimed_until < now),
                )
                # next_attempt_at first: the index of jobs not done gives that order, so a
                # backlog is not sorted for every claim.
                .order_by(Job.next_attempt_at, Job.id)
                .limit(limit)
            )
            if self.store.is_postgres:
                query = query.with_for_update(skip_locked=True)
            jobs = list(s.scalars(query))
            if not jobs:
                return []
            s.execute(
                update(JOBS)
                .where(Job.id.in_([job.id for job in jobs]))
                .values(
                    claimed_until=now + CLAIM_LEASE,
                    last_error=func.coalesce(Job.last_error, ATTEMPTED),
                )
            )
            ids = {j.link_id for j in jobs if j.link_id is not None}
            links = {link.id: link for link in s.scalars(select(Link).where(Link.id.in_(ids)))}
            s.expunge_all()
        return [
            (job, links.get(job.link_id))
            for job in jobs
            if job.link_id is None or job.link_id in links
        ]

    def retry(self, job: Job, delay: float, error: str) -> None:
        """Give a claimed job back, due again in ``delay`` seconds."""
        with self.store.transaction() as s:
            s.execute(
                update(JOBS)
                .where(Job.id == job.id)
                .values(
                    attempts=Job.attempts + 1,
                    next_attempt_at=utcnow() + timedelta(seconds=delay),
                    claimed_until=None,
                    last_error=error[:500],
                )
            )

    def finish(self, jobs: Sequence[Job]) -> None:
        """Mark ``jobs`` done in one transaction: the jobs by primary key, and for each card
        the older cards of its link not done yet (a card renders the link's latest state,
        so it covers them), by the link's index. One statement with every job's condition
        OR-ed would make SQLite scan the whole backlog while holding the write lock."""
        now = utcnow()
        with self.store.transaction() as s:
            s.execute(
                update(JOBS)
                .where(Job.id.in_([job.id for job in jobs]))
                .values(
                    done_at=func.coalesce(Job.done_at, now),
                    attempts=Job.attempts + 1,
                    claimed_until=None,
                )
            )
            cards = [
                {"b_link": job.link_id, "b_id": job.id, "b_now": now}
                for job in jobs
                if job.kind == JobKind.CARD
            ]
            if cards:
                s.execute(_COVER_OLDER_CARDS, cards)

    def stop(self, job: Job, reason: str) -> None:
        """Mark a claimed job done without its effect, saying why (it can never have one)."""
        with self.store.transaction() as s:
            s.execute(
                update(JOBS)
                .where(Job.id == job.id)
                .values(
                    done_at=utcnow(),
                    attempts=Job.attempts + 1,
                    claimed_until=None,
                    last_error=reason[:500],
                )
            )

    def stop_workspace(self, session: Session, workspace: Workspace, reason: str) -> int:
        """Mark done, with ``reason``, the jobs not done of ``workspace``'s links that would
        act in Slack there (all but :data:`RECORD_KEEPING`); returns how many."""
        links = select(Link.id).where(of_workspace(workspace))
        result = session.execute(
            update(JOBS)
            .where(
                Job.done_at.is_(None),
                Job.kind.not_in([kind.value for kind in RECORD_KEEPING]),
                Job.link_id.in_(links),
            )
            .values(done_at=utcnow(), claimed_until=None, last_error=reason[:500])
        )
        return result.rowcount or 0

    def release_claims(self, session: Session, now: datetime) -> int:
        """End every claim on a job not done (their holder is gone); returns how many."""
        result = session.execute(
            update(JOBS)
            .where(Job.done_at.is_(None), Job.claimed_until > now)
            .values(claimed_until=None)
        )
        return result.rowcount or 0

    def backlog(self, session: Session) -> tuple[int, float]:
        """(jobs not done, age in seconds of the oldest). A timer (a job queued with
        ``due``) counts once it is due, aged from then: a link's expiry a week ahead is not
        work waiting. A job retried later counts from its creation."""
        now = utcnow()
        since = case((Job.attempts == 0, Job.next_attempt_at), else_=Job.created_at)
        count, oldest = session.execute(
            select(func.count(Job.id), func.min(since)).where(
                Job.done_at.is_(None), or_(Job.attempts > 0, Job.next_attempt_at <= now)
            )
        ).one()
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=now.tzinfo)
        age = (now - oldest).total_seconds() if oldest else 0.0
        return int(count), max(age, 0.0)
