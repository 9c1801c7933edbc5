"""Periodic timers: resume links stuck in ``Creating link``, reconcile unpaid links with
XPay, take the daily digest, schedule the expiry of links older than expiry; and, at
start-up, release what a process that died held."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from bot.db import utcnow
from bot.links.digest import Digests
from bot.links.kinds import WebhookOutcome
from bot.links.queue import JobQueue
from bot.links.service import LinkService
from bot.links.states import Status
from bot.links.store import LEASE, LinkStore
from bot.links.tables import Link

log = logging.getLogger(__name__)

RECONCILE_BACKOFF = timedelta(minutes=10)
RECONCILE_FOR = timedelta(days=7)
# The statuses whose links may be paid on one of their checkout links without us hearing.
RECONCILED = (
    Status.AWAITING_PAYMENT,
    Status.PAYMENT_FAILED,
    Status.CANCELLED,
    Status.EXPIRED,
    Status.LINK_FAILED,
    Status.LINK_UNKNOWN,
)


def release_after_restart(store: LinkStore) -> int:
    """Release leases and job claims left by a process that died (SIGKILL, power loss).

    Call only when this process is certainly the database's only user (SQLite, whose file
    lock it holds): they then belong to a dead process, and waiting for them to expire
    would only delay the card and the link. Returns how many were released.
    """
    now = utcnow()
    with store.transaction() as s:
        leases = store.release_leases(s, now)
        claims = JobQueue(store).release_claims(s, now)
    if leases or claims:
        log.info(
            "released %s lease(s) and %s job claim(s) left by a stopped process", leases, claims
        )
    return leases + claims


class Periodic:
    """A daemon thread that runs :meth:`run_once` every ``interval`` seconds."""

    def __init__(
        self, service: LinkService, *, interval: float = 30.0, digests: Digests | None = None
    ):
        self.service = service
        self.interval = interval
        self.digests = digests  # the daily digest, taken once its time has passed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the periodic thread."""
        self._thread = threading.Thread(target=self._run, name="periodic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the periodic thread."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        # A first pass at start-up: a link a crash left in "Creating link" resumes now.
        while True:
            try:
                self.run_once()
            except Exception:
                log.exception("periodic timers failed")
            if self._stop.wait(self.interval):
                return

    def run_once(self) -> dict[str, int]:
        """Resume expired leases, reconcile due links, take the day's digest when due and
        give links from before expiry existed their expiry; returns counts for logs and
        tests."""
        return {
            "resumed": self.resume_stuck(),
            "reconciled": self.reconcile(),
            "digests": int(self.digests.take_daily()) if self.digests else 0,
            "expiries": self.service.schedule_missing_expiries(),
        }

    def resume_stuck(self, limit: int = 20) -> int:
        """Links left in ``Creating link`` by a crash: take a new lease and call XPay again."""
        store = self.service.store
        now = utcnow()
        with store.transaction() as s:
            links = store.due(s, Status.CREATING_LINK, Link.lease_until, now, limit)
            claimed = [link.id for link in links]
            for link_id in claimed:
                store.update_fields(s, link_id, lease_until=now + LEASE)
        for link_id in claimed:
            log.info("resuming link creation after an expired lease", extra={"link_id": link_id})
            try:
                self.service.create_at_gateway(link_id)
            except Exception:  # one bad link must not hold up the rest of the batch
                log.exception("resuming link creation failed", extra={"link_id": link_id})
        return len(claimed)

    def reconcile(self, limit: int = 50) -> int:
        """Ask XPay about unpaid links, so a lost webhook is not a lost payment: awaiting
        payment; failed, as the customer may try again; cancelled and expired, as XPay's
        page still takes payments; and a renewal's that failed, for the earlier link. Each
        of the link's checkout links not paid is asked about, an earlier one too. Checks
        thin out as the newest checkout link ages and stop after RECONCILE_FOR."""
        store = self.service.store
        now = utcnow()
        with store.transaction() as s:
            links = store.due(s, RECONCILED, Link.reconcile_after, now, limit)
            due = store.unpaid_intents(s, [link.id for link in links])
            newest = {link_id: created for link_id, _intent, created in due}
            store_of = {link.id: link.store_id for link in links}
            for link in links:
                age = now - newest.get(link.id, link.created_at)
                following = None if age > RECONCILE_FOR else now + max(RECONCILE_BACKOFF, age / 4)
                store.update_fields(s, link.id, reconcile_after=following)
        applied = 0
        for link_id, intent_id, _created in due:
            result = self.service.ask_xpay(link_id, intent_id, store_of.get(link_id))
            if result is not None and result.outcome == WebhookOutcome.APPLIED:
                applied += 1
        return applied
