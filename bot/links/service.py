"""The link service: every decision about a link, shared by Slack, the CLI and the webhook.

It decides and records; where the work a decision leaves runs (here, or in a worker) is its
:class:`~bot.links.followup.FollowUp`'s business.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Protocol

from sqlalchemy.orm import Session

from bot.checkout import CheckoutRequest
from bot.db import utcnow
from bot.links.finding import may_see_contact
from bot.links.followup import Clicked, FollowUp, Inline
from bot.links.kinds import Click, JobKind, ThreadKind, WebhookOutcome
from bot.links.outcomes import (
    AlreadyDecided,
    Incomplete,
    LinkGone,
    NotAllowed,
    OtherWorkspace,
    Refused,
    WebhookResult,
)
from bot.links.payments import RECONCILE, WEBHOOK, event_key, same_money
from bot.links.queue import JobQueue
from bot.links.states import CANCELLABLE, Status
from bot.links.store import LEASE, LinkStore, RepeatedView
from bot.links.tables import History, Link
from bot.links.workspaces import Workspace
from bot.metrics import Metrics
from bot.xpay.client import (
    CheckoutCreated,
    IntentDetails,
    XPayError,
    XPayOutcomeUnknown,
)
from bot.xpay.webhooks import PaymentEvent

log = logging.getLogger(__name__)

CONTACT_REFUSED = (
    "Only the rep who asked for this link or an approver can see the customer's contact details."
)


class Gateway(Protocol):
    """What the service needs from XPay (the real client or a stand-in)."""

    def create_checkout(self, payload: dict) -> CheckoutCreated: ...

    def get_intent(self, intent_id: str) -> IntentDetails: ...


class LinkService:
    """Creates, approves, rejects, cancels links and applies payment results.

    ``sandbox``: the gateway is the sandbox, so the links made here are tests and say so.
    """

    def __init__(
        self,
        store: LinkStore,
        gateway: Gateway,
        *,
        is_approver: Callable[[str], bool],
        allow_self_approval: bool = False,
        follow_up: FollowUp | None = None,
        reconcile_after: timedelta = timedelta(minutes=15),
        metrics: Metrics | None = None,
        sandbox: bool = False,
    ):
        self.store = store
        self.sandbox = sandbox
        self.queue = JobQueue(store)
        self.gateway = gateway
        self.is_approver = is_approver
        self.allow_self_approval = allow_self_approval
        # Where creations, webhooks and clicks are carried out: by default right here.
        self.follow_up = follow_up or Inline()
        self._clicks: dict[Click, Callable[..., Link]] = {
            Click.APPROVE: self.approve,
            Click.RETRY: self.retry,
            Click.CANCEL: self.cancel,
        }
        self.reconcile_after = reconcile_after
        self.metrics = metrics

    # Requests -----------------------------------------------------------------------

    def request_link(
        self,
        request: CheckoutRequest,
        *,
        requester_id: str,
        channel_id: str | None,
        origin_channel_id: str | None = None,
        workspace: Workspace | None = None,
        view_id: str | None = None,
    ) -> Link:
        """Record a new request of ``workspace`` awaiting approval and queue its card for
        the channel. A modal ``view_id`` makes one request: submitted again (Slack may send
        it more than once), it returns the link it made, and nothing else happens."""
        try:
            with self.store.transaction() as s:
                link = self.store.insert_link(
                    s,
                    request,
                    requester_id=requester_id,
                    actor=requester_id,
                    channel_id=channel_id,
                    origin_channel_id=origin_channel_id,
                    workspace=workspace,
                    view_id=view_id,
                    sandbox=self.sandbox,
                )
                self.queue.enqueue(s, link, JobKind.CARD, payload={"notify_requester": True})
        except RepeatedView as repeat:
            log.info(
                "submission repeated: no new request",
                extra={"ref": repeat.link.reference, "user": requester_id},
            )
            return repeat.link
        log.info("link requested", extra={"ref": link.reference, "user": requester_id})
        return link

    def create_direct(
        self, request: CheckoutRequest, *, actor: str, workspace: Workspace | None = None
    ) -> Link:
        """Create a link of ``workspace`` with no approval step (the CLI, for operators);
        calls XPay now."""
        with self.store.transaction() as s:
            link = self.store.insert_link(
                s,
                request,
                requester_id=actor,
                actor=actor,
                status=Status.AWAITING_APPROVAL,
                workspace=workspace,
                sandbox=self.sandbox,
            )
            self.store.move(
                s,
                link.id,
                Status.AWAITING_APPROVAL,
                Status.CREATING_LINK,
                actor=actor,
                reason="created from the command line",
                decided_by=actor,
                decided_at=utcnow(),
                lease_until=utcnow() + LEASE,
                attempts=1,
            )
        return self.create_at_gateway(link.id)

    # Decisions ----------------------------------------------------------------------
    #
    # ``origin`` is the workspace a click or submission came from: only the link's own may
    # decide it. None stands for a caller inside the bot (the CLI, tests), not Slack.

    def _check_origin(self, link: Link, user_id: str, origin: Workspace | None) -> None:
        if origin is not None and not link.owned_by(origin):
            log.info(
                "decision from another workspace refused",
                extra={"ref": link.reference, "user": user_id, "team": origin.team_id},
            )
            raise OtherWorkspace()

    def _check_approver(self, link: Link, user_id: str) -> None:
        if not self.is_approver(user_id):
            raise NotAllowed("Only the approvers set in PAYLINK_APPROVERS can approve or reject.")
        if link.requester_id == user_id and not self.allow_self_approval:
            raise NotAllowed("You asked for this link, so another approver has to decide on it.")

    def _load(self, link_id: int) -> Link:
        with self.store.reading() as s:
            link = self.store.get(s, link_id)
        if link is None:
            raise LinkGone()
        return link

    def _already(self, link: Link) -> AlreadyDecided:
        return AlreadyDecided(
            f"Nothing changed: this request is already {link.status_label.lower()}."
        )

    def check_decision(self, link_id: int, user_id: str, origin: Workspace) -> Link:
        """The link, if ``user_id`` of ``origin`` may approve or reject it now; Refused
        otherwise."""
        link = self._load(link_id)
        self._check_origin(link, user_id, origin)
        self._check_approver(link, user_id)
        if link.status != Status.AWAITING_APPROVAL.value:
            raise self._already(link)
        return link

    def _decide(
        self,
        link_id: int,
        sources: Status | tuple[Status, ...],
        target: Status,
        *,
        actor: str,
        admit: Callable[[Link], dict[str, object] | None],
        origin: Workspace | None,
        reason: str | None = None,
        thread: ThreadKind | None = None,
        **changes: object,
    ) -> Link:
        """A person's decision: the link must be ``origin``'s, ``admit`` checks the rest
        (raising Refused) and may add changes, then one compare-and-set, with the card
        update (and a thread reply) queued with it; AlreadyDecided naming the current
        status when someone else was first. The link is read once, in the transaction that
        moves it (a click is an ack's critical path). A move to Creating link hands the
        creation to the follow-up.
        """
        creating = target == Status.CREATING_LINK
        with self.store.transaction() as s:
            link = self.store.get(s, link_id)
            if link is None:
                raise LinkGone()
            self._check_origin(link, actor, origin)
            changes.update(admit(link) or {})
            moved = self.store.move(
                s, link_id, sources, target, actor=actor, reason=reason, **changes
            )
            if moved is not None:
                if creating:
                    self.follow_up.creation_decided(self, s, moved)
                self._announce(s, moved, thread)
        if moved is None:
            raise self._already(self._load(link_id))
        log.info("link %s", target.value, extra={"ref": moved.reference, "user": actor})
        if creating:
            self.follow_up.creation_committed(self, moved.id)
        return moved

    def _announce(
        self, s: Session, link: Link, thread: ThreadKind | None = None, key: str = ""
    ) -> None:
        """Queue, with the change just made, the card update and a thread reply of kind
        ``thread`` (at most once per link, kind and ``key``)."""
        self.queue.enqueue(s, link, JobKind.CARD)
        if thread:
            self.queue.enqueue(
                s,
                link,
                JobKind.THREAD,
                payload={"kind": thread.value},
                dedupe_key=f"thread:{link.id}:{thread.value}{key}",
            )

    def approve(self, link_id: int, user_id: str, *, origin: Workspace | None = None) -> Link:
        """Approve a request and start creating its link; one effect however many clicks."""

        def admit(link: Link) -> dict[str, object]:
            self._check_approver(link, user_id)
            return {"attempts": link.attempts + 1}

        return self._decide(
            link_id,
            Status.AWAITING_APPROVAL,
            Status.CREATING_LINK,
            actor=user_id,
            admit=admit,
            origin=origin,
            decided_by=user_id,
            decided_at=utcnow(),
            lease_until=self.follow_up.creation_lease(),
        )

    def retry(self, link_id: int, user_id: str, *, origin: Workspace | None = None) -> Link:
        """Try the gateway again after a failed or unconfirmed creation (approvers only)."""

        def admit(link: Link) -> dict[str, object]:
            if not self.is_approver(user_id):
                raise NotAllowed("Only approvers can retry creating the link.")
            return {"attempts": link.attempts + 1}

        return self._decide(
            link_id,
            (Status.LINK_FAILED, Status.LINK_UNKNOWN),
            Status.CREATING_LINK,
            actor=user_id,
            admit=admit,
            origin=origin,
            reason="retry",
            lease_until=self.follow_up.creation_lease(),
            gateway_message=None,
        )

    def reject(
        self, link_id: int, user_id: str, reason: str, *, origin: Workspace | None = None
    ) -> Link:
        """Reject a request with a reason."""
        reason = " ".join(reason.split())[:500]

        def admit(link: Link) -> None:
            self._check_approver(link, user_id)
            if not reason:
                raise Incomplete("Give a reason so the rep knows what to change.")

        return self._decide(
            link_id,
            Status.AWAITING_APPROVAL,
            Status.REJECTED,
            actor=user_id,
            admit=admit,
            origin=origin,
            reason=reason,
            thread=ThreadKind.REJECTED,
            decided_by=user_id,
            decided_at=utcnow(),
            reject_reason=reason,
        )

    def cancel(self, link_id: int, user_id: str, *, origin: Workspace | None = None) -> Link:
        """Cancel a link that is not paid yet: the requester or an approver may."""

        def admit(link: Link) -> None:
            if user_id != link.requester_id and not self.is_approver(user_id):
                raise NotAllowed(
                    "Only the rep who asked for this link or an approver can cancel it."
                )

        return self._decide(
            link_id,
            tuple(CANCELLABLE),
            Status.CANCELLED,
            actor=user_id,
            admit=admit,
            origin=origin,
            thread=ThreadKind.CANCELLED,
            cancelled_by=user_id,
        )

    def show_contact(self, link_id: int, user_id: str, *, origin: Workspace | None = None) -> Link:
        """The link, whose full contact details ``user_id`` of ``origin`` is about to be
        shown: recorded first in its history ("contact shown to <@U…>", the status
        unchanged), so every sight of them is on file. NotAllowed, with nothing recorded,
        for anyone but the requester and approvers."""
        with self.store.transaction() as s:
            link = self.store.get(s, link_id)
            if link is None:
                raise LinkGone()
            self._check_origin(link, user_id, origin)
            # The requester is not asked about: their reveal never depends on approver groups.
            approver = link.requester_id != user_id and self.is_approver(user_id)
            if not may_see_contact(link, user_id, is_approver=approver):
                raise NotAllowed(CONTACT_REFUSED)
            s.add(
                History(
                    link_id=link.id,
                    from_status=link.status,
                    to_status=link.status,
                    actor=user_id,
                    reason=f"contact shown to <@{user_id}>",
                    at=utcnow(),
                )
            )
        # Who and which link only: the details themselves are never logged.
        log.info("contact shown", extra={"ref": link.reference, "user": user_id})
        return link

    def receive_click(
        self, action: str, link_id: int, user_id: str, origin: Workspace, **context: object
    ) -> str | None:
        """A click's entry point (``action`` is a :class:`Click`, ``origin`` the workspace
        it came from), carried out by the follow-up (``context`` is kept for whoever tells
        the clicker a refusal). Returns the refusal to show now, if any; ValueError for an
        action that is not a click."""
        click = Clicked(Click(action), link_id, user_id, origin, context)
        return self.follow_up.click(self, click)

    def decide_click(
        self, action: Click, link_id: int, user_id: str, origin: Workspace
    ) -> str | None:
        """Carry out a click from ``origin``; the refusal to show the person who clicked,
        if any (another workspace, someone else was first, not an approver …)."""
        try:
            self._clicks[action](link_id, user_id, origin=origin)
        except Refused as exc:
            return exc.message
        return None

    # The gateway --------------------------------------------------------------------

    def claim_creation(self, link_id: int) -> bool:
        """Take the lease on a link whose creation was queued; False when it is taken (the
        job was run twice) or the link moved on. An expired lease is resumed by the periodic
        timers, as after a crash."""
        with self.store.transaction() as s:
            return self.store.take_lease(s, link_id, utcnow() + LEASE)

    def create_at_gateway(self, link_id: int) -> Link:
        """Call XPay for a link in ``Creating link`` and record what happened, truthfully."""
        link = self._load(link_id)
        if link.status != Status.CREATING_LINK.value:
            return link
        started = time.perf_counter()
        try:
            created = self.gateway.create_checkout(link.to_request().to_xpay_payload())
        except XPayOutcomeUnknown as exc:
            self._observe(started, "unknown")
            return self._gateway_failed(link, Status.LINK_UNKNOWN, exc.message)
        except XPayError as exc:
            self._observe(started, "failed")
            return self._gateway_failed(link, Status.LINK_FAILED, exc.message)
        self._observe(started, "created")
        with self.store.transaction() as s:
            moved = self.store.move(
                s,
                link.id,
                Status.CREATING_LINK,
                Status.AWAITING_PAYMENT,
                actor="xpay",
                intent_id=created.intent_id,
                checkout_url=created.checkout_url,
                sandbox=self.sandbox,  # the gateway that made it, if another took the request
                lease_until=None,
                reconcile_after=utcnow() + self.reconcile_after,
            )
            if moved is not None:
                self._announce(s, moved, ThreadKind.LINK_READY, f":{created.intent_id}")
        if moved is None:
            log.warning("link moved during gateway call", extra={"ref": link.reference})
            return self._load(link.id)
        log.info("link created", extra={"ref": link.reference})
        return moved

    def _observe(self, started: float, result: str) -> None:
        if self.metrics is not None:
            self.metrics.gateway_seconds.labels("create", result).observe(
                time.perf_counter() - started
            )

    def _gateway_failed(self, link: Link, status: Status, message: str) -> Link:
        with self.store.transaction() as s:
            moved = self.store.move(
                s,
                link.id,
                Status.CREATING_LINK,
                status,
                actor="xpay",
                reason=message,
                gateway_message=message,
                lease_until=None,
            )
            if moved is not None:
                # A reply in the thread notifies the approver; a card edit alone does not.
                self._announce(s, moved, ThreadKind.LINK_FAILED, f":{moved.attempts}")
        log.warning("link creation %s", status.value, extra={"ref": link.reference})
        return moved or self._load(link.id)

    # Payments -----------------------------------------------------------------------

    def ask_xpay(self, link_id: int, intent_id: str) -> WebhookResult | None:
        """Apply what XPay's record of a link's intent says (reconciliation's read, which
        may leave the amount out); None, with a warning, when XPay could not be asked."""
        try:
            details = self.gateway.get_intent(intent_id)
        except XPayError as exc:
            log.warning(
                "asking XPay about a payment failed: %s", exc.message, extra={"link_id": link_id}
            )
            return None
        event = PaymentEvent(
            payment_intent_id=intent_id,
            status=details.status,
            amount=details.amount,
            currency=details.currency,
        )
        return self.apply_payment(event, source=RECONCILE)

    def confirm_payment(self, link: Link) -> WebhookResult | None:
        """A webhook said ``link`` was paid without saying how much: XPay's record decides.
        When XPay cannot be asked, reconciliation asks again later; nothing says Paid."""
        if not link.intent_id:
            return None
        result = self.ask_xpay(link.id, link.intent_id)
        if result is not None and result.outcome == WebhookOutcome.IGNORED:
            log.warning(
                "XPay does not confirm the payment a webhook reported",
                extra={"ref": link.reference},
            )
        return result

    def receive_payment(self, event: PaymentEvent) -> WebhookResult:
        """A verified webhook's entry point, carried out by the follow-up: applied here, or
        queued for a worker (``queued``; ``duplicate`` when queued already)."""
        return self.follow_up.payment(self, event)

    def apply_payment(self, event: PaymentEvent, *, source: str = WEBHOOK) -> WebhookResult:
        """Apply a verified payment event once; duplicates and stale events change nothing."""
        return self.apply_payments([event], source=source)[0]

    def apply_payments(
        self, events: Sequence[PaymentEvent], *, source: str = WEBHOOK
    ) -> list[WebhookResult]:
        """Apply events in order, each as :meth:`apply_payment` would, in one transaction
        (a worker applies what `serve` queued a batch at a time: one commit, one read)."""
        applied: list[tuple[str, str]] = []
        with self.store.transaction() as s:
            links = self.store.by_intents(s, {event.payment_intent_id for event in events})
            results = [
                self._apply(s, event, links.get(event.payment_intent_id), source, applied)
                for event in events
            ]
        for outcome, reference in applied:
            log.info("payment %s", outcome, extra={"ref": reference})
        return results

    def _apply(
        self,
        s: Session,
        event: PaymentEvent,
        link: Link | None,
        source: str,
        applied: list[tuple[str, str]],
    ) -> WebhookResult:
        """One event, in the caller's transaction; (outcome, reference) of a status change
        is added to ``applied``, to be logged once committed."""
        if link is None:
            return WebhookResult(WebhookOutcome.UNKNOWN_INTENT)
        key = event_key(event, source)
        if not self.store.record_webhook(
            s, dedupe_key=key, intent_id=event.payment_intent_id, status=event.status
        ):
            return WebhookResult(WebhookOutcome.DUPLICATE, link.id)
        outcome = event.outcome
        money = same_money(event, link)
        paid = link.status == Status.PAID.value
        if outcome == "paid" and money is None and source == WEBHOOK and not paid:
            # A webhook that leaves the sum out does not settle it: XPay's record does.
            self.queue.enqueue(s, link, JobKind.CONFIRM)
            log.warning("paid webhook without amount or currency", extra={"ref": link.reference})
            return WebhookResult(WebhookOutcome.CONFIRMING, link.id)
        if outcome == "paid" and money is False:
            # Never claim Paid for a sum other than the one asked: say so in the thread.
            self.queue.enqueue(
                s,
                link,
                JobKind.THREAD,
                payload={
                    "kind": ThreadKind.AMOUNT_MISMATCH.value,
                    "amount": str(event.amount),
                    "currency": event.currency,
                },
                dedupe_key=f"thread:{link.id}:amount_mismatch:{key[:16]}",
            )
            log.error("payment amount differs from the link", extra={"ref": link.reference})
            return WebhookResult(WebhookOutcome.AMOUNT_MISMATCH, link.id)
        if outcome == "paid":
            was_cancelled = link.status == Status.CANCELLED.value
            moved = (
                self.store.move(
                    s,
                    link.id,
                    (Status.AWAITING_PAYMENT, Status.PAYMENT_FAILED, Status.CANCELLED),
                    Status.PAID,
                    actor=source,
                    reason=event.bank_message,
                    paid_method=event.method,
                    bank_message=event.bank_message,
                    reconcile_after=None,
                )
                if not paid
                else None
            )
            kind = ThreadKind.PAID_AFTER_CANCEL if was_cancelled else ThreadKind.PAID
        elif outcome == "failed":
            moved = (
                self.store.move(
                    s,
                    link.id,
                    Status.AWAITING_PAYMENT,
                    Status.PAYMENT_FAILED,
                    actor=source,
                    reason=event.bank_message,
                    bank_message=event.bank_message,
                )
                if link.status == Status.AWAITING_PAYMENT.value
                else None
            )
            kind = ThreadKind.PAYMENT_FAILED
        else:
            return WebhookResult(WebhookOutcome.IGNORED, link.id)
        if moved is None:
            return WebhookResult(WebhookOutcome.STALE, link.id)
        self._announce(s, moved, kind)
        applied.append((outcome, moved.reference))
        return WebhookResult(WebhookOutcome.APPLIED, moved.id)
