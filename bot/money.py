"""Sums of money: the one rule every amount obeys, whoever typed or sent it.

An amount is a finite decimal with at most 2 places and less than :data:`MAX_AMOUNT` in
size (the links table keeps 12 digits before the point). Checking that never costs more
than the amount's text: numbers from XPay are read by :func:`json_number`, which keeps an
exact ``Decimal`` only for texts short enough to be a sum of money.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum

MAX_AMOUNT = Decimal(10) ** 12
CENT = Decimal("0.01")
# Longest number text (and largest exponent) read exactly; every amount is far shorter.
MAX_NUMBER_TEXT = 40
# A number as a gateway may quote it in a string: ASCII digits, a point, no exponent.
PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


class AmountProblem(StrEnum):
    """Why a value is not an amount (the text is what a webhook's refusal says)."""

    NOT_A_NUMBER = "not a plain number"
    NOT_FINITE = "not a finite number"
    TOO_LARGE = f"not below {MAX_AMOUNT:,}"
    TOO_PRECISE = "more than 2 decimal places"


class AmountError(ValueError):
    """A value that is not an amount; ``problem`` says why."""

    def __init__(self, problem: AmountProblem):
        super().__init__(problem.value)
        self.problem = problem


def amount_problem(value: Decimal) -> AmountProblem | None:
    """What keeps ``value`` from being an amount, or None (checked without rounding)."""
    if not value.is_finite():
        return AmountProblem.NOT_FINITE
    if value.copy_abs() >= MAX_AMOUNT:  # abs() would round, and overflow, in the context
        return AmountProblem.TOO_LARGE
    # Below MAX_AMOUNT the quantized value always fits the context: exact comparison.
    if value != value.quantize(CENT):
        return AmountProblem.TOO_PRECISE
    return None


def to_amount(value: object) -> Decimal:
    """An amount read from XPay (a number as :func:`json_number` gives it, or a plain
    decimal string), in cents: ``Decimal("1500.50")``. AmountError otherwise."""
    if isinstance(value, bool):
        raise AmountError(AmountProblem.NOT_A_NUMBER)
    if isinstance(value, str):
        if len(value) > MAX_NUMBER_TEXT or not PLAIN_NUMBER.fullmatch(value):
            raise AmountError(AmountProblem.NOT_A_NUMBER)
        number = Decimal(value)
    elif isinstance(value, Decimal | int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))  # the shortest text that reads back as this float
    else:
        raise AmountError(AmountProblem.NOT_A_NUMBER)
    problem = amount_problem(number)
    if problem:
        raise AmountError(problem)
    return number.quantize(CENT)


def json_number(text: str) -> Decimal | float:
    """``parse_float`` and ``parse_int`` for ``json.loads`` of what XPay sends.

    A number written in at most :data:`MAX_NUMBER_TEXT` characters with an exponent no
    larger stays an exact ``Decimal``; any other is read as JavaScript reads it, a float
    (``1e900000000`` is ``inf``), which no amount check accepts.
    """
    if len(text) <= MAX_NUMBER_TEXT:
        number = Decimal(text)
        if abs(number.adjusted()) <= MAX_NUMBER_TEXT:
            return number
    return float(text)


def money_text(value: Decimal, currency: str | None = None) -> str:
    """``PKR 1,500.50`` / ``PKR 5,000`` for an amount: thousands separators, decimals only
    when needed."""
    text = f"{value:,.0f}" if value == value.to_integral_value() else f"{value:,.2f}"
    return f"{currency} {text}" if currency else text
