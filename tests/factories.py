"""Valid inputs built one way everywhere: the checkout fields a rep fills in, the
CheckoutRequest they parse into, XPay's payment webhook (as a body and as a PaymentEvent),
and a link's checkout link as XPay's create leaves it, and links stored in bulk.

Each takes keyword changes; the defaults fit together (a paid webhook's amount and currency
are the default request's).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import cycle
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from bot.checkout import CheckoutRequest, parse_checkout
from bot.db import utcnow
from bot.links.states import Status
from bot.links.store import LinkStore
from bot.links.tables import Link
from bot.links.workspaces import Workspace
from bot.xpay.webhooks import PaymentEvent, parse_payment_event

AMOUNT = "1500.50"
CURRENCY = "PKR"
METHODS = ("card", "jazzcash")
PAID_MESSAGE = "The payment was completed successfully"
DECLINED_MESSAGE = "Declined by the issuing bank"


def checkout_fields(**changes: Any) -> dict[str, Any]:
    """The fields of a valid request as the modal or the CLI hands them over. No order
    reference: parsing generates a fresh one, so requests never collide."""
    return {
        "amount": AMOUNT,
        "currency": CURRENCY,
        "customer_name": "Ayesha Khan",
        "customer_email": "ayesha.khan@example.com",
        **changes,
    }


def checkout_request(
    *,
    currencies: Sequence[str] = (CURRENCY,),
    methods: Sequence[str] = METHODS,
    max_amount: Decimal | None = None,
    **changes: Any,
) -> CheckoutRequest:
    """``checkout_fields(**changes)`` parsed as the bot does with these settings."""
    return parse_checkout(
        checkout_fields(**changes),
        currencies=list(currencies),
        methods=list(methods),
        max_amount=max_amount,
    )


def webhook_payload(
    intent_id: str,
    status: str = "succeeded",
    *,
    amount: str | Decimal | None = AMOUNT,
    currency: str | None = CURRENCY,
    method: str = "card",
    bank_message: str | None = None,
) -> dict[str, Any]:
    """The ``PAYMENT_INTENT_NOTIFICATION`` XPay sends when ``intent_id`` becomes ``status``
    (``succeeded``: captured, else declined); ``None`` leaves out the amount or currency."""
    paid = status == "succeeded"
    body: dict[str, Any] = {
        "type": "PAYMENT_INTENT_NOTIFICATION",
        "payment_intent_id": intent_id,
        "status": status,
        "payment_method_types": method,
        "transaction_details": {
            "status": "CAPTURED" if paid else "DECLINED",
            "response_from_bank": bank_message or (PAID_MESSAGE if paid else DECLINED_MESSAGE),
        },
    }
    if amount is not None:
        body["amount"] = Decimal(amount)
    if currency is not None:
        body["currency"] = currency
    return body


def payment_event(intent_id: str, status: str = "succeeded", **changes: Any) -> PaymentEvent:
    """:func:`webhook_payload` as the bot reads it (through ``parse_payment_event``)."""
    return parse_payment_event(webhook_payload(intent_id, status, **changes))


def give_intent(
    store: LinkStore, session: Session, link_id: int, intent_id: str, **changes: Any
) -> None:
    """Record ``intent_id`` as the link's (first) checkout link, as the service does when
    XPay creates it; ``changes`` sets further columns of the link."""
    link = store.get(session, link_id)
    assert link is not None
    now = utcnow()
    store.record_intent(
        session,
        link_id,
        link.reference,
        intent_id=intent_id,
        checkout_url=f"https://checkout.example.test/{intent_id}",
        created_at=now,
        expires_at=now + timedelta(days=7),
    )
    store.update_fields(session, link_id, intent_id=intent_id, **changes)


def insert_links(
    store: LinkStore,
    count: int,
    *,
    requester: str = "U0REP",
    workspace: Workspace = Workspace("T0HOME"),
    statuses: Any = None,
    prefix: str = "PL",
    created: datetime | None = None,
    **columns: Any,
) -> None:
    """``count`` links of ``requester`` in ``workspace``, in one bulk insert (thousands in a
    blink): references ``<prefix>-00000`` on, statuses in turn from ``statuses`` (every
    status by default), created a minute apart until ``created`` (now); ``columns`` set the
    rest."""
    start = created or utcnow()
    turns = cycle(statuses or list(Status))
    rows = []
    for i in range(count):
        at = start - timedelta(minutes=count - i)
        rows.append(
            {
                "reference": f"{prefix}-{i:05d}",
                "amount": Decimal("1500.50"),
                "currency": "PKR",
                "customer_name": f"Customer {prefix} {i}",
                "customer_email": f"buyer{i}@{prefix.lower()}.example.com",
                "customer_phone": f"0341{i:07d}",
                "shipping": {},
                "payment_methods": [],
                "requester_id": requester,
                "team_id": workspace.team_id,
                "enterprise_id": workspace.enterprise_id,
                "channel_id": "C0APPROVALS",
                "message_ts": f"1700000000.{i:06d}",
                "status": next(turns).value,
                "version": 1,
                "attempts": 0,
                "sandbox": False,
                "created_at": at,
                "updated_at": at,
                **columns,
            }
        )
    with store.transaction() as s:
        s.execute(insert(Link.__table__), rows)
