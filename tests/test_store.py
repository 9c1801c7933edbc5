"""LinkStore and JobIntake on SQLite and PostgreSQL, schema made by the Alembic migration.

PostgreSQL runs when PAYLINK_TEST_DATABASE_URL is set (each test in a schema of its own).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, func, inspect, select, text
from sqlalchemy.exc import StatementError

from bot.checkout import CheckoutRequest
from bot.links import intake as intake_module
from bot.links.intake import JobIntake
from bot.links.kinds import JobKind
from bot.links.states import TRANSITIONS, Status, can_move
from bot.links.store import DuplicateReference, IllegalMove, LinkStore
from bot.links.tables import History, Job, Link, WebhookEvent
from bot.schema import current_revision, head_revision, require_current, upgrade
from tests.dbs import BACKENDS, migrated_engine
from tests.factories import checkout_request, give_intent

LEGAL = [(src, dst) for src, targets in TRANSITIONS.items() for dst in sorted(targets)]
ILLEGAL = [(src, dst) for src in Status for dst in Status if dst not in TRANSITIONS[src]]


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with migrated_engine(request.param, tmp_path) as engine:
        yield engine


@pytest.fixture
def store(engine: Engine) -> LinkStore:
    return LinkStore(engine)


@pytest.fixture
def intake(store: LinkStore) -> Iterator[JobIntake]:
    intake = JobIntake(store)
    yield intake
    intake.close()


def checkout(reference: str | None = None) -> CheckoutRequest:
    """A request paid by card; its reference is generated unless given."""
    return checkout_request(order_reference=reference or "", payment_methods=["card"])


def new_link(store: LinkStore, status: Status = Status.AWAITING_APPROVAL, **kw: str) -> int:
    with store.transaction() as s:
        link = store.insert_link(
            s, checkout(kw.get("reference")), requester_id="U1", actor="U1", status=status
        )
        return link.id


def history(store: LinkStore, link_id: int) -> list[History]:
    with store.reading() as s:
        return list(
            s.scalars(select(History).where(History.link_id == link_id).order_by(History.id))
        )


def load(store: LinkStore, link_id: int) -> Link:
    with store.reading() as s:
        link = store.get(s, link_id)
        assert link is not None
        return link


# The migration ---------------------------------------------------------------------------


def test_migration_creates_every_table_and_is_idempotent(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert {"links", "link_history", "webhook_events", "jobs", "sandbox_intents"} <= tables
    assert current_revision(engine) == head_revision()
    require_current(engine)
    before, after = upgrade(engine)
    assert before == after == head_revision()


def test_insert_round_trip(store: LinkStore) -> None:
    with store.transaction() as s:
        link = store.insert_link(
            s, checkout("INV-1"), requester_id="U1", actor="U1", channel_id="C1"
        )
    got = load(store, link.id)
    assert got.reference == "INV-1"
    assert str(got.amount) == "1500.50"
    assert got.payment_methods == ["card"]
    assert got.shipping["city"] == ""
    assert got.status == Status.AWAITING_APPROVAL.value
    assert got.created_at.tzinfo is not None
    [row] = history(store, link.id)
    assert (row.from_status, row.to_status, row.actor) == (None, "awaiting_approval", "U1")
    with store.reading() as s:
        assert store.by_reference(s, "INV-1").id == link.id
        assert store.by_reference(s, "NOPE") is None


# Moves -----------------------------------------------------------------------------------


def test_every_legal_move_succeeds_and_writes_one_history_row(store: LinkStore) -> None:
    assert len(LEGAL) == 24
    for src, dst in LEGAL:
        link_id = new_link(store, src)
        with store.transaction() as s:
            moved = store.move(s, link_id, src, dst, actor="tester", reason=f"{src}->{dst}")
        assert moved is not None, (src, dst)
        assert moved.status == dst.value
        assert moved.version == 2
        link = load(store, link_id)
        assert link.status == dst.value and link.version == 2
        rows = history(store, link_id)
        assert len(rows) == 2, (src, dst)
        assert (rows[1].from_status, rows[1].to_status) == (src.value, dst.value)
        assert rows[1].actor == "tester" and rows[1].reason == f"{src}->{dst}"


def test_every_illegal_move_raises_and_changes_nothing(store: LinkStore) -> None:
    assert len(ILLEGAL) == len(Status) ** 2 - len(LEGAL)
    for src, dst in ILLEGAL:
        assert not can_move(src, dst)
        link_id = new_link(store, src)
        with pytest.raises(IllegalMove), store.transaction() as s:
            store.move(s, link_id, src, dst, actor="tester")
        assert load(store, link_id).status == src.value
        assert len(history(store, link_id)) == 1


def test_one_illegal_source_among_several_raises(store: LinkStore) -> None:
    link_id = new_link(store)
    with pytest.raises(IllegalMove), store.transaction() as s:
        store.move(
            s, link_id, (Status.AWAITING_APPROVAL, Status.PAID), Status.CREATING_LINK, actor="x"
        )
    assert load(store, link_id).status == Status.AWAITING_APPROVAL.value


def test_move_from_the_wrong_source_returns_none_and_changes_nothing(store: LinkStore) -> None:
    link_id = new_link(store)
    with store.transaction() as s:
        # LINK_FAILED → CREATING_LINK is legal, but the link is awaiting approval.
        assert (
            store.move(
                s,
                link_id,
                Status.LINK_FAILED,
                Status.CREATING_LINK,
                actor="x",
                gateway_message="should not be written",
            )
            is None
        )
    link = load(store, link_id)
    assert link.status == Status.AWAITING_APPROVAL.value
    assert link.version == 1
    assert link.gateway_message is None
    assert len(history(store, link_id)) == 1


def test_move_of_a_missing_link_returns_none(store: LinkStore) -> None:
    with store.transaction() as s:
        assert store.move(s, 999_999, Status.AWAITING_APPROVAL, Status.REJECTED, actor="x") is None


def test_move_writes_the_changes(store: LinkStore) -> None:
    link_id = new_link(store)
    with store.transaction() as s:
        store.move(
            s,
            link_id,
            Status.AWAITING_APPROVAL,
            Status.REJECTED,
            actor="U2",
            reason="wrong amount",
            decided_by="U2",
            reject_reason="wrong amount",
        )
    link = load(store, link_id)
    assert (link.status, link.decided_by, link.reject_reason) == ("rejected", "U2", "wrong amount")


def test_a_change_that_is_not_a_column_is_refused_not_dropped(store: LinkStore) -> None:
    link_id = new_link(store)
    with pytest.raises(TypeError, match="reject_reasn"), store.transaction() as s:
        store.move(
            s, link_id, Status.AWAITING_APPROVAL, Status.REJECTED, actor="U2", reject_reasn="x"
        )
    assert load(store, link_id).status == Status.AWAITING_APPROVAL.value


def test_a_failed_transaction_rolls_the_move_back(store: LinkStore) -> None:
    link_id = new_link(store)
    with pytest.raises(RuntimeError), store.transaction() as s:
        store.move(s, link_id, Status.AWAITING_APPROVAL, Status.CREATING_LINK, actor="x")
        raise RuntimeError("crash after the move")
    assert load(store, link_id).status == Status.AWAITING_APPROVAL.value
    assert len(history(store, link_id)) == 1


def test_concurrent_compare_and_set_has_exactly_one_winner(store: LinkStore) -> None:
    link_id = new_link(store)
    barrier = threading.Barrier(8)
    results: list[str | None] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def contender(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            with store.transaction() as s:
                moved = store.move(
                    s,
                    link_id,
                    Status.AWAITING_APPROVAL,
                    Status.CREATING_LINK,
                    actor=f"U{n}",
                    decided_by=f"U{n}",
                )
                winner = moved.decided_by if moved is not None else None
            with lock:
                results.append(winner)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    winners = [r for r in results if r is not None]
    assert len(results) == 8
    assert len(winners) == 1
    link = load(store, link_id)
    assert link.status == Status.CREATING_LINK.value
    assert link.version == 2
    assert link.decided_by == winners[0]
    moves = [r for r in history(store, link_id) if r.to_status == Status.CREATING_LINK.value]
    assert len(moves) == 1 and moves[0].actor == winners[0]


# Uniqueness --------------------------------------------------------------------------------


def test_duplicate_reference(store: LinkStore) -> None:
    new_link(store, reference="INV-7")
    with pytest.raises(DuplicateReference), store.transaction() as s:
        store.insert_link(s, checkout("INV-7"), requester_id="U2", actor="U2")
    # Inside one transaction the duplicate is refused and the rest of the work still commits.
    with store.transaction() as s:
        with pytest.raises(DuplicateReference):
            store.insert_link(s, checkout("INV-7"), requester_id="U2", actor="U2")
        store.insert_link(s, checkout("INV-8"), requester_id="U2", actor="U2")
    with store.reading() as s:
        assert s.scalar(select(func.count(Link.id))) == 2
        assert s.scalar(select(func.count(History.id))) == 2


def test_record_webhook_once(store: LinkStore) -> None:
    with store.transaction() as s:
        first = store.record_webhook(s, dedupe_key="k1", intent_id="pi_1", status="succeeded")
        assert first is True
    with store.transaction() as s:
        assert (
            store.record_webhook(s, dedupe_key="k1", intent_id="pi_1", status="succeeded") is False
        )
        # The transaction is still usable after the refused insert.
        assert store.record_webhook(s, dedupe_key="k2", intent_id="pi_1", status="failed")
    with store.transaction() as s:
        assert store.record_webhook(s, dedupe_key="k2", intent_id="pi_1", status="failed") is False
    with store.reading() as s:
        assert s.scalar(select(func.count(WebhookEvent.id))) == 2


def test_a_new_event_is_queued_by_its_insert_alone_and_the_others_are_told_apart(
    store: LinkStore, intake: JobIntake, engine: Engine
) -> None:
    """A webhook's critical path: a new event costs one INSERT and no read; a repeat of it
    and an event for no link are still answered as such (on PostgreSQL too, where the
    driver reports no row count unless asked)."""
    link_id = new_link(store, Status.AWAITING_PAYMENT)
    with store.transaction() as s:
        give_intent(store, s, link_id, "pi_queued")
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement.split()[0].upper())

    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert intake.payment("pi_queued", {"status": "succeeded"}, "payment:1") == "queued"
        assert statements.count("INSERT") == 1 and "SELECT" not in statements
        assert intake.payment("pi_queued", {"status": "succeeded"}, "payment:1") == ("duplicate")
        assert intake.payment("pi_nobody", {}, "payment:2") == "unknown_intent"
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    with store.reading() as s:
        kinds = s.scalars(select(Job.kind).where(Job.link_id == link_id))
        assert list(kinds) == [JobKind.PAYMENT]


def test_the_group_commit_keeps_its_connection_while_batches_follow_each_other(
    store: LinkStore, intake: JobIntake, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Back-to-back batches take no connection from the pool (on PostgreSQL each checkout
    pings the server); after a pause, or after a batch that failed, one is taken again."""
    link_id = new_link(store, Status.AWAITING_PAYMENT)
    with store.transaction() as s:
        give_intent(store, s, link_id, "pi_kept")
    checkouts: list[object] = []
    event.listen(engine, "checkout", lambda *args: checkouts.append(args))
    for n in range(1, 4):
        assert intake.payment("pi_kept", {"n": n}, f"payment:{n}") == "queued"
    assert len(checkouts) == 1
    assert intake.payment("pi_kept", {"n": 3}, "payment:3") == "duplicate"
    assert len(checkouts) == 1
    # A payload JSON cannot hold fails in the insert (psycopg raises TypeError itself).
    with pytest.raises((StatementError, TypeError)):
        intake.payment("pi_kept", {"n": object()}, "payment:4")
    assert intake.payment("pi_kept", {"n": 4}, "payment:4") == "queued"
    assert len(checkouts) == 2
    monkeypatch.setattr(intake_module, "WRITER_KEEP_SECONDS", -1.0)  # every gap is a pause
    assert intake.payment("pi_kept", {"n": 5}, "payment:5") == "queued"
    assert len(checkouts) == 3
    with store.reading() as s:
        count_ = s.scalar(select(func.count(Job.id)).where(Job.link_id == link_id))
        assert count_ == 5
    intake.close()  # gives the kept connection back: nothing is left checked out
    assert engine.pool.checkedout() == 0


@pytest.mark.pg
def test_the_group_commit_does_not_write_on_a_connection_the_server_has_closed(
    tmp_path: Path,
) -> None:
    """PostgreSQL restarted (here: our backend terminated) between two webhooks: the second
    is still queued, on a fresh connection, instead of failing on the kept one."""
    with migrated_engine("postgresql", tmp_path) as engine:
        store = LinkStore(engine)
        intake = JobIntake(store)
        link_id = new_link(store, Status.AWAITING_PAYMENT)
        with store.transaction() as s:
            give_intent(store, s, link_id, "pi_restart")
        backends: list[int] = []
        event.listen(engine, "checkout", lambda raw, *_: backends.append(raw.info.backend_pid))
        assert intake.payment("pi_restart", {"n": 1}, "payment:1") == "queued"
        assert len(backends) == 1  # the connection the group commit keeps
        with engine.connect() as admin:
            assert admin.scalar(
                text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": backends[0]}
            )
        assert intake.payment("pi_restart", {"n": 2}, "payment:2") == "queued"
        with store.reading() as s:
            keys = s.scalars(select(Job.dedupe_key).where(Job.link_id == link_id))
            assert sorted(keys) == ["payment:1", "payment:2"]
        intake.close()
        store.close()


# Forward only --------------------------------------------------------------------------------


def _reachable(start: Status) -> set[Status]:
    seen: set[Status] = set()
    todo = [start]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_statuses_never_move_backwards() -> None:
    assert TRANSITIONS[Status.PAID] == frozenset()
    assert TRANSITIONS[Status.REJECTED] == frozenset()
    assert Status.PAID.final and Status.REJECTED.final
    # Nothing ever goes back to awaiting approval.
    assert all(Status.AWAITING_APPROVAL not in targets for targets in TRANSITIONS.values())
    # Once a link exists at XPay, link creation starts again only through Renew, from
    # Expired; and a payment on the earlier link still ends it Paid, from every step.
    after_link = _reachable(Status.AWAITING_PAYMENT)
    assert after_link == set(Status) - {Status.AWAITING_APPROVAL, Status.REJECTED}
    assert {src for src in Status if Status.CREATING_LINK in TRANSITIONS[src]} == {
        Status.AWAITING_APPROVAL,
        Status.LINK_FAILED,
        Status.LINK_UNKNOWN,
        Status.EXPIRED,
    }
    renewing = {Status.CREATING_LINK, Status.LINK_FAILED, Status.LINK_UNKNOWN}
    assert all(Status.PAID in TRANSITIONS[s] for s in renewing | {Status.EXPIRED})
    # Every status can still end up paid or closed; only PAID and REJECTED are final.
    assert {s for s in Status if s.final} == {Status.PAID, Status.REJECTED}


def test_paid_link_cannot_move_at_all(store: LinkStore) -> None:
    link_id = new_link(store, Status.PAID)
    for target in Status:
        with pytest.raises(IllegalMove), store.transaction() as s:
            store.move(s, link_id, Status.PAID, target, actor="x")
    # Claiming any other source does not move it either.
    with store.transaction() as s:
        assert (
            store.move(s, link_id, Status.AWAITING_PAYMENT, Status.PAYMENT_FAILED, actor="x")
            is None
        )
        assert store.move(s, link_id, Status.PAYMENT_FAILED, Status.CANCELLED, actor="x") is None
    assert load(store, link_id).status == Status.PAID.value
    assert len(history(store, link_id)) == 1
