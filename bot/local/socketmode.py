"""A local stand-in for Slack's Socket Mode: a WebSocket server on 127.0.0.1.

Attached to a :class:`~bot.local.standin.SlackStandIn`, it makes ``apps.connections.open``
(called with the app-level token) answer ``ws://127.0.0.1:PORT/link/?ticket=…``, and plays
Slack's side of each connection the way Slack's Socket Mode documentation describes it:

* a ``hello`` as soon as a connection opens (``num_connections``, ``connection_info``,
  ``debug_info``); a ticket is good for one connection only;
* envelopes ``{"envelope_id", "type", "payload", "accepts_response_payload"}`` of type
  ``slash_commands``, ``interactive`` (``block_actions``, ``view_submission``) and
  ``events_api`` (with ``retry_attempt`` and ``retry_reason``), each sent on the newest
  connection; one sent while no connection is open waits for the next;
* each ack ``{"envelope_id", "payload"?}`` recorded with the time it arrived, whichever
  connection it came on, so a test can assert every envelope was acked once within 3 s;
* ``refresh()`` sends ``{"type": "disconnect", "reason": "refresh_requested"}`` and sends that
  connection nothing more: the app is expected to open another through
  ``apps.connections.open``; acks still arriving on the old one count.

Example::

    with SlackStandIn() as slack, SocketModeStandIn(slack) as socket:
        ...  # run the app with SLACK_APP_TOKEN=slack.app_token, SLACK_API_URL=slack.base_url
        sent = socket.command("U0REP", "5000 PKR")
        assert socket.wait_for_ack(sent).delay < 3

Tooling only, like the rest of ``bot.local``: its ``websockets`` dependency is in the
``test`` extra.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from bot.local.standin import SlackStandIn

__all__ = ["Ack", "Envelope", "SocketConnection", "SocketModeStandIn"]

APP_ID = "A0PAYLINK"
ACK_WITHIN = 3.0  # seconds: Slack's limit for an ack
# Interactions whose ack may carry a response (view_submission's response_action, options).
_RESPONDING = frozenset({"view_submission", "block_suggestion"})


@dataclass
class Envelope:
    """One envelope as sent (``sent_at`` 0.0 while it waits for a connection)."""

    envelope_id: str
    type: str
    payload: dict[str, Any]
    accepts_response_payload: bool
    retry_attempt: int | None = None
    retry_reason: str | None = None
    sent_at: float = 0.0
    connection: int | None = None  # the number of the connection it went out on

    def message(self) -> dict[str, Any]:
        """The JSON message as Slack sends it."""
        out: dict[str, Any] = {
            "envelope_id": self.envelope_id,
            "payload": self.payload,
            "type": self.type,
            "accepts_response_payload": self.accepts_response_payload,
        }
        if self.type == "events_api":
            out["retry_attempt"] = self.retry_attempt or 0
            out["retry_reason"] = self.retry_reason or ""
        return out


@dataclass(frozen=True)
class Ack:
    """An acknowledgement received: ``payload`` is the response the app sent with it."""

    envelope_id: str
    payload: dict[str, Any] | None
    at: float
    connection: int
    delay: float  # seconds from the envelope's sending (its latest delivery) to this ack


@dataclass
class SocketConnection:
    """One WebSocket connection an app opened."""

    number: int
    opened_at: float
    closed_at: float | None = None
    draining: bool = False  # told to reconnect: Slack sends it no new envelope
    ws: ServerConnection | None = field(default=None, repr=False)

    @property
    def live(self) -> bool:
        """Open and not told to go away: new envelopes go to it."""
        return self.closed_at is None and not self.draining


class SocketModeStandIn:
    """Slack's Socket Mode server for tests and local runs; ``start()`` attaches it to
    ``slack`` (its ``apps.connections.open``)."""

    def __init__(self, slack: SlackStandIn, *, host: str = "127.0.0.1") -> None:
        self.slack = slack
        self._host = host
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._tickets: set[str] = set()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.connections: list[SocketConnection] = []
        self.envelopes: list[Envelope] = []
        self.acks: list[Ack] = []
        self.refused_tickets = 0

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> SocketModeStandIn:
        """Listen on a free port and answer ``apps.connections.open`` on ``slack``."""
        self._server = serve(
            self._serve_connection,
            self._host,
            0,
            process_request=self._check_ticket,
            compression=None,  # Slack offers none; slack_sdk's own client asks for none
            server_header=None,
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="socket-mode-standin", daemon=True
        )
        self._thread.start()
        self.slack.attach_socket_mode(self.connection_url)
        return self

    def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> SocketModeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on."""
        assert self._server is not None, "not started"
        return int(self._server.socket.getsockname()[1])

    def connection_url(self) -> str:
        """A new connection's address, good for one connection (``apps.connections.open``)."""
        ticket = secrets.token_urlsafe(12)
        with self._lock:
            self._tickets.add(ticket)
        return f"ws://{self._host}:{self.port}/link/?ticket={ticket}&app_id={APP_ID}"

    # ---------------------------------------------------------------- Slack's side

    def command(
        self, user: str, text: str = "", *, channel: str = "C0SALES", **fields: str
    ) -> Envelope:
        """``/paylink <text>`` typed by ``user`` in ``channel`` (a ``slash_commands``
        envelope); ``fields`` override the payload's fields (``trigger_id``…)."""
        from bot.local.simulator import command_payload

        payload = {**command_payload(user, text, channel), **fields}
        return self.send("slash_commands", payload, accepts_response_payload=True)

    def interactive(self, payload: dict[str, Any]) -> Envelope:
        """An interactivity payload (``block_actions``, ``view_submission``…)."""
        responding = payload.get("type") in _RESPONDING
        return self.send("interactive", payload, accepts_response_payload=responding)

    def event(self, payload: dict[str, Any]) -> Envelope:
        """An Events API ``event_callback`` (an ``events_api`` envelope, first attempt)."""
        return self.send("events_api", payload, accepts_response_payload=False, retry_attempt=0)

    def send(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
    ) -> Envelope:
        """Send an envelope on the newest live connection (or when one opens)."""
        envelope = Envelope(
            envelope_id=str(uuid.uuid4()),
            type=kind,
            payload=payload,
            accepts_response_payload=accepts_response_payload,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )
        with self._lock:
            self.envelopes.append(envelope)
        self._deliver_waiting()
        return envelope

    def redeliver(self, envelope: Envelope, reason: str = "timeout") -> Envelope:
        """Send ``envelope`` again, as Slack does when its ack did not arrive: the same
        envelope, its ``retry_attempt`` one higher (events) and ``retry_reason`` given."""
        with self._lock:
            envelope.retry_attempt = (envelope.retry_attempt or 0) + 1
            envelope.retry_reason = reason
            envelope.sent_at, envelope.connection = 0.0, None
        self._deliver_waiting()
        return envelope

    def refresh(self, reason: str = "refresh_requested") -> int:
        """Tell the newest live connection to go (``disconnect`` with ``reason``); it gets no
        new envelope after that. Returns its number."""
        with self._lock:
            conn = self._newest_live()
            assert conn is not None and conn.ws is not None, "no connection to refresh"
            conn.draining = True
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "standin"}}
        self._send(conn, json.dumps(message))
        return conn.number

    # ---------------------------------------------------------------- inspection

    def acks_of(self, envelope: Envelope) -> list[Ack]:
        """Every ack received for ``envelope``, oldest first."""
        with self._lock:
            return [a for a in self.acks if a.envelope_id == envelope.envelope_id]

    def wait_for_ack(self, envelope: Envelope, timeout: float = 5.0) -> Ack:
        """The first ack of ``envelope``, once it has come; AssertionError after ``timeout``."""
        return self.wait_for(lambda s: next(iter(s.acks_of(envelope)), None), timeout)

    def wait_for_connections(self, count: int, timeout: float = 10.0) -> SocketConnection:
        """Until ``count`` connections have been opened (each greeted with ``hello``);
        returns the newest."""
        return self.wait_for(lambda s: len(s.connections) >= count and s.connections[-1], timeout)

    def unacknowledged(self) -> list[Envelope]:
        """Envelopes sent that no ack has answered."""
        with self._lock:
            acked = {a.envelope_id for a in self.acks}
            return [e for e in self.envelopes if e.envelope_id not in acked]

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> Any:
        """Until ``predicate(self)`` is truthy (re-checked on every ack and connection);
        returns its value."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (result := predicate(self)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"Socket Mode: not within {timeout} s; connections "
                        f"{self.connections}, unacknowledged "
                        f"{[(e.type, e.envelope_id) for e in self.unacknowledged()]}"
                    )
                self._cond.wait(min(remaining, 0.1))
            return result

    # ---------------------------------------------------------------- connections

    def _check_ticket(self, ws: ServerConnection, request: Request) -> Response | None:
        """Refuse a connection without a ticket from ``apps.connections.open``, or with one
        already used."""
        query = request.path.partition("?")[2]
        ticket = dict(p.partition("=")[::2] for p in query.split("&")).get("ticket", "")
        with self._lock:
            if ticket in self._tickets:
                self._tickets.discard(ticket)
                return None
            self.refused_tickets += 1
        return ws.respond(HTTPStatus.UNAUTHORIZED, "invalid or used ticket\n")

    def _serve_connection(self, ws: ServerConnection) -> None:
        with self._cond:
            conn = SocketConnection(number=len(self.connections) + 1, opened_at=time.time(), ws=ws)
            self.connections.append(conn)
            open_now = sum(1 for c in self.connections if c.closed_at is None)
        hello = {
            "type": "hello",
            "num_connections": open_now,
            "debug_info": {"host": "standin", "approximate_connection_time": 18060},
            "connection_info": {"app_id": APP_ID},
        }
        self._send(conn, json.dumps(hello))
        with self._cond:
            self._cond.notify_all()
        self._deliver_waiting()
        try:
            for message in ws:
                self._receive(conn, message)
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                conn.closed_at = time.time()
                self._cond.notify_all()

    def _receive(self, conn: SocketConnection, message: str | bytes) -> None:
        """Record an ack (anything else an app sends is ignored, as Slack ignores it)."""
        try:
            data = json.loads(message)
        except ValueError:
            return
        if not isinstance(data, dict) or "envelope_id" not in data:
            return
        now = time.time()
        with self._cond:
            sent = next((e for e in self.envelopes if e.envelope_id == data["envelope_id"]), None)
            delay = now - sent.sent_at if sent and sent.sent_at else float("nan")
            self.acks.append(
                Ack(
                    envelope_id=str(data["envelope_id"]),
                    payload=data.get("payload"),
                    at=now,
                    connection=conn.number,
                    delay=delay,
                )
            )
            self._cond.notify_all()

    def _newest_live(self) -> SocketConnection | None:
        return next((c for c in reversed(self.connections) if c.live), None)

    def _deliver_waiting(self) -> None:
        """Send every envelope not yet sent, on the newest live connection if there is one."""
        with self._lock:
            conn = self._newest_live()
            if conn is None:
                return
            # Sent under the lock, so that envelopes leave in the order they were made.
            for envelope in [e for e in self.envelopes if not e.sent_at]:
                envelope.sent_at, envelope.connection = time.time(), conn.number
                if not self._send(conn, json.dumps(envelope.message())):
                    envelope.sent_at, envelope.connection = 0.0, None  # for the next one
                    return

    @staticmethod
    def _send(conn: SocketConnection, text: str) -> bool:
        """Send ``text`` on ``conn``; False when the connection has closed."""
        assert conn.ws is not None
        try:
            conn.ws.send(text)
        except ConnectionClosed:
            return False
        return True
