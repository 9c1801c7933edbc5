"""``paylink demo``: the whole flow on this machine, printed as the Slack thread people see."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from bot.local.simulator import state_values
from bot.local.stack import APPROVAL_CHANNEL, APPROVER, REP, SECOND_APPROVER, LocalStack
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


def _name(stack: LocalStack, user: str) -> str:
    return f"@{stack.slack.display_name(user)}"


def _send_request(stack: LocalStack, step: FlowStep, amount: str, sent: str) -> Any:
    """The rep types ``/paylink <amount> PKR`` and submits the modal (``sent`` says what
    follows); returns the new card."""
    slack, sim = stack.slack, stack.simulator
    before = {m.ts for m in slack.messages(APPROVAL_CHANNEL)}
    opened = len(slack.views_opened)
    step(f"{_name(stack, REP)} types /paylink {amount} PKR")
    sim.command(REP, f"{amount} PKR", channel="C0SALES").raise_for_status()
    view = slack.wait_for(lambda s: s.views_opened[-1] if len(s.views_opened) > opened else None)
    view = view.get("view", view)

    step(f"fills the modal and {sent}")
    fields = dict(DEMO_FIELDS, amount=amount, currency="PKR")
    response = sim.submit_view(REP, view, state_values(view, fields))
    if response.status_code != 200 or response.content.strip():
        raise AssertionError(f"modal submission refused: {response.status_code} {response.text}")
    return slack.wait_for(
        lambda s: next(
            (m for m in s.messages(APPROVAL_CHANNEL) if m.thread_ts is None and m.ts not in before),
            None,
        )
    )


def play_flow(
    stack: LocalStack, *, decline: bool = False, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Command → modal → submit → approve → pay on the sandbox → webhook; returns the card."""
    slack, sim = stack.slack, stack.simulator
    step = FlowStep(say)
    approver = _name(stack, APPROVER)
    card = _send_request(stack, step, DEMO_FIELDS["amount"], "sends it for approval")

    step(f"{approver} approves in #{APPROVAL_CHANNEL}")
    sim.click(APPROVER, _as_message(card), blocks.ActionId.APPROVE, channel=APPROVAL_CHANNEL)
    reply = slack.wait_for(lambda s: _reply_with_link(s, card.ts))
    checkout_url = reply

    step(f"the customer opens {checkout_url} and {'declines' if decline else 'pays'}")
    _checkout(checkout_url, "decline" if decline else "pay")

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


def _checkout(checkout_url: str, outcome: str = "pay") -> None:
    """The customer opens the sandbox checkout page and clicks Pay (or Decline)."""
    requests.get(checkout_url, timeout=10).raise_for_status()
    requests.post(
        checkout_url.rstrip("/") + "/pay", data={"outcome": outcome, "method": "card"}, timeout=10
    ).raise_for_status()


def _as_message(posted: Any) -> dict[str, Any]:
    return {"ts": posted.ts, "blocks": posted.blocks}


CHECKOUT_URL = re.compile(r"https?://[^\s|>]+/sandbox/checkout/[\w-]+")


def _reply_with_link(slack: Any, ts: str) -> str | None:
    for message in slack.thread(APPROVAL_CHANNEL, ts)[1:]:
        match = CHECKOUT_URL.search(str(message.blocks))
        if match:
            return match.group(0)
    return None


# --- paylink demo --policy -------------------------------------------------------------------

#: The policy the ``--policy`` run plays under, its two approvers and its timers.
POLICY_SETTINGS: dict[str, Any] = {
    "paylink_auto_approve_under": "PKR:10000",
    "paylink_second_approval_from": "PKR:100000",
    "paylink_approvers": [APPROVER, SECOND_APPROVER],
    # Second-scale timers, so that a reminder and an expiry happen within the run. The other
    # scenes' links are paid at once, well before either reaches them.
    "paylink_remind_approvers_after": "2s",
    "paylink_remind_rep_after": "3s",
    "paylink_link_ttl": "5s",
}


@dataclass
class Scene:
    """What a scene of the ``--policy`` run plays on: the stack, the numbered steps, and
    the cards whose threads are printed (each scene adds those it made, in order)."""

    stack: LocalStack
    step: FlowStep
    cards: list[str] = field(default_factory=list)

    def card_status(self, ts: str) -> str:
        """The card's text as it is now."""
        return self.stack.slack.render_thread_text(APPROVAL_CHANNEL, ts)

    def wait_link(self, ts: str) -> str:
        """Wait for the checkout link in the card's thread; returns it."""
        return self.stack.slack.wait_for(lambda s: _reply_with_link(s, ts))

    def approve(self, card: Any) -> str:
        """The (first) approver approves ``card``; returns the checkout link that follows."""
        self.step(f"{_name(self.stack, APPROVER)} approves; the checkout link follows")
        self.stack.simulator.click(
            APPROVER, _as_message(card), blocks.ActionId.APPROVE, channel=APPROVAL_CHANNEL
        )
        return self.wait_link(card.ts)

    def wait_reply(self, ts: str, needle: str, timeout: float = 10.0) -> str:
        """Wait for a reply in the card's thread containing ``needle``; returns its blocks
        as text (mrkdwn)."""

        def found(slack: Any) -> str | None:
            replies = (str(m.blocks) for m in slack.thread(APPROVAL_CHANNEL, ts)[1:])
            return next((text for text in replies if needle in text), None)

        return self.stack.slack.wait_for(found, timeout=timeout)

    def pay(self, ts: str, checkout_url: str) -> None:
        """The customer pays ``checkout_url``; wait for the card's Paid reply."""
        self.step("the customer pays; XPay's webhook arrives and the card shows Paid")
        _checkout(checkout_url)
        self.wait_reply(ts, ":white_check_mark: Paid:")


def _auto_approved(scene: Scene) -> None:
    """A small request: the policy approves it, nobody clicks."""
    card = _send_request(scene.stack, scene.step, "5000", "sends it: under PKR 10,000")
    scene.step("the policy approves it at once; the checkout link follows, nobody clicked")
    checkout_url = scene.wait_link(card.ts)
    if "Approved automatically: under PKR 10,000" not in scene.card_status(card.ts):
        raise AssertionError("the card does not say it was approved automatically")
    scene.pay(card.ts, checkout_url)
    scene.cards.append(card.ts)


def _two_approvers(scene: Scene) -> None:
    """A large request: approved by two different approvers, the link on the second."""
    stack, step = scene.stack, scene.step
    card = _send_request(stack, step, "150000", "sends it: PKR 100,000 or more needs two")
    first, second = _name(stack, APPROVER), _name(stack, SECOND_APPROVER)
    message = {"ts": card.ts, "blocks": card.blocks}
    step(f"{first} approves; the card waits for a second approver")
    stack.simulator.click(APPROVER, message, blocks.ActionId.APPROVE, channel=APPROVAL_CHANNEL)
    stack.slack.wait_for(lambda s: "waiting for a second approver" in scene.card_status(card.ts))
    step(f"{second} approves too; the checkout link follows")
    stack.simulator.click(
        SECOND_APPROVER, message, blocks.ActionId.APPROVE, channel=APPROVAL_CHANNEL
    )
    scene.pay(card.ts, scene.wait_link(card.ts))
    scene.cards.append(card.ts)


def _approvers_reminded(scene: Scene) -> None:
    """A request nobody decides on: the approvers are reminded in its thread."""
    stack, step = scene.stack, scene.step
    card = _send_request(stack, step, "25000", "sends it for approval")
    after = stack.settings.paylink_remind_approvers_after.total_seconds()
    step(f"nobody decides for {after:g} s: the approvers are reminded in the thread")
    scene.wait_reply(card.ts, "for approval")
    scene.pay(card.ts, scene.approve(card))
    scene.cards.append(card.ts)


def _renewed(scene: Scene) -> None:
    """A link left unpaid: the rep is reminded, it expires, the rep renews it and the
    customer pays the new link (the request's reference with ``-2``)."""
    stack, step = scene.stack, scene.step
    card = _send_request(stack, step, "40000", "sends it for approval")
    scene.approve(card)
    ttl = stack.settings.paylink_link_ttl.total_seconds()
    step(f"the customer does not pay: the rep is reminded, and after {ttl:g} s the link expires")
    scene.wait_reply(card.ts, "for payment")
    expired = scene.wait_reply(card.ts, "expired without payment")
    reference = re.search(r"checkout link (\S+) expired", expired)
    if reference is None:
        raise AssertionError(f"the expiry reply names no reference: {expired}")
    renewal = f"{reference.group(1)}-2"
    step(f"{_name(stack, REP)} clicks Renew; a new checkout link follows ({renewal})")
    (current, *_) = stack.slack.thread(APPROVAL_CHANNEL, card.ts)  # the card shows Renew now
    stack.simulator.click(
        REP, _as_message(current), blocks.ActionId.RENEW, channel=APPROVAL_CHANNEL
    )
    renewed = scene.wait_reply(card.ts, "new checkout link is ready")
    new_url = CHECKOUT_URL.search(renewed)
    if f"(reference {renewal})" not in renewed or new_url is None:
        raise AssertionError(f"the renewal reply is not for {renewal}: {renewed}")
    scene.pay(card.ts, new_url.group(0))
    scene.cards.append(card.ts)


#: The ``--policy`` run's scenes, played in order on one stack: append a scene to add it.
POLICY_SCENES: list[Callable[[Scene], None]] = [
    _auto_approved,
    _two_approvers,
    _approvers_reminded,
    _renewed,
]


def play_policy(stack: LocalStack, *, say: Callable[[str], None] = print) -> list[str]:
    """Play :data:`POLICY_SCENES`; returns the cards to print, in order."""
    scene = Scene(stack, FlowStep(say))
    for play in POLICY_SCENES:
        play(scene)
    return scene.cards


def run_demo(*, decline: bool = False, policy: bool = False) -> int:
    """Run the demo (``policy``: the approval policy's scenes); exit status 0 only if every
    step happened."""
    started = time.perf_counter()
    logging.getLogger().setLevel(logging.WARNING)  # the printed thread is the output
    print("Paylink demo: bot, Slack stand-in and sandbox XPay on this machine\n")
    try:
        with LocalStack(**(POLICY_SETTINGS if policy else {})) as stack:
            if policy:
                cards, final = play_policy(stack), None
            else:
                result = play_flow(stack, decline=decline)
                cards, final = [result["ts"]], result["final"]
            threads = [stack.slack.thread(APPROVAL_CHANNEL, ts) for ts in cards]
            # Shown once the stack has stopped, so its sandbox pages are gone by then.
            shows = SlackShows(stack.slack.display_name, gone_prefix=f"{stack.base_url}/sandbox/")
    except (AssertionError, requests.RequestException, LookupError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    if len(threads) == 1:
        print(f"\nThe thread in #{APPROVAL_CHANNEL}:\n")
    else:
        print(f"\nThe threads in #{APPROVAL_CHANNEL}, oldest first:\n")
    print("\n".join(render_thread(thread, shows) for thread in threads))
    elapsed = time.perf_counter() - started
    if final:
        print(f"Done in {elapsed:.1f}s: the card ends in {final}.")
    else:
        print(f"Done in {elapsed:.1f}s: {len(threads)} requests, each as its card shows.")
    return 0
