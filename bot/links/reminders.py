"""Reminders: one thread reply per link when a request has waited too long for approval, or
a link for payment. Each is a timer, a job due at the end of the wait (see
docs/decisions/0021-timers-as-stored-due-jobs.md).

The service queues the timer when the link enters the status; when it falls due, the handler
here looks whether the link still waits there, and if so queues the reply (delivered like
every reply, posted once) and records the reminder in the link's history, in one
transaction. Both the timer and the reply have unique keys, so a link is reminded at most
once per status, across restarts and replicas. A link entering the status again (a renewed
link awaits payment again) before its reminder was sent restarts the timer: the rep's
reminder is about the current checkout link, once that has waited the whole time. A runner
may hold the timer while a renewal is under way (restart_timer leaves a held timer alone):
the handler then sends nothing and re-arms the timer itself, due once the new checkout link
has waited the whole time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.db import utcnow
from bot.links.kinds import JobKind, ThreadKind
from bot.links.policy import TWO
from bot.links.queue import JobQueue
from bot.links.runner import Handler, Rearmed
from bot.links.states import Status
from bot.links.tables import Job, Link

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reminder:
    """Who is reminded of a link waiting in a status, and how that is keyed and recorded."""

    key: str  # the timer's dedupe key, before ":<link id>"
    reply: ThreadKind
    history: str  # the reason of the history row


REMINDERS: dict[Status, Reminder] = {
    Status.AWAITING_APPROVAL: Reminder(
        "remind-approvers", ThreadKind.REMIND_APPROVERS, "reminder sent to approvers"
    ),
    Status.AWAITING_PAYMENT: Reminder(
        "remind-rep", ThreadKind.REMIND_REP, "reminder sent to the rep"
    ),
}


def start_timer(
    queue: JobQueue, session: Session, link: Link, after: Mapping[Status, timedelta]
) -> None:
    """In the transaction that moved ``link`` into its status: queue the reminder due when
    it has waited ``after[status]`` there (nothing for a status without one). Queued before
    (the link is there again, renewed), the timer waits from now once more, unless its
    reminder was sent: a link is reminded once."""
    status = Status(link.status)
    reminder, wait = REMINDERS.get(status), after.get(status)
    if reminder is None or wait is None:
        return
    key, due = f"{reminder.key}:{link.id}", utcnow() + wait
    payload = {"status": status.value}
    if not queue.enqueue(session, link, JobKind.REMIND, payload=payload, dedupe_key=key, due=due):
        queue.restart_timer(session, key, due, unless=_reply_key(link.id, reminder))


def _reply_key(link_id: int, reminder: Reminder) -> str:
    """The reminder reply's dedupe key: queued once per link."""
    return f"thread:{link_id}:{reminder.reply.value}"


class Reminders:
    """The job runner's handler for due reminders; ``approvers_for(team_id)`` are that
    workspace's approvers (user and user-group IDs): those who can still decide are
    mentioned in the approvers' reminder. ``remind_after_for(team_id)``: that workspace's
    waits, as the service starts the timers with. ``allow_self_approval``: as the service's
    (PAYLINK_ALLOW_SELF_APPROVAL), whether a requester who is an approver may decide a
    request that needs one approval, and so is mentioned in its reminder."""

    def __init__(
        self,
        queue: JobQueue,
        approvers_for: Callable[[str | None], Sequence[str]],
        *,
        allow_self_approval: bool = False,
        remind_after_for: Callable[[str | None], Mapping[Status, timedelta]] = lambda _t: {},
    ):
        self.queue = queue
        self.store = queue.store
        self.approvers_for = approvers_for
        self.allow_self_approval = allow_self_approval
        # How long a link of that workspace waits in a status before its reminder (what
        # start_timer was given): a rep's timer held during a renewal waits that long again.
        self.remind_after_for = remind_after_for

    def handlers(self) -> dict[JobKind, Handler]:
        """The reminder's handler, for the job runner."""
        return {JobKind.REMIND: self.remind}

    def remind(self, job: Job, link: Link) -> None:
        """A reminder fell due: remind whoever the link waits for, if it still waits in the
        status that started the timer; otherwise nothing. The rep's timer held while the link
        is renewed, or run before the renewed link has waited the whole time, is re-armed
        instead (raises :class:`Rearmed`): neither lost nor early."""
        status = Status(job.payload["status"])
        reminder = REMINDERS[status]
        approvers = list(self.approvers_for(link.team_id))
        if status is Status.AWAITING_APPROVAL and not approvers:
            return  # nobody to remind: the card already says nobody can approve
        rearmed: datetime | None = None
        queued = False
        with self.store.transaction() as s:
            current = self._locked(s, link.id)
            if current is not None and status is Status.AWAITING_PAYMENT:
                rearmed = self._rearm_if_early(s, job, current, reminder)
            # Otherwise moved on meanwhile, or too early (re-armed): nothing to remind of now.
            if current is not None and rearmed is None and current.status == status.value:
                queued = self._queue_reply(s, job, current, status, reminder, approvers)
        if rearmed is not None:  # after the commit: the runner leaves the timer as re-armed
            raise Rearmed(f"the rep's reminder is due again at {rearmed:%Y-%m-%d %H:%M:%S} UTC")
        if queued:
            log.info(reminder.history, extra={"ref": link.reference})

    def _queue_reply(
        self,
        s: Session,
        job: Job,
        current: Link,
        status: Status,
        reminder: Reminder,
        approvers: Sequence[str],
    ) -> bool:
        """Queue the reminder's reply and record it, for a link still in ``status``; False
        when there is none (nobody left to decide, or another runner's attempt at this timer
        queued it first)."""
        payload: dict[str, object] = {
            "kind": reminder.reply.value,
            "waited": max(0, int((utcnow() - job.created_at).total_seconds())),
        }
        if status is Status.AWAITING_APPROVAL:
            deciders = self._deciders(s, current, approvers)
            if deciders is None:
                return False  # everyone who could decide has: as with no approvers
            payload.update(deciders)
        else:
            payload.update(self._checkout_link(s, current))
        queued = self.queue.enqueue(
            s, current, JobKind.THREAD, payload=payload, dedupe_key=_reply_key(current.id, reminder)
        )
        if queued:
            self.store.record_event(s, current.id, status, actor="paylink", reason=reminder.history)
        return queued

    def _rearm_if_early(
        self, session: Session, job: Job, link: Link, reminder: Reminder
    ) -> datetime | None:
        """For the rep's timer: when the link is being renewed (Creating link) or its current
        checkout link has not waited the workspace's wait yet (a runner held the timer while
        the renewal committed, so it was not restarted), re-arm the timer, due once that
        link has waited the whole time; returns when (None: not early, nothing done). A
        renewal's wait starts when its checkout link was reserved, as the reminder's age
        does."""
        wait = self.remind_after_for(link.team_id).get(Status.AWAITING_PAYMENT)
        if wait is None:
            return None
        if link.status == Status.CREATING_LINK.value:  # a renewal under way
            pending = self.store.pending_intent(session, link.id)
            since = pending.created_at if pending is not None else utcnow()
        elif link.status == Status.AWAITING_PAYMENT.value and link.intent_id:
            intent = self.store.intent(session, link.intent_id)
            if intent is None:
                return None
            since = intent.created_at
        else:
            return None
        due = since + wait
        if due <= utcnow():
            return None
        # Not when the reminder was sent already (once per link): the timer is then done.
        rearmed = self.queue.rearm(session, job, due, unless=_reply_key(link.id, reminder))
        return due if rearmed else None

    def _deciders(
        self, session: Session, link: Link, approvers: Sequence[str]
    ) -> dict[str, list[str]] | None:
        """Who the approvers' reminder mentions: the approvers who can still decide, that is
        not whoever gave a first approval, nor the requester unless self-approval is
        allowed and the request needs one approval (user groups are mentioned as groups);
        and, after a first approval, who gave it (``approved_by``). None when nobody is left
        to mention."""
        approved = self.store.approvers(session, link.id)
        requester_decides = self.allow_self_approval and link.approvals_needed != TWO
        left = [
            a
            for a in approvers
            if (requester_decides or a != link.requester_id) and a not in approved
        ]
        if not left:
            return None
        return {"approvers": left, "approved_by": approved} if approved else {"approvers": left}

    def _checkout_link(self, session: Session, link: Link) -> dict[str, object]:
        """What the rep's reminder shows: the current checkout link (a renewal's, after a
        renewal), with its reference and how long it has waited since it was created."""
        intent = self.store.intent(session, link.intent_id) if link.intent_id else None
        if intent is None:  # only a link that never had one: the reply shows what it has
            return {}
        return {
            "waited": max(0, int((utcnow() - intent.created_at).total_seconds())),
            "reference": intent.reference,
            "url": intent.checkout_url,
        }

    def _locked(self, session: Session, link_id: int) -> Link | None:
        """The link, its row locked on PostgreSQL until the transaction ends: a decision
        committing meanwhile waits, so the reminder is never queued for a status the link
        has just left."""
        query = select(Link).where(Link.id == link_id)
        if self.store.is_postgres:
            query = query.with_for_update()
        return session.scalar(query)
