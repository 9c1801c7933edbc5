"""The sandbox gateway's keys: random per database, never a value published anywhere."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from bot.config import load_settings
from bot.db import make_engine, make_sessionmaker
from bot.local.stack import LocalStack
from bot.schema import upgrade
from bot.xpay.keys import GatewayKeys, sandbox_keys
from bot.xpay.signing import js_stringify, sign
from tests.conftest import Flow
from tests.dbs import BACKENDS, migrated_engine

# What earlier versions signed every sandbox webhook and request with, for all to read.
PUBLISHED = "sandbox-not-a-secret"  # noqa: S105


def test_a_webhook_signed_with_a_published_value_is_refused(flow: Flow) -> None:
    ts = flow.request().ts
    url = flow.approve(ts)
    body = js_stringify(flow.paid_webhook(url))
    refused = flow.webhook(body, signature=sign(PUBLISHED, body))
    assert refused.status_code == 401
    flow.idle()
    assert "Awaiting payment" in flow.status(ts)
    # The embedded gateway signs with this database's secret: its webhook is accepted.
    flow.checkout(url)
    flow.wait_status(ts, "Paid")


def test_the_gateway_refuses_published_api_keys(stack: LocalStack) -> None:
    body = js_stringify(
        {
            "amount": 100,
            "currency": "PKR",
            "customer": {"name": "A", "email": "a@example.com"},
            "metadata": {"order_reference": "PUBLISHED-1"},
        }
    )
    answer = requests.post(
        stack.base_url + "/sandbox/public/v1/payment/checkout",
        data=body,
        headers={
            "Content-Type": "application/json",
            "x-api-key": PUBLISHED,
            "x-account-id": "sandbox-account",
            "x-signature": sign(PUBLISHED, body),
        },
        timeout=10,
    )
    assert answer.status_code == 401


def test_the_sandbox_uses_its_own_keys(stack: LocalStack) -> None:
    keys = stack.runtime.gateway_keys
    xpay = keys.xpay()
    assert xpay.api_key and xpay.account_id and xpay.hmac_secret
    assert keys.webhook_secrets()
    assert stack.webhook_secret == keys.webhook_secrets()[0]
    assert PUBLISHED not in (xpay.api_key, xpay.hmac_secret, stack.webhook_secret)


@pytest.mark.parametrize("backend", BACKENDS)
def test_keys_are_random_per_database_and_kept(backend: str, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with migrated_engine(backend, tmp_path / "a") as engine:
        sessions = make_sessionmaker(engine)
        # Every process asks on first use; one set is made however many ask at once.
        found: list[Any] = []
        start = threading.Barrier(8)

        def ask() -> None:
            start.wait()
            found.append(sandbox_keys(sessions))

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        first = found[0]
        assert {(k.api_key, k.hmac_secret, k.webhook_secret) for k in found} == {
            (first.api_key, first.hmac_secret, first.webhook_secret)
        }
        secrets = [first.api_key, first.hmac_secret, first.webhook_secret]
        assert len(set(secrets)) == 3 and all(len(s) >= 32 for s in secrets)
        assert sandbox_keys(sessions).webhook_secret == first.webhook_secret
    with migrated_engine(backend, tmp_path / "b") as engine:
        other = sandbox_keys(make_sessionmaker(engine))
    assert other.webhook_secret != first.webhook_secret
    assert other.hmac_secret != first.hmac_secret


def test_a_configured_webhook_secret_is_used_on_the_sandbox(make_stack: Any) -> None:
    stack = make_stack(xpay_webhook_secret="configured-webhook-secret")
    assert stack.runtime.gateway_keys.webhook_secrets() == ["configured-webhook-secret"]
    flow = Flow(stack)
    ts = flow.request().ts
    url = flow.approve(ts)
    stored = sandbox_keys(stack.runtime.store.sessions).webhook_secret
    body = js_stringify(flow.paid_webhook(url))
    assert flow.webhook(body, signature=sign(stored, body)).status_code == 401
    flow.checkout(url)  # the embedded gateway signs with the configured secret
    flow.wait_status(ts, "Paid")


def test_keys_are_read_on_first_use_not_at_start(tmp_path: Path) -> None:
    # `paylink migrate` and `check` build their runtime before the schema exists.
    settings = load_settings(_env_file=None, database_url=f"sqlite:///{tmp_path / 'new.db'}")
    engine = make_engine(settings.database_url)
    keys = GatewayKeys(settings, make_sessionmaker(engine))
    upgrade(engine)
    assert keys.webhook_secrets() == [sandbox_keys(make_sessionmaker(engine)).webhook_secret]
    engine.dispose()
