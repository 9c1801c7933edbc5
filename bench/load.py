"""Load generation from one thread: keep-alive HTTP/1.1 connections driven by a selector.

The generator shares the two cores with the servers it measures, so it must cost little:
per request `requests` spent about 850 µs of CPU here, `http.client` 150 µs, this loop about
40 µs. Requests are built (bodies, signatures) before a run, so the timed loop only writes
bytes and reads answers, and one thread means no client threads queueing for a GIL inside
the figures. The servers measured (waitress) answer with a Content-Length; an answer without
one counts as an error.
"""

from __future__ import annotations

import gc
import math
import selectors
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

TIMEOUT = 10.0  # an answer slower than this is an error


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

    def merge(self, other: Outcome) -> None:
        """Pool another run's samples into this one (rounds of one measurement)."""
        self.latencies += other.latencies
        self.errors += other.errors
        self.elapsed += other.elapsed


def http_request(base_url: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The bytes of one keep-alive POST."""
    host = urlsplit(base_url).netloc
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Conn:
    """One connection and the request in flight on it."""

    def __init__(self, address: tuple[str, int]):
        self.sock = socket.create_connection(address, timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.index = -1  # request in flight, -1 when idle
        self.t0 = 0.0  # what its latency is measured from

    def send(self, index: int, data: bytes, t0: float) -> None:
        self.index, self.t0 = index, t0
        self.sock.sendall(data)

    def read(self) -> tuple[int | None, bool]:
        """Read what arrived: (status, keep) once the answer is complete, else (None, True).
        ``keep`` False: the connection is finished (closed by the server, or unusable)."""
        chunk = self.sock.recv(65536)
        if not chunk:
            return 0, False
        self.buf += chunk
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return None, True
        head = self.buf[:head_end].decode("latin-1").lower()
        length, close = None, False
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name == "content-length":
                length = int(value)
            elif name == "connection" and "close" in value:
                close = True
        if length is None:
            return 0, False
        end = head_end + 4 + length
        if len(self.buf) < end:
            return None, True
        status = int(head[9:12])
        self.buf = self.buf[end:]
        return status, not close

    def close(self) -> None:
        self.sock.close()


class _Loop:
    """The bookkeeping both loops share: connections, the selector and the outcome."""

    def __init__(self, base_url: str, requests: list[bytes]):
        parts = urlsplit(base_url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.requests = requests
        self.out = Outcome()
        self.selector = selectors.DefaultSelector()
        self.idle: list[_Conn] = []
        self.busy: set[_Conn] = set()

    def open(self) -> _Conn:
        conn = _Conn(self.address)
        self.selector.register(conn.sock, selectors.EVENT_READ, conn)
        return conn

    def drop(self, conn: _Conn) -> None:
        self.busy.discard(conn)
        self.selector.unregister(conn.sock)
        conn.close()

    def send(self, conn: _Conn, index: int, t0: float) -> None:
        self.out.sent_at[index] = time.time()
        try:
            conn.send(index, self.requests[index], t0)
        except OSError:
            self.out.errors += 1
            self.drop(conn)
            return
        self.busy.add(conn)

    def wait(self, timeout: float) -> list[_Conn]:
        """Connections whose answer completed (now idle again); failures are counted."""
        done = []
        for key, _ in self.selector.select(max(0.0, timeout)):
            conn: _Conn = key.data
            try:
                status, keep = conn.read()
            except (OSError, ValueError):
                status, keep = 0, False
            if status is None:
                continue
            if conn.index >= 0:
                if status and status < 300:
                    self.out.latencies.append(time.perf_counter() - conn.t0)
                else:
                    self.out.errors += 1
            conn.index = -1
            if keep:
                self.busy.discard(conn)
                done.append(conn)
            else:
                self.drop(conn)
        now = time.perf_counter()
        for conn in [c for c in self.busy if now - c.t0 > TIMEOUT]:
            self.out.errors += 1
            self.drop(conn)
        return done

    def finish(self, started: float) -> Outcome:
        self.out.errors += len(self.busy)
        for conn in [*self.busy, *self.idle]:
            self.selector.unregister(conn.sock)
            conn.close()
        self.selector.close()
        self.out.elapsed = time.perf_counter() - started
        return self.out


@contextmanager
def _no_gc() -> Iterator[None]:
    """No cyclic garbage collection while a run is timed (as ``timeit`` does): a full
    collection of this process's heap pauses every request in flight, and its pause would be
    charged to whichever target was being measured."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_no_gc()
def closed_loop(
    base_url: str, requests: list[bytes], concurrency: int, *, time_limit: float = 120.0
) -> Outcome:
    """Every request of ``requests``, ``concurrency`` at a time, each sent as soon as an
    earlier one is answered; stops at ``time_limit`` (what is left counts as errors)."""
    loop = _Loop(base_url, requests)
    started = time.perf_counter()
    deadline = started + time_limit
    pending = iter(range(len(requests)))
    for _ in range(min(concurrency, len(requests))):
        loop.send(loop.open(), next(pending), time.perf_counter())
    while loop.busy and time.perf_counter() < deadline:
        for conn in loop.wait(0.05):
            index = next(pending, None)
            if index is None:
                loop.idle.append(conn)
            else:
                loop.send(conn, index, time.perf_counter())
        # a connection the server closed is replaced, so the concurrency stays as asked
        while len(loop.busy) < concurrency and (index := next(pending, None)) is not None:
            loop.send(loop.open(), index, time.perf_counter())
    loop.out.errors += sum(1 for _ in pending)
    return loop.finish(started)


@_no_gc()
def open_loop(
    base_url: str,
    requests: list[bytes],
    rate: float,
    *,
    max_connections: int = 64,
    grace: float = 10.0,
) -> Outcome:
    """Every request of ``requests`` at ``rate`` per second, on schedule (open loop).

    Latency is measured from the scheduled send time, so a server (or client) that falls
    behind shows it in the figures instead of silently slowing the schedule down. At most
    ``max_connections`` are open (waitress accepts 100 at a time); a request due while all
    are busy waits for one, and that wait is in its latency. Requests not sent by the end of
    the schedule plus ``grace`` count as errors.
    """
    loop = _Loop(base_url, requests)
    n = len(requests)
    t0 = time.perf_counter() + 0.05
    deadline = t0 + n / rate + grace
    started, index = time.perf_counter(), 0
    while (index < n or loop.busy) and time.perf_counter() < deadline:
        now = time.perf_counter()
        while index < n and t0 + index / rate <= now:
            if loop.idle:
                conn = loop.idle.pop()
            elif len(loop.busy) < max_connections:
                try:
                    conn = loop.open()
                except OSError:
                    loop.out.errors += 1
                    index += 1
                    continue
            else:
                break
            loop.send(conn, index, t0 + index / rate)
            index += 1
        can_send = loop.idle or len(loop.busy) < max_connections
        wake = t0 + index / rate if index < n and can_send else now + 0.05
        loop.idle += loop.wait(min(0.05, wake - time.perf_counter()))
    loop.out.errors += n - index
    return loop.finish(started)
