"""bot.xpay.signing against vectors produced by Node's JSON.stringify and crypto HMAC.

Regenerate the vectors with ``node tests/data/make_signing_vectors.js >
tests/data/signing_vectors.json``.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.xpay.signing import js_number, js_stringify, sign, signature_matches

VECTORS = json.loads(
    (Path(__file__).parent / "data" / "signing_vectors.json").read_text(encoding="utf-8")
)["vectors"]
IDS = [v["name"] for v in VECTORS]


def with_decimals(obj: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """A copy of ``obj`` with the numbers at the dotted ``paths`` as ``Decimal(str(x))``."""
    obj = copy.deepcopy(obj)
    for path in paths:
        *parents, leaf = path.split(".")
        node = obj
        for key in parents:
            node = node[key]
        assert isinstance(node[leaf], int | float), path
        node[leaf] = Decimal(str(node[leaf]))
    return obj


def test_vectors_cover_what_matters() -> None:
    blob = json.dumps([v["json"] for v in VECTORS], ensure_ascii=False)
    for needle in ("محمد علی", "Müller", "😀", "https://", "1500.5", "0.1", "99.99", '\\"'):
        assert needle in blob, needle
    assert len(VECTORS) >= 8


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_stringify_matches_node_with_floats(vector: dict[str, Any]) -> None:
    body = js_stringify(vector["object"])
    assert body == vector["json"].encode("utf-8")
    assert sign(vector["secret"], body) == vector["signature"]


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_stringify_matches_node_with_decimals(vector: dict[str, Any]) -> None:
    obj = with_decimals(vector["object"], vector["decimal_paths"])
    body = js_stringify(obj)
    assert body == vector["json"].encode("utf-8")
    assert sign(vector["secret"], body) == vector["signature"]
    assert signature_matches(vector["secret"], body, vector["signature"].upper())


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_reserialising_the_json_is_stable(vector: dict[str, Any]) -> None:
    """What the webhook verifier does: parse with Decimal floats, stringify again."""
    parsed = json.loads(vector["json"], parse_float=Decimal)
    assert js_stringify(parsed) == vector["json"].encode("utf-8")


@pytest.mark.parametrize("vector", [v for v in VECTORS if "source" in v], ids=lambda v: v["name"])
def test_key_order_follows_javascript(vector: dict[str, Any]) -> None:
    parsed = json.loads(vector["source"])  # Python keeps the written order
    assert list(parsed) != list(vector["object"])
    assert js_stringify(parsed) == vector["json"].encode("utf-8")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("5.00"), "5"),
        (Decimal("1500.50"), "1500.5"),
        (Decimal("0.10"), "0.1"),
        (Decimal("99.990"), "99.99"),
        (Decimal("-0"), "0"),
        (Decimal("1E+2"), "100"),
        (5, "5"),
        (5.0, "5"),
        (-0.0, "0"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (0.00001, "0.00001"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.2345678901234567e19, "12345678901234567000"),
        (2**53 + 1, "9007199254740992"),
    ],
)
def test_js_number(value: int | float | Decimal, expected: str) -> None:
    assert js_number(value) == expected


def test_decimal_amount_in_body() -> None:
    assert js_stringify({"amount": Decimal("5.00")}) == b'{"amount":5}'
    assert js_stringify({"amount": Decimal("1500.50")}) == b'{"amount":1500.5}'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), Decimal("NaN"), Decimal("Infinity")])
def test_non_finite_numbers_refused(bad: float | Decimal) -> None:
    with pytest.raises(ValueError):
        js_stringify({"amount": bad})


def test_unserialisable_refused() -> None:
    with pytest.raises(TypeError):
        js_stringify({"x": object()})


def test_signature_matches_rejects_wrong_and_odd_input() -> None:
    body = b'{"a":1}'
    good = sign("k", body)
    assert signature_matches("k", body, good)
    assert signature_matches("k", body, f"  {good.upper()} ")
    assert not signature_matches("other", body, good)
    assert not signature_matches("k", body, "")
    assert not signature_matches("k", body, "é" * 64)
