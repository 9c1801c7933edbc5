"""Each workspace's Slack client and approvers, what an uninstall leaves of its jobs, and the
installation and OAuth state stores on our schema (SQLite and PostgreSQL), without Slack."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from slack_sdk.oauth.installation_store import Installation
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from sqlalchemy import Engine, insert, select

from bot.config import load_settings, with_overrides
from bot.links.installations import BOTS, INSTALLATIONS
from bot.links.kinds import JobKind
from bot.links.service import LinkService
from bot.links.store import LinkStore
from bot.links.tables import Job
from bot.links.workspaces import Workspace
from bot.secretbox import SecretBox, WrongKey, new_key
from bot.slack.app import make_web_client
from bot.slack.approvers import ApprovalsPaused, WorkspaceApprovers
from bot.slack.clients import NotInstalled
from bot.slack.oauth import (
    AUTH_CACHE_SIZE,
    STATE_SECONDS,
    installation_store,
    installed_workspaces,
    oauth_settings,
    slack_clients,
)
from tests.dbs import BACKENDS, migrated_engine
from tests.factories import checkout_request
from tests.fakes import FakeGateway

ALPHA, BRAVO = Workspace("T0ALPHA"), Workspace("T0BRAVO")
KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # 32 bytes, base64: a Fernet key


def multi(**changes: object):  # noqa: ANN201  (Settings)
    values: dict[str, object] = {
        "slack_client_id": "1.2",
        "slack_client_secret": "shh",
        "paylink_secret_key": KEY,
        "slack_api_url": "http://127.0.0.1:9/api/",
    }
    return load_settings(_env_file=None, **(values | changes))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with migrated_engine("sqlite", tmp_path) as engine:
        yield engine


def install(engine: Engine, team: str, token: str) -> None:
    installation_store(multi(), engine).save(
        Installation(
            app_id="A0PAYLINK",
            team_id=team,
            user_id="U0ADMIN",
            bot_token=token,
            bot_id="B0PAYBOT",
            bot_user_id="U0PAYBOT",
            installed_at=datetime.now(UTC).timestamp(),
        )
    )


def test_single_workspace_mode_has_one_client_for_every_workspace(engine: Engine) -> None:
    settings = load_settings(_env_file=None, slack_bot_token="xoxb-one")  # noqa: S106
    base = make_web_client(settings)
    clients = slack_clients(settings, base, engine)
    assert not clients.multi_workspace
    assert clients.for_workspace(ALPHA) is base and clients.for_workspace(Workspace(None)) is base
    assert clients.for_token("xoxb-one") is base


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_installed_workspace_has_its_own_token_over_one_pool(
    backend: str, tmp_path: Path
) -> None:
    with migrated_engine(backend, tmp_path) as engine:
        settings = multi()
        base = make_web_client(settings)
        assert base.token is None  # SLACK_BOT_TOKEN plays no part
        clients = slack_clients(settings, base, engine)
        install(engine, ALPHA.team_id, "xoxb-alpha")  # type: ignore[arg-type]
        install(engine, BRAVO.team_id, "xoxb-bravo")  # type: ignore[arg-type]
        alpha, bravo = clients.for_workspace(ALPHA), clients.for_workspace(BRAVO)
        assert (alpha.token, bravo.token) == ("xoxb-alpha", "xoxb-bravo")
        assert alpha._pool is base._pool is bravo._pool  # noqa: SLF001
        assert installed_workspaces(settings, engine) == 2
        for nowhere in (Workspace("T0NEVER"), Workspace(None)):
            with pytest.raises(NotInstalled):
                clients.for_workspace(nowhere)
        installation_store(settings, engine).delete_all(enterprise_id=None, team_id="T0ALPHA")
        with pytest.raises(NotInstalled):
            clients.for_workspace(ALPHA)
        assert installed_workspaces(settings, engine) == 1


def test_approver_groups_are_read_per_workspace_and_not_where_uninstalled(
    engine: Engine,
) -> None:
    settings = multi()
    clients = slack_clients(settings, make_web_client(settings), engine)
    approvers = WorkspaceApprovers(
        clients, lambda _team: with_overrides(settings, paylink_approvers=["U0BOSS", "S0FINANCE"])
    )
    alpha, bravo = ALPHA.team_id, BRAVO.team_id
    assert approvers.directory(alpha) is approvers.directory(alpha)
    assert approvers.directory(alpha) is not approvers.directory(bravo)
    # Listed by ID: approves in any workspace, whatever Slack says.
    assert approvers.may_decide("U0BOSS", bravo)
    # A group of a workspace Paylink is not installed in cannot be read: its members wait.
    approvers.directory(bravo).refresh()
    with pytest.raises(ApprovalsPaused):
        approvers.may_decide("U0ANA", bravo)
    assert approvers.groups_state == "paused"


def test_a_workspace_that_left_keeps_its_links_and_only_the_record_keeping_jobs(
    engine: Engine,
) -> None:
    store = LinkStore(engine)
    service = LinkService(store, FakeGateway(), is_approver=lambda user: user == "U0BOSS")
    left = service.request_link(
        checkout_request(), requester_id="U0REP", channel_id="C1", workspace=ALPHA
    )
    stays = service.request_link(
        checkout_request(), requester_id="U0REP", channel_id="C1", workspace=BRAVO
    )
    with store.transaction() as s:
        service.queue.enqueue(s, left, JobKind.CONFIRM)  # XPay's record of a payment
    assert service.workspace_left(ALPHA, "Paylink was uninstalled") == 1
    with store.reading() as s:
        jobs = {(j.link_id, j.kind): j for j in s.scalars(select(Job))}
    card = jobs[(left.id, JobKind.CARD.value)]
    assert card.done_at is not None and card.last_error == "Paylink was uninstalled"
    assert jobs[(left.id, JobKind.CONFIRM.value)].done_at is None
    assert jobs[(stays.id, JobKind.CARD.value)].done_at is None
    with store.reading() as s:
        assert store.get(s, left.id) is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_oauth_state_is_good_once_and_only_before_it_expires(
    backend: str, tmp_path: Path
) -> None:
    with migrated_engine(backend, tmp_path) as engine:
        states = SQLAlchemyOAuthStateStore(expiration_seconds=STATE_SECONDS, engine=engine)
        state = states.issue()
        assert states.consume(state) and not states.consume(state)
        assert not states.consume("made-up")
        expired = SQLAlchemyOAuthStateStore(expiration_seconds=-1, engine=engine).issue()
        assert not states.consume(expired)


def test_bolt_remembers_auth_test_for_a_bounded_number_of_tokens(engine: Engine) -> None:
    settings = multi()
    authorize = oauth_settings(settings, engine, make_web_client(settings)).authorize
    cache = authorize.authorize_result_cache  # type: ignore[attr-defined]
    for n in range(AUTH_CACHE_SIZE + 5):  # rotation: two new tokens a day per workspace
        cache[f"xoxb-{n}"] = n
    assert len(cache) == AUTH_CACHE_SIZE
    assert "xoxb-0" not in cache and f"xoxb-{AUTH_CACHE_SIZE + 4}" in cache


@pytest.mark.parametrize("backend", BACKENDS)
def test_installation_tokens_are_stored_sealed_and_read_plain(backend: str, tmp_path: Path) -> None:
    """Every token column is written sealed with PAYLINK_SECRET_KEY, by save and save_bot,
    and read opened by find_installation and find_bot; a rotating token's ciphertext fits."""
    rotating = "xoxe.xoxb-1-" + "Mn0p" * 35  # about the length of Slack's
    tokens = {
        "bot_token": rotating,
        "bot_refresh_token": "xoxe-1-" + "r" * 140,
        "user_token": "xoxp-user-1",
        "user_refresh_token": "xoxe-1-user",
    }
    with migrated_engine(backend, tmp_path) as engine:
        settings = multi()
        store = installation_store(settings, engine)
        store.save(
            Installation(
                app_id="A0PAYLINK",
                team_id=ALPHA.team_id,
                user_id="U0ADMIN",
                bot_id="B0PAYBOT",
                bot_user_id="U0PAYBOT",
                bot_token_expires_in=43200,
                user_token_expires_in=43200,
                installed_at=datetime.now(UTC).timestamp(),
                **tokens,
            )
        )
        with engine.connect() as conn:
            stored = dict(
                conn.execute(select(*(INSTALLATIONS.c[c] for c in tokens))).mappings().one()
            )
            bot = dict(
                conn.execute(select(BOTS.c.bot_token, BOTS.c.bot_refresh_token)).mappings().one()
            )
        assert stored.keys() == tokens.keys()
        for column, raw in [*stored.items(), *(("bots." + c, v) for c, v in bot.items())]:
            assert raw and not raw.startswith("xox"), column
            assert not any(token in raw for token in tokens.values()), column
        box = SecretBox(KEY)
        assert {c: box.open(raw) for c, raw in stored.items()} == tokens
        assert box.open(bot["bot_token"]) == rotating

        found = store.find_installation(enterprise_id=None, team_id=ALPHA.team_id)
        assert found is not None
        assert {c: getattr(found, c) for c in tokens} == tokens
        found_bot = store.find_bot(enterprise_id=None, team_id=ALPHA.team_id)
        assert found_bot is not None
        assert (found_bot.bot_token, found_bot.bot_refresh_token) == (
            rotating,
            tokens["bot_refresh_token"],
        )
        # Saved again (a refresh: same installation, new token), still sealed.
        found_bot.bot_token = "xoxe.xoxb-1-refreshed"
        store.save_bot(found_bot)
        with engine.connect() as conn:
            raw = conn.scalar(select(BOTS.c.bot_token))
        assert raw is not None and box.open(raw) == "xoxe.xoxb-1-refreshed"
        assert installed_workspaces(settings, engine) == 1
        # Another key opens none of it: an error naming the workspace, never a token.
        wrong = multi(paylink_secret_key=new_key())
        other = installation_store(wrong, engine)
        unopened = "tokens of workspace T0ALPHA do not decrypt with PAYLINK_SECRET_KEY"
        with pytest.raises(WrongKey, match=unopened):
            other.find_installation(enterprise_id=None, team_id=ALPHA.team_id)
        with pytest.raises(WrongKey, match=unopened):
            other.find_bot(enterprise_id=None, team_id=ALPHA.team_id)
        with pytest.raises(WrongKey, match=unopened):  # a job: retried, not stopped
            slack_clients(wrong, make_web_client(wrong), engine).for_workspace(ALPHA)


def test_a_token_stored_in_plain_text_before_is_read_as_it_is(engine: Engine) -> None:
    plain = {
        "client_id": "1.2",
        "app_id": "A0PAYLINK",
        "team_id": ALPHA.team_id,
        "bot_token": "xoxb-from-before",
        "bot_id": "B0PAYBOT",
        "is_enterprise_install": False,
        "installed_at": datetime.now(UTC).replace(tzinfo=None),
    }
    with engine.begin() as conn:
        conn.execute(insert(INSTALLATIONS).values(user_id="U0ADMIN", **plain))
        conn.execute(insert(BOTS).values(**plain))
    settings = multi()
    clients = slack_clients(settings, make_web_client(settings), engine)
    assert clients.for_workspace(ALPHA).token == "xoxb-from-before"
    bot = installation_store(settings, engine).find_bot(enterprise_id=None, team_id=ALPHA.team_id)
    assert bot is not None and bot.bot_token == "xoxb-from-before"
