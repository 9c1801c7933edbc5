"""Expiry and renewal: a checkout link unpaid for PAYLINK_LINK_TTL makes its link Expired;
Renew makes a new checkout link (``REF-2``, ``REF-3`` …) for the same request; a payment on
any of a link's checkout links marks it Paid, and a second one is flagged for a refund.

The link service with XPay in memory (tests/fakes.py) and the job runner on the same
database; time passing is a due time moved into the past. End to end: test_slack_flow.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, select, update

from bot import commands
from bot.config import load_settings
from bot.db import utcnow
from bot.links.followup import Inline, Queued, QueuedWork
from bot.links.intake import JobIntake
from bot.links.kinds import Click, JobKind, ThreadKind, WebhookOutcome
from bot.links.outcomes import AlreadyDecided, NotAllowed
from bot.links.payments import RECONCILE
from bot.links.periodic import Periodic, release_after_restart
from bot.links.queue import JobQueue
from bot.links.runner import JobRunner
from bot.links.service import LinkService
from bot.links.states import Status
from bot.links.store import DuplicateReference, LinkStore
from bot.links.tables import Job, Link
from bot.links.workspaces import Workspace
from bot.slack import blocks as b
from bot.slack.blocks.home import EXPIRING_WITHIN
from bot.slack.finding import Asker, Finder
from bot.xpay.client import CheckoutCreated, XPayRejected
from tests.dbs import BACKENDS, migrated_engine
from tests.factories import checkout_request, payment_event
from tests.fakes import FakeGateway

REP, APPROVER, OUTSIDER = "U0REP", "U0APPROVER", "U0OUTSIDER"
HOME = Workspace("T0HOME")
TTL = timedelta(hours=1)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LinkStore]:
    with migrated_engine(request.param, tmp_path) as engine:
        yield LinkStore(engine)


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


def make_service(store: LinkStore, gateway: FakeGateway) -> LinkService:
    """Inline and synchronous: a decision returns once XPay has answered."""
    return LinkService(store, gateway, is_approver=APPROVER.__eq__, link_ttl_for=lambda _team: TTL)


@pytest.fixture
def service(store: LinkStore, gateway: FakeGateway) -> LinkService:
    return make_service(store, gateway)


def load(service: LinkService, link_id: int) -> Link:
    with service.store.reading() as s:
        link = service.store.get(s, link_id)
        assert link is not None
        _ = link.history
        return link


def jobs(service: LinkService, link_id: int, kind: JobKind) -> list[Job]:
    with service.store.reading() as s:
        return list(
            s.scalars(select(Job).where(Job.link_id == link_id, Job.kind == kind).order_by(Job.id))
        )


def replies(service: LinkService, link_id: int, kind: ThreadKind) -> list[dict]:
    """The payloads of the thread replies of ``kind`` queued for the link."""
    return [j.payload for j in jobs(service, link_id, JobKind.THREAD) if j.payload["kind"] == kind]


def awaiting_payment(service: LinkService, **fields: str) -> Link:
    link = service.request_link(
        checkout_request(**fields), requester_id=REP, channel_id="C0APPROVALS", workspace=HOME
    )
    service.approve(link.id, APPROVER)
    return load(service, link.id)


def run_jobs(service: LinkService, store: LinkStore | None = None) -> int:
    """One pass of a job runner on ``store`` (by default the service's): the service's own
    jobs done, Slack's taken as delivered. Returns how many jobs were claimed."""
    work = QueuedWork(service, Inline(), tell=lambda *_: None)
    handlers = dict.fromkeys(JobKind, lambda job, link: None) | work.handlers()
    return JobRunner(JobQueue(store or service.store), handlers).run_once()


def time_passes(store: LinkStore) -> None:
    """Every timer falls due (as if the TTL had passed)."""
    past = utcnow() - timedelta(seconds=1)
    with store.transaction() as s:
        s.execute(update(Job).where(Job.kind == JobKind.EXPIRE.value).values(next_attempt_at=past))


def expired(service: LinkService, **fields: str) -> Link:
    link = awaiting_payment(service, **fields)
    time_passes(service.store)
    run_jobs(service)
    link = load(service, link.id)
    assert link.status == Status.EXPIRED.value
    return link


def moves(link: Link) -> list[tuple[str | None, str, str, str | None]]:
    return [(r.from_status, r.to_status, r.actor, r.reason) for r in link.history]


# Expiry ---------------------------------------------------------------------------------------


def test_an_unpaid_link_expires_when_its_timer_falls_due_and_not_before(
    service: LinkService,
) -> None:
    link = awaiting_payment(service)
    assert link.expires_at is not None
    assert timedelta(minutes=59) < link.expires_at - utcnow() <= TTL
    [timer] = jobs(service, link.id, JobKind.EXPIRE)
    assert timer.next_attempt_at == link.expires_at
    assert timer.dedupe_key == f"expire:{link.id}:{link.reference}"

    run_jobs(service)
    assert load(service, link.id).status == Status.AWAITING_PAYMENT.value

    time_passes(service.store)
    run_jobs(service)
    link = load(service, link.id)
    assert link.status == Status.EXPIRED.value
    assert moves(link)[-1] == (
        "awaiting_payment",
        "expired",
        "paylink",
        f"checkout link {link.reference} expired unpaid",
    )
    assert len(replies(service, link.id, ThreadKind.EXPIRED)) == 1
    assert all(timer.done_at for timer in jobs(service, link.id, JobKind.EXPIRE))


def test_a_failed_payment_expires_too_but_a_paid_link_does_not(service: LinkService) -> None:
    failed = awaiting_payment(service)
    service.apply_payment(payment_event(failed.intent_id, "failed"))
    paid = awaiting_payment(service)
    service.apply_payment(payment_event(paid.intent_id))
    time_passes(service.store)
    run_jobs(service)
    assert load(service, failed.id).status == Status.EXPIRED.value
    assert load(service, paid.id).status == Status.PAID.value


def test_expiry_across_a_worker_restart_happens_once(
    store: LinkStore, gateway: FakeGateway
) -> None:
    """A worker claims the due timer and dies before doing it; the next worker, a process
    of its own on the same database, expires the link once, and nothing more happens."""
    service = make_service(store, gateway)
    link = awaiting_payment(service)
    time_passes(store)
    [(claimed, _)] = [c for c in JobQueue(store).claim(10) if c[0].kind == JobKind.EXPIRE]
    assert load(service, link.id).status == Status.AWAITING_PAYMENT.value  # it died here

    restarted = LinkStore(store.engine)  # the next process
    if not restarted.is_postgres:  # SQLite: the file's only user releases what the dead held
        release_after_restart(restarted)
    else:  # PostgreSQL: the claim's lease runs out
        with restarted.transaction() as s:
            s.execute(update(Job).where(Job.id == claimed.id).values(claimed_until=utcnow()))
    again = make_service(restarted, gateway)
    run_jobs(again)
    run_jobs(again)
    link = load(again, link.id)
    assert [m[1] for m in moves(link)].count("expired") == 1
    assert len(replies(again, link.id, ThreadKind.EXPIRED)) == 1
    [timer] = jobs(again, link.id, JobKind.EXPIRE)
    assert timer.done_at is not None


# Renewal --------------------------------------------------------------------------------------


def test_renew_makes_a_new_checkout_link_with_the_next_reference(
    service: LinkService, gateway: FakeGateway
) -> None:
    link = expired(service)
    renewed = service.renew(link.id, REP, origin=HOME)
    assert renewed.status == Status.CREATING_LINK.value  # inline: XPay is called next

    link = load(service, link.id)
    assert link.status == Status.AWAITING_PAYMENT.value
    assert gateway.creates[-1]["metadata"]["order_reference"] == f"{link.reference}-2"
    assert gateway.creates[-1]["amount"] == gateway.creates[0]["amount"]
    assert (link.intent_id, link.checkout_reference) == ("xpay_pi_2", f"{link.reference}-2")
    assert link.decided_by == APPROVER  # the same amount: no new approval
    assert link.expires_at is not None and link.expires_at > utcnow() + timedelta(minutes=59)
    assert moves(link)[-2:] == [
        ("expired", "creating_link", REP, "renewed"),
        ("creating_link", "awaiting_payment", "xpay", f"new checkout link {link.reference}-2"),
    ]
    [reply] = replies(service, link.id, ThreadKind.LINK_RENEWED)
    assert reply["reference"] == f"{link.reference}-2"
    assert reply["url"] == "https://checkout.example.test/xpay_pi_2"
    assert [t.dedupe_key for t in jobs(service, link.id, JobKind.EXPIRE)] == [
        f"expire:{link.id}:{link.reference}",
        f"expire:{link.id}:{link.reference}-2",
    ]

    # The earlier timer no longer expires it; the new one does, and Renew gives -3.
    run_jobs(service)
    assert load(service, link.id).status == Status.AWAITING_PAYMENT.value
    time_passes(service.store)
    run_jobs(service)
    service.renew(link.id, APPROVER, origin=HOME)
    assert load(service, link.id).checkout_reference == f"{link.reference}-3"
    with service.store.reading() as s:
        references = [i.reference for i in service.store.intents_of(s, link.id)]
    assert references == [link.reference, f"{link.reference}-2", f"{link.reference}-3"]


def test_renew_by_anyone_else_is_refused_and_changes_nothing(
    service: LinkService, gateway: FakeGateway
) -> None:
    link = expired(service)
    with pytest.raises(NotAllowed, match="Only the rep who asked for this link or an approver"):
        service.renew(link.id, OUTSIDER, origin=HOME)
    refusal = service.decide_click(Click.RENEW, link.id, OUTSIDER, HOME)
    assert refusal and "can renew it" in refusal
    assert load(service, link.id).version == link.version
    assert len(gateway.creates) == 1


def test_a_double_renew_makes_one_new_link(service: LinkService, gateway: FakeGateway) -> None:
    link = expired(service)
    assert service.decide_click(Click.RENEW, link.id, REP, HOME) is None
    second = service.decide_click(Click.RENEW, link.id, APPROVER, HOME)
    assert second == "Nothing changed: this request is already awaiting payment."
    assert len(gateway.creates) == 2
    assert len(replies(service, link.id, ThreadKind.LINK_RENEWED)) == 1
    with pytest.raises(AlreadyDecided):
        service.renew(link.id, REP)


def test_a_renewal_skips_a_reference_another_link_has_and_keeps_64_characters(
    service: LinkService, gateway: FakeGateway
) -> None:
    awaiting_payment(service, order_reference="INV-7-2")
    link = expired(service, order_reference="INV-7")
    service.renew(link.id, REP)
    assert load(service, link.id).checkout_reference == "INV-7-3"
    # A new request may not take a reference a renewal uses (the form says so first).
    assert service.reference_used("INV-7-3") and not service.reference_used("INV-7-4")
    with pytest.raises(DuplicateReference):
        service.request_link(
            checkout_request(order_reference="INV-7-3"), requester_id=REP, channel_id="C0A"
        )

    long = expired(service, order_reference="L" * 64)
    service.renew(long.id, REP)
    assert gateway.creates[-1]["metadata"]["order_reference"] == "L" * 62 + "-2"


def test_a_failed_renewal_is_retried_with_the_same_reference(
    service: LinkService, gateway: FakeGateway
) -> None:
    link = expired(service)
    gateway.fail_next(XPayRejected("Store disabled", 400))
    service.renew(link.id, REP)
    assert load(service, link.id).status == Status.LINK_FAILED.value
    service.retry(link.id, APPROVER)
    link = load(service, link.id)
    assert link.status == Status.AWAITING_PAYMENT.value
    refs = [c["metadata"]["order_reference"] for c in gateway.creates]
    assert refs == [link.reference, f"{link.reference}-2", f"{link.reference}-2"]


# Payments on several checkout links -------------------------------------------------------------


def test_a_payment_on_the_earlier_link_after_renewal_marks_it_paid(
    service: LinkService,
) -> None:
    link = expired(service)
    service.renew(link.id, REP)
    result = service.apply_payment(payment_event("xpay_pi_1"))
    assert result.outcome == WebhookOutcome.APPLIED
    assert load(service, link.id).status == Status.PAID.value
    [paid] = replies(service, link.id, ThreadKind.PAID)
    assert paid["reference"] == link.reference  # "paid on the earlier checkout link"


def test_a_payment_on_an_expired_link_marks_it_paid(service: LinkService) -> None:
    link = expired(service)
    assert service.apply_payment(payment_event(link.intent_id)).outcome == WebhookOutcome.APPLIED
    link = load(service, link.id)
    assert link.status == Status.PAID.value
    assert "reference" not in replies(service, link.id, ThreadKind.PAID)[0]


def test_a_payment_while_the_renewal_is_being_created_still_counts(
    service: LinkService, gateway: FakeGateway
) -> None:
    """The customer pays the earlier link while XPay creates the new one: Paid. The new
    link, created after all, is still recorded, so a payment on it is a double payment, not
    an unknown intent."""
    link = expired(service)
    create = gateway.create_checkout

    def paid_meanwhile(payload: dict) -> CheckoutCreated:
        service.apply_payment(payment_event(link.intent_id))
        return create(payload)

    gateway.create_checkout = paid_meanwhile  # type: ignore[method-assign]
    service.renew(link.id, REP)
    assert load(service, link.id).status == Status.PAID.value
    assert len(gateway.creates) == 2
    result = service.apply_payment(payment_event("xpay_pi_2"))
    assert result.outcome == WebhookOutcome.DOUBLE_PAYMENT


def test_a_renewal_not_yet_created_when_the_earlier_link_is_paid_is_not_created(
    store: LinkStore, gateway: FakeGateway
) -> None:
    """Renewed beside a worker: Creating link until the worker takes the job. Paid on the
    earlier link meanwhile, the worker makes no new link."""
    inline = make_service(store, gateway)
    link = expired(inline)
    web = LinkService(
        store, gateway, is_approver=APPROVER.__eq__, follow_up=Queued(JobIntake(store))
    )
    web.renew(link.id, REP)
    assert load(web, link.id).status == Status.CREATING_LINK.value
    inline.apply_payment(payment_event(link.intent_id))
    run_jobs(inline)
    assert load(inline, link.id).status == Status.PAID.value
    assert len(gateway.creates) == 1


def test_payments_on_two_checkout_links_are_flagged_once_as_a_double_payment(
    service: LinkService, gateway: FakeGateway
) -> None:
    link = expired(service)
    service.renew(link.id, REP)
    assert service.apply_payment(payment_event("xpay_pi_2")).outcome == WebhookOutcome.APPLIED
    second = payment_event("xpay_pi_1")
    assert service.apply_payment(second).outcome == WebhookOutcome.DOUBLE_PAYMENT
    assert service.apply_payment(second).outcome == WebhookOutcome.DUPLICATE
    gateway.pay("xpay_pi_1")  # reconciliation reads the same payment from XPay's record
    assert service.ask_xpay(link.id, "xpay_pi_1").outcome == WebhookOutcome.STALE
    again = service.apply_payment(payment_event("xpay_pi_2"), source=RECONCILE)
    assert again.outcome == WebhookOutcome.STALE  # the first payment, read again

    link = load(service, link.id)
    assert link.status == Status.PAID.value
    [flag] = replies(service, link.id, ThreadKind.DOUBLE_PAYMENT)
    assert (flag["first"], flag["second"]) == (f"{link.reference}-2", link.reference)
    notes = [m for m in moves(link) if m[0] == m[1] == "paid"]
    assert notes == [
        (
            "paid",
            "paid",
            "webhook",
            f"paid again on {link.reference} (PKR 1,500.50; first on {link.reference}-2): "
            "refund one",
        )
    ]


def test_reconciliation_asks_about_every_unpaid_checkout_link(
    service: LinkService, gateway: FakeGateway
) -> None:
    """The customer paid the earlier link and its webhook was lost: reconciliation asks
    XPay about each of the link's checkout links, the earlier one too."""
    link = expired(service)
    service.renew(link.id, REP)
    gateway.pay("xpay_pi_1")
    with service.store.transaction() as s:
        s.execute(update(Link).values(reconcile_after=utcnow() - timedelta(seconds=1)))
    assert Periodic(service).reconcile() == 1
    assert load(service, link.id).status == Status.PAID.value


def test_a_webhook_for_the_earlier_link_is_queued_for_its_request(
    store: LinkStore, gateway: FakeGateway
) -> None:
    """Beside a worker, `serve` stores a webhook for the worker: one for an earlier checkout
    link finds its request like one for the current link."""
    link = expired(make_service(store, gateway))
    make_service(store, gateway).renew(link.id, REP)
    intake = JobIntake(store)
    web = LinkService(store, gateway, is_approver=APPROVER.__eq__, follow_up=Queued(intake))
    try:
        assert web.receive_payment(payment_event("xpay_pi_1")).outcome == WebhookOutcome.QUEUED
        assert web.receive_payment(payment_event("xpay_pi_9")).outcome == "unknown_intent"
    finally:
        intake.close()
    run_jobs(web)
    assert load(web, link.id).status == Status.PAID.value


def test_a_failure_on_the_earlier_link_does_not_touch_the_renewed_one(
    service: LinkService,
) -> None:
    link = expired(service)
    service.renew(link.id, REP)
    result = service.apply_payment(payment_event("xpay_pi_1", "failed"))
    assert result.outcome == WebhookOutcome.STALE
    assert load(service, link.id).status == Status.AWAITING_PAYMENT.value


def finder_of(service: LinkService) -> Finder:
    """What answers /paylink list|find|status and App Home, on ``service``'s links."""
    return Finder(
        service.store,
        currencies_for=lambda _team: ["PKR"],
        timezone=ZoneInfo("Asia/Karachi"),
        allow_self_approval=False,
        permalink=lambda _channel, _ts, _url: None,
    )


# What people see ------------------------------------------------------------------------------


def test_app_home_lists_the_links_expiring_within_a_day(service: LinkService) -> None:
    soon = awaiting_payment(service)
    later = awaiting_payment(service)
    with service.store.transaction() as s:
        service.store.update_fields(s, later.id, expires_at=utcnow() + timedelta(days=3))
    with service.store.reading() as s:
        expiring = service.store.expiring_for(s, REP, utcnow() + EXPIRING_WITHIN)
        assert [link.id for link in expiring] == [soon.id]
        assert service.store.expiring_for(s, OUTSIDER, utcnow() + EXPIRING_WITHIN) == []
    finder = finder_of(service)
    view = b.home_view(finder.home(Asker(REP, HOME, False), b.HomeState()))
    ids = [block.get("block_id") for block in view["blocks"]]
    assert ids.index("expiring_title") < ids.index(f"expiring_{soon.id}") < ids.index("mine_title")
    assert f"expiring_{later.id}" not in ids
    row = next(bl for bl in view["blocks"] if bl.get("block_id") == f"expiring_{soon.id}")
    assert ":hourglass: expires <!date^" in row["text"]["text"]
    outsider = b.home_view(finder.home(Asker(OUTSIDER, HOME, False), b.HomeState()))
    assert "expiring_title" not in str(outsider)


def test_a_renewals_reference_finds_its_link_within_its_workspace_only(
    service: LinkService,
) -> None:
    """Customers and XPay's portal quote the checkout link's reference (``REF-2``):
    ``/paylink status`` and ``/paylink find`` find the request by it, as typed or in small
    letters, and only in the request's own workspace."""
    link = expired(service)
    service.renew(link.id, REP, origin=HOME)
    elsewhere = Workspace("T0ELSE")
    foreign = service.request_link(
        checkout_request(), requester_id=REP, channel_id="C0ELSE", workspace=elsewhere
    )
    service.approve(foreign.id, APPROVER, origin=elsewhere)
    service.expire(foreign.id, load(service, foreign.id).intent_id)
    service.renew(foreign.id, REP, origin=elsewhere)
    renewal, foreign_renewal = f"{link.reference}-2", f"{foreign.reference}-2"
    assert load(service, foreign.id).checkout_reference == foreign_renewal
    finder = finder_of(service)

    for asker in (Asker(REP, HOME, False), Asker(APPROVER, HOME, True)):
        for typed in (renewal, renewal.lower()):
            text, blocks = finder.show_status(asker, [typed])
            assert text == f"{link.reference}: Awaiting payment", text
            assert f"{renewal}: created " in str(blocks)
        text, blocks = finder.find_links(asker, [renewal])
        assert text.startswith("1 link(s) matching"), text
        assert f"*{link.reference}*" in str(blocks)

    # Another workspace's renewal is not found from here, even by an approver.
    text, _ = finder.show_status(Asker(APPROVER, HOME, True), [foreign_renewal])
    assert text == f"No link with reference `{foreign_renewal}`."
    text, _ = finder.find_links(Asker(APPROVER, HOME, True), [foreign_renewal])
    assert text.startswith("No link matches"), text
    text, _ = finder.show_status(Asker(REP, elsewhere, False), [foreign_renewal])
    assert text == f"{foreign.reference}: Awaiting payment"
    # Someone else's link stays someone else's for a rep.
    text, _ = finder.show_status(Asker(OUTSIDER, HOME, False), [renewal])
    assert text == f"No link with reference `{renewal}` among your links."


def test_the_cli_status_shows_expiry_renewals_and_a_double_payment(
    service: LinkService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if service.store.is_postgres:
        pytest.skip("the command's own database: SQLite is enough")
    link = expired(service)
    service.renew(link.id, REP)
    service.apply_payment(payment_event("xpay_pi_2"))
    service.apply_payment(payment_event("xpay_pi_1"))
    settings = load_settings(_env_file=None, database_url=str(service.store.engine.url))
    assert commands.status(settings, f"{link.reference}-2") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{link.reference}: Paid\n")
    assert f"  {link.reference}: created " in out and f"  {link.reference}-2: created " in out
    for line in (
        f"Awaiting payment → Expired by paylink (checkout link {link.reference} expired unpaid)",
        f"Expired → Creating link by {REP} (renewed)",
        f"Creating link → Awaiting payment by xpay (new checkout link {link.reference}-2)",
        f"Paid: paid again on {link.reference}",
    ):
        assert line in out, out


def test_the_card_says_when_the_link_expires_and_that_an_earlier_one_may_still_work(
    service: LinkService,
) -> None:
    def status_text(link: Link) -> str:
        _, blocks = b.card(load(service, link.id))
        return next(bl["text"]["text"] for bl in blocks if bl.get("block_id") == "status")

    link = awaiting_payment(service)
    assert "The checkout link expires <!date^" in status_text(link)
    link = expired(service)
    text = status_text(link)
    assert "expired <!date^" in text and "Renew creates a new one" in text
    assert "the expired one may still work" in text
    service.renew(link.id, REP)
    text = status_text(link)
    assert f"the current checkout link is {link.reference}-2" in text
    assert "the earlier one may still work" in text
    _, reply = b.thread_reply(
        load(service, link.id), ThreadKind.LINK_RENEWED, {"reference": "<!here>"}
    )
    assert "&lt;!here&gt;" in str(reply) and "(XPay returned no address)" in str(reply)


def test_links_from_before_expiry_get_their_timer(service: LinkService) -> None:
    """Links awaiting payment when expiry arrived (migration 0008 gives them none) expire
    PAYLINK_LINK_TTL after their creation, at once when that has passed; once each."""
    old, recent = awaiting_payment(service), awaiting_payment(service)
    with service.store.transaction() as s:
        s.execute(delete(Job).where(Job.kind == JobKind.EXPIRE.value))
        s.execute(update(Link).values(expires_at=None))
        service.store.update_fields(s, old.id, created_at=utcnow() - 2 * TTL)
    assert Periodic(service).run_once()["expiries"] == 2
    assert service.schedule_missing_expiries() == 0
    run_jobs(service)
    assert load(service, old.id).status == Status.EXPIRED.value
    recent = load(service, recent.id)
    assert recent.status == Status.AWAITING_PAYMENT.value
    assert recent.expires_at is not None and recent.expires_at > utcnow() + TTL / 2
    with service.store.reading() as s:
        assert service.store.intent(s, recent.intent_id).expires_at == recent.expires_at
