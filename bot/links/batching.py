"""Group commit: many threads' small writes, one transaction for all that arrived together.

A payment webhook (or a click) beside a worker is stored as one outbox row before it is
answered. Written one transaction each, a burst spent most of its time taking the write lock
and committing, and on SQLite 16 threads queued for the one write lock: `serve` alone
answered 400 webhooks/s at 1.4 ms of CPU each and collapsed at 800/s. Here one thread writes
whatever is pending in one transaction while the callers wait, so the busier it gets the more
each commit carries.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

log = logging.getLogger("bot.links")

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Calls ``write(items)`` from one thread for the items submitted meanwhile; ``write``
    returns one result per item, in order. Should a batch fail, its items are written one
    at a time, so that one bad item fails only its own caller."""

    def __init__(self, write: Callable[[Sequence[T]], list[R]], *, name: str, timeout: float):
        self._write = write
        self._name = name
        self._timeout = timeout
        self._pending: list[tuple[T, Future[R]]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, item: T) -> R:
        """Write ``item`` with the next batch and return its result once committed (or raise
        what writing it raised)."""
        future: Future[R] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._pending.append((item, future))
            self._cond.notify()
        return future.result(timeout=self._timeout)

    def close(self) -> None:
        """Write what is pending, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=self._timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                batch, self._pending = self._pending, []
                if not batch:
                    return
            self._settle(batch)

    def _settle(self, batch: list[tuple[T, Future[R]]]) -> None:
        try:
            results = self._write([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            log.warning("%s: a batch of %d failed; writing them one by one", self._name, len(batch))
            for one in batch:
                self._settle([one])
            return
        for (_item, future), result in zip(batch, results, strict=True):
            future.set_result(result)
