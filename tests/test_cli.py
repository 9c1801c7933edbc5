"""The ``paylink`` command line as a real subprocess, against a running LocalStack."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
import requests

from bot.db import make_engine
from bot.links.states import SANDBOX_LABEL
from bot.local.stack import BOT_TOKEN, LocalStack, free_port
from bot.local.standin import SlackStandIn
from bot.schema import head_revision, upgrade
from tests.factories import checkout_request
from tests.procs import PAYLINK, Procs
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(jobs_interval=3600) as stack:
        yield stack


@pytest.fixture
def stack_env(stack: LocalStack) -> dict[str, str]:
    return {
        "DATABASE_URL": stack.settings.database_url,
        "PAYLINK_PUBLIC_URL": stack.base_url,
        "XPAY_ENV": "sandbox",
        "PAYLINK_SUCCESS_URL": "https://shop.example.com/thanks",
    }


def status_output(procs: Procs, env: dict[str, str], ref: str) -> str:
    result = procs.paylink("status", ref, **env)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_create_pay_and_status(stack: LocalStack, stack_env: dict[str, str], procs: Procs) -> None:
    ref = f"CLI-{uuid.uuid4().hex[:10]}"
    created = procs.paylink(
        "create",
        "--amount", "1,500.50",
        "--name", "Ayesha Khan",
        "--email", "ayesha@example.com",
        "--phone", "03415682456",
        "--reference", ref,
        "--method", "card",
        "--method", "jazzcash",
        **stack_env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    assert lines[1] == f"reference: {ref}"
    assert lines[2] == SANDBOX_LABEL
    checkout_url = lines[0]
    assert checkout_url.startswith(f"{stack.base_url}/sandbox/checkout/xpay_pi_")

    before = status_output(procs, stack_env, ref)
    assert before.splitlines()[0] == f"{ref}: Awaiting payment"
    assert before.splitlines()[1] == SANDBOX_LABEL
    assert "amount: PKR 1,500.50" in before
    assert f"link: {checkout_url}" in before

    page = requests.get(checkout_url, timeout=10)
    assert page.status_code == 200 and "PKR 1,500.50" in page.text
    paid = requests.post(
        f"{checkout_url}/pay",
        data={"outcome": "pay", "method": "card"},
        allow_redirects=False,
        timeout=30,
    )
    assert paid.status_code == 303
    assert paid.headers["Location"] == "https://shop.example.com/thanks"  # PAYLINK_SUCCESS_URL

    # The webhook is delivered before the sandbox answers; allow a moment for slow machines.
    def paid() -> str | None:
        out = status_output(procs, stack_env, ref)
        return out if out.splitlines()[0] == f"{ref}: Paid" else None

    out = wait_until(paid, 10, interval=0.2, message=lambda: status_output(procs, stack_env, ref))
    out_lines = out.splitlines()
    assert out_lines[0] == f"{ref}: Paid", out
    history = [line.strip() for line in out_lines if line.startswith("  ")]
    assert len(history) == 4, out
    # The labels people see in Slack, and times that say their zone.
    assert history[0].endswith("Awaiting approval by cli")
    assert "Awaiting approval → Creating link by cli (created from the command line)" in history[1]
    assert "Creating link → Awaiting payment by xpay" in history[2]
    assert "Awaiting payment → Paid by webhook" in history[3]
    for line in history:
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC ", line), line
    assert "awaiting_" not in out and "creating_link" not in out


def test_status_labels_a_link_by_where_it_was_made(
    stack: LocalStack, stack_env: dict[str, str], procs: Procs
) -> None:
    made_here = f"CLI-{uuid.uuid4().hex[:10]}"
    stack.runtime.service.create_direct(checkout_request(order_reference=made_here), actor="test")
    # Settings for the live XPay now: the link was made on the sandbox, and still says so.
    live = {
        **stack_env,
        "XPAY_ENV": "live",
        "XPAY_API_KEY": "k",
        "XPAY_ACCOUNT_ID": "a",
        "XPAY_HMAC_SECRET": "h",
        "XPAY_WEBHOOK_SECRET": "w",
    }
    assert SANDBOX_LABEL in status_output(procs, live, made_here).splitlines()
    # A link recorded as made elsewhere is not labelled, though the settings say sandbox.
    elsewhere = f"CLI-{uuid.uuid4().hex[:10]}"
    store = stack.runtime.store
    with store.transaction() as s:
        store.insert_link(
            s, checkout_request(order_reference=elsewhere), requester_id="cli", actor="cli"
        )
    assert "TEST" not in status_output(procs, stack_env, elsewhere)


def test_serve_says_in_its_start_up_log_that_the_sandbox_is_a_test(
    tmp_path: Path, procs: Procs
) -> None:
    database = f"sqlite:///{tmp_path / 'serve.db'}"
    engine = make_engine(database)
    upgrade(engine)
    engine.dispose()
    port = free_port()
    with SlackStandIn(bot_token=BOT_TOKEN) as slack:
        serve = procs.start(
            [PAYLINK, "serve", "--port", str(port)],
            {
                "DATABASE_URL": database,
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": "signing-secret",
                "SLACK_API_URL": slack.base_url,
            },
        )
        serve.wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30)
        serve.stop()
    log = serve.output()
    [started] = [line for line in log.splitlines() if "serving on " in line]
    assert "TEST — no real money" in started, log


def test_create_with_bad_options(stack_env: dict[str, str], procs: Procs) -> None:
    result = procs.paylink(
        "create", "--amount", "12.345", "--name", "A", "--email", "nope",
        "--success-url", "ftp://x", **stack_env,
    )  # fmt: skip
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "paylink: --amount: Use at most 2 decimal places.",
        "paylink: --email: Enter a valid e-mail address, like name@example.com.",
        "paylink: --success-url: Enter a full http:// or https:// address.",
    ], result.stderr
    assert result.stdout == ""


def test_create_errors_name_the_flags_that_exist(stack_env: dict[str, str], procs: Procs) -> None:
    result = procs.paylink(
        "create", "--amount", "5", "--name", " ", "--phone", "12", "--address", "x" * 201,
        "--reference", "no spaces allowed", "--method", "cash", **stack_env,
    )  # fmt: skip
    assert result.returncode == 2
    flags = [line.split(":")[1].strip() for line in result.stderr.splitlines() if line.strip()]
    assert flags == ["--name", "--address", "--phone", "--reference", "--method"], result.stderr
    for flag in flags:
        assert f"  {flag} " in procs.paylink("create", "--help").stdout


def test_version_needs_no_configuration(procs: Procs) -> None:
    for env in ({}, {"PAYLINK_CURRENCIES": "not-a-currency", "DATABASE_URL": "nonsense://"}):
        result = procs.paylink("--version", **env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"paylink {version('paylink')}"


def test_create_with_a_used_reference(
    stack: LocalStack, stack_env: dict[str, str], procs: Procs
) -> None:
    ref = f"CLI-{uuid.uuid4().hex[:10]}"
    stack.runtime.service.create_direct(checkout_request(order_reference=ref), actor="test")
    again = procs.paylink(
        "create", "--amount", "5", "--name", "A", "--email", "a@example.com", "--reference", ref,
        **stack_env,
    )  # fmt: skip
    assert again.returncode == 2
    assert f"--reference: {ref} is already used" in again.stderr


def test_status_of_an_unknown_reference(stack_env: dict[str, str], procs: Procs) -> None:
    result = procs.paylink("status", "NOPE", **stack_env)
    assert result.returncode == 1
    assert "no link with reference NOPE" in result.stderr
    assert result.stdout == ""


def test_create_without_a_running_sandbox_says_what_to_do(tmp_path: Path, procs: Procs) -> None:
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
        "PAYLINK_PUBLIC_URL": f"http://127.0.0.1:{free_port()}",
    }
    engine = make_engine(env["DATABASE_URL"])
    upgrade(engine)
    engine.dispose()
    result = procs.paylink("create", "--amount", "5", "--name", "A", "--email", "a@example.com",
                           **env)  # fmt: skip
    assert result.returncode == 1
    assert "Link creation failed" in result.stderr
    assert "paylink serve" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # three commands, and XPay's connect retries
def test_migrate_then_check(tmp_path: Path, procs: Procs) -> None:
    public = f"http://127.0.0.1:{free_port()}"  # nobody listens: XPay unreachable
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}", "PAYLINK_PUBLIC_URL": public}

    status = procs.paylink("status", "ANY", **env)
    assert status.returncode != 0
    assert "paylink migrate" in status.stderr
    assert "Traceback" not in status.stderr

    migrated = procs.paylink("migrate", **env)
    assert migrated.returncode == 0, migrated.stderr
    assert f"database schema: empty → {head_revision()}" in migrated.stdout

    check = procs.paylink("check", **env)
    assert f"webhook URL to set in the XPay portal: {public}/xpay/webhook" in check.stdout
    assert "ok: database reachable, schema up to date" in check.stdout
    assert "SLACK_BOT_TOKEN" in check.stdout
    assert "XPay unreachable" in check.stdout
    assert check.returncode == 1  # no Slack token, no gateway: problems are reported


def test_check_passes_against_a_running_stack(stack: LocalStack, procs: Procs) -> None:
    env = {
        "DATABASE_URL": stack.settings.database_url,
        "PAYLINK_PUBLIC_URL": stack.base_url,
        "SLACK_BOT_TOKEN": stack.settings.slack_bot_token.get_secret_value(),
        "SLACK_SIGNING_SECRET": stack.signing_secret,
        "SLACK_API_URL": stack.settings.slack_api_url,
    }
    result = procs.paylink("check", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"webhook URL to set in the XPay portal: {stack.base_url}/xpay/webhook" in result.stdout
    assert "problem:" not in result.stdout
    assert "TEST — no real money" in result.stdout  # XPAY_ENV=sandbox
    assert stack.signing_secret not in result.stdout + result.stderr


@pytest.mark.slow  # a whole local stack in the process
@pytest.mark.parametrize(("args", "final"), [((), "Paid"), (("--decline",), "Payment failed")])
def test_demo_from_the_console_script(procs: Procs, args: tuple[str, ...], final: str) -> None:
    # `paylink demo` is the first command the README suggests; it needs no configuration.
    result = procs.paylink("demo", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The thread in #C0APPROVALS:" in result.stdout
    assert "the checkout link is ready" in result.stdout
    assert result.stdout.rstrip().endswith(f"the card ends in {final}.")


BAD_DATABASES = {
    "nonsense": ("nonsense://", "expected sqlite:///"),
    "postgresql-closed-port": ("postgresql://127.0.0.1:{port}/x", "database server is running"),
    "sqlite-unwritable": ("sqlite:///{tmp}/a-file/paylink.db", "may write there"),
}


@pytest.mark.slow  # four commands each
@pytest.mark.parametrize("database", list(BAD_DATABASES))
def test_a_database_paylink_cannot_use_is_one_line(
    tmp_path: Path, procs: Procs, database: str
) -> None:
    """One line naming DATABASE_URL and the fix, from every command, instead of
    SQLAlchemy's traceback."""
    template, fix = BAD_DATABASES[database]
    (tmp_path / "a-file").write_text("")  # a file where the database's directory should be
    env = {
        "DATABASE_URL": template.format(port=free_port(), tmp=tmp_path),
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
        "SLACK_API_URL": f"http://127.0.0.1:{free_port()}/api/",
        "PAYLINK_PUBLIC_URL": f"http://127.0.0.1:{free_port()}",
    }
    for command in ("serve", "migrate", "status"):
        result = procs.paylink(command, *(["REF"] if command == "status" else []), **env)
        assert result.returncode == 2, (command, result.stderr)
        [line] = result.stderr.splitlines()
        assert line.startswith("paylink: DATABASE_URL: ") and fix in line, (command, line)
    env.pop("SLACK_BOT_TOKEN")  # check would also try Slack
    check = procs.paylink("check", **env)
    assert check.returncode == 1
    assert "Traceback" not in check.stdout + check.stderr
    [line] = [line for line in check.stdout.splitlines() if "DATABASE_URL" in line]
    assert line.startswith("problem: DATABASE_URL: ") and fix in line, line


def slack_problem(stack: LocalStack, procs: Procs, **env: str) -> str:
    """The one problem `paylink check` reports about Slack."""
    env = {
        "DATABASE_URL": stack.settings.database_url,
        "PAYLINK_PUBLIC_URL": stack.base_url,
        "SLACK_SIGNING_SECRET": stack.signing_secret,
        "SLACK_BOT_TOKEN": stack.settings.slack_bot_token.get_secret_value(),
        "SLACK_API_URL": stack.settings.slack_api_url,
        **env,
    }
    result = procs.paylink("check", **env)
    assert result.returncode == 1, result.stdout + result.stderr
    [problem] = [line for line in result.stdout.splitlines() if line.startswith("problem:")]
    return problem


@pytest.mark.slow  # three checks, and Slack's retries
def test_check_tells_slack_out_of_reach_from_a_refused_token(
    stack: LocalStack, procs: Procs
) -> None:
    """Each has its own fix: only a token Slack refused means "reinstall the app"."""
    refused = slack_problem(stack, procs, SLACK_BOT_TOKEN="xoxb-not-this-one")
    assert refused.startswith("problem: SLACK_BOT_TOKEN: Slack refused it"), refused
    assert "invalid_auth" in refused and "reinstall the app" in refused

    closed = f"http://127.0.0.1:{free_port()}/api/"
    unreachable = slack_problem(stack, procs, SLACK_API_URL=closed)
    assert unreachable.startswith(f"problem: cannot reach Slack at {closed}"), unreachable
    assert "Connection refused" in unreachable and "reinstall" not in unreachable

    stack.slack.fail_next("auth.test", status=503, times=3)  # every retry too
    troubled = slack_problem(stack, procs)
    assert troubled.startswith("problem: Slack answered auth.test with"), troubled
    assert "reinstall" not in troubled


@pytest.mark.slow  # Slack's connect retries
def test_socket_mode_with_slack_out_of_reach_says_so_briefly(tmp_path: Path, procs: Procs) -> None:
    """At most two lines (start-up's own warning and the reason it stops), no traceback and
    no ERROR per attempt at each call."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_APP_TOKEN": "xapp-1",
        "SLACK_API_URL": f"http://127.0.0.1:{free_port()}/api/",
        "PORT": str(free_port()),
    }
    assert procs.paylink("migrate", **env).returncode == 0
    result = procs.paylink("socket", **env)
    assert result.returncode == 1
    # The start-up INFO line (which gateway, TEST or live) is not a complaint.
    lines = [line for line in result.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert len(lines) <= 2, result.stderr
    assert lines[-1].startswith("paylink: cannot reach Slack at "), lines
    assert "Connection refused" in lines[-1]
