"""The embedded sandbox gateway over real HTTP: waitress in a thread, SQLite in tmp_path.

A small recording HTTP server stands in for the bot's webhook endpoint and for the merchant's
success/failure pages. The fixtures here (``recorder``, ``gateway``) are reused by
``tests/test_sandbox_browser.py``.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from bot.config import Settings
from bot.db import Base, make_engine, make_sessionmaker
from bot.links.states import Status
from bot.links.tables import Link
from bot.payment_methods import PAYMENT_METHODS
from bot.server import Server
from bot.slack import blocks
from bot.xpay.sandbox import (
    SandboxConfig,
    SandboxIntent,
    make_sandbox_blueprint,
    sandbox_webhook_payload,
)
from bot.xpay.signing import js_stringify, sign, signature_matches
from tests.waiting import wait_until

API_KEY = "sk-test-key"
ACCOUNT_ID = "acct-test"
HMAC_SECRET = "api-hmac-secret"
WEBHOOK_SECRET = "webhook-hmac-secret"

# Top-level keys of XPay's documented create response and of its ``data`` object.
RESPONSE_KEYS = {"success", "responseStatus", "message", "data"}
DATA_KEYS = {
    "_id",
    "pi_client_secret",
    "created_at",
    "amount",
    "currency",
    "refund",
    "object_name",
    "customer",
    "description",
    "pi_status",
    "pm_token",
    "shipping",
    "metadata",
    "token",
    "capture_method",
    "html_response",
    "bank_response",
    "last_payment_response",
    "encryptionKey",
    "billingAddress",
    "routing_rules_history",
    "subscription",
    "checkout_page_url",
}


# --------------------------------------------------------------------------------------
# Recording server: webhook target and merchant redirect target


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """Records every request; answers POSTs with queued statuses (default 200)."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    post_statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def posts(self) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST"]

    def wait_for_posts(self, count: int, timeout: float = 5.0) -> list[Recorded]:
        def enough() -> list[Recorded] | None:
            posts = self.posts()
            return posts if len(posts) >= count else None

        return wait_until(enough, timeout, message=lambda: f"{len(self.posts())} POSTs")


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> Recorded:
            length = int(self.headers.get("Content-Length") or 0)
            entry = Recorded(
                self.command,
                self.path,
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile.read(length) if length else b"",
            )
            with recorder.lock:
                recorder.requests.append(entry)
            return entry

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._record()
            title = "Thank you" if self.path.startswith("/success") else "Payment failed"
            page = f"<!doctype html><title>{title}</title><h1 id='merchant'>{title}</h1>"
            self._send(200, page.encode(), "text/html")

        def do_POST(self) -> None:
            self._record()
            with recorder.lock:
                status = recorder.post_statuses.pop(0) if recorder.post_statuses else 200
            self._send(status, b'{"success":true}', "application/json")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """A recording HTTP server on 127.0.0.1 (webhook target and redirect target)."""
    rec = Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    server.daemon_threads = True
    rec.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------------------
# The gateway under test


@dataclass
class Gateway:
    """A running sandbox gateway."""

    public_url: str
    config: SandboxConfig
    sessions: sessionmaker
    recorder: Recorder

    @property
    def api(self) -> str:
        return f"{self.public_url}/sandbox"

    def create(
        self,
        payload: dict[str, Any] | None = None,
        *,
        body: bytes | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """POST a create request; signs ``js_stringify(payload)`` unless told otherwise."""
        if body is None:
            body = js_stringify(payload if payload is not None else make_payload())
        sent = {
            "x-api-key": API_KEY,
            "x-account-id": ACCOUNT_ID,
            "x-signature": signature if signature is not None else sign(HMAC_SECRET, body),
            "Content-Type": "application/json",
        }
        for name, value in (headers or {}).items():
            if value is None:
                sent.pop(name, None)
            else:
                sent[name] = value
        return requests.post(f"{self.api}/public/v1/payment/checkout", data=body, headers=sent)

    def create_ok(self, **changes: Any) -> dict[str, Any]:
        response = self.create(make_payload(**changes))
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def submit(self, pi_id: str, outcome: str, method: str = "card") -> requests.Response:
        return requests.post(
            f"{self.api}/checkout/{pi_id}/pay",
            data={"outcome": outcome, "method": method},
            allow_redirects=False,
        )

    def count(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(SandboxIntent)) or 0


def make_payload(**changes: Any) -> dict[str, Any]:
    """A valid create body like the one in XPay's documentation."""
    payload: dict[str, Any] = {
        "amount": Decimal("1500.50"),
        "currency": "PKR",
        "customer": {"name": "<b>&", "email": "buyer@example.com", "phone": "03415682456"},
        "shipping": {
            "address1": "Gulberg",
            "city": "Lahore",
            "country": "Pakistan",
            "zip": "54000",
            "shipping_method": "Standard",
            "province": "Punjab",
        },
        "metadata": {"order_reference": "PL-" + str(time.monotonic_ns())},
        "payment_methods": ["card", "jazzcash"],
    }
    payload.update(changes)
    return payload


def start_gateway(db_path: Path, recorder: Recorder) -> tuple[Gateway, Callable[[], None]]:
    """Start the sandbox blueprint on waitress (port 0) over the SQLite file ``db_path``."""
    engine = make_engine(f"sqlite:///{db_path}")
    Base.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    config = SandboxConfig(
        api_key=API_KEY,
        account_id=ACCOUNT_ID,
        hmac_secret=HMAC_SECRET,
        webhook_secret=WEBHOOK_SECRET,
        public_url="http://127.0.0.1:0",  # fixed below, once the port is known
        webhook_url=f"{recorder.url}/xpay/webhook",
        webhook_timeout=2.0,
        webhook_retry_delays=(0.05, 0.05),
        webhook_background_delays=(0.1, 0.1),
    )
    app = Flask("sandbox-test")
    app.register_blueprint(make_sandbox_blueprint(config, sessions), url_prefix="/sandbox")
    # The bot's own server wrapper: it knows how to stop waitress from another thread.
    server = Server(app, host="127.0.0.1", port=0, threads=8)
    config.public_url = f"http://127.0.0.1:{server.port}"
    server.start()

    def stop() -> None:
        server.close()
        engine.dispose()

    return Gateway(config.public_url, config, sessions, recorder), stop


@pytest.fixture
def gateway(tmp_path: Path, recorder: Recorder) -> Iterator[Gateway]:
    """The sandbox gateway on a real socket, its webhooks going to ``recorder``."""
    gw, stop = start_gateway(tmp_path / "sandbox.db", recorder)
    yield gw
    stop()


def _webhooks(recorder: Recorder) -> list[Recorded]:
    return [r for r in recorder.posts() if r.path == "/xpay/webhook"]


# --------------------------------------------------------------------------------------
# Create


def test_create_returns_documented_shape_and_a_working_page(gateway: Gateway) -> None:
    payload = make_payload(
        success_url=f"{gateway.recorder.url}/success", failure_url=f"{gateway.recorder.url}/fail"
    )
    response = gateway.create(payload)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    doc = response.json()
    assert set(doc) == RESPONSE_KEYS
    assert doc["success"] is True
    assert doc["responseStatus"] == "OK"
    data = doc["data"]
    assert set(data) == DATA_KEYS
    assert re.fullmatch(r"xpay_pi_[0-9a-f]{64}", data["_id"])
    assert re.fullmatch(re.escape(data["_id"]) + r"_cs_[0-9a-f]{64}", data["pi_client_secret"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["created_at"])
    assert data["amount"] == 1500.5
    assert b'"amount":1500.5,' in response.content  # a JSON number, JS-style
    assert data["currency"] == "PKR"
    assert data["pi_status"] == "requires_payment_method"
    assert data["object_name"] == "payment_intent"
    assert data["refund"] == {"refunded_amount": 0, "refund_object_id": None}
    assert data["customer"]["name"] == "<b>&"
    assert data["shipping"]["city"] == "Lahore"
    assert data["metadata"] == payload["metadata"]
    assert data["checkout_page_url"] == f"{gateway.public_url}/sandbox/checkout/{data['_id']}"

    page = requests.get(data["checkout_page_url"])
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    html = page.text
    assert "Paylink sandbox" in html
    assert "PKR 1,500.50" in html
    assert "&lt;b&gt;&amp;" in html
    assert "<b>&" not in html
    assert payload["metadata"]["order_reference"] in html
    assert re.findall(r'name="method" value="(\w+)"', html) == ["card", "jazzcash"]
    assert f'action="/sandbox/checkout/{data["_id"]}/pay"' in html
    assert 'name="outcome" value="pay"' in html
    assert 'name="outcome" value="decline"' in html


def test_page_offers_every_method_when_none_requested(gateway: Gateway) -> None:
    payload = make_payload()
    del payload["payment_methods"]
    response = gateway.create(payload)
    assert response.status_code == 200, response.text
    html = requests.get(response.json()["data"]["checkout_page_url"]).text
    assert re.findall(r'name="method" value="(\w+)"', html) == [
        "card",
        "easypaisa",
        "jazzcash",
        "googlepay",
        "dqr",
    ]


def test_payment_methods_read_the_same_in_settings_slack_and_on_the_page(
    gateway: Gateway,
) -> None:
    methods = list(PAYMENT_METHODS.items())
    codes = [code for code, _ in methods]
    settings = Settings(_env_file=None, paylink_payment_methods=",".join(reversed(codes)))
    assert Settings(_env_file=None).paylink_payment_methods == codes

    modal = blocks.request_modal(settings, channel_id="C0SALES")
    (checkboxes,) = (b["element"] for b in modal["blocks"] if b["block_id"] == "payment_methods")
    offered = [(o["value"], o["text"]["text"]) for o in checkboxes["options"]]
    assert sorted(offered) == sorted(methods)

    link = Link(
        id=1,
        reference="PL-METHODS",
        amount=Decimal("100"),
        currency="PKR",
        customer_name="Ali",
        payment_methods=codes,
        requester_id="U0REP",
        status=Status.AWAITING_APPROVAL.value,
    )
    _, card = blocks.card(link)
    (details,) = (b for b in card if b["block_id"] == "details")
    assert {"type": "mrkdwn", "text": "*Methods*\n" + ", ".join(PAYMENT_METHODS.values())} in (
        details["fields"]
    )

    html = requests.get(gateway.create_ok(payment_methods=codes)["checkout_page_url"]).text
    on_page = re.findall(r'name="method" value="(\w+)".*?>\s*([^<]+?)\s*</label>', html, re.S)
    assert on_page == methods


def test_bad_signature_is_401_json_and_creates_nothing(gateway: Gateway) -> None:
    body = js_stringify(make_payload())
    response = gateway.create(body=body, signature=sign("wrong-secret", body))
    assert response.status_code == 401
    assert response.json() == {
        "success": False,
        "responseStatus": "UNAUTHORIZED",
        "message": "Invalid signature",
    }
    assert gateway.count() == 0


def test_missing_signature_is_401(gateway: Gateway) -> None:
    response = gateway.create(headers={"x-signature": None})
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid signature"


@pytest.mark.parametrize(
    "headers",
    [{"x-api-key": None}, {"x-account-id": None}, {"x-api-key": "sk-other"}],
    ids=["no-api-key", "no-account-id", "wrong-api-key"],
)
def test_bad_credentials_are_401(gateway: Gateway, headers: dict[str, str | None]) -> None:
    response = gateway.create(headers=headers)
    assert response.status_code == 401
    doc = response.json()
    assert doc["success"] is False
    assert doc["responseStatus"] == "UNAUTHORIZED"
    assert API_KEY not in response.text
    assert gateway.count() == 0


def test_signature_over_the_json_stringify_form_is_accepted(gateway: Gateway) -> None:
    payload = make_payload(customer={"name": "Zoë / Ünal", "email": "z@example.com"})
    pretty = json.dumps(
        {**payload, "amount": 1500.50}, indent=2, ensure_ascii=True
    ).encode()  # different bytes, same object
    assert pretty != js_stringify(payload)
    response = gateway.create(body=pretty, signature=sign(HMAC_SECRET, js_stringify(payload)))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["customer"]["name"] == "Zoë / Ünal"


def test_malformed_json_is_400(gateway: Gateway) -> None:
    body = b'{"amount": 5, "currency": "PKR",}'
    response = gateway.create(body=body)
    assert response.status_code == 400
    doc = response.json()
    assert doc["success"] is False
    assert "JSON" in doc["message"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"customer": {"name": "Ali"}}, "customer.email or customer.phone is required"),
        ({"customer": {"email": "a@example.com"}}, "customer.name is required"),
        ({"amount": 0}, "amount must be greater than 0"),
        ({"amount": "5"}, "amount is required and must be a number"),
        ({"amount": Decimal("1.005")}, "amount must have at most 2 decimal places"),
        ({"currency": "PK"}, "currency is required and must be a 3-letter code like PKR"),
        ({"metadata": {}}, "metadata.order_reference is required"),
        ({"payment_methods": ["card", "bitcoin"]}, "Invalid payment_methods: bitcoin"),
        ({"success_url": "javascript:alert(1)"}, "success_url must be an http(s) URL"),
    ],
    ids=[
        "no-contact",
        "no-name",
        "zero-amount",
        "string-amount",
        "three-decimals",
        "currency",
        "no-reference",
        "unknown-method",
        "bad-url",
    ],
)
def test_invalid_body_is_400_with_a_message(
    gateway: Gateway, changes: dict[str, Any], message: str
) -> None:
    response = gateway.create(make_payload(**changes))
    assert response.status_code == 400
    doc = response.json()
    assert doc["success"] is False
    assert doc["message"].startswith(message)
    assert gateway.count() == 0


def test_duplicate_order_reference_is_400(gateway: Gateway) -> None:
    payload = make_payload()
    assert gateway.create(payload).status_code == 200
    again = gateway.create(payload)
    assert again.status_code == 400
    assert again.json()["message"] == "Order reference already used"
    assert gateway.count() == 1


# --------------------------------------------------------------------------------------
# Intent details


def test_intent_details(gateway: Gateway) -> None:
    data = gateway.create_ok()
    url = f"{gateway.api}/public/v1/payment/intent/details/{data['_id']}"
    auth = {"x-api-key": API_KEY, "x-account-id": ACCOUNT_ID}

    response = requests.get(url, headers=auth)
    assert response.status_code == 200
    details = response.json()
    assert details["success"] is True
    assert details["data"]["_id"] == data["_id"]
    assert details["data"]["pi_status"] == "requires_payment_method"
    assert details["data"]["amount"] == 1500.5
    assert details["data"]["currency"] == "PKR"
    assert details["data"]["metadata"] == data["metadata"]

    assert requests.get(url, headers={"x-api-key": API_KEY}).status_code == 401
    unknown = f"{gateway.api}/public/v1/payment/intent/details/xpay_pi_0"
    missing = requests.get(unknown, headers=auth)
    assert missing.status_code == 404
    assert missing.json()["success"] is False


def test_xpay_client_round_trip(gateway: Gateway) -> None:
    """The real client (bot.xpay.client) against the sandbox, when it is available."""
    client_module = pytest.importorskip("bot.xpay.client")
    with client_module.XPayClient(
        gateway.api, client_module.XPayKeys(API_KEY, ACCOUNT_ID, HMAC_SECRET)
    ) as client:
        created = client.create_checkout(make_payload())
        assert created.status == "requires_payment_method"
        assert created.checkout_url.endswith(f"/sandbox/checkout/{created.intent_id}")
        gateway.submit(created.intent_id, "pay")
        details = client.get_intent(created.intent_id)
    assert details.status == "succeeded"
    assert details.amount == Decimal("1500.5")


# --------------------------------------------------------------------------------------
# Paying


def _urls(gateway: Gateway) -> dict[str, str]:
    return {
        "success_url": f"{gateway.recorder.url}/success?ref=1",
        "failure_url": f"{gateway.recorder.url}/failure?ref=1",
    }


def test_pay_sends_one_signed_webhook_and_redirects_to_success_url(gateway: Gateway) -> None:
    data = gateway.create_ok(**_urls(gateway))

    response = gateway.submit(data["_id"], "pay", "jazzcash")

    assert response.status_code == 303
    assert response.headers["Location"] == f"{gateway.recorder.url}/success?ref=1"
    [hook] = _webhooks(gateway.recorder)
    assert hook.headers["content-type"] == "application/json"
    assert signature_matches(WEBHOOK_SECRET, hook.body, hook.headers["x-signature"])
    event = json.loads(hook.body)
    assert event["type"] == "PAYMENT_INTENT_NOTIFICATION"
    assert event["payment_intent_id"] == data["_id"]
    assert event["status"] == "succeeded"
    assert event["amount"] == 1500.5
    assert event["currency"] == "PKR"
    assert event["payment_method_types"] == "jazzcash"
    assert event["refund_id"] is None
    assert event["customer"]["name"] == "<b>&"
    details = event["transaction_details"]
    assert details["status"] == "CAPTURED"
    assert details["status_message_from_bank"] == "PAYMENT_CAPTURED"
    assert details["response_from_bank"] == "The payment was completed successfully"
    assert details["gateway"] == "sandbox"
    assert hook.body == js_stringify(event)  # sent in JSON.stringify form

    page = requests.get(data["checkout_page_url"]).text
    assert "Paid with JazzCash" in page
    assert 'value="pay"' not in page


def test_decline_sends_failed_webhook_and_redirects_to_failure_url(gateway: Gateway) -> None:
    data = gateway.create_ok(**_urls(gateway))

    response = gateway.submit(data["_id"], "decline", "card")

    assert response.status_code == 303
    assert response.headers["Location"] == f"{gateway.recorder.url}/failure?ref=1"
    [hook] = _webhooks(gateway.recorder)
    assert signature_matches(WEBHOOK_SECRET, hook.body, hook.headers["x-signature"])
    event = json.loads(hook.body)
    assert event["status"] == "failed"
    assert event["transaction_details"]["status"] == "DECLINED"
    assert event["transaction_details"]["status_message_from_bank"] == "PAYMENT_DECLINED"
    assert "Payment declined" in requests.get(data["checkout_page_url"]).text


def test_second_submit_sends_no_second_webhook(gateway: Gateway) -> None:
    data = gateway.create_ok(**_urls(gateway))
    assert gateway.submit(data["_id"], "pay").status_code == 303

    again = gateway.submit(data["_id"], "pay")
    changed_mind = gateway.submit(data["_id"], "decline")

    assert len(_webhooks(gateway.recorder)) == 1
    # Both show the final state: the intent was paid.
    assert again.headers["Location"] == f"{gateway.recorder.url}/success?ref=1"
    assert changed_mind.headers["Location"] == f"{gateway.recorder.url}/success?ref=1"


def test_concurrent_submits_settle_once(gateway: Gateway) -> None:
    data = gateway.create_ok(**_urls(gateway))
    results: list[int] = []
    threads = [
        threading.Thread(
            target=lambda o=outcome: results.append(gateway.submit(data["_id"], o).status_code)
        )
        for outcome in ("pay", "decline") * 4
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [303] * 8
    assert len(_webhooks(gateway.recorder)) == 1


def test_without_redirect_urls_a_result_page_is_shown(gateway: Gateway) -> None:
    paid = gateway.create_ok()
    declined = gateway.create_ok()

    ok = gateway.submit(paid["_id"], "pay")
    bad = gateway.submit(declined["_id"], "decline")

    assert ok.status_code == 200
    assert "Payment received" in ok.text
    assert "PKR 1,500.50" in ok.text
    assert bad.status_code == 200
    assert "Payment declined" in bad.text


def test_method_must_be_one_offered(gateway: Gateway) -> None:
    data = gateway.create_ok()  # card and jazzcash
    response = gateway.submit(data["_id"], "pay", "easypaisa")
    assert response.status_code == 400
    assert _webhooks(gateway.recorder) == []


def test_unknown_intent_pages_are_404_html(gateway: Gateway) -> None:
    page = requests.get(f"{gateway.api}/checkout/xpay_pi_nope")
    assert page.status_code == 404
    assert page.headers["Content-Type"].startswith("text/html")
    assert gateway.submit("xpay_pi_nope", "pay").status_code == 404


def test_webhook_is_retried_after_a_server_error(gateway: Gateway) -> None:
    gateway.recorder.post_statuses = [503]
    data = gateway.create_ok(**_urls(gateway))

    assert gateway.submit(data["_id"], "pay").status_code == 303

    first, second = _webhooks(gateway.recorder)
    assert first.body == second.body
    assert first.headers["x-signature"] == second.headers["x-signature"]


def test_webhook_target_down_still_redirects_and_warns(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    gateway.config.webhook_url = f"http://127.0.0.1:{closed_port}/xpay/webhook"
    data = gateway.create_ok(**_urls(gateway))

    with caplog.at_level(logging.INFO, logger="bot.xpay.sandbox"):
        started = time.monotonic()
        response = gateway.submit(data["_id"], "pay")
        elapsed = time.monotonic() - started

    assert response.status_code == 303
    assert response.headers["Location"] == f"{gateway.recorder.url}/success?ref=1"
    assert elapsed < 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "not delivered after 3 attempts" in warnings[0].getMessage()
    assert data["_id"] in warnings[0].getMessage()


def test_background_retry_delivers_when_the_target_comes_back(gateway: Gateway) -> None:
    gateway.recorder.post_statuses = [500, 500, 500]  # all three synchronous attempts fail
    data = gateway.create_ok(**_urls(gateway))

    assert gateway.submit(data["_id"], "pay").status_code == 303

    hooks = gateway.recorder.wait_for_posts(4)
    assert len(hooks) == 4
    assert len({h.body for h in hooks}) == 1


def test_logs_one_line_per_request_without_customer_contact_or_secrets(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="bot.xpay.sandbox"):
        data = gateway.create_ok(**_urls(gateway))
        requests.get(data["checkout_page_url"])
        gateway.submit(data["_id"], "pay")
        gateway.create(headers={"x-api-key": "sk-wrong"})

    text = "\n".join(r.getMessage() for r in caplog.records)
    request_lines = [r for r in caplog.records if " -> " in r.getMessage()]
    assert len(request_lines) == 4
    for secret in ("buyer@example.com", "03415682456", API_KEY, "sk-wrong", HMAC_SECRET):
        assert secret not in text
    assert data["pi_client_secret"] not in text


def test_intents_survive_a_restart(tmp_path: Path, recorder: Recorder) -> None:
    first, stop = start_gateway(tmp_path / "restart.db", recorder)
    data = first.create_ok()
    stop()

    second, stop = start_gateway(tmp_path / "restart.db", recorder)
    try:
        page = requests.get(f"{second.api}/checkout/{data['_id']}")
        assert page.status_code == 200
        assert "PKR 1,500.50" in page.text
        assert second.submit(data["_id"], "pay").status_code == 200
        assert len(_webhooks(recorder)) == 1
    finally:
        stop()


def test_webhook_payload_is_deterministic_and_json_native(gateway: Gateway) -> None:
    data = gateway.create_ok()
    with gateway.sessions() as session:
        intent = session.get(SandboxIntent, data["_id"])
    assert intent is not None

    payload = sandbox_webhook_payload(intent, "pay", "card")

    assert payload == sandbox_webhook_payload(intent, "pay", "card")
    assert json.loads(json.dumps(payload)) == payload
    assert js_stringify(payload).startswith(
        b'{"type":"PAYMENT_INTENT_NOTIFICATION","payment_intent_id":"xpay_pi_'
    )
    assert payload["transaction_details"]["activity"][0]["card"]["type"] == "MASTERCARD"
    with pytest.raises(ValueError):
        sandbox_webhook_payload(intent, "refund", "card")
