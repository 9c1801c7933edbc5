"""Byte-exact JSON serialisation matching JavaScript's ``JSON.stringify`` and HMAC signing.

XPay's own integrations sign a re-serialisation of the parsed object, so the bytes we send
must be exactly what ``JSON.stringify`` would produce for the same object: compact
separators, ``/`` and non-ASCII characters unescaped, numbers in shortest form.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from decimal import Decimal
from typing import Any

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def js_number(value: int | float | Decimal) -> str:
    """Format a number the way JavaScript's ``Number.prototype.toString`` does."""
    if isinstance(value, bool):
        raise TypeError("booleans are not numbers here")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("non-finite number")
        if value == value.to_integral_value():
            return str(int(value))
        value = float(value)
    if not math.isfinite(value):
        raise ValueError("non-finite number")
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)  # shortest round-trip digits, like JS
    if "e" not in text:
        return text
    # Python switches to exponent form at 1e16, JS at 1e21 (and below 1e-6 for both).
    mantissa, exp = text.split("e")
    exponent = int(exp)
    if -7 < exponent < 21:
        return format(Decimal(text), "f")
    return f"{mantissa}e{'+' if exponent > 0 else '-'}{abs(exponent)}"


def _encode(value: Any) -> str:
    if value is None or isinstance(value, bool | str):
        text = _ENCODER.encode(value)
        if isinstance(value, str):
            # JS escapes lone surrogates; refuse them rather than send bytes XPay cannot parse.
            text.encode("utf-8")
        return text
    if isinstance(value, int | float | Decimal):
        return js_number(value)
    if isinstance(value, dict):
        items = (f"{_ENCODER.encode(str(k))}:{_encode(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    raise TypeError(f"cannot serialise {type(value).__name__}")


def js_stringify(obj: Any) -> bytes:
    """Serialise ``obj`` to the UTF-8 bytes ``JSON.stringify(obj)`` would produce."""
    return _encode(obj).encode("utf-8")


def sign(secret: str, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of ``body`` keyed with ``secret``."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, signature: str) -> bool:
    """Constant-time comparison of ``signature`` with the HMAC of ``body``."""
    expected = sign(secret, body)
    return hmac.compare_digest(expected.encode("ascii"), signature.strip().lower().encode("ascii", "replace"))
