"""A complete Paylink on one machine: the bot, a Slack stand-in and the sandbox gateway.

``paylink demo``, the end-to-end tests and the benchmarks all run on this.
"""

from __future__ import annotations

import secrets
import socket
import tempfile
from pathlib import Path
from typing import Any

from bot.config import Settings, load_settings
from bot.local.simulator import SlackSimulator
from bot.local.standin import SlackStandIn
from bot.runtime import Runtime
from bot.schema import upgrade
from bot.server import Server
from bot.web import create_app

REP, APPROVER, OUTSIDER = "U0REP", "U0APPROVER", "U0OUTSIDER"
APPROVAL_CHANNEL = "C0APPROVALS"
BOT_TOKEN = "xoxb-local-stand-in"  # noqa: S105  (the stand-in's token, not a real one)
#: The people of the stand-in's workspace, by the names Slack would show.
PEOPLE = {REP: "Sara", APPROVER: "Omar", OUTSIDER: "Bilal"}


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalStack:
    """Start with ``with LocalStack() as stack:``; everything stops on exit."""

    def __init__(
        self,
        *,
        database_url: str | None = None,
        workdir: Path | None = None,
        threads: int = 16,
        jobs_interval: float = 30.0,
        **overrides: Any,
    ):
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="paylink-")
        self.workdir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        self.slack = SlackStandIn(
            bot_token=BOT_TOKEN,
            usergroups={"S0FINANCE": [APPROVER]},
            users={
                user: {"name": name.lower(), "profile": {"display_name": name, "real_name": name}}
                for user, name in PEOPLE.items()
            },
        )
        self.slack.start()
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
            # No daily digest unless asked for: a message of its own in the approval channel,
            # due at a time of day, would make runs depend on the hour.
            "paylink_digest_at": None,
        }
        values.update(overrides)
        self.settings: Settings = load_settings(_env_file=None, **values)
        self.runtime = Runtime(self.settings, jobs_interval=jobs_interval)
        upgrade(self.runtime.engine)
        self.server = Server(
            create_app(self.runtime), host="127.0.0.1", port=self.port, threads=threads
        )
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.simulator = SlackSimulator(self.base_url, self.signing_secret)

    @property
    def webhook_secret(self) -> str:
        """The secret XPay's webhooks to this bot are signed with (the sandbox's own, made
        at random for this database, unless the settings name one)."""
        return self.runtime.gateway_keys.webhook_secrets()[0]

    def __enter__(self) -> LocalStack:
        self.server.start()
        self.runtime.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server, background work and the stand-in."""
        self.server.close()
        self.runtime.stop()
        self.slack.stop()
        if self._tmp:
            self._tmp.cleanup()
