"""The checkout request: every field's rule, its message, the XPay payload and masking."""

from __future__ import annotations

import json
import re
import unicodedata
from decimal import Decimal
from typing import Any

import pytest

from bot.checkout import (
    CheckoutInvalid,
    CheckoutRequest,
    mask_email,
    mask_phone,
    parse_checkout,
)
from bot.payment_methods import PAYMENT_METHODS
from bot.xpay.signing import js_stringify
from tests.factories import checkout_request

METHODS = list(PAYMENT_METHODS)


def parse(methods: list[str] | None = None, **changes: Any) -> CheckoutRequest:
    """A request with every payment method offered (unless ``methods`` says otherwise)."""
    return checkout_request(methods=methods or METHODS, **changes)


def errors(max_amount: Decimal | None = None, **changes: Any) -> dict[str, str]:
    with pytest.raises(CheckoutInvalid) as info:
        parse(max_amount=max_amount, **changes)
    return info.value.errors


# Amounts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (5, Decimal("5")),
        ("5", Decimal("5")),
        (1500.50, Decimal("1500.50")),
        ("1500.50", Decimal("1500.50")),
        ("1,500.5", Decimal("1500.5")),
        (" 2,000 ", Decimal("2000")),
        ("0.01", Decimal("0.01")),
        ("1.230", Decimal("1.23")),  # trailing zeros are not extra precision
        ("1,50,000", Decimal("150000")),  # South Asian grouping
        ("12,34,567.5", Decimal("1234567.5")),
    ],
)
def test_good_amounts(raw: Any, expected: Decimal) -> None:
    assert parse(amount=raw).amount == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (0, "The amount must be more than 0."),
        ("0.00", "The amount must be more than 0."),
        (-1, "The amount must be more than 0."),
        ("1.234", "Use at most 2 decimal places."),
        # A decimal comma must not become a ten- or hundred-fold amount.
        ("1,5", "Use commas only between thousands (1,500.50), and a dot for decimals."),
        ("1,50", "Use commas only between thousands (1,500.50), and a dot for decimals."),
        (1.234, "Use at most 2 decimal places."),
        ("abc", "Enter the amount in digits, like 5000 or 5,000.50."),
        ("NaN", "Enter the amount in digits, like 5000 or 5,000.50."),
        ("", "Enter an amount."),
        (None, "Enter an amount."),
        ("1000000000000", "The amount is too large."),
        ("1,000,000,000,000", "The amount is too large."),
    ],
)
def test_bad_amounts(raw: Any, message: str) -> None:
    assert errors(amount=raw) == {"amount": message}


@pytest.mark.parametrize(
    "raw",
    [
        "1e10",
        "1e12",
        "1E3",
        "1_000",
        "\u0665\u0660\u0660\u0660",
        "５０００",
        ".5",
        "5.",
        "0x10",
        "Infinity",
        "5 000",
    ],
)
def test_amounts_are_plain_digits(raw: str) -> None:
    """Only what people type as an amount: digits, a decimal point, thousands separators;
    no exponents, underscores, other scripts' digits or a bare fraction."""
    assert errors(amount=raw) == {"amount": "Enter the amount in digits, like 5000 or 5,000.50."}


def test_amount_precision_is_not_rounded_away() -> None:
    # 28 significant digits would round this to 1 in the default decimal context.
    assert errors(amount="1.00000000000000000000000000001") == {
        "amount": "Use at most 2 decimal places."
    }


def test_amount_above_the_maximum() -> None:
    assert errors(max_amount=Decimal("100000"), amount="100000.01") == {
        "amount": "The most a link may ask for is 100,000."
    }
    assert parse(max_amount=Decimal("100000"), amount="100,000").amount == Decimal("100000")


# Currency ------------------------------------------------------------------------------


def test_currency_defaults_to_the_first_offered_and_must_be_offered() -> None:
    assert parse(currency="").currency == "PKR"
    assert parse(currencies=["USD", "PKR"], currency="").currency == "USD"
    assert parse(currencies=["USD", "PKR"], currency="pkr").currency == "PKR"
    assert errors(currency="EUR") == {"currency": "Choose one of PKR."}


# Customer ------------------------------------------------------------------------------


def test_name_is_required_and_bounded() -> None:
    assert errors(customer_name="  ") == {"customer_name": "Enter the customer's name."}
    assert "200" in errors(customer_name="x" * 201)["customer_name"]
    assert parse(customer_name="  Ayesha   Khan ").customer.name == "Ayesha Khan"


def test_email() -> None:
    assert parse(customer_email="Ayesha@Example.COM").customer.email == "Ayesha@example.com"
    for bad in ("ayesha", "ayesha@", "@example.com", "a b@example.com", "ayesha@example"):
        assert errors(customer_email=bad) == {
            "customer_email": "Enter a valid e-mail address, like name@example.com."
        }, bad


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("03415682456", "03415682456"),  # Pakistani mobile as typed locally: kept as typed
        ("0341 5682456", "03415682456"),
        ("0341-5682456", "03415682456"),
        ("+923415682456", "+923415682456"),
        ("+92 341 5682456", "+923415682456"),
        ("+14155552671", "+14155552671"),
    ],
)
def test_good_phones(raw: str, kept: str) -> None:
    request = parse(customer_email="", customer_phone=raw)
    assert request.customer.phone == kept
    assert request.customer.email is None


@pytest.mark.parametrize("raw", ["12345", "abc", "0341568245", "+9234156824561234", "0000000000"])
def test_bad_phones(raw: str) -> None:
    message = errors(customer_email="", customer_phone=raw)["customer_phone"]
    assert "phone number" in message


def test_email_or_phone_is_required() -> None:
    assert errors(customer_email="", customer_phone="") == {
        "customer_email": "Enter the customer's e-mail or phone."
    }
    both = parse(customer_phone="03415682456")
    assert both.customer.email == "ayesha.khan@example.com"
    assert both.customer.phone == "03415682456"
    # A bad phone is reported as itself, not as "e-mail or phone missing".
    assert set(errors(customer_email="", customer_phone="12")) == {"customer_phone"}


# Order reference -------------------------------------------------------------------------


def test_reference_is_generated_when_blank() -> None:
    refs = {parse(order_reference="").order_reference for _ in range(50)}
    refs.add(parse().order_reference)  # key missing altogether
    assert len(refs) == 51
    for ref in refs:
        assert re.fullmatch(r"PL-[0-9A-F]{8}", ref), ref


def test_reference_rules() -> None:
    assert parse(order_reference="INV-2024.001_a").order_reference == "INV-2024.001_a"
    assert parse(order_reference="A" * 64).order_reference == "A" * 64
    message = "Use up to 64 letters, digits, '.', '_' or '-'."
    for bad in ("A" * 65, "INV 1", "INV/1", "<@U123>", "-leading", "inv#1", "ünï"):
        assert errors(order_reference=bad) == {"order_reference": message}, bad


# URLs ------------------------------------------------------------------------------------


def test_urls_must_be_http_or_https() -> None:
    request = parse(success_url="https://shop.example.com/ok?o=1", failure_url="http://x.test/f")
    assert request.success_url == "https://shop.example.com/ok?o=1"
    assert request.failure_url == "http://x.test/f"
    assert parse(success_url="").success_url is None
    message = "Enter a full http:// or https:// address."
    for bad in (
        "ftp://x.test/a",
        "javascript:alert(1)",
        "shop.example.com",
        "https://",
        "http:// x",
    ):
        assert errors(success_url=bad) == {"success_url": message}, bad
        assert errors(failure_url=bad) == {"failure_url": message}, bad


# Payment methods -------------------------------------------------------------------------


def test_payment_methods_subset_in_offered_order() -> None:
    assert parse(payment_methods=["jazzcash", "Card"]).payment_methods == ("card", "jazzcash")


def test_no_methods_or_all_methods_mean_every_method() -> None:
    assert parse(payment_methods=[]).payment_methods == ()
    assert parse().payment_methods == ()
    assert parse(payment_methods=list(reversed(METHODS))).payment_methods == ()
    assert "payment_methods" not in parse(payment_methods=METHODS).to_xpay_payload()
    assert "payment_methods" not in parse(payment_methods=[]).to_xpay_payload()
    # "All" means all that are offered here, even when fewer than XPay knows.
    assert parse(methods=["card", "dqr"], payment_methods=["dqr", "card"]).payment_methods == ()


def test_unknown_or_unoffered_method_refused() -> None:
    assert errors(payment_methods=["bitcoin"]) == {
        "payment_methods": "Choose from card, easypaisa, jazzcash, googlepay, dqr."
    }
    with pytest.raises(CheckoutInvalid) as info:
        parse(methods=["card"], payment_methods=["jazzcash"])
    assert info.value.errors == {"payment_methods": "Choose from card."}


# Everything at once ----------------------------------------------------------------------


def test_every_problem_reported_at_once() -> None:
    with pytest.raises(CheckoutInvalid) as info:
        parse_checkout(
            {
                "amount": "-5",
                "currency": "EUR",
                "customer_name": "",
                "customer_email": "nope",
                "customer_phone": "12",
                "order_reference": "bad ref",
                "success_url": "ftp://x",
                "failure_url": "mailto:a@b.c",
                "payment_methods": ["bitcoin"],
                "city": "x" * 300,
            },
            currencies=["PKR"],
            methods=METHODS,
        )
    assert set(info.value.errors) == {
        "amount",
        "currency",
        "customer_name",
        "customer_email",
        "customer_phone",
        "order_reference",
        "success_url",
        "failure_url",
        "payment_methods",
        "city",
    }
    assert "amount:" in str(info.value)


# The XPay payload --------------------------------------------------------------------------


def test_xpay_payload_shape() -> None:
    request = parse(
        amount="1,500.50",
        customer_phone="03415682456",
        address1="12 Mall Road",
        city="Lahore",
        province="Punjab",
        country="Pakistan",
        zip="54000",
        shipping_method="Standard",
        order_reference="INV-1",
        success_url="https://shop.example.com/ok",
        failure_url="https://shop.example.com/fail",
        payment_methods=["card", "easypaisa"],
    )
    payload = request.to_xpay_payload()
    assert payload == {
        "amount": Decimal("1500.50"),
        "currency": "PKR",
        "customer": {
            "name": "Ayesha Khan",
            "email": "ayesha.khan@example.com",
            "phone": "03415682456",
        },
        "shipping": {
            "address1": "12 Mall Road",
            "city": "Lahore",
            "province": "Punjab",
            "country": "Pakistan",
            "zip": "54000",
            "shipping_method": "Standard",
        },
        "metadata": {"order_reference": "INV-1"},
        "success_url": "https://shop.example.com/ok",
        "failure_url": "https://shop.example.com/fail",
        "payment_methods": ["card", "easypaisa"],
    }
    body = js_stringify(payload)
    assert body.startswith(b'{"amount":1500.5,"currency":"PKR",')
    assert json.loads(body)["amount"] == 1500.5


def test_minimal_payload_omits_empty_optionals() -> None:
    payload = parse(amount=5, customer_email="", customer_phone="+923415682456").to_xpay_payload()
    assert set(payload) == {"amount", "currency", "customer", "shipping", "metadata"}
    assert payload["customer"] == {"name": "Ayesha Khan", "phone": "+923415682456"}
    assert js_stringify(payload).startswith(b'{"amount":5,')


def test_non_ascii_text_is_kept() -> None:
    request = parse(customer_name="عائشہ خان", city="Lahore / لاہور")
    body = js_stringify(request.to_xpay_payload())
    assert "عائشہ خان".encode() in body
    assert "Lahore / لاہور".encode() in body


FORMAT_CHARACTERS = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Cf"]


def test_invisible_format_characters_are_dropped() -> None:
    """A right-to-left override shows "Ayesha Khan\u202egnp.exe" as "Ayesha Khanexe.png";
    zero-width characters make two names that look the same differ."""
    request = parse(
        customer_name="Ayesha\u200b Khan\u202egnp.exe",
        address1="\u2066House 4\u2069, Street\ufeff 9",
        city="Lah\u200dore",
        order_reference="REF\u200b-1\u2060",
    )
    assert request.customer.name == "Ayesha Khangnp.exe"
    assert request.shipping.address1 == "House 4, Street 9"
    assert request.shipping.city == "Lahore"
    assert request.order_reference == "REF-1"
    body = js_stringify(request.to_xpay_payload()).decode()
    assert not [c for c in body if unicodedata.category(c) == "Cf"]
    every = parse(customer_name="A" + "".join(FORMAT_CHARACTERS) + "B", city="C\u2028D")
    assert every.customer.name == "AB"
    assert every.shipping.city == "C D"


# Masking ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("ayesha.khan@example.com", "a•••n@example.com"),
        ("ab@example.com", "a•••@example.com"),
        ("a@example.com", "a•••@example.com"),
        ("", ""),
        (None, ""),
        ("not-an-email", ""),
    ],
)
def test_mask_email(email: str | None, masked: str) -> None:
    assert mask_email(email) == masked


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("03415682456", "•••••••2456"),
        ("+923415682456", "+••••••••2456"),
        ("1234", "•••1234"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_phone(phone: str | None, masked: str) -> None:
    assert mask_phone(phone) == masked


def test_masks_hide_the_contact_details() -> None:
    assert "khan" not in mask_email("ayesha.khan@example.com")
    assert "341568" not in mask_phone("03415682456")
