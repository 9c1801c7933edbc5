"""Waiting for a condition instead of sleeping a fixed time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    *,
    interval: float = 0.02,
    message: str | Callable[[], str] = "",
) -> T:
    """Call ``predicate`` until it returns something truthy and return that; AssertionError
    (with ``message``, or the last value) when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"not within {timeout} s: {text or result!r}")
        time.sleep(interval)


def wait_for_pool(pool: ThreadPoolExecutor, timeout: float = 10.0) -> None:
    """Until every task submitted to ``pool`` so far has finished.

    Tasks start in the order they were submitted, so once one task of ours runs on each of
    the pool's threads at the same time, every earlier task has ended. (``_max_workers`` is
    the only way to learn the pool's size.)
    """
    threads = pool._max_workers
    barrier = threading.Barrier(threads + 1, timeout=timeout)
    for _ in range(threads):
        pool.submit(barrier.wait)
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        raise AssertionError(f"tasks still running in {pool} after {timeout} s") from None
