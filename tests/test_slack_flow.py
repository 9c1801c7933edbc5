"""The Slack flow end to end over real HTTP (command, modal, approval, link, payment).

A LocalStack per test: the WSGI app on waitress, the Slack Web API stand-in and the embedded
sandbox gateway. Slack's side is played by the signed SlackSimulator; the customer's by HTTP
requests to the sandbox checkout page. No mocks. Every test also checks (in the fixture) that
each Slack call the bot made was accepted, within Block Kit limits and with fallback text.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import requests

from bot.links.states import SANDBOX_LABEL
from bot.local.simulator import state_values
from bot.local.stack import APPROVAL_CHANNEL, APPROVER, OUTSIDER, REP, LocalStack
from bot.local.standin import PostedMessage
from bot.slack import blocks
from bot.xpay.signing import js_stringify, sign
from tests.conftest import Flow, _text
from tests.stubs import Answer, StubServer

APPROVER2 = "U0APPROVER2"
INJECTION = "<!channel> & <https://x|y>"
ESCAPED = "&lt;!channel&gt; &amp; &lt;https://x|y&gt;"
FREE_TEXT = ("customer_name", "address1", "city", "province", "country", "zip", "shipping_method")


def buttons(message: Any) -> list[str]:
    """action_ids of every button on a message."""
    return [
        el.get("action_id")
        for block in message.blocks or []
        for el in [*(block.get("elements") or []), block.get("accessory") or {}]
        if el.get("type") == "button"
    ]


def strings(node: Any) -> Iterator[str]:
    """Every string anywhere in a JSON-like value."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def mrkdwn_texts(call: Any) -> Iterator[str]:
    """Every mrkdwn text a call carries: ``text`` of chat.* and mrkdwn objects in blocks/views."""
    if call.method.startswith("chat.") and isinstance(call.params.get("text"), str):
        yield call.params["text"]

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
                yield node["text"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    yield from walk([call.params.get("blocks"), call.params.get("view")])


RENDERED = {
    "chat.postMessage",
    "chat.update",
    "chat.postEphemeral",
    "views.open",
    "views.update",
    "views.push",
    "views.publish",
}


# --------------------------------------------------------------------------------------
# A stub XPay: refuses, answers slowly, or passes requests on to the embedded sandbox.


class XPayStub(StubServer):
    """``mode`` is "fail" (400 Store disabled) or "proxy" (to ``target``); ``delay`` seconds."""

    def __init__(self) -> None:
        self.mode = "fail"
        self.delay = 0.0
        self.target = ""
        self.creates = 0
        super().__init__(self._answer)

    def _answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> Answer:
        if handler.command == "POST":
            self.creates += 1
        self.wait(self.delay)  # a slow XPay is the scenario (cut short when the test ends)
        if self.mode == "fail":
            return 400, {"success": False, "message": "Store disabled"}
        headers = {
            k: v
            for k, v in handler.headers.items()
            if k.lower() in ("x-api-key", "x-account-id", "x-signature", "content-type")
        }
        answer = requests.request(
            handler.command, self.target + handler.path, data=body, headers=headers, timeout=10
        )
        return answer.status_code, answer.content


@pytest.fixture
def xpay_stub() -> Iterator[XPayStub]:
    stub = XPayStub()
    yield stub
    stub.close()


def stub_stack(make_stack: Callable[..., LocalStack], stub: XPayStub) -> Flow:
    stack = make_stack(xpay_base_url=stub.url)
    stub.target = stack.base_url + "/sandbox"
    return Flow(stack)


# --------------------------------------------------------------------------------------
# 1. The happy path


def test_happy_path_to_paid(flow: Flow) -> None:
    card = flow.request()
    assert "Awaiting approval" in flow.status(card.ts)
    assert buttons(card) == [
        "paylink_approve",
        "paylink_reject_open",
        "paylink_cancel",
        "paylink_show_contact",
    ]

    # The rep is told, where they typed /paylink, with a link to the card.
    [sent] = flow.wait_ephemeral(REP, "Sent for approval")
    ephemeral = next(e for e in flow.slack.ephemerals if e.user == REP)
    assert ephemeral.channel == "C0SALES"
    permalink = f"/archives/{APPROVAL_CHANNEL}/p{card.ts.replace('.', '')}"
    assert re.search(rf"<https://[^|>]+{re.escape(permalink)}\|View the request>", sent)

    url = flow.approve(card.ts)
    assert "/sandbox/checkout/" in url
    assert "Approved by <@U0APPROVER>" in flow.wait_status(card.ts, "Awaiting payment")

    flow.checkout(url, "pay", "card")
    paid = flow.wait_reply(card.ts, "Paid:")
    assert "PKR 15,000" in paid and "via Card" in paid
    assert "The payment was completed successfully" in paid
    assert "<@U0REP>" in paid

    status = flow.wait_status(card.ts, "Paid")
    assert status.startswith("*Status:* :white_check_mark: Paid")
    flow.idle()
    final = flow.card(card.ts)
    assert buttons(final) == ["paylink_show_contact"]  # no more Approve, Cancel, checkout
    replies = flow.replies(card.ts)
    assert len(replies) == 2
    assert "checkout link is ready" in replies[0] and "Paid:" in replies[1]


def test_a_sandbox_link_says_it_is_a_test_everywhere(flow: Flow) -> None:
    card = flow.request()
    assert SANDBOX_LABEL in _text(card.blocks) and (card.text or "").startswith("TEST: ")
    url = flow.approve(card.ts)
    assert SANDBOX_LABEL in flow.wait_reply(card.ts, "checkout link is ready")
    flow.checkout(url, "decline")
    assert SANDBOX_LABEL in flow.wait_reply(card.ts, "Payment failed")
    assert flow.webhook(flow.paid_webhook(url)).status_code == 200  # paid on a second try
    assert SANDBOX_LABEL in flow.wait_reply(card.ts, "Paid:")
    flow.idle()
    assert SANDBOX_LABEL in _text(flow.card(card.ts).blocks)
    flow.sim.home_opened(REP).raise_for_status()
    home = flow.slack.wait_for(lambda s: s.home_views.get(REP))
    assert ":test_tube: TEST" in _text(home["blocks"])


# --------------------------------------------------------------------------------------
# 2. /paylink help and pre-filling


def test_help_is_ephemeral_usage_without_modal(flow: Flow) -> None:
    response = flow.sim.command(REP, "help")
    assert response.status_code == 200
    # Bolt answers ack(text=...) with a text/plain body, which Slack shows only to the user;
    # a JSON body must not ask for an in-channel response.
    if response.headers["Content-Type"].startswith("application/json"):
        body = response.json()
        assert body.get("response_type", "ephemeral") == "ephemeral"
        usage = body["text"]
    else:
        usage = response.text
    assert "/paylink 5000" in usage and "/paylink help" in usage
    flow.open_modal(REP)  # a later /paylink opens the only modal
    assert len(flow.slack.views_opened) == 1
    assert flow.slack.calls_of("views.open")[0].params["view"]["callback_id"] == "paylink_request"


def test_amount_and_currency_prefill(flow: Flow) -> None:
    view = flow.open_modal(REP, "5000 PKR")
    amount = next(b for b in view["blocks"] if b.get("block_id") == "amount")
    assert Decimal(amount["element"]["initial_value"]) == Decimal(5000)
    currency = next(b for b in view["blocks"] if b.get("block_id") == "currency")
    assert currency["element"]["initial_option"]["value"] == "PKR"


# --------------------------------------------------------------------------------------
# 3. Validation errors inline


INVALID = [
    ({"amount": "0"}, "amount"),
    ({"amount": "1.234"}, "amount"),
    ({"amount": "abc"}, "amount"),
    ({"customer_email": "not-an-email"}, "customer_email"),
    ({"customer_phone": "12345"}, "customer_phone"),
    ({"customer_email": "", "customer_phone": ""}, "customer_email"),
    ({"success_url": "ftp://example.com/done"}, "success_url"),
    ({"failure_url": "javascript:alert(1)"}, "failure_url"),
    ({"order_reference": INJECTION}, "order_reference"),
]


def test_validation_errors_inline(flow: Flow) -> None:
    view = flow.open_modal()  # the modal stays open while errors are shown: resubmit it
    input_blocks = {b["block_id"] for b in view["blocks"] if b["type"] == "input"}
    for fields, block_id in INVALID:
        response = flow.submit(view=view, **fields)
        assert response.status_code == 200, fields
        body = response.json()
        assert body["response_action"] == "errors", fields
        assert list(body["errors"]) == [block_id], fields
        assert body["errors"][block_id] and block_id in input_blocks
    flow.idle()
    assert flow.slack.calls_of("chat.postMessage") == []


def test_amount_above_the_maximum(make_stack: Callable[..., LocalStack]) -> None:
    flow = Flow(make_stack(paylink_max_amount=10000))
    response = flow.submit(amount="10000.01")
    assert response.json()["response_action"] == "errors"
    assert list(response.json()["errors"]) == ["amount"]
    flow.request(amount="10000")


def test_pakistani_phone_alone_accepted_and_duplicate_reference_refused(flow: Flow) -> None:
    card = flow.request(customer_email="", customer_phone="03415682456", order_reference="ORD-1")
    assert "2456" in _text(card.blocks)

    view = flow.open_modal()
    response = flow.submit(view=view, order_reference="ORD-1")
    assert response.status_code == 200
    body = response.json()
    assert body["response_action"] == "errors" and list(body["errors"]) == ["order_reference"]
    flow.idle()
    assert len(flow.slack.calls_of("chat.postMessage")) == 1


# --------------------------------------------------------------------------------------
# 4. Who may approve


def test_outsider_cannot_approve(flow: Flow) -> None:
    card = flow.request()
    flow.idle()
    before = flow.card(card.ts)
    flow.click(OUTSIDER, card.ts, "paylink_approve")
    [told] = flow.wait_ephemeral(OUTSIDER, "approvers")
    assert "PAYLINK_APPROVERS" in told
    flow.click(OUTSIDER, card.ts, "paylink_reject_open")
    flow.wait_ephemeral(OUTSIDER, "approvers", count=2)
    flow.idle()
    after = flow.card(card.ts)
    assert (after.blocks, after.updated) == (before.blocks, before.updated)
    assert flow.intent_count() == 0
    assert [v["callback_id"] for v in flow.slack.views_opened] == ["paylink_request"]


def test_requester_cannot_self_approve(make_stack: Callable[..., LocalStack]) -> None:
    flow = Flow(make_stack(paylink_approvers=[APPROVER, REP]))
    card = flow.request(REP)
    flow.idle()
    before = flow.card(card.ts)
    flow.click(REP, card.ts, "paylink_approve")
    flow.wait_ephemeral(REP, "another approver")
    flow.idle()
    assert flow.card(card.ts).updated == before.updated
    assert flow.intent_count() == 0
    flow.approve(card.ts, APPROVER)  # someone else still can


def test_self_approval_when_allowed(make_stack: Callable[..., LocalStack]) -> None:
    flow = Flow(make_stack(paylink_approvers=[REP], paylink_allow_self_approval=True))
    card = flow.request(REP)
    flow.approve(card.ts, REP)
    assert "Approved by <@U0REP>" in flow.wait_status(card.ts, "Awaiting payment")


def test_approver_via_user_group(make_stack: Callable[..., LocalStack]) -> None:
    flow = Flow(make_stack(paylink_approvers=["S0FINANCE"]))
    card = flow.request()
    flow.click(OUTSIDER, card.ts, "paylink_approve")
    flow.wait_ephemeral(OUTSIDER, "approvers")
    flow.approve(card.ts, APPROVER)
    assert flow.intent_count() == 1


# --------------------------------------------------------------------------------------
# 5. Concurrent approvals have exactly one effect


def test_concurrent_approvals_create_one_link(make_stack: Callable[..., LocalStack]) -> None:
    flow = Flow(make_stack(paylink_approvers=[APPROVER, APPROVER2]))
    card = flow.request()
    flow.idle()
    clickers = [APPROVER, APPROVER2] * 5
    barrier = threading.Barrier(len(clickers))

    def click(user: str) -> int:
        barrier.wait()
        return flow.click(user, card.ts, "paylink_approve").status_code

    with ThreadPoolExecutor(len(clickers)) as pool:
        assert list(pool.map(click, clickers)) == [200] * len(clickers)

    flow.wait_reply(card.ts, "checkout link is ready")
    flow.wait_status(card.ts, "Awaiting payment")
    refused = flow.slack.wait_for(
        lambda s: (
            len(found := [e for e in s.ephemerals if "already" in (e.text or "")])
            == len(clickers) - 1
            and found
        )
    )
    assert {e.user for e in refused} <= {APPROVER, APPROVER2}
    flow.idle()
    assert flow.intent_count() == 1
    assert len([r for r in flow.replies(card.ts) if "checkout link is ready" in r]) == 1
    assert len(flow.slack.ephemerals) == len(clickers) - 1 + 1  # + the rep's "sent for approval"


# --------------------------------------------------------------------------------------
# 6. Reject with a reason


def test_reject_with_reason(flow: Flow) -> None:
    card = flow.request()
    flow.click(APPROVER, card.ts, "paylink_reject_open")
    modal = flow.slack.wait_for(
        lambda s: next((v for v in s.views_opened if v["callback_id"] == "paylink_reject"), None)
    )
    assert flow.slack.calls_of("views.open")[-1].params["view"]["callback_id"] == "paylink_reject"

    for empty in ("", "   "):
        response = flow.sim.submit_view(APPROVER, modal, state_values(modal, {"reason": empty}))
        assert response.status_code == 200
        assert response.json()["response_action"] == "errors"
        assert list(response.json()["errors"]) == ["reason"]
    assert "Awaiting approval" in flow.status(card.ts)

    reason = f"Wrong amount {INJECTION}"
    response = flow.sim.submit_view(APPROVER, modal, state_values(modal, {"reason": reason}))
    assert response.status_code == 200 and not response.content.strip(), response.text
    status = flow.wait_status(card.ts, "Rejected")
    assert "Rejected by <@U0APPROVER>" in status
    assert f"Wrong amount {ESCAPED}" in status
    reply = flow.wait_reply(card.ts, "rejected")
    assert "<@U0REP>" in reply and f"Reason: Wrong amount {ESCAPED}" in reply
    flow.idle()
    assert buttons(flow.card(card.ts)) == ["paylink_show_contact"]
    assert flow.intent_count() == 0


# --------------------------------------------------------------------------------------
# 7. Gateway failure, then Retry


def test_gateway_failure_then_retry(
    make_stack: Callable[..., LocalStack], xpay_stub: XPayStub
) -> None:
    flow = stub_stack(make_stack, xpay_stub)
    card = flow.request()
    flow.click(APPROVER, card.ts, "paylink_approve")
    status = flow.wait_status(card.ts, "Link creation failed")
    assert "Store disabled" in status
    flow.idle()
    assert "paylink_retry" in buttons(flow.card(card.ts))
    assert flow.intent_count() == 0

    flow.click(OUTSIDER, card.ts, "paylink_retry")
    flow.wait_ephemeral(OUTSIDER, "approvers")
    flow.idle()
    assert xpay_stub.creates == 1
    assert "Link creation failed" in flow.status(card.ts)

    xpay_stub.mode = "proxy"
    flow.click(APPROVER, card.ts, "paylink_retry")
    reply = flow.wait_reply(card.ts, "checkout link is ready")
    assert "/sandbox/checkout/" in reply
    status = flow.wait_status(card.ts, "Awaiting payment")
    assert "Store disabled" not in status
    assert xpay_stub.creates == 2 and flow.intent_count() == 1


# --------------------------------------------------------------------------------------
# 8. Cancel


def test_cancel_then_paid_anyway(flow: Flow) -> None:
    card = flow.request()
    url = flow.approve(card.ts)
    flow.wait_status(card.ts, "Awaiting payment")

    flow.click(OUTSIDER, card.ts, "paylink_cancel")
    flow.wait_ephemeral(OUTSIDER, "cancel")
    flow.idle()
    assert "Awaiting payment" in flow.status(card.ts)

    flow.click(REP, card.ts, "paylink_cancel")
    assert "Cancelled by <@U0REP>" in flow.wait_status(card.ts, "Cancelled")
    assert "<@U0REP>" in flow.wait_reply(card.ts, "Cancelled by")

    flow.checkout(url, "pay", "jazzcash")  # the customer had the link and paid
    status = flow.wait_status(card.ts, "Paid")
    assert "JazzCash" in status and "the money has moved" in status
    assert "<@U0REP> had cancelled" in status
    reply = flow.wait_reply(card.ts, "Paid after the request was cancelled")
    assert "PKR 15,000" in reply and "JazzCash" in reply


def test_cancel_before_approval(flow: Flow) -> None:
    card = flow.request()
    flow.click(REP, card.ts, "paylink_cancel")
    assert "Cancelled by <@U0REP>" in flow.wait_status(card.ts, "Cancelled")
    flow.wait_reply(card.ts, "Cancelled by")
    flow.idle()
    assert buttons(flow.card(card.ts)) == ["paylink_show_contact"]
    assert flow.intent_count() == 0


# --------------------------------------------------------------------------------------
# 9. A failed payment, then a successful one


def test_failed_payment_then_paid(flow: Flow) -> None:
    card = flow.request()
    url = flow.approve(card.ts)
    flow.checkout(url, "decline", "card")
    status = flow.wait_status(card.ts, "Payment failed")
    assert "Declined by the issuing bank (sandbox)" in status
    reply = flow.wait_reply(card.ts, "Payment failed")
    assert "Declined by the issuing bank (sandbox)" in reply

    response = flow.webhook(flow.paid_webhook(url, "pay", "easypaisa"))
    assert response.status_code == 200 and response.json()["success"] is True
    assert "Easypaisa" in flow.wait_status(card.ts, "Paid")
    assert "Easypaisa" in flow.wait_reply(card.ts, "Paid:")


# --------------------------------------------------------------------------------------
# 10. Webhook duplicates and bad signatures; Slack request signing


def test_duplicate_webhook_has_one_effect(flow: Flow) -> None:
    card = flow.request()
    url = flow.approve(card.ts)
    flow.idle()
    updated = flow.card(card.ts).updated
    payload = flow.paid_webhook(url)
    outcomes = [flow.webhook(payload).json() for _ in range(3)]
    assert [o["success"] for o in outcomes] == [True] * 3
    assert [o["outcome"] for o in outcomes] == ["applied", "duplicate", "duplicate"]
    flow.wait_reply(card.ts, "Paid:")
    flow.idle()
    assert len([r for r in flow.replies(card.ts) if "Paid" in r]) == 1
    assert flow.card(card.ts).updated == updated + 1


def test_payment_of_another_amount_is_not_shown_as_paid(flow: Flow) -> None:
    card = flow.request()  # PKR 15,000
    url = flow.approve(card.ts)
    flow.idle()
    short = dict(flow.paid_webhook(url), amount=10)
    response = flow.webhook(short)
    assert response.status_code == 200
    assert response.json()["outcome"] == "amount_mismatch"
    reply = flow.wait_reply(card.ts, "XPay reports a payment of PKR 10")
    assert "PKR 15,000" in reply and "<@U0REP>" in reply
    flow.idle()
    assert "Awaiting payment" in flow.status(card.ts)
    assert not [r for r in flow.replies(card.ts) if r.startswith(":white_check_mark: Paid")]
    # The right amount still settles it.
    assert flow.webhook(flow.paid_webhook(url)).json()["outcome"] == "applied"
    flow.wait_status(card.ts, "Paid")


def awaiting_payment(flow: Flow, **fields: Any) -> tuple[PostedMessage, str]:
    """A request approved, its link created and every message about it sent: its card and
    checkout link."""
    card = flow.request(**fields)
    url = flow.approve(card.ts)
    flow.idle()
    return card, url


def test_one_signature_many_spellings_of_the_amount_one_effect(flow: Flow) -> None:
    """A signature over JSON.stringify's form passes for other spellings of its numbers:
    each is read as the body signed, so one payment, one reply, and no "amount differs"."""
    card, url = awaiting_payment(flow, amount="5000")
    canonical = js_stringify(flow.paid_webhook(url))
    signature = sign(flow.stack.webhook_secret, canonical)
    assert b'"amount":5000,' in canonical
    bodies = [
        canonical.replace(b'"amount":5000,', b'"amount":' + text + b",")
        for text in (b"5000.0000000000001", b"4999.9999999999999", b"5e3")
    ]
    outcomes = [flow.webhook(body, signature=signature).json()["outcome"] for body in bodies]
    assert outcomes == ["applied", "duplicate", "duplicate"]
    flow.wait_reply(card.ts, "Paid:")
    flow.idle()
    replies = flow.replies(card.ts)
    assert len([r for r in replies if "Paid" in r]) == 1
    assert not [r for r in replies if "XPay reports a payment of" in r]


def test_an_amount_beyond_any_sum_is_refused_and_nothing_renders_it(flow: Flow) -> None:
    card, url = awaiting_payment(flow)
    calls = len(flow.slack.calls)
    body = js_stringify(flow.paid_webhook(url)).replace(
        b'"amount":15000,"currency"', b'"amount":1e900000000,"currency"'
    )
    response = flow.webhook(body)
    assert response.status_code == 400
    assert response.json()["success"] is False and response.json()["reason"]
    flow.idle()
    assert len(flow.slack.calls) == calls
    assert "Awaiting payment" in flow.status(card.ts)


def test_a_paid_webhook_without_amount_is_checked_with_xpay_first(flow: Flow) -> None:
    """XPay's own record of the intent (not paid at the sandbox) decides, not the webhook."""
    card, url = awaiting_payment(flow)
    calls = len(flow.slack.calls)
    payload = flow.paid_webhook(url)
    del payload["amount"], payload["currency"]
    response = flow.webhook(payload)
    assert response.status_code == 200 and response.json()["outcome"] == "confirming"
    flow.idle()
    assert "Awaiting payment" in flow.status(card.ts)
    assert len(flow.slack.calls) == calls
    flow.checkout(url, "pay", "card")  # paid at XPay: its own webhook settles it
    flow.wait_status(card.ts, "Paid")


def test_webhook_bad_signature_and_unknown_intent(flow: Flow) -> None:
    card, url = awaiting_payment(flow)
    calls = len(flow.slack.calls)
    payload = flow.paid_webhook(url)

    response = flow.webhook(payload, signature="0" * 64)
    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["success"] is False
    response = flow.webhook(payload, signature="")
    assert response.status_code == 401

    unknown = dict(payload, payment_intent_id="xpay_pi_" + "0" * 64)
    response = flow.webhook(unknown)
    assert response.status_code == 404
    assert response.json()["success"] is False

    flow.idle()
    assert len(flow.slack.calls) == calls
    assert "Awaiting payment" in flow.status(card.ts)


def test_slack_requests_must_be_signed_and_fresh(flow: Flow) -> None:
    response = flow.sim.command(REP, "", signature="v0=" + "0" * 64)
    assert response.status_code == 401
    response = flow.sim.command(REP, "", timestamp=int(time.time()) - 301)
    assert response.status_code == 401
    flow.idle()
    assert flow.slack.views_opened == []
    assert [c.method for c in flow.slack.calls if c.method != "auth.test"] == []
    flow.open_modal()  # a properly signed request still works


# --------------------------------------------------------------------------------------
# 11-13. Escaping, masking and Block Kit limits across every call


def _every_surface(flow: Flow, **fields: Any) -> None:
    """Paid, rejected and pending requests plus both App Homes: every kind of Slack call."""
    paid = flow.request(**fields)
    url = flow.approve(paid.ts)
    flow.checkout(url, "decline", "card")
    flow.wait_reply(paid.ts, "Payment failed")
    flow.webhook(flow.paid_webhook(url, "pay", "card"))
    flow.wait_reply(paid.ts, "Paid:")

    rejected = flow.request(**fields)
    flow.click(APPROVER, rejected.ts, "paylink_reject_open")
    modal = flow.slack.wait_for(
        lambda s: next((v for v in s.views_opened if v["callback_id"] == "paylink_reject"), None)
    )
    reason = fields.get("customer_name", "no")
    flow.sim.submit_view(APPROVER, modal, state_values(modal, {"reason": reason}))
    flow.wait_reply(rejected.ts, "rejected")

    cancelled = flow.request(**fields)
    flow.click(REP, cancelled.ts, "paylink_cancel")
    flow.wait_reply(cancelled.ts, "Cancelled")

    flow.request(**fields)  # stays pending
    for user in (REP, APPROVER):
        flow.sim.home_opened(user).raise_for_status()
    flow.slack.wait_for(lambda s: {REP, APPROVER} <= set(s.home_views))
    flow.idle()


def test_user_text_is_escaped_everywhere(flow: Flow) -> None:
    fields = {name: f"{name} {INJECTION}" for name in FREE_TEXT}
    _every_surface(flow, **fields)

    seen = 0
    for call in flow.slack.calls:
        if call.method not in RENDERED:
            continue
        for text in strings(call.params):
            assert "<!channel>" not in text, (call.method, text)
            assert "<https://x|y>" not in text, (call.method, text)
            assert "<!channel" not in text and "<https://x" not in text, (call.method, text)
        for text in mrkdwn_texts(call):
            assert not re.search(r"&(?!amp;|lt;|gt;)", text), (call.method, text)
            seen += ESCAPED in text
    assert seen > 10  # the escaped text really was shown: in cards, replies and homes
    card = flow.slack.messages(APPROVAL_CHANNEL)[0]
    assert f"customer_name {ESCAPED}" in _text(card.blocks)
    assert f"shipping_method {ESCAPED}" in _text(card.blocks)


def test_customer_contact_is_masked_everywhere(flow: Flow) -> None:
    # Not the modal's placeholder number, which is shown to everybody.
    _every_surface(flow, customer_email="ayesha.khan@example.com", customer_phone="0321 9876543")
    secrets = ["ayesha.khan@example.com", "ayesha.khan", "3219876543", "321 9876543"]
    for call in flow.slack.calls:
        dumped = json.dumps(call.params, ensure_ascii=False)
        for secret in secrets:
            assert secret not in dumped, (call.method, secret)
    card = _text(flow.slack.messages(APPROVAL_CHANNEL)[0].blocks)
    assert "a•••n@example.com" in card and "•••••••6543" in card


def test_block_kit_limits_with_longest_inputs(flow: Flow) -> None:
    long = {name: "&<>" * 66 for name in FREE_TEXT}
    _every_surface(flow, **long)
    rejected = flow.request(**long)
    flow.click(APPROVER, rejected.ts, "paylink_reject_open")
    flow.slack.wait_for(
        lambda s: len([v for v in s.views_opened if v["callback_id"] == "paylink_reject"]) == 2
    )
    modal = [v for v in flow.slack.views_opened if v["callback_id"] == "paylink_reject"][-1]
    flow.sim.submit_view(APPROVER, modal, state_values(modal, {"reason": "<&>" * 166}))
    flow.wait_reply(rejected.ts, "rejected")
    flow.idle()
    assert not [c for c in flow.slack.calls if c.response.get("error") == "invalid_blocks"]
    assert flow.slack.missing_text_warnings == []
    rendered = [c for c in flow.slack.calls if c.method in RENDERED]
    assert {c.method for c in rendered} >= {
        "chat.postMessage",
        "chat.update",
        "chat.postEphemeral",
        "views.open",
        "views.publish",
    }
    assert all(c.ok for c in rendered)


def test_home_with_more_links_than_fit(flow: Flow) -> None:
    for _ in range(blocks.HOME_LIST_MAX + 2):
        flow.request()
    for user in (REP, APPROVER):
        flow.sim.home_opened(user).raise_for_status()
    homes = flow.slack.wait_for(lambda s: {REP, APPROVER} <= set(s.home_views) and s.home_views)
    approver = homes[APPROVER]["blocks"]
    rows = [b for b in approver if re.match(r"waiting_\d+$", b.get("block_id", ""))]
    assert len(rows) == blocks.HOME_LIST_MAX
    assert "…and 2 more in the approval channel." in _text(approver)
    mine = [b for b in homes[REP]["blocks"] if re.match(r"mine_\d+$", b.get("block_id", ""))]
    assert len(mine) == blocks.HOME_LIST_MAX
    assert all(c.ok for c in flow.slack.calls_of("views.publish"))
    assert flow.slack.missing_text_warnings == []


# --------------------------------------------------------------------------------------
# 14. App Home


def test_app_home(flow: Flow) -> None:
    pending = flow.request()
    reference = next(
        f["text"].split("\n")[1]
        for b in pending.blocks or []
        if b.get("block_id") == "details"
        for f in b["fields"]
        if f["text"].startswith("*Order reference*")
    )
    paid = flow.request(order_reference="ORD-PAID")
    flow.checkout(flow.approve(paid.ts))
    flow.wait_status(paid.ts, "Paid")

    for user in (REP, APPROVER, OUTSIDER):
        assert flow.sim.home_opened(user).status_code == 200
    homes = flow.slack.wait_for(
        lambda s: (h := s.home_views) and {REP, APPROVER, OUTSIDER} <= set(h) and h
    )
    publish = flow.slack.calls_of("views.publish")
    assert {c.params["user_id"] for c in publish} == {REP, APPROVER, OUTSIDER}

    rep = _text(homes[REP]["blocks"])
    assert "Your links" in rep and reference in rep and "ORD-PAID" in rep
    assert "Paid" in rep and "Awaiting approval" in rep
    assert "Waiting for you" not in rep

    approver = homes[APPROVER]["blocks"]
    text = _text(approver)
    assert "Waiting for you" in text
    waiting = [b for b in approver if re.match(r"waiting_\d+$", b.get("block_id", ""))]
    assert len(waiting) == 1
    assert reference in _text(waiting) and "requested by <@U0REP>" in _text(waiting)
    assert "ORD-PAID" not in _text(waiting)

    outsider = _text(homes[OUTSIDER]["blocks"])
    assert "Waiting for you" not in outsider
    assert "not requested any payment links" in outsider


# --------------------------------------------------------------------------------------
# 15. A slow gateway does not hold up acknowledgements


@pytest.mark.slow  # slow answers are the scenario
def test_slow_gateway_does_not_block_acks(
    make_stack: Callable[..., LocalStack], xpay_stub: XPayStub
) -> None:
    """Six approvals wait on a 3 s gateway (more than Bolt's default 5 listener threads)."""
    flow = stub_stack(make_stack, xpay_stub)
    xpay_stub.mode, xpay_stub.delay = "proxy", 3.0
    cards = [flow.request() for _ in range(6)]
    flow.idle()

    for card in cards:
        started = time.perf_counter()
        flow.click(APPROVER, card.ts, "paylink_approve")
        assert time.perf_counter() - started < 1.5
    flow.slack.wait_for(lambda s: xpay_stub.creates == len(cards))

    started = time.perf_counter()  # every create is still inside XPay's 3 s
    response = flow.sim.command(OUTSIDER, "")
    assert response.status_code == 200
    assert time.perf_counter() - started < 1.5
    flow.slack.wait_for(lambda s: len(s.views_opened) == len(cards) + 1, timeout=2.5)
    assert xpay_stub.creates == len(cards)

    for card in cards:
        flow.wait_reply(card.ts, "checkout link is ready", timeout=10)
    assert flow.intent_count() == len(cards)


@pytest.mark.slow  # slow answers are the scenario
def test_slow_slack_does_not_block_acks(flow: Flow) -> None:
    """Slack taking 5 s over each views.open: forty /paylink commands at once are all acked
    within Slack's 3 s (after that it shows "operation timed out"), so none waited for its
    views.open, and every modal still opens."""
    flow.slack.set_delay("views.open", 5.0)
    try:
        with ThreadPoolExecutor(max_workers=40) as pool:

            def command(_: int) -> float:
                started = time.perf_counter()
                assert flow.sim.command(REP, "").status_code == 200
                return time.perf_counter() - started

            acks = list(pool.map(command, range(40)))
        assert max(acks) < 3.0, sorted(acks)[-5:]
        flow.slack.wait_for(lambda s: len(s.views_opened) == 40, timeout=20)
    finally:
        flow.slack.set_delay("views.open", 0)


# --------------------------------------------------------------------------------------
# 15. Expiry and renewal


def test_an_expired_link_is_renewed_and_a_payment_on_both_links_is_flagged(
    make_stack: Callable[..., LocalStack],
) -> None:
    """A 2 s TTL: the link expires; a stranger's Renew is refused; the rep's double click
    renews once, with the next reference in the same thread; the customer pays the new link,
    then the old one too: Paid, and one double-payment warning naming both."""
    flow = Flow(make_stack(paylink_link_ttl="2s"))
    card = flow.request()
    old_url = flow.approve(card.ts)
    reference = flow.intent(old_url).order_reference
    assert "may still work" in flow.wait_status(card.ts, "Expired", timeout=10)
    assert buttons(flow.card(card.ts)) == [
        "paylink_renew",
        "paylink_cancel",
        "paylink_show_contact",
    ]
    assert "<@U0REP>" in flow.wait_reply(card.ts, "expired without payment")

    flow.click(OUTSIDER, card.ts, "paylink_renew")
    flow.wait_ephemeral(OUTSIDER, "can renew it")
    assert "Expired" in flow.status(card.ts)

    expired_card = {"ts": card.ts, "blocks": flow.card(card.ts).blocks}
    for _ in range(2):
        flow.sim.click(REP, expired_card, "paylink_renew", channel=APPROVAL_CHANNEL)
    renewed = flow.wait_reply(card.ts, "new checkout link is ready")
    assert f"(reference {reference}-2)" in renewed and "may still work" in renewed
    match = re.search(r"<(https?://[^|>]+/sandbox/checkout/[^|>]+)>", renewed)
    assert match and match.group(1) != old_url
    flow.wait_ephemeral(REP, "Nothing changed")
    assert flow.intent(match.group(1)).order_reference == f"{reference}-2"

    flow.checkout(match.group(1), "pay")
    flow.wait_reply(card.ts, "Paid:")
    flow.checkout(old_url, "pay")  # the customer paid the old link as well
    double = flow.wait_reply(card.ts, "Double payment")
    assert f"on {reference}-2 and again on {reference}." in double and "PKR 15,000" in double
    assert flow.webhook(flow.paid_webhook(old_url)).json()["outcome"] == "duplicate"
    flow.idle()
    assert flow.intent_count() == 2
    assert len([r for r in flow.replies(card.ts) if "Double payment" in r]) == 1
    assert "Paid" in flow.status(card.ts)
