"""Tables: links, their status history, approvals and XPay intents, received webhook events,
the job queue and the digests posted (and, from :mod:`bot.links.installations`, the Slack
installations of multi-workspace mode)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    and_,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

import bot.links.installations  # noqa: F401  (registers the Slack stores' tables)
from bot.checkout import CheckoutRequest
from bot.db import Base, UTCDateTime, utcnow
from bot.links.states import LABELS, Status
from bot.links.workspaces import Workspace


class Link(Base):
    """A checkout-link request and everything that happened to it since."""

    __tablename__ = "links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3))
    customer_name: Mapped[str] = mapped_column(String(200))
    customer_email: Mapped[str | None] = mapped_column(String(320))
    customer_phone: Mapped[str | None] = mapped_column(String(32))
    shipping: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    payment_methods: Mapped[list[str]] = mapped_column(JSON, default=list)
    success_url: Mapped[str | None] = mapped_column(String(2000))
    failure_url: Mapped[str | None] = mapped_column(String(2000))

    requester_id: Mapped[str] = mapped_column(String(64), index=True)
    # The workspace the request was made in: only it may act on the link.
    team_id: Mapped[str | None] = mapped_column(String(32))
    enterprise_id: Mapped[str | None] = mapped_column(String(32))
    # The modal it was submitted from: one view, one request, however often Slack sends it.
    view_id: Mapped[str | None] = mapped_column(String(64))
    origin_channel_id: Mapped[str | None] = mapped_column(String(32))
    channel_id: Mapped[str | None] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32))

    status: Mapped[str] = mapped_column(String(32), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reject_reason: Mapped[str | None] = mapped_column(Text)
    cancelled_by: Mapped[str | None] = mapped_column(String(64))

    # The current checkout link (a renewal replaces them); every one the link has had,
    # the current one included, is a row of link_intents.
    intent_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    checkout_url: Mapped[str | None] = mapped_column(String(2000))
    checkout_reference: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    gateway_message: Mapped[str | None] = mapped_column(Text)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    paid_method: Mapped[str | None] = mapped_column(String(64))
    bank_message: Mapped[str | None] = mapped_column(Text)
    reconcile_after: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # Made on the sandbox gateway: labelled a test wherever it is shown, whatever the
    # settings say later.
    sandbox: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The workspace's XPay store it is made with (bot.links.workspace_settings); None: the
    # environment's XPay settings.
    store_id: Mapped[int | None] = mapped_column(Integer)
    # The approval policy's rule, decided when the request was made (bot/links/policy.py):
    # approvals it needs (0: the policy approved it, 1, or 2) and the threshold that decided.
    approvals_needed: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    policy_threshold: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    history: Mapped[list[History]] = relationship(
        back_populates="link", order_by="History.id", lazy="select"
    )

    __table_args__ = (
        Index("ix_links_requester_created", "requester_id", "created_at"),
        Index("ix_links_team_view", "team_id", "view_id", unique=True),
        # The duplicate guard looks for the same sum (bot/links/store.py: similar).
        Index("ix_links_amount", "amount", "currency"),
        # Finding links (bot/links/finding.py): pages and counts per status, month totals.
        Index(
            "ix_links_scope_requester", "team_id", "enterprise_id", "requester_id", "status", "id"
        ),
        Index("ix_links_scope_status", "team_id", "enterprise_id", "status", "id"),
        Index("ix_links_scope_requester_id", "team_id", "enterprise_id", "requester_id", "id"),
        Index("ix_links_scope_id", "team_id", "enterprise_id", "id"),
        Index("ix_links_scope_created", "team_id", "enterprise_id", "created_at"),
        # App Home's "Expiring soon" (LinkStore.expiring_for): a range of expiry per status.
        Index(
            "ix_links_scope_requester_expiry",
            "team_id",
            "enterprise_id",
            "requester_id",
            "status",
            "expires_at",
        ),
    )

    @property
    def status_label(self) -> str:
        """The status as people see it."""
        return LABELS[Status(self.status)]

    @property
    def workspace(self) -> Workspace:
        """The workspace the link was requested in (team None: not recorded)."""
        return Workspace(self.team_id, self.enterprise_id)

    def owned_by(self, workspace: Workspace) -> bool:
        """True when ``workspace`` is the one this link was requested in (a link whose
        workspace is not recorded yet is nobody's)."""
        return self.team_id is not None and (self.team_id, self.enterprise_id) == (
            workspace.team_id,
            workspace.enterprise_id,
        )

    # The one mapping between a link and the checkout request it was made from.

    @classmethod
    def from_request(cls, request: CheckoutRequest, **columns: Any) -> Link:
        """A new link for ``request``; ``columns`` sets the rest (requester, status …)."""
        return cls(
            reference=request.order_reference,
            amount=request.amount,
            currency=request.currency,
            customer_name=request.customer.name,
            customer_email=request.customer.email,
            customer_phone=request.customer.phone,
            shipping=request.shipping.model_dump(),
            payment_methods=list(request.payment_methods),
            success_url=request.success_url,
            failure_url=request.failure_url,
            **columns,
        )

    def to_request(self) -> CheckoutRequest:
        """The checkout request this link was made from (what XPay is asked to create)."""
        return CheckoutRequest.model_validate(
            {
                "amount": self.amount,
                "currency": self.currency,
                "customer": {
                    "name": self.customer_name,
                    "email": self.customer_email,
                    "phone": self.customer_phone,
                },
                "shipping": self.shipping or {},
                "order_reference": self.reference,
                "success_url": self.success_url,
                "failure_url": self.failure_url,
                "payment_methods": tuple(self.payment_methods or ()),
            }
        )


def of_workspace(workspace: Workspace) -> ColumnElement[bool]:
    """The condition "the link is ``workspace``'s" (:meth:`Link.owned_by`, in SQL)."""
    enterprise = workspace.enterprise_id
    return and_(
        Link.team_id == workspace.team_id,
        Link.enterprise_id.is_(None) if enterprise is None else Link.enterprise_id == enterprise,
    )


class History(Base):
    """One row per status change: append-only."""

    __tablename__ = "link_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("links.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    link: Mapped[Link] = relationship(back_populates="history")


class LinkApproval(Base):
    """An approval of a request that needs two approvers: one row per approver, so the same
    person approving twice is one approval (unique), and the second row decides."""

    __tablename__ = "link_approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("links.id"), index=True)
    approver_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("link_id", "approver_id", name="uq_link_approvals"),)


class LinkIntent(Base):
    """One XPay payment intent (checkout link) of a link: the first, and one per renewal,
    each with an order reference of its own (``REF``, ``REF-2``, ``REF-3`` …). A renewal
    inserts its row before calling XPay (``intent_id`` None until XPay answers), which
    reserves the reference."""

    __tablename__ = "link_intents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("links.id"), index=True)
    intent_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    checkout_url: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a payment on this intent was recorded: a second intent of a Paid link being paid
    # is a double payment, flagged once.
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookEvent(Base):
    """Every verified webhook, keyed so that a duplicate delivery has no second effect."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    intent_id: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    """Work queued in the same transaction as the change that caused it (a Slack message,
    a gateway call, a payment or a click for the worker), done at least once."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # None only for the job of no link: the daily digest.
    link_id: Mapped[int | None] = mapped_column(ForeignKey("links.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # a JobKind
    # Unique per effect (e.g. "thread:42:paid") so the same reply is never queued twice.
    dedupe_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_jobs_pending", "done_at", "next_attempt_at"),
        # Only jobs not done, so the runner's claim stays an index lookup however many done
        # jobs pile up (and whatever the planner's statistics say).
        Index(
            "ix_jobs_due",
            "next_attempt_at",
            sqlite_where=text("done_at IS NULL"),
            postgresql_where=text("done_at IS NULL"),
        ),
    )


class Digest(Base):
    """A digest taken: the daily one once per day (its ``key`` is the day, unique, so
    replicas take one between them), or one asked for with ``paylink digest``. In
    multi-workspace mode each workspace has its own (``team_id``, ``enterprise_id``), keyed
    ``<team>:<day>``; in single-workspace mode they are None, the digest the deployment's."""

    __tablename__ = "digests"
    __table_args__ = (Index("ix_digests_team_covered", "team_id", "covered_until"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "2026-12-02" (the day, in PAYLINK_TIMEZONE) for the daily digest; "now:<time>" otherwise;
    # a workspace's: "T0123:2026-12-02", "now:T0123:<time>".
    key: Mapped[str] = mapped_column(String(64), unique=True)
    team_id: Mapped[str | None] = mapped_column(String(32))
    enterprise_id: Mapped[str | None] = mapped_column(String(32))
    # The moment its figures were read: the next digest's "paid since" starts here.
    covered_until: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # Where it was posted; None when there was nothing to report (no message).
    channel_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
