"""Concurrency on PostgreSQL: several processes/threads working on the same rows at once.

Needs PAYLINK_TEST_DATABASE_URL (skipped otherwise). Every test runs in a fresh schema of its
own (``tests.dbs``), so xdist workers never see each other's rows. Worker processes are
started with ``spawn`` (a clean interpreter each, like separate replicas) and record what they
did in tables of the test's schema, which the test then counts.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, func, select, text

from bot.db import make_engine, utcnow
from bot.links.kinds import JobKind
from bot.links.periodic import Periodic
from bot.links.queue import JobQueue
from bot.links.runner import JobRunner
from bot.links.service import LinkService, Refused
from bot.links.states import Status
from bot.links.store import DuplicateReference, LinkStore
from bot.links.tables import History, Job, Link, LinkIntent
from bot.schema import upgrade
from bot.xpay.client import CheckoutCreated, IntentDetails, XPayRejected
from tests.dbs import PG_ENV, database_url
from tests.factories import checkout_request, give_intent
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.skipif(
        not os.environ.get(PG_ENV), reason=f"{PG_ENV} not set: PostgreSQL concurrency tests skipped"
    ),
    pytest.mark.pg,
]

PROCESSES = 4
CHANNEL = "C0APPROVALS"
APPROVER = "U0APPROVER"
REP = "U0REP"
WORKER_TIMEOUT = 90.0


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    """(URL, engine) of a fresh schema migrated by Alembic; the URL is for child processes."""
    with database_url("postgresql", tmp_path) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            yield url, engine
        finally:
            engine.dispose()


def run_processes(target: Any, args: tuple[Any, ...], n: int = PROCESSES) -> None:
    """Start ``n`` spawned processes on ``target(*args, barrier)`` and wait for all of them."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=target, args=(*args, barrier), daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + WORKER_TIMEOUT
    try:
        for p in procs:
            p.join(max(deadline - time.monotonic(), 0.1))
        stuck = [p.pid for p in procs if p.is_alive()]
        assert not stuck, f"worker processes still running after {WORKER_TIMEOUT}s: {stuck}"
        codes = [p.exitcode for p in procs]
        assert codes == [0] * n, f"worker exit codes {codes}"
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)


# 1. Job runners in several processes ------------------------------------------------------


def _runner_worker(url: str, barrier: Any) -> None:
    """One replica's job runner: deliver() records (job id, pid) in ``deliveries``."""
    engine = make_engine(url)
    store = LinkStore(engine)
    pid = os.getpid()

    def deliver(job: Job, link: Link) -> None:
        assert link.channel_id is not None and job.kind == "thread"
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO deliveries (message_id, pid) VALUES (:m, :p)"),
                {"m": job.id, "p": pid},
            )
        time.sleep(0.001)  # a Slack call takes a while: widen the window for overlaps

    runner = JobRunner(JobQueue(store), {kind: deliver for kind in JobKind})

    def all_done() -> bool:
        """Run while there is something to claim; then, are the others' claims done?"""
        while runner.run_once(limit=5):
            pass
        with store.reading() as s:
            return not s.scalar(select(func.count(Job.id)).where(Job.done_at.is_(None)))

    barrier.wait(timeout=60)
    try:
        wait_until(all_done, 60, interval=0.01)
    finally:
        engine.dispose()


@pytest.mark.integration  # processes
@pytest.mark.slow
def test_job_runners_in_four_processes_run_each_job_once(
    pg: tuple[str, Engine],
) -> None:
    url, engine = pg
    store = LinkStore(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE deliveries (message_id integer, pid integer)"))
    with store.transaction() as s:
        for n in range(20):
            link = store.insert_link(
                s,
                checkout_request(order_reference=f"OUT-{n}"),
                requester_id=REP,
                actor=REP,
                channel_id=CHANNEL,
            )
            for m in range(10):
                JobQueue(store).enqueue(
                    s, link, "thread", payload={"kind": "note"}, dedupe_key=f"t:{link.id}:{m}"
                )
    with store.reading() as s:
        ids = set(s.scalars(select(Job.id)))
    assert len(ids) == 200

    run_processes(_runner_worker, (url,))

    with engine.connect() as conn:
        rows = conn.execute(text("SELECT message_id, pid FROM deliveries")).all()
    delivered = [r.message_id for r in rows]
    per_pid: dict[int, int] = {}
    for r in rows:
        per_pid[r.pid] = per_pid.get(r.pid, 0) + 1
    duplicates = sorted({m for m in delivered if delivered.count(m) > 1})
    assert not duplicates, f"delivered more than once: {duplicates}"
    assert set(delivered) == ids
    assert len(delivered) == 200
    with store.reading() as s:
        pending = s.scalar(select(func.count(Job.id)).where(Job.done_at.is_(None)))
        attempts = set(s.scalars(select(Job.attempts)))
    assert pending == 0
    assert attempts == {1}
    # Not a correctness condition, but the test means nothing if one process did it all.
    assert len(per_pid) >= 2, per_pid
    print(f"jobs: {len(delivered)} runs of {len(ids)} jobs; per process {per_pid}")


# 2. Reconciliation in several processes ------------------------------------------------------


class RecordingGateway:
    """Stands in for XPay (which tests cannot reach): every intent has succeeded.

    ``get_intent`` records (intent id, pid) in ``intent_calls``; create is never expected.
    """

    def __init__(self, engine: Engine):
        self.engine = engine

    def create_checkout(self, payload: dict) -> CheckoutCreated:
        raise AssertionError("reconcile must not create links")

    def get_intent(self, intent_id: str) -> IntentDetails:
        with self.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO intent_calls (intent_id, pid) VALUES (:i, :p)"),
                {"i": intent_id, "p": os.getpid()},
            )
        time.sleep(0.002)  # XPay takes a while to answer: widen the window for overlaps
        return IntentDetails(
            intent_id=intent_id,
            status="succeeded",
            amount=Decimal("1500.50"),
            currency="PKR",
            raw={},
        )


def _reconcile_worker(url: str, barrier: Any) -> None:
    engine = make_engine(url)
    store = LinkStore(engine)
    service = LinkService(store, RecordingGateway(engine), is_approver=lambda u: u == APPROVER)
    periodic = Periodic(service)
    barrier.wait(timeout=60)
    applied = 0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            applied += periodic.reconcile(limit=3)
            with store.reading() as s:
                left = s.scalar(
                    select(func.count(Link.id)).where(
                        Link.status == Status.AWAITING_PAYMENT.value,
                        Link.reconcile_after <= utcnow(),
                    )
                )
            if not left:
                with engine.begin() as conn:
                    conn.execute(
                        text("INSERT INTO reconciled (pid, applied) VALUES (:p, :a)"),
                        {"p": os.getpid(), "a": applied},
                    )
                return
        raise SystemExit(3)
    finally:
        engine.dispose()


@pytest.mark.integration  # processes
@pytest.mark.slow
def test_reconcile_in_four_processes_asks_xpay_once_per_link(pg: tuple[str, Engine]) -> None:
    url, engine = pg
    store = LinkStore(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE intent_calls (intent_id text, pid integer)"))
        conn.execute(text("CREATE TABLE reconciled (pid integer, applied integer)"))
    due_at = utcnow()
    link_ids = []
    with store.transaction() as s:
        for n in range(50):
            link = store.insert_link(
                s,
                checkout_request(order_reference=f"REC-{n}"),
                requester_id=REP,
                actor=REP,
                channel_id=CHANNEL,
                status=Status.AWAITING_PAYMENT,
            )
            give_intent(store, s, link.id, f"xpay_pi_{n:04d}", reconcile_after=due_at)
            link_ids.append(link.id)

    run_processes(_reconcile_worker, (url,))

    with engine.connect() as conn:
        calls = conn.execute(text("SELECT intent_id, pid FROM intent_calls")).all()
        applied = conn.execute(text("SELECT pid, applied FROM reconciled")).all()
    intents = [c.intent_id for c in calls]
    assert sorted(intents) == [f"xpay_pi_{n:04d}" for n in range(50)], "get_intent per link"
    assert sum(a.applied for a in applied) == 50
    assert len(applied) == PROCESSES
    assert len({c.pid for c in calls}) >= 2, "one process did all the work"
    print(f"reconcile: {len(calls)} get_intent calls; applied per process {sorted(applied)}")
    with store.reading() as s:
        statuses = set(s.scalars(select(Link.status).where(Link.id.in_(link_ids))))
        paid_moves = s.execute(
            select(History.link_id, func.count(History.id))
            .where(History.to_status == Status.PAID.value)
            .group_by(History.link_id)
        ).all()
        paid_threads = s.scalar(
            select(func.count(Job.id)).where(
                Job.kind == "thread", Job.dedupe_key.like("thread:%:paid")
            )
        )
    assert statuses == {Status.PAID.value}
    assert dict(paid_moves) == dict.fromkeys(link_ids, 1)
    assert paid_threads == 50


# 3. Twenty identical webhooks at once over HTTP ---------------------------------------------


@pytest.mark.integration  # the local stack on PostgreSQL
def test_twenty_identical_webhooks_over_http_pay_once(tmp_path: Path) -> None:
    from bot.local.stack import LocalStack
    from bot.xpay.sandbox import SandboxIntent, sandbox_webhook_payload
    from bot.xpay.signing import js_stringify, sign

    with (
        database_url("postgresql", tmp_path) as url,
        LocalStack(database_url=url, workdir=tmp_path, threads=24) as stack,
    ):
        service, store = stack.runtime.service, stack.runtime.store
        link = service.request_link(
            checkout_request(order_reference="HOOK-1"),
            requester_id=REP,
            channel_id=stack.settings.paylink_approval_channel,
        )
        service.approve(link.id, APPROVER)  # creates the link at the sandbox in the pool

        def created() -> Link | None:
            with store.reading() as s:
                current = store.get(s, link.id)
                assert current is not None
            if current.status == Status.AWAITING_PAYMENT.value:
                return current
            assert current.status == Status.CREATING_LINK.value, current.status
            return None

        current = wait_until(created, 30, message="link never created at the sandbox")
        with store.sessions() as s:
            intent = s.get(SandboxIntent, current.intent_id)
            assert intent is not None
            body = js_stringify(sandbox_webhook_payload(intent, "pay", "card"))
        signature = sign(stack.webhook_secret, body)

        start = threading.Barrier(20)

        def post(_: int) -> tuple[int, Any]:
            with requests.Session() as http:
                start.wait(timeout=30)
                r = http.post(
                    stack.base_url + "/xpay/webhook",
                    data=body,
                    headers={"Content-Type": "application/json", "x-signature": signature},
                    timeout=30,
                )
            return r.status_code, r.json().get("outcome")

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(post, range(20)))

        codes = [code for code, _ in answers]
        outcomes = sorted(outcome for _, outcome in answers)
        assert codes == [200] * 20, answers
        assert outcomes == ["applied"] + ["duplicate"] * 19, outcomes
        print(f"webhooks: {codes.count(200)}x 200, {outcomes.count('applied')} applied")
        with store.reading() as s:
            paid = s.scalar(
                select(func.count(History.id)).where(
                    History.link_id == link.id, History.to_status == Status.PAID.value
                )
            )
            paid_threads = list(
                s.scalars(select(Job.payload).where(Job.link_id == link.id, Job.kind == "thread"))
            )
            final = store.get(s, link.id)
            assert final is not None
        assert paid == 1
        assert [p["kind"] for p in paid_threads].count("paid") == 1
        assert final.status == Status.PAID.value


# 4. Ten approvers clicking at once ----------------------------------------------------------


class CountingGateway:
    """Creates intents instantly and counts create calls (thread-safe)."""

    def __init__(self) -> None:
        self.creates: list[dict] = []
        self._lock = threading.Lock()

    def create_checkout(self, payload: dict) -> CheckoutCreated:
        with self._lock:
            self.creates.append(payload)
            n = len(self.creates)
        time.sleep(0.01)  # XPay takes a while to answer: the other clicks arrive meanwhile
        return CheckoutCreated(
            intent_id=f"xpay_pi_{n}", checkout_url=f"https://pay.example/{n}", status=None, raw={}
        )

    def get_intent(self, intent_id: str) -> IntentDetails:
        raise AssertionError("not expected")


def test_ten_concurrent_approvals_have_one_effect(pg: tuple[str, Engine]) -> None:
    _, engine = pg
    store = LinkStore(engine)
    gateway = CountingGateway()
    approvers = {f"U0APP{n}" for n in range(10)}
    service = LinkService(store, gateway, is_approver=approvers.__contains__)
    link = service.request_link(
        checkout_request(order_reference="APP-1"), requester_id=REP, channel_id=CHANNEL
    )
    start = threading.Barrier(10)

    def approve(user: str) -> str:
        start.wait(timeout=30)
        try:
            service.approve(link.id, user)
        except Refused:
            return "refused"
        return "approved"

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(approve, sorted(approvers)))

    assert sorted(results) == ["approved"] + ["refused"] * 9, results
    assert len(gateway.creates) == 1
    with store.reading() as s:
        moves = list(
            s.scalars(
                select(History.to_status).where(History.link_id == link.id).order_by(History.id)
            )
        )
        cards = s.scalar(
            select(func.count(Job.id)).where(Job.link_id == link.id, Job.kind == "card")
        )
        final = store.get(s, link.id)
        assert final is not None
    assert moves == [
        Status.AWAITING_APPROVAL.value,
        Status.CREATING_LINK.value,
        Status.AWAITING_PAYMENT.value,
    ]
    assert cards == 3
    assert final.status == Status.AWAITING_PAYMENT.value
    assert final.attempts == 1
    assert final.decided_by in approvers


# 5. A renewal and a new request wanting the same order reference at once -------------------


class OnceEachReference(CountingGateway):
    """Like XPay (and the sandbox gateway): an order reference it has seen is refused."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[str] = []

    def create_checkout(self, payload: dict) -> CheckoutCreated:
        reference = payload["metadata"]["order_reference"]
        with self._lock:
            if any(c["metadata"]["order_reference"] == reference for c in self.creates):
                self.refused.append(reference)
                raise XPayRejected("Order reference already used", 400)
        return super().create_checkout(payload)


@pytest.mark.parametrize("ahead", ["renewal", "request"])
def test_a_renewal_and_a_new_request_never_share_an_order_reference(
    pg: tuple[str, Engine], ahead: str
) -> None:
    """RACE-1 expired; its rep renews it (reserving RACE-1-2 in link_intents) while another
    rep submits a new request typed RACE-1-2 (a row of links). Each side checks the other's
    table before inserting into its own: with both checks made before either insert, both
    committed, and the second link asked of XPay under RACE-1-2 was refused, on every Retry
    too. Now exactly one gets RACE-1-2: the request is refused as a used reference (the
    modal's inline error), or the renewal takes RACE-1-3; each link is created once.
    ``ahead``: the side that starts first (by a little: both still check before either
    inserts, unless one waits for the other)."""
    _, engine = pg
    store = LinkStore(engine)
    gateway = OnceEachReference()
    service = LinkService(store, gateway, is_approver=APPROVER.__eq__)
    link = service.request_link(
        checkout_request(order_reference="RACE-1"), requester_id=REP, channel_id=CHANNEL
    )
    service.approve(link.id, APPROVER)
    assert service.expire(link.id, "xpay_pi_1") is not None

    # Widen the window between each side's check and its insert, as a busy database would.
    checked = threading.Barrier(2)

    def slow(check: Any) -> Any:
        def checking(*args: Any) -> Any:
            found = check(*args)
            with contextlib.suppress(threading.BrokenBarrierError):
                checked.wait(timeout=1)  # both have checked (or the other waits its turn)
            return found

        return checking

    store.reference_taken = slow(store.reference_taken)  # type: ignore[method-assign]
    store._renewal_uses = slow(store._renewal_uses)  # type: ignore[method-assign]
    start = threading.Barrier(2)

    def go(side: str) -> None:
        start.wait(timeout=30)
        if side != ahead:
            time.sleep(0.2)

    def renew() -> str:
        go("renewal")
        service.renew(link.id, REP)
        return "renewed"

    def request() -> Link | str:
        go("request")
        try:
            return service.request_link(
                checkout_request(order_reference="RACE-1-2"),
                requester_id="U0OTHERREP",
                channel_id=CHANNEL,
            )
        except DuplicateReference:
            return "reference in use"

    with ThreadPoolExecutor(2) as pool:
        renewed, requested = pool.submit(renew), pool.submit(request)
        assert renewed.result(timeout=60) == "renewed"
        new = requested.result(timeout=60)

    created = [link.id]
    if isinstance(new, Link):  # it took RACE-1-2 first: approved, its link is created too
        created.append(new.id)
        service.approve(new.id, APPROVER)
        if service._load(new.id).status == Status.LINK_FAILED.value:
            service.retry(new.id, APPROVER)  # as its approver would
    with store.reading() as s:
        links = [store.get(s, i) for i in created]
        intents = [i.reference for i in s.scalars(select(LinkIntent))]
    outcome = [(x.reference, x.status, x.gateway_message) for x in links if x is not None]
    assert gateway.refused == [], f"XPay refused a used order reference: {outcome}"
    assert [x[1] for x in outcome] == [Status.AWAITING_PAYMENT.value] * len(created), outcome
    sent = [c["metadata"]["order_reference"] for c in gateway.creates]
    assert new == "reference in use" if ahead == "renewal" else isinstance(new, Link)
    if new == "reference in use":
        assert links[0] is not None and links[0].checkout_reference == "RACE-1-2"
        assert sent == ["RACE-1", "RACE-1-2"]
    else:
        assert links[0] is not None and links[0].checkout_reference == "RACE-1-3"
        assert sorted(sent) == ["RACE-1", "RACE-1-2", "RACE-1-3"]
    assert sorted(intents) == sorted(sent)
    first = "the renewal" if new == "reference in use" else "the new request"
    print(f"reference race: {first} took RACE-1-2; XPay was asked for {sent}")
