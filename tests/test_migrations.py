"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

import bot.links.tables  # noqa: F401  (registers the tables)
import bot.links.workspace_settings  # noqa: F401
import bot.xpay.keys  # noqa: F401
import bot.xpay.sandbox  # noqa: F401
from bot.db import Base, make_engine
from bot.schema import MIGRATIONS, SchemaOutdated, head_revision, require_current, upgrade
from tests.dbs import BACKENDS, database_url


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_match_the_models(backend: str, tmp_path: Path) -> None:
    with database_url(backend, tmp_path) as url:
        engine = make_engine(url)
        with pytest.raises(SchemaOutdated, match="paylink migrate"):
            require_current(engine)
        assert upgrade(engine) == (None, head_revision())
        require_current(engine)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        engine.dispose()


def _migrate(engine: Engine, target: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, target)


@pytest.mark.parametrize("backend", BACKENDS)
def test_link_workspaces_and_views_upgrade_and_downgrade_with_rows(
    backend: str, tmp_path: Path
) -> None:
    """0005 adds the owner and view columns to links that exist, and takes them away again."""
    row = (
        "INSERT INTO links (reference, amount, currency, customer_name, shipping,"
        " payment_methods, requester_id, status, version, attempts, created_at, updated_at)"
        " VALUES ('R-1', 10, 'PKR', 'A', '{}', '[]', 'U1', 'awaiting_approval', 1, 0,"
        " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    history = (
        "INSERT INTO link_history (link_id, to_status, actor, at)"
        " SELECT id, 'awaiting_approval', 'U1', CURRENT_TIMESTAMP FROM links"
    )
    with database_url(backend, tmp_path) as url:
        engine = make_engine(url)
        _migrate(engine, "0003")
        with engine.begin() as conn:
            conn.execute(text(row))
            conn.execute(text(history))
        _migrate(engine, "0005")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT reference, team_id, view_id FROM links")).all() == [
                ("R-1", None, None)
            ]
        _migrate(engine, "0003", down=True)
        with engine.connect() as conn:
            assert "team_id" not in {c["name"] for c in inspect(conn).get_columns("links")}
            assert conn.execute(text("SELECT reference FROM links")).all() == [("R-1",)]
            assert conn.execute(text("SELECT count(*) FROM link_history")).scalar() == 1
        _migrate(engine, "head")
        require_current(engine)
        engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_link_intents_are_backfilled_from_links_and_dropped_on_downgrade(
    backend: str, tmp_path: Path
) -> None:
    """0008 gives every link created so far its one checkout link (paid, if the link is)."""
    row = (
        "INSERT INTO links (reference, amount, currency, customer_name, shipping,"
        " payment_methods, requester_id, status, version, attempts, created_at, updated_at,"
        " intent_id, checkout_url)"
        " VALUES ('R-{n}', 10, 'PKR', 'A', '{{}}', '[]', 'U1', '{status}', 1, 0,"
        " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, {intent}, {url})"
    )
    with database_url(backend, tmp_path) as url:
        engine = make_engine(url)
        _migrate(engine, "0005")
        with engine.begin() as conn:
            for n, status, intent in (
                (1, "paid", "'pi_1'"),
                (2, "awaiting_payment", "'pi_2'"),
                (3, "awaiting_approval", "NULL"),
            ):
                url_value = f"'https://x/{n}'" if intent != "NULL" else "NULL"
                conn.execute(text(row.format(n=n, status=status, intent=intent, url=url_value)))
        _migrate(engine, "0008")
        with engine.connect() as conn:
            intents = conn.execute(
                text(
                    "SELECT reference, intent_id, checkout_url, paid_at IS NOT NULL, expires_at"
                    " FROM link_intents ORDER BY reference"
                )
            ).all()
            assert [tuple(r) for r in intents] == [
                ("R-1", "pi_1", "https://x/1", True, None),
                ("R-2", "pi_2", "https://x/2", False, None),
            ]
            current = conn.execute(
                text("SELECT checkout_reference FROM links ORDER BY reference")
            ).all()
            assert [r[0] for r in current] == ["R-1", "R-2", None]
        _migrate(engine, "0005", down=True)
        with engine.connect() as conn:
            assert "link_intents" not in inspect(conn).get_table_names()
            assert conn.execute(text("SELECT count(*) FROM links")).scalar() == 3
        _migrate(engine, "head")
        require_current(engine)
        engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_slack_token_columns_widen_for_sealed_tokens_and_downgrade_only_when_plain(
    backend: str, tmp_path: Path
) -> None:
    """0013 makes the token columns Text (a sealed rotating token is some 300 characters),
    keeping the rows; its downgrade refuses while a token is sealed."""
    sealed = "gAAAAA" + "x" * 300
    installation = (
        "INSERT INTO slack_installations (client_id, app_id, team_id, bot_token,"
        " bot_refresh_token, user_id, is_enterprise_install, installed_at)"
        " VALUES ('1.2', 'A1', 'T1', :token, 'xoxe-1-plain', 'U1', false, CURRENT_TIMESTAMP)"
    )
    bot = (
        "INSERT INTO slack_bots (client_id, app_id, team_id, bot_token, is_enterprise_install,"
        " installed_at) VALUES ('1.2', 'A1', 'T1', :token, false, CURRENT_TIMESTAMP)"
    )
    with database_url(backend, tmp_path) as url:
        engine = make_engine(url)
        _migrate(engine, "0012")
        with engine.begin() as conn:
            conn.execute(text(installation), {"token": "xoxb-plain"})
            conn.execute(text(bot), {"token": "xoxb-plain"})
        _migrate(engine, "0013")
        with engine.connect() as conn:
            columns = {c["name"]: c["type"] for c in inspect(conn).get_columns("slack_bots")}
            assert "TEXT" in str(columns["bot_token"]).upper()
            assert {i["name"] for i in inspect(conn).get_indexes("slack_bots")} == {
                "slack_bots_idx"
            }
            assert conn.execute(text("SELECT bot_token FROM slack_installations")).all() == [
                ("xoxb-plain",)
            ]
            conn.execute(text(bot), {"token": sealed})
            conn.commit()
        with pytest.raises(RuntimeError, match=r"slack_bots\.bot_token holds tokens sealed"):
            _migrate(engine, "0012", down=True)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM slack_bots WHERE bot_token <> 'xoxb-plain'"))
        _migrate(engine, "0012", down=True)
        with engine.connect() as conn:
            columns = {c["name"]: c["type"] for c in inspect(conn).get_columns("slack_bots")}
            assert getattr(columns["bot_token"], "length", None) == 200
            assert conn.execute(text("SELECT bot_token FROM slack_bots")).all() == [("xoxb-plain",)]
        _migrate(engine, "head")
        require_current(engine)
        engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_digests_gain_their_workspace_and_a_downgrade_keeps_the_deployment_s(
    backend: str, tmp_path: Path
) -> None:
    """0014 adds the workspace of a digest (issue 21/23): the rows there are stay the
    deployment's, keyed by their day; the downgrade drops the workspaces' digests, which
    versions before it would read as the deployment's."""
    digest = (
        "INSERT INTO digests (key, covered_until, channel_id, created_at)"
        " VALUES (:key, CURRENT_TIMESTAMP, 'C1', CURRENT_TIMESTAMP)"
    )
    with database_url(backend, tmp_path) as url:
        engine = make_engine(url)
        _migrate(engine, "0013")
        with engine.begin() as conn:
            conn.execute(text(digest), {"key": "2026-12-02"})
        _migrate(engine, "0014")
        with engine.begin() as conn:
            assert conn.execute(text("SELECT key, team_id, enterprise_id FROM digests")).all() == [
                ("2026-12-02", None, None)
            ]
            conn.execute(
                text(
                    "INSERT INTO digests (key, team_id, covered_until, created_at)"
                    " VALUES ('T1:2026-12-03', 'T1', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
        _migrate(engine, "0013", down=True)
        with engine.connect() as conn:
            assert "team_id" not in {c["name"] for c in inspect(conn).get_columns("digests")}
            assert conn.execute(text("SELECT key FROM digests")).all() == [("2026-12-02",)]
        _migrate(engine, "head")
        require_current(engine)
        engine.dispose()
