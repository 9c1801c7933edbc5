"""Wakes the job runner of another process (``paylink worker``) on the same host.

The web process commits jobs; the worker should run them at once rather than at its next
poll (see docs/decisions/0006-wake-up-socket.md). A datagram on a Unix socket is the cheapest such signal: sending never blocks and
is dropped silently when no worker listens (its poll then picks the rows up).
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url


def socket_path(database_url: str) -> str:
    """The socket both processes derive from the database they share."""
    database = make_url(database_url).database if database_url.startswith("sqlite") else None
    if database and database != ":memory:":
        path = str(Path(database).resolve()) + ".wake"
        if len(path) < 100:  # sun_path holds 108 bytes
            return path
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:16]
    return str(Path(tempfile.gettempdir()) / f"paylink-{digest}.wake")


class WakeSender:
    """Sends a wake-up; never blocks, never raises."""

    def __init__(self, path: str):
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def __call__(self) -> None:
        # No listener, or its queue full of wake-ups it has not read yet: either way the
        # worker will look at the queue soon.
        with contextlib.suppress(OSError):
            self._sock.sendto(b"!", self.path)

    def close(self) -> None:
        """Release the socket."""
        self._sock.close()


class WakeListener:
    """Calls ``on_wake`` for each datagram received, from a daemon thread."""

    def __init__(self, path: str, on_wake: Callable[[], None]):
        self.path = path
        self.on_wake = on_wake
        Path(path).unlink(missing_ok=True)  # left by a worker that was killed
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(path)
        # The thread checks for close() twice a second: the socket is closed only once the
        # thread is done with it (closing it under a blocked recv could hand its descriptor
        # number, reused by then, to that recv).
        self._sock.settimeout(0.5)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wake", daemon=True)

    def start(self) -> WakeListener:
        """Start listening."""
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._closing.is_set():
            try:
                self._sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return
            self.on_wake()

    def close(self) -> None:
        """Stop listening and remove the socket file."""
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._sock.close()
        Path(self.path).unlink(missing_ok=True)
