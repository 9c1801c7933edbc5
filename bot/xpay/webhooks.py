"""Verify and parse XPay payment webhooks.

XPay signs a webhook with HMAC-SHA256 (the *webhook* secret) and sends the hex digest in
``x-signature``. Its own plugin verifies against a re-serialisation of the parsed body, so we
accept a signature over either the raw bytes or their ``JSON.stringify``-style
re-serialisation, for any configured secret (to allow rotation), compared in constant time.

That re-serialisation (the *canonical* form) is also what the bot acts on: one signature
passes for many spellings of the same numbers (``5e3``, ``5000.0000000000001``), and each
must read as the body signed, with one de-duplication key. So the event is always built
from the canonical form, whichever form the signature matched.

:func:`verify_webhook` returns the canonical body only after a signature matched; everything
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

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, field_validator

from bot.money import json_number, to_amount
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
    """Parse like ``JSON.parse`` would accept, numbers by :func:`json_number`; ``ValueError``
    otherwise."""
    try:
        text = raw_body.decode("utf-8")
        return json.loads(
            text,
            parse_float=json_number,
            parse_int=json_number,
            parse_constant=_reject_constant,
        )
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _canonical(raw_body: bytes) -> bytes:
    """``JSON.stringify(JSON.parse(raw_body))``; WebhookMalformed when there is none."""
    try:
        data = _parse(raw_body)
    except ValueError:
        raise WebhookMalformed("body is not valid UTF-8 JSON") from None
    try:
        return js_stringify(data)
    except ValueError:
        raise WebhookMalformed("body has a number out of range") from None
    except RecursionError:
        raise WebhookMalformed("body is nested too deeply") from None


def verify_webhook(
    raw_body: bytes, signature: str | None, secrets: Sequence[str]
) -> dict[str, Any]:
    """Check a webhook's ``x-signature`` and return its JSON object, as read from the
    canonical (``JSON.stringify``) form of the body.

    Accepts when, for any of ``secrets``, the hex HMAC-SHA256 ``signature`` (any case) matches
    the raw body or its canonical form.

    Raises :class:`WebhookTooLarge` (413), :class:`WebhookSignatureError` (401) or
    :class:`WebhookMalformed` (400, only for an authentic body that is not a JSON object, or
    whose numbers JavaScript cannot hold). ``ValueError`` if no non-empty secret is configured.
    """
    keys = [s.encode("utf-8") for s in secrets if s]
    if not keys:
        raise ValueError("no webhook secret configured")
    if len(raw_body) > MAX_WEBHOOK_BYTES:
        raise WebhookTooLarge(f"body larger than {MAX_WEBHOOK_BYTES} bytes")
    sig = _normalise_signature(signature)

    raw_signed = _matches(keys, raw_body, sig)
    try:
        canonical = _canonical(raw_body)
    except WebhookMalformed:
        if raw_signed:
            raise
        raise WebhookSignatureError("signature does not match") from None
    # Not the raw bytes: the re-serialisation XPay may have signed instead.
    if not raw_signed and (canonical == raw_body or not _matches(keys, canonical, sig)):
        raise WebhookSignatureError("signature does not match")
    data = _parse(canonical)
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
    amount: Decimal | None = None
    currency: str | None = None
    method: str | None = None
    bank_message: str | None = None
    transaction_status: str | None = None

    @field_validator("amount", mode="before")
    @classmethod
    def _amount(cls, value: object) -> Decimal | None:
        return None if value is None else to_amount(value)

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
        parts.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
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
