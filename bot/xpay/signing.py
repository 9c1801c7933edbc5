"""Byte-exact JSON serialisation matching JavaScript's ``JSON.stringify`` and HMAC signing.

XPay's own integrations sign a re-serialisation of the parsed object, so the bytes we send
must be exactly what ``JSON.stringify`` would produce for the same object: compact
separators, ``/`` and non-ASCII characters unescaped, numbers in shortest form.

Beyond those basics this module follows JavaScript where Python would differ:

* numbers are JavaScript doubles: integers beyond 2**53 lose precision exactly as they would
  in JS (``12345678901234567890`` -> ``12345678901234567000``), ``Decimal`` values are
  converted to the nearest double (``Decimal("1500.50")`` -> ``1500.5``);
* object keys that are array indices (``"0"``, ``"10"``, not ``"01"``) come first in
  ascending numeric order, as JavaScript's property order puts them;
* lone UTF-16 surrogates are written as ``\\udXXX`` escapes (well-formed ``JSON.stringify``),
  while a high+low surrogate pair in a Python ``str`` is written as the character it encodes.

Tested against vectors produced by Node (``tests/data/make_signing_vectors.js``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from decimal import Decimal
from typing import Any

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)

# Largest integer magnitude a double represents exactly together with all smaller integers.
_SAFE_INT = 2**53
# ToString(ToUint32(key)) == key and key != 2**32 - 1: an array index.
_MAX_ARRAY_INDEX = 2**32 - 2
_SURROGATES = re.compile("[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]")


def js_number(value: int | float | Decimal) -> str:
    """Format a number the way JavaScript's ``Number.prototype.toString`` does.

    Raises ``ValueError`` for non-finite values (``JSON.stringify`` would write ``null``,
    which is never what we mean to sign) and ``TypeError`` for booleans.
    """
    if isinstance(value, bool):
        raise TypeError("booleans are not numbers here")
    if isinstance(value, int):
        if -_SAFE_INT <= value <= _SAFE_INT:
            return str(value)
        try:
            value = float(value)
        except OverflowError:
            raise ValueError("non-finite number") from None
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("non-finite number")
        value = float(value)  # correctly rounded, like JS parsing the decimal text
    if not math.isfinite(value):
        raise ValueError("non-finite number")
    if value == int(value) and abs(value) <= _SAFE_INT:
        return str(int(value))  # also turns -0.0 into "0", as JS does
    text = repr(value)  # shortest round-trip digits, like JS
    if "e" not in text:
        return text
    # Python switches to exponent form at 1e16 and below 1e-4; JS at 1e21 and below 1e-6.
    mantissa, exp = text.split("e")
    exponent = int(exp)
    if -7 < exponent < 21:
        return format(Decimal(text), "f")
    return f"{mantissa}e{'+' if exponent > 0 else '-'}{abs(exponent)}"


def _surrogate(match: re.Match[str]) -> str:
    chars = match.group(0)
    if len(chars) == 2:
        high, low = (ord(c) for c in chars)
        return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
    return f"\\u{ord(chars):04x}"


def _encode_str(value: str) -> str:
    text = _ENCODER.encode(value)
    if _SURROGATES.search(text):
        text = _SURROGATES.sub(_surrogate, text)
    return text


def _is_array_index(key: str) -> bool:
    return (
        key.isdigit()
        and key.isascii()
        and (key == "0" or key[0] != "0")
        and (int(key) <= _MAX_ARRAY_INDEX)
    )


def _ordered_keys(value: dict[Any, Any]) -> list[tuple[str, Any]]:
    items = [(str(k), v) for k, v in value.items()]
    indices = [item for item in items if _is_array_index(item[0])]
    if not indices:
        return items
    indices.sort(key=lambda item: int(item[0]))
    return indices + [item for item in items if not _is_array_index(item[0])]


def _encode(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return _ENCODER.encode(value)
    if isinstance(value, str):
        return _encode_str(value)
    if isinstance(value, int | float | Decimal):
        return js_number(value)
    if isinstance(value, dict):
        items = (f"{_encode_str(k)}:{_encode(v)}" for k, v in _ordered_keys(value))
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    raise TypeError(f"cannot serialise {type(value).__name__}")


def js_stringify(obj: Any) -> bytes:
    """Serialise ``obj`` to the UTF-8 bytes ``JSON.stringify(obj)`` would produce.

    Raises ``TypeError`` for values JSON cannot represent and ``ValueError`` for non-finite
    numbers.
    """
    return _encode(obj).encode("utf-8")


def sign(secret: str, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of ``body`` keyed with ``secret``."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, signature: str) -> bool:
    """Constant-time comparison of ``signature`` (hex, any case) with the HMAC of ``body``."""
    expected = sign(secret, body)
    given = signature.strip().lower().encode("ascii", "replace")
    return hmac.compare_digest(expected.encode("ascii"), given)
