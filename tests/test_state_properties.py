"""A hypothesis state machine over LinkService: random sequences of people, XPay and jobs.

SQLite in a temporary file (a copy of one migrated template per example), a fake in-process
gateway that records every create and can be told to refuse, time out, lose its reply or
"crash" the process mid-call. After every step the invariants below are checked on every link;
each rule also checks the one effect it should have had (or that nothing changed).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import Counter
from concurrent.futures import Future
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from sqlalchemy import select, update

from bot.db import make_engine, utcnow
from bot.links.followup import Inline
from bot.links.periodic import RECONCILED, Periodic
from bot.links.service import LinkService, Refused
from bot.links.states import CANCELLABLE, EXPIRING, PAYABLE, TRANSITIONS, Status, can_move
from bot.links.store import LinkStore
from bot.links.tables import History, Job, Link
from bot.schema import upgrade
from bot.xpay.client import (
    CheckoutCreated,
    IntentDetails,
    XPayOutcomeUnknown,
    XPayRejected,
)
from bot.xpay.webhooks import parse_payment_event
from tests.factories import checkout_request

pytestmark = pytest.mark.slow  # 50 runs of up to 30 steps

APPROVERS = ("U0APP1", "U0APP2")
REPS = ("U0REP1", "U0REP2")
OUTSIDER = "U0OUTSIDER"
CHANNEL = "C0APPROVALS"
# How XPay answers the next create: mostly fine, so that runs get as far as payments.
MODE = st.sampled_from(("ok", "ok", "ok", "fail", "timeout", "lost_reply", "crash"))
AMOUNTS = st.sampled_from(["1", "99.99", "5000"])
USERS = st.sampled_from((*APPROVERS, OUTSIDER, "requester"))
INTENT_STATUSES = ("succeeded", "failed", "declined", "requires_payment_method", "refunded")


def _reachable(src: Status) -> frozenset[Status]:
    seen: set[Status] = set()
    todo = [src]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return frozenset(seen)


REACHABLE = {s: _reachable(s) for s in Status}

# Many small transactions per example: keep the files in memory when the machine allows it.
TMP = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
_template_dir: tempfile.TemporaryDirectory[str] | None = None


def template_db() -> Path:
    """One migrated SQLite file per process; each example starts from a copy of it."""
    global _template_dir
    if _template_dir is None:
        _template_dir = tempfile.TemporaryDirectory(prefix="paylink-props-", dir=TMP)
        engine = make_engine(f"sqlite:///{Path(_template_dir.name) / 'template.db'}")
        upgrade(engine)
        engine.dispose()
    return Path(_template_dir.name) / "template.db"


class Crash(Exception):
    """The process died during the gateway call (nothing was sent)."""


class FakeGateway:
    """XPay stand-in: records creates per order reference; ``mode`` decides the next answer."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls: list[str] = []
        self.intents: dict[str, dict[str, Any]] = {}

    def create_checkout(self, payload: dict) -> CheckoutCreated:
        reference = payload["metadata"]["order_reference"]
        self.calls.append(reference)
        if self.mode == "fail":
            raise XPayRejected("Amount exceeds the merchant limit", 400)
        if self.mode == "timeout":
            raise XPayOutcomeUnknown("XPay did not answer in time")
        if self.mode == "crash":
            raise Crash()
        intent_id = f"xpay_pi_{len(self.intents):04d}"
        self.intents[intent_id] = {
            "reference": reference,
            "status": "requires_payment_method",
            "amount": payload["amount"],
        }
        if self.mode == "lost_reply":  # created at XPay, but the answer never arrived
            raise XPayOutcomeUnknown("connection dropped after sending")
        return CheckoutCreated(
            intent_id=intent_id,
            checkout_url=f"https://xpay.example/checkout/{intent_id}",
            status="requires_payment_method",
            raw={},
        )

    def get_intent(self, intent_id: str) -> IntentDetails:
        intent = self.intents.get(intent_id)
        if intent is None:
            raise XPayRejected("No such payment intent", 404)
        return IntentDetails(
            intent_id=intent_id,
            status=intent["status"],
            amount=Decimal(intent["amount"]),
            currency="PKR",
            raw={},
        )

    def live_intents(self, reference: str) -> int:
        return sum(1 for i in self.intents.values() if i["reference"] == reference)


class SyncExecutor:
    """Runs the gateway call at once (like the pool, exceptions are the callee's business)."""

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args))
        return future


class LinkMachine(RuleBasedStateMachine):
    links = Bundle("links")
    events = Bundle("events")

    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.mkdtemp(prefix="paylink-prop-", dir=TMP)
        db = Path(self._dir) / "paylink.db"
        shutil.copyfile(template_db(), db)
        self.engine = make_engine(f"sqlite:///{db}")
        self.store = LinkStore(self.engine)
        self.gateway = FakeGateway()
        self.service = LinkService(
            self.store,
            self.gateway,
            is_approver=APPROVERS.__contains__,
            follow_up=Inline(SyncExecutor()),  # type: ignore[arg-type]
        )
        self.periodic = Periodic(self.service)
        self.seen: dict[int, Status] = {}
        self.visited: set[Status] = set()
        self.steps = 0
        self.requester: dict[int, str] = {}
        self.reference: dict[int, str] = {}
        self.retries_after_failure: Counter[int] = Counter()
        self.n = 0

    def teardown(self) -> None:
        if hasattr(self, "engine"):
            event(f"steps {self.steps // 5 * 5}")
            for status in sorted(self.visited):
                event(f"visited {status.value}")
            self.engine.dispose()
            shutil.rmtree(self._dir, ignore_errors=True)

    # Helpers ------------------------------------------------------------------------------

    def load(self, link_id: int) -> Link:
        with self.store.reading() as s:
            link = self.store.get(s, link_id)
            assert link is not None
            return link

    def status(self, link_id: int) -> Status:
        return Status(self.load(link_id).status)

    def refused(self, link_id: int, action: Any) -> None:
        """``action`` must be refused and change nothing."""
        before = self.load(link_id)
        try:
            action()
        except Refused:
            pass
        else:
            raise AssertionError(f"not refused (status was {before.status})")
        after = self.load(link_id)
        assert (after.status, after.version) == (before.status, before.version)

    def after_gateway(self) -> set[Status]:
        """Where a link in Creating link ends up for the gateway's current mode."""
        return {
            "ok": {Status.AWAITING_PAYMENT},
            "fail": {Status.LINK_FAILED},
            "timeout": {Status.LINK_UNKNOWN},
            "lost_reply": {Status.LINK_UNKNOWN},
            "crash": {Status.CREATING_LINK},
        }[self.gateway.mode]

    # Rules --------------------------------------------------------------------------------

    @initialize(target=links, rep=st.sampled_from(REPS), amount=AMOUNTS)
    def first_request(self, rep: str, amount: str) -> int:
        return self.request(rep, amount)

    @precondition(lambda self: len(self.seen) < 4)
    @rule(target=links, rep=st.sampled_from(REPS), amount=AMOUNTS)
    def request(self, rep: str, amount: str) -> int:
        self.n += 1
        request = checkout_request(amount=amount, order_reference=f"REF-{self.n}")
        link = self.service.request_link(request, requester_id=rep, channel_id=CHANNEL)
        assert link.status == Status.AWAITING_APPROVAL.value
        self.requester[link.id] = rep
        self.reference[link.id] = link.reference
        self.seen[link.id] = Status.AWAITING_APPROVAL
        return link.id

    @rule(link_id=links, user=USERS, mode=MODE)
    def approve(self, link_id: int, user: str, mode: str) -> None:
        """An approver, an outsider or the requester clicks Approve; XPay answers per ``mode``."""
        user = self.requester[link_id] if user == "requester" else user
        self.gateway.mode = mode
        if user not in APPROVERS or self.status(link_id) != Status.AWAITING_APPROVAL:
            self.refused(link_id, lambda: self.service.approve(link_id, user))
            return
        calls = len(self.gateway.calls)
        self.service.approve(link_id, user)
        assert len(self.gateway.calls) == calls + 1
        assert self.status(link_id) in self.after_gateway()

    @rule(
        link_id=links,
        user=USERS,
        reason=st.sampled_from(["Wrong amount", "   ", "too\n\nexpensive " * 60]),
    )
    def reject(self, link_id: int, user: str, reason: str) -> None:
        user = self.requester[link_id] if user == "requester" else user
        if (
            user in APPROVERS
            and reason.strip()
            and self.status(link_id) == Status.AWAITING_APPROVAL
        ):
            link = self.service.reject(link_id, user, reason)
            assert link.status == Status.REJECTED.value
            assert link.reject_reason and len(link.reject_reason) <= 500
        else:
            self.refused(link_id, lambda: self.service.reject(link_id, user, reason))

    @rule(link_id=links, approver=st.sampled_from(APPROVERS), mode=MODE)
    def approver_approves(self, link_id: int, approver: str, mode: str) -> None:
        """The common case, as its own rule so that runs often get as far as payments."""
        self.approve(link_id, approver, mode)

    @rule(link_id=links, user=USERS, mode=MODE)
    def retry(self, link_id: int, user: str, mode: str) -> None:
        user = self.requester[link_id] if user == "requester" else user
        self.gateway.mode = mode
        before = self.status(link_id)
        if user in APPROVERS and before in (Status.LINK_FAILED, Status.LINK_UNKNOWN):
            calls = len(self.gateway.calls)
            self.retries_after_failure[link_id] += 1
            self.service.retry(link_id, user)
            assert len(self.gateway.calls) == calls + 1
            assert self.status(link_id) in self.after_gateway()
        else:
            self.refused(link_id, lambda: self.service.retry(link_id, user))

    @rule(link_id=links, user=st.sampled_from((OUTSIDER, OUTSIDER, "requester", APPROVERS[0])))
    def cancel(self, link_id: int, user: str) -> None:
        user = self.requester[link_id] if user == "requester" else user
        allowed = user in APPROVERS or user == self.requester[link_id]
        if allowed and self.status(link_id) in CANCELLABLE:
            assert self.service.cancel(link_id, user).status == Status.CANCELLED.value
        else:
            self.refused(link_id, lambda: self.service.cancel(link_id, user))

    @rule(link_id=links)
    def expire(self, link_id: int) -> None:
        """The current checkout link's expiry falls due (its timer job runs)."""
        link = self.load(link_id)
        if link.intent_id is None:
            return
        self.service.expire(link_id, link.intent_id)
        after = self.status(link_id)
        if Status(link.status) in EXPIRING:
            assert after == Status.EXPIRED
        else:
            assert after == Status(link.status)

    @rule(link_id=links, user=USERS, mode=MODE)
    def renew(self, link_id: int, user: str, mode: str) -> None:
        """Renew: the requester or an approver, on an expired link; XPay answers per ``mode``."""
        user = self.requester[link_id] if user == "requester" else user
        self.gateway.mode = mode
        allowed = user in APPROVERS or user == self.requester[link_id]
        if not allowed or self.status(link_id) != Status.EXPIRED:
            self.refused(link_id, lambda: self.service.renew(link_id, user))
            return
        calls = len(self.gateway.calls)
        self.service.renew(link_id, user)
        assert len(self.gateway.calls) == calls + 1
        reference = self.gateway.calls[-1]
        assert reference.startswith(self.reference[link_id] + "-")
        assert reference not in self.gateway.calls[:-1]  # a new reference each renewal
        assert self.status(link_id) in self.after_gateway()
        event("renewed")

    @rule(link_id=links, mode=MODE)
    def expires_and_the_rep_renews(self, link_id: int, mode: str) -> None:
        """The common case, as its own rule so that runs often get as far as renewals."""
        self.expire(link_id)
        self.renew(link_id, "requester", mode)

    @rule(
        target=events,
        link_id=links,
        outcome=st.sampled_from(["paid", "failed"]),
        bank=st.sampled_from(["CAPTURED", "DECLINED", "INSUFFICIENT_FUNDS", None]),
        orphan=st.booleans(),
    )
    def webhook(self, link_id: int, outcome: str, bank: str | None, orphan: bool) -> dict:
        """XPay reports a payment on the link's intent, or on another of its intents (an
        earlier checkout link, or an orphan one from a lost reply)."""
        return self.send_webhook(link_id, outcome, bank, orphan)

    @rule(target=events, link_id=links)
    def customer_pays(self, link_id: int) -> dict:
        """The common case, as its own rule so that runs often get as far as Paid."""
        return self.send_webhook(link_id, "paid", "CAPTURED", False)

    def send_webhook(self, link_id: int, outcome: str, bank: str | None, orphan: bool) -> dict:
        link = self.load(link_id)
        intents = [
            i for i, v in self.gateway.intents.items() if v["reference"].startswith(link.reference)
        ]
        intent_id = (
            next((i for i in intents if i != link.intent_id), None) if orphan else link.intent_id
        ) or f"xpay_pi_unknown_{link_id}"
        body = {
            "type": "PAYMENT_INTENT_NOTIFICATION",
            "payment_intent_id": intent_id,
            "amount": float(link.amount),
            "currency": "PKR",
            "status": "succeeded" if outcome == "paid" else "failed",
            "payment_method_types": "card",
            "transaction_details": {"status": bank, "response_from_bank": "bank says"},
        }
        self.deliver(body)
        return body

    @rule(body=events)
    def webhook_again(self, body: dict) -> None:
        """A duplicate (or late, out-of-order) delivery of an earlier webhook."""
        self.deliver(body)

    def deliver(self, body: dict) -> None:
        event = parse_payment_event(body)
        with self.store.reading() as s:
            link = self.store.by_intents(s, {event.payment_intent_id}).get(event.payment_intent_id)
        before = Status(link.status) if link else None
        result = self.service.apply_payment(event)
        if link is None:
            assert result.outcome == "unknown_intent"
            return
        after = self.status(link.id)
        if result.outcome != "applied":
            assert after == before, result
            return
        if event.outcome == "paid":
            assert before in PAYABLE
            assert after == Status.PAID
        else:
            assert (before, after) == (Status.AWAITING_PAYMENT, Status.PAYMENT_FAILED)

    @rule(link_id=links, status=st.sampled_from(INTENT_STATUSES))
    def reconcile(self, link_id: int, status: str) -> None:
        """XPay's intent has ``status``; the reconcile job comes round (its time has come)."""
        link = self.load(link_id)
        with self.store.reading() as s:  # each of its checkout links, earlier ones too
            for intent in self.store.intents_of(s, link_id):
                if intent.intent_id:
                    self.gateway.intents[intent.intent_id]["status"] = status
        with self.store.transaction() as s:
            s.execute(
                update(Link)
                .where(Link.reconcile_after.is_not(None))
                .values(reconcile_after=utcnow() - timedelta(seconds=1))
            )
        before = Status(link.status)
        self.periodic.reconcile()
        after = self.status(link_id)
        # Failed, cancelled and expired links are reconciled too: XPay's page still takes
        # payments; so are failed renewals, whose earlier link does.
        if before in RECONCILED and link.intent_id and status == "succeeded":
            assert after == Status.PAID
        elif before == Status.AWAITING_PAYMENT and status in ("failed", "declined"):
            assert after == Status.PAYMENT_FAILED
        else:
            assert after == before

    @rule(mode=MODE)
    def resume_stuck(self, mode: str) -> None:
        """Leases of links left in Creating link (a crash) expire; the job resumes them."""
        self.gateway.mode = mode
        with self.store.transaction() as s:
            stuck = list(
                s.scalars(select(Link.id).where(Link.status == Status.CREATING_LINK.value))
            )
            s.execute(
                update(Link)
                .where(Link.id.in_(stuck))
                .values(lease_until=utcnow() - timedelta(seconds=1))
            )
        calls = len(self.gateway.calls)
        try:
            resumed = self.periodic.resume_stuck()
        except Crash:
            assert self.gateway.mode == "crash"
            return
        assert resumed == len(stuck) == len(self.gateway.calls) - calls
        for link_id in stuck:
            assert self.status(link_id) in self.after_gateway()

    # Invariants ---------------------------------------------------------------------------

    @invariant()
    def every_link_is_consistent(self) -> None:
        """All invariants, on every link, from three queries (this runs after every step)."""
        self.steps += 1
        with self.store.reading() as s:
            links = {link.id: link for link in s.scalars(select(Link))}
            history: dict[int, list[History]] = {}
            for row in s.scalars(select(History).order_by(History.id)):
                history.setdefault(row.link_id, []).append(row)
            queued: dict[int, list[Job]] = {}
            for job in s.scalars(select(Job).order_by(Job.id)):
                queued.setdefault(job.link_id, []).append(job)
        assert set(links) == set(self.seen)
        for link_id, link in links.items():
            now, last = Status(link.status), self.seen[link_id]
            self.visited.add(now)

            # The status never moves backwards, and Paid is final.
            assert now == last or now in REACHABLE[last], f"{link_id}: {last} → {now}"
            if last == Status.PAID:
                assert now == Status.PAID
            self.seen[link_id] = now

            # Exactly one history row per change; rows chain; each move is legal. Rows of
            # events that are no move (a double payment) keep the status they happened in.
            rows = history[link_id]
            notes = [r for r in rows[1:] if r.from_status == r.to_status]
            assert all(r.to_status == Status.PAID.value for r in notes)
            rows = [r for r in rows if r not in notes]
            assert rows[0].from_status is None
            assert rows[0].to_status == Status.AWAITING_APPROVAL.value
            for prev, row in zip(rows, rows[1:], strict=False):
                assert row.from_status == prev.to_status
                assert can_move(Status(row.from_status), Status(row.to_status))
            assert rows[-1].to_status == link.status
            assert link.version == len(rows)  # every change bumped the version exactly once

            # The request's card, then exactly one card update per status change.
            messages = queued.get(link_id, [])
            cards = [m for m in messages if m.kind == "card"]
            assert len(cards) == len(rows), (len(cards), len(rows))
            assert cards[0].payload == {"notify_requester": True}
            # Thread replies: unique dedupe keys, each once-only reply at most once.
            keys = [m.dedupe_key for m in messages if m.kind == "thread"]
            assert None not in keys
            assert len(keys) == len(set(keys)), keys
            kinds = Counter(m.payload["kind"] for m in messages if m.kind == "thread")
            for kind in ("paid", "paid_after_cancel", "payment_failed", "cancelled", "rejected"):
                assert kinds[kind] <= 1, kinds
            assert kinds["paid"] + kinds["paid_after_cancel"] == (now == Status.PAID)

            # At most one live intent at XPay per request, unless someone retried after a
            # failed or unconfirmed creation.
            live = self.gateway.live_intents(link.reference)
            assert live <= 1 + self.retries_after_failure[link_id], (link.reference, live)


LinkMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLinkStateMachine = LinkMachine.TestCase


def setup_module() -> None:
    # A "crash" mid-call is logged with a traceback by design; keep the test output readable.
    logging.getLogger("bot.links").setLevel(logging.CRITICAL)


def teardown_module() -> None:
    logging.getLogger("bot.links").setLevel(logging.NOTSET)
