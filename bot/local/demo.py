"""``paylink demo``: the whole flow on this machine, printed as the Slack thread people see."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import requests

from bot.local.simulator import state_values
from bot.local.stack import APPROVAL_CHANNEL, APPROVER, REP, LocalStack
from bot.local.terminal import SlackShows, render_thread
from bot.slack import blocks

DEMO_FIELDS = {
    "amount": "15000",
    "customer_name": "Ayesha Khan",
    "customer_email": "ayesha.khan@example.com",
    "customer_phone": "03415682456",
    "address1": "12 Main Boulevard, Gulberg",
    "city": "Lahore",
    "province": "Punjab",
    "country": "Pakistan",
    "zip": "54000",
    "shipping_method": "Standard",
    "payment_methods": ["card", "jazzcash"],
}


class FlowStep:
    """Prints each step and fails loudly when one does not happen."""

    def __init__(self, out: Callable[[str], None]):
        self.out = out
        self.number = 0

    def __call__(self, title: str) -> None:
        self.number += 1
        self.out(f"{self.number}. {title}")


def play_flow(
    stack: LocalStack, *, decline: bool = False, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Command → modal → submit → approve → pay on the sandbox → webhook; returns the card."""
    slack, sim = stack.slack, stack.simulator
    step = FlowStep(say)
    rep, approver = (f"@{slack.display_name(user)}" for user in (REP, APPROVER))

    step(f"{rep} types /paylink 15000 PKR")
    response = sim.command(REP, "15000 PKR", channel="C0SALES")
    response.raise_for_status()
    view = slack.wait_for(lambda s: s.views_opened[-1] if s.views_opened else None)
    view = view.get("view", view)

    step("fills the modal and sends it for approval")
    response = sim.submit_view(REP, view, state_values(view, dict(DEMO_FIELDS, currency="PKR")))
    if response.status_code != 200 or response.content.strip():
        raise AssertionError(f"modal submission refused: {response.status_code} {response.text}")
    card = slack.wait_for(lambda s: next(iter(s.messages(APPROVAL_CHANNEL)), None))

    step(f"{approver} approves in #{APPROVAL_CHANNEL}")
    sim.click(APPROVER, _as_message(card), blocks.ActionId.APPROVE, channel=APPROVAL_CHANNEL)
    reply = slack.wait_for(lambda s: _reply_with_link(s, card.ts))
    checkout_url = reply

    step(f"the customer opens {checkout_url} and {'declines' if decline else 'pays'}")
    page = requests.get(checkout_url, timeout=10)
    page.raise_for_status()
    pay_url = checkout_url.rstrip("/") + "/pay"
    requests.post(
        pay_url, data={"outcome": "decline" if decline else "pay", "method": "card"}, timeout=10
    ).raise_for_status()

    final = "Payment failed" if decline else "Paid"
    step(f"XPay's webhook arrives; the card shows {final}")
    slack.wait_for(
        lambda s: (
            final in s.render_thread_text(APPROVAL_CHANNEL, card.ts)
            and len(s.thread(APPROVAL_CHANNEL, card.ts)) >= 3
        ),
        timeout=10,
    )
    return {"channel": APPROVAL_CHANNEL, "ts": card.ts, "final": final}


def _as_message(posted: Any) -> dict[str, Any]:
    return {"ts": posted.ts, "blocks": posted.blocks}


def _reply_with_link(slack: Any, ts: str) -> str | None:
    for message in slack.thread(APPROVAL_CHANNEL, ts)[1:]:
        match = re.search(r"https?://[^\s|>]+/sandbox/checkout/[\w-]+", str(message.blocks))
        if match:
            return match.group(0)
    return None


def run_demo(*, decline: bool = False) -> int:
    """Run the demo; exit status 0 only if every step happened."""
    started = time.perf_counter()
    logging.getLogger().setLevel(logging.WARNING)  # the printed thread is the output
    print("Paylink demo: bot, Slack stand-in and sandbox XPay on this machine\n")
    try:
        with LocalStack() as stack:
            result = play_flow(stack, decline=decline)
            thread = stack.slack.thread(result["channel"], result["ts"])
            # Shown once the stack has stopped, so its sandbox pages are gone by then.
            shows = SlackShows(stack.slack.display_name, gone_prefix=f"{stack.base_url}/sandbox/")
    except (AssertionError, requests.RequestException, LookupError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    print(f"\nThe thread in #{APPROVAL_CHANNEL}:\n")
    print(render_thread(thread, shows))
    print(f"Done in {time.perf_counter() - started:.1f}s: the card ends in {result['final']}.")
    return 0
