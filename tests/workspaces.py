"""Several workspaces on one Paylink, and XPay stores on gateways of their own: the
``distributed`` fixture (a LocalStack in multi-workspace mode), ``TeamFlow`` (the Slack flow
as one workspace's people play it, over HTTP or with ``SocketSimulator`` over Socket Mode)
and the ``gateways`` fixture (sandbox gateways with keys of their own, each standing in for
one XPay store). A pytest plugin (tests/conftest.py)."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, Response, request
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from bot.db import Base, make_engine, make_sessionmaker
from bot.links.tables import Job
from bot.local.simulator import (
    Origin,
    click_payload,
    command_payload,
    event_payload,
    home_opened_payload,
    new_trigger_id,
    state_values,
    view_submission_payload,
)
from bot.local.socketmode import Ack, Envelope, SocketModeStandIn
from bot.local.stack import APPROVAL_CHANNEL, REP, LocalStack
from bot.server import Server
from bot.slack.oauth import installation_store
from bot.xpay.sandbox import SandboxConfig, SandboxIntent, make_sandbox_blueprint
from tests.conftest import FIELDS, Flow

CREATE_PATH = "/sandbox/public/v1/payment/checkout"  # a gateway's "create checkout" route


class TeamFlow(Flow):
    """The Slack flow as people of workspace ``team`` play it, its cards in ``channel``.

    Modals are told apart by the trigger that opened them, so the flows of two workspaces
    may run at the same time on one stack."""

    def __init__(
        self,
        stack: LocalStack,
        team: str,
        channel: str = APPROVAL_CHANNEL,
        *,
        sim: SocketSimulator | None = None,
    ):
        super().__init__(stack, channel)
        self.team = team
        self.origin = Origin(team=team)
        if sim is not None:  # Slack's side over Socket Mode rather than HTTP
            self.sim = sim  # type: ignore[assignment]

    def command(self, user: str, text: str = "", channel: str = "C0SALES") -> requests.Response:
        """``/paylink <text>`` typed by ``user`` in ``channel``; the bot's answer to it."""
        return self.sim.command(user, text, channel=channel, team=self.team)

    def open_modal(self, user: str = REP, text: str = "", channel: str = "C0SALES") -> dict:
        trigger = new_trigger_id()
        response = self.sim.command(user, text, channel=channel, team=self.team, trigger_id=trigger)
        assert response.status_code == 200 and not response.content.strip(), response.text
        return self.opened(trigger)

    def opened(self, trigger: str) -> dict:
        """The modal the bot opened with ``trigger`` (waits for it), opened with the
        workspace's own token."""
        call = self.slack.wait_for(
            lambda s: next(
                (
                    c
                    for c in s.calls_of("views.open")
                    if c.ok and c.params.get("trigger_id") == trigger
                ),
                None,
            )
        )
        assert call.team == self.team, call
        view = self.slack.view(call.response["view"]["id"])
        assert view is not None
        return view

    def submit(self, user: str = REP, view: dict | None = None, **fields: Any) -> Any:
        view = view or self.open_modal(user)
        values = state_values(view, {**FIELDS, **fields})
        return self.sim.submit_view(user, view, values, origin=self.origin)

    def click(self, user: str, ts: str, action_id: str) -> requests.Response:
        return click_as(self, self.origin, user, ts, action_id)

    def home(self, user: str) -> dict:
        """App Home as ``user`` opens it (waits for the bot to publish it, with the
        workspace's own token)."""

        def published(s: Any) -> list[Any]:
            return [
                c
                for c in s.calls_of("views.publish")
                if c.ok and c.params.get("user_id") == user and c.team == self.team
            ]

        seen = len(published(self.slack))
        self.sim.home_opened(user, team=self.team).raise_for_status()
        call = self.slack.wait_for(
            lambda s: (found := published(s)) and len(found) > seen and found[seen]
        )
        return call.response["view"]

    def open_from(self, user: str, view: dict, action_id: str) -> dict:
        """Click the button ``action_id`` in ``view`` (App Home) as ``user``; the modal it
        opens."""
        trigger = new_trigger_id()
        response = self.sim.click_view(
            user, view, action_id, origin=self.origin, trigger_id=trigger
        )
        assert response.status_code == 200, response.text
        return self.opened(trigger)

    def jobs(self) -> list[Job]:
        with self.stack.runtime.store.reading() as s:
            return list(s.scalars(select(Job).order_by(Job.id)))

    def installed(self) -> bool:
        store = installation_store(self.stack.settings, self.stack.runtime.engine)
        return store.find_installation(enterprise_id=None, team_id=self.team) is not None


@dataclass(frozen=True)
class Acked:
    """An envelope's ack, read as the HTTP answer it stands in for: 200, with the payload
    the app sent with the ack (if any) as the JSON body."""

    envelope: Envelope
    ack: Ack
    status_code: int = 200

    @property
    def content(self) -> bytes:
        return json.dumps(self.ack.payload).encode() if self.ack.payload else b""

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        return self.ack.payload

    def raise_for_status(self) -> None:
        """An ack is never an error."""


class SocketSimulator:
    """``SlackSimulator``'s steps over the Socket Mode stand-in: each sends an envelope and
    returns its ack (:class:`Acked`, waited for up to ``timeout`` seconds), so that
    ``TeamFlow(stack, team, sim=SocketSimulator(stack.socket))`` plays a workspace's flow
    over a ``paylink socket`` process's connection."""

    def __init__(self, socket: SocketModeStandIn, *, timeout: float = 20.0):
        self.socket = socket
        self.timeout = timeout

    def _acked(self, envelope: Envelope) -> Acked:
        return Acked(envelope, self.socket.wait_for_ack(envelope, self.timeout))

    def command(
        self,
        user: str,
        text: str = "",
        *,
        channel: str = "C0SALES",
        trigger_id: str | None = None,
        team: str,
    ) -> Acked:
        payload = command_payload(user, text, channel, trigger_id, team)
        return self._acked(
            self.socket.send("slash_commands", payload, accepts_response_payload=True)
        )

    def submit_view(
        self, user: str, view: dict[str, Any], values: dict[str, Any], *, origin: Origin
    ) -> Acked:
        return self._acked(
            self.socket.interactive(view_submission_payload(user, view, values, origin))
        )

    def click(
        self, user: str, message: dict[str, Any], action_id: str, *, channel: str, origin: Origin
    ) -> Acked:
        payload = click_payload(user, message, action_id, channel=channel, origin=origin)
        return self._acked(self.socket.interactive(payload))

    def home_opened(self, user: str, *, team: str) -> Acked:
        return self._acked(self.socket.event(home_opened_payload(user, team)))

    def event(self, event: dict[str, Any], *, team: str) -> Acked:
        return self._acked(self.socket.event(event_payload(event, team)))


def click_as(flow: Flow, origin: Origin, user: str, ts: str, action_id: str) -> requests.Response:
    """Click a button of the card ``ts`` (in ``flow``'s channel) as ``user`` of ``origin``."""
    card = flow.card(ts)
    response = flow.sim.click(
        user, {"ts": ts, "blocks": card.blocks}, action_id, channel=flow.channel, origin=origin
    )
    assert response.status_code == 200, response.text
    return response


def thanked(response: requests.Response) -> bool:
    """True when an install's redirect back to Paylink answered with its thank-you page."""
    return response.status_code == 200 and "Thank you!" in response.text


@pytest.fixture
def distributed() -> Iterator[Callable[..., LocalStack]]:
    """``distributed(**options)``: a LocalStack in multi-workspace mode, installed nowhere."""
    stacks: list[LocalStack] = []

    def make(**options: Any) -> LocalStack:
        stack = LocalStack(multi_workspace=True, **options).__enter__()
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()


@dataclass(frozen=True)
class Answered:
    """A request a sandbox gateway answered, with the keys it came with."""

    method: str
    path: str
    status: int
    api_key: str
    account_id: str


@dataclass
class SandboxGateway:
    """A sandbox gateway of its own: its keys and addresses (``config``; the test sets its
    webhook URL once the store exists), the intents it holds and the requests it answered."""

    config: SandboxConfig
    sessions: sessionmaker
    answered: list[Answered] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def heard(self, response: Response) -> Response:
        """A Flask ``after_request`` hook: note the request answered."""
        seen = Answered(
            request.method,
            request.path,
            response.status_code,
            request.headers.get("x-api-key", ""),
            request.headers.get("x-account-id", ""),
        )
        with self._lock:
            self.answered.append(seen)
        return response

    def creations(self) -> list[Answered]:
        """The "create checkout" requests it answered, oldest first."""
        with self._lock:
            return [a for a in self.answered if (a.method, a.path) == ("POST", CREATE_PATH)]

    def intents(self) -> list[SandboxIntent]:
        """The payment intents it created."""
        with self.sessions() as s:
            return list(s.scalars(select(SandboxIntent).order_by(SandboxIntent.created_at)))


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[Callable[[str], SandboxGateway]]:
    """``start(name)``: a sandbox gateway with keys of its own, on a port of its own (an
    XPay store's stand-in); its webhook URL is set once the store exists."""
    stops: list[Callable[[], None]] = []

    def start(name: str) -> SandboxGateway:
        engine = make_engine(f"sqlite:///{tmp_path / name}.db")
        Base.metadata.create_all(engine)
        config = SandboxConfig(
            api_key=secrets.token_hex(16),
            account_id=f"acct-{name}",
            hmac_secret=secrets.token_hex(16),
            webhook_secret=secrets.token_hex(16),
            public_url="",
            webhook_url="",
            webhook_retry_delays=(0.05,),
            webhook_background_delays=(),
        )
        gateway = SandboxGateway(config, make_sessionmaker(engine))
        app = Flask(f"gateway-{name}")
        app.register_blueprint(
            make_sandbox_blueprint(config, gateway.sessions), url_prefix="/sandbox"
        )
        app.after_request(gateway.heard)
        server = Server(app, host="127.0.0.1", port=0, threads=4)
        config.public_url = f"http://127.0.0.1:{server.port}"
        server.start()
        stops.append(server.close)
        stops.append(engine.dispose)
        return gateway

    yield start
    for stop in stops:
        stop()
