"""Verify and parse XPay payment webhooks.

XPay signs a webhook with HMAC-SHA256 (the *webhook* secret) and sends the hex digest in
``x-signature``. Its own plugin verifies against a re-serialisation of the parsed body, so we
accept a signature over either the raw bytes or their ``JSON.stringify``-style
re-serialisation, for any configured secret (to allow rotation), compared in constant time.

:func:`verify_webhook` returns the parsed body only after a signature matched; everything
else is a :class:`WebhookError` whose ``http_status`` and ``reason`` can go straight into the
HTTP answer. :func:`parse_payment_event` turns the verified dict into a :class:`PaymentEvent`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import string
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from bot.xpay.signing import js_stringify

MAX_WEBHOOK_BYTES = 64 * 1024

_HEX_DIGITS = frozenset(string.hexdigits)
_PAID_STATUSES = frozenset({"succeeded"})
_FAILED_STATUSES = frozenset({"failed", "payment_failed", "declined"})


class WebhookError(Exception):
    """A webhook we refuse. ``http_status`` and ``reason`` are safe to send back."""

    http_status: int = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WebhookTooLarge(WebhookError):
    """The body exceeds :data:`MAX_WEBHOOK_BYTES` (413)."""

    http_status = 413


class WebhookSignatureError(WebhookError):
    """The signature is missing or matches no secret (401)."""

    http_status = 401


class WebhookMalformed(WebhookError):
    """The body is authentic but not a usable JSON object / payment event (400)."""

    http_status = 400


def _normalise_signature(signature: str | None) -> bytes:
    if signature is None:
        raise WebhookSignatureError("missing signature")
    sig = signature.strip().lower()
    if not sig:
        raise WebhookSignatureError("missing signature")
    if len(sig) != 64 or not set(sig) <= _HEX_DIGITS:
        raise WebhookSignatureError("invalid signature")
    return sig.encode("ascii")


def _matches(keys: Sequence[bytes], body: bytes, signature: bytes) -> bool:
    matched = False
    for key in keys:  # check every key: timing does not reveal which one matched
        digest = hmac.new(key, body, hashlib.sha256).hexdigest().encode("ascii")
        matched |= hmac.compare_digest(digest, signature)
    return matched


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse(raw_body: bytes) -> Any:
    """Parse like ``JSON.parse`` would accept; ``ValueError`` otherwise."""
    try:
        text = raw_body.decode("utf-8")
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def verify_webhook(
    raw_body: bytes, signature: str | None, secrets: Sequence[str]
) -> dict[str, Any]:
    """Check a webhook's ``x-signature`` and return its JSON object.

    Accepts when, for any of ``secrets``, the hex HMAC-SHA256 ``signature`` (any case) matches
    the raw body or its ``JSON.stringify`` re-serialisation.

    Raises :class:`WebhookTooLarge` (413), :class:`WebhookSignatureError` (401) or
    :class:`WebhookMalformed` (400, only for an authentic body that is not a JSON object).
    ``ValueError`` if no non-empty secret is configured.
    """
    keys = [s.encode("utf-8") for s in secrets if s]
    if not keys:
        raise ValueError("no webhook secret configured")
    if len(raw_body) > MAX_WEBHOOK_BYTES:
        raise WebhookTooLarge(f"body larger than {MAX_WEBHOOK_BYTES} bytes")
    sig = _normalise_signature(signature)

    if _matches(keys, raw_body, sig):
        try:
            data = _parse(raw_body)
        except ValueError:
            raise WebhookMalformed("body is not valid UTF-8 JSON") from None
        if not isinstance(data, dict):
            raise WebhookMalformed("body is not a JSON object")
        return data

    # Raw bytes did not match: try the re-serialisation XPay may have signed instead.
    try:
        data = _parse(raw_body)
        reserialised = js_stringify(data)
    except (ValueError, TypeError, RecursionError):
        raise WebhookSignatureError("signature does not match") from None
    if reserialised == raw_body or not _matches(keys, reserialised, sig):
        raise WebhookSignatureError("signature does not match")
    if not isinstance(data, dict):
        raise WebhookMalformed("body is not a JSON object")
    return data


def _method(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list):
        names = [v.strip() for v in value if isinstance(v, str) and v.strip()]
        return ", ".join(names) or None
    return None


def _text(value: Any) -> str | None:
    """A display-only string field: stripped, or None when absent, empty or not a string."""
    if isinstance(value, str):
        return value.strip() or None
    return None


NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class PaymentEvent(BaseModel):
    """The parts of an XPay payment webhook the bot acts on."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str | None = None
    payment_intent_id: NonEmptyStr
    status: str
    amount: Decimal | None = Field(default=None, allow_inf_nan=False)
    currency: str | None = None
    method: str | None = None
    bank_message: str | None = None
    transaction_status: str | None = None

    @property
    def outcome(self) -> Literal["paid", "failed", "ignored"]:
        """``paid`` for ``succeeded``; ``failed`` for ``failed``/``payment_failed``/``declined``;
        ``ignored`` for anything else (refunds, cancellations, unknown states: no change)."""
        status = self.status.strip().lower()
        if status in _PAID_STATUSES:
            return "paid"
        if status in _FAILED_STATUSES:
            return "failed"
        return "ignored"


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "invalid payment event: " + "; ".join(parts)


def parse_payment_event(data: dict[str, Any]) -> PaymentEvent:
    """Build a :class:`PaymentEvent` from a verified webhook body.

    Raises :class:`WebhookMalformed` (400) with a short reason when required fields are
    missing or have the wrong type. Unknown fields are ignored.
    """
    if not isinstance(data, dict):
        raise WebhookMalformed("invalid payment event: body is not a JSON object")
    details = data.get("transaction_details")
    if not isinstance(details, dict):
        details = {}
    bank_message = _text(details.get("response_from_bank")) or _text(
        details.get("status_message_from_bank")
    )
    fields = {
        "type": data.get("type"),
        "payment_intent_id": data.get("payment_intent_id"),
        "status": data.get("status"),
        "amount": data.get("amount"),
        "currency": data.get("currency"),
        "method": _method(data.get("payment_method_types")),
        "bank_message": bank_message,
        "transaction_status": _text(details.get("status")),
    }
    try:
        return PaymentEvent.model_validate(fields)
    except ValidationError as exc:
        raise WebhookMalformed(_describe(exc)) from None
