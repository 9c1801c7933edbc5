"""Fault injection over real HTTP: Slack and XPay failing, rate limiting, hanging, dropping.

Slack faults come from the stand-in (``fail_next``, ``set_delay``); XPay faults from a tiny
HTTP server in this module wired in with ``LocalStack(xpay_base_url=...)``. Nothing is mocked:
the bot runs on waitress, the job runner on its own thread, the WebClient and the XPay client
make real requests. Each test says what a person would see and checks that nothing is lost and
nothing is shown twice.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import requests
from sqlalchemy import select

from bot.links.tables import Link
from bot.local.stack import APPROVAL_CHANNEL, APPROVER, REP, LocalStack
from bot.local.standin import Call
from tests.conftest import Flow
from tests.stubs import Answer, StubServer
from tests.waiting import wait_until

# --------------------------------------------------------------------------------------
# Helpers


@pytest.fixture
def make_faulty() -> Iterator[Callable[..., Flow]]:
    """Like conftest's ``make_stack``, minus the "every Slack call succeeded" check: these
    tests make Slack calls fail on purpose."""
    stacks: list[LocalStack] = []

    def make(**overrides: Any) -> Flow:
        stack = LocalStack(**overrides).__enter__()
        stacks.append(stack)
        return Flow(stack)

    yield make
    for stack in stacks:
        stack.close()


def cards(flow: Flow) -> list[Any]:
    """Top-level messages in the approval channel (request cards)."""
    return [m for m in flow.slack.messages(APPROVAL_CHANNEL) if m.thread_ts is None]


def posts_to(flow: Flow, channel: str = APPROVAL_CHANNEL) -> list[Call]:
    return [
        c for c in flow.slack.calls_of("chat.postMessage") if c.params.get("channel") == channel
    ]


def db_status(flow: Flow, link_id: int | None = None) -> str | None:
    with flow.stack.runtime.store.reading() as s:
        query = select(Link.status).order_by(Link.id)
        if link_id is not None:
            query = query.where(Link.id == link_id)
        return s.scalars(query).first()


def assert_thread_once_each(flow: Flow, ts: str, needles: list[str]) -> None:
    replies = flow.replies(ts)
    for needle in needles:
        found = [r for r in replies if needle in r]
        assert len(found) == 1, f"{needle!r} shown {len(found)} times in {replies}"


# --------------------------------------------------------------------------------------
# Slack faults


def test_card_posted_once_after_two_500s(make_faulty: Callable[..., Flow]) -> None:
    flow = make_faulty()
    flow.slack.fail_next("chat.postMessage", status=500, times=2)
    card = flow.request()
    flow.idle(timeout=15)
    assert len(cards(flow)) == 1
    calls = posts_to(flow)
    assert [c.status for c in calls] == [500, 500, 200]
    assert "Awaiting approval" in flow.status(card.ts)


def test_card_stored_by_slack_that_then_answers_500_is_not_posted_again(
    make_faulty: Callable[..., Flow],
) -> None:
    """Slack stores the message and then fails the call: a blind retry would show two cards
    (one of them with live buttons and a status that never changes)."""
    flow = make_faulty()
    flow.slack.fail_next("chat.postMessage", status=500, after_effect=True)
    card = flow.request()
    flow.idle(timeout=15)
    assert len(cards(flow)) == 1
    assert [c.status for c in posts_to(flow)] == [500]
    with flow.stack.runtime.store.reading() as s:
        assert s.scalars(select(Link.message_ts)).one() == card.ts


def test_a_newer_card_job_looks_for_the_card_an_older_one_may_have_posted(
    make_faulty: Callable[..., Flow],
) -> None:
    """Slack stores the first post of a card and answers 500; before that job's retry the
    request changes (the rep cancels it), so a newer card job runs first. It must look for
    the card the older job may have posted instead of posting a second one."""
    flow = make_faulty()
    flow.slack.fail_next("chat.postMessage", status=500, after_effect=True)
    flow.submit()
    flow.slack.wait_for(lambda s: len(posts_to(flow)) == 1)
    with flow.stack.runtime.store.reading() as s:
        link_id = s.scalars(select(Link.id)).one()
    flow.stack.runtime.service.cancel(link_id, REP)
    flow.idle(timeout=15)
    [card] = cards(flow)
    assert "Cancelled" in flow.status(card.ts)
    with flow.stack.runtime.store.reading() as s:
        assert s.scalars(select(Link.message_ts)).one() == card.ts


def test_a_rate_limited_look_for_the_earlier_card_looks_again_later(
    make_faulty: Callable[..., Flow],
) -> None:
    """Slack limits conversations.history to a call a minute and 15 messages for apps sold
    outside its Marketplace. The bot looks only since the card could first have been posted,
    and a 429 there means "look again later", never "post again" (a second card)."""
    flow = make_faulty()
    flow.slack.fail_next("chat.postMessage", status=500, after_effect=True)
    flow.slack.fail_next("conversations.history", retry_after=1)
    card = flow.request()
    flow.idle(timeout=15)
    assert len(cards(flow)) == 1
    assert [c.status for c in posts_to(flow)] == [500]
    looks = flow.slack.calls_of("conversations.history")
    assert [c.status for c in looks] == [429, 200]
    assert looks[1].at - looks[0].at >= 1.0
    with flow.stack.runtime.store.reading() as s:
        link = s.scalars(select(Link)).one()
    assert link.message_ts == card.ts
    for look in looks:
        assert int(look.params["limit"]) <= 15
        oldest = float(look.params["oldest"])
        assert link.created_at.timestamp() - 120 < oldest < link.created_at.timestamp()


def test_approvals_pause_when_slack_stops_confirming_the_approver_group(
    make_faulty: Callable[..., Flow],
) -> None:
    """usergroups.users.list failing for good: the group's members are refused, told why,
    and /healthz says so, rather than the last list they were read from approving for ever."""
    flow = make_faulty(paylink_approvers=["S0FINANCE"])
    card = flow.request()
    approvers = flow.stack.runtime.approvers.directory(None)  # the environment's list
    approvers.ttl, approvers.max_age, approvers.retry = 0.05, 0.5, 0.05
    flow.slack.fail_next("usergroups.users.list", status=503, times=10_000)

    def groups() -> str:
        health = requests.get(flow.stack.base_url + "/healthz", timeout=5)
        assert health.status_code == 200
        return health.json()["approver_groups"]

    wait_until(
        lambda: groups() == "paused", 10, interval=0.05, message="the approver group never paused"
    )
    flow.click(APPROVER, card.ts, "paylink_approve")
    flow.wait_ephemeral(APPROVER, "Approvals are paused")
    flow.idle()
    assert "Awaiting approval" in flow.status(card.ts)
    assert flow.intent_count() == 0


def test_rate_limited_update_waits_for_retry_after_and_lands_once(
    make_faulty: Callable[..., Flow],
) -> None:
    flow = make_faulty()
    card = flow.request()
    url = flow.approve(card.ts)
    flow.wait_status(card.ts, "Awaiting payment")
    flow.idle()
    before = len(flow.slack.calls_of("chat.update"))

    flow.slack.fail_next("chat.update", retry_after=1)
    flow.checkout(url)
    flow.wait_status(card.ts, "Paid", timeout=15)
    flow.idle(timeout=15)

    updates = flow.slack.calls_of("chat.update")[before:]
    assert updates[0].status == 429
    landed = [c for c in updates if c.ok]
    assert len(landed) == 1, [(c.status, c.at) for c in updates]
    assert landed[0].at - updates[0].at >= 1.0
    assert_thread_once_each(flow, card.ts, ["Paid:"])


def test_slack_hanging_past_client_timeout_delivers_the_card_once(
    make_faulty: Callable[..., Flow],
) -> None:
    """chat.postMessage answers later than the WebClient waits. The stand-in, like Slack,
    still posts the message when it finally answers, so a blind re-post would show the card
    twice."""
    flow = make_faulty()
    flow.stack.runtime.delivery_client.timeout = 0.5  # the WebClient's own knob (10 s in prod)
    flow.slack.set_delay("chat.postMessage", 1.2)
    flow.submit()
    # The first attempt times out on the bot's side, then lands at the stand-in.
    flow.slack.wait_for(lambda s: len(cards(flow)) >= 1, timeout=15)
    flow.slack.set_delay("chat.postMessage", 0)
    flow.idle(timeout=20)
    assert len(cards(flow)) == 1, [c.ts for c in cards(flow)]
    with flow.stack.runtime.store.reading() as s:
        link = s.scalars(select(Link)).one()
    assert link.message_ts == cards(flow)[0].ts  # later updates go to the card people see


def test_a_qr_upload_that_timed_out_but_landed_is_not_uploaded_again(
    make_faulty: Callable[..., Flow],
) -> None:
    """files.completeUploadExternal answers later than the WebClient waits, and shares the
    file all the same: the retry finds it in the thread rather than post a second QR code."""
    flow = make_faulty()
    flow.stack.runtime.delivery_client.timeout = 0.5
    flow.slack.set_delay("files.completeUploadExternal", 1.0)
    flow.approve(flow.request().ts)
    flow.slack.wait_for(lambda s: s.files, timeout=15)
    flow.slack.set_delay("files.completeUploadExternal", 0)
    flow.idle(timeout=20)
    assert len(flow.slack.files) == 1, [f.filename for f in flow.slack.files]
    assert len(flow.slack.calls_of("files.completeUploadExternal")) == 1


@pytest.mark.slow  # the job runner's backoff runs its course
def test_slack_down_for_a_while_loses_nothing_and_repeats_nothing(
    make_faulty: Callable[..., Flow],
) -> None:
    flow = make_faulty()
    # Four failures in a row, each retried after a doubling backoff (here from 0.05 s, so the
    # outage lasts a second rather than the 7.5 s of the default 0.5 s).
    assert flow.stack.runtime.runner is not None
    flow.stack.runtime.runner.base_backoff = 0.05
    flow.slack.fail_next("chat.postMessage", status=500, times=4)
    flow.submit()
    card = flow.slack.wait_for(lambda s: next(iter(cards(flow)), None), timeout=20)
    url = flow.approve(card.ts)
    flow.wait_status(card.ts, "Awaiting payment")
    flow.idle()

    flow.slack.fail_next("chat.postMessage", status=503, times=4)
    flow.slack.fail_next("chat.update", status=500, times=4)
    flow.checkout(url)
    flow.wait_reply(card.ts, "Paid:", timeout=25)
    flow.wait_status(card.ts, "Paid", timeout=25)
    flow.idle(timeout=25)
    assert len(cards(flow)) == 1
    assert_thread_once_each(flow, card.ts, ["checkout link is ready", "Paid:"])
    assert len(flow.replies(card.ts)) == 2
    assert db_status(flow) == "paid"


# --------------------------------------------------------------------------------------
# XPay faults


class XPayFault(StubServer):
    """A misbehaving XPay: ``mode`` is "error" (HTTP 500 with a message), "hang" (answers
    after ``hang`` seconds) or "drop" (reads the request, then closes the socket unanswered).
    Every request is recorded before anything else happens."""

    def __init__(self, mode: str, hang: float = 30.0) -> None:
        self.mode = mode
        self.hang = hang
        self.requests: list[tuple[str, str, bytes]] = []
        super().__init__(self._answer)

    def _answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> Answer | None:
        self.requests.append((handler.command, handler.path, body))
        if self.mode == "drop":
            handler.connection.shutdown(socket.SHUT_RDWR)
            handler.close_connection = True
            return None
        if self.mode == "hang":
            self.wait(self.hang)
        return 500, {"success": False, "message": "Internal error: database unavailable"}

    @property
    def creates(self) -> list[tuple[str, str, bytes]]:
        return [r for r in self.requests if r[0] == "POST"]


@pytest.fixture
def xpay_fault() -> Iterator[Callable[..., XPayFault]]:
    stubs: list[XPayFault] = []

    def make(mode: str, **kwargs: Any) -> XPayFault:
        stubs.append(XPayFault(mode, **kwargs))
        return stubs[-1]

    yield make
    for stub in stubs:
        stub.close()


def test_xpay_500_shows_failed_with_message_and_retry(
    make_faulty: Callable[..., Flow], xpay_fault: Callable[..., XPayFault]
) -> None:
    stub = xpay_fault("error")
    flow = make_faulty(xpay_base_url=stub.url)
    card = flow.request()
    flow.click(APPROVER, card.ts, "paylink_approve")
    status = flow.wait_status(card.ts, "Link creation failed", timeout=10)
    assert "Internal error: database unavailable" in status
    flow.idle()
    assert any(
        e.get("action_id") == "paylink_retry"
        for b in flow.card(card.ts).blocks or []
        for e in b.get("elements", [])
    )
    assert len(stub.creates) == 1
    # One reply tells the approver (a card edit notifies nobody).
    (reply,) = flow.replies(card.ts)
    assert "<@U0APPROVER>" in reply and "Internal error: database unavailable" in reply


@pytest.mark.parametrize("mode", ["hang", "drop"])
def test_xpay_outcome_unknown_is_unconfirmed_not_failed_and_not_repeated(
    make_faulty: Callable[..., Flow], xpay_fault: Callable[..., XPayFault], mode: str
) -> None:
    """A create that may have reached XPay is never reported as failed and never re-sent on
    its own: a second request could leave the customer with two live links."""
    stub = xpay_fault(mode)
    flow = make_faulty(xpay_base_url=stub.url, xpay_timeout=1.0)
    card = flow.request()
    started = time.monotonic()
    flow.click(APPROVER, card.ts, "paylink_approve")
    status = flow.wait_status(card.ts, "Link creation unconfirmed", timeout=15)
    assert "Link creation failed" not in status
    flow.idle()
    if mode == "hang":
        assert time.monotonic() - started >= 1.0
    # The periodic timers leave an unconfirmed link alone: no second create is sent.
    flow.stack.runtime.periodic.run_once()
    flow.idle()
    assert len(stub.creates) == 1, stub.requests
    assert "Link creation unconfirmed" in flow.status(card.ts)
    (reply,) = flow.replies(card.ts)
    assert "<@U0APPROVER>" in reply and "did not confirm" in reply
    assert db_status(flow) == "link_unknown"


# A card that cannot be posted ----------------------------------------------------------


@pytest.mark.parametrize("ephemeral_reaches_rep", [True, False])
def test_request_card_slack_refuses_is_withdrawn_and_the_rep_told(
    make_faulty: Callable[..., Flow], ephemeral_reaches_rep: bool
) -> None:
    """The bot is not in the approval channel: nobody could ever approve the request, so it
    is withdrawn and the rep hears why (in the channel, else by direct message)."""
    flow = make_faulty()
    flow.slack.fail_next("chat.postMessage", status=200, error="not_in_channel")
    if not ephemeral_reaches_rep:
        flow.slack.fail_next("chat.postEphemeral", status=200, error="channel_not_found")
    response = flow.submit()
    assert response.status_code == 200 and not response.content.strip()
    if ephemeral_reaches_rep:
        (note,) = flow.wait_ephemeral(REP, "could not be posted")
    else:
        dm = flow.slack.wait_for(
            lambda s: next((m for m in s.messages() if "could not be posted" in m.text), None)
        )
        note = dm.text
    assert "not_in_channel" in note and "withdrawn" in note
    flow.slack.wait_for(lambda _s: db_status(flow) == "cancelled")
    assert flow.slack.messages(APPROVAL_CHANNEL) == []
