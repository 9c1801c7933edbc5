"""Webhook signature verification and payment-event parsing (bot.xpay.webhooks)."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import json
import time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.links.payments import event_key
from bot.xpay.signing import js_stringify
from bot.xpay.webhooks import (
    MAX_WEBHOOK_BYTES,
    PaymentEvent,
    WebhookError,
    WebhookMalformed,
    WebhookSignatureError,
    WebhookTooLarge,
    parse_payment_event,
    verify_webhook,
)

SECRET = "whsec_current"
OLD_SECRET = "whsec_previous"

# The sample payload of XPay's webhooks guide, abridged.
SUCCEEDED: dict[str, Any] = {
    "type": "PAYMENT_INTENT_NOTIFICATION",
    "payment_intent_id": "xpay_pi_1573edc2",
    "refund_id": None,
    "amount": 10,
    "currency": "PKR",
    "status": "succeeded",
    "customer": {"name": "", "email": "", "phone": None},
    "shipping": {},
    "payment_method_types": "card",
    "product": {},
    "transaction_details": {
        "_id": "",
        "status": "CAPTURED",
        "secure": "3DS2",
        "refunded_amount": 0,
        "gateway": "bank-alfalah",
        "response_from_bank": "The payment was completed successfully",
        "status_message_from_bank": "PAYMENT_CAPTURED",
        "activity": [
            {
                "status": "AUTHENTICATION_SUCCESSFUL",
                "amount": 10,
                "card": {"last4digits": "0008", "type": "MASTERCARD"},
            }
        ],
    },
}


def failed_sample() -> dict[str, Any]:
    data = copy.deepcopy(SUCCEEDED)
    data["status"] = "failed"
    data["amount"] = 1500.5
    data["payment_method_types"] = ["card"]
    data["transaction_details"].update(
        status="DECLINED",
        response_from_bank="Insufficient funds",
        status_message_from_bank="PAYMENT_DECLINED",
    )
    return data


def body_of(data: Any) -> bytes:
    return js_stringify(data)


def sig(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_valid_signature_returns_the_object() -> None:
    body = body_of(SUCCEEDED)
    assert verify_webhook(body, sig(body), [SECRET]) == SUCCEEDED


def test_tampered_body_rejected() -> None:
    body = body_of(SUCCEEDED)
    tampered = body.replace(b'"amount":10', b'"amount":1')
    with pytest.raises(WebhookSignatureError) as info:
        verify_webhook(tampered, sig(body), [SECRET])
    assert info.value.http_status == 401


def test_wrong_secret_rejected() -> None:
    body = body_of(SUCCEEDED)
    with pytest.raises(WebhookSignatureError):
        verify_webhook(body, sig(body, "someone-else"), [SECRET])


def test_rotated_secret_second_of_two_accepted() -> None:
    body = body_of(SUCCEEDED)
    assert verify_webhook(body, sig(body, OLD_SECRET), [SECRET, OLD_SECRET]) == SUCCEEDED


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_signature_rejected(header: str | None) -> None:
    with pytest.raises(WebhookSignatureError) as info:
        verify_webhook(body_of(SUCCEEDED), header, [SECRET])
    assert info.value.http_status == 401
    assert info.value.reason == "missing signature"


@pytest.mark.parametrize(
    "header", ["nothex" * 8, "ab" * 31, "ab" * 33, "é" * 64, "sha256=" + "a" * 57]
)
def test_garbage_signature_rejected(header: str) -> None:
    with pytest.raises(WebhookSignatureError):
        verify_webhook(body_of(SUCCEEDED), header, [SECRET])


def test_uppercase_hex_signature_accepted() -> None:
    body = body_of(SUCCEEDED)
    assert verify_webhook(body, f" {sig(body).upper()} ", [SECRET]) == SUCCEEDED


def test_oversized_body_rejected_before_anything_else() -> None:
    body = b"{" + b" " * MAX_WEBHOOK_BYTES + b"}"
    with pytest.raises(WebhookTooLarge) as info:
        verify_webhook(body, sig(body), [SECRET])
    assert info.value.http_status == 413
    with pytest.raises(WebhookTooLarge):  # even with no signature at all
        verify_webhook(body, None, [SECRET])


def test_body_at_the_limit_accepted() -> None:
    body = b'{"payment_intent_id":"x","pad":"' + b"a" * MAX_WEBHOOK_BYTES
    body = body[: MAX_WEBHOOK_BYTES - 2] + b'"}'
    assert len(body) == MAX_WEBHOOK_BYTES
    assert verify_webhook(body, sig(body), [SECRET])["payment_intent_id"] == "x"


@pytest.mark.parametrize("body", [b"not json", b'{"a":', b"\xff\xfe{}", b"NaN", b'{"a":NaN}'])
def test_correctly_signed_non_json_is_malformed(body: bytes) -> None:
    with pytest.raises(WebhookMalformed) as info:
        verify_webhook(body, sig(body), [SECRET])
    assert info.value.http_status == 400


def test_unsigned_non_json_is_a_signature_error_not_malformed() -> None:
    with pytest.raises(WebhookSignatureError):
        verify_webhook(b"not json", "0" * 64, [SECRET])


@pytest.mark.parametrize("body", [b"[1,2,3]", b'"text"', b"42", b"null"])
def test_signed_json_that_is_not_an_object_is_malformed(body: bytes) -> None:
    with pytest.raises(WebhookMalformed, match="not a JSON object"):
        verify_webhook(body, sig(body), [SECRET])


def test_unknown_fields_tolerated() -> None:
    data = {**SUCCEEDED, "brand_new_field": {"nested": [1, 2.5]}, "x": None}
    body = body_of(data)
    event = parse_payment_event(verify_webhook(body, sig(body), [SECRET]))
    assert event.payment_intent_id == "xpay_pi_1573edc2"


def test_signature_over_reserialisation_accepted() -> None:
    """XPay may sign JSON.stringify of the object while sending pretty-printed JSON."""
    data = failed_sample()
    data["customer"]["name"] = "محمد علی / Müller 😀"
    raw = json.dumps(data, indent=2, ensure_ascii=True).encode()  # \\u escapes, spaces, 1500.5
    compact = body_of(data)
    assert raw != compact
    result = verify_webhook(raw, sig(compact), [OLD_SECRET, SECRET])
    assert result["customer"]["name"] == "محمد علی / Müller 😀"
    assert result["amount"] == Decimal("1500.5")


def with_amount(text: bytes) -> bytes:
    """The guide's sample with its amount written as ``text``."""
    return body_of(SUCCEEDED).replace(
        b'"amount":10,"currency"', b'"amount":' + text + b',"currency"'
    )


def test_every_body_one_signature_passes_for_is_one_event() -> None:
    """A signature over JSON.stringify's form of a body passes for other spellings of its
    numbers; each must read as the body signed, with one de-duplication key."""
    signature = sig(with_amount(b"5000"))
    events = [
        parse_payment_event(verify_webhook(with_amount(text), signature, [SECRET]))
        for text in (b"5000", b"5000.0000000000001", b"4999.9999999999999", b"5e3", b"5000.00")
    ]
    assert {event.amount for event in events} == {Decimal(5000)}
    assert all(event == events[0] for event in events)
    assert {event_key(event) for event in events} == {event_key(events[0])}


@pytest.mark.parametrize(
    "amount",
    [
        b"1e900000000",
        b"-1e900000000",
        b"1e400",
        b"1e12",
        b"1000000000000",
        b"10.005",
        b"1" * 5000,
        b'"1e3"',
        b'"\\u0665\\u0660"',
        b"true",
        b"[10]",
    ],
)
def test_an_amount_that_is_no_sum_of_money_is_malformed(amount: bytes) -> None:
    """Signed or not, an amount beyond 10^12, with more than 2 decimal places or not a plain
    number is refused at once (it never reaches a card)."""
    body = with_amount(amount)
    started = time.perf_counter()
    with pytest.raises(WebhookMalformed) as info:
        parse_payment_event(verify_webhook(body, sig(body), [SECRET]))
    assert info.value.http_status == 400 and info.value.reason
    assert time.perf_counter() - started < 1


def test_reserialisation_with_wrong_secret_rejected() -> None:
    data = failed_sample()
    raw = json.dumps(data, indent=2).encode()
    with pytest.raises(WebhookSignatureError):
        verify_webhook(raw, sig(body_of(data), "someone-else"), [SECRET])


def test_reserialisation_of_a_signed_array_is_still_malformed() -> None:
    raw, compact = b"[ 1, 2 ]", b"[1,2]"
    with pytest.raises(WebhookMalformed):
        verify_webhook(raw, sig(compact), [SECRET])


def test_no_secret_configured_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        verify_webhook(b"{}", sig(b"{}"), [])
    with pytest.raises(ValueError):
        verify_webhook(b"{}", sig(b"{}", ""), [""])


def test_parse_succeeded_sample() -> None:
    event = parse_payment_event(json.loads(json.dumps(SUCCEEDED), parse_float=Decimal))
    assert event == PaymentEvent(
        type="PAYMENT_INTENT_NOTIFICATION",
        payment_intent_id="xpay_pi_1573edc2",
        status="succeeded",
        amount=Decimal(10),
        currency="PKR",
        method="card",
        bank_message="The payment was completed successfully",
        transaction_status="CAPTURED",
    )
    assert event.outcome == "paid"


def test_parse_failed_sample() -> None:
    body = body_of(failed_sample())
    event = parse_payment_event(verify_webhook(body, sig(body), [SECRET]))
    assert event.outcome == "failed"
    assert event.amount == Decimal("1500.5")
    assert event.method == "card"
    assert event.bank_message == "Insufficient funds"
    assert event.transaction_status == "DECLINED"


def test_bank_message_falls_back_and_methods_join() -> None:
    data = failed_sample()
    data["transaction_details"]["response_from_bank"] = ""
    data["payment_method_types"] = ["card", "jazzcash", 7]
    event = parse_payment_event(data)
    assert event.bank_message == "PAYMENT_DECLINED"
    assert event.method == "card, jazzcash"
    data["transaction_details"] = "not an object"
    data["payment_method_types"] = None
    event = parse_payment_event(data)
    assert (event.bank_message, event.transaction_status, event.method) == (None, None, None)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("succeeded", "paid"),
        ("SUCCEEDED", "paid"),
        ("failed", "failed"),
        ("payment_failed", "failed"),
        ("declined", "failed"),
        ("requires_payment_method", "ignored"),
        ("canceled", "ignored"),
        ("cancelled", "ignored"),
        ("refunded", "ignored"),
        ("", "ignored"),
    ],
)
def test_outcome(status: str, outcome: str) -> None:
    assert parse_payment_event({**SUCCEEDED, "status": status}).outcome == outcome


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"payment_intent_id": None}, "payment_intent_id"),
        ({"payment_intent_id": "  "}, "payment_intent_id"),
        ({"payment_intent_id": 123}, "payment_intent_id"),
        ({"status": None}, "status"),
        ({"amount": "lots"}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"currency": ["PKR"]}, "currency"),
    ],
)
def test_invalid_event_is_malformed(change: dict[str, Any], field: str) -> None:
    data = {**SUCCEEDED, **change}
    with pytest.raises(WebhookMalformed) as info:
        parse_payment_event(data)
    assert info.value.http_status == 400
    assert field in info.value.reason
    assert info.value.reason.startswith("invalid payment event:")


def test_missing_intent_id_is_malformed() -> None:
    data = {k: v for k, v in SUCCEEDED.items() if k != "payment_intent_id"}
    with pytest.raises(WebhookMalformed, match="payment_intent_id"):
        parse_payment_event(data)


# -- fuzz ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _interesting_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=512),
        json_values.map(lambda v: json.dumps(v).encode()),
        json_values.map(lambda v: json.dumps(v, indent=1, ensure_ascii=False).encode()),
        st.integers(1, 3000).map(lambda n: b"[" * n),
        st.just(b'{"a":1e400}'),
        st.just(b'{"a":' + b"9" * 5000 + b"}"),
        st.just(b'{"a":"\\ud800"}'),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=_interesting_bodies(),
    signature=st.one_of(st.none(), st.text(max_size=70), st.sampled_from(["sign-raw", "sign-js"])),
)
def test_fuzz_only_webhook_errors_or_a_dict(body: bytes, signature: str | None) -> None:
    if signature == "sign-raw":
        signature = sig(body)
    elif signature == "sign-js":
        try:
            signature = sig(js_stringify(json.loads(body, parse_float=Decimal)))
        except Exception:
            signature = sig(body, "other")
    try:
        result = verify_webhook(body, signature, [OLD_SECRET, SECRET])
    except WebhookError as err:
        assert err.http_status in (400, 401, 413)
        assert isinstance(err.reason, str) and err.reason
        return
    assert isinstance(result, dict)
    with contextlib.suppress(WebhookMalformed):
        parse_payment_event(result)
