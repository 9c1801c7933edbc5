"""Database preparation: schema, filler links (bulk core inserts), webhook links, requests."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Engine, insert, select, text

from bot.checkout import Shipping, parse_checkout
from bot.db import make_engine
from bot.links.service import LinkService
from bot.links.states import Status
from bot.links.store import LinkStore
from bot.links.tables import History, Job, Link, LinkIntent, WebhookEvent
from bot.local.demo import DEMO_FIELDS
from bot.schema import upgrade
from bot.xpay.sandbox import sandbox_webhook_payload
from bot.xpay.signing import js_stringify, sign

BATCH = 5_000
CHANNEL = "C0APPROVALS"
REP, APPROVER, HOME_USER = "U0REP", "U0APPROVER", "U0HOMEUSER"
# The demo's shipping fields, so seeded links look like the ones the demo creates.
SHIPPING = {name: DEMO_FIELDS[name] for name in Shipping.model_fields}
# Mix of statuses for the filler: mostly finished links, as in a store that has been used.
MIX = [
    (Status.PAID, 70),
    (Status.AWAITING_PAYMENT, 10),
    (Status.REJECTED, 8),
    (Status.CANCELLED, 5),
    (Status.PAYMENT_FAILED, 5),
    (Status.AWAITING_APPROVAL, 2),
]


@dataclass
class Seeded:
    webhook_cards: list[tuple[str, str]] = field(default_factory=list)  # (channel, ts)
    webhooks: list[tuple[bytes, str, str, str]] = field(default_factory=list)  # body,sig,ch,ts


def _status_for(i: int) -> Status:
    k = i % 100
    for status, share in MIX:
        if k < share:
            return status
        k -= share
    return Status.PAID


def _row(i: int, prefix: str, now: datetime, **over: Any) -> dict[str, Any]:
    status = over.pop("status", _status_for(i))
    has_intent = status not in (Status.AWAITING_APPROVAL, Status.REJECTED)
    row = {
        "reference": f"{prefix}-{i:07d}",
        "amount": Decimal("1500.50") + i % 1000,
        "currency": "PKR",
        "customer_name": f"Customer {i}",
        "customer_email": f"customer{i}@example.com",
        "customer_phone": "03415682456",
        "shipping": SHIPPING,
        "payment_methods": ["card", "jazzcash"],
        "success_url": None,
        "failure_url": None,
        "requester_id": f"U0REP{i % 50:03d}",
        "origin_channel_id": "C0SALES",
        "channel_id": CHANNEL,
        "message_ts": f"1500000000.{i:06d}" if i < 1_000_000 else None,
        "status": status.value,
        "version": 3,
        "decided_by": APPROVER if has_intent else None,
        "decided_at": now if has_intent else None,
        "reject_reason": "too large" if status == Status.REJECTED else None,
        "cancelled_by": None,
        "intent_id": f"xpay_pi_{prefix}_{i:07d}" if has_intent else None,
        "checkout_url": f"https://xpay.example/checkout/{prefix}{i}" if has_intent else None,
        "checkout_reference": f"{prefix}-{i:07d}" if has_intent else None,
        "gateway_message": None,
        "lease_until": None,
        "attempts": 1 if has_intent else 0,
        "paid_method": "card" if status == Status.PAID else None,
        "bank_message": None,
        "reconcile_after": now + timedelta(days=1) if status == Status.AWAITING_PAYMENT else None,
        "created_at": now - timedelta(seconds=100_000_000 - i),
        "updated_at": now - timedelta(seconds=50_000_000 - i),
    }
    row.update(over)
    return row


def _bulk(engine: Engine, rows: list[dict[str, Any]], prefix: str, now: datetime) -> None:
    """Insert links plus one history row, one delivered outbox row, a checkout link (when
    created) and (if paid) one webhook event each, in core-insert batches of ``BATCH``."""
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        with engine.begin() as conn:
            conn.execute(insert(Link.__table__), chunk)
            refs = [r["reference"] for r in chunk]
            ids = dict(
                conn.execute(
                    select(Link.reference, Link.id).where(
                        Link.reference.between(min(refs), max(refs))
                    )
                ).all()
            )
            conn.execute(
                insert(History.__table__),
                [
                    {
                        "link_id": ids[r["reference"]],
                        "from_status": None,
                        "to_status": r["status"],
                        "actor": r["requester_id"],
                        "at": r["created_at"],
                    }
                    for r in chunk
                ],
            )
            conn.execute(
                insert(Job.__table__),
                [
                    {
                        "link_id": ids[r["reference"]],
                        "kind": "card",
                        "payload": {},
                        "attempts": 1,
                        "next_attempt_at": r["created_at"],
                        "done_at": r["created_at"] + timedelta(seconds=1),
                        "created_at": r["created_at"],
                    }
                    for r in chunk
                ],
            )
            created = [r for r in chunk if r["intent_id"]]
            if created:
                conn.execute(
                    insert(LinkIntent.__table__),
                    [
                        {
                            "link_id": ids[r["reference"]],
                            "intent_id": r["intent_id"],
                            "reference": r["reference"],
                            "checkout_url": r["checkout_url"],
                            "created_at": r["created_at"],
                            "paid_at": r["updated_at"]
                            if r["status"] == Status.PAID.value
                            else None,
                        }
                        for r in created
                    ],
                )
            paid = [r for r in chunk if r["status"] == Status.PAID.value]
            if paid:
                conn.execute(
                    insert(WebhookEvent.__table__),
                    [
                        {
                            "dedupe_key": hashlib.sha256(r["intent_id"].encode()).hexdigest(),
                            "intent_id": r["intent_id"],
                            "status": "SUCCEEDED",
                            "outcome": "applied",
                            "received_at": r["updated_at"],
                        }
                        for r in paid
                    ],
                )


def prepare(url: str, *, filler: int, home_links: int) -> None:
    """Migrate and bulk-insert ``filler`` links (``home_links`` of them by HOME_USER)."""
    engine = make_engine(url)
    upgrade(engine)
    now = datetime.now(UTC)
    rows = [_row(i, "fill", now) for i in range(filler)]
    for row in rows[:home_links]:
        row["requester_id"] = HOME_USER
    _bulk(engine, rows, "fill", now)
    settle(engine)
    engine.dispose()


def settle(engine: Engine) -> None:
    """Leave the database as a running store would be after a bulk load: on PostgreSQL
    analyzed (autovacuum would do it soon; plans are then stable), on SQLite with its WAL
    checkpointed (or the first commit after the load copies it all, with everyone waiting).
    No ANALYZE on SQLite: Paylink never runs it, so its plans use no statistics."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        return
    raw = engine.raw_connection()  # outside any transaction (the driver is in autocommit)
    try:
        raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()


def webhook_links(url: str, start: int, count: int, *, secret: str, ts_second: int) -> Seeded:
    """``count`` links awaiting payment whose cards exist (ts ``{ts_second}.{i}``), numbered
    from ``start``, and their signed payment webhooks, one each."""
    engine = engine_for(url)
    now = datetime.now(UTC)
    hooks = [
        _row(
            i,
            "hook",
            now,
            status=Status.AWAITING_PAYMENT,
            message_ts=f"{ts_second}.{i:06d}",
            reconcile_after=now + timedelta(days=1),
        )
        for i in range(start, start + count)
    ]
    _bulk(engine, hooks, "hook", now)
    settle(engine)
    seeded = Seeded()
    for row in hooks:
        intent = SimpleNamespace(
            id=row["intent_id"],
            amount=row["amount"],
            currency="PKR",
            customer={"name": row["customer_name"], "email": row["customer_email"]},
            body={"shipping": SHIPPING},
        )
        body = js_stringify(sandbox_webhook_payload(intent, "pay", "card"))  # type: ignore[arg-type]
        seeded.webhook_cards.append((CHANNEL, row["message_ts"]))
        seeded.webhooks.append((body, sign(secret, body), CHANNEL, row["message_ts"]))
    return seeded


def request_approvals(url: str, count: int, tag: str) -> list[int]:
    """``count`` requests awaiting approval, created through the service (cards queued)."""
    engine = make_engine(url)
    service = LinkService(LinkStore(engine), gateway=None, is_approver=lambda _u: True)  # type: ignore[arg-type]
    ids = []
    for i in range(count):
        request = parse_checkout(
            {
                "amount": "15000",
                "currency": "PKR",
                "customer_name": "Ayesha Khan",
                "customer_email": "ayesha.khan@example.com",
                "customer_phone": "03415682456",
                **SHIPPING,
                "order_reference": f"APR-{tag}-{i:06d}",
                "payment_methods": ["card", "jazzcash"],
            },
            currencies=["PKR"],
            methods=["card", "easypaisa", "jazzcash", "googlepay", "dqr"],
        )
        link = service.request_link(
            request, requester_id=REP, channel_id=CHANNEL, origin_channel_id="C0SALES"
        )
        ids.append(link.id)
    engine.dispose()
    return ids


def count_links(url: str) -> int:
    with engine_for(url).connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM links")).scalar_one())


def creating(url: str) -> int:
    """Links still being created at the gateway (background work after an approval)."""
    with engine_for(url).connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM links WHERE status = :s"),
                {"s": Status.CREATING_LINK.value},
            ).scalar_one()
        )


_engines: dict[str, Engine] = {}


def engine_for(url: str) -> Engine:
    """One engine per database for the whole run (the seeding between steps reuses it)."""
    return _engines.get(url) or _engines.setdefault(url, make_engine(url))


def dispose(url: str) -> None:
    """Close the run's connections to ``url`` (before its scratch schema is dropped)."""
    engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()
