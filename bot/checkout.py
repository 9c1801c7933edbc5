"""The checkout request: what a rep asks for, validated before anything is stored or sent."""

from __future__ import annotations

import re
import secrets
import unicodedata
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field

from bot.money import CENT, PLAIN_NUMBER, AmountProblem, amount_problem
from bot.urls import is_http_url

if TYPE_CHECKING:
    from bot.config import Settings

# Every field a request has, as parse_checkout takes them (the modal's block ids too).
FIELDS = (
    "amount",
    "currency",
    "customer_name",
    "customer_email",
    "customer_phone",
    "address1",
    "city",
    "province",
    "country",
    "zip",
    "shipping_method",
    "order_reference",
    "payment_methods",
    "success_url",
    "failure_url",
)
GROUPED_AMOUNT = re.compile(r"^[0-9]{1,3}(,[0-9]{2,3})*,[0-9]{3}(\.[0-9]+)?$")
REFERENCE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_TEXT = 200


class CheckoutInvalid(Exception):
    """One or more fields are wrong; ``errors`` maps field name → message for the person."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class Customer(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    email: str | None = None
    phone: str | None = None


class Shipping(BaseModel):
    model_config = ConfigDict(frozen=True)
    address1: str = ""
    city: str = ""
    province: str = ""
    country: str = ""
    zip: str = ""
    shipping_method: str = ""


class CheckoutRequest(BaseModel):
    """A validated checkout request. Build it with :func:`parse_checkout`."""

    model_config = ConfigDict(frozen=True)
    amount: Decimal
    currency: str
    customer: Customer
    shipping: Shipping = Field(default_factory=Shipping)
    order_reference: str
    success_url: str | None = None
    failure_url: str | None = None
    payment_methods: tuple[str, ...] = ()

    def to_xpay_payload(self) -> dict[str, Any]:
        """The body of XPay's create-checkout call (amounts stay Decimal for exact JSON)."""
        customer: dict[str, Any] = {"name": self.customer.name}
        if self.customer.email:
            customer["email"] = self.customer.email
        if self.customer.phone:
            customer["phone"] = self.customer.phone
        payload: dict[str, Any] = {
            "amount": self.amount,
            "currency": self.currency,
            "customer": customer,
            "shipping": self.shipping.model_dump(),
            "metadata": {"order_reference": self.order_reference},
        }
        if self.success_url:
            payload["success_url"] = self.success_url
        if self.failure_url:
            payload["failure_url"] = self.failure_url
        if self.payment_methods:
            payload["payment_methods"] = list(self.payment_methods)
        return payload


def new_reference() -> str:
    """A fresh order reference: short, URL-safe, unlikely to collide."""
    return "PL-" + secrets.token_hex(4).upper()


# Control characters (NUL among them, which PostgreSQL cannot store) count as blanks.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _clean(value: Any) -> str:
    """One line of text: control characters as blanks, format characters gone, blanks
    collapsed."""
    if value is None:
        return ""
    text = _CONTROL.sub(" ", str(value))
    if not text.isascii():
        # Format characters (category Cf: bidi overrides such as U+202E, zero-width spaces
        # and joiners) are invisible and make a name or an address show as other text.
        text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return " ".join(text.split())


def parse_amount(raw: Any, max_amount: Decimal | None = None) -> Decimal:
    """Parse an amount in major units as people type it (``5000``, ``5,000.50``,
    ``1,00,000``); raise ValueError with a message for the person."""
    text = _clean(raw)
    if "," in text:
        # Thousands separators, western (150,000) or South Asian (1,50,000); a decimal comma
        # ("1,5") must not silently become 15.
        if not GROUPED_AMOUNT.match(text):
            raise ValueError(
                "Use commas only between thousands (1,500.50), and a dot for decimals."
            )
        text = text.replace(",", "")
    if not text:
        raise ValueError("Enter an amount.")
    # ASCII digits only: Decimal would also read 1e10, 1_000, .5 and other scripts' digits.
    if not PLAIN_NUMBER.fullmatch(text):
        raise ValueError("Enter the amount in digits, like 5000 or 5,000.50.")
    amount = Decimal(text)
    if amount <= 0:
        raise ValueError("The amount must be more than 0.")
    problem = amount_problem(amount)
    if max_amount is not None and amount > max_amount:
        raise ValueError(f"The most a link may ask for is {max_amount:,}.")
    if problem == AmountProblem.TOO_LARGE:
        raise ValueError("The amount is too large.")
    if problem:
        raise ValueError("Use at most 2 decimal places.")
    return amount.quantize(CENT)


def normalise_phone(raw: str) -> str:
    """Validate a phone number; Pakistani local numbers like 03415682456 are accepted as typed."""
    try:
        number = phonenumbers.parse(raw, None if raw.startswith("+") else "PK")
    except phonenumbers.NumberParseException:
        raise ValueError("Enter a phone number like 03415682456 or +92 341 5682456.") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("That phone number is not valid.")
    if number.country_code == 92 and not raw.startswith("+"):
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL).replace(
            " ", ""
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_forms(phone: str) -> set[str]:
    """Every form :func:`normalise_phone` may have stored this number in (a Pakistani number
    typed locally stays local, ``03415682456``; typed with +92 it is ``+923415682456``)."""
    forms = {phone}
    try:
        number = phonenumbers.parse(phone, None if phone.startswith("+") else "PK")
    except phonenumbers.NumberParseException:
        return forms
    forms.add(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    if number.country_code == 92:
        national = phonenumbers.PhoneNumberFormat.NATIONAL
        forms.add(phonenumbers.format_number(number, national).replace(" ", ""))
    return forms


def _url(raw: str) -> str:
    if not is_http_url(raw):
        raise ValueError("Enter a full http:// or https:// address.")
    if len(raw) > 2000:
        raise ValueError("That address is too long.")
    return raw


def parse_checkout(
    fields: dict[str, Any],
    *,
    currencies: list[str],
    methods: list[str],
    max_amount: Decimal | None = None,
) -> CheckoutRequest:
    """Validate raw field values (from the modal or the CLI) into a CheckoutRequest.

    Keys: amount, currency, customer_name, customer_email, customer_phone, address1, city,
    province, country, zip, shipping_method, order_reference, payment_methods (list),
    success_url, failure_url. Raises CheckoutInvalid with every problem at once.
    """
    errors: dict[str, str] = {}
    value: dict[str, Any] = {}

    def check(name: str, func: Any) -> None:
        try:
            value[name] = func()
        except ValueError as exc:
            errors[name] = str(exc)

    check("amount", lambda: parse_amount(fields.get("amount"), max_amount))

    def currency() -> str:
        code = _clean(fields.get("currency") or currencies[0]).upper()
        if code not in currencies:
            raise ValueError(f"Choose one of {', '.join(currencies)}.")
        return code

    check("currency", currency)

    def text(name: str, label: str, required: bool = False) -> None:
        def parse() -> str:
            cleaned = _clean(fields.get(name))
            if required and not cleaned:
                raise ValueError(f"Enter the {label}.")
            if len(cleaned) > MAX_TEXT:
                raise ValueError(f"Keep the {label} under {MAX_TEXT} characters.")
            return cleaned

        check(name, parse)

    text("customer_name", "customer's name", required=True)
    for name, label in (
        ("address1", "address"),
        ("city", "city"),
        ("province", "province"),
        ("country", "country"),
        ("zip", "postal code"),
        ("shipping_method", "shipping method"),
    ):
        text(name, label)

    def email() -> str | None:
        raw = _clean(fields.get("customer_email"))
        if not raw:
            return None
        try:
            return validate_email(raw, check_deliverability=False).normalized
        except EmailNotValidError:
            raise ValueError("Enter a valid e-mail address, like name@example.com.") from None

    def phone() -> str | None:
        raw = _clean(fields.get("customer_phone")).replace(" ", "").replace("-", "")
        return normalise_phone(raw) if raw else None

    check("customer_email", email)
    check("customer_phone", phone)
    if (
        "customer_email" not in errors
        and "customer_phone" not in errors
        and not value.get("customer_email")
        and not value.get("customer_phone")
    ):
        errors["customer_email"] = "Enter the customer's e-mail or phone."

    def reference() -> str:
        raw = _clean(fields.get("order_reference"))
        if not raw:
            return new_reference()
        if not REFERENCE_PATTERN.match(raw):
            raise ValueError("Use up to 64 letters, digits, '.', '_' or '-'.")
        return raw

    check("order_reference", reference)

    def url(name: str) -> None:
        raw = _clean(fields.get(name))
        check(name, lambda: _url(raw) if raw else None)

    url("success_url")
    url("failure_url")

    def payment_methods() -> tuple[str, ...]:
        raw = fields.get("payment_methods") or []
        if not isinstance(raw, list | tuple) or not all(isinstance(m, str) for m in raw):
            raise ValueError(f"Choose from {', '.join(methods)}.")
        chosen = [m.lower() for m in raw]
        bad = [m for m in chosen if m not in methods]
        if bad:
            raise ValueError(f"Choose from {', '.join(methods)}.")
        # All offered methods selected is the same as none: let XPay show every method.
        return () if set(chosen) >= set(methods) else tuple(m for m in methods if m in chosen)

    check("payment_methods", payment_methods)

    if errors:
        raise CheckoutInvalid(errors)
    return CheckoutRequest(
        amount=value["amount"],
        currency=value["currency"],
        customer=Customer(
            name=value["customer_name"],
            email=value["customer_email"],
            phone=value["customer_phone"],
        ),
        shipping=Shipping(**{k: value[k] for k in Shipping.model_fields}),
        order_reference=value["order_reference"],
        success_url=value["success_url"],
        failure_url=value["failure_url"],
        payment_methods=value["payment_methods"],
    )


def mask_email(email: str | None) -> str:
    """``ayesha.khan@example.com`` → ``a•••n@example.com``."""
    if not email or "@" not in email:
        return ""
    local, _, domain = email.rpartition("@")
    shown = local[0] + "•••" + (local[-1] if len(local) > 2 else "")
    return f"{shown}@{domain}"


def mask_phone(phone: str | None) -> str:
    """``03415682456`` → ``•••••••2456``: only the last four digits stay."""
    if not phone:
        return ""
    digits = [c for c in phone if c.isdigit()]
    return (
        ("+" if phone.startswith("+") else "")
        + "•" * max(len(digits) - 4, 3)
        + "".join(digits[-4:])
    )


def parse_with_settings(fields: dict[str, Any], settings: Settings) -> CheckoutRequest:
    """:func:`parse_checkout` with this bot's currencies, methods and maximum amount."""
    return parse_checkout(
        fields,
        currencies=settings.paylink_currencies,
        methods=settings.paylink_payment_methods,
        max_amount=settings.paylink_max_amount,
    )
