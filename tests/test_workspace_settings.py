"""A workspace's own settings and XPay stores (bot/links/workspace_settings.py): stored over
the environment's, secrets encrypted at rest, every change recorded without a secret, the
key checked and rotated; which store a request uses."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from bot.commands import rotate_key, settings_history
from bot.config import Settings, load_settings
from bot.db import make_engine
from bot.links.installations import BOTS, INSTALLATIONS
from bot.links.service import LinkService
from bot.links.store import LinkStore
from bot.links.stores import StoreGateways
from bot.links.workspace_settings import (
    SettingsChange,
    StoreProblems,
    WorkspaceSettings,
    XPayStore,
)
from bot.links.workspaces import Workspace
from bot.schema import upgrade
from bot.secretbox import SecretBox, WrongKey, new_key
from bot.slack.installation_store import SealedInstallationStore
from bot.xpay.keys import GatewayKeys
from tests.dbs import BACKENDS, database_url, migrated_engine
from tests.factories import checkout_request
from tests.fakes import FakeGateway

TEAM, OTHER_TEAM, ADMIN = "T0HOME", "T0ELSEWHERE", "U0ADMIN"
KEY = new_key()
API_KEY, HMAC, WEBHOOK = "sk_live_" + "a1" * 16, "hm_" + "b2" * 16, "wh_" + "c3" * 16
STORE_KEYS = {"api_key": API_KEY, "hmac_secret": HMAC, "webhook_secret": WEBHOOK}


def live_store(name: str, channels: list[str], **changes: object) -> dict[str, object]:
    return {
        "name": name,
        "environment": "live",
        "account_id": f"acct-{name.lower()}",
        "channels": channels,
        **changes,
    }


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[str, LinkStore]]:
    with migrated_engine("sqlite", tmp_path) as engine:
        yield f"sqlite:///{tmp_path / 'paylink-test.db'}", LinkStore(engine)


def env(url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {"database_url": url, "paylink_secret_key": KEY}
    return load_settings(_env_file=None, **(values | overrides))


@pytest.fixture
def workspaces(db: tuple[str, LinkStore]) -> WorkspaceSettings:
    url, store = db
    return WorkspaceSettings(env(url, paylink_currencies="PKR"), store)


def test_nothing_stored_means_the_environments_settings(workspaces: WorkspaceSettings) -> None:
    assert workspaces.for_team(TEAM) is workspaces.env
    assert workspaces.for_team(None) is workspaces.env
    assert workspaces.store_for(TEAM, "C0SALES") is None


def test_stored_settings_go_over_the_environments_for_that_workspace_only(
    workspaces: WorkspaceSettings,
) -> None:
    changed = workspaces.save_settings(
        TEAM,
        ADMIN,
        {
            "paylink_currencies": "pkr, usd",
            "paylink_max_amount": "250000",
            "paylink_approvers": "U0BOSS,S0FIN",
            "paylink_remind_approvers_after": "30m",
            "paylink_auto_approve_under": "PKR:10000",
        },
    )
    assert changed == [
        "Currencies",
        "Maximum amount",
        "Approvers",
        "Remind approvers after",
        "Auto-approve under",
    ]
    mine = workspaces.for_team(TEAM)
    assert mine.paylink_currencies == ["PKR", "USD"]
    assert str(mine.paylink_max_amount) == "250000"
    assert mine.paylink_approvers == ["U0BOSS", "S0FIN"]
    assert mine.paylink_remind_approvers_after.total_seconds() == 1800
    assert str(mine.paylink_auto_approve_under["PKR"]) == "10000"
    assert workspaces.for_team(OTHER_TEAM).paylink_currencies == ["PKR"]

    # Emptied: the environment's again, and recorded so.
    workspaces.save_settings(TEAM, ADMIN, {"paylink_currencies": ""})
    assert workspaces.for_team(TEAM).paylink_currencies == ["PKR"]
    last = workspaces.history(TEAM)[-1]
    assert (last.actor, last.setting, last.detail) == (
        ADMIN,
        "Currencies",
        "the environment's (PKR)",
    )


def test_invalid_settings_are_refused_per_field_and_nothing_is_stored(
    workspaces: WorkspaceSettings,
) -> None:
    with pytest.raises(StoreProblems) as refused:
        workspaces.save_settings(
            TEAM,
            ADMIN,
            {
                "paylink_currencies": "PKR,RUPEES",
                "paylink_link_ttl": "a week",
                "paylink_success_url": "javascript:alert(1)",
                "paylink_max_amount": "12",
            },
        )
    assert set(refused.value.errors) == {
        "paylink_currencies",
        "paylink_link_ttl",
        "paylink_success_url",
    }
    assert "ISO 4217" in refused.value.errors["paylink_currencies"]
    assert workspaces.stored(TEAM) == {}
    assert workspaces.history() == []


def test_store_secrets_are_encrypted_at_rest_and_recorded_without_their_values(
    workspaces: WorkspaceSettings,
) -> None:
    saved = workspaces.save_store(TEAM, ADMIN, live_store("Lahore", ["C0LHR"]), STORE_KEYS)
    with workspaces.store.reading() as s:
        row = s.get(XPayStore, saved.id)
        raw = {c: getattr(row, c) for c in STORE_KEYS}
    for column, secret in STORE_KEYS.items():
        assert secret not in raw[column]
        assert SecretBox(KEY).open(raw[column]) == secret
        with pytest.raises(WrongKey):
            SecretBox(new_key()).open(raw[column])
    assert set(saved.secrets_set) == set(STORE_KEYS)
    assert saved.secrets_set["api_key"]["by"] == ADMIN

    changes = workspaces.history(TEAM)
    assert ("store Lahore: API key", "set") in [(c.setting, c.detail) for c in changes]
    recorded = " ".join(f"{c.setting} {c.detail}" for c in changes)
    assert not any(secret in recorded for secret in STORE_KEYS.values())

    # Left empty on the next save: the stored key stays.
    kept = workspaces.save_store(
        TEAM, ADMIN, live_store("Lahore", ["C0LHR", "C0ISB"]), {}, store_id=saved.id
    )
    assert workspaces.secret(kept, "api_key") == API_KEY
    assert kept.channels == ("C0ISB", "C0LHR")


def test_a_store_is_refused_without_keys_or_with_keys_that_are_not_keys(
    workspaces: WorkspaceSettings,
) -> None:
    with pytest.raises(StoreProblems) as refused:
        workspaces.save_store(TEAM, ADMIN, live_store("", [], account_id=""), {})
    assert set(refused.value.errors) == {
        "name",
        "account_id",
        "api_key",
        "hmac_secret",
        "webhook_secret",
    }
    with pytest.raises(StoreProblems) as refused:
        workspaces.save_store(
            TEAM, ADMIN, live_store("Karachi", []), STORE_KEYS | {"api_key": "sk live"}
        )
    assert set(refused.value.errors) == {"api_key"}
    assert workspaces.stores(TEAM) == ()


def test_without_a_secret_key_keys_cannot_be_stored(db: tuple[str, LinkStore]) -> None:
    url, store = db
    workspaces = WorkspaceSettings(env(url, paylink_secret_key=None), store)
    with pytest.raises(StoreProblems, match="PAYLINK_SECRET_KEY is not set"):
        workspaces.save_store(TEAM, ADMIN, live_store("Lahore", []), STORE_KEYS)


def test_a_request_uses_its_channels_store_else_the_default(
    workspaces: WorkspaceSettings,
) -> None:
    a = workspaces.save_store(TEAM, ADMIN, live_store("A", ["C0A"]), STORE_KEYS)
    b = workspaces.save_store(TEAM, ADMIN, live_store("B", ["C0B"]), STORE_KEYS)
    assert a.is_default and not b.is_default  # the first store is the default
    assert workspaces.store_for(TEAM, "C0A").id == a.id
    assert workspaces.store_for(TEAM, "C0B").id == b.id
    assert workspaces.store_for(TEAM, "C0ELSE").id == a.id
    assert workspaces.store_for(OTHER_TEAM, "C0A") is None

    # B made the default, and given A's channel: A keeps neither.
    workspaces.save_store(
        TEAM, ADMIN, live_store("B", ["C0A", "C0B"], is_default=True), {}, store_id=b.id
    )
    stores = {st.name: st for st in workspaces.stores(TEAM)}
    assert (stores["A"].channels, stores["A"].is_default) == ((), False)
    assert stores["B"].is_default
    assert workspaces.store_for(TEAM, "C0A").id == b.id

    # The link records the store its channel uses.
    service = LinkService(
        workspaces.store,
        FakeGateway(),
        is_approver=lambda _user: True,
        stores=StoreGateways(
            workspaces, FakeGateway(), GatewayKeys(workspaces.env, workspaces.store.sessions)
        ),
    )
    link = service.request_link(
        checkout_request(),
        requester_id="U0REP",
        channel_id="C0APPROVALS",
        origin_channel_id="C0A",
        workspace=Workspace(TEAM),
    )
    assert (link.store_id, link.sandbox) == (b.id, False)
    outside = service.request_link(
        checkout_request(),
        requester_id="U0REP",
        channel_id="C0APPROVALS",
        origin_channel_id="C0A",
        workspace=Workspace(OTHER_TEAM),
    )
    assert outside.store_id is None


def test_a_wrong_or_missing_key_is_one_line_and_rotation_re_encrypts_everything(
    db: tuple[str, LinkStore],
    workspaces: WorkspaceSettings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, store = db
    a = workspaces.save_store(TEAM, ADMIN, live_store("A", ["C0A"]), STORE_KEYS)
    workspaces.save_store(TEAM, ADMIN, live_store("B", ["C0B"]), STORE_KEYS)
    assert workspaces.check_key() is None
    wrong = WorkspaceSettings(env(url, paylink_secret_key=new_key()), store).check_key()
    assert wrong is not None and "\n" not in wrong and "does not decrypt" in wrong
    missing = WorkspaceSettings(env(url, paylink_secret_key=None), store).check_key()
    assert missing is not None and "PAYLINK_SECRET_KEY is not set" in missing

    # `paylink rotate-key --new-key KEY`
    rotated_to = new_key()
    assert rotate_key(env(url, paylink_secret_key=new_key()), rotated_to) == 1  # a wrong key
    assert "does not decrypt" in capsys.readouterr().err
    assert rotate_key(env(url), "not-a-key") == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert rotate_key(env(url), rotated_to) == 0
    assert "6 stored secrets re-encrypted" in capsys.readouterr().out

    with store.reading() as s:
        tokens = [row.api_key for row in s.scalars(select(XPayStore))]
    assert all(SecretBox(rotated_to).open(t) == API_KEY for t in tokens)
    with pytest.raises(WrongKey):
        SecretBox(KEY).open(tokens[0])
    rotated = WorkspaceSettings(env(url, paylink_secret_key=rotated_to), store)
    assert rotated.check_key() is None
    assert rotated.secret(rotated.store_by_id(a.id), "webhook_secret") == WEBHOOK


def test_a_rotation_with_both_keys_set_keeps_every_process_working(
    db: tuple[str, LinkStore],
    workspaces: WorkspaceSettings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """PAYLINK_SECRET_KEY=NEW,OLD: a process restarted with both reads what OLD sealed and
    seals with NEW; `paylink rotate-key`, the new key read from that variable, re-encrypts
    everything with NEW while it keeps working; then NEW alone opens everything."""
    url, store = db
    old = workspaces.save_store(TEAM, ADMIN, live_store("A", ["C0A"]), STORE_KEYS)
    rotated_to = new_key()
    both = env(url, paylink_secret_key=f"{rotated_to},{KEY}")
    running = WorkspaceSettings(both, store)
    assert running.secret(running.store_by_id(old.id), "api_key") == API_KEY
    made = running.save_store(TEAM, ADMIN, live_store("B", ["C0B"]), STORE_KEYS)
    assert (
        WorkspaceSettings(env(url, paylink_secret_key=rotated_to), store).secret(
            running.store_by_id(made.id), "api_key"
        )
        == API_KEY
    )

    assert rotate_key(env(url), None) == 2  # one key: nothing to rotate to
    assert "NEW,OLD" in capsys.readouterr().err
    assert rotate_key(both, None) == 0
    assert "6 stored secrets re-encrypted" in capsys.readouterr().out
    assert running.secret(running.store_by_id(old.id), "webhook_secret") == WEBHOOK
    assert WorkspaceSettings(env(url, paylink_secret_key=rotated_to), store).check_key() is None
    assert WorkspaceSettings(env(url), store).check_key() is not None  # OLD alone: no more


def test_settings_history_prints_who_changed_what_and_never_a_secret(
    db: tuple[str, LinkStore],
    workspaces: WorkspaceSettings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = db
    workspaces.save_settings(TEAM, ADMIN, {"paylink_max_amount": "90000"})
    workspaces.save_store(TEAM, "U0OWNER", live_store("Lahore", ["C0LHR"]), STORE_KEYS)
    assert settings_history(env(url)) == 0  # `paylink settings history`
    out = capsys.readouterr().out
    assert f"{TEAM} {ADMIN} Maximum amount: 90000" in out
    assert f"{TEAM} U0OWNER store Lahore: created" in out
    assert "U0OWNER store Lahore: Webhook HMAC secret: set" in out
    assert not any(secret in out for secret in STORE_KEYS.values())
    with workspaces.store.reading() as s:
        assert len(list(s.scalars(select(SettingsChange)))) == len(out.strip().splitlines())


def _installed(store: LinkStore, team: str, tokens: dict[str, str]) -> None:
    """An installation row and its bot's, with ``tokens`` as stored (sealed or plain)."""
    row = {
        "client_id": "1.2",
        "app_id": "A0PAYLINK",
        "team_id": team,
        "bot_id": "B0PAYBOT",
        "is_enterprise_install": False,
        "installed_at": datetime.now(UTC).replace(tzinfo=None),
    }
    bot = {c: v for c, v in tokens.items() if c.startswith("bot_")}
    with store.engine.begin() as conn:
        conn.execute(insert(INSTALLATIONS).values(user_id=ADMIN, **row, **tokens))
        conn.execute(insert(BOTS).values(**row, **bot))


def _raw_tokens(store: LinkStore) -> list[str]:
    with store.engine.connect() as conn:
        return [
            token
            for table, columns in (
                (INSTALLATIONS, ("bot_token", "user_token")),
                (BOTS, ("bot_token",)),
            )
            for row in conn.execute(select(*(table.c[c] for c in columns)))
            for token in row
            if token
        ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_slack_tokens_are_checked_and_rotated_with_the_xpay_secrets_plain_ones_sealed(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Multi-workspace mode's Slack tokens are sealed with the same key: `paylink check`
    names a key that does not open them, and `paylink rotate-key` re-encrypts them, sealing
    the ones stored in plain text before tokens were sealed, and counts them."""
    with database_url(backend, tmp_path) as url:
        engine = make_engine(url)
        upgrade(engine)
        store = LinkStore(engine)
        workspaces = WorkspaceSettings(env(url), store)
        workspaces.save_store(TEAM, ADMIN, live_store("A", ["C0A"]), STORE_KEYS)
        box = SecretBox(KEY)
        _installed(
            store,
            TEAM,
            {"bot_token": box.seal("xoxb-sealed"), "user_token": box.seal("xoxp-sealed")},
        )
        _installed(store, OTHER_TEAM, {"bot_token": "xoxb-plain"})  # from before 0013
        assert workspaces.check_key() is None

        wrong = WorkspaceSettings(env(url, paylink_secret_key=new_key()), store).check_key()
        assert wrong == (
            "PAYLINK_SECRET_KEY does not decrypt the XPay store secrets and the Slack "
            "installation tokens in the database: set it to the key they were encrypted with "
            "(the new one after `paylink rotate-key`)"
        )
        missing = WorkspaceSettings(env(url, paylink_secret_key=None), store).check_key()
        assert (
            missing is not None
            and "3 XPay store secrets and 3 Slack installation tokens" in missing
        )
        with store.transaction() as s:  # the XPay keys unset: only the tokens are wrong
            row = s.scalars(select(XPayStore)).one()
            row.api_key = row.hmac_secret = row.webhook_secret = None
        wrong = WorkspaceSettings(env(url, paylink_secret_key=new_key()), store).check_key()
        assert wrong is not None and "does not decrypt the Slack installation tokens in" in wrong

        rotated_to = new_key()
        assert rotate_key(env(url, paylink_secret_key=f"{rotated_to},{KEY}"), None) == 0
        # No XPay keys left; three tokens sealed (the installation's two, its bot's one), two
        # plain (an installation's and its bot's).
        assert "5 stored secrets re-encrypted" in capsys.readouterr().out
        raw = _raw_tokens(store)
        assert len(raw) == 5 and not any(token.startswith("xox") for token in raw)
        assert sorted(SecretBox(rotated_to).open(token) for token in raw) == sorted(
            ["xoxb-sealed", "xoxp-sealed", "xoxb-sealed", "xoxb-plain", "xoxb-plain"]
        )
        assert WorkspaceSettings(env(url), store).check_key() is not None  # the old key alone
        found = SealedInstallationStore("1.2", engine, SecretBox(rotated_to)).find_installation(
            enterprise_id=None, team_id=OTHER_TEAM
        )
        assert found is not None and found.bot_token == "xoxb-plain"
        engine.dispose()
