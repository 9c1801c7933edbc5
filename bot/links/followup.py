"""Where the work a decision or a request leaves behind runs: here and now (:class:`Inline`)
or as jobs for a worker process (:class:`Queued`, carried out there by :class:`QueuedWork`).

The work is the same either way: create an approved link at XPay, apply a verified payment
webhook, decide a button click. The runtime picks one follow-up for a process's role.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.orm import Session

from bot.db import utcnow
from bot.links.intake import JobIntake
from bot.links.kinds import Click, JobKind
from bot.links.outcomes import GONE, WebhookResult
from bot.links.payments import event_key
from bot.links.runner import BatchHandler, Handler
from bot.links.store import LEASE
from bot.links.tables import Job, Link
from bot.links.workspaces import Workspace
from bot.xpay.webhooks import PaymentEvent

if TYPE_CHECKING:
    from bot.links.service import LinkService

log = logging.getLogger(__name__)

# tell(workspace, channel, user, text): an ephemeral note to the person who clicked, in
# their workspace.
Tell = Callable[[Workspace, str | None, str, str], None]


@dataclass(frozen=True)
class Clicked:
    """A button click on a link's card, from the workspace ``origin``; ``context`` is kept
    for whoever tells the clicker a refusal later (the channel)."""

    action: Click
    link_id: int
    user_id: str
    origin: Workspace
    context: dict[str, object] = field(default_factory=dict)


class FollowUp(Protocol):
    """Where the service's follow-up work runs."""

    def creation_lease(self) -> datetime | None:
        """The lease a decision takes on the creation it starts (None: whoever runs the
        creation takes it then)."""

    def creation_decided(self, service: LinkService, session: Session, link: Link) -> None:
        """``link`` moved to Creating link in ``session``'s transaction, not committed yet."""

    def creation_committed(self, service: LinkService, link_id: int) -> None:
        """That move is committed."""

    def payment(self, service: LinkService, event: PaymentEvent) -> WebhookResult:
        """A verified payment webhook arrived."""

    def click(self, service: LinkService, click: Clicked) -> str | None:
        """A button was clicked; returns the refusal to show the clicker now, if any."""


class Inline:
    """Follow-up work in this process: a link's creation in ``executor`` (so the caller, an
    ack or a job, does not wait for XPay; without one, right away), webhooks and clicks
    applied and decided before their answer."""

    def __init__(self, executor: Executor | None = None):
        self.executor = executor

    def creation_lease(self) -> datetime | None:
        return utcnow() + LEASE

    def creation_decided(self, service: LinkService, session: Session, link: Link) -> None:
        return None  # started once committed

    def creation_committed(self, service: LinkService, link_id: int) -> None:
        self.start_creation(service, link_id)

    def start_creation(self, service: LinkService, link_id: int) -> None:
        """Call XPay for a link in Creating link whose lease this process holds."""
        if self.executor is None:
            service.create_at_gateway(link_id)
        else:
            self.executor.submit(_create_logged, service, link_id)

    def payment(self, service: LinkService, event: PaymentEvent) -> WebhookResult:
        return service.apply_payment(event)

    def click(self, service: LinkService, click: Clicked) -> str | None:
        return service.decide_click(click.action, click.link_id, click.user_id, click.origin)


def _create_logged(service: LinkService, link_id: int) -> None:
    try:
        service.create_at_gateway(link_id)
    except Exception:
        log.exception("link creation crashed", extra={"link_id": link_id})


class Queued:
    """Follow-up work as jobs for a worker process: a link's creation queued with the
    decision, webhooks and clicks stored (many to a commit) before they are answered."""

    def __init__(self, intake: JobIntake):
        self.intake = intake

    def creation_lease(self) -> datetime | None:
        return None  # the worker takes it when it picks the job up (claim_creation)

    def creation_decided(self, service: LinkService, session: Session, link: Link) -> None:
        service.queue.enqueue(session, link, JobKind.CREATE)

    def creation_committed(self, service: LinkService, link_id: int) -> None:
        return None  # the job is the worker's now

    def payment(self, service: LinkService, event: PaymentEvent) -> WebhookResult:
        key = event_key(event)
        outcome = self.intake.payment(
            event.payment_intent_id,
            event.model_dump(mode="json"),
            dedupe_key=f"{JobKind.PAYMENT}:{key}",
        )
        return WebhookResult(outcome)

    def click(self, service: LinkService, click: Clicked) -> str | None:
        payload = {
            "action": click.action.value,
            "user": click.user_id,
            "team": click.origin.team_id,
            "enterprise": click.origin.enterprise_id,
            **click.context,
        }
        return None if self.intake.for_link(click.link_id, JobKind.DECISION, payload) else GONE


class QueuedWork:
    """Carries out the jobs :class:`Queued` writes, in the worker: the creation in
    ``inline``'s executor (the runner does not wait for XPay), payments applied a batch at a
    time, clicks decided and a refusal told to the clicker; and what the service queues
    itself: the confirmation with XPay of a payment reported without its amount, and each
    checkout link's expiry timer."""

    def __init__(self, service: LinkService, inline: Inline, tell: Tell):
        self.service = service
        self.inline = inline
        self.tell = tell

    def handlers(self) -> dict[JobKind, Handler]:
        """Each kind's handler, for the job runner."""
        return {
            JobKind.CREATE: self.create,
            JobKind.PAYMENT: self.payment,
            JobKind.DECISION: self.decision,
            JobKind.CONFIRM: self.confirm,
            JobKind.EXPIRE: self.expire,
        }

    def together(self) -> dict[JobKind, BatchHandler]:
        """The kinds the runner hands over a batch at a time."""
        return {JobKind.PAYMENT: self.payments}

    def create(self, job: Job, link: Link) -> None:
        """Create the link at XPay, unless the job was run already (the lease is taken)."""
        if self.service.claim_creation(link.id):
            self.inline.start_creation(self.service, link.id)

    def payment(self, job: Job, link: Link) -> None:
        """Apply one queued payment event."""
        self.payments([job])

    def payments(self, jobs: list[Job]) -> list[WebhookResult]:
        """Apply queued payment events in one transaction."""
        return self.service.apply_payments([PaymentEvent.model_validate(j.payload) for j in jobs])

    def confirm(self, job: Job, link: Link) -> None:
        """Settle a payment a webhook reported without its amount by XPay's record (done
        even when XPay cannot be asked: reconciliation asks again)."""
        self.service.confirm_payment(link, job.payload.get("intent"))

    def expire(self, job: Job, link: Link) -> None:
        """A checkout link's expiry is due: the link expires unless renewed or paid since."""
        self.service.expire(link.id, job.payload["intent"])

    def decision(self, job: Job, link: Link) -> None:
        """Decide a stored click; tell the clicker a refusal."""
        click = job.payload
        origin = Workspace(click.get("team"), click.get("enterprise"))
        refusal = self.service.decide_click(Click(click["action"]), link.id, click["user"], origin)
        if refusal:
            self.tell(origin, click.get("channel"), click["user"], refusal)
