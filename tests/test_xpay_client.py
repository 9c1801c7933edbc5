"""XPayClient against a real HTTP stub on 127.0.0.1 that records exactly what it received."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bot.xpay.client import (
    CheckoutCreated,
    IntentDetails,
    XPayClient,
    XPayError,
    XPayKeys,
    XPayOutcomeUnknown,
    XPayRejected,
    XPayServerError,
    XPayUnavailable,
)

pytestmark = pytest.mark.integration  # real HTTP, to a stub or to a port nobody listens on

API_KEY = "sk_test_apikey_123"
ACCOUNT = "acct_42"
SECRET = "hmac_sc_api_secret"

CREATED = {
    "success": True,
    "responseStatus": "OK",
    "message": "Request processed successfully.",
    "data": {
        "_id": "xpay_pi_60be1502705b",
        "amount": 5,
        "currency": "PKR",
        "pi_status": "requires_payment_method",
        "checkout_page_url": "https://xpay-checkout-stage.xstak.com/?source=headless&id=670cc",
    },
}


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # read the request, then never answer
    drop: bool = False  # read the request, then close the connection without answering


def json_reply(status: int, doc: Any, **headers: str) -> Reply:
    return Reply(status, json.dumps(doc).encode(), {"Content-Type": "application/json", **headers})


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Stub:
    """Answers each request with the next scripted Reply (the last one repeats)."""

    def __init__(self) -> None:
        self.replies: list[Reply] = [json_reply(200, CREATED)]
        self.received: list[Received] = []
        self.release = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                stub.received.append(
                    Received(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
                index = min(len(stub.received), len(stub.replies)) - 1
                reply = stub.replies[index]
                if reply.hang:
                    stub.release.wait(5)
                if reply.hang or reply.drop:
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = _handle
            do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    yield s
    s.stop()


@pytest.fixture
def client(stub: Stub) -> Iterator[XPayClient]:
    c = XPayClient(
        stub.url, XPayKeys(API_KEY, ACCOUNT, SECRET), connect_timeout=1.0, read_timeout=0.5
    )
    yield c
    c.close()


def payload(amount: Decimal = Decimal("5.00"), name: str = "محمد علی") -> dict[str, Any]:
    return {
        "amount": amount,
        "currency": "PKR",
        "customer": {"name": name, "email": "ali@example.com", "phone": "03415682456"},
        "shipping": {"address1": "Gulberg", "city": "Lahore", "country": "Pakistan"},
        "metadata": {"order_reference": "PL-0001"},
        "success_url": "https://shop.example/ok/1",
        "failure_url": "https://shop.example/fail/1",
        "payment_methods": ["card", "jazzcash"],
    }


def test_create_sends_exactly_the_signed_bytes(stub: Stub, client: XPayClient) -> None:
    created = client.create_checkout(payload())

    assert created == CheckoutCreated(
        intent_id="xpay_pi_60be1502705b",
        checkout_url=CREATED["data"]["checkout_page_url"],
        status="requires_payment_method",
        raw={},
    )
    assert created.raw["data"]["_id"] == "xpay_pi_60be1502705b"
    [req] = stub.received
    assert req.method == "POST"
    assert req.path == "/public/v1/payment/checkout"
    assert req.headers["x-api-key"] == API_KEY
    assert req.headers["x-account-id"] == ACCOUNT
    assert req.headers["content-type"] == "application/json"
    expected_sig = hmac.new(SECRET.encode(), req.body, hashlib.sha256).hexdigest()
    assert req.headers["x-signature"] == expected_sig
    text = req.body.decode("utf-8")
    assert text.startswith('{"amount":5,"currency":"PKR",')
    assert "محمد علی" in text
    assert '"success_url":"https://shop.example/ok/1"' in text
    assert " " not in text.replace("محمد علی", "")


def test_fractional_decimal_amount(stub: Stub, client: XPayClient) -> None:
    client.create_checkout(payload(Decimal("1500.50")))
    assert stub.received[0].body.startswith(b'{"amount":1500.5,')


def test_rejected_with_gateway_message(stub: Stub, client: XPayClient) -> None:
    stub.replies = [json_reply(401, {"success": False, "message": "Invalid signature"})]
    with pytest.raises(XPayRejected) as info:
        client.create_checkout(payload())
    assert info.value.message == "Invalid signature"
    assert info.value.status_code == 401
    assert info.value.maybe_created is False


def test_rejected_without_json_body(stub: Stub, client: XPayClient) -> None:
    stub.replies = [Reply(400, b"<html>Bad Request</html>")]
    with pytest.raises(XPayRejected, match=r"HTTP 400"):
        client.create_checkout(payload())


def test_success_false_on_200_is_rejected(stub: Stub, client: XPayClient) -> None:
    stub.replies = [json_reply(200, {"success": False, "message": "Amount is invalid"})]
    with pytest.raises(XPayRejected) as info:
        client.create_checkout(payload())
    assert info.value.message == "Amount is invalid"
    assert info.value.status_code == 200


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, XPayServerError),
        (503, XPayServerError),
        # A proxy's 502/504 means XPay may have created the link behind it.
        (502, XPayOutcomeUnknown),
        (504, XPayOutcomeUnknown),
    ],
)
def test_server_error_is_not_retried_for_post(
    stub: Stub, client: XPayClient, status: int, error: type
) -> None:
    stub.replies = [
        json_reply(status, {"success": False, "message": "boom"}, **{"Retry-After": "0"})
    ]
    with pytest.raises(error) as info:
        client.create_checkout(payload())
    assert info.value.status_code == status
    assert len(stub.received) == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, b"<html>not json</html>"),
        Reply(200, b'{"success": true, "data": '),
        json_reply(200, ["not", "an", "object"]),
        json_reply(200, {"success": True}),
        json_reply(200, {"success": True, "data": {"_id": "xpay_pi_1"}}),
        json_reply(201, {"success": True, "data": {"checkout_page_url": "https://x/1"}}),
    ],
    ids=["html", "truncated", "array", "no-data", "no-url", "no-id"],
)
def test_unusable_2xx_is_outcome_unknown(stub: Stub, client: XPayClient, reply: Reply) -> None:
    stub.replies = [reply]
    with pytest.raises(XPayOutcomeUnknown) as info:
        client.create_checkout(payload())
    assert info.value.maybe_created is True
    assert len(stub.received) == 1


def test_no_answer_is_outcome_unknown_and_not_retried(stub: Stub, client: XPayClient) -> None:
    stub.replies = [Reply(hang=True)]
    with pytest.raises(XPayOutcomeUnknown):
        client.create_checkout(payload())
    assert len(stub.received) == 1
    assert stub.received[0].body.startswith(b'{"amount":5,')


def test_dropped_after_sending_is_outcome_unknown_and_not_retried(
    stub: Stub, client: XPayClient
) -> None:
    stub.replies = [Reply(drop=True)]
    with pytest.raises(XPayOutcomeUnknown, match="may have been processed"):
        client.create_checkout(payload())
    assert len(stub.received) == 1


def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = XPayClient(f"http://127.0.0.1:{port}", XPayKeys(API_KEY, ACCOUNT, SECRET))
    try:
        with pytest.raises(XPayUnavailable) as info:
            client.create_checkout(payload())
    finally:
        client.close()
    assert info.value.status_code is None
    assert info.value.maybe_created is False


def test_errors_and_logs_never_leak_secrets_or_customer_data(
    stub: Stub, client: XPayClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.xpay")
    client.create_checkout(payload())
    stub.replies = [json_reply(401, {"success": False, "message": "Invalid signature"})]
    with pytest.raises(XPayError) as info:
        client.create_checkout(payload())
    xpay_lines = [r.getMessage() for r in caplog.records if r.name == "bot.xpay.client"]
    assert len(xpay_lines) == 2
    assert "POST /public/v1/payment/checkout status=200" in xpay_lines[0]
    assert "status=401" in xpay_lines[1]
    everything = " ".join(xpay_lines) + str(info.value) + repr(info.value) + repr(client)
    for secret in (API_KEY, SECRET, "محمد", "ali@example.com", "03415682456"):
        assert secret not in everything


def test_get_intent_retries_503_then_succeeds(stub: Stub, client: XPayClient) -> None:
    stub.replies = [
        json_reply(503, {"message": "busy"}, **{"Retry-After": "0"}),
        json_reply(
            200,
            {
                "success": True,
                "data": {"_id": "xpay_pi/1", "pi_status": "succeeded", "amount": 1500.5},
            },
        ),
    ]
    details = client.get_intent("xpay_pi/1")
    assert details == IntentDetails("xpay_pi/1", "succeeded", Decimal("1500.5"), None, raw={})
    assert [r.path for r in stub.received] == ["/public/v1/payment/intent/details/xpay_pi%2F1"] * 2
    assert all(r.method == "GET" for r in stub.received)
    assert stub.received[1].headers["x-api-key"] == API_KEY
    assert stub.received[1].headers["x-account-id"] == ACCOUNT


def test_get_intent_tolerates_unwrapped_body(stub: Stub, client: XPayClient) -> None:
    stub.replies = [json_reply(200, {"status": "requires_payment_method", "currency": "PKR"})]
    details = client.get_intent("xpay_pi_9")
    assert (details.intent_id, details.status, details.amount, details.currency) == (
        "xpay_pi_9",
        "requires_payment_method",
        None,
        "PKR",
    )


@pytest.mark.parametrize(
    "amount", [b"1e900000000", b"1e400", b"1" * 5000, b"10.005", b'"1e3"', b'"\\u0665"', b"true"]
)
def test_get_intent_refuses_an_amount_that_is_no_sum_of_money(
    stub: Stub, client: XPayClient, amount: bytes
) -> None:
    """An amount we could not act on is no usable answer, never a huge number."""
    body = b'{"success":true,"data":{"_id":"xpay_pi_1","pi_status":"succeeded","amount":'
    stub.replies = [Reply(200, body + amount + b',"currency":"PKR"}}')]
    with pytest.raises(XPayOutcomeUnknown, match="amount"):
        client.get_intent("xpay_pi_1")


def test_get_intent_gives_up_after_bounded_retries(stub: Stub, client: XPayClient) -> None:
    stub.replies = [json_reply(503, {"message": "down"}, **{"Retry-After": "0"})]
    with pytest.raises(XPayServerError, match="down"):
        client.get_intent("xpay_pi_1")
    assert len(stub.received) == 4  # first try + 3 retries


def test_get_intent_404_is_rejected_without_retry(stub: Stub, client: XPayClient) -> None:
    stub.replies = [json_reply(404, {"success": False, "message": "Payment intent not found"})]
    with pytest.raises(XPayRejected, match="not found"):
        client.get_intent("xpay_pi_missing")
    assert len(stub.received) == 1


def test_unserialisable_payload_sends_nothing(stub: Stub, client: XPayClient) -> None:
    with pytest.raises(ValueError):
        client.create_checkout({"amount": Decimal("NaN")})
    assert stub.received == []
