"""Clicks and submissions come from the workspace that owns the link, or change nothing.

A Slack app's signing secret is the same in every workspace it is installed in, so a signed
payload proves it came from Slack, not from ours. Each link records the workspace it was
requested in; the simulator sends payloads that name another one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import requests
from sqlalchemy import select, text, update

from bot import commands
from bot.links.tables import Link
from bot.local.simulator import TEAM, Origin, state_values
from bot.local.stack import APPROVAL_CHANNEL, APPROVER, REP, LocalStack
from bot.local.standin import PostedMessage
from tests.conftest import FIELDS, Flow
from tests.procs import Procs
from tests.test_crash_recovery import (
    WatchedStandIn,
    cards,
    status,
    submit_request,
)
from tests.test_worker import SplitBot, split, told  # noqa: F401  (split: a fixture)
from tests.waiting import wait_until

ELSEWHERE = "T0ELSEWHERE"
ORIGINS = {
    "another workspace": Origin(team=ELSEWHERE),
    "a guest from another workspace": Origin(user_team=ELSEWHERE),
    "another Enterprise Grid organisation": Origin(enterprise="E0ELSEWHERE"),
}
REFUSAL = "another Slack workspace"


def click(flow: Flow, user: str, ts: str, action_id: str, origin: Origin) -> None:
    card = flow.card(ts)
    response = flow.sim.click(
        user, {"ts": ts, "blocks": card.blocks}, action_id, channel=APPROVAL_CHANNEL, origin=origin
    )
    assert response.status_code == 200 and not response.content.strip(), response.text


def the_link(flow: Flow, ts: str) -> Link:
    """The link whose card is ``ts``, as stored now."""
    flow.idle()
    with flow.stack.runtime.store.reading() as s:
        return s.scalars(select(Link).where(Link.message_ts == ts)).one()


def owner(flow: Flow, ts: str) -> tuple[str | None, str | None]:
    """The workspace (team, enterprise) recorded on the link whose card is ``ts``."""
    link = the_link(flow, ts)
    return link.team_id, link.enterprise_id


def link_status(flow: Flow, ts: str) -> str:
    return the_link(flow, ts).status


@pytest.mark.parametrize("origin", ORIGINS.values(), ids=ORIGINS.keys())
def test_clicks_from_elsewhere_change_nothing(
    flow: Flow, origin: Origin, caplog: pytest.LogCaptureFixture
) -> None:
    card = flow.request()
    flow.idle()
    before = flow.card(card.ts)
    caplog.set_level(logging.INFO)
    for action_id in ("paylink_approve", "paylink_reject_open", "paylink_cancel"):
        click(flow, APPROVER, card.ts, action_id, origin)
    told = flow.wait_ephemeral(APPROVER, REFUSAL, count=3)
    assert all("nothing changed" in t.lower() for t in told)
    flow.idle()
    after = flow.card(card.ts)
    assert (after.blocks, after.updated) == (before.blocks, before.updated)
    assert flow.intent_count() == 0
    assert [v["callback_id"] for v in flow.slack.views_opened] == ["paylink_request"]
    refused = [r for r in caplog.records if "another workspace" in r.getMessage()]
    assert len(refused) == 3 and {r.levelno for r in refused} == {logging.INFO}
    # The same people, from the link's own workspace, still decide it.
    flow.approve(card.ts)
    assert flow.intent_count() == 1


def test_a_cancel_from_elsewhere_changes_nothing_after_approval(flow: Flow) -> None:
    card = flow.request()
    flow.approve(card.ts)
    click(flow, REP, card.ts, "paylink_cancel", Origin(team=ELSEWHERE))
    flow.wait_ephemeral(REP, REFUSAL)
    flow.idle()
    assert "Awaiting payment" in flow.status(card.ts)


def test_a_request_from_elsewhere_is_refused(flow: Flow, caplog: pytest.LogCaptureFixture) -> None:
    view = flow.open_modal()
    caplog.set_level(logging.INFO)
    for origin in ORIGINS.values():
        response = flow.sim.submit_view(REP, view, state_values(view, FIELDS), origin=origin)
        assert response.status_code == 200
        body = response.json()
        assert body["response_action"] == "errors"
        assert REFUSAL in " ".join(body["errors"].values())
    flow.idle()
    assert flow.slack.calls_of("chat.postMessage") == []
    with flow.stack.runtime.store.reading() as s:
        assert s.scalars(select(Link)).all() == []
    refused = [r for r in caplog.records if "another workspace" in r.getMessage()]
    assert len(refused) == len(ORIGINS) and {r.levelno for r in refused} == {logging.INFO}
    flow.request()  # from the bot's own workspace it goes through


def test_a_rejection_from_elsewhere_is_refused(flow: Flow) -> None:
    card = flow.request()
    flow.click(APPROVER, card.ts, "paylink_reject_open")
    modal = flow.slack.wait_for(
        lambda s: next((v for v in s.views_opened if v["callback_id"] == "paylink_reject"), None)
    )
    values = state_values(modal, {"reason": "Wrong amount"})
    for origin in ORIGINS.values():
        response = flow.sim.submit_view(APPROVER, modal, values, origin=origin)
        assert response.status_code == 200
        assert REFUSAL in response.json()["errors"]["reason"]
    flow.idle()
    assert "Awaiting approval" in flow.status(card.ts)
    response = flow.sim.submit_view(APPROVER, modal, values)
    assert response.status_code == 200 and not response.content.strip(), response.text
    flow.wait_status(card.ts, "Rejected")


def test_a_link_records_the_workspace_it_was_requested_in(flow: Flow) -> None:
    card = flow.request()
    assert owner(flow, card.ts) == (TEAM["id"], None)


def unowned_request(workdir: Path) -> PostedMessage:
    """A request's card, from a stack on ``workdir`` now stopped, whose link has no
    workspace recorded (as links made before the bot recorded owners)."""
    with LocalStack(workdir=workdir) as stack:
        flow = Flow(stack)
        card = flow.request()
        flow.idle()
        with stack.runtime.store.transaction() as s:
            s.execute(update(Link).values(team_id=None, enterprise_id=None))
    return card


@pytest.mark.integration  # two local stacks in turn on one database
def test_links_from_before_owners_were_recorded_become_the_workspaces(tmp_path: Path) -> None:
    """A link made before the bot recorded owners belongs to the one workspace of
    SLACK_BOT_TOKEN: the bot records it so at start-up, and clicks on it keep working."""
    card = unowned_request(tmp_path)
    with LocalStack(workdir=tmp_path) as stack:
        flow = Flow(stack)
        assert owner(flow, card.ts) == (TEAM["id"], None)
        # This stand-in never saw the card: click it as it was, and look at the link itself.
        message = {"ts": card.ts, "blocks": card.blocks}
        flow.sim.click(APPROVER, message, "paylink_approve", channel=APPROVAL_CHANNEL)
        wait_until(
            lambda: link_status(flow, card.ts) == "awaiting_payment",
            10,
            interval=0.05,
            message=lambda: link_status(flow, card.ts),
        )


@pytest.mark.integration
def test_links_without_an_owner_are_recorded_once_slack_answers_after_start_up(
    tmp_path: Path,
) -> None:
    """Slack does not answer auth.test while the bot starts: it asks again until Slack does,
    so links made before owners were recorded do not refuse every click until a restart."""
    card = unowned_request(tmp_path)
    stack = LocalStack(workdir=tmp_path)
    stack.slack.fail_next("auth.test", error="fatal_error", times=3)
    stack.runtime.workspace_retry = 0.2
    with stack:
        flow = Flow(stack)
        wait_until(
            lambda: owner(flow, card.ts) == (TEAM["id"], None),
            10,
            message=lambda: owner(flow, card.ts),
        )


def test_a_link_created_from_the_command_line_belongs_to_the_workspace(
    stack: LocalStack, procs: Procs
) -> None:
    env = {
        "DATABASE_URL": stack.settings.database_url,
        "PAYLINK_PUBLIC_URL": stack.base_url,
        "XPAY_ENV": "sandbox",
        "SLACK_BOT_TOKEN": stack.settings.slack_bot_token.get_secret_value(),
        "SLACK_API_URL": stack.slack.base_url,
    }
    created = procs.paylink(
        "create", "--amount", "5", "--name", "A", "--email", "a@example.com",
        "--reference", "CLI-TEAM", **env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    with stack.runtime.engine.connect() as conn:
        row = conn.execute(
            text("SELECT team_id, enterprise_id FROM links WHERE reference = 'CLI-TEAM'")
        ).one()
    assert tuple(row) == (TEAM["id"], None)


def test_the_command_line_checks_a_request_with_its_workspaces_settings(
    stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """`paylink create` learns SLACK_BOT_TOKEN's workspace and checks the fields with the
    settings its admins stored (a lower Maximum amount), not the environment's."""
    stack.runtime.workspaces.save_settings(TEAM["id"], "U0ADMIN", {"paylink_max_amount": "90000"})
    fields = {
        "amount": "95000",
        "currency": "PKR",
        "customer_name": "A",
        "customer_phone": "03415682456",
    }
    assert commands.create(stack.settings, fields, flags={"amount": "--amount"}) == 2
    err = capsys.readouterr().err
    assert err.startswith("paylink: --amount: ") and "90,000" in err, err


def test_a_worker_refuses_a_stored_click_from_elsewhere(
    split: tuple[SplitBot, WatchedStandIn],  # noqa: F811  (the fixture imported above)
) -> None:
    """Beside a worker, `serve` stores the click as it came; the worker decides and refuses it."""
    bot, slack = split
    bot.start()
    bot.start_worker()
    bot.wait_worker_idle()
    submit_request(bot, slack)
    card = slack.wait_for(lambda s: next(iter(cards(s)), None), 15)
    message = {"ts": card.ts, "blocks": card.blocks}
    bot.sim.click(
        APPROVER,
        message,
        "paylink_approve",
        channel=APPROVAL_CHANNEL,
        origin=Origin(team=ELSEWHERE),
    ).raise_for_status()
    refusal = slack.wait_for(lambda s: told(s, APPROVER, REFUSAL), 15)
    assert refusal.channel == APPROVAL_CHANNEL
    bot.wait_work_done()
    assert "Awaiting approval" in status(slack, card.ts)
    assert bot.rows("select status from links") == [("awaiting_approval",)]


def test_slash_command_and_app_home_from_another_workspace_show_nothing(flow: Flow) -> None:
    """Single-workspace mode: /paylink typed elsewhere opens no modal; App Home opened
    elsewhere publishes nothing; the install flow does not exist."""
    flow.request()
    flow.idle()
    answer = flow.sim.command(REP, team=ELSEWHERE)
    assert answer.status_code == 200 and "another Slack workspace" in answer.text
    flow.sim.home_opened(REP, team=ELSEWHERE).raise_for_status()
    flow.sim.home_opened(APPROVER).raise_for_status()  # ours: published
    flow.slack.wait_for(lambda s: APPROVER in s.home_views)
    assert list(flow.slack.home_views) == [APPROVER]
    assert len(flow.slack.views_opened) == 1  # the request's own modal
    install = flow.stack.base_url + "/slack/install"
    assert requests.get(install, timeout=10).status_code == 404


def test_app_home_lists_only_its_workspace_s_links(flow: Flow) -> None:
    mine = flow.request()
    flow.idle()
    with flow.stack.runtime.store.transaction() as s:
        s.execute(update(Link).where(Link.message_ts == mine.ts).values(team_id=ELSEWHERE))
    flow.request(order_reference="KEPT-1")
    flow.idle()
    flow.sim.home_opened(APPROVER).raise_for_status()
    home = str(flow.slack.wait_for(lambda s: s.home_views.get(APPROVER))["blocks"])
    assert "KEPT-1" in home
    with flow.stack.runtime.store.reading() as s:
        other = s.scalars(select(Link.reference).where(Link.team_id == ELSEWHERE)).one()
    assert other not in home
