"""The payment methods XPay offers, each with the name shown to people.

The one list config validation, the Slack modal and card, and the sandbox checkout page use.
"""

from __future__ import annotations

#: XPay's code (the ``payment_methods`` values of its create-checkout call) → label, in the
#: order XPay's checkout page offers them. ``dqr`` is Raast's dynamic QR code, which people
#: know as Raast QR.
PAYMENT_METHODS: dict[str, str] = {
    "card": "Card",
    "easypaisa": "Easypaisa",
    "jazzcash": "JazzCash",
    "googlepay": "Google Pay",
    "dqr": "Raast QR",
}


def method_label(code: str | None) -> str:
    """The label of a payment method (``googlepay`` → ``Google Pay``); other text as it is."""
    if not code:
        return ""
    return PAYMENT_METHODS.get(code.lower(), code)
