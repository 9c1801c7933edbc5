"""Settings in Slack and several XPay stores, end to end over real HTTP: an admin changes the
settings from App Home (a non-admin is refused); two stores, each a sandbox gateway of its
own with its own keys, each used by its channel's requests and verified by its own webhook
URL and secret, beside a link of the environment's XPay made before them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests

from bot.links.workspace_settings import XPayStore
from bot.local.simulator import TEAM, state_values
from bot.local.stack import APPROVER, REP, LocalStack
from bot.secretbox import SecretBox, new_key
from bot.slack.blocks.settings import NOT_ADMIN
from bot.xpay.signing import js_stringify, sign
from tests.conftest import FIELDS, Flow, _text
from tests.factories import webhook_payload
from tests.workspaces import SandboxGateway

ADMIN = "U0ADMIN"
KEY = new_key()


def test_an_admin_changes_settings_in_slack_and_anyone_else_is_refused(
    make_stack: Callable[..., LocalStack],
) -> None:
    stack = make_stack(paylink_secret_key=KEY)
    flow, sim, slack = Flow(stack), stack.simulator, stack.slack
    slack.users[ADMIN] = {"is_admin": True}

    # Not an admin: `/paylink settings` is refused in an ephemeral; App Home has no Settings.
    assert sim.command(REP, "settings").status_code == 200
    flow.wait_ephemeral(REP, NOT_ADMIN)
    sim.home_opened(REP)
    home = slack.wait_for(lambda s: s.home_views.get(REP))
    assert "paylink_settings_open" not in json.dumps(home)

    sim.home_opened(ADMIN)
    home = slack.wait_for(lambda s: s.home_views.get(ADMIN))
    seen = len(slack.views_opened)
    assert sim.click_view(ADMIN, home, "paylink_settings_open").status_code == 200
    modal = slack.wait_for(lambda s: len(s.views_opened) > seen and s.views_opened[seen])
    assert modal["callback_id"] == "paylink_settings"

    def submit(user: str, **fields: Any) -> dict[str, Any]:
        response = sim.submit_view(user, modal, state_values(modal, fields))
        assert response.status_code == 200, response.text
        return response.json() if response.content.strip() else {}

    wanted = {
        "approver_users": [APPROVER, "U0BOSS"],
        "approver_groups": "S0FINANCE",
        "paylink_currencies": "PKR,USD",
        "paylink_max_amount": "90000",
    }
    answer = submit(ADMIN, **wanted | {"paylink_max_amount": "a lot"})
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {"paylink_max_amount"}
    assert submit(REP, **wanted) == {
        "response_action": "errors",
        "errors": {"approver_users": NOT_ADMIN},
    }
    assert stack.runtime.workspaces.stored(TEAM["id"]) == {}

    assert submit(ADMIN, **wanted) == {}
    effective = stack.runtime.workspaces.for_team(TEAM["id"])
    assert effective.paylink_currencies == ["PKR", "USD"]
    assert effective.paylink_approvers == [APPROVER, "U0BOSS", "S0FINANCE"]
    assert [c.actor for c in stack.runtime.workspaces.history()] == [ADMIN] * 3

    # In effect at once: the request modal offers USD, and 95,000 is over the maximum.
    view = flow.open_modal()
    currency = next(b for b in view["blocks"] if b["block_id"] == "currency")
    assert [o["value"] for o in currency["element"]["options"]] == ["PKR", "USD"]
    answer = flow.submit(view=view, amount="95000").json()
    assert "amount" in answer["errors"]


@pytest.mark.integration
def test_an_admin_is_told_when_slack_cannot_say_who_is_an_admin() -> None:
    """users.info refused (an app upgraded without a reinstall lacks users:read): the admin
    is told Paylink cannot check, not that they are no admin. (Not make_stack: a Slack call
    fails on purpose.)"""
    with LocalStack(paylink_secret_key=KEY) as stack:
        stack.slack.users[ADMIN] = {"is_admin": True}
        stack.slack.fail_next("users.info", error="missing_scope")
        assert stack.simulator.command(ADMIN, "settings").status_code == 200
        (told,) = Flow(stack).wait_ephemeral(ADMIN, "Paylink cannot check who is an admin")
        assert "users:read" in told and NOT_ADMIN not in told


def test_each_channel_uses_its_store_and_each_store_its_own_webhook_secret(
    make_stack: Callable[..., LocalStack], gateways: Callable[[str], SandboxGateway]
) -> None:
    stack = make_stack(paylink_secret_key=KEY)
    flow, workspaces = Flow(stack), stack.runtime.workspaces
    # Made before the workspace had a store: the environment's (the embedded sandbox).
    card_env = flow.request()
    url_env = flow.approve(card_env.ts)
    stores = {}
    for name, channel in (("Store A", "C0A"), ("Store B", "C0B")):
        gateway = gateways(name[-1].lower()).config
        saved = workspaces.save_store(
            TEAM["id"],
            ADMIN,
            {
                "name": name,
                "environment": "url",
                "base_url": f"{gateway.public_url}/sandbox",
                "account_id": gateway.account_id,
                "channels": [channel],
            },
            {
                "api_key": gateway.api_key,
                "hmac_secret": gateway.hmac_secret,
                "webhook_secret": gateway.webhook_secret,
            },
        )
        gateway.webhook_url = f"{stack.base_url}/xpay/webhook/{saved.id}"
        stores[name] = (saved.id, gateway)
    (a_id, a), (b_id, b) = stores["Store A"], stores["Store B"]

    card_a, card_b = flow.request(typed_in="C0A"), flow.request(typed_in="C0B")
    assert "*Store*\nStore A" in _text(card_a.blocks)
    assert "*Store*\nStore B" in _text(card_b.blocks)
    url_a, url_b = flow.approve(card_a.ts), flow.approve(card_b.ts)
    assert url_a.startswith(a.public_url) and url_b.startswith(b.public_url)

    def webhook(path: str, url: str, secret: str, *, pad: str = "") -> requests.Response:
        intent = url.rsplit("/", 1)[1] + pad
        body = js_stringify(webhook_payload(intent, amount=FIELDS["amount"]))
        return requests.post(
            stack.base_url + path,
            data=body,
            headers={"Content-Type": "application/json", "x-signature": sign(secret, body)},
            timeout=10,
        )

    # Store A's URL and secret, about store B's link: refused, nothing changes.
    refused = webhook(f"/xpay/webhook/{a_id}", url_b, a.webhook_secret)
    assert (refused.status_code, refused.json()["reason"]) == (
        409,
        "payment intent of another store",
    )
    assert webhook(f"/xpay/webhook/{b_id}", url_b, a.webhook_secret).status_code == 401
    assert webhook("/xpay/webhook", url_b, stack.webhook_secret).status_code == 401
    # The id with a space the event strips: still store B's link, still not the environment's.
    assert webhook("/xpay/webhook", url_b, stack.webhook_secret, pad=" ").status_code == 401
    assert webhook("/xpay/webhook/999999", url_b, b.webhook_secret).status_code == 404
    flow.idle()
    assert "Awaiting payment" in flow.status(card_b.ts)

    # The plain URL finds store B from the intent, and B's secret is accepted there.
    assert webhook("/xpay/webhook", url_b, b.webhook_secret).json()["success"] is True
    flow.wait_status(card_b.ts, "Paid")

    # Store A's own gateway pays and sends its webhook to store A's URL.
    flow.checkout(url_a)
    flow.wait_status(card_a.ts, "Paid")

    # Reconciliation asks each link's own store: A's gateway knows A's intent, the
    # environment's sandbox does not.
    intent_a = url_a.rsplit("/", 1)[1]
    with stack.runtime.store.reading() as s:
        link_a = stack.runtime.store.by_intents(s, {intent_a})[intent_a]
    assert link_a.store_id == a_id
    assert stack.runtime.service.ask_xpay(link_a.id, intent_a, a_id) is not None
    assert stack.runtime.service.ask_xpay(link_a.id, intent_a, None) is None

    # The environment's link is still verified with the environment's secret on the plain URL.
    assert "*Store*" not in _text(flow.card(card_env.ts).blocks)
    flow.checkout(url_env)
    flow.wait_status(card_env.ts, "Paid")


def test_a_webhook_for_a_store_whose_secret_this_key_cannot_open_is_a_503(
    make_stack: Callable[..., LocalStack],
) -> None:
    """A store saved by a process with another PAYLINK_SECRET_KEY: its webhooks get a 503
    with a reason (XPay retries), not a 500."""
    stack = make_stack(paylink_secret_key=KEY)
    saved = stack.runtime.workspaces.save_store(
        TEAM["id"],
        ADMIN,
        {"name": "Store S", "environment": "live", "account_id": "acct-s", "is_default": True},
        {"api_key": "k" * 16, "hmac_secret": "h" * 16, "webhook_secret": "w" * 16},
    )
    with stack.runtime.store.transaction() as s:
        s.get(XPayStore, saved.id).webhook_secret = SecretBox(new_key()).seal("w" * 16)
    stack.runtime.workspaces.forget()
    body = js_stringify(webhook_payload("pi_any", amount=FIELDS["amount"]))
    answer = requests.post(
        f"{stack.base_url}/xpay/webhook/{saved.id}",
        data=body,
        headers={"Content-Type": "application/json", "x-signature": sign("w" * 16, body)},
        timeout=10,
    )
    assert (answer.status_code, answer.json()) == (
        503,
        {"success": False, "reason": "webhook secret unavailable"},
    )
