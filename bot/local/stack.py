"""A complete Paylink on one machine: the bot, a Slack stand-in and the sandbox gateway.

``paylink demo``, the end-to-end tests and the benchmarks all run on this. With
``socket_mode=True`` the bot is not run here: the stack is Slack's Web API and Socket Mode
stand-ins for a ``paylink socket`` process started with :meth:`LocalStack.environment`.
"""

from __future__ import annotations

import base64
import html
import re
import secrets
import socket
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
from pydantic import SecretStr

from bot.config import Settings, load_settings
from bot.local.simulator import SlackSimulator
from bot.local.standin import SlackStandIn
from bot.runtime import Runtime
from bot.schema import upgrade
from bot.server import Server
from bot.web import create_app

if TYPE_CHECKING:
    from bot.local.socketmode import SocketModeStandIn

REP, APPROVER, OUTSIDER = "U0REP", "U0APPROVER", "U0OUTSIDER"
SECOND_APPROVER = "U0CFO"  # an approver when the settings name them (two-approver flows)
APPROVAL_CHANNEL = "C0APPROVALS"
BOT_TOKEN = "xoxb-local-stand-in"  # noqa: S105  (the stand-in's token, not a real one)
APP_TOKEN = "xapp-local-stand-in"  # noqa: S105  (likewise)
CLIENT_ID = "1000000000.2000000000"  # the app's, in multi-workspace mode
#: The people of the stand-in's workspace, by the names Slack would show.
PEOPLE = {REP: "Sara", APPROVER: "Omar", OUTSIDER: "Bilal", SECOND_APPROVER: "Hina"}


# The settings LocalStack sets that a `paylink` process of the stack needs.
_PASSED_ON = (
    "slack_bot_token",
    "slack_app_token",
    "slack_signing_secret",
    "slack_api_url",
    "slack_client_id",
    "slack_client_secret",
    "paylink_secret_key",
    "xpay_env",
    "database_url",
    "paylink_approvers",
    "paylink_approval_channel",
    "paylink_public_url",
    "paylink_success_url",
    "port",
)


def _env_value(value: Any) -> str:
    """A setting as its environment variable spells it (lists comma-separated)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalStack:
    """Start with ``with LocalStack() as stack:``; everything stops on exit.

    ``socket_mode``: no bot here, and a Socket Mode stand-in (``socket``) beside Slack's:
    run ``paylink socket`` with :meth:`environment` (it listens on ``port``, its sandbox
    gateway and webhook at ``base_url``); ``runtime`` then only reads the shared database.
    ``multi_workspace``: Paylink is distributed (SLACK_CLIENT_ID) and has no workspace until
    :meth:`install` installs it in one; ``token_rotation`` (with ``token_ttl`` seconds) makes
    the stand-in issue expiring tokens with refresh tokens. Both: :meth:`install` goes through
    the ``paylink socket`` process's PORT, and :meth:`environment` carries the OAuth settings.
    """

    def __init__(
        self,
        *,
        database_url: str | None = None,
        workdir: Path | None = None,
        threads: int = 16,
        jobs_interval: float = 30.0,
        socket_mode: bool = False,
        multi_workspace: bool = False,
        token_rotation: bool = False,
        token_ttl: float = 43_200,
        **overrides: Any,
    ):
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="paylink-")
        self.workdir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        client_secret = secrets.token_hex(16)
        self.slack = SlackStandIn(
            bot_token=BOT_TOKEN,
            app_token=APP_TOKEN,
            usergroups={"S0FINANCE": [APPROVER]},
            users={
                user: {"name": name.lower(), "profile": {"display_name": name, "real_name": name}}
                for user, name in PEOPLE.items()
            },
            client_id=CLIENT_ID,
            client_secret=client_secret,
            token_rotation=token_rotation,
            token_ttl=token_ttl,
        )
        self.slack.start()
        self.socket: SocketModeStandIn | None = None
        if socket_mode:
            from bot.local.socketmode import SocketModeStandIn  # needs the `test` extra

            self.socket = SocketModeStandIn(self.slack).start()
        self.port = free_port()
        self.signing_secret = secrets.token_hex(16)
        values: dict[str, Any] = {
            "slack_bot_token": BOT_TOKEN,
            "slack_signing_secret": self.signing_secret,
            "slack_api_url": self.slack.base_url,
            "xpay_env": "sandbox",
            "database_url": database_url or f"sqlite:///{self.workdir / 'paylink.db'}",
            "paylink_approvers": [APPROVER],
            "paylink_approval_channel": APPROVAL_CHANNEL,
            "paylink_public_url": f"http://127.0.0.1:{self.port}",
            "paylink_success_url": f"http://127.0.0.1:{self.port}/healthz",
            "port": self.port,
            # Off: tests send the same request many times over. The guard's own tests, and
            # anyone who wants it, pass paylink_duplicate_window.
            "paylink_duplicate_window": timedelta(0),
            # No daily digest unless asked for: a message of its own in the approval channel,
            # due at a time of day, would make runs depend on the hour.
            "paylink_digest_at": None,
        }
        if socket_mode:  # as a Socket Mode app is set up: an app token, no signing secret
            values.update(slack_app_token=APP_TOKEN, slack_signing_secret=None)
        if multi_workspace:
            values.update(
                slack_bot_token=None,
                slack_client_id=CLIENT_ID,
                slack_client_secret=client_secret,
                paylink_secret_key=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            )
        values.update(overrides)
        self.settings: Settings = load_settings(_env_file=None, **values)
        self.runtime = Runtime(self.settings, jobs_interval=jobs_interval, slack=not socket_mode)
        upgrade(self.runtime.engine)
        self.server = (
            None
            if socket_mode
            else Server(create_app(self.runtime), host="127.0.0.1", port=self.port, threads=threads)
        )
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.simulator = SlackSimulator(self.base_url, self.signing_secret)

    @property
    def webhook_secret(self) -> str:
        """The secret XPay's webhooks to this bot are signed with (the sandbox's own, made
        at random for this database, unless the settings name one)."""
        return self.runtime.gateway_keys.webhook_secrets()[0]

    def environment(self) -> dict[str, str]:
        """The settings as environment variables, for a ``paylink`` process of this stack."""
        env = {
            name.upper(): _env_value(value)
            for name, value in self.settings.model_dump().items()
            if name in _PASSED_ON and value is not None
        }
        return {**env, "PAYLINK_HOST": "127.0.0.1"}

    def install(self, team: str) -> requests.Response:
        """Install Paylink in workspace ``team`` as its admin would, in a browser of their
        own: the install page, Slack approving it, and Slack's redirect back to the bot (the
        answer to that redirect is returned)."""
        page = requests.get(self.base_url + "/slack/install", timeout=10)
        page.raise_for_status()
        found = re.search(r'href="([^"]*/oauth/v2/authorize[^"]*)"', page.text)
        if found is None:
            raise LookupError("no Add to Slack link on the install page")
        approved = requests.get(
            html.unescape(found.group(1)) + f"&team={team}", allow_redirects=False, timeout=10
        )
        # The state cookie is Secure (https only): this browser sends it over http all the same.
        cookie = page.headers["Set-Cookie"].split(";", 1)[0]
        return requests.get(approved.headers["Location"], headers={"Cookie": cookie}, timeout=10)

    def __enter__(self) -> LocalStack:
        if self.server is not None:
            self.server.start()
            self.runtime.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server, background work and the stand-ins."""
        if self.server is not None:
            self.server.close()
        self.runtime.stop()
        if self.socket is not None:
            self.socket.stop()
        self.slack.stop()
        if self._tmp:
            self._tmp.cleanup()
