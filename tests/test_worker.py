"""PAYLINK_WORKER=separate: `paylink serve` answers HTTP, `paylink worker` talks to Slack.

Both are real processes on one SQLite file, driven over HTTP with the Slack stand-in; the
embedded sandbox gateway takes the payment.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bot.links.wakeup import WakeListener, WakeSender, socket_path
from bot.local.stack import APPROVAL_CHANNEL, APPROVER, BOT_TOKEN, REP
from bot.local.standin import Ephemeral
from tests.procs import Proc, Procs
from tests.test_crash_recovery import (
    BotProcess,
    WatchedStandIn,
    approve,
    cards,
    link_reply,
    replies,
    status,
    submit_request,
)


class SplitBot(BotProcess):
    """`paylink serve` (role web) plus a `paylink worker` process that can start later."""

    def __init__(self, procs: Procs, workdir: Path, slack: WatchedStandIn):
        super().__init__(procs, workdir, slack)
        self.env["PAYLINK_WORKER"] = "separate"
        self.worker: Proc | None = None

    def start_worker(self) -> None:
        self.worker = self.procs.start([sys.executable, "-m", "bot", "worker"], self.env)

    def wait_worker_idle(self) -> None:
        """Until the worker has started and had its first look at the job queue: it says so
        once it listens for wake-ups."""
        assert self.worker is not None
        self.worker.wait_for_output("worker running")


@pytest.fixture
def split(procs: Procs, tmp_path: Path) -> Iterator[tuple[SplitBot, WatchedStandIn]]:
    with WatchedStandIn(bot_token=BOT_TOKEN) as slack:
        bot = SplitBot(procs, tmp_path, slack)
        try:
            yield bot, slack
        finally:
            bot.stop()


def told(slack: WatchedStandIn, user: str, words: str) -> Ephemeral | None:
    """The ephemeral message to ``user`` that says ``words``, if any."""
    return next((e for e in slack.ephemerals if e.user == user and words in (e.text or "")), None)


def test_the_whole_flow_with_a_separate_worker(split: tuple[SplitBot, WatchedStandIn]) -> None:
    """Request, approval, link and payment; the worker posts every Slack message, the web
    process none, and nothing waits for the worker's 2-second poll (it is woken)."""
    bot, slack = split
    bot.start()
    bot.start_worker()
    bot.wait_worker_idle()
    started = time.monotonic()
    submit_request(bot, slack)
    card = slack.wait_for(lambda s: next(iter(cards(s)), None), 15)
    assert time.monotonic() - started < 1.5, "the card waited for a poll, not a wake-up"
    # Clicks are stored by serve and decided by the worker, refusals included.
    message = {"ts": card.ts, "blocks": card.blocks}
    bot.sim.click(REP, message, "paylink_approve", channel=APPROVAL_CHANNEL).raise_for_status()
    refusal = slack.wait_for(lambda s: told(s, REP, "PAYLINK_APPROVERS"), 15)
    assert refusal.channel == APPROVAL_CHANNEL
    approve(bot, slack, card.ts)
    url = link_reply(slack, card.ts)
    # A second click, on the card as it was before (a client not yet refreshed): told,
    # nothing else happens.
    bot.sim.click(APPROVER, message, "paylink_approve", channel=APPROVAL_CHANNEL)
    slack.wait_for(lambda s: told(s, APPROVER, "already"), 15)
    requests.post(url + "/pay", data={"outcome": "pay", "method": "card"}, timeout=15)
    slack.wait_for(lambda s: "Paid" in status(s, card.ts), 15)
    slack.wait_for(lambda s: any("Paid:" in r for r in replies(s, card.ts)), 15)
    bot.wait_work_done()
    assert len(cards(slack)) == 1

    assert bot.proc is not None and bot.worker is not None
    serve_log, worker_log = bot.proc.output(), bot.worker.output()
    assert "job done" not in serve_log
    assert "job done" in worker_log
    # serve stored the clicks and (on SQLite) the webhook; the worker decided and applied
    for line in ("link creating_link", "payment paid"):
        assert line not in serve_log
        assert line in worker_log
    assert "released" not in worker_log + serve_log  # neither took the other for dead


def test_messages_wait_for_a_worker_that_is_not_running(
    split: tuple[SplitBot, WatchedStandIn],
) -> None:
    """With no worker the request is taken and kept (health shows the backlog); the card is
    posted once the worker starts."""
    bot, slack = split
    bot.start()
    submit_request(bot, slack)
    bot.wait_db("select count(*) from links", [(1,)])
    # Queued with the link; serve (role web) runs no jobs: the card waits for a worker.
    health = requests.get(bot.base_url + "/healthz", timeout=5).json()
    assert health["outbox_backlog"] == 1
    assert cards(slack) == []

    bot.start_worker()
    card = slack.wait_for(lambda s: next(iter(cards(s)), None), 15)
    assert "Awaiting approval" in status(slack, card.ts)
    bot.wait_work_done()


def test_wake_up_reaches_a_listener_and_is_harmless_without_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'paylink.db'}"
    path = socket_path(url)
    assert path == str(tmp_path / "paylink.db.wake")
    sender = WakeSender(path)
    sender()  # nobody listens: no error, no delay

    woken = threading.Event()
    listener = WakeListener(path, woken.set).start()
    try:
        sender()
        assert woken.wait(5)
    finally:
        listener.close()
        sender.close()
    assert not Path(path).exists()
    WakeSender(path)()  # the listener is gone again


def test_socket_path_for_a_server_database_is_shared_and_short() -> None:
    url = "postgresql://paylink@db.internal:5432/paylink"
    assert socket_path(url) == socket_path(url)
    assert socket_path(url) != socket_path(url + "2")
    assert len(socket_path(url)) < 100


def run_worker(procs: Procs, **env: str) -> subprocess.CompletedProcess[str]:
    """`paylink worker` with only ``env`` (and a SQLite file), expected to stop at once."""
    database = f"sqlite:///{procs.cwd / 'p.db'}"
    return procs.run([sys.executable, "-m", "bot", "worker"], {"DATABASE_URL": database, **env})


def test_worker_without_a_bot_token_says_so(procs: Procs) -> None:
    done = run_worker(procs)
    assert done.returncode == 2
    assert done.stderr.startswith("paylink: SLACK_BOT_TOKEN is not set"), done.stderr


@pytest.mark.parametrize(
    ("mode", "serve_does"),
    [("inline", "does the worker's job itself"), (None, "starts a worker of its own")],
    ids=["inline", "child (default)"],
)
def test_worker_refuses_to_run_beside_a_serve_that_has_one(
    procs: Procs, mode: str | None, serve_does: str
) -> None:
    """An inline `serve` creates links itself, and a default one runs its own worker: a
    worker beside either would compete with it for the same work."""
    env = {"PAYLINK_WORKER": mode} if mode else {}
    done = run_worker(procs, SLACK_BOT_TOKEN=BOT_TOKEN, **env)
    assert done.returncode == 2
    assert done.stderr.startswith("paylink: PAYLINK_WORKER: set it to 'separate'"), done.stderr
    assert serve_does in done.stderr
