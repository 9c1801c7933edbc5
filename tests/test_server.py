"""The HTTP server: connections that arrive together are taken together, waitress's own
refusals are JSON, and a stop answers what is under way first.

These prove what bot.server overrides of waitress's internals (see its docstring).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from waitress import wasyncore

from bot.server import MAX_BODY, Server, _AcceptingServer

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


# Refusals and a graceful stop ---------------------------------------------------------------


class _App:
    """Answers ``ok``; ``/slow`` first waits until ``release`` is set."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.calls += 1
        if environ["PATH_INFO"] == "/slow":
            self.entered.set()
            self.release.wait(10)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]


@contextmanager
def _serving() -> Iterator[tuple[Server, _App]]:
    app = _App()
    server = Server(app, host="127.0.0.1", port=0, threads=2).start()
    try:
        yield server, app
    finally:
        app.release.set()
        server.close()


def _exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` and read until the server closes (each refusal closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def test_waitress_refusals_are_json_and_never_reach_the_app() -> None:
    with _serving() as (server, app):
        too_big = _exchange(
            server.port,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: "
            + str(MAX_BODY + 1).encode()
            + b"\r\n\r\n",
        )
        malformed = _exchange(
            server.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"
        )
        at_the_limit = _exchange(
            server.port,
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: "
            + str(MAX_BODY).encode()
            + b"\r\n\r\n"
            + b"x" * MAX_BODY,
        )
    for reply, status in ((too_big, b"413"), (malformed, b"400")):
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 " + status), reply
        assert b"Content-Type: application/json" in head
        answer = json.loads(body)
        assert answer["success"] is False and answer["reason"], answer
    assert at_the_limit.startswith(b"HTTP/1.1 200 ")
    assert app.calls == 1


def test_close_answers_the_request_under_way_and_closes_idle_connections() -> None:
    with _serving() as (server, app):
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # answered, then kept alive
        reply = b""
        while not reply.endswith(b"ok") and (chunk := idle.recv(1024)):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200 ")
        answer: list[bytes] = []
        slow = threading.Thread(
            target=lambda: answer.append(
                _exchange(
                    server.port, b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
            )
        )
        slow.start()
        assert app.entered.wait(5)
        closing = threading.Thread(target=server.close, args=(10,))
        closing.start()
        assert idle.recv(1024) == b""  # the idle connection is closed at once
        with pytest.raises(ConnectionRefusedError):
            for _ in range(50):  # the listening socket is closed from the loop's thread
                socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
                time.sleep(0.05)
        assert closing.is_alive()  # still waiting for the request under way
        app.release.set()
        slow.join(5)
        closing.join(5)
        assert not closing.is_alive()
        assert answer[0].startswith(b"HTTP/1.1 200 ") and answer[0].endswith(b"ok")
        idle.close()


def test_close_gives_up_on_a_slow_client_after_the_grace_period() -> None:
    with (
        _serving() as (server, _app),
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
    ):
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        time.sleep(0.2)  # the server reads the start (nothing outside it shows when it has)
        started = time.monotonic()
        server.close(grace=0.5)
        assert 0.4 < time.monotonic() - started < 3
        assert sock.recv(1024) == b""


def test_close_does_not_wait_for_a_client_that_left_mid_request() -> None:
    with _serving() as (server, _app):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
            time.sleep(0.2)  # the server reads the start (nothing outside it shows when)
        time.sleep(0.2)  # the server reads the end of the connection
        started = time.monotonic()
        server.close(grace=5)
        assert time.monotonic() - started < 2
