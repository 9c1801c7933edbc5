"""The HTTP surface of a running LocalStack: health, metrics, the webhook's refusals, 404s."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import func, select, text

from bot.links.states import Status
from bot.links.tables import Link, WebhookEvent
from bot.local.stack import LocalStack
from bot.xpay.signing import js_stringify, sign
from tests.factories import checkout_request, webhook_payload


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(jobs_interval=3600) as stack:
        yield stack


def url(stack: LocalStack, path: str) -> str:
    return stack.base_url + path


def webhook_secret(stack: LocalStack) -> str:
    return stack.webhook_secret


def post_webhook(
    stack: LocalStack, body: bytes, signature: str | None = None, **headers: str
) -> requests.Response:
    sent = {"Content-Type": "application/json", **headers}
    if signature is not None:
        sent["x-signature"] = signature
    return requests.post(url(stack, "/xpay/webhook"), data=body, headers=sent, timeout=10)


def link_awaiting_payment(stack: LocalStack, reference: str) -> Link:
    request = checkout_request(order_reference=reference)
    link = stack.runtime.service.create_direct(request, actor="test")
    assert link.status == Status.AWAITING_PAYMENT.value, link.gateway_message
    return link


def current_status(stack: LocalStack, link_id: int) -> str:
    with stack.runtime.store.reading() as s:
        return s.scalars(select(Link.status).where(Link.id == link_id)).one()


def current(stack: LocalStack, link_id: int) -> tuple[str, int, int]:
    """(status, version, webhook events recorded) for a link."""
    with stack.runtime.store.reading() as s:
        link = s.get(Link, link_id)
        assert link is not None
        events = s.scalar(
            select(func.count(WebhookEvent.id)).where(WebhookEvent.intent_id == link.intent_id)
        )
        return link.status, link.version, int(events or 0)


def assert_json(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    return response.json()


# Health and metrics -------------------------------------------------------------------------


def test_healthz(stack: LocalStack) -> None:
    body = assert_json(requests.get(url(stack, "/healthz"), timeout=10), 200)
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["approver_groups"] == "none"  # approvers listed by user ID only
    assert isinstance(body["outbox_backlog"], int) and body["outbox_backlog"] >= 0
    assert isinstance(body["outbox_oldest_seconds"], int | float)


def test_metrics(stack: LocalStack) -> None:
    requests.get(url(stack, "/healthz"), timeout=10)
    post_webhook(stack, b"{}", "0" * 64)  # a refused webhook is counted too
    response = requests.get(url(stack, "/metrics"), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.text
    assert 'paylink_http_requests_total{route="/healthz",status="200"}' in text
    assert 'paylink_webhooks_total{outcome="WebhookSignatureError"}' in text
    assert 'paylink_http_requests_total{route="/xpay/webhook",status="401"}' in text
    assert "paylink_jobs_backlog" in text


# The webhook endpoint -----------------------------------------------------------------------


def test_oversized_webhook_is_413_json(stack: LocalStack) -> None:
    body = json.dumps({"payment_intent_id": "x", "pad": "a" * 100_000}).encode()
    reply = assert_json(post_webhook(stack, body, sign(webhook_secret(stack), body)), 413)
    assert reply["success"] is False
    huge = b"{" + b" " * (2 * 1024 * 1024) + b"}"
    assert_json(post_webhook(stack, huge, sign(webhook_secret(stack), huge)), 413)


@pytest.mark.parametrize(
    "body",
    [b"[1, 2]", b"not json", b'{"status": "succeeded"}', b'{"payment_intent_id": ""}'],
)
def test_malformed_but_authentic_webhook_is_400(stack: LocalStack, body: bytes) -> None:
    reply = assert_json(post_webhook(stack, body, sign(webhook_secret(stack), body)), 400)
    assert reply["success"] is False and reply["reason"]


def test_bad_signature_is_401_and_changes_nothing(stack: LocalStack) -> None:
    link = link_awaiting_payment(stack, "HTTP-SIG-1")
    before = current(stack, link.id)
    body = js_stringify(webhook_payload(link.intent_id))
    good = sign(webhook_secret(stack), body)
    for signature in (
        None,
        "",
        "nothex",
        sign("some-other-secret", body),
        sign(webhook_secret(stack), body + b" "),
        good[:-1] + ("0" if good[-1] != "0" else "1"),
    ):
        reply = assert_json(post_webhook(stack, body, signature), 401)
        assert reply["success"] is False
        assert current(stack, link.id) == before
    assert before == (Status.AWAITING_PAYMENT.value, before[1], 0)

    # The same body correctly signed does change it: the refusals above were real.
    reply = assert_json(post_webhook(stack, body, good), 200)
    assert reply == {"success": True, "outcome": "applied"}
    assert current(stack, link.id)[0] == Status.PAID.value
    reply = assert_json(post_webhook(stack, body, good.upper()), 200)
    assert reply["outcome"] == "duplicate"


def test_webhook_for_an_unknown_intent_is_404_json(stack: LocalStack) -> None:
    body = js_stringify(webhook_payload("xpay_pi_unknown"))
    reply = assert_json(post_webhook(stack, body, sign(webhook_secret(stack), body)), 404)
    assert reply["success"] is False


# Routing -----------------------------------------------------------------------------------


def test_unknown_route_is_404_json(stack: LocalStack) -> None:
    reply = assert_json(requests.get(url(stack, "/nope"), timeout=10), 404)
    assert reply["success"] is False
    assert "<html" not in json.dumps(reply).lower()
    assert_json(requests.post(url(stack, "/nope/too"), data=b"x", timeout=10), 404)


def test_wrong_method_is_json(stack: LocalStack) -> None:
    response = requests.get(url(stack, "/xpay/webhook"), timeout=10)
    reply = assert_json(response, 405)
    assert reply["success"] is False
    assert response.headers["Allow"] == "POST"


@pytest.mark.integration  # a stack of its own, to break
def test_webhook_the_database_cannot_take_is_500_json_and_retried_later() -> None:
    """A store that fails mid-webhook: XPay gets a 5xx (it retries), as JSON, and the
    event is not lost for good: once the database works again the retry applies."""
    with LocalStack(jobs_interval=3600) as broken:
        link = link_awaiting_payment(broken, "HTTP-500-1")
        body = js_stringify(webhook_payload(link.intent_id))
        signature = sign(webhook_secret(broken), body)
        with broken.runtime.engine.begin() as conn:
            conn.execute(text("ALTER TABLE webhook_events RENAME TO webhook_events_away"))
        reply = assert_json(post_webhook(broken, body, signature), 500)
        assert reply == {"success": False, "reason": "internal error"}
        assert current_status(broken, link.id) == Status.AWAITING_PAYMENT.value
        with broken.runtime.engine.begin() as conn:
            conn.execute(text("ALTER TABLE webhook_events_away RENAME TO webhook_events"))
        assert assert_json(post_webhook(broken, body, signature), 200)["outcome"] == "applied"
        assert current_status(broken, link.id) == Status.PAID.value


def test_two_megabyte_slack_post_is_413(stack: LocalStack) -> None:
    body = b"payload=" + b"a" * (2 * 1024 * 1024)
    response = requests.post(
        url(stack, "/slack/events"),
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert response.status_code == 413


# Bodies and headers nobody should send ------------------------------------------------------

DEEP = "[" * 50_000  # 50,000 nested brackets: json.loads runs out of stack


def slack_post(
    stack: LocalStack, body: str, content_type: str, **headers: str
) -> requests.Response:
    sent = {**stack.simulator.signed_headers(body, content_type), **headers}
    return requests.post(url(stack, "/slack/events"), data=body, headers=sent, timeout=10)


@pytest.mark.parametrize(
    ("send", "status", "reason"),
    [
        pytest.param(
            lambda st: slack_post(
                st, "{}", "application/json", **{"X-Slack-Request-Timestamp": "abc"}
            ),
            401,
            "X-Slack-Request-Timestamp",
            id="slack-timestamp-abc",
        ),
        pytest.param(
            lambda st: slack_post(st, DEEP, "application/json", **{"X-Slack-Signature": "v0=0"}),
            401,
            "signature",
            id="slack-deep-unsigned",
        ),
        pytest.param(
            lambda st: slack_post(st, DEEP, "application/json"), 400, "malformed", id="slack-deep"
        ),
        pytest.param(
            lambda st: slack_post(st, "payload=" + DEEP, "application/x-www-form-urlencoded"),
            400,
            "malformed",
            id="slack-deep-form",
        ),
        pytest.param(
            lambda st: post_webhook(st, DEEP.encode(), "0" * 64),
            401,
            "signature",
            id="webhook-deep-unsigned",
        ),
        pytest.param(
            lambda st: post_webhook(st, DEEP.encode(), sign(webhook_secret(st), DEEP.encode())),
            400,
            "JSON",
            id="webhook-deep",
        ),
    ],
)
def test_garbage_is_refused_with_a_reason_and_no_traceback(
    stack: LocalStack,
    caplog: pytest.LogCaptureFixture,
    send: Any,
    status: int,
    reason: str,
) -> None:
    caplog.set_level(logging.INFO)
    reply = assert_json(send(stack), status)
    assert reply["success"] is False and reason in reply["reason"], reply
    loud = [r for r in caplog.records if r.levelno > logging.INFO or r.exc_info]
    assert not loud, [(r.name, r.levelname, r.getMessage()) for r in loud]
