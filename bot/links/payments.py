"""What identifies a payment event, and whether it is for the money a link asked for."""

from __future__ import annotations

import hashlib

from bot.links.tables import Link
from bot.xpay.signing import js_stringify
from bot.xpay.webhooks import PaymentEvent


def event_key(event: PaymentEvent) -> str:
    """The same payment event delivered again has the same key."""
    fields = [
        event.payment_intent_id,
        event.status,
        event.transaction_status or "",
        "" if event.amount is None else str(event.amount),
        event.currency or "",
    ]
    return hashlib.sha256(js_stringify(fields)).hexdigest()


def same_money(event: PaymentEvent, link: Link) -> bool:
    """False when XPay reports another amount or currency than the link asked for (events
    that omit them, like reconciliation's, are taken as matching)."""
    if event.amount is not None and event.amount != link.amount:
        return False
    return not (event.currency and event.currency.upper() != link.currency.upper())
