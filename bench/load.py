"""Load generation: closed loop at a fixed concurrency, open loop at a fixed rate.

Threads with one ``requests.Session`` each; every loop is bounded in count and in time.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

Send = Callable[[requests.Session, int], requests.Response]


def pct(values: list[float], q: float) -> float | None:
    """The q-th percentile (nearest rank) of ``values``, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def summary(latencies_s: list[float], errors: int = 0) -> dict[str, Any]:
    ms = [x * 1000 for x in latencies_s]
    return {
        "n": len(ms),
        "errors": errors,
        "p50_ms": _r(pct(ms, 50)),
        "p95_ms": _r(pct(ms, 95)),
        "p99_ms": _r(pct(ms, 99)),
        "max_ms": _r(max(ms) if ms else None),
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    sent_at: dict[int, float] = field(default_factory=dict)  # index -> wall clock at send
    elapsed: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, i: int, wall: float, latency: float | None) -> None:
        with self.lock:
            self.sent_at[i] = wall
            if latency is None:
                self.errors += 1
            else:
                self.latencies.append(latency)


def closed_loop(send: Send, n: int, concurrency: int, *, time_limit: float = 120.0) -> Outcome:
    """``n`` requests by ``concurrency`` workers back to back; stops at ``time_limit``."""
    out = Outcome()
    counter = iter(range(n))
    take = threading.Lock()
    deadline = time.monotonic() + time_limit

    def worker() -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                with take:
                    i = next(counter, None)
                if i is None:
                    return
                wall, start = time.time(), time.perf_counter()
                try:
                    ok = send(session, i).status_code < 300
                except requests.RequestException:
                    ok = False
                out.add(i, wall, time.perf_counter() - start if ok else None)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(time_limit + 15)
    out.elapsed = time.perf_counter() - started
    return out


def open_loop(
    send: Send, rate: float, duration: float, *, workers: int = 64, grace: float = 10.0
) -> Outcome:
    """``rate * duration`` requests scheduled at even intervals (open loop).

    Latency is measured from the scheduled send time, so a server (or client) that falls
    behind shows it in the figures instead of silently slowing the schedule down. Requests
    not sent by ``duration + grace`` count as errors.
    """
    out = Outcome()
    n = int(rate * duration)
    counter = iter(range(n))
    take = threading.Lock()
    t0 = time.perf_counter() + 0.05
    deadline = t0 + duration + grace

    def worker() -> None:
        with requests.Session() as session:
            while True:
                with take:
                    i = next(counter, None)
                if i is None:
                    return
                due = t0 + i / rate
                now = time.perf_counter()
                if now >= deadline:
                    out.add(i, time.time(), None)
                    continue
                if due > now:
                    time.sleep(due - now)
                wall = time.time()
                try:
                    ok = send(session, i).status_code < 300
                except requests.RequestException:
                    ok = False
                out.add(i, wall, time.perf_counter() - due if ok else None)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + grace + 15)
    out.elapsed = time.perf_counter() - t0
    return out
