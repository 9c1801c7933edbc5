"""Fuzzing the edges that take input from outside: webhook verification and parsing, the two
public POST endpoints of a running bot, and the checkout form parser.

(a) ``verify_webhook`` + ``parse_payment_event``: arbitrary bytes, signatures and JSON-ish
    objects (validly signed ones too) give a parsed event or a ``WebhookError``, nothing else.
(b) ``POST /xpay/webhook`` and ``POST /slack/events`` of a LocalStack over real HTTP: any body
    and headers give a 4xx (or a 200 when valid), never a 5xx, and no link changes.
(c) ``parse_checkout``: any field dict gives a ``CheckoutRequest`` or ``CheckoutInvalid``.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.checkout import FIELDS, CheckoutInvalid, CheckoutRequest, parse_checkout
from bot.links.states import Status
from bot.links.tables import History, Job, Link
from bot.local.simulator import FORM
from bot.xpay.signing import js_stringify, sign
from bot.xpay.webhooks import (
    MAX_WEBHOOK_BYTES,
    PaymentEvent,
    WebhookError,
    WebhookMalformed,
    parse_payment_event,
    verify_webhook,
)
from tests.conftest import Flow
from tests.factories import checkout_request
from tests.waiting import wait_for_pool, wait_until

SECRETS = ["webhook-secret-new", "webhook-secret-old"]
FAST = settings(max_examples=300, deadline=None)
HTTP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON-ish values: what a JSON body can hold, plus Decimal (our parser's floats).
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.decimals(allow_nan=False, allow_infinity=False, places=None)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
EVENT_KEYS = [
    "type",
    "payment_intent_id",
    "status",
    "amount",
    "currency",
    "payment_method_types",
    "transaction_details",
]
event_like = st.dictionaries(
    st.sampled_from(EVENT_KEYS) | st.text(max_size=6),
    json_values
    | st.sampled_from(["succeeded", "failed", " Declined ", "xpay_pi_1", "", "PKR"])
    | st.dictionaries(
        st.sampled_from(["status", "response_from_bank", "status_message_from_bank"]),
        json_values,
        max_size=3,
    ),
    max_size=8,
)
signatures = (
    st.none() | st.text(max_size=70) | st.text("0123456789abcdefABCDEF", min_size=64, max_size=64)
)


def encodings(obj: Any) -> list[bytes]:
    """Ways a sender might serialise ``obj`` (compact, spaced, ASCII-escaped, ours)."""
    out = []
    for kwargs in ({}, {"separators": (",", ":")}, {"indent": 1, "ensure_ascii": False}):
        with contextlib.suppress(ValueError, UnicodeEncodeError):
            out.append(json.dumps(obj, default=str, **kwargs).encode("utf-8"))
    with contextlib.suppress(ValueError, TypeError, UnicodeEncodeError):
        out.append(js_stringify(obj))
    return out


def check_verified(data: dict[str, Any]) -> None:
    """A verified body either parses to an event or is refused as malformed."""
    try:
        event = parse_payment_event(data)
    except WebhookMalformed:
        return
    assert isinstance(event, PaymentEvent)
    assert event.payment_intent_id.strip()
    assert event.outcome in ("paid", "failed", "ignored")


# (a) verify_webhook + parse_payment_event ------------------------------------------------


@FAST
@given(body=st.binary(max_size=300), signature=signatures)
def test_arbitrary_bytes_and_signatures_are_refused_cleanly(
    body: bytes, signature: str | None
) -> None:
    try:
        data = verify_webhook(body, signature, SECRETS)
    except WebhookError as exc:
        assert 400 <= exc.http_status < 500 and exc.reason
        return
    check_verified(data)  # a random signature matched: only possible by luck, still fine


@FAST
@given(
    obj=json_values | event_like,
    which=st.sampled_from(SECRETS),
    case=st.sampled_from([str.lower, str.upper]),
)
def test_validly_signed_bodies_parse_or_are_malformed(obj: Any, which: str, case: Any) -> None:
    for body in encodings(obj):
        signature = case(sign(which, body))
        try:
            data = verify_webhook(body, signature, SECRETS)
        except WebhookMalformed:
            # Authentic but unusable: only when the body is not a JSON object we accept.
            assert not isinstance(obj, dict) or len(body) <= MAX_WEBHOOK_BYTES
            continue
        except WebhookError as exc:
            raise AssertionError(f"a valid signature was refused: {exc.reason}") from None
        assert isinstance(data, dict)
        check_verified(data)


@FAST
@given(obj=event_like, pretty=st.booleans())
def test_signature_over_the_reserialisation_is_accepted(obj: dict[str, Any], pretty: bool) -> None:
    try:
        canonical = js_stringify(obj)
        sent = json.dumps(obj, indent=2 if pretty else None, default=str).encode("utf-8")
    except (ValueError, TypeError, UnicodeEncodeError):
        return
    if js_stringify(json.loads(sent, parse_float=Decimal)) != canonical:
        return  # json.dumps wrote something JS would read differently (e.g. str() of Decimal)
    data = verify_webhook(sent, sign(SECRETS[1], canonical), SECRETS)
    check_verified(data)


@FAST
@given(data=event_like | st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_parse_payment_event_takes_any_dict(data: dict[str, Any]) -> None:
    check_verified(data)


@FAST
@given(data=json_values)
def test_parse_payment_event_refuses_non_objects_cleanly(data: Any) -> None:
    if isinstance(data, dict):
        check_verified(data)
    else:
        with pytest.raises(WebhookMalformed):
            parse_payment_event(data)  # type: ignore[arg-type]


# (b) The endpoints of a running bot --------------------------------------------------------


FIELD_NAMES_FOR_VIEWS = [
    "amount",
    "currency",
    "customer_name",
    "customer_email",
    "customer_phone",
    "order_reference",
    "payment_methods",
    "success_url",
]


@pytest.fixture(scope="module")
def stack() -> Iterator[Any]:
    """A LocalStack with one link awaiting approval and one awaiting payment."""
    from bot.local.stack import APPROVER, REP, LocalStack

    with LocalStack() as stack:
        service = stack.runtime.service
        service.request_link(checkout_request(), requester_id=REP, channel_id="C0APPROVALS")
        second = checkout_request(amount="99.5", customer_email="", customer_phone="03415682456")
        link = service.request_link(second, requester_id=REP, channel_id="C0APPROVALS")
        service.approve(link.id, APPROVER)
        wait_until(
            lambda: snapshot(stack)["links"][link.id][0] == Status.AWAITING_PAYMENT.value,
            30,
            message="link never created at the sandbox",
        )
        settle(stack)
        yield stack


def snapshot(stack: Any) -> dict[str, Any]:
    with stack.runtime.store.reading() as s:
        return {
            "links": {
                link.id: (link.status, link.version, link.intent_id)
                for link in s.scalars(select(Link))
            },
            "history": s.scalar(select(func.count(History.id))),
            "jobs": s.scalar(select(func.count(Job.id))),
        }


def settle(stack: Any) -> None:
    """Until background work is done: what listeners left for after their acks, and the
    queued jobs."""
    for pool in (stack.runtime.decisions, stack.runtime.after_ack):
        wait_for_pool(pool)
    Flow(stack).idle()


def intents(stack: Any) -> list[str]:
    return [v[2] for v in snapshot(stack)["links"].values() if v[2]]


# What an HTTP client can put in a header value (no leading/trailing blanks, no CR/LF).
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80).map(
    str.strip
)
http_signatures = (
    st.none() | header_text | st.text("0123456789abcdefABCDEF", min_size=64, max_size=64)
)
content_types = (
    st.sampled_from(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/json; charset=utf-16",
        ]
    )
    | header_text
)
# Statuses that do not mean paid or failed (those legitimately change a link).
inert_status = st.text(max_size=12).filter(
    lambda s: s.strip().lower() not in {"succeeded", "failed", "payment_failed", "declined"}
)


def post(url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(url, data=body, headers=headers, timeout=30)


@HTTP
@given(
    body=st.binary(max_size=400) | json_values.map(lambda v: json.dumps(v, default=str).encode()),
    signature=http_signatures,
    content_type=content_types,
    extra=st.dictionaries(
        st.sampled_from(["X-Forwarded-For", "X-Signature", "Accept", "X-Slack-Signature"]),
        header_text,
        max_size=2,
    ),
)
def test_webhook_endpoint_never_fails_on_garbage(
    stack: Any, body: bytes, signature: str | None, content_type: str, extra: dict[str, str]
) -> None:
    before = snapshot(stack)
    headers = {"Content-Type": content_type, **extra}
    if signature is not None:
        headers["x-signature"] = signature
    r = post(stack.base_url + "/xpay/webhook", body, headers)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert r.json()["success"] is False
    assert snapshot(stack) == before


@HTTP
@given(obj=event_like, status=inert_status, known=st.booleans(), pretty=st.booleans())
def test_signed_webhooks_that_are_not_payments_change_nothing(
    stack: Any, obj: dict[str, Any], status: str, known: bool, pretty: bool
) -> None:
    before = snapshot(stack)
    if known:  # a real intent, but a status that is neither paid nor failed
        obj = {**obj, "payment_intent_id": intents(stack)[0], "status": status}
    body = json.dumps(obj, default=str, indent=1 if pretty else None).encode()
    signature = sign(stack.webhook_secret, body)
    r = post(
        stack.base_url + "/xpay/webhook",
        body,
        {"Content-Type": "application/json", "x-signature": signature},
    )
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code == 200:
        assert r.json()["outcome"] in ("ignored", "duplicate"), r.text
    else:
        assert r.status_code in (400, 404), r.text
    assert snapshot(stack) == before


slack_forms = st.dictionaries(
    st.sampled_from(["payload", "command", "text", "user_id", "trigger_id", "ssl_check", "type"])
    | st.text(max_size=6),
    st.text(max_size=40),
    max_size=5,
).map(urlencode)


def block_action(value: Any, action_id: str, user: str) -> str:
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "actions": [{"action_id": action_id, "value": value}],
        "channel": {"id": "C0APPROVALS"},
        "trigger_id": "1.2.3",
        "team": {"id": "T0PAYLINK"},
    }
    return urlencode({"payload": json.dumps(payload, default=str)})


def view_submission(view: Any, user: str) -> str:
    payload = {
        "type": "view_submission",
        "user": {"id": user},
        "view": view,
        "team": {"id": "T0PAYLINK"},
    }
    return urlencode({"payload": json.dumps(payload, default=str)})


# Modal state in the shapes Slack sends (a text input, a select, checkboxes) with any content:
# a signed body comes from Slack, so its shape is Slack's even when its values are odd.
any_text = st.none() | st.text(max_size=30) | st.sampled_from(["5000", "PKR", "card", "0341"])
element_state = (
    st.fixed_dictionaries({"type": st.just("plain_text_input"), "value": any_text})
    | st.fixed_dictionaries(
        {
            "type": st.just("static_select"),
            "selected_option": st.none() | st.fixed_dictionaries({"value": any_text}),
        }
    )
    | st.fixed_dictionaries(
        {
            "type": st.just("checkboxes"),
            "selected_options": st.lists(st.fixed_dictionaries({"value": any_text}), max_size=3),
        }
    )
)
state_values = st.dictionaries(
    st.sampled_from([*FIELD_NAMES_FOR_VIEWS, "reason"]) | st.text(max_size=6),
    st.dictionaries(st.sampled_from(["value", "other"]), element_state, min_size=1, max_size=2),
    max_size=8,
)
views = st.fixed_dictionaries(
    {
        "id": st.just("V0FUZZ"),
        "type": st.just("modal"),
        "callback_id": st.sampled_from(["paylink_request", "other"]),
        "state": st.fixed_dictionaries({"values": state_values}),
        "private_metadata": st.text(max_size=20) | st.just('{"channel_id": "C0SALES"}'),
    }
) | st.fixed_dictionaries(
    {
        "id": st.just("V0FUZZ"),
        "type": st.just("modal"),
        "callback_id": st.just("paylink_reject"),
        "state": st.fixed_dictionaries(
            {
                "values": st.fixed_dictionaries(
                    {"reason": st.fixed_dictionaries({"value": element_state})}
                )
            }
        ),
        "private_metadata": st.text(max_size=10) | st.integers(0, 5).map(str),
    }
)

slack_bodies = (
    st.binary(max_size=300).map(lambda b: b.decode("latin-1"))
    | slack_forms
    | json_values.map(lambda v: json.dumps(v, default=str))
    | st.builds(
        block_action,
        st.text(max_size=10) | st.integers().map(str) | json_values,
        st.sampled_from(
            ["paylink_approve", "paylink_retry", "paylink_cancel", "paylink_reject_open", "other"]
        ),
        st.sampled_from(["U0OUTSIDER", "U0REP"]),
    )
    | st.builds(view_submission, views, st.sampled_from(["U0OUTSIDER", "U0REP"]))
)


@HTTP
@given(body=slack_bodies, signed=st.booleans(), content_type=content_types, stale=st.booleans())
# Found by this test: listeners answer from the request's thread, so a Reject click whose
# value is no link id once raised after its ack and Slack got a 500.
@example(
    body=block_action("", "paylink_reject_open", "U0OUTSIDER"),
    signed=True,
    content_type=FORM,
    stale=False,
)
def test_slack_endpoint_never_fails_on_garbage(
    stack: Any, body: str, signed: bool, content_type: str, stale: bool
) -> None:
    before = snapshot(stack)
    ts = int(time.time()) - (3600 if stale else 0)
    signature = (
        stack.simulator.verifier.generate_signature(timestamp=str(ts), body=body)
        if signed
        else "v0=" + "0" * 64
    )
    r = post(
        stack.simulator.url,
        body.encode("utf-8", "surrogatepass"),
        {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": signature,
        },
    )
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if not signed or stale:  # refused: unauthenticated, or a body nobody could parse
        assert r.status_code in (400, 401), (r.status_code, r.text[:300])
    after = snapshot(stack)
    assert after["links"] == before["links"]
    assert after["history"] == before["history"]


def test_nothing_changed_after_the_listeners_finished(stack: Any) -> None:
    """Bolt runs listeners after the ack: look again once they are done."""
    before = snapshot(stack)
    settle(stack)
    assert snapshot(stack) == before
    statuses = sorted(v[0] for v in before["links"].values())
    assert statuses == [Status.AWAITING_APPROVAL.value, Status.AWAITING_PAYMENT.value]


# (c) parse_checkout ------------------------------------------------------------------------

FIELD_NAMES = list(FIELDS)
field_values = (
    json_values
    | st.sampled_from(
        [
            "5000",
            "1,500.50",
            "1e3",
            "NaN",
            "-1",
            "0.001",
            "9" * 40,
            "ayesha@example.com",
            "03415682456",
            "+92 341 5682456",
            "https://example.com/ok",
            "javascript:alert(1)",
            "PKR",
            "card",
        ]
    )
    | st.lists(st.sampled_from(["card", "CARD", "jazzcash", "bitcoin"]) | json_values, max_size=4)
    | st.builds(Decimal, st.decimals(allow_nan=True, allow_infinity=True))
)


@FAST
@given(
    fields=st.dictionaries(
        st.sampled_from(FIELD_NAMES) | st.text(max_size=5), field_values, max_size=16
    ),
    max_amount=st.none() | st.decimals(min_value=1, max_value=10**9, places=2),
)
def test_parse_checkout_accepts_or_explains(
    fields: dict[str, Any], max_amount: Decimal | None
) -> None:
    try:
        request = parse_checkout(
            fields, currencies=["PKR", "USD"], methods=["card", "jazzcash"], max_amount=max_amount
        )
    except CheckoutInvalid as exc:
        assert exc.errors and all(isinstance(v, str) and v for v in exc.errors.values())
        assert set(exc.errors) <= set(FIELD_NAMES)
        return
    assert isinstance(request, CheckoutRequest)
    assert request.amount > 0 and request.amount.as_tuple().exponent == -2
    assert max_amount is None or request.amount <= max_amount
    assert request.customer.name and (request.customer.email or request.customer.phone)
    js_stringify(request.to_xpay_payload())  # what we would sign and send
    # Nothing PostgreSQL cannot store (NUL) or Slack would garble (control characters).
    strings = [v for v in request.model_dump(mode="json").values() if isinstance(v, str)]
    strings += [
        v
        for part in (request.customer, request.shipping)
        for v in part.model_dump().values()
        if isinstance(v, str)
    ]
    assert not [v for v in strings if re.search(r"[\x00-\x1f\x7f]", v)], strings
