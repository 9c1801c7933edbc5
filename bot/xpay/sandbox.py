"""The embedded sandbox gateway: a stand-in for XStak XPay, mounted under ``/sandbox``.

It behaves like XPay on the wire so the bot (and its tests, and ``paylink demo``) can run the
whole flow with no XPay account:

* ``POST /public/v1/payment/checkout`` checks ``x-api-key``/``x-account-id`` and the
  ``x-signature`` HMAC (over the raw body or its ``JSON.stringify`` re-serialisation, as XPay
  integrations sign), validates the body and answers with XPay's documented response shape;
* ``GET /public/v1/payment/intent/details/<pi_id>`` returns the intent and its status;
* ``GET /checkout/<pi_id>`` is the hosted checkout page a customer sees (plain HTML);
* ``POST /checkout/<pi_id>/pay`` settles the intent once, sends a signed
  ``PAYMENT_INTENT_NOTIFICATION`` webhook to the bot and redirects to ``success_url`` /
  ``failure_url``.

Intents are stored in the ``sandbox_intents`` table so pages keep working across restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import requests
from flask import Blueprint, Response, g, redirect, render_template_string, request, url_for
from markupsafe import Markup
from sqlalchemy import JSON, Numeric, String, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from bot.db import Base, UTCDateTime, utcnow
from bot.money import CENT, AmountProblem, amount_problem
from bot.payment_methods import PAYMENT_METHODS, method_label
from bot.urls import is_http_url
from bot.xpay.signing import js_stringify, sign, signature_matches

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.xpay.keys import GatewayKeys

log = logging.getLogger(__name__)

REQUIRES_PAYMENT_METHOD = "requires_payment_method"
SUCCEEDED = "succeeded"
FAILED = "failed"

MAX_BODY_BYTES = 64 * 1024
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")


class SandboxIntent(Base):
    """A payment intent created at the sandbox gateway."""

    __tablename__ = "sandbox_intents"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)  # xpay_pi_<64 hex>
    client_secret: Mapped[str] = mapped_column(String(160))
    # Unique, as at XPay: a retried create with the same reference is refused.
    order_reference: Mapped[str] = mapped_column(String(200), unique=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)  # the create body as received
    status: Mapped[str] = mapped_column(String(32), default=REQUIRES_PAYMENT_METHOD)
    payment_method: Mapped[str | None] = mapped_column(String(32))  # chosen on the page
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def payment_methods(self) -> list[str]:
        """The methods the checkout page offers: the requested ones, or all of them."""
        requested = self.body.get("payment_methods") or []
        return [m for m in PAYMENT_METHODS if m in requested] or list(PAYMENT_METHODS)

    @property
    def customer(self) -> dict[str, Any]:
        """The customer object from the create body."""
        return dict(self.body.get("customer") or {})


@dataclass
class SandboxConfig:
    """Keys and addresses of the sandbox gateway.

    ``public_url`` is the bot's base URL (checkout pages live at
    ``{public_url}/sandbox/checkout/<id>``); ``webhook_url`` is where payment webhooks go.
    The config is read on every request, so a test may adjust it after start-up.
    """

    api_key: str
    account_id: str
    hmac_secret: str
    webhook_secret: str
    public_url: str
    webhook_url: str
    webhook_timeout: float = 5.0
    #: Pauses between the synchronous delivery attempts (3 attempts in all by default).
    webhook_retry_delays: Sequence[float] = (0.25, 0.75)
    #: Pauses between the background attempts that follow (about a minute in all).
    webhook_background_delays: Sequence[float] = (2.0, 4.0, 8.0, 16.0, 30.0)

    @classmethod
    def from_settings(cls, settings: Settings, keys: GatewayKeys) -> SandboxConfig:
        """The gateway as the bot's settings describe it (XPAY_ENV=sandbox): the keys the bot
        uses with it, pages under PAYLINK_PUBLIC_URL and webhooks to that URL's
        /xpay/webhook, signed with the newest secret the bot accepts."""
        xpay = keys.xpay()
        return cls(
            api_key=xpay.api_key,
            account_id=xpay.account_id,
            hmac_secret=xpay.hmac_secret,
            webhook_secret=keys.webhook_secrets()[0],
            public_url=settings.public_url,
            webhook_url=f"{settings.public_url}/xpay/webhook",
        )

    def checkout_page_url(self, intent_id: str) -> str:
        """The hosted checkout page of ``intent_id``."""
        return f"{self.public_url.rstrip('/')}/sandbox/checkout/{intent_id}"


class _BadRequest(Exception):
    """The create body is not acceptable; the message goes back to the caller."""


# --------------------------------------------------------------------------------------
# JSON helpers


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(raw: bytes) -> Any:
    """Parse like a strict JSON parser; floats become ``Decimal`` so no digit is lost."""
    return json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=_reject_constant)


def _number(value: Decimal | int | float) -> int | float:
    """A JSON-native number with the value JavaScript would hold (``1500.50`` -> ``1500.5``)."""
    if isinstance(value, int):
        return value
    as_float = float(value)
    return int(as_float) if as_float.is_integer() and abs(as_float) < 2**53 else as_float


def _plain(value: Any) -> Any:
    """``value`` with every ``Decimal`` turned into a JSON-native number (for storage)."""
    if isinstance(value, Decimal):
        return _number(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    """A JSON response serialised like Node would (compact, numbers in shortest form)."""
    return Response(js_stringify(payload), status=status, mimetype="application/json")


def _error(status: int, response_status: str, message: str) -> Response:
    g.sandbox_note = message
    return _json({"success": False, "responseStatus": response_status, "message": message}, status)


def _iso(moment: datetime) -> str:
    """``2025-09-16T13:00:11.045Z``, like JavaScript's ``Date.toISOString``."""
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------------------
# Validation


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _validate(body: Any) -> dict[str, Any]:
    """Check a create body the way XPay would; return the fields the sandbox keeps."""
    if not isinstance(body, dict):
        raise _BadRequest("Request body must be a JSON object")
    amount = body.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int | Decimal):
        raise _BadRequest("amount is required and must be a number")
    amount = Decimal(amount)
    problem = amount_problem(amount)
    if amount <= 0:
        raise _BadRequest("amount must be greater than 0")
    if problem == AmountProblem.TOO_LARGE:
        raise _BadRequest("amount is too large")
    if problem:
        raise _BadRequest("amount must have at most 2 decimal places")
    currency = body.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise _BadRequest("currency is required and must be a 3-letter code like PKR")
    customer = body.get("customer")
    if not isinstance(customer, dict) or not _text(customer.get("name")):
        raise _BadRequest("customer.name is required")
    if not (_text(customer.get("email")) or _text(customer.get("phone"))):
        raise _BadRequest("customer.email or customer.phone is required")
    shipping = body.get("shipping")
    if shipping is not None and not isinstance(shipping, dict):
        raise _BadRequest("shipping must be an object")
    metadata = body.get("metadata")
    if not isinstance(metadata, dict) or not _text(metadata.get("order_reference")):
        raise _BadRequest("metadata.order_reference is required")
    reference = metadata["order_reference"].strip()
    if len(reference) > 200:
        raise _BadRequest("metadata.order_reference is too long")
    for field in ("success_url", "failure_url"):
        url = body.get(field)
        if url is not None and not is_http_url(url):
            raise _BadRequest(f"{field} must be an http(s) URL")
    methods = body.get("payment_methods")
    if methods is not None:
        if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
            raise _BadRequest("payment_methods must be an array of strings")
        unknown = [m for m in methods if m not in PAYMENT_METHODS]
        if unknown:
            raise _BadRequest(
                f"Invalid payment_methods: {', '.join(unknown)} "
                f"(valid: {', '.join(PAYMENT_METHODS)})"
            )
    return {
        "amount": amount.quantize(CENT),
        "currency": currency.upper(),
        "order_reference": reference,
    }


# --------------------------------------------------------------------------------------
# Response shapes


def _intent_data(intent: SandboxIntent, config: SandboxConfig) -> dict[str, Any]:
    """The ``data`` object XPay returns for a payment intent."""
    body = intent.body
    customer = intent.customer
    shipping = body.get("shipping") or {}
    return {
        "_id": intent.id,
        "pi_client_secret": intent.client_secret,
        "created_at": _iso(intent.created_at),
        "amount": _number(intent.amount),
        "currency": intent.currency,
        "refund": {"refunded_amount": 0, "refund_object_id": None},
        "object_name": "payment_intent",
        "customer": {
            "name": customer.get("name"),
            "email": customer.get("email"),
            "phone": customer.get("phone"),
            "vip_customer": "No",
            "previous_customer": "No",
        },
        "description": "",
        "pi_status": intent.status,
        "pm_token": "",
        "shipping": {
            "address1": shipping.get("address1", ""),
            "address2": shipping.get("address2", ""),
            "city": shipping.get("city", ""),
            "country": shipping.get("country", ""),
            "firstName": shipping.get("firstName", ""),
            "lastName": shipping.get("lastName", ""),
            "phone": shipping.get("phone", ""),
            "province": shipping.get("province", ""),
            "zip": shipping.get("zip", ""),
            "shipping_method": shipping.get("shipping_method", ""),
        },
        "metadata": body.get("metadata") or {},
        "token": None,
        "capture_method": "automatic",
        "html_response": {},
        "bank_response": {},
        "last_payment_response": {"token": None},
        "encryptionKey": None,
        "billingAddress": {},
        "routing_rules_history": [],
        "subscription": {},
        "checkout_page_url": config.checkout_page_url(intent.id),
    }


def sandbox_webhook_payload(intent: SandboxIntent, outcome: str, method: str) -> dict[str, Any]:
    """The ``PAYMENT_INTENT_NOTIFICATION`` XPay would send when ``intent`` is paid or declined.

    ``outcome`` is ``"pay"`` or ``"decline"``; ``method`` the payment method used. The result
    is deterministic (same intent, outcome and method give the same payload) and contains only
    JSON-native values; sign ``js_stringify(payload)`` with the webhook secret to send it.
    """
    if outcome not in ("pay", "decline"):
        raise ValueError(f"outcome must be 'pay' or 'decline', not {outcome!r}")
    paid = outcome == "pay"
    amount = _number(intent.amount)
    customer = intent.customer
    txn_id = hashlib.sha256(f"{intent.id}:{outcome}:{method}".encode()).hexdigest()[:24]
    if method == "card":
        instrument: dict[str, Any] = {
            "card": {"last4digits": "0008" if paid else "0002", "type": "MASTERCARD"}
        }
    else:
        instrument = {"wallet": method}
    activity: list[dict[str, Any]] = [
        {"status": "AUTHENTICATION_SUCCESSFUL", "amount": amount, **instrument},
        {"status": "CAPTURED" if paid else "DECLINED", "amount": amount},
    ]
    return {
        "type": "PAYMENT_INTENT_NOTIFICATION",
        "payment_intent_id": intent.id,
        "refund_id": None,
        "amount": amount,
        "currency": intent.currency,
        "status": SUCCEEDED if paid else FAILED,
        "customer": {
            "name": customer.get("name", ""),
            "email": customer.get("email", ""),
            "phone": customer.get("phone"),
        },
        "shipping": _plain(intent.body.get("shipping") or {}),
        "payment_method_types": method,
        "product": {},
        "transaction_details": {
            "_id": txn_id,
            "status": "CAPTURED" if paid else "DECLINED",
            "secure": "3DS2",
            "refunded_amount": 0,
            "gateway": "sandbox",
            "response_from_bank": (
                "The payment was completed successfully"
                if paid
                else "Declined by the issuing bank (sandbox)"
            ),
            "status_message_from_bank": "PAYMENT_CAPTURED" if paid else "PAYMENT_DECLINED",
            "activity": activity,
        },
    }


# --------------------------------------------------------------------------------------
# Webhook delivery


def _post_webhook(config: SandboxConfig, body: bytes, signature: str) -> str | None:
    """One delivery attempt; ``None`` on a 2xx answer, else a short reason."""
    try:
        response = requests.post(
            config.webhook_url,
            data=body,
            headers={"Content-Type": "application/json", "x-signature": signature},
            timeout=config.webhook_timeout,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        return type(exc).__name__
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"


def _deliver_webhook(config: SandboxConfig, intent_id: str, payload: dict[str, Any]) -> bool:
    """Send the webhook now (a few quick attempts); on failure keep trying in the background.

    Returns True when the bot acknowledged it synchronously.
    """
    body = js_stringify(payload)
    signature = sign(config.webhook_secret, body)
    delays = list(config.webhook_retry_delays)
    reason = _post_webhook(config, body, signature)
    for delay in delays:
        if reason is None:
            break
        time.sleep(delay)
        reason = _post_webhook(config, body, signature)
    if reason is None:
        log.info("webhook delivered intent=%s status=%s", intent_id, payload["status"])
        return True
    log.warning(
        "webhook for intent=%s not delivered after %d attempts (%s); retrying in the background",
        intent_id,
        len(delays) + 1,
        reason,
    )
    threading.Thread(
        target=_retry_in_background,
        args=(config, intent_id, body, signature),
        name=f"sandbox-webhook-{intent_id[8:20]}",
        daemon=True,
    ).start()
    return False


def _retry_in_background(config: SandboxConfig, intent_id: str, body: bytes, sig: str) -> None:
    """Keep re-sending the same signed bytes for about a minute."""
    reason: str | None = "not tried"
    for delay in config.webhook_background_delays:
        time.sleep(delay)
        reason = _post_webhook(config, body, sig)
        if reason is None:
            log.info("webhook delivered on a background retry intent=%s", intent_id)
            return
    log.error("webhook for intent=%s abandoned (%s)", intent_id, reason)


# --------------------------------------------------------------------------------------
# HTML

_CSS = Markup(
    """
*{box-sizing:border-box}
body{margin:0;background:#f1f5f9;color:#0f172a;
 font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.banner{background:#fbbf24;color:#422006;text-align:center;padding:8px 12px;font-weight:600;
 font-size:13px;letter-spacing:.02em}
.card{max-width:460px;margin:40px auto;background:#fff;border-radius:14px;padding:28px 28px 24px;
 box-shadow:0 1px 3px rgba(15,23,42,.08),0 10px 30px rgba(15,23,42,.08)}
.merchant{display:flex;align-items:center;gap:10px;font-weight:600;color:#334155}
.logo{width:34px;height:34px;border-radius:9px;background:#4f46e5;color:#fff;display:flex;
 align-items:center;justify-content:center;font-weight:700}
.tag{margin-left:auto;font-size:11px;font-weight:700;color:#92400e;background:#fef3c7;
 border:1px solid #fcd34d;border-radius:999px;padding:2px 8px;text-transform:uppercase}
.label{color:#64748b;font-size:13px;margin-top:22px}
.amount{font-size:34px;font-weight:700;letter-spacing:-.01em;margin:2px 0 6px}
dl{display:grid;grid-template-columns:auto 1fr;gap:6px 16px;margin:14px 0 0;font-size:14px}
dt{color:#64748b}dd{margin:0;text-align:right;overflow-wrap:anywhere}
h2{font-size:14px;margin:24px 0 10px;color:#334155}
.method{display:flex;align-items:center;gap:10px;border:1px solid #e2e8f0;border-radius:10px;
 padding:11px 12px;margin-bottom:8px;cursor:pointer}
.method:hover{border-color:#a5b4fc;background:#f8fafc}
.method input{accent-color:#4f46e5;margin:0}
.buttons{display:flex;gap:10px;margin-top:20px}
button{font:inherit;font-weight:600;border-radius:10px;padding:12px 16px;cursor:pointer}
.pay{flex:1;background:#4f46e5;color:#fff;border:0}.pay:hover{background:#4338ca}
.decline{background:#fff;color:#b91c1c;border:1px solid #fecaca}.decline:hover{background:#fef2f2}
.state{margin-top:22px;padding:14px;border-radius:10px;font-weight:600;text-align:center}
.ok{background:#dcfce7;color:#166534}.bad{background:#fee2e2;color:#991b1b}
.note{margin-top:18px;color:#64748b;font-size:12px;text-align:center}
"""
)

_LAYOUT_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex">
<title>{{ title }} · Paylink sandbox</title><style>{{ css }}</style></head>
<body><div class="banner">SANDBOX · test checkout page, no real money moves</div>
<main class="card"><div class="merchant"><span class="logo">P</span>Paylink sandbox
<span class="tag">Test mode</span></div>
"""
_LAYOUT_FOOT = """<p class="note">Simulated by the Paylink sandbox gateway, standing in for XPay.
</p></main></body></html>
"""

_CHECKOUT_PAGE = (
    _LAYOUT_HEAD
    + """<div class="label">{% if status == "requires_payment_method" %}Amount due{% else %}Amount{% endif %}</div>
<div class="amount" id="amount">{{ amount }}</div>
<dl><dt>Customer</dt><dd id="customer">{{ customer }}</dd>
<dt>Order reference</dt><dd id="reference">{{ reference }}</dd></dl>
{% if status == "requires_payment_method" %}
<form method="post" action="{{ action }}">
<h2>Payment method</h2>
{% for value, label in methods %}
<label class="method"><input type="radio" name="method" value="{{ value }}"
 id="method-{{ value }}"{% if loop.first %} checked{% endif %}> {{ label }}</label>
{% endfor %}
<div class="buttons">
<button class="pay" type="submit" name="outcome" value="pay" id="pay">Pay {{ amount }}</button>
<button class="decline" type="submit" name="outcome" value="decline" id="decline">Decline</button>
</div></form>
{% elif status == "succeeded" %}
<div class="state ok" id="state">Paid{% if method %} with {{ method }}{% endif %}</div>
{% else %}
<div class="state bad" id="state">Payment declined{% if method %} ({{ method }}){% endif %}</div>
{% endif %}
"""
    + _LAYOUT_FOOT
)

_MESSAGE_PAGE = (
    _LAYOUT_HEAD
    + """<div class="state {{ tone }}" id="state">{{ heading }}</div>
<p>{{ text }}</p>
"""
    + _LAYOUT_FOOT
)


def _format_amount(amount: Decimal, currency: str) -> str:
    """``PKR 1,500.50``."""
    return f"{currency} {amount:,.2f}"


def _message_page(status: int, title: str, heading: str, text: str, tone: str = "bad") -> Response:
    html = render_template_string(
        _MESSAGE_PAGE, css=_CSS, title=title, heading=heading, text=text, tone=tone
    )
    g.sandbox_note = heading
    return Response(html, status=status, mimetype="text/html")


def _not_found() -> Response:
    return _message_page(
        404, "Not found", "Checkout not found", "This payment link does not exist or has expired."
    )


def _final_response(intent: SandboxIntent) -> Response:
    """Redirect to the merchant's URL for the intent's final state, or say what happened."""
    paid = intent.status == SUCCEEDED
    url = intent.body.get("success_url" if paid else "failure_url")
    if isinstance(url, str) and url:
        return redirect(url, code=303)  # type: ignore[return-value]
    amount = _format_amount(intent.amount, intent.currency)
    if paid:
        return _message_page(
            200, "Payment received", "Payment received", f"Thank you: {amount} was paid.", "ok"
        )
    return _message_page(
        200, "Payment declined", "Payment declined", f"The payment of {amount} was declined."
    )


# --------------------------------------------------------------------------------------
# Blueprint


def make_sandbox_blueprint(config: SandboxConfig, sessions: sessionmaker) -> Blueprint:
    """The sandbox gateway's routes; register with ``url_prefix="/sandbox"``."""
    bp = Blueprint("sandbox", __name__)

    @bp.before_request
    def _start() -> None:
        g.sandbox_started = time.monotonic()
        g.sandbox_note = ""

    @bp.after_request
    def _log(response: Response) -> Response:
        elapsed = (time.monotonic() - g.get("sandbox_started", time.monotonic())) * 1000
        log.info(
            "%s %s -> %d %.0fms%s",
            request.method,
            request.path,
            response.status_code,
            elapsed,
            f" ({g.sandbox_note})" if g.get("sandbox_note") else "",
        )
        return response

    def _credentials_error() -> Response | None:
        api_key = request.headers.get("x-api-key", "")
        account = request.headers.get("x-account-id", "")
        if not api_key or not account:
            return _error(401, "UNAUTHORIZED", "Missing x-api-key or x-account-id header")
        key_ok = hmac.compare_digest(api_key.encode(), config.api_key.encode())
        account_ok = hmac.compare_digest(account.encode(), config.account_id.encode())
        if not (key_ok and account_ok):
            return _error(401, "UNAUTHORIZED", "Invalid API key or account id")
        return None

    @bp.post("/public/v1/payment/checkout")
    def create_checkout() -> Response:
        denied = _credentials_error()
        if denied is not None:
            return denied
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return _error(400, "BAD_REQUEST", "Request body too large")
        raw = request.get_data(cache=False)
        try:
            body = _parse_json(raw)
        except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
            return _error(400, "BAD_REQUEST", "Malformed JSON body")
        signature = request.headers.get("x-signature", "")
        if not signature or not _signature_ok(config.hmac_secret, raw, body, signature):
            return _error(401, "UNAUTHORIZED", "Invalid signature")
        try:
            fields = _validate(body)
        except _BadRequest as exc:
            return _error(400, "BAD_REQUEST", str(exc))
        intent_id = "xpay_pi_" + secrets.token_hex(32)
        intent = SandboxIntent(
            id=intent_id,
            client_secret=f"{intent_id}_cs_{secrets.token_hex(32)}",
            order_reference=fields["order_reference"],
            amount=fields["amount"],
            currency=fields["currency"],
            body=_plain(body),
            status=REQUIRES_PAYMENT_METHOD,
        )
        try:
            with sessions.begin() as session:
                taken = (
                    session.query(SandboxIntent.id)
                    .filter_by(order_reference=fields["order_reference"])
                    .first()
                )
                if taken is not None:
                    return _error(400, "BAD_REQUEST", "Order reference already used")
                session.add(intent)
        except IntegrityError:  # a concurrent create with the same reference won
            return _error(400, "BAD_REQUEST", "Order reference already used")
        g.sandbox_note = f"created {intent_id} order={fields['order_reference']}"
        return _json(
            {
                "success": True,
                "responseStatus": "OK",
                "message": "Request processed successfully.",
                "data": _intent_data(intent, config),
            }
        )

    @bp.get("/public/v1/payment/intent/details/<pi_id>")
    def intent_details(pi_id: str) -> Response:
        denied = _credentials_error()
        if denied is not None:
            return denied
        with sessions() as session:
            intent = session.get(SandboxIntent, pi_id)
        if intent is None:
            return _error(404, "NOT_FOUND", "Payment intent not found")
        g.sandbox_note = intent.status
        return _json(
            {
                "success": True,
                "responseStatus": "OK",
                "message": "Request processed successfully.",
                "data": _intent_data(intent, config),
            }
        )

    @bp.get("/checkout/<pi_id>")
    def checkout_page(pi_id: str) -> Response:
        with sessions() as session:
            intent = session.get(SandboxIntent, pi_id)
        if intent is None:
            return _not_found()
        amount = _format_amount(intent.amount, intent.currency)
        html = render_template_string(
            _CHECKOUT_PAGE,
            css=_CSS,
            title=f"Pay {amount}",
            amount=amount,
            customer=intent.customer.get("name", ""),
            reference=intent.order_reference,
            status=intent.status,
            method=method_label(intent.payment_method),
            methods=[(m, PAYMENT_METHODS[m]) for m in intent.payment_methods],
            action=url_for("sandbox.pay", pi_id=intent.id),
        )
        g.sandbox_note = intent.status
        return Response(html, mimetype="text/html")

    @bp.post("/checkout/<pi_id>/pay")
    def pay(pi_id: str) -> Response:
        outcome = request.form.get("outcome", "")
        method = request.form.get("method", "")
        won = False
        with sessions.begin() as session:
            intent = session.get(SandboxIntent, pi_id)
            if intent is None:
                return _not_found()
            if intent.status == REQUIRES_PAYMENT_METHOD:
                if outcome not in ("pay", "decline"):
                    return _message_page(
                        400, "Bad request", "Choose Pay or Decline", "Go back and try again."
                    )
                if method not in intent.payment_methods:
                    return _message_page(
                        400,
                        "Bad request",
                        "Choose a payment method",
                        "Go back and choose one of the payment methods offered.",
                    )
                new_status = SUCCEEDED if outcome == "pay" else FAILED
                # Conditional update: of two concurrent submits exactly one moves the intent.
                result = session.execute(
                    update(SandboxIntent)
                    .where(
                        SandboxIntent.id == pi_id,
                        SandboxIntent.status == REQUIRES_PAYMENT_METHOD,
                    )
                    .values(status=new_status, payment_method=method, updated_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
                won = result.rowcount == 1  # type: ignore[attr-defined]
            session.refresh(intent)
        if won:
            g.sandbox_note = f"{intent.status} via {method}"
            _deliver_webhook(config, intent.id, sandbox_webhook_payload(intent, outcome, method))
        else:
            g.sandbox_note = f"already {intent.status}; no webhook"
        return _final_response(intent)

    return bp


def _signature_ok(secret: str, raw: bytes, body: Any, signature: str) -> bool:
    """True when ``signature`` is the HMAC of the raw body or of its JSON.stringify form."""
    if signature_matches(secret, raw, signature):
        return True
    try:
        canonical = js_stringify(body)
    except (TypeError, ValueError):
        return False
    return canonical != raw and signature_matches(secret, canonical, signature)
