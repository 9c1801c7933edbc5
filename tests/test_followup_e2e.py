"""Reminders and the digest end to end: real HTTP, the Slack stand-in, the sandbox gateway,
second-scale waits; across a worker's restart, and with two workers on PostgreSQL."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from datetime import time as time_of_day
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from bot.commands import digest
from bot.config import with_overrides
from bot.db import utcnow
from bot.links.digest import Digests
from bot.links.queue import JobQueue
from bot.links.states import Status
from bot.links.store import LinkStore
from bot.links.tables import Digest, Job
from bot.links.workspaces import Workspace
from bot.local.simulator import TEAM
from bot.local.stack import APPROVAL_CHANNEL, APPROVER, BOT_TOKEN, CLIENT_ID, REP, LocalStack
from bot.local.standin import PostedMessage
from bot.secretbox import new_key
from tests.conftest import Flow, check_slack_calls
from tests.dbs import PG_ENV, database_url
from tests.factories import insert_links
from tests.procs import Proc, Procs
from tests.test_crash_recovery import (
    BotProcess,
    WatchedStandIn,
    approve,
    cards,
    link_reply,
    replies,
    submit_request,
)
from tests.waiting import wait_until
from tests.workspaces import TeamFlow, thanked

APPROVERS_REMINDER = "for approval"
REP_REMINDER = "for payment"


def count(texts: list[str], needle: str) -> int:
    return sum(needle in t for t in texts)


@pytest.mark.slow  # waits for two reminders of two seconds each
def test_reminders_once_each_and_never_after_the_link_moved_on(
    make_stack: Callable[..., LocalStack], capsys: pytest.CaptureFixture[str]
) -> None:
    stack = make_stack(
        paylink_remind_approvers_after=timedelta(seconds=2),
        paylink_remind_rep_after=timedelta(seconds=2),
    )
    flow = Flow(stack)
    assert digest(stack.settings) == 0
    assert capsys.readouterr().out == "nothing to report\n"

    moved_on, waiting = flow.request(), flow.request()
    flow.checkout(flow.approve(moved_on.ts))  # approved and paid before either timer is due
    flow.wait_status(moved_on.ts, "Paid")

    reminder = flow.wait_reply(waiting.ts, APPROVERS_REMINDER, timeout=10)
    assert f"<@{APPROVER}>" in reminder and re.search(r"waited \d seconds", reminder)
    url = flow.approve(waiting.ts)
    reminder = flow.wait_reply(waiting.ts, REP_REMINDER, timeout=10)
    assert re.search(r"<@U0REP> the checkout link has waited \d seconds", reminder)
    assert url in reminder
    flow.idle()
    # Timers run in the order they fall due: the first request's had their turn before.
    assert count(flow.replies(moved_on.ts), "waited") == 0
    texts = flow.replies(waiting.ts)
    assert count(texts, APPROVERS_REMINDER) == 1 and count(texts, REP_REMINDER) == 1

    assert digest(stack.settings) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"posted in {APPROVAL_CHANNEL}: Paylink digest: 1 awaiting payment")
    (posted,) = [m for m in stack.slack.messages(APPROVAL_CHANNEL) if "digest" in (m.text or "")]
    assert "*Paid since the last digest:* 1, :test_tube: TEST PKR 15,000" in str(posted.blocks)
    # The link to the waiting request's card, from chat.getPermalink.
    assert f"/archives/{APPROVAL_CHANNEL}/p{waiting.ts.replace('.', '')}" in str(posted.blocks)


@pytest.mark.slow  # a link expires, is renewed, then waits for the rep's reminder
def test_after_a_renewal_the_rep_s_reminder_shows_the_new_link_and_its_own_age(
    make_stack: Callable[..., LocalStack],
) -> None:
    stack = make_stack(
        paylink_link_ttl=timedelta(seconds=2), paylink_remind_rep_after=timedelta(seconds=4)
    )
    flow = Flow(stack)
    card = flow.request()
    flow.approve(card.ts)  # the first checkout link expires before its reminder is due
    flow.wait_reply(card.ts, "expired without payment", timeout=10)
    # An admin gives links longer, so that the new one outlives the reminder's wait.
    stack.runtime.workspaces.save_settings(TEAM["id"], "U0ADMIN", {"paylink_link_ttl": "1m"})
    renewed_at = time.monotonic()
    flow.click(REP, card.ts, "paylink_renew")
    ready = flow.wait_reply(card.ts, "new checkout link is ready", timeout=10)
    reference = re.search(r"\(reference ([^)]+)\)", ready)
    url = re.search(r"<(https?://[^|>]+/sandbox/checkout/[^|>]+)>", ready)
    assert reference and url, ready

    reminder = flow.wait_reply(card.ts, REP_REMINDER, timeout=15)
    seen = time.monotonic()
    assert f"<@U0REP> the checkout link {reference.group(1)} has waited" in reminder
    assert url.group(1) in reminder
    waited = re.search(r"has waited (\d+) seconds? for payment", reminder)
    assert waited, reminder
    # The new link's own age, after it waited the whole time: not the first link's.
    assert 4 <= int(waited.group(1)) <= seen - renewed_at
    flow.idle()
    assert count(flow.replies(card.ts), REP_REMINDER) == 1


@pytest.fixture
def slack() -> Iterator[WatchedStandIn]:
    with WatchedStandIn(bot_token=BOT_TOKEN) as standin:
        yield standin


@pytest.mark.slow  # starts the bot twice
def test_a_reminder_survives_a_restart_and_is_sent_once(
    procs: Procs, tmp_path: Path, slack: WatchedStandIn
) -> None:
    bot = BotProcess(procs, tmp_path, slack)
    bot.start(PAYLINK_REMIND_APPROVERS_AFTER="3s")
    submit_request(bot, slack)
    card = slack.wait_for(lambda s: next(iter(cards(s)), None), 15)
    bot.kill()  # before the reminder is due: only the stored timer knows of it
    bot.start()
    slack.wait_for(lambda s: count(replies(s, card.ts), APPROVERS_REMINDER) == 1, 15)
    backlog = bot.base_url + "/healthz"
    wait_until(lambda: requests.get(backlog, timeout=5).json()["outbox_backlog"] == 0, 15)
    assert count(replies(slack, card.ts), APPROVERS_REMINDER) == 1
    assert bot.rows("SELECT reason FROM link_history WHERE from_status = to_status") == [
        ("reminder sent to approvers",)
    ]


class TwoWorkers(BotProcess):
    """`paylink serve` answering HTTP, and two `paylink worker` processes beside it."""

    def __init__(self, procs: Procs, workdir: Path, slack: WatchedStandIn, url: str):
        super().__init__(procs, workdir, slack, migrate=False)
        self.env.update(DATABASE_URL=url, PAYLINK_WORKER="separate")
        migrated = procs.run([sys.executable, "-m", "bot", "migrate"], self.env)
        assert migrated.returncode == 0, migrated.stderr
        self.workers: list[Proc] = []

    def start_workers(self) -> None:
        self.workers = [
            self.procs.start([sys.executable, "-m", "bot", "worker"], self.env) for _ in range(2)
        ]


@pytest.mark.pg
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"{PG_ENV} not set")
def test_two_workers_on_postgresql_remind_once_and_post_one_digest(
    procs: Procs, tmp_path: Path, slack: WatchedStandIn
) -> None:
    with database_url("postgresql", tmp_path) as url:
        bot = TwoWorkers(procs, tmp_path, slack, url)
        try:
            _two_workers(bot, slack)
        finally:
            bot.stop()  # before the schema is dropped


def _two_workers(bot: TwoWorkers, slack: WatchedStandIn) -> None:
    bot.start(
        PAYLINK_REMIND_APPROVERS_AFTER="2s",
        PAYLINK_REMIND_REP_AFTER="2s",
        PAYLINK_DIGEST_AT="00:00",  # due whenever the test runs
    )
    submit_request(bot, slack)  # queued by serve; the workers start with it waiting
    bot.start_workers()  # both take the day's digest at start-up: one is posted
    card = slack.wait_for(
        lambda s: next((m for m in cards(s) if "digest" not in (m.text or "")), None), 15
    )
    slack.wait_for(lambda s: count(replies(s, card.ts), APPROVERS_REMINDER) == 1, 15)
    approve(bot, slack, card.ts)
    link_reply(slack, card.ts)
    slack.wait_for(lambda s: count(replies(s, card.ts), REP_REMINDER) == 1, 15)
    for worker in bot.workers:
        worker.stop()
    texts = replies(slack, card.ts)
    assert count(texts, APPROVERS_REMINDER) == 1 and count(texts, REP_REMINDER) == 1
    digests = [m for m in cards(slack) if "digest" in (m.text or "")]
    assert len(digests) == 1 and "1 awaiting approval" in (digests[0].text or "")


FINANCE = "C0FINANCE"


def digests_in(stack: LocalStack, channel: str) -> list[PostedMessage]:
    return [m for m in stack.slack.messages(channel) if "Paylink digest" in (m.text or "")]


@pytest.mark.integration  # the local stack, started by hand: its links come first
def test_the_digest_goes_to_the_approval_channel_set_in_settings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = LocalStack(paylink_digest_at=time_of_day(0, 0))  # due whenever the test runs
    try:
        stack.runtime.workspaces.save_settings(
            TEAM["id"], "U0ADMIN", {"paylink_approval_channel": FINANCE}
        )
        insert_links(
            stack.runtime.store,
            2,
            workspace=Workspace(TEAM["id"]),
            statuses=[Status.AWAITING_APPROVAL],
            prefix="DIG",
            message_ts=None,  # no cards to link to
        )
        stack.__enter__()  # the first periodic pass takes the day's digest
        (daily,) = stack.slack.wait_for(lambda s: digests_in(stack, FINANCE), 10)
        assert (daily.text or "").startswith("Paylink digest: 2 awaiting approval")
        assert digest(stack.settings) == 0  # and `paylink digest`
        out = capsys.readouterr().out
        assert out.startswith(f"posted in {FINANCE}: Paylink digest: 2 awaiting approval")
        assert len(digests_in(stack, FINANCE)) == 2
        assert digests_in(stack, APPROVAL_CHANNEL) == []  # PAYLINK_APPROVAL_CHANNEL's
        check_slack_calls(stack)
    finally:
        stack.close()


ALPHA_FINANCE = "C0ALPHAFIN"


def references(message: PostedMessage) -> set[str]:
    """The order references a digest names (the test's are ``<team>-00000`` …)."""
    return set(re.findall(r"T0[A-Z]+-\d{5}", f"{message.text} {message.blocks}"))


@pytest.mark.integration  # the local stack, started by hand: its links come first
def test_with_several_workspaces_each_installed_one_gets_its_own_digest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 21/23: two installed workspaces with links each get one digest a day each, in
    their own approval channel, posted with their own token, naming only their links; an
    installed one with nothing to report, and one not installed, get none; a second worker
    takes none again; `paylink digest --team` posts one workspace's now."""
    stack = LocalStack(multi_workspace=True, paylink_digest_at=time_of_day(0, 0))
    try:
        store = stack.runtime.store
        stack.runtime.workspaces.save_settings(
            "T0ALPHA", "U0ADMIN", {"paylink_approval_channel": ALPHA_FINANCE}
        )
        for team, statuses in (
            ("T0ALPHA", [Status.AWAITING_APPROVAL, Status.AWAITING_APPROVAL]),
            ("T0BRAVO", [Status.AWAITING_PAYMENT]),
            ("T0DELTA", [Status.AWAITING_APPROVAL]),  # never installed
        ):
            insert_links(
                store,
                len(statuses),
                workspace=Workspace(team),
                statuses=statuses,
                prefix=team,
                message_ts=None,  # no cards to link to
            )
        stack.__enter__()  # its first periodic pass finds no workspace installed
        for team in ("T0ALPHA", "T0BRAVO", "T0CHARLIE"):  # CHARLIE has no links
            assert thanked(stack.install(team))
        assert stack.runtime.periodic.run_once()["digests"] == 2
        Flow(stack).idle()
        (alpha,) = digests_in(stack, ALPHA_FINANCE)  # ALPHA's Settings' channel
        (bravo,) = digests_in(stack, APPROVAL_CHANNEL)  # BRAVO's: PAYLINK_APPROVAL_CHANNEL
        assert (alpha.team, bravo.team) == ("T0ALPHA", "T0BRAVO")  # each with its own token
        assert (alpha.text or "").startswith("Paylink digest: 2 awaiting approval")
        assert "1 awaiting payment" in (bravo.text or "") and "approval" not in (bravo.text or "")
        assert references(alpha) == {"T0ALPHA-00000"}  # the oldest, named
        assert references(bravo) == {"T0BRAVO-00000"}
        posts = stack.slack.calls_of("chat.postMessage")
        assert sorted(c.team for c in posts) == ["T0ALPHA", "T0BRAVO"]

        # Another worker, and the next pass: the day is taken, once per workspace.
        runtime = stack.runtime
        other = Digests(
            JobQueue(LinkStore(runtime.engine)),
            at=time_of_day(0, 0),
            zone=stack.settings.timezone,
            channel=lambda: pytest.fail("the deployment's channel is not asked"),
            installed=runtime.installed_workspaces,
            channel_of=runtime.digests.channel_of,
        )
        assert other.take_daily() == 0 and runtime.periodic.run_once()["digests"] == 0
        with store.reading() as s:
            keys = set(s.scalars(select(Digest.key)))
        day = runtime.digests.day_due(utcnow())
        assert keys == {f"{t}:{day}" for t in ("T0ALPHA", "T0BRAVO", "T0CHARLIE")}

        # paylink digest: one workspace's now, with its token, in its channel.
        assert digest(stack.settings, team="T0ALPHA") == 0
        assert capsys.readouterr().out.startswith(
            f"posted in {ALPHA_FINANCE}: Paylink digest: 2 awaiting approval"
        )
        assert [m.team for m in digests_in(stack, ALPHA_FINANCE)] == ["T0ALPHA", "T0ALPHA"]
        assert digest(stack.settings, team="T0DELTA") == 1
        assert "not installed in workspace T0DELTA" in capsys.readouterr().err
        wrong_key = with_overrides(stack.settings, paylink_secret_key=new_key())
        assert digest(wrong_key, team="T0ALPHA") == 1  # one line, not a traceback
        refused = capsys.readouterr().err.strip()
        assert len(refused.splitlines()) == 1 and "PAYLINK_SECRET_KEY" in refused, refused
        Flow(stack).idle()
        assert len(stack.slack.calls_of("chat.postMessage")) == 3
        check_slack_calls(stack)
    finally:
        stack.close()


@pytest.mark.integration
def test_a_digest_for_a_workspace_no_longer_installed_is_stopped(
    distributed: Callable[..., LocalStack],
) -> None:
    """Its job is stopped like the workspace's other jobs: nothing is posted, never retried."""
    stack = distributed(paylink_digest_at=None)  # no digest but the test's
    assert thanked(stack.install("T0ALPHA"))
    insert_links(
        stack.runtime.store,
        1,
        workspace=Workspace("T0ALPHA"),
        statuses=[Status.AWAITING_APPROVAL],
        message_ts=None,
    )
    taken = Digests(
        stack.runtime.queue,
        at=time_of_day(0, 0),
        zone=stack.settings.timezone,
        channel=lambda: None,
        installed=lambda: [Workspace("T0ALPHA")],  # as listed just before it was uninstalled
        channel_of=lambda _w: APPROVAL_CHANNEL,
    )
    stack.slack.revoke("T0ALPHA")
    gone = {"type": "app_uninstalled"}
    assert TeamFlow(stack, "T0ALPHA").sim.event(gone, team="T0ALPHA").status_code == 200
    assert taken.take_daily() == 1
    Flow(stack).idle()
    with stack.runtime.store.reading() as s:
        (job,) = s.scalars(select(Job).where(Job.kind == "digest"))
    assert job.done_at is not None and job.attempts == 1
    assert "not installed in the digest's Slack workspace" in (job.last_error or "")
    assert stack.slack.calls_of("chat.postMessage") == []


def test_paylink_digest_asks_which_workspace_with_several(procs: Procs, tmp_path: Path) -> None:
    several = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'paylink.db'}",
        "SLACK_CLIENT_ID": CLIENT_ID,
        "SLACK_CLIENT_SECRET": "client-secret",
        "PAYLINK_SECRET_KEY": new_key(),
    }
    refused = procs.paylink("digest", **several)
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == (
        "paylink: with several workspaces (SLACK_CLIENT_ID), name one: "
        "paylink digest --team T0123\n"
    )


def test_paylink_digest_from_the_console(procs: Procs, tmp_path: Path) -> None:
    """The command itself: nothing waits, so it says so and posts nothing (no Slack call:
    the token leads nowhere)."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'paylink.db'}"}
    assert procs.paylink("migrate", **env).returncode == 0
    quiet = procs.paylink("digest", SLACK_BOT_TOKEN=BOT_TOKEN, **env)
    assert (quiet.returncode, quiet.stdout) == (0, "nothing to report\n"), quiet.stderr
