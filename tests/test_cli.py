"""The ``paylink`` command line as a real subprocess, against a running LocalStack."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bot.db import make_engine
from bot.local.stack import LocalStack, free_port
from bot.schema import head_revision, upgrade
from tests.factories import checkout_request
from tests.procs import Procs
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
    checkout_url = lines[0]
    assert checkout_url.startswith(f"{stack.base_url}/sandbox/checkout/xpay_pi_")

    before = status_output(procs, stack_env, ref)
    assert before.splitlines()[0] == f"{ref}: Awaiting payment"
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
    assert history[0].endswith("awaiting_approval by cli")
    assert "awaiting_approval → creating_link by cli (created from the command line)" in history[1]
    assert "creating_link → awaiting_payment by xpay" in history[2]
    assert "awaiting_payment → paid by webhook" in history[3]


def test_create_with_bad_options(stack_env: dict[str, str], procs: Procs) -> None:
    result = procs.paylink(
        "create", "--amount", "12.345", "--name", "A", "--email", "nope",
        "--success-url", "ftp://x", **stack_env,
    )  # fmt: skip
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "paylink: --amount: Use at most 2 decimal places.",
        "paylink: --customer-email: Enter a valid e-mail address, like name@example.com.",
        "paylink: --success-url: Enter a full http:// or https:// address.",
    ], result.stderr
    assert result.stdout == ""


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
