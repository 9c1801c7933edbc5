"""Multi-workspace mode end to end: Paylink installed through Bolt's OAuth flow against the
Slack stand-in, over real HTTP; each workspace runs the flow with its own token, stored
sealed with PAYLINK_SECRET_KEY, and an uninstall or a revoked token stops that workspace's
Slack work and keeps its links."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from sqlalchemy import select, update

from bot.commands import rotate_key
from bot.config import with_overrides
from bot.links.installations import BOTS, INSTALLATIONS
from bot.links.tables import Link
from bot.local.stack import APPROVAL_CHANNEL, APPROVER, REP, LocalStack
from bot.local.standin import PostedMessage
from bot.secretbox import SecretBox, new_key
from bot.slack.oauth import installation_store
from tests.conftest import check_slack_calls
from tests.procs import Procs
from tests.workspaces import TeamFlow, click_as, thanked

TEAM_A, TEAM_B = "T0ALPHA", "T0BRAVO"


def stored_tokens(stack: LocalStack, team: str) -> dict[str, str]:
    """The token columns of ``team``'s installation and bot rows, as the database holds them
    (``bots.bot_token`` …), the empty ones left out."""
    stored: dict[str, str] = {}
    with stack.runtime.engine.connect() as conn:
        for table, prefix in ((INSTALLATIONS, ""), (BOTS, "bots.")):
            columns = [c for c in ("bot_token", "bot_refresh_token", "user_token") if c in table.c]
            query = select(*(table.c[c] for c in columns)).where(table.c.team_id == team)
            for row in conn.execute(query).mappings():
                stored.update({prefix + c: v for c, v in row.items() if v})
    return stored


def stack_box(stack: LocalStack) -> SecretBox:
    return SecretBox(stack.settings.paylink_secret_key.get_secret_value())  # type: ignore[union-attr]


def test_install_page_state_and_redirect_install_a_workspace(
    distributed: Callable[..., LocalStack],
) -> None:
    stack = distributed()
    flow = TeamFlow(stack, TEAM_A)
    page = requests.get(stack.base_url + "/slack/install", timeout=10)
    assert page.status_code == 200 and "Add to Slack" in page.text
    assert "slack-app-oauth-state=" in page.headers["Set-Cookie"]
    assert not flow.installed()

    assert thanked(stack.install(TEAM_A))
    assert flow.installed()
    exchange = stack.slack.calls_of("oauth.v2.access")[-1]
    assert exchange.ok and exchange.team == TEAM_A
    assert exchange.params["redirect_uri"] == stack.base_url + "/slack/oauth_redirect"
    check_slack_calls(stack)


def test_an_install_stores_its_token_sealed_and_the_workspace_works_with_it(
    distributed: Callable[..., LocalStack],
) -> None:
    stack = distributed()
    assert thanked(stack.install(TEAM_A))
    token = stack.slack.calls_of("oauth.v2.access")[-1].response["access_token"]
    stored = stored_tokens(stack, TEAM_A)
    assert stored.keys() == {"bot_token", "bots.bot_token"}
    assert not any(token in raw or raw.startswith("xox") for raw in stored.values())
    assert {stack_box(stack).open(raw) for raw in stored.values()} == {token}
    # The workspace's whole flow, with that token (the stand-in answers it for TEAM_A only).
    flow = TeamFlow(stack, TEAM_A)
    card = flow.request()
    assert card.team == TEAM_A
    flow.checkout(flow.approve(card.ts))
    flow.wait_status(card.ts, "Paid")
    check_slack_calls(stack)


def test_a_token_stored_in_plain_text_before_still_works_and_rotate_key_seals_it(
    distributed: Callable[..., LocalStack], capsys: pytest.CaptureFixture[str]
) -> None:
    stack = distributed()
    assert thanked(stack.install(TEAM_A))
    token = stack.slack.calls_of("oauth.v2.access")[-1].response["access_token"]
    with stack.runtime.engine.begin() as conn:  # as a version before 0013 stored it
        for table in (INSTALLATIONS, BOTS):
            conn.execute(update(table).where(table.c.team_id == TEAM_A).values(bot_token=token))
    assert set(stored_tokens(stack, TEAM_A).values()) == {token}
    flow = TeamFlow(stack, TEAM_A)
    assert flow.request().team == TEAM_A

    # `paylink rotate-key`, PAYLINK_SECRET_KEY=NEW,OLD with the stack's own key as NEW.
    key = stack.settings.paylink_secret_key.get_secret_value()  # type: ignore[union-attr]
    assert (
        rotate_key(with_overrides(stack.settings, paylink_secret_key=f"{key},{new_key()}"), None)
        == 0
    )
    assert "2 stored secrets re-encrypted" in capsys.readouterr().out
    stored = stored_tokens(stack, TEAM_A)
    assert len(stored) == 2 and token not in "".join(stored.values())
    assert {stack_box(stack).open(raw) for raw in stored.values()} == {token}
    card = flow.request()
    assert card.team == TEAM_A
    flow.checkout(flow.approve(card.ts))
    flow.wait_status(card.ts, "Paid")
    check_slack_calls(stack)


def test_a_replayed_or_made_up_state_is_refused_with_a_page_saying_so(
    distributed: Callable[..., LocalStack],
) -> None:
    stack = distributed()
    page = requests.get(stack.base_url + "/slack/install", timeout=10)
    cookie = page.headers["Set-Cookie"].split(";", 1)[0]
    state = cookie.split("=", 1)[1]
    redirect = stack.base_url + "/slack/oauth_redirect"

    code = stack.slack.authorize(TEAM_A)
    first = requests.get(
        redirect, params={"code": code, "state": state}, headers={"Cookie": cookie}, timeout=10
    )
    assert thanked(first)
    again = requests.get(
        redirect,
        params={"code": stack.slack.authorize(TEAM_B), "state": state},
        headers={"Cookie": cookie},
        timeout=10,
    )
    assert again.status_code == 401
    assert "expired or was already used" in again.text and "open the install page" in again.text
    made_up = requests.get(
        redirect,
        params={"code": stack.slack.authorize(TEAM_B), "state": "forged"},
        headers={"Cookie": "slack-app-oauth-state=forged"},
        timeout=10,
    )
    assert made_up.status_code == 401 and "Paylink was not installed" in made_up.text
    no_cookie = requests.get(redirect, params={"code": "x", "state": state}, timeout=10)
    assert no_cookie.status_code == 400 and "another browser" in no_cookie.text
    # Only the first exchange reached Slack, and only its workspace is installed.
    assert [c.team for c in stack.slack.calls_of("oauth.v2.access")] == [TEAM_A]
    assert not TeamFlow(stack, TEAM_B).installed()


def test_two_workspaces_run_the_flow_each_with_its_own_token_and_never_cross(
    distributed: Callable[..., LocalStack],
) -> None:
    stack = distributed()
    assert thanked(stack.install(TEAM_A)) and thanked(stack.install(TEAM_B))
    tokens = {c.team: c.response["access_token"] for c in stack.slack.calls_of("oauth.v2.access")}
    assert tokens[TEAM_A] != tokens[TEAM_B]
    cards: dict[str, PostedMessage] = {}
    for team in (TEAM_A, TEAM_B):
        flow = TeamFlow(stack, team)
        card = flow.request()
        assert card.team == team  # posted with the workspace's own token
        url = flow.approve(card.ts)
        flow.checkout(url)
        flow.wait_status(card.ts, "Paid")
        cards[team] = card
    flow_a, flow_b = TeamFlow(stack, TEAM_A), TeamFlow(stack, TEAM_B)
    flow_a.idle()
    for team, card in cards.items():
        assert {m.team for m in stack.slack.thread(APPROVAL_CHANNEL, card.ts)} == {team}
    # Every call for a workspace's card went out with that workspace's token.
    for call in stack.slack.calls:
        if call.method in ("chat.update", "chat.postMessage") and call.ok:
            ts = call.params.get("thread_ts") or call.params.get("ts") or call.response["ts"]
            owner = next(t for t, c in cards.items() if ts == c.ts)
            assert call.team == owner, call

    # A new request of A; B's approver clicks it: refused, in B, and nothing changes.
    card = flow_a.request()
    flow_a.idle()
    before = flow_a.card(card.ts)
    click_as(flow_a, flow_b.origin, APPROVER, card.ts, "paylink_approve")
    told = flow_b.wait_ephemeral(APPROVER, "another Slack workspace")
    assert told
    refusal = next(
        c for c in stack.slack.calls_of("chat.postEphemeral") if c.params["user"] == APPROVER
    )
    assert refusal.team == TEAM_B
    flow_a.idle()
    after = flow_a.card(card.ts)
    assert (after.blocks, after.updated) == (before.blocks, before.updated)
    # Each workspace's App Home lists its own links only.
    with stack.runtime.store.reading() as s:
        references = {
            team: set(s.scalars(select(Link.reference).where(Link.team_id == team)))
            for team in (TEAM_A, TEAM_B)
        }
    for flow, other in ((flow_a, flow_b), (flow_b, flow_a)):
        stack.slack.clear()
        flow.sim.home_opened(REP, team=flow.team).raise_for_status()
        home = str(stack.slack.wait_for(lambda s: s.home_views.get(REP))["blocks"])
        assert all(ref in home for ref in references[flow.team])
        assert not any(ref in home for ref in references[other.team])
        assert "https://slack.example/archives/" in home  # Open request: the workspace's URL
        assert stack.slack.calls_of("views.publish")[0].team == flow.team
    check_slack_calls(stack)


def test_uninstall_deletes_the_tokens_stops_pending_jobs_and_keeps_the_links(
    distributed: Callable[..., LocalStack],
) -> None:
    stack = distributed()
    assert thanked(stack.install(TEAM_A))
    flow = TeamFlow(stack, TEAM_A)
    card = flow.request()
    stack.slack.fail_next("chat.update", status=503, times=10_000)
    url = flow.approve(card.ts)  # the thread reply lands; the card's update keeps failing
    flow.slack.wait_for(lambda s: len(s.calls_of("chat.update")) >= 2)

    stack.slack.revoke(TEAM_A)
    uninstalled = {"type": "app_uninstalled"}
    assert flow.sim.event(uninstalled, team=TEAM_A).status_code == 200
    assert not flow.installed()
    flow.idle()
    stopped = [j for j in flow.jobs() if j.last_error and "uninstalled" in j.last_error]
    assert stopped and all(j.done_at is not None for j in stopped)

    # The link is kept and its payment still recorded; nothing more goes to that workspace.
    calls = len(stack.slack.calls)
    flow.checkout(url)
    flow.idle()
    with stack.runtime.store.reading() as s:
        link = s.scalars(select(Link).where(Link.message_ts == card.ts)).one()
    assert link.status == "paid" and link.team_id == TEAM_A
    assert stack.slack.calls[calls:] == []
    later = [j for j in flow.jobs() if j.last_error and "not installed" in j.last_error]
    assert later and all(j.attempts == 1 for j in later)  # stopped at once, never retried


def test_revoked_bot_token_stops_the_workspace_s_slack_jobs(
    distributed: Callable[..., LocalStack],
) -> None:
    stack = distributed()
    assert thanked(stack.install(TEAM_A)) and thanked(stack.install(TEAM_B))
    flow, other = TeamFlow(stack, TEAM_A), TeamFlow(stack, TEAM_B)
    card = flow.request()
    flow.idle()
    stack.slack.revoke(TEAM_A)
    revoked = {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["U0PAYBOT"]}}
    assert flow.sim.event(revoked, team=TEAM_A).status_code == 200
    assert not flow.installed() and other.installed()
    with stack.runtime.store.reading() as s:
        link_id = s.scalars(select(Link.id).where(Link.message_ts == card.ts)).one()
    stack.runtime.service.cancel(link_id, REP)  # a change that would update the card
    flow.idle()
    assert any("not installed" in (j.last_error or "") for j in flow.jobs())
    # The other workspace carries on; installed again, the first starts afresh.
    assert other.request().team == TEAM_B
    assert thanked(stack.install(TEAM_A))
    assert flow.request().team == TEAM_A
    check_slack_calls(stack)


def test_rotating_tokens_are_refreshed_with_the_refresh_token(
    distributed: Callable[..., LocalStack],
) -> None:
    # Tokens live 60 s, inside the 2 hours before expiry when Paylink refreshes them.
    stack = distributed(token_rotation=True, token_ttl=60)
    assert thanked(stack.install(TEAM_A))
    first = stack.slack.calls_of("oauth.v2.access")[0].response
    assert first["refresh_token"] and first["expires_in"] == 60
    card = TeamFlow(stack, TEAM_A).request()
    refreshes = [c for c in stack.slack.calls_of("oauth.v2.access") if c.params.get("grant_type")]
    assert refreshes and all(c.params["grant_type"] == "refresh_token" for c in refreshes)
    assert refreshes[0].params["refresh_token"] == first["refresh_token"]
    post = next(
        c for c in stack.slack.calls_of("chat.postMessage") if c.response.get("ts") == card.ts
    )
    issued = {c.response["access_token"] for c in refreshes}
    installation = installation_store(stack.settings, stack.runtime.engine).find_installation(
        enterprise_id=None, team_id=TEAM_A
    )
    assert installation is not None and installation.bot_token in issued
    assert post.team == TEAM_A and card.team == TEAM_A
    # The refreshed token and its refresh token are stored sealed, like the first ones.
    stored = stored_tokens(stack, TEAM_A)
    assert stored.keys() == {
        "bot_token",
        "bot_refresh_token",
        "bots.bot_token",
        "bots.bot_refresh_token",
    }
    opened = {column: stack_box(stack).open(raw) for column, raw in stored.items()}
    assert opened["bot_token"] == opened["bots.bot_token"] == installation.bot_token
    assert opened["bot_refresh_token"] == installation.bot_refresh_token
    assert not any(value in "".join(stored.values()) for value in opened.values())
    check_slack_calls(stack)


@pytest.mark.slow  # a `paylink check` process
def test_check_counts_installed_workspaces_and_needs_no_bot_token(
    distributed: Callable[..., LocalStack], procs: Procs
) -> None:
    stack = distributed()
    assert thanked(stack.install(TEAM_A)) and thanked(stack.install(TEAM_B))
    settings = stack.settings
    env = {
        "DATABASE_URL": settings.database_url,
        "PAYLINK_PUBLIC_URL": stack.base_url,
        "SLACK_CLIENT_ID": str(settings.slack_client_id),
        "SLACK_CLIENT_SECRET": settings.slack_client_secret.get_secret_value(),  # type: ignore[union-attr]
        "PAYLINK_SECRET_KEY": settings.paylink_secret_key.get_secret_value(),  # type: ignore[union-attr]
        "SLACK_SIGNING_SECRET": stack.signing_secret,
        "SLACK_API_URL": settings.slack_api_url,
    }
    calls = len(stack.slack.calls)
    result = procs.paylink("check", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"ok: Slack: multi-workspace mode, installed in 2 workspaces; install at "
        f"{stack.base_url}/slack/install"
    ) in result.stdout
    assert "SLACK_BOT_TOKEN" not in result.stdout
    assert stack.slack.calls[calls:] == []  # no auth.test with any one token

    # Another key cannot open the workspaces' tokens: refused, in one line naming the key.
    refused = procs.paylink("check", **{**env, "PAYLINK_SECRET_KEY": new_key()})
    assert refused.returncode == 1, refused.stdout + refused.stderr
    [line] = [line for line in refused.stdout.splitlines() if "PAYLINK_SECRET_KEY" in line]
    assert line.startswith(
        "problem: PAYLINK_SECRET_KEY does not decrypt the Slack installation tokens"
    )
    assert "Traceback" not in refused.stdout + refused.stderr


def test_a_token_slack_refuses_stops_the_job_even_with_no_event_to_say_so(
    distributed: Callable[..., LocalStack],
) -> None:
    stack = distributed()
    assert thanked(stack.install(TEAM_A))
    flow = TeamFlow(stack, TEAM_A)
    card = flow.request()
    flow.idle()
    stack.slack.revoke(TEAM_A)  # and the app_uninstalled event is lost
    with stack.runtime.store.reading() as s:
        link_id = s.scalars(select(Link.id).where(Link.message_ts == card.ts)).one()
    stack.runtime.service.cancel(link_id, REP)
    flow.idle()
    stopped = [j for j in flow.jobs() if "refuses the workspace's token" in (j.last_error or "")]
    # The card's update and the thread's reply, each stopped at its first attempt.
    assert len(stopped) == 2 and all(j.attempts == 1 for j in stopped)
    assert {j.last_error for j in stopped} == {
        "stopped: Slack refuses the workspace's token (token_revoked)"
    }
