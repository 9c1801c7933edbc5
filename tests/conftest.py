"""Shared fixtures for the end-to-end Slack flow tests: a fresh LocalStack per test.

Everything goes over real HTTP: the bot on waitress, the Slack Web API stand-in and the
embedded sandbox gateway. ``Flow`` wraps a stack with the steps people take.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from bot.local.demo import DEMO_FIELDS
from bot.local.simulator import state_values
from bot.local.stack import APPROVAL_CHANNEL, APPROVER, REP, LocalStack
from bot.local.standin import PostedMessage
from bot.xpay.sandbox import SandboxIntent, sandbox_webhook_payload
from bot.xpay.signing import js_stringify, sign
from tests.waiting import wait_until

# The layer markers (tests/layers.py), the ``procs`` fixture (tests/procs.py), and the
# ``distributed`` and ``gateways`` fixtures (tests/workspaces.py).
pytest_plugins = ["tests.layers", "tests.procs", "tests.workspaces"]

FIELDS: dict[str, Any] = dict(DEMO_FIELDS, currency="PKR")


class Flow:
    """The steps of the Slack flow against one running LocalStack, whose cards are posted in
    ``channel`` (the approval channel)."""

    def __init__(self, stack: LocalStack, channel: str = APPROVAL_CHANNEL):
        self.stack = stack
        self.slack = stack.slack
        self.sim = stack.simulator
        self.channel = channel

    # -- the rep -----------------------------------------------------------------------

    def open_modal(self, user: str = REP, text: str = "", channel: str = "C0SALES") -> dict:
        """``/paylink <text>``; returns the modal the bot opened."""
        seen = len(self.slack.views_opened)
        response = self.sim.command(user, text, channel=channel)
        assert response.status_code == 200, response.text
        return self.slack.wait_for(
            lambda s: s.views_opened[seen] if len(s.views_opened) > seen else None
        )

    def submit(self, user: str = REP, view: dict | None = None, **fields: Any) -> Any:
        """Fill the request modal (FIELDS overridden by ``fields``) and submit it."""
        view = view or self.open_modal(user)
        return self.sim.submit_view(user, view, state_values(view, {**FIELDS, **fields}))

    def request(
        self, user: str = REP, view: dict | None = None, *, typed_in: str = "C0SALES", **fields: Any
    ) -> PostedMessage:
        """Submit a valid request (in ``view``, else ``/paylink`` typed in ``typed_in``);
        returns the card posted in the approval channel."""
        before = {m.ts for m in self.slack.messages(self.channel)}
        view = view or self.open_modal(user, channel=typed_in)
        response = self.submit(user, view, **fields)
        assert response.status_code == 200 and not response.content.strip(), response.text
        return self.slack.wait_for(
            lambda s: next(
                (m for m in s.messages(self.channel) if m.thread_ts is None and m.ts not in before),
                None,
            )
        )

    # -- Slack state ---------------------------------------------------------------------

    def card(self, ts: str) -> PostedMessage:
        """The card as it looks now."""
        found = self.slack.message(self.channel, ts)
        assert found is not None
        return found

    def status(self, ts: str) -> str:
        """The card's status section (mrkdwn)."""
        block = next(b for b in self.card(ts).blocks or [] if b.get("block_id") == "status")
        return block["text"]["text"]

    def replies(self, ts: str) -> list[str]:
        """The thread replies' texts (sections and contexts joined), oldest first."""
        return [_text(m.blocks) for m in self.slack.thread(self.channel, ts)[1:]]

    def wait_reply(self, ts: str, needle: str, timeout: float = 5.0) -> str:
        """The first thread reply containing ``needle`` (waits for it)."""
        return self.slack.wait_for(
            lambda s: next((r for r in self.replies(ts) if needle in r), None), timeout
        )

    def wait_status(self, ts: str, needle: str, timeout: float = 5.0) -> str:
        return self.slack.wait_for(lambda s: needle in self.status(ts) and self.status(ts), timeout)

    def ephemerals_for(self, user: str) -> list[str]:
        return [e.text or "" for e in self.slack.ephemerals if e.user == user]

    def wait_ephemeral(self, user: str, needle: str, count: int = 1) -> list[str]:
        """Wait until ``count`` ephemerals for ``user`` contain ``needle``; returns them."""
        return self.slack.wait_for(
            lambda s: (
                len(found := [t for t in self.ephemerals_for(user) if needle in t]) >= count
                and found
            )
        )

    # -- the approver ----------------------------------------------------------------------

    def click(self, user: str, ts: str, action_id: str) -> requests.Response:
        """Click a button on the card as it looks now, as ``user``."""
        card = self.card(ts)
        response = self.sim.click(
            user, {"ts": ts, "blocks": card.blocks}, action_id, channel=self.channel
        )
        assert response.status_code == 200, response.text
        return response

    def approve(self, ts: str, user: str = APPROVER) -> str:
        """Approve and wait for the checkout link in the thread; returns its URL."""
        self.click(user, ts, "paylink_approve")
        reply = self.wait_reply(ts, "checkout link is ready")
        match = re.search(r"<(https?://[^|>]+/sandbox/checkout/[^|>]+)>", reply)
        assert match, reply
        return match.group(1)

    # -- the customer and XPay -----------------------------------------------------------

    def checkout(self, url: str, outcome: str = "pay", method: str = "card") -> None:
        """Open the sandbox checkout page and click Pay or Decline."""
        requests.get(url, timeout=10).raise_for_status()
        requests.post(
            url + "/pay", data={"outcome": outcome, "method": method}, timeout=10
        ).raise_for_status()

    def intent(self, url: str) -> SandboxIntent:
        with self.stack.runtime.store.sessions() as s:
            found = s.get(SandboxIntent, url.rsplit("/", 1)[1])
            assert found is not None
            return found

    def intent_count(self) -> int:
        with self.stack.runtime.store.sessions() as s:
            return s.scalar(select(func.count()).select_from(SandboxIntent)) or 0

    def webhook(
        self, payload: dict[str, Any] | bytes, signature: str | None = None
    ) -> requests.Response:
        """POST a webhook to the bot, signed with the webhook secret unless told otherwise."""
        body = payload if isinstance(payload, bytes) else js_stringify(payload)
        sig = signature if signature is not None else sign(self.stack.webhook_secret, body)
        return requests.post(
            self.stack.base_url + "/xpay/webhook",
            data=body,
            headers={"Content-Type": "application/json", "x-signature": sig},
            timeout=10,
        )

    def paid_webhook(self, url: str, outcome: str = "pay", method: str = "card") -> dict:
        return sandbox_webhook_payload(self.intent(url), outcome, method)

    def idle(self, timeout: float = 5.0) -> None:
        """Wait until the job runner has done every job queued so far."""

        def health() -> dict[str, Any]:
            return requests.get(self.stack.base_url + "/healthz", timeout=5).json()

        wait_until(
            lambda: health()["outbox_backlog"] == 0,
            timeout,
            message=lambda: f"jobs not done: {health()}",
        )


def _text(blocks: Any) -> str:
    """All text in a list of blocks, joined with newlines."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
                out.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks)
    return "\n".join(out)


def check_slack_calls(stack: LocalStack) -> None:
    """Every Slack call the bot made succeeded, within Block Kit limits, with fallback text."""
    bad = [(c.method, c.response) for c in stack.slack.calls if not c.ok]
    assert not bad, f"Slack refused calls: {bad}"
    assert not stack.slack.missing_text_warnings


@pytest.fixture
def make_stack() -> Iterator[Callable[..., LocalStack]]:
    """``make_stack(**settings_overrides)`` starts a LocalStack, stopped after the test."""
    stacks: list[LocalStack] = []

    def make(**overrides: Any) -> LocalStack:
        stack = LocalStack(**overrides).__enter__()
        stacks.append(stack)
        return stack

    yield make
    try:
        for stack in stacks:
            check_slack_calls(stack)
    finally:
        for stack in stacks:
            stack.close()


@pytest.fixture
def stack(make_stack: Callable[..., LocalStack]) -> LocalStack:
    """A fresh LocalStack with the default settings."""
    return make_stack()


@pytest.fixture
def flow(stack: LocalStack) -> Flow:
    return Flow(stack)
