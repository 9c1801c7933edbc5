"""The link service: every decision about a link, shared by Slack, the CLI and the webhook.

It decides and records; where the work a decision leaves runs (here, or in a worker) is its
:class:`~bot.links.followup.FollowUp`'s business.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.orm import Session

from bot.checkout import CheckoutRequest
from bot.db import utcnow
from bot.links.finding import may_see_contact
from bot.links.followup import Clicked, FollowUp, Inline
from bot.links.kinds import Click, JobKind, ThreadKind, WebhookOutcome
from bot.links.outcomes import (
    AlreadyApproved,
    AlreadyDecided,
    Incomplete,
    LinkGone,
    NotAllowed,
    OtherWorkspace,
    Refused,
    WebhookResult,
)
from bot.links.payments import RECONCILE, WEBHOOK, event_key, same_money
from bot.links.policy import AUTO, POLICY_ACTOR, TWO, ApprovalPolicy, Rule, threshold_note
from bot.links.queue import JobQueue
from bot.links.reminders import start_timer
from bot.links.states import CANCELLABLE, EXPIRING, LIVE, PAYABLE, Status
from bot.links.store import LEASE, LinkStore, RepeatedView
from bot.links.stores import StoreGateways
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
    ``stores``: the workspaces' own XPay stores; a link is made with its channel's store, and
    created and reconciled with it (``gateway`` is then the environment's, for the others).
    ``approvers_in(user, team_id)``: whether ``user`` approves in that workspace (its own
    approvers, from its settings); without it ``is_approver`` decides for every workspace.
    ``qr_codes``: each new link's reply in the thread is followed by a QR code of it.
    ``policy_for(team_id)``: that workspace's approval policy by amount (default: none);
    ``duplicate_window_for(team_id)``: how far back that workspace's duplicate guard looks
    (None or zero: it does not).
    """

    def __init__(
        self,
        store: LinkStore,
        gateway: Gateway,
        *,
        is_approver: Callable[[str], bool] | None = None,
        allow_self_approval: bool = False,
        follow_up: FollowUp | None = None,
        reconcile_after: timedelta = timedelta(minutes=15),
        remind_after_for: Callable[[str | None], Mapping[Status, timedelta]] = lambda _t: {},
        metrics: Metrics | None = None,
        sandbox: bool = False,
        stores: StoreGateways | None = None,
        approvers_in: Callable[[str, str | None], bool] | None = None,
        qr_codes: bool = False,
        policy_for: Callable[[str | None], ApprovalPolicy] = lambda _team: ApprovalPolicy(),
        duplicate_window_for: Callable[[str | None], timedelta | None] = lambda _team: None,
        link_ttl_for: Callable[[str | None], timedelta] = lambda _team: timedelta(days=7),
    ):
        self.store = store
        self.stores = stores
        self.approvers_in = approvers_in
        self.qr_codes = qr_codes  # a QR code image of each new link follows its reply
        self.policy_for = policy_for
        self.duplicate_window_for = duplicate_window_for
        self.sandbox = sandbox
        self.queue = JobQueue(store)
        self.gateway = gateway
        self.is_approver = is_approver or (lambda _user: False)
        self.allow_self_approval = allow_self_approval
        # Where creations, webhooks and clicks are carried out: by default right here.
        self.follow_up = follow_up or Inline()
        self._clicks: dict[Click, Callable[..., Link]] = {
            Click.APPROVE: self.approve,
            Click.RETRY: self.retry,
            Click.CANCEL: self.cancel,
            Click.RENEW: self.renew,
        }
        self.reconcile_after = reconcile_after
        # How long a link waits in a status before its reminder (bot.links.reminders).
        self.remind_after_for = remind_after_for
        # How long a checkout link awaits payment before the link is Expired.
        self.link_ttl_for = link_ttl_for
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
        the channel; one the policy approves (under its currency's auto-approval threshold)
        starts creating its link at once. A modal ``view_id`` makes one request: submitted
        again (Slack may send it more than once), it returns the link it made, and nothing
        else happens."""
        store_id, sandbox = self._store_for(workspace, origin_channel_id)
        rule = self._policy(workspace).rule(request.amount, request.currency)
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
                    sandbox=sandbox,
                    store_id=store_id,
                    approvals_needed=rule.approvals,
                    policy_threshold=rule.threshold,
                )
                if rule.approvals == AUTO:
                    link = self._approve_by_policy(s, link, rule)
                self.queue.enqueue(s, link, JobKind.CARD, payload={"notify_requester": True})
                start_timer(self.queue, s, link, self.remind_after_for(link.team_id))
        except RepeatedView as repeat:
            log.info(
                "submission repeated: no new request",
                extra={"ref": repeat.link.reference, "user": requester_id},
            )
            return repeat.link
        log.info("link requested", extra={"ref": link.reference, "user": requester_id})
        if rule.approvals == AUTO:
            log.info("link approved by the policy", extra={"ref": link.reference})
            self.follow_up.creation_committed(self, link.id)
        return link

    def _approve_by_policy(self, s: Session, link: Link, rule: Rule) -> Link:
        """Move a request just inserted in ``s`` to Creating link, decided by the policy."""
        moved = self.store.move(
            s,
            link.id,
            Status.AWAITING_APPROVAL,
            Status.CREATING_LINK,
            actor=POLICY_ACTOR,
            reason=f"approved automatically: {rule.note} (PAYLINK_AUTO_APPROVE_UNDER)",
            decided_by=POLICY_ACTOR,
            decided_at=utcnow(),
            lease_until=self.follow_up.creation_lease(),
            attempts=link.attempts + 1,
        )
        assert moved is not None  # inserted in this transaction: nobody else has seen it
        self.follow_up.creation_decided(self, s, moved)
        return moved

    def earlier_request(
        self, request: CheckoutRequest, *, workspace: Workspace | None, view_id: str | None = None
    ) -> Link | None:
        """The duplicate guard: the newest request of ``workspace`` within the duplicate
        window for the same currency and amount and the same customer e-mail or phone, that
        was not rejected, cancelled or left to expire; never the one ``view_id`` made."""
        window = self.duplicate_window_for(workspace.team_id if workspace else None)
        if not window:
            return None
        with self.store.reading() as s:
            return self.store.similar(
                s,
                request,
                statuses=LIVE,
                since=utcnow() - window,
                workspace=workspace,
                view_id=view_id,
            )

    def reference_used(self, reference: str) -> bool:
        """True when a link, or a renewal's checkout link, has this order reference."""
        with self.store.reading() as s:
            return self.store.reference_taken(s, reference)

    def create_direct(
        self, request: CheckoutRequest, *, actor: str, workspace: Workspace | None = None
    ) -> Link:
        """Create a link of ``workspace`` with no approval step (the CLI, for operators);
        calls XPay now, with the workspace's default store. An amount the policy gives to
        two approvers is refused (NotAllowed): one operator does not stand for two."""
        rule = self._policy(workspace).rule(request.amount, request.currency)
        if rule.approvals == TWO:
            raise NotAllowed(
                f"{rule.note} needs two approvers (PAYLINK_SECOND_APPROVAL_FROM): "
                "request it in Slack with /paylink"
            )
        store_id, sandbox = self._store_for(workspace, None)
        with self.store.transaction() as s:
            link = self.store.insert_link(
                s,
                request,
                requester_id=actor,
                actor=actor,
                status=Status.AWAITING_APPROVAL,
                workspace=workspace,
                sandbox=sandbox,
                store_id=store_id,
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

    def _store_for(
        self, workspace: Workspace | None, channel_id: str | None
    ) -> tuple[int | None, bool]:
        """(store id, made on the sandbox) for a request of ``workspace`` typed in
        ``channel_id``: its channel's store, else its default, else the environment's."""
        chosen = (
            self.stores.choose(workspace.team_id if workspace else None, channel_id)
            if self.stores
            else None
        )
        return (chosen.id, chosen.sandbox) if chosen else (None, self.sandbox)

    def _policy(self, workspace: Workspace | None) -> ApprovalPolicy:
        return self.policy_for(workspace.team_id if workspace else None)

    def _gateway(self, store_id: int | None) -> Gateway:
        return self.stores.gateway(store_id) if self.stores else self.gateway

    def approves(self, link: Link, user_id: str) -> bool:
        """True when ``user_id`` approves in ``link``'s workspace."""
        return self._approves(link, user_id)

    def _approves(self, link: Link, user_id: str) -> bool:
        if self.approvers_in is not None:
            return self.approvers_in(user_id, link.team_id)
        return self.is_approver(user_id)

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
        if not self._approves(link, user_id):
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
        approval: bool = False,
        on_moved: Callable[[Session, Link], None] | None = None,
        **changes: object,
    ) -> Link:
        """A person's decision: the link must be ``origin``'s, ``admit`` checks the rest
        (raising Refused) and may add changes, then one compare-and-set, with the card
        update (and a thread reply) queued with it; AlreadyDecided naming the current
        status when someone else was first. The link is read once, in the transaction that
        moves it (a click is an ack's critical path). ``on_moved`` adds to a move that
        happened, in its transaction. A move to Creating link hands the creation to the
        follow-up. An ``approval`` of a request that needs two approvers is counted first:
        the first is recorded and the link returned unmoved.
        """
        creating = target == Status.CREATING_LINK
        with self.store.transaction() as s:
            link = self.store.get(s, link_id)
            if link is None:
                raise LinkGone()
            self._check_origin(link, actor, origin)
            changes.update(admit(link) or {})
            first = None
            if approval and link.approvals_needed == TWO:
                first, reason = self._count_approval(s, link_id, actor)
            if first is not None:
                self._announce(s, first, ThreadKind.FIRST_APPROVAL, details={"approver": actor})
                moved = None
            else:
                moved = self.store.move(
                    s, link_id, sources, target, actor=actor, reason=reason, **changes
                )
                if moved is not None:
                    if on_moved is not None:
                        on_moved(s, moved)
                    if creating:
                        self.follow_up.creation_decided(self, s, moved)
                    self._announce(s, moved, thread)
        if first is not None:
            log.info("first of two approvals", extra={"ref": first.reference, "user": actor})
            return first
        if moved is None:
            raise self._already(self._load(link_id))
        log.info("link %s", target.value, extra={"ref": moved.reference, "user": actor})
        if creating:
            self.follow_up.creation_committed(self, moved.id)
        return moved

    def _announce(
        self,
        s: Session,
        link: Link,
        thread: ThreadKind | None = None,
        key: str = "",
        details: dict[str, str] | None = None,
    ) -> None:
        """Queue, with the change just made, the card update and a thread reply of kind
        ``thread`` (at most once per link, kind and ``key``; ``details`` go in its payload
        for its renderer)."""
        self.queue.enqueue(s, link, JobKind.CARD)
        if thread:
            self.queue.enqueue(
                s,
                link,
                JobKind.THREAD,
                payload={"kind": thread.value, **(details or {})},
                dedupe_key=f"thread:{link.id}:{thread.value}{key}",
            )

    def _count_approval(self, s: Session, link_id: int, user_id: str) -> tuple[Link | None, str]:
        """Count ``user_id``'s approval of a request that needs two, in ``s`` with the link
        locked (two approvals at once take turns): ``(link, "")`` after recording the first,
        ``(None, reason)`` when this is the second and the link is to move. Refused: the
        requester (even with self-approval allowed), the same approver again, or too late."""
        link = self.store.lock(s, link_id)
        if link is None:
            raise LinkGone()
        if link.status != Status.AWAITING_APPROVAL.value:
            raise self._already(link)
        note = threshold_note(TWO, link.policy_threshold, link.currency)
        if link.requester_id == user_id:
            raise NotAllowed(f"You asked for this link: {note} needs two approvers other than you.")
        earlier = self.store.approvers(s, link_id)
        if user_id in earlier or not self.store.add_approval(s, link_id, user_id):
            raise AlreadyApproved()
        if earlier:
            return None, f"second approval ({note}), after {earlier[0]}"
        first = self.store.note(
            s, link, actor=user_id, reason=f"first approval ({note}): waiting for a second approver"
        )
        if first is None:  # the lock keeps everyone else out: only if that ever changes
            raise self._already(link)
        return first, ""

    def approve(self, link_id: int, user_id: str, *, origin: Workspace | None = None) -> Link:
        """Approve a request and start creating its link; one effect however many clicks.
        A request that needs two approvers is decided by the second different approver."""

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
            approval=True,
            decided_by=user_id,
            decided_at=utcnow(),
            lease_until=self.follow_up.creation_lease(),
        )

    def retry(self, link_id: int, user_id: str, *, origin: Workspace | None = None) -> Link:
        """Try the gateway again after a failed or unconfirmed creation (approvers only)."""

        def admit(link: Link) -> dict[str, object]:
            if not self._approves(link, user_id):
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
            if user_id != link.requester_id and not self._approves(link, user_id):
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

    def renew(self, link_id: int, user_id: str, *, origin: Workspace | None = None) -> Link:
        """Renew an expired link (the requester or an approver): a new checkout link at XPay
        with the next order reference (``REF-2``, ``REF-3`` …), posted in the same thread,
        and the link awaits payment again. The amount is the same, so no new approval. XPay
        cannot void the earlier link: a payment on it still counts."""

        def admit(link: Link) -> dict[str, object]:
            if user_id != link.requester_id and not self._approves(link, user_id):
                raise NotAllowed(
                    "Only the rep who asked for this link or an approver can renew it."
                )
            return {"attempts": link.attempts + 1}

        return self._decide(
            link_id,
            Status.EXPIRED,
            Status.CREATING_LINK,
            actor=user_id,
            admit=admit,
            origin=origin,
            reason="renewed",
            on_moved=lambda s, link: self.store.reserve_renewal(s, link),
            lease_until=self.follow_up.creation_lease(),
            gateway_message=None,
        )

    def expire(self, link_id: int, intent_id: str) -> Link | None:
        """A checkout link's expiry timer (a job due at its expiry): the link becomes
        Expired if it still awaits payment on ``intent_id``; renewed or paid since, nothing
        happens. Returns the link moved, if it was."""
        with self.store.transaction() as s:
            link = self.store.get(s, link_id)
            if link is None or link.intent_id != intent_id:
                return None
            reference = link.checkout_reference or link.reference
            moved = self.store.move(
                s,
                link_id,
                tuple(EXPIRING),
                Status.EXPIRED,
                actor="paylink",
                reason=f"checkout link {reference} expired unpaid",
            )
            if moved is not None:
                details = {"reference": reference}
                self._announce(s, moved, ThreadKind.EXPIRED, f":{intent_id}", details)
        if moved is not None:
            log.info("link expired", extra={"ref": moved.reference})
        return moved

    def schedule_missing_expiries(self, limit: int = 50) -> int:
        """Links awaiting payment from before expiry existed get their timer: the checkout
        link expires PAYLINK_LINK_TTL after the link's creation (at once, if that has
        passed). Returns how many."""
        now = utcnow()
        with self.store.transaction() as s:
            links = self.store.without_expiry(s, limit)
            for link in links:  # each has a checkout link (intent_id): it was selected for it
                expires = max(link.created_at + self.link_ttl_for(link.team_id), now)
                reference = link.checkout_reference or link.reference
                self.store.update_fields(s, link.id, expires_at=expires)
                self.store.update_intent(s, str(link.intent_id), expires_at=expires)
                self._start_expiry(s, link, str(link.intent_id), reference, expires)
        return len(links)

    def _start_expiry(
        self, s: Session, link: Link, intent_id: str, reference: str, expires: datetime
    ) -> None:
        """Queue the timer that expires the checkout link ``reference`` at ``expires``
        (once per checkout link: its dedupe key)."""
        self.queue.enqueue(
            s,
            link,
            JobKind.EXPIRE,
            payload={"intent": intent_id},
            dedupe_key=f"expire:{link.id}:{reference}",
            due=expires,
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
            approver = link.requester_id != user_id and self._approves(link, user_id)
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
        # A renewal reserved the new checkout link's order reference; a first creation uses
        # the link's own.
        with self.store.reading() as s:
            renewal = self.store.pending_intent(s, link.id)
        request = link.to_request()
        if renewal is not None:
            request = request.model_copy(update={"order_reference": renewal.reference})
        started = time.perf_counter()
        try:
            gateway = self._gateway(link.store_id)
            created = gateway.create_checkout(request.to_xpay_payload())
        except XPayOutcomeUnknown as exc:
            self._observe(started, "unknown")
            return self._gateway_failed(link, Status.LINK_UNKNOWN, exc.message)
        except XPayError as exc:
            self._observe(started, "failed")
            return self._gateway_failed(link, Status.LINK_FAILED, exc.message)
        self._observe(started, "created")
        reference = request.order_reference
        now = utcnow()
        expires = now + self.link_ttl_for(link.team_id)
        with self.store.transaction() as s:
            # Recorded even if the link moved meanwhile (paid on an earlier link during a
            # renewal): a payment on this one must still be found, as a double payment.
            self.store.record_intent(
                s,
                link.id,
                reference,
                intent_id=created.intent_id,
                checkout_url=created.checkout_url,
                created_at=now,
                expires_at=expires,
            )
            moved = self.store.move(
                s,
                link.id,
                Status.CREATING_LINK,
                Status.AWAITING_PAYMENT,
                actor="xpay",
                reason=f"new checkout link {reference}" if renewal else None,
                intent_id=created.intent_id,
                checkout_url=created.checkout_url,
                checkout_reference=reference,
                expires_at=expires,
                # The gateway that made it, if another took the request.
                sandbox=self.stores.is_sandbox(link.store_id) if self.stores else self.sandbox,
                lease_until=None,
                reconcile_after=now + self.reconcile_after,
            )
            if moved is not None:
                key = f":{created.intent_id}"
                if renewal is None:
                    self._announce(s, moved, ThreadKind.LINK_READY, key)
                else:
                    # The reply keeps its own link: a later renewal must not change it.
                    details = {"reference": reference, "url": created.checkout_url}
                    self._announce(s, moved, ThreadKind.LINK_RENEWED, key, details)
                self._start_expiry(s, moved, created.intent_id, reference, expires)
                if self.qr_codes:  # a job of its own, after the reply: that never waits on it
                    # Of this checkout link, like its reply, whatever the link's is by then.
                    self.queue.enqueue(
                        s,
                        moved,
                        JobKind.QR,
                        payload={"reference": reference, "url": created.checkout_url},
                        dedupe_key=f"qr:{moved.id}:{created.intent_id}",
                    )
                start_timer(self.queue, s, moved, self.remind_after_for(moved.team_id))
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

    def ask_xpay(
        self, link_id: int, intent_id: str, store_id: int | None = None
    ) -> WebhookResult | None:
        """Apply what XPay's record of a link's intent says (reconciliation's read, which
        may leave the amount out), asking the link's store ``store_id``; None, with a
        warning, when XPay could not be asked."""
        try:
            details = self._gateway(store_id).get_intent(intent_id)
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

    def confirm_payment(self, link: Link, intent_id: str | None = None) -> WebhookResult | None:
        """A webhook said ``link`` was paid on ``intent_id`` (by default its current
        checkout link) without saying how much: XPay's record decides. When XPay cannot be
        asked, reconciliation asks again later; nothing says Paid."""
        intent_id = intent_id or link.intent_id
        if not intent_id:
            return None
        result = self.ask_xpay(link.id, intent_id, link.store_id)
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
        intent_id = event.payment_intent_id
        # Paid already, a payment on another of its checkout links is a double payment.
        again = paid and outcome == "paid" and not self.store.intent_paid(s, intent_id)
        if outcome == "paid" and money is None and source == WEBHOOK and (not paid or again):
            # A webhook that leaves the sum out does not settle it: XPay's record does.
            self.queue.enqueue(s, link, JobKind.CONFIRM, payload={"intent": intent_id})
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
        if again:
            return self._double_payment(s, link, intent_id, source)
        details: dict[str, str] = {}
        if outcome == "paid":
            was_cancelled = link.status == Status.CANCELLED.value
            moved = (
                self.store.move(
                    s,
                    link.id,
                    tuple(PAYABLE),
                    Status.PAID,
                    actor=source,
                    reason=event.bank_message,
                    paid_method=event.method,
                    bank_message=event.bank_message,
                    reconcile_after=None,
                    lease_until=None,  # a renewal's creation under way: it records its intent
                )
                if not paid
                else None
            )
            if moved is not None:
                self.store.mark_intent_paid(s, intent_id, utcnow())
                if intent_id != moved.intent_id:  # an earlier checkout link, before renewal
                    paid_on = self.store.intent(s, intent_id)
                    details["reference"] = paid_on.reference if paid_on else ""
            kind = ThreadKind.PAID_AFTER_CANCEL if was_cancelled else ThreadKind.PAID
        elif outcome == "failed":
            # Only the current checkout link's failure says anything about the link now.
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
                if link.status == Status.AWAITING_PAYMENT.value and intent_id == link.intent_id
                else None
            )
            kind = ThreadKind.PAYMENT_FAILED
        else:
            return WebhookResult(WebhookOutcome.IGNORED, link.id)
        if moved is None:
            return WebhookResult(WebhookOutcome.STALE, link.id)
        self._announce(s, moved, kind, details=details)
        applied.append((outcome, moved.reference))
        return WebhookResult(WebhookOutcome.APPLIED, moved.id)

    # Workspaces ---------------------------------------------------------------------

    def workspace_left(self, workspace: Workspace, reason: str) -> int:
        """``workspace`` uninstalled Paylink or revoked its token: its jobs that would act in
        Slack there are stopped (done, with ``reason``, never run); its links are kept, and
        payments on them still recorded. Returns how many jobs were stopped."""
        with self.store.transaction() as s:
            stopped = self.queue.stop_workspace(s, workspace, reason)
        log.info(
            "workspace left: %d pending Slack jobs stopped (%s)",
            stopped,
            reason,
            extra={"team": workspace.team_id},
        )
        return stopped

    def _double_payment(self, s: Session, link: Link, intent_id: str, source: str) -> WebhookResult:
        """A Paid link's other checkout link was paid too: recorded once per checkout link
        (STALE when it was already), noted in the history and flagged in the thread, naming
        both links, for a refund. The card stays Paid."""
        if not self.store.mark_intent_paid(s, intent_id, utcnow()):
            return WebhookResult(WebhookOutcome.STALE, link.id)
        intents = self.store.intents_of(s, link.id)
        second = next(i for i in intents if i.intent_id == intent_id)
        earlier = [i for i in intents if i.paid_at is not None and i is not second]
        first = min(earlier, key=lambda i: i.paid_at).reference if earlier else link.reference
        amount = f"{link.currency} {link.amount:,}"
        self.store.record_event(
            s,
            link.id,
            Status.PAID,
            actor=source,
            reason=f"paid again on {second.reference} ({amount}; first on {first}): refund one",
        )
        self.queue.enqueue(
            s,
            link,
            JobKind.THREAD,
            payload={
                "kind": ThreadKind.DOUBLE_PAYMENT.value,
                "first": first,
                "second": second.reference,
            },
            dedupe_key=f"thread:{link.id}:double_payment:{second.id}",
        )
        log.error("double payment", extra={"ref": link.reference})
        return WebhookResult(WebhookOutcome.DOUBLE_PAYMENT, link.id)
