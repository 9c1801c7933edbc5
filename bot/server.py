"""Serves the WSGI app with waitress, in the foreground or in a background thread."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from waitress import wasyncore
from waitress.server import TcpWSGIServer


class _AcceptingServer(TcpWSGIServer):
    """waitress's TCP server, taking every waiting connection on each pass of its loop.

    Stock waitress accepts one connection per pass, and each pass needs the GIL several
    times beside busy request threads: of 32 connections opened at once (a burst of Slack
    clicks), the last waited some 70 ms to be accepted while the first ones were answered
    again and again (Approve ack p99 at concurrency 32: 76 → 46–56 ms, see README).
    """

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
        )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually listened on."""
        return int(self._server.effective_port)

    def serve_forever(self) -> None:
        """Serve until interrupted."""
        self._server.run()

    def start(self) -> Server:
        """Serve from a daemon thread (tests, demo, benchmarks)."""
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop listening and finish: the sockets are closed from the server's own loop
        thread (closing them from another thread crashes waitress's loop)."""
        server = self._server
        if self._thread is not None and self._thread.is_alive():
            # OSError: the loop already closed its wake-up pipe, so it is stopping anyway.
            with contextlib.suppress(OSError):
                server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
            self._thread.join(timeout=5)
        else:
            wasyncore.close_all(server._map)
        server.task_dispatcher.shutdown(timeout=5)
