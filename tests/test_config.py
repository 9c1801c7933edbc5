"""Configuration: defaults, CSV lists, one clear line per bad variable, secrets kept out."""

from __future__ import annotations

import base64
import os
from datetime import time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.config import ConfigError, Settings, load_settings
from bot.db import make_engine
from bot.payment_methods import PAYMENT_METHODS
from bot.schema import upgrade
from tests.procs import Procs, clean_environment


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting from the developer's shell leaks into a test."""
    for name in os.environ.keys() - clean_environment().keys():
        monkeypatch.delenv(name)


def load(**overrides: object) -> Settings:
    return load_settings(_env_file=None, **overrides)


def errors_for(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> list[str]:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load()
    return info.value.lines


# Defaults and lists ---------------------------------------------------------------------


def test_defaults() -> None:
    s = load()
    assert s.xpay_env == "sandbox"
    assert s.sandbox
    assert s.slack_api_url == "https://slack.com/api/"
    assert s.database_url == "sqlite:///paylink.db"
    assert s.port == 3000
    assert s.paylink_approvers == []
    assert s.paylink_approval_channel is None
    assert s.paylink_allow_self_approval is False
    assert s.paylink_currencies == ["PKR"]
    assert s.paylink_payment_methods == list(PAYMENT_METHODS)
    assert s.paylink_payment_methods == ["card", "easypaisa", "jazzcash", "googlepay", "dqr"]
    assert s.paylink_success_url is None and s.paylink_failure_url is None
    assert s.paylink_max_amount is None
    assert s.paylink_worker == "child"
    assert s.paylink_host == "0.0.0.0"
    assert s.public_url == "http://localhost:3000"
    assert s.xpay_url == "http://localhost:3000/sandbox"
    assert s.slack_bot_token is None


def test_xpay_base_urls_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = {
        "XPAY_API_KEY": "k",
        "XPAY_ACCOUNT_ID": "a",
        "XPAY_HMAC_SECRET": "h",
        "XPAY_WEBHOOK_SECRET": "w",
    }
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("XPAY_ENV", "staging")
    assert load().xpay_url == "https://xstak-pay-stg.xstak.com"
    monkeypatch.setenv("XPAY_ENV", "live")
    assert load().xpay_url == "https://xstak-pay.xstak.com"
    monkeypatch.setenv("XPAY_BASE_URL", "https://example.test/xpay/")
    assert load().xpay_url == "https://example.test/xpay"


def test_public_url_follows_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8080")
    assert load().public_url == "http://localhost:8080"
    monkeypatch.setenv("PAYLINK_PUBLIC_URL", "https://paylink.example.com/")
    s = load()
    assert s.public_url == "https://paylink.example.com"
    assert s.xpay_url == "https://paylink.example.com/sandbox"


def test_csv_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYLINK_APPROVERS", " U123ABC , S0FINANCE,,W42 ")
    monkeypatch.setenv("PAYLINK_CURRENCIES", "pkr, usd")
    monkeypatch.setenv("PAYLINK_PAYMENT_METHODS", "Card,jazzcash")
    monkeypatch.setenv("XPAY_WEBHOOK_SECRET", "new-secret, old-secret")
    monkeypatch.setenv("XPAY_ENV", "sandbox")  # with a key set, the environment is named
    s = load()
    assert s.paylink_approvers == ["U123ABC", "S0FINANCE", "W42"]
    assert s.paylink_currencies == ["PKR", "USD"]
    assert s.paylink_payment_methods == ["card", "jazzcash"]
    assert s.webhook_secrets == ["new-secret", "old-secret"]


def test_other_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYLINK_ALLOW_SELF_APPROVAL", "true")
    monkeypatch.setenv("PAYLINK_MAX_AMOUNT", "250000.50")
    monkeypatch.setenv("PAYLINK_SUCCESS_URL", "https://shop.example.com/thanks")
    monkeypatch.setenv("PAYLINK_FAILURE_URL", "")
    s = load()
    assert s.paylink_allow_self_approval is True
    assert s.paylink_max_amount == Decimal("250000.50")
    assert s.paylink_success_url == "https://shop.example.com/thanks"
    assert s.paylink_failure_url is None


def test_the_sandbox_keys_are_not_settings() -> None:
    # They are random per database (tests/test_sandbox_keys.py), never a value in the code.
    s = load()
    assert s.xpay_credentials() is None
    assert s.webhook_secrets == []


# One line per bad variable -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("PAYLINK_APPROVERS", "bob"),
        ("PAYLINK_CURRENCIES", "PK"),
        ("PAYLINK_PAYMENT_METHODS", "bitcoin"),
        ("PAYLINK_MAX_AMOUNT", "-1"),
        ("PAYLINK_MAX_AMOUNT", "lots"),
        ("PAYLINK_MAX_AMOUNT", "Infinity"),
        ("PAYLINK_MAX_AMOUNT", "1e900000000"),
        ("PAYLINK_MAX_AMOUNT", "1000000000000"),
        ("PAYLINK_MAX_AMOUNT", "0.001"),
        ("SLACK_API_URL", "ftp://x"),
        ("PAYLINK_PUBLIC_URL", "paylink.example.com"),
        ("PAYLINK_SUCCESS_URL", "javascript:alert(1)"),
        ("XPAY_ENV", "prod"),
        ("PAYLINK_ALLOW_SELF_APPROVAL", "maybe"),
        ("PAYLINK_WORKER", "thread"),
        ("PAYLINK_HOST", "paylink.example.com"),
    ],
)
def test_each_bad_variable_gives_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    lines = errors_for(monkeypatch, name, value)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{name}: "), lines
    assert "\n" not in lines[0]
    assert len(lines[0]) < 300


def test_messages_say_what_is_expected(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "U" in errors_for(monkeypatch, "PAYLINK_APPROVERS", "bob")[0]
    assert "bob" in errors_for(monkeypatch, "PAYLINK_APPROVERS", "bob")[0]
    monkeypatch.delenv("PAYLINK_APPROVERS")
    assert "PKR" in errors_for(monkeypatch, "PAYLINK_CURRENCIES", "PK")[0]
    monkeypatch.delenv("PAYLINK_CURRENCIES")
    line = errors_for(monkeypatch, "PAYLINK_PAYMENT_METHODS", "bitcoin")[0]
    assert "bitcoin" in line and "card" in line
    monkeypatch.delenv("PAYLINK_PAYMENT_METHODS")
    assert "positive" in errors_for(monkeypatch, "PAYLINK_MAX_AMOUNT", "-1")[0]
    monkeypatch.delenv("PAYLINK_MAX_AMOUNT")
    assert "http" in errors_for(monkeypatch, "SLACK_API_URL", "ftp://x")[0]
    monkeypatch.delenv("SLACK_API_URL")
    line = errors_for(monkeypatch, "XPAY_ENV", "prod")[0]
    assert "sandbox" in line and "live" in line


def test_several_bad_variables_give_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "abc")
    monkeypatch.setenv("PAYLINK_CURRENCIES", "PK")
    monkeypatch.setenv("SLACK_API_URL", "ftp://x")
    with pytest.raises(ConfigError) as info:
        load()
    names = sorted(line.split(":")[0] for line in info.value.lines)
    assert names == ["PAYLINK_CURRENCIES", "PORT", "SLACK_API_URL"]


def test_live_without_keys_names_the_missing_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPAY_ENV", "live")
    with pytest.raises(ConfigError) as info:
        load()
    assert len(info.value.lines) == 1
    line = info.value.lines[0]
    for name in ("XPAY_API_KEY", "XPAY_ACCOUNT_ID", "XPAY_HMAC_SECRET", "XPAY_WEBHOOK_SECRET"):
        assert name in line

    monkeypatch.setenv("XPAY_API_KEY", "sk_live_key")
    monkeypatch.setenv("XPAY_ACCOUNT_ID", "acct_1")
    with pytest.raises(ConfigError) as info:
        load()
    line = info.value.lines[0]
    assert "XPAY_HMAC_SECRET" in line and "XPAY_WEBHOOK_SECRET" in line
    assert "XPAY_API_KEY" not in line and "XPAY_ACCOUNT_ID" not in line
    assert "sk_live_key" not in line


def test_live_with_every_key_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPAY_ENV", "live")
    monkeypatch.setenv("XPAY_API_KEY", "k")
    monkeypatch.setenv("XPAY_ACCOUNT_ID", "a")
    monkeypatch.setenv("XPAY_HMAC_SECRET", "h")
    monkeypatch.setenv("XPAY_WEBHOOK_SECRET", "w")
    s = load()
    assert s.xpay_credentials() == ("k", "a", "h")
    assert not s.sandbox


XPAY_KEYS = ("XPAY_API_KEY", "XPAY_ACCOUNT_ID", "XPAY_HMAC_SECRET", "XPAY_WEBHOOK_SECRET")


@pytest.mark.parametrize("name", XPAY_KEYS)
def test_an_xpay_key_without_xpay_env_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # Keys for real XPay with no XPAY_ENV would otherwise run on the sandbox unnoticed.
    lines = errors_for(monkeypatch, name, "xpay-topsecret-value")
    assert len(lines) == 1, lines
    line = lines[0]
    assert name in line and "XPAY_ENV" in line
    assert "`staging`" in line and "`live`" in line and "unset" in line and "sandbox" in line
    assert "xpay-topsecret-value" not in line
    monkeypatch.setenv("XPAY_ENV", "sandbox")  # saying so explicitly is allowed
    assert load().sandbox


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["socket"],
        ["worker"],
        ["check"],
        ["create", "--amount", "5", "--name", "A", "--email", "a@example.com"],
    ],
)
def test_commands_refuse_xpay_keys_without_xpay_env(
    tmp_path: Path, procs: Procs, command: list[str]
) -> None:
    result = procs.paylink(
        *command,
        XPAY_API_KEY="sk_live_topsecret_key",
        SLACK_BOT_TOKEN="xoxb-1-topsecretbot",
        SLACK_SIGNING_SECRET="signing-topsecret-abc",
        SLACK_APP_TOKEN="xapp-1-topsecretapp",
        PAYLINK_WORKER="separate" if command == ["worker"] else "inline",
        DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "XPAY_API_KEY" in lines[0] and "XPAY_ENV" in lines[0]
    assert "topsecret" not in result.stderr + result.stdout
    assert not (tmp_path / "x.db").exists()  # refused before anything started


def test_require_names_each_missing_setting() -> None:
    s = load(slack_signing_secret="x")
    with pytest.raises(ConfigError) as info:
        s.require("slack_bot_token", "slack_signing_secret")
    assert len(info.value.lines) == 1
    assert info.value.lines[0].startswith("SLACK_BOT_TOKEN ")


# Secrets -------------------------------------------------------------------------------

SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-111-222-topsecretbot",
    "SLACK_SIGNING_SECRET": "signing-topsecret-abc",
    "SLACK_APP_TOKEN": "xapp-1-topsecretapp",
    "XPAY_API_KEY": "sk_live_topsecret_key",
    "XPAY_HMAC_SECRET": "hmac-topsecret-value",
    "XPAY_WEBHOOK_SECRET": "whsec-topsecret-one,whsec-topsecret-two",
}


def test_secrets_never_appear_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("XPAY_ENV", "sandbox")  # with keys set, the environment is named
    s = load()
    shown = repr(s) + str(s) + repr(s.model_dump()) + str(s.model_dump_json())
    for value in SECRETS.values():
        for part in value.split(","):
            assert part not in shown
    assert s.slack_bot_token is not None
    assert s.slack_bot_token.get_secret_value() == SECRETS["SLACK_BOT_TOKEN"]


def test_secrets_never_appear_in_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("XPAY_ENV", "live")  # account id missing
    monkeypatch.setenv("PORT", "abc")
    with pytest.raises(ConfigError) as info:
        load()
    text = str(info.value) + repr(info.value) + "\n".join(info.value.lines)
    assert "PORT" in text
    for value in SECRETS.values():
        for part in value.split(","):
            assert part not in text


# The command line ------------------------------------------------------------------------


def test_help_works_with_no_configuration(tmp_path: Path, procs: Procs) -> None:
    # A broken .env in the working directory must not matter for --help either.
    (tmp_path / ".env").write_text("PORT=abc\nXPAY_ENV=prod\n")
    result = procs.paylink("--help")
    assert result.returncode == 0, result.stderr
    for command in ("serve", "socket", "demo", "check", "migrate", "create", "status"):
        assert command in result.stdout
    result = procs.paylink()
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


def test_serve_without_bot_token_names_it_in_one_line(tmp_path: Path, procs: Procs) -> None:
    result = procs.paylink(
        "serve",
        SLACK_SIGNING_SECRET="signing-topsecret-abc",
        DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "SLACK_BOT_TOKEN" in lines[0]
    assert "signing-topsecret-abc" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_bad_variable_stops_a_command_with_one_line(procs: Procs) -> None:
    result = procs.paylink("status", "X", PORT="abc")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "PORT" in lines[0]


def test_env_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("PAYLINK_CURRENCIES=USD,PKR\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings().paylink_currencies == ["USD", "PKR"]


def test_socket_mode_without_app_token_names_it_in_one_line(tmp_path: Path, procs: Procs) -> None:
    result = procs.paylink(
        "socket",
        SLACK_BOT_TOKEN="xoxb-1-topsecretbot",
        DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "SLACK_APP_TOKEN" in lines[0], result.stderr
    assert "topsecretbot" not in result.stderr + result.stdout


def test_serve_given_a_host_name_instead_of_an_address_says_so(
    tmp_path: Path, procs: Procs
) -> None:
    result = procs.paylink(
        "serve",
        "--host",
        "localhost",
        SLACK_BOT_TOKEN="xoxb-1-topsecretbot",
        SLACK_SIGNING_SECRET="signing-topsecret-abc",
        DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("paylink: PAYLINK_HOST: expected an IP address"), lines


def test_serve_refuses_an_outdated_schema_naming_migrate(tmp_path: Path, procs: Procs) -> None:
    # (A new, empty database is another matter: serve creates its schema, see test_serve.py.)
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    upgrade(engine, "0001")
    engine.dispose()
    result = procs.paylink(
        "serve",
        SLACK_BOT_TOKEN="xoxb-1-topsecretbot",
        SLACK_SIGNING_SECRET="signing-topsecret-abc",
        DATABASE_URL=url,
    )
    assert result.returncode == 2
    assert "paylink migrate" in result.stderr and "DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value", [" , ", ",", "   "])
@pytest.mark.parametrize("env", ["sandbox", "live"])
def test_a_webhook_secret_of_only_commas_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, value: str, env: str
) -> None:
    """Such a value leaves no key to check a webhook with: every webhook would be a 500."""
    for name in ("XPAY_API_KEY", "XPAY_ACCOUNT_ID", "XPAY_HMAC_SECRET"):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("XPAY_ENV", env)
    lines = errors_for(monkeypatch, "XPAY_WEBHOOK_SECRET", value)
    assert len(lines) == 1
    assert lines[0].startswith("XPAY_WEBHOOK_SECRET: expected one or more secrets"), lines


# Policy, follow-up, sharing and workspace settings ---------------------------------------


def test_policy_and_follow_up_defaults() -> None:
    s = load()
    assert s.paylink_auto_approve_under == {} and s.paylink_second_approval_from == {}
    assert s.paylink_remind_approvers_after == timedelta(hours=4)
    assert s.paylink_remind_rep_after == timedelta(hours=24)
    assert s.paylink_digest_at == time(9, 0)
    assert s.timezone == ZoneInfo("Asia/Karachi")
    assert s.paylink_link_ttl == timedelta(days=7)
    assert s.paylink_duplicate_window == timedelta(hours=24)
    assert s.paylink_qr is True and not s.mail_enabled and not s.multi_workspace


def test_thresholds_and_durations_are_read_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYLINK_AUTO_APPROVE_UNDER", "pkr:10000, USD:49.99")
    monkeypatch.setenv("PAYLINK_SECOND_APPROVAL_FROM", "PKR:500000")
    monkeypatch.setenv("PAYLINK_REMIND_APPROVERS_AFTER", "90s")
    monkeypatch.setenv("PAYLINK_LINK_TTL", "30m")
    monkeypatch.setenv("PAYLINK_DIGEST_AT", "")
    s = load()
    assert s.paylink_auto_approve_under == {"PKR": Decimal("10000"), "USD": Decimal("49.99")}
    assert s.paylink_second_approval_from == {"PKR": Decimal("500000")}
    assert s.paylink_remind_approvers_after == timedelta(seconds=90)
    assert s.paylink_link_ttl == timedelta(minutes=30)
    assert s.paylink_digest_at is None


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PAYLINK_AUTO_APPROVE_UNDER", "PKR10000", "PKR:10000"),
        ("PAYLINK_SECOND_APPROVAL_FROM", "PKR:-5", "PKR:10000"),
        ("PAYLINK_REMIND_REP_AFTER", "1 week", "90s"),
        ("PAYLINK_DUPLICATE_WINDOW", "0h", "4h"),
        ("PAYLINK_DIGEST_AT", "9am", "09:00"),
        ("PAYLINK_TIMEZONE", "Mars/Olympus", "Asia/Karachi"),
        ("PAYLINK_SMTP_URL", "http://mail.example.com", "smtps://"),
        ("PAYLINK_SECRET_KEY", "not-a-key", "Fernet"),
        ("PAYLINK_SECRET_KEY", base64.urlsafe_b64encode(bytes(32)).decode() + ",old", "NEW,OLD"),
    ],
)
def test_policy_sharing_and_key_settings_say_what_they_expect(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    lines = errors_for(monkeypatch, name, value)
    assert len(lines) == 1 and lines[0].startswith(f"{name}: ") and expected in lines[0], lines


def test_settings_that_go_together_are_refused_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    line = errors_for(monkeypatch, "PAYLINK_SMTP_URL", "smtp://u:hunter2@mail.example.com:587")[0]
    assert "PAYLINK_MAIL_FROM" in line and "hunter2" not in line
    monkeypatch.delenv("PAYLINK_SMTP_URL")
    assert "SLACK_CLIENT_SECRET" in errors_for(monkeypatch, "SLACK_CLIENT_ID", "123.456")[0]
    monkeypatch.setenv("SLACK_CLIENT_SECRET", "shh")
    assert "PAYLINK_SECRET_KEY" in errors_for(monkeypatch, "SLACK_CLIENT_ID", "123.456")[0]
    monkeypatch.setenv("PAYLINK_SECRET_KEY", base64.urlsafe_b64encode(bytes(32)).decode())
    assert load().multi_workspace
    # During a rotation: the new key and the old one.
    keys = [base64.urlsafe_b64encode(bytes([n]) * 32).decode() for n in (1, 2)]
    monkeypatch.setenv("PAYLINK_SECRET_KEY", " , ".join(keys))
    assert load().multi_workspace
