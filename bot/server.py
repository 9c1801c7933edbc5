"""Serves the WSGI app with waitress: with limits fit for a server open to the internet, and
a graceful stop (no new connections; requests already under way are answered first).

The subclasses below reach into waitress's internals (its accept loop, its error responses,
its channels); pyproject.toml pins waitress to the minor version they were written against,
and tests/test_server.py proves each of them. See docs/decisions/0004-accept-loop.md.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask

from bot.web import MAX_BODY

# Above the 60 s after which load balancers and proxies (AWS ALB, nginx upstreams) drop an
# idle connection: they close first, and never send a request on one we are closing.
CHANNEL_TIMEOUT = 75  # seconds without a byte in either direction
# Each open connection costs a little on every pass of the loop, whatever it does; a few
# hundred leave room for bursts and slow clients without the loop itself eating a core.
CONNECTION_LIMIT = 200


class _JsonErrorTask(ErrorTask):
    """waitress's own refusals (body too large, malformed request) as JSON with a reason,
    like every answer of the app's."""

    def execute(self) -> None:
        error = self.request.error
        reason = (
            f"request body too large (the limit is {MAX_BODY // 1024} KiB)"
            if error.code == 413
            else f"{error.reason.lower()}: {error.body}"
        )
        body = json.dumps({"success": False, "reason": reason}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    error_task_class = _JsonErrorTask


class _AcceptingServer(TcpWSGIServer):
    """waitress's TCP server, taking every waiting connection on each pass of its loop.

    Stock waitress accepts one connection per pass, and each pass needs the GIL several
    times beside busy request threads: of many connections opened at once (a burst of Slack
    clicks), the last waits for every pass before it is even read (figures in 0004).
    """

    channel_class = _Channel

    def handle_accept(self) -> None:
        # readable() is the loop's own test: false at the connection limit.
        while self.readable():
            open_before = len(self._map)
            super().handle_accept()
            if len(self._map) == open_before:  # none was waiting (or accept failed)
                return


class Server:
    """A waitress server for ``app`` on one socket: ``host`` is an address (not a name that
    could resolve to several); port 0 picks a free port (see ``port``)."""

    def __init__(self, app: Any, *, host: str = "0.0.0.0", port: int = 3000, threads: int = 16):  # noqa: S104
        self._server = _AcceptingServer(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="paylink",
            clear_untrusted_proxy_headers=True,
            # waitress refuses a body of this size or more as soon as its headers are in
            max_request_body_size=MAX_BODY + 1,
            channel_timeout=CHANNEL_TIMEOUT,
            cleanup_interval=10,
            connection_limit=CONNECTION_LIMIT,
        )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually listened on."""
        return int(self._server.effective_port)

    def serve_forever(self, grace: float = 5.0) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully (see :meth:`close`)."""
        stopping = stop_signals()
        self.start()
        stopping.wait()
        self.close(grace)

    def start(self) -> Server:
        """Serve from a daemon thread."""
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self._thread.start()
        return self

    def close(self, grace: float = 0.0) -> None:
        """Stop listening at once; answer the requests already received or being received
        for up to ``grace`` seconds, closing each connection once it has nothing under way;
        then close the rest. Sockets are only touched from the server's own loop thread
        (closing them from another thread crashes waitress's loop)."""
        server = self._server
        if self._thread is None or not self._thread.is_alive():
            wasyncore.close_all(server._map)
            server.task_dispatcher.shutdown(timeout=5)
            return
        deadline = time.monotonic() + grace
        self._in_loop(self._stop_accepting)
        while server.active_channels and time.monotonic() < deadline:
            time.sleep(0.05)
            self._in_loop(self._close_idle)
        self._in_loop(lambda: wasyncore.close_all(server._map))
        self._thread.join(timeout=5)
        server.task_dispatcher.shutdown(timeout=5)

    def _in_loop(self, thunk: Callable[[], None]) -> None:
        # OSError: the loop already closed its wake-up pipe, so it is stopping anyway.
        with contextlib.suppress(OSError):
            self._server.trigger.pull_trigger(thunk)

    def _stop_accepting(self) -> None:
        server = self._server
        server.accepting = False
        wasyncore.dispatcher.close(server)  # the listening socket; the wake-up pipe stays
        self._close_idle()

    def _close_idle(self) -> None:
        """Close every connection with no request under way (once its last answer is sent);
        one still receiving a request, or whose request is being answered, stays open."""
        for channel in list(self._server.active_channels.values()):
            if not channel.requests and channel.request is None:
                channel.close_when_flushed = True


def stop_signals() -> threading.Event:
    """An event set by SIGTERM (systemd, Docker, Kubernetes) or SIGINT (Ctrl-C); call from
    the main thread, which should then wait on it."""
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    return stopping
