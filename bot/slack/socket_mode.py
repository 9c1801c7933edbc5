"""Slack over Socket Mode: Bolt's app on slack_sdk's built-in WebSocket client (it needs no
other library), with two things that client leaves out (docs/decisions/0027).

* **Repeats.** Slack delivers an Events API event again when its ack did not arrive in time
  (up to three retries, ``retry_attempt`` and ``retry_reason`` in the envelope), and Bolt
  runs every delivery (it only passes the retry on as ``X-Slack-Retry-Num``). Commands and
  interactions are not retried by Slack; should one come twice all the same, it is guarded
  alike. Here an envelope, or an event by its ``event_id``, runs once per process: a repeat
  is acked and not run again. One that failed (Bolt did not ack it) runs again when Slack
  delivers it again.
* **Refreshes.** Slack replaces each connection every few hours (``disconnect``,
  ``refresh_requested``). The client opens the new one, then closes the old one, which first
  waits for that connection's pending read: up to its 3-second socket timeout, while nothing
  is read from the new connection either. An envelope arriving then was acked after Slack's
  3 seconds. Here closing a connection first shuts its socket down, which ends the pending
  read at once. (A shorter read timeout would do it too, but a read that times out mid-frame
  loses the envelope: the client keeps the frame read so far only in that read.)
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode.base_handler import BaseSocketModeHandler
from slack_bolt.adapter.socket_mode.internals import run_bolt_app, send_response
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.builtin.connection import Connection
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

log = logging.getLogger(__name__)

REMEMBERED = 3600.0  # seconds a delivery is remembered: Slack's event retries end within it
MAX_REMEMBERED = 10_000  # deliveries remembered at most (the oldest are forgotten first)
PING_INTERVAL = 10.0  # seconds between the client's pings (Bolt's default)


@dataclass(frozen=True)
class Repeat:
    """An envelope already run, or running: which of its keys matched, and whether the
    first delivery has finished (and so has been acked)."""

    key: str
    done: bool


class Deliveries:
    """The envelopes this process has run lately, by envelope id and event id."""

    def __init__(self, *, remembered: float = REMEMBERED, limit: int = MAX_REMEMBERED) -> None:
        self.remembered, self.limit = remembered, limit
        self._seen: OrderedDict[str, tuple[float, bool]] = OrderedDict()  # key → (at, done)
        self._lock = threading.Lock()

    @staticmethod
    def keys(req: SocketModeRequest) -> list[str]:
        """The envelope's id, and for an event its ``event_id`` (the same in every retry)."""
        keys = [f"envelope:{req.envelope_id}"]
        event_id = req.payload.get("event_id") if req.type == "events_api" else None
        if event_id:
            keys.append(f"event:{event_id}")
        return keys

    def begin(self, keys: list[str]) -> Repeat | None:
        """None for a first delivery (now running); a :class:`Repeat` otherwise."""
        now = time.monotonic()
        with self._lock:
            while self._seen and (
                len(self._seen) >= self.limit
                or next(iter(self._seen.values()))[0] < now - self.remembered
            ):
                self._seen.popitem(last=False)
            for key in keys:
                if key in self._seen:
                    return Repeat(key, done=self._seen[key][1])
            for key in keys:
                self._seen[key] = (now, False)
            return None

    def finish(self, keys: list[str], *, ran: bool) -> None:
        """Remember the delivery as done, or forget it when it did not run, so that Slack's
        next delivery of it runs."""
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._seen.pop(key, None)
                if ran:
                    self._seen[key] = (now, True)


class _Client(SocketModeClient):
    def connect(self) -> None:
        super().connect()
        session = self.current_session
        if session is not None:
            # The client closes this connection when it opens the next, finds it stale or
            # stops: shut its socket down first, so that its pending read returns now rather
            # than after the 3 s read timeout (closing waits for the read to let go).
            session.disconnect = functools.partial(_shut_down_then_disconnect, session)  # type: ignore[method-assign]


def _shut_down_then_disconnect(session: Connection) -> None:
    sock = session.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # closed meanwhile
            sock.shutdown(socket.SHUT_RDWR)
    Connection.disconnect(session)


class SocketMode(BaseSocketModeHandler):
    """Runs ``app`` over Socket Mode with the app-level token; ``connect()`` opens the
    connection (raising Slack's refusal of the token), ``close()`` ends it."""

    def __init__(self, app: App, app_token: str, *, concurrency: int = 10) -> None:
        self.app = app
        self.deliveries = Deliveries()
        self.client = _Client(
            app_token=app_token,
            logger=app.logger,
            web_client=app.client,
            ping_interval=PING_INTERVAL,
            concurrency=concurrency,
        )
        self.client.socket_mode_request_listeners.append(self.handle)  # type: ignore[arg-type]
        self.client.message_listeners.append(_on_hello)  # type: ignore[arg-type]
        self.client.on_message_listeners.append(_on_disconnect)

    def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        """Run an envelope through Bolt and ack it, once (see the module's docstring)."""
        keys = self.deliveries.keys(req)
        repeat = self.deliveries.begin(keys)
        if repeat is not None:
            log.info(
                "Socket Mode: %s envelope delivered again (retry %s): not run again",
                req.type,
                req.retry_attempt or 0,
            )
            # A repeat of one still running gets its ack from that run, unless it is another
            # envelope (an event's retry): each envelope wants its own.
            if repeat.done or repeat.key != keys[0]:
                client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            return
        started, ran = time.time(), False
        try:
            response = run_bolt_app(self.app, req)
            ran = response.status == 200  # Bolt acks only then
            send_response(client, req, response, started)
        finally:
            self.deliveries.finish(keys, ran=ran)


def _on_hello(client: Any, message: dict[str, Any], raw: str | None) -> None:
    if message.get("type") == "hello":
        log.info("Socket Mode connected (%s open)", message.get("num_connections", "?"))


def _on_disconnect(raw: str) -> None:
    # Every message passes here as text: only a short one can be Slack's disconnect.
    if len(raw) < 1000 and '"disconnect"' in raw:
        try:
            reason = json.loads(raw).get("reason")
        except (ValueError, AttributeError):
            return
        log.info("Socket Mode: Slack asked for a new connection (%s): reconnecting", reason)
