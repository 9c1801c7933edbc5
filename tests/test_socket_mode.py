"""`paylink socket` end to end: a real process on Slack's Socket Mode stand-in and the sandbox.

The LocalStack runs no bot here (``socket_mode=True``): it is the Slack Web API stand-in and
the Socket Mode stand-in, and `paylink socket` is started as a process with its settings.
Slack's side sends envelopes over the WebSocket; the customer's pays on the sandbox checkout
page, whose webhook reaches the process over HTTP on its PORT. Every envelope must be acked
exactly once per delivery, within Slack's 3 seconds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from slack_bolt import App
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.socket_mode.request import SocketModeRequest
from sqlalchemy import select

from bot.links.tables import Link
from bot.local.simulator import (
    click_payload,
    home_opened_payload,
    state_values,
    view_submission_payload,
)
from bot.local.socketmode import ACK_WITHIN, Envelope, SocketModeStandIn
from bot.local.stack import APPROVAL_CHANNEL, APPROVER, REP, LocalStack
from bot.local.standin import PostedMessage
from bot.slack.blocks import ActionId
from bot.slack.socket_mode import Deliveries, Repeat, SocketMode
from tests.conftest import FIELDS, check_slack_calls
from tests.procs import PAYLINK, Proc, Procs
from tests.waiting import wait_until
from tests.workspaces import SocketSimulator, TeamFlow, click_as, thanked

# Upper bounds, not sleeps: on a busy 2-core machine a process's step can take seconds.
WAIT = 20.0


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(socket_mode=True, workdir=tmp_path) as running:
        yield running


def start_socket(stack: LocalStack, procs: Procs, **env: str) -> Proc:
    """`paylink socket` on the stack (``env``: more settings), once connected and serving."""
    proc = procs.start([PAYLINK, "socket"], {**stack.environment(), **env})
    proc.wait_for_http(f"{stack.base_url}/healthz")
    proc.wait_for_output("Socket Mode connected")
    if env.get("PAYLINK_WORKER") != "inline":  # its child posts the cards: wait for it too
        proc.wait_for_output("worker running")
    return proc


def socket_of(stack: LocalStack) -> SocketModeStandIn:
    assert stack.socket is not None
    return stack.socket


def open_modal(stack: LocalStack) -> tuple[Envelope, dict]:
    """``/paylink 15000 PKR`` over the socket; the command and the modal it opened."""
    seen = len(stack.slack.views_opened)
    command = socket_of(stack).command(REP, "15000 PKR")
    view = stack.slack.wait_for(
        lambda s: len(s.views_opened) > seen and s.views_opened[-1], timeout=WAIT
    )
    return command, view


def submit(stack: LocalStack, view: dict) -> Envelope:
    values = state_values(view, FIELDS)
    return socket_of(stack).interactive(view_submission_payload(REP, view, values))


def the_card(stack: LocalStack) -> PostedMessage:
    return stack.slack.wait_for(lambda s: next(iter(cards(s)), None), timeout=WAIT)


def cards(slack: object) -> list[PostedMessage]:
    return [m for m in slack.messages(APPROVAL_CHANNEL) if m.thread_ts is None]  # type: ignore[attr-defined]


def approve(stack: LocalStack, card: PostedMessage) -> Envelope:
    message = {"ts": card.ts, "blocks": card.blocks}
    payload = click_payload(APPROVER, message, ActionId.APPROVE, channel=APPROVAL_CHANNEL)
    return socket_of(stack).interactive(payload)


def checkout_url(stack: LocalStack, card: PostedMessage) -> str:
    def link() -> str | None:
        for reply in stack.slack.thread(APPROVAL_CHANNEL, card.ts)[1:]:
            found = re.search(r"https?://[^\s|>]+/sandbox/checkout/[\w-]+", str(reply.blocks))
            if found:
                return found.group(0)
        return None

    return stack.slack.wait_for(lambda s: link(), timeout=WAIT)


def pay(url: str) -> None:
    """The customer opens the sandbox checkout page and pays by card."""
    requests.get(url, timeout=10).raise_for_status()
    requests.post(url + "/pay", data={"outcome": "pay", "method": "card"}, timeout=10)


def wait_paid(stack: LocalStack, card: PostedMessage) -> list[PostedMessage]:
    """Until the card says Paid and the thread has the payment; the thread."""
    stack.slack.wait_for(
        lambda s: (
            "Paid" in s.render_thread_text(APPROVAL_CHANNEL, card.ts)
            and len(s.thread(APPROVAL_CHANNEL, card.ts)) >= 3
        ),
        timeout=10,
    )
    return stack.slack.thread(APPROVAL_CHANNEL, card.ts)


def assert_acked_once_in_time(socket: SocketModeStandIn) -> None:
    """Each delivery of each envelope got one ack, each within Slack's 3 seconds."""
    socket.wait_for(lambda s: not s.unacknowledged(), timeout=WAIT)
    for envelope in socket.envelopes:
        acks = socket.acks_of(envelope)
        deliveries = 1 + (envelope.retry_attempt or 0)
        assert len(acks) == deliveries, (envelope.type, envelope.payload.get("type"), acks)
        assert all(ack.delay < ACK_WITHIN for ack in acks), acks


def test_the_whole_flow_through_paylink_socket(stack: LocalStack, procs: Procs) -> None:
    socket = socket_of(stack)
    proc = start_socket(stack, procs)

    command, view = open_modal(stack)
    assert view["callback_id"] and socket.wait_for_ack(command, WAIT).payload is None
    submission = submit(stack, view)
    card = the_card(stack)
    assert socket.wait_for_ack(submission, WAIT).payload is None  # no errors: the modal closes
    assert "Awaiting approval" in stack.slack.render_thread_text(APPROVAL_CHANNEL, card.ts)

    approve(stack, card)
    pay(checkout_url(stack, card))
    thread = wait_paid(stack, card)
    assert len(thread) == 3, stack.slack.render_thread_text(APPROVAL_CHANNEL, card.ts)

    # App Home over events_api: published for the rep, with the request.
    socket.event(home_opened_payload(REP))
    home = stack.slack.wait_for(lambda s: s.home_views.get(REP), timeout=WAIT)
    assert "Paid" in str(home["blocks"])

    assert_acked_once_in_time(socket)
    assert len(stack.slack.calls_of("apps.connections.open")) == 1
    assert "Traceback" not in proc.output()


def test_two_workspaces_installed_by_oauth_run_the_flow_over_one_socket_connection(
    distributed: Callable[..., LocalStack], procs: Procs
) -> None:
    """Socket Mode and several workspaces together (issue 23): `paylink socket` with
    SLACK_CLIENT_ID and no SLACK_BOT_TOKEN serves the install flow on PORT, and each
    workspace's envelopes, on the one connection, are answered with its own token."""
    team_a, team_b = "T0ALPHA", "T0BRAVO"
    stack = distributed(socket_mode=True)
    socket = socket_of(stack)
    env = stack.environment()
    assert "SLACK_BOT_TOKEN" not in env and "SLACK_SIGNING_SECRET" not in env
    proc = start_socket(stack, procs)

    # Installed by OAuth through the process's own HTTP port (PAYLINK_PUBLIC_URL).
    assert thanked(stack.install(team_a)) and thanked(stack.install(team_b))
    exchanges = stack.slack.calls_of("oauth.v2.access")
    assert [c.team for c in exchanges if c.ok] == [team_a, team_b]
    assert {c.params["redirect_uri"] for c in exchanges} == {
        stack.base_url + "/slack/oauth_redirect"
    }
    tokens = {c.team: c.response["access_token"] for c in exchanges}
    assert tokens[team_a] != tokens[team_b]

    sim = SocketSimulator(socket, timeout=WAIT)
    flows = {team: TeamFlow(stack, team, sim=sim) for team in (team_a, team_b)}
    cards: dict[str, PostedMessage] = {}
    for team, flow in flows.items():
        # /paylink, the modal (opened with the team's token), submitted with no errors: B's,
        # the same as A's, is not taken for a duplicate of A's (the guard is on here).
        card = flow.request()
        assert card.team == team  # posted with the workspace's own token
        flow.checkout(flow.approve(card.ts))
        flow.wait_status(card.ts, "Paid", timeout=WAIT)
        cards[team] = card
    for team, card in cards.items():
        thread = wait_paid(stack, card)  # the card, its link, its payment
        assert len(thread) == 3 and {m.team for m in thread} == {team}
    # Every call about a workspace's card went out with that workspace's token.
    for call in stack.slack.calls:
        if call.method in ("chat.update", "chat.postMessage") and call.ok:
            ts = call.params.get("thread_ts") or call.params.get("ts") or call.response["ts"]
            owner = next(t for t, c in cards.items() if ts == c.ts)
            assert call.team == owner, call
    assert {c.team for c in stack.slack.calls_of("views.open")} == {team_a, team_b}
    # No Web API call with any other token (the app-level token only opens the connection).
    for call in stack.slack.calls:
        if call.method not in ("apps.connections.open", "oauth.v2.access"):
            assert call.team in (team_a, team_b), call

    # A new request of A; B's approver clicks Approve on it: refused in B, nothing changes.
    flow_a, flow_b = flows[team_a], flows[team_b]
    pending = flow_a.request(amount="16000")  # not a duplicate of A's first
    flow_a.idle(timeout=WAIT)
    before = flow_a.card(pending.ts)
    click_as(flow_a, flow_b.origin, APPROVER, pending.ts, "paylink_approve")
    assert flow_b.wait_ephemeral(APPROVER, "another Slack workspace")
    refusal = next(
        c for c in stack.slack.calls_of("chat.postEphemeral") if c.params["user"] == APPROVER
    )
    assert refusal.team == team_b
    flow_a.idle(timeout=WAIT)
    after = flow_a.card(pending.ts)
    assert (after.blocks, after.updated) == (before.blocks, before.updated)
    assert "Awaiting approval" in flow_a.status(pending.ts)

    # App Home over events_api: each workspace's own links, published with its token.
    with stack.runtime.store.reading() as s:
        references = {
            team: set(s.scalars(select(Link.reference).where(Link.team_id == team)))
            for team in flows
        }
    for team, other in ((team_a, team_b), (team_b, team_a)):
        home = str(flows[team].home(REP)["blocks"])
        assert all(ref in home for ref in references[team])
        assert not any(ref in home for ref in references[other])

    # B uninstalls Paylink: told over the same connection, B's installation goes; A's
    # approver still approves A's request, with A's token.
    stack.slack.revoke(team_b)
    flow_b.sim.event({"type": "app_uninstalled"}, team=team_b)
    wait_until(lambda: not flow_b.installed(), timeout=WAIT)
    assert flow_a.installed()
    flow_a.approve(pending.ts)
    assert {m.team for m in stack.slack.thread(APPROVAL_CHANNEL, pending.ts)} == {team_a}

    # All of it on the one connection the app-level token opened.
    assert_acked_once_in_time(socket)
    assert len(stack.slack.calls_of("apps.connections.open")) == 1
    assert {e.connection for e in socket.envelopes} == {1}
    check_slack_calls(stack)
    assert "Traceback" not in proc.output()


def test_a_refresh_mid_flow_loses_nothing_and_repeats_nothing(
    stack: LocalStack, procs: Procs
) -> None:
    socket = socket_of(stack)
    proc = start_socket(stack, procs, PAYLINK_WORKER="inline")
    _, view = open_modal(stack)

    # Slack replaces the connection; the submission goes out on the new one.
    assert socket.refresh() == 1
    submission = submit(stack, view)
    card = the_card(stack)
    assert socket.wait_for_connections(2, WAIT).number == 2
    assert submission.connection == 2
    assert len(stack.slack.calls_of("apps.connections.open")) == 2
    proc.wait_for_output("Slack asked for a new connection (refresh_requested)")
    # Read at once on the new connection: not after the old one's 3-second read timeout.
    assert socket.wait_for_ack(submission, WAIT).delay < 2.0

    # Its ack lost, Slack sends the submission again: acked, no second request.
    socket.redeliver(submission)
    socket.wait_for(lambda s: len(s.acks_of(submission)) == 2, timeout=WAIT)

    # A click sent just before the next refresh: its ack may come on the new connection.
    click = approve(stack, card)
    socket.refresh()
    url = checkout_url(stack, card)
    socket.wait_for_ack(click, WAIT)
    socket.redeliver(click)
    socket.wait_for(lambda s: len(s.acks_of(click)) == 2, timeout=WAIT)

    # An event retried by Slack (retry_attempt 1) runs once too.
    event = socket.event(home_opened_payload(APPROVER))
    stack.slack.wait_for(lambda s: s.home_views.get(APPROVER), timeout=WAIT)
    socket.redeliver(event)
    socket.wait_for(lambda s: len(s.acks_of(event)) == 2, timeout=WAIT)

    pay(url)
    thread = wait_paid(stack, card)
    assert len(cards(stack.slack)) == 1
    assert len(thread) == 3, stack.slack.render_thread_text(APPROVAL_CHANNEL, card.ts)
    assert len(stack.slack.calls_of("views.publish")) == 1
    # Only the rep's "Sent for approval": the approver was not told "already approved".
    assert [e.user for e in stack.slack.ephemerals] == [REP]
    assert_acked_once_in_time(socket)
    assert socket.wait_for_connections(3, WAIT).number == 3
    assert "Traceback" not in proc.output()


def test_the_bot_token_in_place_of_the_app_token_is_refused_in_one_line(
    stack: LocalStack, procs: Procs
) -> None:
    env = stack.environment()
    env.update(SLACK_APP_TOKEN=env["SLACK_BOT_TOKEN"], PAYLINK_WORKER="inline")  # no child
    result = procs.run([PAYLINK, "socket"], env)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "paylink: SLACK_APP_TOKEN: Slack refused it (apps.connections.open: "
        "not_allowed_token_type): make an app-level token (xapp-…) with connections:write on "
        "your Slack app's Basic Information page"
    ), result.stderr
    assert env["SLACK_BOT_TOKEN"] not in result.stderr
    assert socket_of(stack).connections == []


def _ws_frame(text: bytes) -> bytes:
    """An unmasked WebSocket text frame, as a server sends it."""
    n = len(text)
    if n < 126:
        return bytes([0x81, n]) + text
    if n < 65536:
        return bytes([0x81, 126]) + struct.pack("!H", n) + text
    return bytes([0x81, 127]) + struct.pack("!Q", n) + text


def _serve_one_split_envelope(server: socket.socket, envelope: dict[str, Any]) -> None:
    """Accept one WebSocket connection, say hello, then send ``envelope`` with a 0.4 s gap
    mid-frame: a lost TCP segment (Linux retransmits after at least 200 ms)."""
    conn, _ = server.accept()
    request = b""
    while b"\r\n\r\n" not in request:
        request += conn.recv(4096)
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key")
    )
    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    accept = base64.b64encode(hashlib.sha1(key + guid).digest())  # noqa: S324  (RFC 6455)
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    conn.sendall(_ws_frame(json.dumps({"type": "hello", "num_connections": 1}).encode()))
    data = _ws_frame(json.dumps(envelope).encode())
    conn.sendall(data[:5000])
    time.sleep(0.4)
    conn.sendall(data[5000:])
    conn.recv(4096)  # until the client acks or closes


@pytest.mark.integration
def test_an_envelope_paused_mid_frame_is_read_whole() -> None:
    """A 20 KB envelope (a large modal's submission) whose second half comes 0.4 s after its
    first still reaches the listener: the read does not time out mid-frame."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    event = {"type": "app_home_opened", "user": "U1", "tab": "home", "pad": "x" * 20000}
    envelope = {
        "envelope_id": "E1",
        "type": "events_api",
        "accepts_response_payload": False,
        "payload": {"type": "event_callback", "event_id": "Ev1", "team_id": "T1", "event": event},
    }
    threading.Thread(target=_serve_one_split_envelope, args=(server, envelope), daemon=True).start()
    got: list[int] = []
    app = App(
        signing_secret="s",
        authorize=lambda **_: AuthorizeResult(
            enterprise_id=None, team_id="T1", bot_token="xoxb-x", bot_user_id="UB", bot_id="B"
        ),
    )
    app.event("app_home_opened")(lambda event: got.append(len(event["pad"])))
    handler = SocketMode(app, "xapp-1-x")
    handler.client.wss_uri = f"ws://127.0.0.1:{server.getsockname()[1]}/"
    handler.client.auto_reconnect_enabled = False
    handler.connect()
    try:
        wait_until(lambda: got, timeout=3.0)
    finally:
        handler.client.close()
        server.close()
    assert got == [20000]


# -- which deliveries run (unit) --------------------------------------------------------


def request(envelope_id: str, kind: str = "interactive", **payload: str) -> SocketModeRequest:
    return SocketModeRequest(type=kind, envelope_id=envelope_id, payload=payload)


def test_an_envelope_runs_once_and_a_failed_one_runs_again() -> None:
    deliveries = Deliveries()
    keys = deliveries.keys(request("e1"))
    assert deliveries.begin(keys) is None
    assert deliveries.begin(keys) == Repeat("envelope:e1", done=False)  # still running
    deliveries.finish(keys, ran=True)
    assert deliveries.begin(keys) == Repeat("envelope:e1", done=True)

    failed = deliveries.keys(request("e2"))
    assert deliveries.begin(failed) is None
    deliveries.finish(failed, ran=False)  # Bolt did not ack it: Slack's next delivery runs
    assert deliveries.begin(failed) is None


def test_an_event_retried_in_a_new_envelope_is_known_by_its_event_id() -> None:
    deliveries = Deliveries()
    first = deliveries.keys(request("e1", "events_api", event_id="Ev1"))
    deliveries.begin(first)
    deliveries.finish(first, ran=True)
    retry = deliveries.keys(request("e2", "events_api", event_id="Ev1"))
    assert deliveries.begin(retry) == Repeat("event:Ev1", done=True)


def test_deliveries_are_forgotten_after_a_while_or_when_too_many() -> None:
    forgetful = Deliveries(remembered=0.0)
    keys = forgetful.keys(request("e1"))
    forgetful.begin(keys)
    forgetful.finish(keys, ran=True)
    assert forgetful.begin(keys) is None

    small = Deliveries(limit=2)
    for name in ("a", "b", "c"):
        small.begin(small.keys(request(name)))
    assert small.begin(small.keys(request("a"))) is None  # the oldest went first
