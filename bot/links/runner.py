"""Runs queued jobs: claims those that are due and calls the handler registered for each
job's kind, retrying with backoff until it succeeds (at least once each)."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from bot.links.kinds import JobKind
from bot.links.queue import Claimed, JobQueue
from bot.links.tables import Job, Link

log = logging.getLogger(__name__)

BASE_BACKOFF = 0.5  # then 1, 2, 4 … seconds: Slack's 5xx are usually over in a moment
MAX_BACKOFF = 300.0
# Jobs claimed per pass. On SQLite the runner's transactions hold the write lock a web
# process's webhooks and clicks wait for, so there it takes fewer (see
# docs/decisions/0010-batch-sizes.md).
BATCH = 50
SQLITE_BATCH = 20

# handler(job, link) does the job; raise RetryLater (or anything) to have it retried, or
# Rearmed once it has put the job back due later itself. The link is None only for the one
# kind queued for no link (the digest).
Handler = Callable[[Job, Link], None]
# together(jobs) does several jobs of one kind at once (all or none).
BatchHandler = Callable[[list[Job]], object]


class RetryLater(Exception):
    """The job should be tried again after ``delay`` seconds (e.g. Slack's Retry-After)."""

    def __init__(self, reason: str, delay: float | None = None):
        super().__init__(reason)
        self.delay = delay


class Rearmed(Exception):
    """The handler put its job back itself, due again later, in the transaction that found
    it too early (a timer whose moment moved, see :meth:`JobQueue.rearm`): the job is
    neither done nor retried, and the runner writes nothing more to it."""


class Stop(Exception):
    """The job can never have its effect (e.g. the link's workspace uninstalled Paylink):
    it is marked done, not retried, with this reason."""


class JobRunner:
    """Claims due jobs and hands each to the handler of its kind; a thread of its own wakes
    on each commit that queued jobs (and on :meth:`wake`)."""

    def __init__(
        self,
        queue: JobQueue,
        handlers: Mapping[JobKind, Handler],
        *,
        together: Mapping[JobKind, BatchHandler] | None = None,
        poll_interval: float = 2.0,
        workers: int = 4,
    ):
        self.queue = queue
        self.batch = BATCH if queue.store.is_postgres else SQLITE_BATCH
        self.handlers = handlers
        # Kinds whose due jobs are handed over in one call (database work: one transaction
        # for the lot instead of one each); should that call fail, each goes on its own.
        self.together = together or {}
        self.poll_interval = poll_interval
        self.base_backoff = BASE_BACKOFF  # seconds before a failed job's first retry
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._lock = threading.Lock()
        self._soonest_retry = float("inf")
        queue.store.on_commit(self._wake.set)

    def start(self) -> None:
        """Run the loop in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="jobs", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for due jobs now (jobs committed by another process)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the loop and wait for the jobs under way to finish."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.run_once()
            except Exception:
                log.exception("job runner pass failed")
                worked = 0
            if not worked:
                # Sleep until woken by a commit, a retry of ours falls due, or the poll.
                with self._lock:
                    soonest, self._soonest_retry = self._soonest_retry, float("inf")
                wait = min(self.poll_interval, max(0.01, soonest - time.monotonic()))
                self._wake.wait(wait)
                self._wake.clear()

    def run_once(self, limit: int | None = None) -> int:
        """Do what is due now, up to ``limit`` jobs (by default :data:`BATCH`, on SQLite
        :data:`SQLITE_BATCH`); returns how many jobs were claimed.

        First the jobs of each kind done together, then the rest grouped by link: one link's
        jobs run in order, different links' in parallel (Slack's latency, not our CPU, is
        what a serial runner would wait on). The batches do not run beside the others: on
        SQLite they would hold the write lock the web process waits for. The jobs done are
        then marked in one transaction.
        """
        claimed = self.queue.claim(limit or self.batch)
        done: list[Job] = []
        for kind, together in self.together.items():
            rows = [row for row in claimed if row[0].kind == kind]
            if rows:
                done += self._run_together(together, rows)
        rest = [row for row in claimed if row[0].kind not in self.together]
        batches = [_coalesce_cards(group) for group in _by_link(rest)]
        if len(batches) == 1:
            finished = [self._run_in_order(batches[0])]
        else:
            finished = list(self._pool.map(self._run_in_order, batches))
        done += [job for batch in finished for job in batch]
        if done:
            self.queue.finish(done)
        return len(claimed)

    def _run_together(self, together: BatchHandler, rows: list[Claimed]) -> list[Job]:
        jobs = [job for job, _link in rows]
        try:
            together(jobs)
        except Exception:
            log.exception("a batch of jobs failed; running them one by one")
            return self._run_in_order(rows)
        return jobs

    def _run_in_order(self, batch: list[Claimed]) -> list[Job]:
        """One link's jobs, in order; returns those done."""
        return [job for job, link in batch if self._run_one(job, link)]

    def _run_one(self, job: Job, link: Link | None) -> bool:
        handler = self.handlers.get(job.kind)
        if handler is None:  # written by another version of the bot: nothing here can do it
            log.error("no handler for job kind %s", job.kind, extra={"link_id": job.link_id})
            return True
        try:
            handler(job, link)
        except Rearmed as exc:
            log.info(
                "job due again later: %s",
                exc,
                extra={"link_id": job.link_id, "kind": job.kind}
                | ({"ref": link.reference} if link else {}),
            )
            return False
        except Stop as exc:
            log.warning(
                "job stopped: %s",
                exc,
                extra={"link_id": job.link_id, "kind": job.kind}
                | ({"ref": link.reference} if link else {}),  # a digest's job has no link
            )
            self.queue.stop(job, f"stopped: {exc}")
            return False
        except Exception as exc:  # every other failure is retried; nothing is dropped
            delay = exc.delay if isinstance(exc, RetryLater) and exc.delay else None
            backoff = delay or min(MAX_BACKOFF, self.base_backoff * 2.0 ** min(job.attempts, 10))
            backoff *= 1 if delay else random.uniform(0.8, 1.2)
            log.warning(
                "job failed, retrying in %.1fs: %s",
                backoff,
                type(exc).__name__ if not isinstance(exc, RetryLater) else exc,
                extra={"link_id": job.link_id, "kind": job.kind},
            )
            self.queue.retry(job, backoff, str(exc))
            # Noted after the job is written, with a margin, so that waking then finds it due.
            with self._lock:
                self._soonest_retry = min(self._soonest_retry, time.monotonic() + backoff + 0.05)
            return False
        log.info(
            "job done after %d attempt(s)",
            job.attempts + 1,
            extra={"link_id": job.link_id, "kind": job.kind}
            | ({"ref": link.reference} if link else {}),
        )
        return True


def _by_link(rows: list[Claimed]) -> list[list[Claimed]]:
    groups: dict[int | None, list[Claimed]] = {}
    for row in rows:
        groups.setdefault(row[0].link_id, []).append(row)
    return list(groups.values())


def _coalesce_cards(group: list[Claimed]) -> list[Claimed]:
    """One card job per link and pass: it renders the latest state, so the newest card job
    runs where the first stood (a first post still precedes thread replies)."""
    cards = [row for row in group if row[0].kind == JobKind.CARD]
    if len(cards) > 1:
        # The newest runs for the older ones, so it was tried before if any of them was.
        newest = cards[-1][0]
        newest.last_error = next((job.last_error for job, _ in cards if job.last_error), None)
    out: list[Claimed] = []
    for row in group:
        if row[0].kind != JobKind.CARD:
            out.append(row)
        elif row is cards[0]:
            out.append(cards[-1])
    return out
