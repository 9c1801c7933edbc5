"""What identifies a payment event, and whether it is for the money a link asked for."""

from __future__ import annotations

import hashlib

from bot.links.tables import Link
from bot.xpay.signing import js_stringify
from bot.xpay.webhooks import PaymentEvent

# Where a payment event came from: XPay's webhook, or the bot's own read of the intent.
WEBHOOK, RECONCILE = "webhook", "reconcile"


def event_key(event: PaymentEvent, source: str = WEBHOOK) -> str:
    """The same payment event delivered again has the same key. The bot's own reads of
    XPay's record (``source``: reconcile) have keys of their own: a read that happens to
    state what a webhook stated is not that webhook delivered again."""
    fields = [
        *([] if source == WEBHOOK else [source]),
        event.payment_intent_id,
        event.status,
        event.transaction_status or "",
        "" if event.amount is None else str(event.amount),
        event.currency or "",
    ]
    return hashlib.sha256(js_stringify(fields)).hexdigest()


def same_money(event: PaymentEvent, link: Link) -> bool | None:
    """Whether the event is for the amount and currency the link asked for: False when it
    states another, None when it leaves either out (only XPay's own record of the intent,
    as reconciliation reads it, may then count as matching)."""
    if event.amount is not None and event.amount != link.amount:
        return False
    if event.currency and event.currency.upper() != link.currency.upper():
        return False
    if event.amount is None or not event.currency:
        return None
    return True
