"""Reminders and the daily digest, in process: when a reminder is due and what it says, what
the digest counts and sums, and that each happens once however many processes try.

The end-to-end runs (real HTTP, the Slack stand-in, the sandbox, worker processes) are in
tests/test_followup_e2e.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, func, select, text, update

from bot.commands import status as status_command
from bot.config import load_settings
from bot.db import make_engine, utcnow
from bot.links.digest import Digests, Item, Report, Sum, read_report
from bot.links.followup import Queued
from bot.links.intake import JobIntake
from bot.links.kinds import JobKind, ThreadKind
from bot.links.policy import ApprovalPolicy
from bot.links.queue import JobQueue
from bot.links.reminders import Reminders
from bot.links.runner import JobRunner
from bot.links.service import LinkService
from bot.links.states import Status
from bot.links.store import LinkStore
from bot.links.tables import Digest, History, Job, Link
from bot.links.workspaces import Workspace
from bot.local.standin import validate_blocks
from bot.schema import MIGRATIONS, require_current, upgrade
from bot.slack import blocks as b
from bot.slack.blocks.common import waited_text
from bot.xpay.client import XPayRejected
from tests.dbs import BACKENDS, database_url, migrated_engine
from tests.factories import checkout_request, insert_links, payment_event
from tests.fakes import FakeGateway
from tests.test_slack_blocks import check_message, make_link, mrkdwn_texts, nasty_link

REP, APPROVER = "U0REP", "U0APPROVER"
CHANNEL = "C0APPROVALS"
APPROVERS = [APPROVER, "S0FINANCE"]
WAIT = {Status.AWAITING_APPROVAL: timedelta(hours=4), Status.AWAITING_PAYMENT: timedelta(hours=24)}
KARACHI = ZoneInfo("Asia/Karachi")


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LinkStore]:
    with migrated_engine(request.param, tmp_path) as engine:
        yield LinkStore(engine)


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def service(store: LinkStore, gateway: FakeGateway) -> LinkService:
    return LinkService(
        store, gateway, is_approver=lambda u: u == APPROVER, remind_after_for=lambda _team: WAIT
    )


def request(service: LinkService, **fields: object) -> Link:
    link = service.request_link(checkout_request(**fields), requester_id=REP, channel_id=CHANNEL)
    with service.store.transaction() as s:  # as if the card were posted
        service.store.update_fields(s, link.id, message_ts=f"1700000000.{link.id:06d}")
    return link


def jobs(store: LinkStore, kind: JobKind) -> list[Job]:
    with store.reading() as s:
        return list(s.scalars(select(Job).where(Job.kind == kind.value).order_by(Job.id)))


def reminder_rows(store: LinkStore, link_id: int) -> list[str]:
    with store.reading() as s:
        rows = s.scalars(
            select(History).where(
                History.link_id == link_id, History.from_status == History.to_status
            )
        )
        return [row.reason or "" for row in rows]


def fall_due(store: LinkStore, link_id: int) -> Job:
    """The link's reminder timer, as the runner claims it once due (its claim is what
    runs it; here it is handed over directly)."""
    timers = [j for j in jobs(store, JobKind.REMIND) if j.link_id == link_id]
    assert timers, "no reminder queued"
    return timers[-1]


def run_reminder(reminders: Reminders, job: Job) -> None:
    with reminders.store.reading() as s:
        link = s.get(Link, job.link_id)
        s.expunge(link)
    reminders.remind(job, link)


# --- reminders ------------------------------------------------------------------------------


def test_a_request_queues_its_approvers_reminder_due_after_the_wait(
    store: LinkStore, service: LinkService
) -> None:
    before = utcnow()
    link = request(service)
    (timer,) = jobs(store, JobKind.REMIND)
    assert timer.link_id == link.id and timer.dedupe_key == f"remind-approvers:{link.id}"
    assert before + WAIT[Status.AWAITING_APPROVAL] <= timer.next_attempt_at
    assert timer.next_attempt_at <= utcnow() + WAIT[Status.AWAITING_APPROVAL]


def test_a_timer_not_due_yet_is_no_backlog(store: LinkStore, service: LinkService) -> None:
    service.request_link(checkout_request(), requester_id=REP, channel_id=CHANNEL)
    with store.reading() as s:
        count, age = JobQueue(store).backlog(s)
    assert count == 1 and age < 60  # the card; the reminder is hours away


def test_a_due_reminder_replies_once_and_is_recorded(
    store: LinkStore, service: LinkService
) -> None:
    link = request(service)
    reminders = Reminders(JobQueue(store), lambda _team: APPROVERS)
    timer = fall_due(store, link.id)
    run_reminder(reminders, timer)
    run_reminder(reminders, timer)  # the timer run again (a lease ran out): no second reply
    (reply,) = jobs(store, JobKind.THREAD)
    assert reply.payload["kind"] == ThreadKind.REMIND_APPROVERS
    assert reply.payload["approvers"] == APPROVERS
    assert reminder_rows(store, link.id) == ["reminder sent to approvers"]


def test_no_reminder_once_the_link_moved_on(store: LinkStore, service: LinkService) -> None:
    link = request(service)
    reminders = Reminders(JobQueue(store), lambda _team: APPROVERS)
    timer = fall_due(store, link.id)
    service.approve(link.id, APPROVER)  # the fake gateway creates it: awaiting payment
    run_reminder(reminders, timer)
    assert [j.payload["kind"] for j in jobs(store, JobKind.THREAD)] == ["link_ready"]
    assert reminder_rows(store, link.id) == []
    # Awaiting payment started the rep's timer, which reminds once due.
    rep_timer = fall_due(store, link.id)
    assert rep_timer.dedupe_key == f"remind-rep:{link.id}"
    run_reminder(reminders, rep_timer)
    assert reminder_rows(store, link.id) == ["reminder sent to the rep"]
    service.apply_payment(payment_event("xpay_pi_1"))
    assert [j.payload["kind"] for j in jobs(store, JobKind.THREAD)] == [
        "link_ready",
        "remind_rep",
        "paid",
    ]


def test_entering_a_status_again_queues_no_second_reminder(
    store: LinkStore, service: LinkService
) -> None:
    """A link re-entering a status (a renewed link awaits payment again) is reminded once:
    the timer's key is taken, and queueing it again changes nothing else in the transaction."""
    link = request(service)
    with store.transaction() as s:
        queued = JobQueue(store).enqueue(
            s, s.get(Link, link.id), JobKind.REMIND, dedupe_key=f"remind-approvers:{link.id}"
        )
        store.update_fields(s, link.id, customer_name="Still written")
    assert queued is False
    assert len(jobs(store, JobKind.REMIND)) == 1
    with store.reading() as s:
        assert s.get(Link, link.id).customer_name == "Still written"


def test_the_rep_s_reminder_is_about_the_current_checkout_link_once_it_has_waited(
    store: LinkStore, service: LinkService
) -> None:
    """Renewed before its reminder (the timer waiting, or passed while the link was
    expired), the wait starts again from the new checkout link, which the reminder shows
    with its own age; a link whose reminder was sent is not reminded again."""
    reminders = Reminders(JobQueue(store), lambda _team: APPROVERS)

    def run_and_finish(job: Job) -> None:  # as the job runner does
        run_reminder(reminders, job)
        JobQueue(store).finish([job])

    sent, waiting, passed = (request(service) for _ in range(3))
    for link in (sent, waiting, passed):
        service.approve(link.id, APPROVER)  # the fake gateway: xpay_pi_1, _2, _3
    run_and_finish(fall_due(store, sent.id))
    for link, intent in ((sent, "xpay_pi_1"), (waiting, "xpay_pi_2"), (passed, "xpay_pi_3")):
        service.expire(link.id, intent)
    run_and_finish(fall_due(store, passed.id))  # expired: nothing to remind of
    renewed_at = utcnow()
    for link in (sent, waiting, passed):
        service.renew(link.id, REP)
    for link in (waiting, passed):
        timer = fall_due(store, link.id)
        assert timer.done_at is None
        assert timer.next_attempt_at >= renewed_at + WAIT[Status.AWAITING_PAYMENT]
        run_reminder(reminders, timer)
    assert fall_due(store, sent.id).done_at is not None  # sent once: not restarted

    rep_replies = [
        j for j in jobs(store, JobKind.THREAD) if j.payload["kind"] == ThreadKind.REMIND_REP
    ]
    assert [j.link_id for j in rep_replies] == [sent.id, waiting.id, passed.id]
    for reply, link in zip(rep_replies[1:], (waiting, passed), strict=True):
        assert reply.payload["reference"] == f"{link.reference}-2"
        assert reply.payload["url"].startswith("https://checkout.example.test/xpay_pi_")
        assert reply.payload["waited"] < 60  # the new link's age, not the first one's
    assert rep_replies[0].payload["reference"] == sent.reference


def test_the_rep_s_timer_held_by_a_runner_during_a_renewal_is_neither_lost_nor_early(
    store: LinkStore, gateway: FakeGateway
) -> None:
    """A renewal restarts the rep's timer, but not one a runner holds. (a) Claimed while the
    renewal is in Creating link, with the renewal committing before the runner finishes
    the job; (b) claimed before the renewal committed and run after it. Either way nothing
    is posted then (no reminder lost to a timer marked done, none of REF-2 having "waited
    0 seconds"), and the timer is due again once REF-2 has waited the whole wait, when the
    rep is reminded of REF-2."""
    service = LinkService(
        store,
        gateway,
        is_approver=APPROVER.__eq__,
        follow_up=Queued(JobIntake(store)),  # the creation waits for a worker: Creating link
        remind_after_for=lambda _team: WAIT,
    )
    queue = JobQueue(store)
    reminders = Reminders(queue, lambda _team: APPROVERS, remind_after_for=lambda _team: WAIT)
    runner = JobRunner(queue, reminders.handlers(), workers=1)
    wait = WAIT[Status.AWAITING_PAYMENT]

    def create(link: Link) -> Link:  # the worker's creation job
        assert service.claim_creation(link.id)
        return service.create_at_gateway(link.id)

    def renewing() -> Link:
        link = request(service)
        service.approve(link.id, APPROVER)
        created = create(link)
        assert created.intent_id is not None
        service.expire(link.id, created.intent_id)
        return service.renew(link.id, REP)  # Creating link

    def claimed(link: Link) -> tuple[Job, Link]:
        """The rep's timer, due now, as a runner claims it (with the link as it reads it)."""
        with store.transaction() as s:
            s.execute(
                update(Job)
                .where(Job.dedupe_key == f"remind-rep:{link.id}")
                .values(next_attempt_at=utcnow() - timedelta(seconds=1))
            )
        return next((j, ln) for j, ln in queue.claim(100) if j.dedupe_key.startswith("remind-rep"))

    def rep_replies() -> list[Job]:
        return [
            j for j in jobs(store, JobKind.THREAD) if j.payload["kind"] == ThreadKind.REMIND_REP
        ]

    def timer(link: Link) -> Job:
        (job,) = [j for j in jobs(store, JobKind.REMIND) if j.dedupe_key == f"remind-rep:{link.id}"]
        return job

    # (a) Run while the renewal is under way; the renewal commits before the runner is done.
    early = renewing()
    job, seen = claimed(early)
    assert seen is not None and seen.status == Status.CREATING_LINK.value
    done = runner._run_one(job, seen)
    renewed = create(early)  # Awaiting payment again, REF-2
    if done:
        queue.finish([job])
    # (b) Claimed before the renewal committed, run after it.
    late = renewing()
    job, seen = claimed(late)
    create(late)
    if runner._run_one(job, seen):
        queue.finish([job])
    runner.stop()

    assert [j.payload for j in rep_replies()] == []  # nothing yet: REF-2 has not waited
    for link in (early, late):
        with store.reading() as s:
            now = store.get(s, link.id)
            intent = store.intent(s, now.intent_id)
        held = timer(link)
        assert now.status == Status.AWAITING_PAYMENT.value
        assert held.done_at is None and held.claimed_until is None  # not lost
        assert held.next_attempt_at >= intent.created_at + wait  # not early
        assert held.next_attempt_at <= utcnow() + wait
    assert renewed.checkout_reference == f"{early.reference}-2"

    # A day later (REF-2 made a day ago): the timers fall due and remind of REF-2.
    for link in (early, late):
        with store.transaction() as s:
            store.update_intent(
                s,
                store.get(s, link.id).intent_id,
                created_at=utcnow() - wait - timedelta(minutes=1),
            )
        job, seen = claimed(link)
        run_reminder(reminders, job)
    assert [(j.link_id, j.payload["reference"]) for j in rep_replies()] == [
        (early.id, f"{early.reference}-2"),
        (late.id, f"{late.reference}-2"),
    ]
    assert all(j.payload["waited"] >= wait.total_seconds() for j in rep_replies())


def test_no_approvers_no_approvers_reminder(store: LinkStore, service: LinkService) -> None:
    link = request(service)
    run_reminder(Reminders(JobQueue(store), lambda _team: []), fall_due(store, link.id))
    assert jobs(store, JobKind.THREAD) == []


def test_the_approvers_reminder_mentions_only_who_can_still_decide(
    store: LinkStore, gateway: FakeGateway
) -> None:
    """After the first of two approvals: not that approver, not the requester (groups stay
    groups); with nobody left to mention, no reminder, as with no approvers."""
    second = "U0CFO"
    two = LinkService(
        store,
        gateway,
        is_approver={APPROVER, second}.__contains__,
        remind_after_for=lambda _team: WAIT,
        policy_for=lambda _team: ApprovalPolicy(second_from={"PKR": Decimal(1000)}),
    )
    waiting, nobody_left = request(two), request(two)
    for link in (waiting, nobody_left):
        two.approve(link.id, APPROVER)  # the first of two
    everyone = [APPROVER, REP, second, "S0FINANCE"]
    run_reminder(Reminders(JobQueue(store), lambda _team: everyone), fall_due(store, waiting.id))
    run_reminder(
        Reminders(JobQueue(store), lambda _team: [APPROVER, REP]), fall_due(store, nobody_left.id)
    )
    (reply,) = [
        j for j in jobs(store, JobKind.THREAD) if j.payload["kind"] == ThreadKind.REMIND_APPROVERS
    ]
    assert reply.link_id == waiting.id
    assert reply.payload["approvers"] == [second, "S0FINANCE"]
    assert reply.payload["approved_by"] == [APPROVER]
    assert "reminder sent to approvers" not in reminder_rows(store, nobody_left.id)


def test_with_self_approval_the_requester_who_approves_is_reminded_of_their_own_request(
    store: LinkStore, gateway: FakeGateway
) -> None:
    """PAYLINK_ALLOW_SELF_APPROVAL lets an approver decide their own request that needs one
    approval: its reminder mentions them (the only approver here), as it would anyone who
    can decide, though they are its only approver. A request needing two approvals never
    counts the requester; without
    self-approval, nobody is left and no reminder comes."""
    second = "U0CFO"
    service = LinkService(
        store,
        gateway,
        is_approver={REP, second}.__contains__,
        allow_self_approval=True,
        remind_after_for=lambda _team: WAIT,
        policy_for=lambda _team: ApprovalPolicy(second_from={"PKR": Decimal(100_000)}),
    )
    own, big, other = request(service), request(service, amount=Decimal(150_000)), request(service)
    alone = Reminders(JobQueue(store), lambda _team: [REP], allow_self_approval=True)
    run_reminder(alone, fall_due(store, own.id))
    two = Reminders(JobQueue(store), lambda _team: [REP, second], allow_self_approval=True)
    run_reminder(two, fall_due(store, big.id))
    run_reminder(Reminders(JobQueue(store), lambda _team: [REP]), fall_due(store, other.id))

    replies = {
        j.link_id: j
        for j in jobs(store, JobKind.THREAD)
        if j.payload["kind"] == ThreadKind.REMIND_APPROVERS
    }
    assert set(replies) == {own.id, big.id}
    with store.reading() as s:
        link = s.get(Link, own.id)
        s.expunge(link)
    _, blocks = b.thread_reply(link, ThreadKind.REMIND_APPROVERS, replies[own.id].payload)
    assert ":bell: <@U0REP> this request has waited" in "\n".join(mrkdwn_texts(blocks))
    assert replies[big.id].payload["approvers"] == [second]  # two approvals: others only
    assert "reminder sent to approvers" not in reminder_rows(store, other.id)


def test_status_shows_the_reminders(
    gateway: FakeGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with migrated_engine("sqlite", tmp_path) as engine:
        store = LinkStore(engine)
        service = LinkService(store, gateway, is_approver=bool, remind_after_for=lambda _team: WAIT)
        _status_shows_the_reminders(store, service, capsys)


def _status_shows_the_reminders(
    store: LinkStore, service: LinkService, capsys: pytest.CaptureFixture[str]
) -> None:
    link = request(service)
    run_reminder(Reminders(JobQueue(store), lambda _team: APPROVERS), fall_due(store, link.id))
    settings = load_settings(_env_file=None, database_url=str(store.engine.url))
    assert status_command(settings, link.reference) == 0
    out = capsys.readouterr().out
    assert "Awaiting approval: reminder sent to approvers (by paylink)" in out


def test_reminder_replies_mention_who_is_waited_for() -> None:
    approvers = {"approvers": APPROVERS, "waited": 4 * 3600 + 120}
    text, blocks = b.thread_reply(make_link(), ThreadKind.REMIND_APPROVERS, approvers)
    reply = "\n".join(mrkdwn_texts(blocks))
    assert "<@U0APPROVER> <!subteam^S0FINANCE>" in reply
    assert "waited 4 hours 2 minutes for approval" in reply and "PKR 1,500.50" in reply
    assert "Requested by <@U0REP>" in reply
    assert validate_blocks(blocks, surface="message") == []

    second = {"approvers": ["U0CFO"], "approved_by": [APPROVER], "waited": 3600}
    text, blocks = b.thread_reply(make_link(), ThreadKind.REMIND_APPROVERS, second)
    reply = "\n".join(mrkdwn_texts(blocks))
    assert reply.startswith(":bell: <@U0CFO> this request has waited 1 hour for a second approver")
    assert "Approved by <@U0APPROVER>: one more approval creates the link." in reply
    assert text == "Reminder: a request of PKR 1,500.50 has waited 1 hour for a second approver"

    text, blocks = b.thread_reply(
        make_link(Status.AWAITING_PAYMENT), ThreadKind.REMIND_REP, {"waited": 86400}
    )
    reply = "\n".join(mrkdwn_texts(blocks))
    assert "<@U0REP> the checkout link has waited 1 day for payment" in reply
    assert "<https://xstak-pay.xstak.com/checkout/pi_1?a=1&amp;b=2>" in reply
    renewed = {"waited": 7200, "reference": "PL-1-2", "url": "https://xstak-pay.xstak.com/c/pi_2"}
    text, blocks = b.thread_reply(
        make_link(Status.AWAITING_PAYMENT, reference="PL-1"), ThreadKind.REMIND_REP, renewed
    )
    reply = "\n".join(mrkdwn_texts(blocks))
    assert "<@U0REP> the checkout link PL-1-2 has waited 2 hours for payment: " in reply
    assert "<https://xstak-pay.xstak.com/c/pi_2>" in reply and "pi_1" not in reply
    for kind, status in (
        (ThreadKind.REMIND_APPROVERS, Status.AWAITING_APPROVAL),
        (ThreadKind.REMIND_REP, Status.AWAITING_PAYMENT),
    ):
        check_message(*b.thread_reply(nasty_link(status), kind, {"approvers": ["<!channel>"]}))


def test_waited_text() -> None:
    assert waited_text(3) == "3 seconds"
    assert waited_text(60) == "1 minute"
    assert waited_text(4 * 3600) == "4 hours"
    assert waited_text(2 * 86400 + 3 * 3600 + 5) == "2 days 3 hours"
    assert waited_text(0) == "0 seconds"


# --- the digest -----------------------------------------------------------------------------


def at_karachi(hour: int, minute: int = 0, day: int = 2) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=KARACHI).astimezone(UTC)


def digests(store: LinkStore, at: time | None = time(9, 0)) -> Digests:
    return Digests(JobQueue(store), at=at, zone=KARACHI, channel=lambda: CHANNEL)


def busy_day(service: LinkService, gateway: FakeGateway) -> dict[str, Link]:
    """Two requests waiting for approval, three links awaiting payment in two currencies,
    one paid, one whose payment failed and one XPay refused."""
    made = {
        "waiting": request(service),
        "waiting2": request(service, amount="20"),
        "pkr": request(service, amount="1000"),
        "pkr2": request(service, amount="2500.50"),
        "usd": request(service, amount="30", currency="USD", currencies=("PKR", "USD")),
        "paid": request(service, amount="400"),
        "failed": request(service, amount="50"),
        "refused": request(service, amount="60"),
    }
    for name in ("pkr", "pkr2", "usd", "paid", "failed"):
        service.approve(made[name].id, APPROVER)
    service.apply_payment(payment_event("xpay_pi_4", amount="400"))
    service.apply_payment(payment_event("xpay_pi_5", "failed", amount="50"))
    gateway.fail_next(XPayRejected("Invalid signature", 400))
    service.approve(made["refused"].id, APPROVER)
    return made


def test_the_digest_counts_sums_and_names_what_waits(
    store: LinkStore, service: LinkService, gateway: FakeGateway
) -> None:
    made = busy_day(service, gateway)
    with store.reading() as s:
        report = read_report(s, utcnow() - timedelta(days=1), utcnow())
    assert report.approval_count == 2
    assert report.approval_oldest is not None
    assert report.approval_oldest.reference == made["waiting"].reference
    assert report.payment_count == 3
    assert [(x.currency, Decimal(x.total)) for x in report.payment_sums] == [
        ("PKR", Decimal("3500.50")),
        ("USD", Decimal("30")),
    ]
    assert [i.reference for i in report.payment_oldest] == [
        made[n].reference for n in ("pkr", "pkr2", "usd")
    ]
    assert report.paid_count == 1 and report.paid_sums[0].total == "400.00"
    assert {i.reference: i.status for i in report.action} == {
        made["failed"].reference: "payment_failed",
        made["refused"].reference: "link_failed",
    }
    assert Report.from_json(json.loads(json.dumps(report.to_json()))) == report

    permalinks = {made["waiting"].id: "https://example.slack.com/archives/C0APPROVALS/p1"}
    text, blocks = b.digest(report, permalinks)
    check_message(text, blocks)
    shown = "\n".join(mrkdwn_texts(blocks))
    assert "*Awaiting approval:* 2" in shown
    assert (
        f"<https://example.slack.com/archives/C0APPROVALS/p1|{made['waiting'].reference}>" in shown
    )
    assert "*Awaiting payment:* 3, PKR 3,500.50 · USD 30" in shown
    assert "*Paid since the last digest:* 1, PKR 400" in shown
    assert f"Payment failed: {made['failed'].reference}" in shown
    assert f"Link creation failed: {made['refused'].reference}" in shown
    assert text == "Paylink digest: 2 awaiting approval, 3 awaiting payment, 1 paid, 2 need action"


def test_the_digest_lists_links_expiring_within_a_day_soonest_first(
    store: LinkStore, service: LinkService, gateway: FakeGateway
) -> None:
    made = busy_day(service, gateway)  # links approved now expire in 7 days
    now = utcnow()
    expiry = {"pkr": timedelta(hours=5), "usd": timedelta(hours=2), "failed": timedelta(hours=1)}
    with store.transaction() as s:
        for name, left in expiry.items():
            store.update_fields(s, made[name].id, expires_at=now + left)
    with store.reading() as s:
        report = read_report(s, now - timedelta(days=1), now)
    # Soonest first; the failed payment is listed under its status, not here.
    assert report.expiring_count == 2
    assert [i.reference for i in report.expiring] == [made["usd"].reference, made["pkr"].reference]
    assert Report.from_json(json.loads(json.dumps(report.to_json()))) == report

    card = "https://example.slack.com/archives/C0APPROVALS/p2"
    text, blocks = b.digest(report, {made["usd"].id: card})
    check_message(text, blocks)
    (shown,) = (x["text"]["text"] for x in blocks if x["block_id"] == "digest_expiring")
    assert shown.splitlines()[0] == ":hourglass: *Expiring within a day:* 2"
    assert shown.splitlines()[1].startswith(
        f"• <{card}|{made['usd'].reference}> USD 30, expires in 2 hours ("
    )
    assert shown.splitlines()[2].startswith(
        f"• {made['pkr'].reference} PKR 1,000, expires in 5 hours ("
    )
    assert text.endswith("2 need action, 2 expiring within a day")

    # Only expiring links: still a digest.
    alone = Report(
        since=report.since, until=report.until, expiring_count=1, expiring=report.expiring[:1]
    )
    assert not alone.empty
    assert b.digest(alone, {})[0] == "Paylink digest: 1 expiring within a day"


def test_the_digest_escapes_references_and_marks_test_links() -> None:
    link = nasty_link(Status.AWAITING_PAYMENT)
    link.sandbox = True
    item = Item.of(link, utcnow() - timedelta(hours=2))
    now = utcnow().isoformat()
    report = Report(
        since=now,
        until=now,
        payment_count=1,
        payment_sums=[Sum("PKR", "1500.50", sandbox=True)],
        payment_oldest=[item],
    )
    text, blocks = b.digest(report, {link.id: "https://x.example/p1"})
    check_message(text, blocks)
    assert ":test_tube: TEST PKR 1,500.50" in "\n".join(mrkdwn_texts(blocks))


def test_nothing_to_report_posts_nothing_but_records_the_day(store: LinkStore) -> None:
    daily = digests(store)
    assert daily.take_daily(at_karachi(9, 1)) is False
    assert jobs(store, JobKind.DIGEST) == []
    with store.reading() as s:
        (row,) = s.scalars(select(Digest))
        assert (row.key, row.channel_id) == ("2026-12-02", None)


def test_the_digest_waits_for_its_time_then_is_taken_once_a_day(
    store: LinkStore, service: LinkService, gateway: FakeGateway
) -> None:
    busy_day(service, gateway)
    daily = digests(store)
    assert daily.take_daily(at_karachi(8, 59)) is False
    assert daily.take_daily(at_karachi(9, 0)) is True
    assert daily.take_daily(at_karachi(15, 0)) is False
    assert digests(store).take_daily(at_karachi(15, 0)) is False  # another process, same day
    (job,) = jobs(store, JobKind.DIGEST)
    assert job.link_id is None and job.dedupe_key == "digest:2026-12-02"
    assert job.payload["channel"] == CHANNEL
    assert Report.from_json(job.payload["report"]).approval_count == 2
    assert digests(store, at=None).take_daily(at_karachi(9, 0, day=3)) is False  # disabled
    assert digests(store).take_daily(at_karachi(9, 0, day=3)) is True  # the next day


def test_the_channel_is_asked_for_only_when_a_digest_is_to_be_posted(
    store: LinkStore, service: LinkService, gateway: FakeGateway
) -> None:
    """Learning the approval channel may ask Slack (auth.test): a day with nothing to
    report, or a day another process took, does not ask."""
    asked: list[str] = []

    def channel() -> str:
        asked.append(CHANNEL)
        return CHANNEL

    quiet = Digests(JobQueue(store), at=time(9, 0), zone=KARACHI, channel=channel)
    assert quiet.take_daily(at_karachi(9, 0)) is False and asked == []  # nothing to report
    busy_day(service, gateway)
    daily = Digests(JobQueue(store), at=time(9, 0), zone=KARACHI, channel=channel)
    assert daily.take_daily(at_karachi(9, 0, day=3)) is True and asked == [CHANNEL]
    other = Digests(JobQueue(store), at=time(9, 0), zone=KARACHI, channel=channel)
    assert other.take_daily(at_karachi(10, 0, day=3)) is False and asked == [CHANNEL]


def test_requests_arriving_after_a_quiet_check_wait_for_their_channel(
    store: LinkStore, service: LinkService, gateway: FakeGateway
) -> None:
    """Requests arrive between the look that found nothing to report (so no channel was
    asked for) and the taking: nothing is recorded, and the next pass asks for the channel
    and posts there, not in the newest card's channel."""

    class Racing(Digests):
        def _to_post(self, day: str, now: datetime) -> bool:
            quiet = super()._to_post(day, now)
            if not jobs(store, JobKind.DIGEST) and not arrived:
                arrived.append(busy_day(service, gateway))  # right after the look
            return quiet

    arrived: list[dict[str, Link]] = []
    daily = Racing(JobQueue(store), at=time(9, 0), zone=KARACHI, channel=lambda: "C0FINANCE")
    assert daily.take_daily(at_karachi(9, 0)) is False and arrived
    with store.reading() as s:
        assert s.scalar(select(func.count()).select_from(Digest)) == 0
    assert daily.take_daily(at_karachi(9, 1)) is True
    (job,) = jobs(store, JobKind.DIGEST)
    assert job.payload["channel"] == "C0FINANCE"


def test_paid_since_the_last_digest(
    store: LinkStore, service: LinkService, gateway: FakeGateway
) -> None:
    busy_day(service, gateway)
    daily = digests(store, at=time(0, 0))  # due whenever the test runs
    assert daily.take_daily(utcnow()) is True
    report, channel = daily.read_now()
    assert report.paid_count == 0 and channel == CHANNEL  # the payment was in the last one
    service.apply_payment(payment_event("xpay_pi_1", amount="1000"))
    report, _ = daily.read_now()
    assert report.paid_count == 1 and report.paid_sums[0].total == "1000.00"


def test_without_an_approval_channel_the_newest_card_s_channel(
    store: LinkStore, service: LinkService
) -> None:
    request(service)
    elsewhere = service.request_link(checkout_request(), requester_id=REP, channel_id="C0OTHER")
    unset = Digests(JobQueue(store), at=None, zone=KARACHI, channel=lambda: None)
    report, channel = unset.read_now()
    assert channel == CHANNEL  # C0OTHER's card is not posted yet
    with store.transaction() as s:
        store.update_fields(s, elsewhere.id, message_ts="1700000001.000001")
    assert unset.read_now()[1] == "C0OTHER"


def test_two_processes_at_once_take_one_digest(
    store: LinkStore, service: LinkService, gateway: FakeGateway
) -> None:
    """Two workers' periodic passes at the same moment (their own engines): one digest."""
    busy_day(service, gateway)
    url = store.engine.url.render_as_string(hide_password=False)
    stores = [store, LinkStore(make_engine(url))]
    barrier = threading.Barrier(2)
    results: list[bool] = []

    def take(s: LinkStore) -> None:
        barrier.wait()
        results.append(digests(s).take_daily(at_karachi(9, 5)))

    threads = [threading.Thread(target=take, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(results) == [False, True]
    with store.reading() as s:
        assert s.scalar(select(func.count()).select_from(Job).where(Job.kind == "digest")) == 1
    stores[1].close()


ALPHA, BRAVO, CHARLIE = Workspace("T0ALPHA"), Workspace("T0BRAVO"), Workspace("T0CHARLIE")


def per_workspace(store: LinkStore, installed: list[Workspace], at: time = time(9, 0)) -> Digests:
    """A worker's digests in multi-workspace mode: ALPHA set its approval channel."""
    return Digests(
        JobQueue(store),
        at=at,
        zone=KARACHI,
        channel=lambda: pytest.fail("the deployment's channel is not asked"),
        installed=lambda: installed,
        channel_of=lambda w: "C0ALPHAFIN" if w == ALPHA else None,
    )


def digest_jobs(store: LinkStore) -> dict[str, Job]:
    with store.reading() as s:
        jobs = s.scalars(select(Job).where(Job.kind == JobKind.DIGEST.value))
        return {job.payload["team_id"]: job for job in jobs}


def test_with_several_workspaces_each_installed_one_gets_its_own_digest(
    store: LinkStore,
) -> None:
    """Issue 21/23: its links only, its sums, its channel; nothing to report, no post; a
    workspace not installed gets none; the day is taken once per workspace across workers,
    and one installed later that day gets its digest on the next pass."""
    for workspace, amount, count in (
        (ALPHA, "100", 2),
        (BRAVO, "7", 3),
        (Workspace("T0GONE"), "9", 1),
    ):
        insert_links(
            store,
            count,
            workspace=workspace,
            statuses=[Status.AWAITING_PAYMENT],
            prefix=workspace.team_id,
            amount=Decimal(amount),
            channel_id=f"C0{workspace.team_id}",
        )
    installed = [ALPHA, BRAVO, CHARLIE]
    worker = per_workspace(store, installed)
    assert worker.take_daily(at_karachi(8, 59)) == 0
    assert worker.take_daily(at_karachi(9, 1)) == 2  # CHARLIE has nothing to report
    assert per_workspace(store, installed).take_daily(at_karachi(9, 2)) == 0  # another worker
    jobs = digest_jobs(store)
    assert set(jobs) == {"T0ALPHA", "T0BRAVO"}
    alpha, bravo = (Report.from_json(jobs[t].payload["report"]) for t in ("T0ALPHA", "T0BRAVO"))
    assert (alpha.payment_count, alpha.payment_sums) == (2, [Sum("PKR", "200.00")])
    assert (bravo.payment_count, bravo.payment_sums) == (3, [Sum("PKR", "21.00")])
    assert {i.reference[:7] for i in alpha.named()} == {"T0ALPHA"}
    assert {i.reference[:7] for i in bravo.named()} == {"T0BRAVO"}
    assert jobs["T0ALPHA"].payload["channel"] == "C0ALPHAFIN"  # its Settings' channel
    assert jobs["T0BRAVO"].payload["channel"] == "C0T0BRAVO"  # its newest card's
    assert jobs["T0BRAVO"].dedupe_key == "digest:T0BRAVO:2026-12-02"
    with store.reading() as s:
        rows = {(d.key, d.team_id, d.channel_id) for d in s.scalars(select(Digest))}
    assert rows == {
        ("T0ALPHA:2026-12-02", "T0ALPHA", "C0ALPHAFIN"),
        ("T0BRAVO:2026-12-02", "T0BRAVO", "C0T0BRAVO"),
        ("T0CHARLIE:2026-12-02", "T0CHARLIE", None),  # recorded, not posted
    }
    installed.append(Workspace("T0GONE"))  # installed (again) later that day
    assert worker.take_daily(at_karachi(15, 0)) == 1
    assert set(digest_jobs(store)) == {"T0ALPHA", "T0BRAVO", "T0GONE"}


def test_paid_since_is_each_workspace_s_own(store: LinkStore) -> None:
    """A paid link is counted in its workspace's next digest, whenever another's was taken."""
    for workspace in (ALPHA, BRAVO):
        insert_links(
            store, 1, workspace=workspace, statuses=[Status.PAID], prefix=workspace.team_id
        )
        with store.transaction() as s:
            s.add(
                History(
                    link_id=s.scalar(select(func.max(Link.id))),
                    from_status=Status.AWAITING_PAYMENT.value,
                    to_status=Status.PAID.value,
                    actor="xpay",
                    at=utcnow() - timedelta(hours=1),
                )
            )
    daily = per_workspace(store, [ALPHA], at=time(0, 0))  # due whenever the test runs
    assert daily.take_daily(utcnow()) == 1  # ALPHA's counts it
    assert daily.read_now(workspace=ALPHA)[0].paid_count == 0  # counted in the last one
    assert daily.read_now(workspace=BRAVO)[0].paid_count == 1  # BRAVO's is still to come
    daily.record_now(daily.read_now(workspace=BRAVO)[0], "C0B", BRAVO)
    assert daily.read_now(workspace=BRAVO)[0].paid_count == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_0007_keeps_the_jobs_and_takes_the_digest_s_away_again(
    backend: str, tmp_path: Path
) -> None:
    """Jobs may lose their link (the digest's) and get it back: existing rows are kept."""

    def migrate(engine: Engine, target: str, down: bool = False) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(config, target)

    link = (
        "INSERT INTO links (reference, amount, currency, customer_name, shipping,"
        " payment_methods, requester_id, status, version, attempts, sandbox, created_at,"
        " updated_at) VALUES ('R-1', 10, 'PKR', 'A', '{}', '[]', 'U1', 'awaiting_approval', 1,"
        " 0, false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    job = (
        "INSERT INTO jobs (link_id, kind, payload, attempts, next_attempt_at, created_at)"
        " VALUES ({link}, '{kind}', '{{}}', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    with database_url(backend, tmp_path) as url:
        engine = make_engine(url)
        migrate(engine, "0005")
        with engine.begin() as conn:
            conn.execute(text(link))
            conn.execute(text(job.format(link="(SELECT id FROM links)", kind="card")))
        migrate(engine, "0007")
        with engine.begin() as conn:
            conn.execute(text(job.format(link="NULL", kind="digest")))
            assert conn.execute(text("SELECT kind FROM jobs ORDER BY id")).scalars().all() == [
                "card",
                "digest",
            ]
        migrate(engine, "0005", down=True)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT kind FROM jobs")).scalars().all() == ["card"]
        upgrade(engine)
        require_current(engine)
        engine.dispose()
