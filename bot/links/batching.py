"""Group commit: many threads' small writes, one transaction for all that arrived together.

A payment webhook (or a click) beside a worker is stored as one job before it is answered.
Written one transaction each, a burst would spend most of its time taking the write lock
and committing; here whatever is pending goes in one transaction while the callers wait, so
the busier it gets the more each commit carries.

The writing is done by a caller, not by a thread of its own: the first to find nobody
writing writes (its own item and all that are pending), then hands the next batch to the
first caller that arrived meanwhile. A caller alone writes at once, with no thread to wake
and none to wake it. See docs/decisions/0002-group-commit.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class _Waiter(Generic[T, R]):
    """One caller's item, its outcome, and the lock it sleeps on until then."""

    __slots__ = ("item", "result", "error", "leads", "_ready")

    def __init__(self, item: T):
        self.item = item
        self.result: R | None = None
        self.error: BaseException | None = None
        self.leads = False  # set instead of an outcome: write the next batch
        self._ready = threading.Lock()
        self._ready.acquire()

    def wake(self) -> None:
        self._ready.release()

    def sleep(self, timeout: float) -> bool:
        return self._ready.acquire(timeout=timeout)

    def outcome(self) -> R:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit(Generic[T, R]):
    """Calls ``write(items)`` for the items submitted meanwhile, one batch at a time;
    ``write`` returns one result per item, in order. Should a batch fail, its items are
    written one at a time, so that one bad item fails only its own caller."""

    def __init__(self, write: Callable[[Sequence[T]], list[R]], *, name: str, timeout: float):
        self._write = write
        self._name = name
        self._timeout = timeout
        self._pending: list[_Waiter[T, R]] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._writing = False
        self._closed = False

    def submit(self, item: T) -> R:
        """Write ``item`` with the next batch and return its result once committed (or raise
        what writing it raised). ``TimeoutError`` if it was still waiting for its batch after
        ``timeout`` seconds (it is then not written)."""
        waiter: _Waiter[T, R] = _Waiter(item)
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            leads = not self._writing
            if leads:
                self._writing = True
            else:
                self._pending.append(waiter)
        if not leads:
            self._wait(waiter)
            if not waiter.leads:
                return waiter.outcome()
        self._lead(waiter)
        return waiter.outcome()

    def close(self) -> None:
        """Refuse new items and wait for what is pending to be written."""
        with self._lock:
            self._closed = True
            self._idle.wait_for(lambda: not self._writing, timeout=self._timeout)

    def _wait(self, waiter: _Waiter[T, R]) -> None:
        if waiter.sleep(self._timeout):
            return
        with self._lock:
            if waiter in self._pending:  # nobody took it: give up on it
                self._pending.remove(waiter)
                raise TimeoutError(f"{self._name}: not written within {self._timeout:.0f} s")
        waiter.sleep(-1)  # in a batch being written, or about to lead one: that ends soon

    def _lead(self, first: _Waiter[T, R]) -> None:
        """Write ``first`` and what is pending, then hand over to the next caller waiting."""
        with self._lock:
            batch, self._pending = [first, *self._pending], []
        try:
            self._settle(batch)
        finally:
            with self._lock:
                if self._pending:
                    successor = self._pending.pop(0)
                    successor.leads = True
                    successor.wake()
                else:
                    self._writing = False
                    self._idle.notify_all()
        for waiter in batch[1:]:
            waiter.wake()

    def _settle(self, batch: Sequence[_Waiter[T, R]]) -> None:
        """Set every waiter's outcome (nobody is woken here)."""
        try:
            results = self._write([waiter.item for waiter in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            log.warning("%s: a batch of %d failed; writing them one by one", self._name, len(batch))
            for one in batch:
                self._settle([one])
            return
        for waiter, result in zip(batch, results, strict=True):
            waiter.result = result
