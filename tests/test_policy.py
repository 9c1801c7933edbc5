"""The approval policy by amount and the duplicate guard, decided by the link service (XPay in
memory), and what `paylink status` and `paylink create` make of them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from bot import commands
from bot.config import load_settings
from bot.db import make_engine, utcnow
from bot.links.followup import Queued
from bot.links.intake import JobIntake
from bot.links.outcomes import AlreadyApproved, AlreadyDecided, NotAllowed, Refused
from bot.links.policy import AUTO, ONE, TWO, ApprovalPolicy
from bot.links.service import LinkService
from bot.links.states import Status
from bot.links.store import LinkStore
from bot.links.tables import Job, Link, LinkApproval
from bot.links.workspace_settings import WorkspaceSettings
from bot.links.workspaces import Workspace
from tests.dbs import BACKENDS, migrated_engine
from tests.factories import checkout_request
from tests.fakes import FakeGateway

REP, FIRST, SECOND, THIRD = "U0REP", "U0APPROVER", "U0BOSS", "U0CFO"
HOME = Workspace("T0HOME")
POLICY = ApprovalPolicy(
    auto_under={"PKR": Decimal("10000"), "USD": Decimal("50")},
    second_from={"PKR": Decimal("100000"), "USD": Decimal("1000")},
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LinkStore]:
    with migrated_engine("sqlite", tmp_path) as engine:
        yield LinkStore(engine)


@pytest.fixture(params=BACKENDS)
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LinkStore]:
    with migrated_engine(request.param, tmp_path) as engine:
        yield LinkStore(engine)


def make_service(store: LinkStore, **kw: Any) -> LinkService:
    kw.setdefault("policy_for", lambda _team: POLICY)
    return LinkService(
        store,
        kw.pop("gateway", FakeGateway()),
        is_approver=lambda user: user in (FIRST, SECOND, THIRD, REP),
        **kw,
    )


@pytest.fixture
def service(store: LinkStore) -> LinkService:
    return make_service(store, duplicate_window_for=lambda _team: timedelta(hours=24))


def request(service: LinkService, amount: str = "50000", currency: str = "PKR", **fields: Any):
    return service.request_link(
        checkout_request(amount=amount, currency=currency, currencies=("PKR", "USD"), **fields),
        requester_id=REP,
        channel_id="C0APPROVALS",
        workspace=HOME,
    )


def load(service: LinkService, link_id: int) -> Link:
    with service.store.reading() as s:
        link = service.store.get(s, link_id)
        assert link is not None
        _ = link.history
        return link


def approvals_taken(service: LinkService, link_id: int) -> int:
    """Approve with different approvers until the link is created; how many it took."""
    for taken, approver in enumerate((FIRST, SECOND, THIRD)):
        if load(service, link_id).status == Status.AWAITING_PAYMENT.value:
            return taken
        service.approve(link_id, approver, origin=HOME)
    raise AssertionError("three approvals did not create the link")


# The tiers at their boundaries ------------------------------------------------------------

BOUNDARIES = [
    ("PKR", "9999.99", AUTO),
    ("PKR", "10000", ONE),
    ("PKR", "10000.01", ONE),
    ("PKR", "99999.99", ONE),
    ("PKR", "100000", TWO),
    ("PKR", "100000.01", TWO),
    ("USD", "49.99", AUTO),
    ("USD", "50", ONE),
    ("USD", "50.01", ONE),
    ("USD", "999.99", ONE),
    ("USD", "1000", TWO),
    ("USD", "1000.01", TWO),
]


@pytest.mark.parametrize(("currency", "amount", "approvals"), BOUNDARIES)
def test_each_tier_takes_its_approvals_at_its_boundaries(
    service: LinkService, currency: str, amount: str, approvals: int
) -> None:
    link = request(service, amount, currency)
    assert approvals_taken(service, link.id) == approvals
    link = load(service, link.id)
    assert link.approvals_needed == approvals
    if approvals == AUTO:
        policy_row = link.history[1]
        assert (policy_row.actor, policy_row.to_status) == ("policy", "creating_link")
        threshold = "PKR 10,000" if currency == "PKR" else "USD 50"
        assert policy_row.reason == (
            f"approved automatically: under {threshold} (PAYLINK_AUTO_APPROVE_UNDER)"
        )
        assert link.decided_by == "policy"


def test_auto_approval_beside_a_worker_queues_the_creation_with_the_card(
    store: LinkStore,
) -> None:
    """With `serve` beside a worker, the policy's approval is recorded with the request and
    the gateway call is a job for the worker, as an approver's click would be."""
    gateway = FakeGateway()
    service = make_service(store, gateway=gateway, follow_up=Queued(JobIntake(store)))
    link = request(service, "9999.99")
    assert link.status == Status.CREATING_LINK.value and gateway.creates == []
    with store.reading() as s:
        kinds = list(s.scalars(select(Job.kind).where(Job.link_id == link.id).order_by(Job.id)))
    assert kinds == ["create", "card"]


def test_a_currency_not_listed_has_no_threshold() -> None:
    policy = ApprovalPolicy(auto_under={"PKR": Decimal(10)}, second_from={"PKR": Decimal(20)})
    assert policy.rule(Decimal("0.01"), "EUR").approvals == ONE
    assert policy.rule(Decimal("999999999"), "EUR").approvals == ONE
    assert policy.summary(["PKR", "EUR"]) == (
        "PKR: under PKR 10 approved automatically; "
        "PKR 20 or more needs two approvers, neither of them you"
    )
    assert policy.summary(["EUR"]) == ""


def test_overlapping_thresholds_give_two_approvers() -> None:
    policy = ApprovalPolicy(auto_under={"PKR": Decimal(500)}, second_from={"PKR": Decimal(100)})
    assert policy.rule(Decimal(200), "PKR").approvals == TWO


# Two approvers ----------------------------------------------------------------------------


def test_first_approval_waits_for_a_second_approver(service: LinkService) -> None:
    link = request(service, "150000")
    first = service.approve(link.id, FIRST, origin=HOME)
    assert first.status == Status.AWAITING_APPROVAL.value
    assert first.version == link.version + 1  # the card renders again
    link = load(service, link.id)
    assert [(r.from_status, r.to_status, r.actor, r.reason) for r in link.history] == [
        (None, "awaiting_approval", REP, None),
        (
            "awaiting_approval",
            "awaiting_approval",
            FIRST,
            "first approval (PKR 100,000 or more): waiting for a second approver",
        ),
    ]
    with service.store.reading() as s:
        assert service.store.approvers(s, link.id) == [FIRST]

    service.approve(link.id, SECOND, origin=HOME)
    link = load(service, link.id)
    assert link.status == Status.AWAITING_PAYMENT.value and link.decided_by == SECOND
    second = link.history[2]
    assert (second.actor, second.to_status) == (SECOND, "creating_link")
    assert second.reason == f"second approval (PKR 100,000 or more), after {FIRST}"


def test_the_same_approver_twice_changes_nothing(service: LinkService) -> None:
    link = request(service, "100000")
    service.approve(link.id, FIRST, origin=HOME)
    version = load(service, link.id).version
    with pytest.raises(AlreadyApproved) as refused:
        service.approve(link.id, FIRST, origin=HOME)
    assert refused.value.message == (
        "You already approved this request: it is waiting for a second approver."
    )
    after = load(service, link.id)
    assert (after.status, after.version, len(after.history)) == (
        Status.AWAITING_APPROVAL.value,
        version,
        2,
    )


def test_the_requester_is_never_one_of_the_two(store: LinkStore) -> None:
    service = make_service(store, allow_self_approval=True)  # REP is an approver too
    link = request(service, "100000")
    with pytest.raises(NotAllowed, match="needs two approvers other than you"):
        service.approve(link.id, REP, origin=HOME)  # as the first
    service.approve(link.id, FIRST, origin=HOME)
    with pytest.raises(NotAllowed, match="PKR 100,000 or more needs two approvers other than you"):
        service.approve(link.id, REP, origin=HOME)  # as the second
    assert load(service, link.id).status == Status.AWAITING_APPROVAL.value
    # Below the threshold self-approval still works as configured.
    small = request(service, "20000")
    assert service.approve(small.id, REP, origin=HOME).status == Status.CREATING_LINK.value


def test_app_home_waiting_list_leaves_out_what_waits_for_someone_else(
    store: LinkStore,
) -> None:
    service = make_service(store, allow_self_approval=True)
    small, large = request(service, "20000"), request(service, "100000")
    service.approve(large.id, FIRST, origin=HOME)

    def waiting(viewer: str) -> list[int]:
        with store.reading() as s:
            page, total = store.awaiting_approval(s, viewer=viewer)
        assert total == len(page)
        return [link.id for link in page]

    assert waiting(FIRST) == [small.id]  # approved the large one already
    assert waiting(REP) == [small.id]  # asked for it: never one of its two
    assert waiting(SECOND) == [small.id, large.id]


def test_a_reject_after_the_first_approval_still_rejects(service: LinkService) -> None:
    link = request(service, "100000")
    service.approve(link.id, FIRST, origin=HOME)
    service.reject(link.id, SECOND, "Too large for this customer", origin=HOME)
    assert load(service, link.id).status == Status.REJECTED.value
    with pytest.raises(AlreadyDecided, match="already rejected"):
        service.approve(link.id, THIRD, origin=HOME)


def test_concurrent_second_approvals_create_one_link(any_store: LinkStore) -> None:
    """Two approvers click the second approval at the same moment, and then two more race
    for a fresh request's first and second: one link each time."""
    gateway = FakeGateway()
    service = make_service(any_store, gateway=gateway)
    link = request(service, "100000")
    service.approve(link.id, FIRST, origin=HOME)
    race = request(service, "100000")

    def clicks(link_id: int, users: list[str]) -> list[str]:
        start = threading.Barrier(len(users))

        def approve(user: str) -> str:
            start.wait(timeout=10)
            try:
                return service.approve(link_id, user, origin=HOME).status
            except Refused as exc:
                return type(exc).__name__

        with ThreadPoolExecutor(len(users)) as pool:
            return sorted(pool.map(approve, users))

    assert clicks(link.id, [SECOND, THIRD]) == ["AlreadyDecided", "creating_link"]
    # Three at once on a fresh request: one first, one second, and one too late.
    assert clicks(race.id, [FIRST, SECOND, THIRD]) == [
        "AlreadyDecided",
        "awaiting_approval",
        "creating_link",
    ]
    assert len(gateway.creates) == 2
    with any_store.reading() as s:
        counts = dict(
            s.execute(
                select(LinkApproval.link_id, func.count()).group_by(LinkApproval.link_id)
            ).all()
        )
    assert counts == {link.id: 2, race.id: 2}  # the refused approval was rolled back


# The duplicate guard ----------------------------------------------------------------------


def test_duplicate_guard_finds_a_live_request_for_the_same_sum_and_customer(
    service: LinkService,
) -> None:
    earlier = request(service, "50000", customer_phone="03415682456")

    def guard(**fields: Any) -> Link | None:
        fields = {"amount": "50000", "currency": "PKR", "currencies": ("PKR", "USD"), **fields}
        return service.earlier_request(checkout_request(**fields), workspace=HOME)

    assert guard().id == earlier.id  # type: ignore[union-attr]
    assert guard(customer_email="AYESHA.KHAN@example.com").id == earlier.id  # type: ignore[union-attr]
    assert guard(customer_email="", customer_phone="+92 341 5682456").id == earlier.id  # type: ignore[union-attr]
    assert guard(customer_email="other@example.com") is None
    assert guard(amount="50000.01") is None
    assert guard(currency="USD") is None
    assert (
        service.earlier_request(checkout_request(amount="50000"), workspace=Workspace("T0X"))
        is None
    )

    service.reject(earlier.id, FIRST, "wrong customer", origin=HOME)
    assert guard() is None  # a rejected request is not counted


def test_duplicate_guard_looks_only_within_its_window(service: LinkService) -> None:
    earlier = request(service, "50000")
    with service.store.transaction() as s:
        s.execute(
            update(Link)
            .where(Link.id == earlier.id)
            .values(created_at=utcnow() - timedelta(hours=24, seconds=1))
        )
    assert service.earlier_request(checkout_request(amount="50000"), workspace=HOME) is None


def test_duplicate_guard_never_counts_the_submission_itself(service: LinkService) -> None:
    made = service.request_link(
        checkout_request(amount="50000"),
        requester_id=REP,
        channel_id="C0APPROVALS",
        workspace=HOME,
        view_id="V0FORM",
    )
    again = checkout_request(amount="50000")
    assert service.earlier_request(again, workspace=HOME, view_id="V0FORM") is None
    assert service.earlier_request(again, workspace=HOME, view_id="V0OTHER").id == made.id  # type: ignore[union-attr]


# The command line -------------------------------------------------------------------------


def cli_settings(tmp_path: Path, **overrides: object) -> Any:
    with migrated_engine("sqlite", tmp_path):
        pass  # the schema, made once
    values: dict[str, object] = {
        "database_url": f"sqlite:///{tmp_path / 'paylink-test.db'}",
        "xpay_env": "sandbox",
        "paylink_public_url": "http://127.0.0.1:9",
        "paylink_second_approval_from": "PKR:100000",
        "paylink_auto_approve_under": "PKR:10000",
    }
    return load_settings(_env_file=None, **(values | overrides))


def test_cli_create_refuses_what_needs_two_approvers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = cli_settings(tmp_path)
    fields = {
        "amount": "100000",
        "currency": "PKR",
        "customer_name": "A",
        "customer_phone": "03415682456",
    }
    assert commands.create(settings, fields, flags={"amount": "--amount"}) == 2
    assert capsys.readouterr().err == (
        "paylink: --amount: PKR 100,000 or more needs two approvers "
        "(PAYLINK_SECOND_APPROVAL_FROM): request it in Slack with /paylink\n"
    )


def test_cli_create_refuses_when_it_cannot_tell_whose_settings_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without SLACK_BOT_TOKEN (or while Slack does not answer) the workspace is unknown and
    the link would become its later: once a workspace has settings of its own (here a second
    approval the environment does not ask for), the environment's are not applied instead."""
    settings = cli_settings(tmp_path, paylink_second_approval_from="")
    store = LinkStore(make_engine(settings.database_url))
    WorkspaceSettings(settings, store).save_settings(
        HOME.team_id, "U0ADMIN", {"paylink_second_approval_from": "PKR:100000"}
    )
    fields = {
        "amount": "500000",
        "currency": "PKR",
        "customer_name": "A",
        "customer_phone": "03415682456",
    }
    assert commands.create(settings, fields, flags={"amount": "--amount"}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot tell which Slack workspace this is" in err, err
    with store.reading() as s:
        assert s.scalar(select(func.count()).select_from(Link)) == 0
    store.close()


def test_status_shows_the_policy_decisions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = cli_settings(tmp_path)
    engine_store = LinkStore(make_engine(settings.database_url))
    service = make_service(engine_store)
    auto = request(service, "9999", order_reference="AUTO-1")
    two = request(service, "100000", order_reference="TWO-1")
    service.approve(two.id, FIRST, origin=HOME)
    service.approve(two.id, SECOND, origin=HOME)
    engine_store.close()

    assert commands.status(settings, auto.reference) == 0
    out = capsys.readouterr().out
    assert (
        "Awaiting approval → Creating link by policy "
        "(approved automatically: under PKR 10,000 (PAYLINK_AUTO_APPROVE_UNDER))" in out
    )
    assert commands.status(settings, two.reference) == 0
    out = capsys.readouterr().out
    assert (
        "UTC Awaiting approval: first approval (PKR 100,000 or more): waiting for a second "
        f"approver (by {FIRST})" in out
    ), out
    assert (
        f"Awaiting approval → Creating link by {SECOND} "
        f"(second approval (PKR 100,000 or more), after {FIRST})" in out
    ), out
