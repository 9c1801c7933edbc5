"""The HTTP server's loop: connections that arrive together are taken together."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from waitress import wasyncore

from bot.server import _AcceptingServer

pytestmark = pytest.mark.integration  # servers and clients on real sockets


def _app(_environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


@contextmanager
def _waiting(count: int, **adjustments: Any) -> Iterator[_AcceptingServer]:
    """A server (its loop not running) with ``count`` connections waiting to be accepted."""
    server = _AcceptingServer(_app, host="127.0.0.1", port=0, threads=1, **adjustments)
    clients = [
        socket.create_connection(("127.0.0.1", server.effective_port), timeout=5)
        for _ in range(count)
    ]
    try:
        yield server
    finally:
        for client in clients:
            client.close()
        wasyncore.close_all(server._map)
        server.task_dispatcher.shutdown(timeout=5)


def test_one_pass_of_the_loop_accepts_every_waiting_connection() -> None:
    # A burst of 32 Slack clicks on new connections: stock waitress takes one per pass,
    # and the last click waits for 31 passes before it is even read.
    with _waiting(32) as server:
        open_before = len(server._map)
        server.handle_accept()  # what the loop calls when the listening socket is readable
        assert len(server._map) - open_before == 32
        server.handle_accept()  # nothing left: returns at once
        assert len(server._map) - open_before == 32


def test_the_connection_limit_still_holds() -> None:
    with _waiting(10, connection_limit=6) as server:
        server.handle_accept()
        # the map holds the listening socket and the loop's wake-up pipe as well
        assert len(server._map) == 6
        assert not server.readable()
