"""LinkService on SQLite and PostgreSQL: its decisions with XPay in memory (tests/fakes.py),
and with the real XPayClient against the sandbox gateway of a running LocalStack or a scripted
stub HTTP server, where what matters is how real answers and failures arrive."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from bot.db import utcnow
from bot.links.followup import Inline, Queued, QueuedWork
from bot.links.intake import JobIntake
from bot.links.kinds import JobKind
from bot.links.outcomes import AlreadyDecided, Incomplete, LinkGone, NotAllowed
from bot.links.periodic import Periodic
from bot.links.queue import JobQueue
from bot.links.runner import SQLITE_BATCH, Handler, JobRunner
from bot.links.service import Gateway, LinkService, Refused
from bot.links.states import Status
from bot.links.store import LinkStore
from bot.links.tables import Job, Link
from bot.links.workspaces import Workspace
from bot.local.stack import LocalStack, free_port
from bot.xpay.client import XPayClient, XPayKeys, XPayOutcomeUnknown, XPayServerError
from bot.xpay.webhooks import PaymentEvent
from tests.dbs import BACKENDS, migrated_engine
from tests.factories import checkout_request, payment_event
from tests.fakes import FakeGateway
from tests.stubs import Reply, StubGateway, created

REP, APPROVER, OTHER_APPROVER, OUTSIDER = "U0REP", "U0APPROVER", "U0BOSS", "U0OUTSIDER"
HOME = Workspace("T0HOME")


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(jobs_interval=3600) as stack:
        yield stack


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LinkStore]:
    with migrated_engine(request.param, tmp_path) as engine:
        yield LinkStore(engine)


def sandbox_client(stack: LocalStack) -> XPayClient:
    return XPayClient(stack.settings.xpay_url, stack.runtime.gateway_keys.xpay())


def make_service(store: LinkStore, gateway: Gateway, **kw: object) -> LinkService:
    """A service whose follow-up is inline and synchronous (creates at the gateway before
    a decision returns) unless ``follow_up`` says otherwise."""
    return LinkService(
        store,
        gateway,
        is_approver=lambda user: user in (APPROVER, OTHER_APPROVER),
        **kw,  # type: ignore[arg-type]
    )


def beside_worker(store: LinkStore, gateway: Gateway) -> LinkService:
    """The service of a `serve` beside a worker: its follow-up work is queued as jobs."""
    return make_service(store, gateway, follow_up=Queued(JobIntake(store)))


def every_kind(handler: Handler) -> dict[JobKind, Handler]:
    return {kind: handler for kind in JobKind}


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def service(store: LinkStore, gateway: FakeGateway) -> LinkService:
    return make_service(store, gateway)


@pytest.fixture
def sandbox_service(store: LinkStore, stack: LocalStack) -> Iterator[LinkService]:
    client = sandbox_client(stack)
    yield make_service(store, client)
    client.close()


@pytest.fixture
def stub() -> Iterator[StubGateway]:
    stub = StubGateway()
    yield stub
    stub.close()


@pytest.fixture
def stub_service(store: LinkStore, stub: StubGateway) -> Iterator[LinkService]:
    client = XPayClient(stub.url, XPayKeys("key", "acct", "secret"), read_timeout=0.5)
    yield make_service(store, client)
    client.close()


def load(service: LinkService, link_id: int) -> Link:
    with service.store.reading() as s:
        link = service.store.get(s, link_id)
        assert link is not None
        _ = link.history
        return link


def statuses(link: Link) -> list[str]:
    return [row.to_status for row in link.history]


def job_rows(service: LinkService, link_id: int) -> list[Job]:
    with service.store.reading() as s:
        return list(s.scalars(select(Job).where(Job.link_id == link_id).order_by(Job.id)))


def awaiting_payment(service: LinkService) -> Link:
    link = service.request_link(checkout_request(), requester_id=REP, channel_id="C0APPROVALS")
    service.approve(link.id, APPROVER)
    link = load(service, link.id)
    assert link.status == Status.AWAITING_PAYMENT.value, link.gateway_message
    return link


# Approval -------------------------------------------------------------------------------


def test_approve_creates_the_link_at_the_sandbox(
    sandbox_service: LinkService, stack: LocalStack
) -> None:
    service = sandbox_service
    link = service.request_link(checkout_request(), requester_id=REP, channel_id="C0APPROVALS")
    assert link.status == Status.AWAITING_APPROVAL.value
    approved = service.approve(link.id, APPROVER)
    assert approved.decided_by == APPROVER
    link = load(service, link.id)
    assert statuses(link) == ["awaiting_approval", "creating_link", "awaiting_payment"]
    assert link.history[-1].actor == "xpay"
    assert link.intent_id and link.intent_id.startswith("xpay_pi_")
    assert link.checkout_url == f"{stack.base_url}/sandbox/checkout/{link.intent_id}"
    assert link.lease_until is None
    assert link.reconcile_after is not None and link.reconcile_after > utcnow()
    page = requests.get(link.checkout_url, timeout=5)
    assert page.status_code == 200
    assert "PKR 1,500.50" in page.text and link.reference in page.text
    kinds = [(m.kind, m.payload.get("kind")) for m in job_rows(service, link.id)]
    assert kinds == [
        ("card", None),
        ("card", None),
        ("card", None),
        ("thread", "link_ready"),
        ("expire", None),  # the checkout link's expiry, due in PAYLINK_LINK_TTL
    ]


def test_approval_beside_a_worker_queues_the_gateway_call_once(
    store: LinkStore, gateway: FakeGateway
) -> None:
    """With a queued follow-up (a `serve` beside a worker) the click only records the
    decision and a "create" job with it; whoever runs that job takes the lease first, so a
    job run twice makes one gateway call."""
    service = beside_worker(store, gateway)
    link = service.request_link(checkout_request(), requester_id=REP, channel_id="C0APPROVALS")
    service.approve(link.id, APPROVER)
    queued = load(service, link.id)
    assert queued.status == Status.CREATING_LINK.value and queued.intent_id is None
    assert queued.lease_until is None  # not resumed as stuck before a worker takes it
    kinds = [m.kind for m in job_rows(service, link.id)]
    assert kinds == ["card", "create", "card"]  # the gateway call ahead of the card update

    assert service.claim_creation(link.id)
    assert not service.claim_creation(link.id)  # the same job run again
    Inline().start_creation(service, link.id)
    assert load(service, link.id).status == Status.AWAITING_PAYMENT.value
    assert not service.claim_creation(link.id)  # and after it was created
    assert len(gateway.creates) == 1


def test_clicks_beside_a_worker_are_stored_first_and_decided_by_the_worker(
    store: LinkStore, gateway: FakeGateway
) -> None:
    """serve records the click (nothing decided yet, an unknown link refused at once); the
    worker decides it, and a refusal comes back as text for the clicker."""
    web = beside_worker(store, gateway)
    link = web.request_link(
        checkout_request(), requester_id=REP, channel_id="C0APPROVALS", workspace=HOME
    )
    assert web.receive_click("approve", link.id, OUTSIDER, HOME, channel="C0APPROVALS") is None
    assert web.receive_click("approve", link.id, APPROVER, HOME, channel="C0APPROVALS") is None
    gone = web.receive_click("approve", 999_999, APPROVER, HOME, channel="C0APPROVALS")
    assert gone == "That request no longer exists."
    assert load(web, link.id).status == Status.AWAITING_APPROVAL.value
    clicks = [m for m in job_rows(web, link.id) if m.kind == "decision"]
    home = {"team": HOME.team_id, "enterprise": None}
    assert [m.payload for m in clicks] == [
        {"action": "approve", "user": OUTSIDER, **home, "channel": "C0APPROVALS"},
        {"action": "approve", "user": APPROVER, **home, "channel": "C0APPROVALS"},
    ]
    refusals = [web.decide_click("approve", link.id, m.payload["user"], HOME) for m in clicks]
    assert refusals[0] is not None and "PAYLINK_APPROVERS" in refusals[0]
    assert refusals[1] is None
    assert load(web, link.id).status == Status.CREATING_LINK.value
    again = web.decide_click("approve", link.id, APPROVER, HOME)
    assert again is not None and "already" in again
    with pytest.raises(ValueError):
        web.receive_click("reject", link.id, APPROVER, HOME)  # needs a reason: not a click


def test_only_approvers_decide_and_not_on_their_own_request(service: LinkService) -> None:
    link = service.request_link(checkout_request(), requester_id=APPROVER, channel_id="C1")
    with pytest.raises(NotAllowed, match="PAYLINK_APPROVERS"):
        service.approve(link.id, OUTSIDER)
    with pytest.raises(NotAllowed, match="another approver"):
        service.approve(link.id, APPROVER)
    with pytest.raises(NotAllowed):
        service.reject(link.id, OUTSIDER, "no")
    with pytest.raises(LinkGone):
        service.approve(999_999, APPROVER)
    assert load(service, link.id).status == Status.AWAITING_APPROVAL.value
    assert len(load(service, link.id).history) == 1


def test_self_approval_when_allowed(store: LinkStore, gateway: FakeGateway) -> None:
    service = make_service(store, gateway, allow_self_approval=True)
    link = service.request_link(checkout_request(), requester_id=APPROVER, channel_id=None)
    service.approve(link.id, APPROVER)
    assert load(service, link.id).status == Status.AWAITING_PAYMENT.value


def test_second_decision_has_no_effect(service: LinkService) -> None:
    link = awaiting_payment(service)
    with pytest.raises(AlreadyDecided, match="Nothing changed"):
        service.approve(link.id, OTHER_APPROVER)
    with pytest.raises(AlreadyDecided, match="Nothing changed"):
        service.reject(link.id, OTHER_APPROVER, "too late")
    after = load(service, link.id)
    assert statuses(after) == statuses(link)
    assert after.intent_id == link.intent_id


def test_reject_needs_a_reason(service: LinkService) -> None:
    link = service.request_link(checkout_request(), requester_id=REP, channel_id="C1")
    with pytest.raises(Incomplete, match="reason"):
        service.reject(link.id, APPROVER, "   ")
    rejected = service.reject(link.id, APPROVER, "  wrong\n amount ")
    assert rejected.status == Status.REJECTED.value
    assert rejected.reject_reason == "wrong amount"
    with pytest.raises(Refused):
        service.approve(link.id, APPROVER)


# Gateway failures ---------------------------------------------------------------------------


def test_gateway_refusal_is_link_failed_with_its_message(
    stub_service: LinkService, stub: StubGateway
) -> None:
    stub.reply = Reply(
        400,
        {
            "success": False,
            "responseStatus": "BAD_REQUEST",
            "message": "Invalid currency for this account",
        },
    )
    link = stub_service.request_link(checkout_request(), requester_id=REP, channel_id="C1")
    stub_service.approve(link.id, APPROVER)
    link = load(stub_service, link.id)
    assert link.status == Status.LINK_FAILED.value
    assert link.gateway_message == "Invalid currency for this account"
    assert link.history[-1].reason == "Invalid currency for this account"
    assert link.intent_id is None and link.checkout_url is None
    assert stub.paths == ["/public/v1/payment/checkout"]


def test_timeout_is_link_unknown_not_failed(stub_service: LinkService, stub: StubGateway) -> None:
    stub.reply = Reply(200, created().doc, delay=3)
    link = stub_service.request_link(checkout_request(), requester_id=REP, channel_id="C1")
    stub_service.approve(link.id, APPROVER)
    link = load(stub_service, link.id)
    assert link.status == Status.LINK_UNKNOWN.value
    assert link.status_label == "Link creation unconfirmed"
    assert "may have been processed" in (link.gateway_message or "")
    assert len(stub.paths) == 1  # a create that may have happened is never re-sent on its own


@pytest.mark.integration  # connects to a port nobody listens on
def test_unreachable_gateway_is_link_failed(store: LinkStore) -> None:
    client = XPayClient(f"http://127.0.0.1:{free_port()}", XPayKeys("k", "a", "s"))
    service = make_service(store, client)
    link = service.request_link(checkout_request(), requester_id=REP, channel_id=None)
    service.approve(link.id, APPROVER)
    link = load(service, link.id)
    assert link.status == Status.LINK_FAILED.value
    assert "nothing was sent" in (link.gateway_message or "")
    client.close()


def test_retry_after_failure_and_after_unknown(service: LinkService, gateway: FakeGateway) -> None:
    gateway.fail_next(
        XPayServerError("Service unavailable", 503),
        XPayOutcomeUnknown("XPay did not answer in time"),
    )
    link = service.request_link(checkout_request(), requester_id=REP, channel_id="C1")
    service.approve(link.id, APPROVER)
    assert load(service, link.id).status == Status.LINK_FAILED.value

    with pytest.raises(Refused, match="approvers"):
        service.retry(link.id, REP)
    assert load(service, link.id).status == Status.LINK_FAILED.value

    service.retry(link.id, APPROVER)
    assert load(service, link.id).status == Status.LINK_UNKNOWN.value

    retried = service.retry(link.id, OTHER_APPROVER)
    assert retried.attempts == 3
    link = load(service, link.id)
    assert link.status == Status.AWAITING_PAYMENT.value
    assert link.intent_id == "xpay_pi_1"  # the one intent the third call created
    assert link.gateway_message is None
    assert statuses(link) == [
        "awaiting_approval",
        "creating_link",
        "link_failed",
        "creating_link",
        "link_unknown",
        "creating_link",
        "awaiting_payment",
    ]
    with pytest.raises(Refused, match="Nothing changed"):
        service.retry(link.id, APPROVER)
    assert len(gateway.creates) == 3


# Cancelling ------------------------------------------------------------------------------------


def test_cancel_rules(service: LinkService) -> None:
    pending = service.request_link(checkout_request(), requester_id=REP, channel_id="C1")
    with pytest.raises(Refused, match="Only the rep"):
        service.cancel(pending.id, OUTSIDER)
    assert service.cancel(pending.id, REP).status == Status.CANCELLED.value
    with pytest.raises(Refused, match="Nothing changed"):
        service.cancel(pending.id, REP)

    link = awaiting_payment(service)
    cancelled = service.cancel(link.id, APPROVER)
    assert (cancelled.status, cancelled.cancelled_by) == ("cancelled", APPROVER)

    rejected = service.request_link(checkout_request(), requester_id=REP, channel_id="C1")
    service.reject(rejected.id, APPROVER, "no")
    with pytest.raises(Refused, match="Nothing changed"):
        service.cancel(rejected.id, REP)

    paid = awaiting_payment(service)
    service.apply_payment(payment_event(paid.intent_id))
    with pytest.raises(Refused, match="already paid"):
        service.cancel(paid.id, APPROVER)
    assert load(service, paid.id).status == Status.PAID.value


# Payments ----------------------------------------------------------------------------------------


def thread_kinds(service: LinkService, link_id: int) -> list[str]:
    return [m.payload["kind"] for m in job_rows(service, link_id) if m.kind == "thread"]


def test_payment_applies_once(service: LinkService) -> None:
    link = awaiting_payment(service)
    result = service.apply_payment(payment_event(link.intent_id))
    assert (result.outcome, result.link_id) == ("applied", link.id)
    assert service.apply_payment(payment_event(link.intent_id)).outcome == "duplicate"
    paid = load(service, link.id)
    assert paid.status == Status.PAID.value
    assert paid.paid_method == "card"
    assert paid.reconcile_after is None
    assert statuses(paid).count("paid") == 1
    assert thread_kinds(service, link.id) == ["link_ready", "paid"]


def test_payment_beside_a_worker_is_queued_once(
    service: LinkService, store: LinkStore, gateway: FakeGateway
) -> None:
    """A `serve` beside a worker answers a webhook with one insert: the event waits in the
    job queue (once, however often XPay sends it) and the link is untouched until the worker
    applies it; an unknown intent is still refused."""
    link = awaiting_payment(service)
    web = beside_worker(store, gateway)
    event = payment_event(link.intent_id)
    assert web.receive_payment(event).outcome == "queued"
    assert web.receive_payment(event).outcome == "duplicate"
    assert web.receive_payment(payment_event("xpay_pi_nobody")).outcome == "unknown_intent"
    assert load(service, link.id).status == Status.AWAITING_PAYMENT.value
    queued = [m for m in job_rows(service, link.id) if m.kind == "payment"]
    assert len(queued) == 1
    assert PaymentEvent.model_validate(queued[0].payload) == event  # amount stays exact


def test_many_copies_of_one_webhook_at_once_queue_one_row(
    service: LinkService, store: LinkStore
) -> None:
    """Twenty deliveries of the same event from twenty threads: one is queued, the others
    are duplicates (in one batch or across batches alike), and an unknown intent among
    them changes nothing."""
    link = awaiting_payment(service)
    event = payment_event(link.intent_id)
    intake = JobIntake(store)

    def queue(intent: str) -> str:
        return intake.payment(intent, event.model_dump(mode="json"), "payment:same-event")

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(queue, [link.intent_id] * 20 + ["xpay_pi_nobody"]))
    assert outcomes.count("queued") == 1
    assert outcomes.count("duplicate") == 19
    assert outcomes[-1] == "unknown_intent"
    assert [m.kind for m in job_rows(service, link.id)].count(JobKind.PAYMENT) == 1


def test_one_card_delivery_covers_its_links_older_cards_and_nothing_else(
    service: LinkService, store: LinkStore
) -> None:
    """A card renders the link's latest state: of three queued card jobs one is run (the
    newest) and all three are marked done, while the link's thread reply and another link's
    card are run on their own, and a card queued afterwards waits."""
    a = service.request_link(checkout_request(), requester_id=REP, channel_id="C0APPROVALS")
    b = service.request_link(checkout_request(), requester_id=REP, channel_id="C0APPROVALS")
    queue = JobQueue(store)
    with store.transaction() as s:
        for link in (a, b):
            store.update_fields(s, link.id, message_ts="1700000000.000100")
        queue.enqueue(s, a, JobKind.CARD, payload={"n": 2})
        queue.enqueue(s, a, JobKind.THREAD, payload={"kind": "paid"})
        queue.enqueue(s, a, JobKind.CARD, payload={"n": 3})
    delivered: list[tuple[int, str, dict]] = []

    def deliver(job: Job, link: Link) -> None:
        delivered.append((link.id, job.kind, job.payload))

    runner = JobRunner(queue, every_kind(deliver))
    assert runner.run_once() == 5  # a's three cards and reply, b's card
    assert sorted((link_id, kind) for link_id, kind, _ in delivered) == sorted(
        [(a.id, "card"), (a.id, "thread"), (b.id, "card")]
    )
    assert (a.id, "card", {"n": 3}) in delivered
    assert all(m.done_at is not None for m in job_rows(service, a.id) + job_rows(service, b.id))
    with store.transaction() as s:
        queue.enqueue(s, a, JobKind.CARD, payload={"n": 4})
    assert [m.payload for m in job_rows(service, a.id) if m.done_at is None] == [{"n": 4}]
    assert runner.run_once() == 1
    runner.stop()


def test_on_sqlite_a_pass_takes_fewer_jobs_at_a_time(
    service: LinkService, store: LinkStore
) -> None:
    """The worker's transactions on SQLite hold the write lock `serve`'s webhooks wait for,
    so there a pass claims SQLITE_BATCH jobs, elsewhere BATCH; what is left goes next."""
    link = service.request_link(checkout_request(), requester_id=REP, channel_id="C0APPROVALS")
    queue = JobQueue(store)
    with store.transaction() as s:
        for n in range(SQLITE_BATCH + 5):
            queue.enqueue(s, link, JobKind.THREAD, payload={"n": n})
    delivered: list[int] = []

    def deliver(job: Job, _link: Link) -> None:
        if job.kind == JobKind.THREAD:  # (the request's own card is the first job)
            delivered.append(job.payload["n"])

    runner = JobRunner(queue, every_kind(deliver))
    due = SQLITE_BATCH + 6  # the replies and the request's card
    assert runner.run_once() == (due if store.is_postgres else SQLITE_BATCH)
    while runner.run_once():
        pass
    assert delivered == list(range(SQLITE_BATCH + 5))  # in order, each once
    runner.stop()


def test_the_worker_applies_queued_payments_together_and_one_bad_row_holds_up_none(
    service: LinkService, store: LinkStore, gateway: FakeGateway
) -> None:
    """The worker's runner hands every queued payment to one transaction; a job it cannot
    apply (here one written by another version, lacking the intent id) sends the batch
    one by one instead: the others are applied, that one is kept for a retry."""
    links = [awaiting_payment(service) for _ in range(3)]
    web = beside_worker(store, gateway)
    queue = JobQueue(store)
    with store.transaction() as s:
        queue.enqueue(
            s, links[0], JobKind.PAYMENT, payload={"status": "succeeded"}, dedupe_key="bad"
        )
    for link in links:
        assert web.receive_payment(payment_event(link.intent_id)).outcome == "queued"
    batches: list[int] = []
    work = QueuedWork(service, Inline(), tell=lambda *_: None)

    def together(jobs: list[Job]) -> object:
        batches.append(len(jobs))
        return work.payments(jobs)

    def deliver(job: Job, link: Link) -> None:
        if job.kind == JobKind.PAYMENT:  # Slack's jobs need no Slack here
            work.payment(job, link)

    JobRunner(queue, every_kind(deliver), together={JobKind.PAYMENT: together}).run_once()
    assert batches == [4]
    assert [load(service, link.id).status for link in links] == [Status.PAID.value] * 3
    rows = {m.dedupe_key: m for link in links for m in job_rows(service, link.id)}
    assert rows["bad"].done_at is None and rows["bad"].attempts == 1
    assert "payment_intent_id" in (rows["bad"].last_error or "")
    payments = [m for m in rows.values() if m.kind == JobKind.PAYMENT and m.dedupe_key != "bad"]
    assert len(payments) == 3 and all(m.done_at is not None for m in payments)


def run_jobs(service: LinkService) -> None:
    """One pass of a runner doing the service's own jobs (Slack's need no Slack here)."""
    work = QueuedWork(service, Inline(), tell=lambda *_: None)
    handlers = every_kind(lambda job, link: None) | work.handlers()
    JobRunner(JobQueue(service.store), handlers).run_once()


def test_a_paid_webhook_without_amount_or_currency_waits_for_xpay(
    service: LinkService, gateway: FakeGateway
) -> None:
    """Only XPay's own answer may settle a payment whose webhook leaves out the amount or
    the currency: until it confirms, nothing says Paid."""
    link = awaiting_payment(service)
    amountless = PaymentEvent(payment_intent_id=link.intent_id, status="succeeded")
    result = service.apply_payment(amountless)
    assert (result.outcome, result.link_id) == ("confirming", link.id)
    assert service.apply_payment(amountless).outcome == "duplicate"
    run_jobs(service)  # XPay: not paid yet
    assert load(service, link.id).status == Status.AWAITING_PAYMENT.value
    assert thread_kinds(service, link.id) == ["link_ready"]

    gateway.pay(link.intent_id)  # paid at XPay now
    no_currency = PaymentEvent(
        payment_intent_id=link.intent_id,
        status="succeeded",
        amount="1500.50",
        transaction_status="CAPTURED",
    )
    assert service.apply_payment(no_currency).outcome == "confirming"
    assert load(service, link.id).status == Status.AWAITING_PAYMENT.value
    run_jobs(service)
    paid = load(service, link.id)
    assert paid.status == Status.PAID.value
    assert paid.history[-1].actor == "reconcile"
    assert thread_kinds(service, link.id) == ["link_ready", "paid"]
    confirmations = [job for job in job_rows(service, link.id) if job.kind == "confirm"]
    assert len(confirmations) == 2 and all(job.done_at for job in confirmations)


def test_an_unconfirmed_payment_is_left_to_reconciliation_when_xpay_fails(
    stub_service: LinkService, stub: StubGateway, caplog: pytest.LogCaptureFixture
) -> None:
    link = stub_service.request_link(checkout_request(), requester_id=REP, channel_id="C1")
    stub_service.approve(link.id, APPROVER)
    stub.reply = Reply(404, {"success": False, "message": "Payment intent not found"})
    event = PaymentEvent(payment_intent_id="xpay_pi_stub1", status="succeeded", currency="PKR")
    assert stub_service.apply_payment(event).outcome == "confirming"
    with caplog.at_level(logging.WARNING, logger="bot.links"):
        run_jobs(stub_service)
    after = load(stub_service, link.id)
    assert after.status == Status.AWAITING_PAYMENT.value
    assert after.reconcile_after is not None  # reconciliation asks again
    confirmations = [job for job in job_rows(stub_service, link.id) if job.kind == "confirm"]
    assert len(confirmations) == 1 and confirmations[0].done_at is not None
    assert "Payment intent not found" in caplog.text


def test_stale_events_change_nothing(service: LinkService) -> None:
    link = awaiting_payment(service)
    service.apply_payment(payment_event(link.intent_id))
    assert service.apply_payment(payment_event(link.intent_id, "failed")).outcome == "stale"
    after = load(service, link.id)
    assert after.status == Status.PAID.value
    assert after.bank_message == "The payment was completed successfully"
    assert thread_kinds(service, link.id) == ["link_ready", "paid"]


def test_failed_then_paid(service: LinkService) -> None:
    link = awaiting_payment(service)
    assert service.apply_payment(payment_event(link.intent_id, "failed")).outcome == "applied"
    failed = load(service, link.id)
    assert failed.status == Status.PAYMENT_FAILED.value
    assert failed.bank_message == "Declined by the issuing bank"
    assert service.apply_payment(payment_event(link.intent_id, "failed")).outcome == "duplicate"
    assert service.apply_payment(payment_event(link.intent_id)).outcome == "applied"
    assert load(service, link.id).status == Status.PAID.value
    assert thread_kinds(service, link.id) == ["link_ready", "payment_failed", "paid"]


def test_paid_after_cancel_shows_paid(service: LinkService) -> None:
    link = awaiting_payment(service)
    service.cancel(link.id, REP)
    assert service.apply_payment(payment_event(link.intent_id)).outcome == "applied"
    assert load(service, link.id).status == Status.PAID.value
    assert thread_kinds(service, link.id) == ["link_ready", "cancelled", "paid_after_cancel"]


def test_unknown_intent_and_ignored_statuses(service: LinkService) -> None:
    assert service.apply_payment(payment_event("xpay_pi_nobody")).outcome == "unknown_intent"
    link = awaiting_payment(service)
    event = PaymentEvent(payment_intent_id=link.intent_id, status="refunded")
    assert service.apply_payment(event).outcome == "ignored"
    assert load(service, link.id).status == Status.AWAITING_PAYMENT.value


# Periodic timers ----------------------------------------------------------------------------------


def test_link_stuck_in_creating_is_resumed(service: LinkService) -> None:
    store = service.store
    stuck = service.request_link(checkout_request(), requester_id=REP, channel_id="C1")
    busy = service.request_link(checkout_request(), requester_id=REP, channel_id="C1")
    # As if the process died right after approving, before calling XPay.
    with store.transaction() as s:
        store.move(
            s,
            stuck.id,
            Status.AWAITING_APPROVAL,
            Status.CREATING_LINK,
            actor=APPROVER,
            lease_until=utcnow() - timedelta(seconds=5),
            attempts=1,
        )
        store.move(
            s,
            busy.id,
            Status.AWAITING_APPROVAL,
            Status.CREATING_LINK,
            actor=APPROVER,
            lease_until=utcnow() + timedelta(minutes=5),
            attempts=1,
        )
    assert Periodic(service).run_once() == {
        "resumed": 1,
        "reconciled": 0,
        "digests": 0,
        "expiries": 0,
    }
    resumed = load(service, stuck.id)
    assert resumed.status == Status.AWAITING_PAYMENT.value
    assert resumed.checkout_url
    assert load(service, busy.id).status == Status.CREATING_LINK.value  # its lease still holds
    assert Periodic(service).run_once() == {
        "resumed": 0,
        "reconciled": 0,
        "digests": 0,
        "expiries": 0,
    }


def pay_at_sandbox(checkout_url: str, outcome: str = "pay") -> None:
    response = requests.post(
        f"{checkout_url}/pay",
        data={"outcome": outcome, "method": "card"},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code in (200, 303), response.text


def test_reconcile_finds_a_payment_whose_webhook_was_lost(sandbox_service: LinkService) -> None:
    # The sandbox sends its webhook to the stack, which does not know this service's links:
    # for this service the webhook is lost, and only reconciliation can notice the payment.
    service = sandbox_service
    periodic = Periodic(service)
    link = awaiting_payment(service)
    pay_at_sandbox(link.checkout_url)
    assert load(service, link.id).status == Status.AWAITING_PAYMENT.value
    assert periodic.reconcile() == 0  # not due yet

    with service.store.transaction() as s:
        service.store.update_fields(s, link.id, reconcile_after=utcnow() - timedelta(seconds=1))
    assert periodic.run_once() == {"resumed": 0, "reconciled": 1, "digests": 0, "expiries": 0}
    paid = load(service, link.id)
    assert paid.status == Status.PAID.value
    assert paid.history[-1].actor == "reconcile"
    assert paid.reconcile_after is None
    assert periodic.reconcile() == 0


def test_reconcile_leaves_an_unpaid_link_and_checks_again_later(service: LinkService) -> None:
    link = awaiting_payment(service)
    with service.store.transaction() as s:
        service.store.update_fields(s, link.id, reconcile_after=utcnow() - timedelta(seconds=1))
    assert Periodic(service).reconcile() == 0
    after = load(service, link.id)
    assert after.status == Status.AWAITING_PAYMENT.value
    assert after.reconcile_after is not None and after.reconcile_after > utcnow()


def test_a_paid_webhook_without_amount_is_settled_by_xpays_record_without_one_too(
    service: LinkService, gateway: FakeGateway
) -> None:
    """Webhook and XPay's record both leave the sum out: the record is the bot's own read,
    not the webhook delivered again, so it settles the payment (reconciliation may)."""
    link = awaiting_payment(service)
    amountless = PaymentEvent(payment_intent_id=link.intent_id, status="succeeded")
    assert service.apply_payment(amountless).outcome == "confirming"
    gateway.pay(link.intent_id, reports_sum=False)
    run_jobs(service)
    assert load(service, link.id).status == Status.PAID.value
    assert thread_kinds(service, link.id) == ["link_ready", "paid"]


def test_reconcile_leaves_a_link_whose_intent_reports_no_sum_of_money(
    stub_service: LinkService, stub: StubGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """XPay's record with an amount beyond any sum: a warning, and the link stays unpaid."""
    link = stub_service.request_link(checkout_request(), requester_id=REP, channel_id="C1")
    stub_service.approve(link.id, APPROVER)
    stub.reply = Reply(
        200,
        b'{"success":true,"data":{"_id":"xpay_pi_stub1","pi_status":"succeeded",'
        b'"amount":1e900000000,"currency":"PKR"}}',
    )
    with stub_service.store.transaction() as s:
        stub_service.store.update_fields(
            s, link.id, reconcile_after=utcnow() - timedelta(seconds=1)
        )
    with caplog.at_level(logging.WARNING, logger="bot.links"):
        assert Periodic(stub_service).reconcile() == 0
    assert load(stub_service, link.id).status == Status.AWAITING_PAYMENT.value
    assert thread_kinds(stub_service, link.id) == ["link_ready"]
    assert "amount that is not a finite number" in caplog.text


def test_reconcile_finds_a_second_attempt_paid_after_a_failed_one(
    service: LinkService, gateway: FakeGateway
) -> None:
    """A declined card then a successful retry on the same page: if that webhook is lost,
    reconciliation still turns Payment failed into Paid."""
    link = awaiting_payment(service)
    assert service.apply_payment(payment_event(link.intent_id, "failed")).outcome == "applied"
    gateway.pay(link.intent_id)
    with service.store.transaction() as s:
        service.store.update_fields(s, link.id, reconcile_after=utcnow() - timedelta(seconds=1))
    assert Periodic(service).reconcile() == 1
    paid = load(service, link.id)
    assert [h.to_status for h in paid.history][-2:] == ["payment_failed", "paid"]


def test_a_card_looks_for_an_earlier_post_only_when_a_card_job_was_attempted(
    service: LinkService,
) -> None:
    """Two card jobs of an unposted card claimed in one pass run as one: the claim marking
    the older is no attempt, so the first post does not ask Slack's history (a call a minute
    for many apps) for a card nobody tried to post. After a failed try it must ask."""
    link = service.request_link(checkout_request(), requester_id=REP, channel_id="C0APPROVALS")
    with service.store.transaction() as s:
        service.queue.enqueue(s, link, JobKind.CARD)
    (older, _), (newer, _) = service.queue.claim(10)
    assert not service.queue.attempted_before(newer)
    service.queue.retry(older, 0, "slack error 500")
    assert service.queue.attempted_before(newer)
