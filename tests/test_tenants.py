"""Two workspaces on one Paylink, end to end over real HTTP (issue 23): each installed by
OAuth and set up by its own admin in App Home (approver, approval channel, an XPay store on a
sandbox gateway of its own, with its own keys and webhook secret); then both run the whole
flow at the same time, and nothing crosses: not a token, a channel, a gateway, a click, a
webhook, App Home, ``/paylink list`` or the CSV export."""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from bot.links.payments import WEBHOOK
from bot.links.tables import History, Link
from bot.local.simulator import Origin, state_values
from bot.local.stack import LocalStack
from bot.local.standin import Call, PostedMessage, SlackStandIn
from bot.xpay.sandbox import sandbox_webhook_payload
from bot.xpay.signing import js_stringify, sign
from tests.conftest import _text, check_slack_calls
from tests.dbs import BACKENDS, database_url
from tests.workspaces import SandboxGateway, TeamFlow, click_as, thanked

SETTINGS_OPEN, STORE_ADD = "paylink_settings_open", "paylink_store_add"


@dataclass(frozen=True)
class Tenant:
    """A workspace and its people, as its admin sets it up."""

    team: str
    admin: str
    rep: str
    approver: str
    channel: str  # its approval channel
    sales: str  # where its rep types /paylink
    store: str  # its XPay store's name
    default_store: bool  # the store is the default (else the sales channel's)
    customer: str
    amount: str

    @property
    def channels(self) -> set[str]:
        """Where the bot may post for this workspace: its channels, and its people's direct
        messages (by user ID and by DM channel)."""
        people = (self.admin, self.rep, self.approver)
        return {self.channel, self.sales, *people, *("D" + p[1:] for p in people)}


NORTH = Tenant(
    team="T0NORTH",
    admin="U0ADMINN",
    rep="U0REPN",
    approver="U0APPROVERN",
    channel="C0APPROVALSN",
    sales="C0SALESN",
    store="North store",
    default_store=False,
    customer="Ayesha Khan",
    amount="15000",
)
SOUTH = Tenant(
    team="T0SOUTH",
    admin="U0ADMINS",
    rep="U0REPS",
    approver="U0APPROVERS",
    channel="C0APPROVALSS",
    sales="C0SALESS",
    store="South store",
    default_store=True,
    customer="Bilal Ahmed",
    amount="27500",
)
TENANTS = (NORTH, SOUTH)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The bot's database: a SQLite file, or a schema of its own on the PostgreSQL in
    PAYLINK_TEST_DATABASE_URL (skipped when unset). Asked for before ``distributed``, so
    the stack stops before its schema is dropped."""
    with database_url(request.param, tmp_path) as url:
        yield url


def set_up(flow: TeamFlow, tenant: Tenant, gateway: SandboxGateway) -> int:
    """The workspace's admin sets its approver and approval channel, and adds its XPay store
    (on ``gateway``), all from App Home; the gateway is pointed at the store's webhook URL as
    App Home shows it. Returns the store's id."""
    flow.slack.users[tenant.admin] = {"is_admin": True}
    home = flow.home(tenant.admin)

    settings = flow.open_from(tenant.admin, home, SETTINGS_OPEN)
    assert settings["callback_id"] == "paylink_settings"
    values = {"approver_users": [tenant.approver], "paylink_approval_channel": tenant.channel}
    saved = flow.sim.submit_view(
        tenant.admin, settings, state_values(settings, values), origin=flow.origin
    )
    assert saved.status_code == 200 and not saved.content.strip(), saved.text

    modal = flow.open_from(tenant.admin, home, STORE_ADD)
    assert modal["callback_id"] == "paylink_store"
    keys = gateway.config
    store = {
        "store_name": tenant.store,
        "store_environment": "url",
        "store_base_url": f"{keys.public_url}/sandbox",
        "store_account_id": keys.account_id,
        "store_api_key": keys.api_key,
        "store_hmac_secret": keys.hmac_secret,
        "store_webhook_secret": keys.webhook_secret,
        "store_channels": [] if tenant.default_store else [tenant.sales],
        "store_default": ["default"] if tenant.default_store else [],
    }
    saved = flow.sim.submit_view(
        tenant.admin, modal, state_values(modal, store), origin=flow.origin
    )
    assert saved.status_code == 200 and not saved.content.strip(), saved.text

    # App Home, published again, lists the store and the webhook URL for its XPay portal.
    shown = flow.slack.wait_for(
        lambda s: re.search(
            rf"\*{tenant.store}\*.*\nWebhook URL: `([^`]+)`",
            _text((s.home_views.get(tenant.admin) or {}).get("blocks")),
        )
    )
    gateway.config.webhook_url = shown.group(1)
    store_id = int(shown.group(1).rsplit("/", 1)[1])
    assert shown.group(1) == f"{flow.stack.base_url}/xpay/webhook/{store_id}"
    effective = flow.stack.runtime.workspaces.for_team(tenant.team)
    assert effective.paylink_approvers == [tenant.approver]
    assert effective.paylink_approval_channel == tenant.channel
    assert {c.actor for c in flow.stack.runtime.workspaces.history(tenant.team)} == {tenant.admin}
    return store_id


def intent_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def links_of(stack: LocalStack, team: str) -> dict[str, Link]:
    """Workspace ``team``'s links, by reference."""
    with stack.runtime.store.reading() as s:
        return {k.reference: k for k in s.scalars(select(Link).where(Link.team_id == team))}


def test_two_workspaces_set_up_in_slack_run_the_flow_at_once_and_never_cross(
    database: str,
    distributed: Callable[..., LocalStack],
    gateways: Callable[[str], SandboxGateway],
) -> None:
    stack = distributed(database_url=database)
    assert all(thanked(stack.install(t.team)) for t in TENANTS)
    flows = {t: TeamFlow(stack, t.team, t.channel) for t in TENANTS}
    gates = {t: gateways(t.team.lower()) for t in TENANTS}
    stores = {t: set_up(flows[t], t, gates[t]) for t in TENANTS}
    assert stores[NORTH] != stores[SOUTH]

    # Both workspaces at once: the rep asks, the workspace's approver approves, the customer
    # pays on the store's gateway, whose webhook goes to the store's URL.
    start = threading.Barrier(len(TENANTS), timeout=10)

    def run(tenant: Tenant) -> tuple[PostedMessage, str]:
        flow = flows[tenant]
        start.wait()
        card = flow.request(
            tenant.rep, typed_in=tenant.sales, customer_name=tenant.customer, amount=tenant.amount
        )
        url = flow.approve(card.ts, tenant.approver)
        flow.checkout(url)
        flow.wait_status(card.ts, "Paid", timeout=10)
        return card, url

    with ThreadPoolExecutor(len(TENANTS)) as pool:
        runs = {t: pool.submit(run, t) for t in TENANTS}
        done = {t: future.result(timeout=60) for t, future in runs.items()}
    flows[NORTH].idle()

    other = {NORTH: SOUTH, SOUTH: NORTH}
    for tenant, (card, url) in done.items():
        gateway, elsewhere = gates[tenant], gates[other[tenant]]
        # Made on the workspace's own gateway, with its store's keys, and nowhere else.
        assert url.startswith(gateway.config.public_url + "/sandbox/checkout/")
        (created,) = gateway.creations()
        assert (created.status, created.api_key, created.account_id) == (
            200,
            gateway.config.api_key,
            gateway.config.account_id,
        )
        assert not any(a.api_key == elsewhere.config.api_key for a in gateway.answered)
        (intent,) = gateway.intents()
        (link,) = links_of(stack, tenant.team).values()
        assert intent.id == intent_of(url) == link.intent_id
        assert intent.order_reference == link.reference
        assert intent.customer["name"] == tenant.customer
        assert (link.store_id, link.channel_id, link.status) == (
            stores[tenant],
            tenant.channel,
            "paid",
        )
        # Paid by the webhook (the gateway sends it to the store's URL only), not by asking.
        with stack.runtime.store.reading() as s:
            paid_by = s.scalars(
                select(History.actor).where(History.link_id == link.id, History.to_status == "paid")
            ).all()
        assert paid_by == [WEBHOOK]
        # The card and its thread, in the workspace's channel, posted with its own token.
        thread = stack.slack.thread(tenant.channel, card.ts)
        assert len(thread) > 2 and {m.team for m in thread} == {tenant.team}
    assert flows[NORTH].intent_count() == 0  # the environment's sandbox made nothing

    # Every message, upload and update went to a workspace's own channels with its own token.
    owner = {channel: t.team for t in TENANTS for channel in t.channels}
    for message in stack.slack.messages():
        assert owner.get(message.channel) == message.team, message
    for call in stack.slack.calls:
        channel = call.params.get("channel") or call.params.get("channel_id")
        if call.ok and channel is not None:
            assert owner.get(channel) == call.team, call

    # A new request of South's. North's approver clicks Approve on it: from North, as a
    # guest from North, and claiming to be of South (where they approve nothing). Each is
    # refused, and nothing changes.
    north, south = flows[NORTH], flows[SOUTH]

    def told(slack: SlackStandIn) -> list[Call]:
        """The ephemerals North's approver was sent, oldest first."""
        return [
            c for c in slack.calls_of("chat.postEphemeral") if c.params["user"] == NORTH.approver
        ]

    pending = south.request(SOUTH.rep, typed_in=SOUTH.sales, customer_name=SOUTH.customer)
    south.idle()
    before = south.card(pending.ts)
    clicks = (
        (north.origin, "belongs to another Slack workspace", NORTH.team),
        (Origin(team=SOUTH.team, user_team=NORTH.team), "another Slack workspace", SOUTH.team),
        (south.origin, "Only the approvers", SOUTH.team),
    )
    for count, (origin, refusal, told_by) in enumerate(clicks, 1):
        click_as(south, origin, NORTH.approver, pending.ts, "paylink_approve")
        answers = stack.slack.wait_for(lambda s, n=count: len(found := told(s)) == n and found)
        assert refusal in answers[-1].params["text"] and answers[-1].team == told_by
    south.idle()
    after = south.card(pending.ts)
    assert (after.blocks, after.updated) == (before.blocks, before.updated)
    assert "Awaiting approval" in south.status(pending.ts)
    assert [len(gates[t].creations()) for t in TENANTS] == [1, 1]

    # A new link of North's, awaiting payment. Its gateway's paid webhook, signed with
    # South's secret and sent to South's store URL, is refused, and nothing changes.
    unpaid = north.request(NORTH.rep, typed_in=NORTH.sales, customer_name=NORTH.customer)
    unpaid_url = north.approve(unpaid.ts, NORTH.approver)
    north.idle()
    intent = next(i for i in gates[NORTH].intents() if i.id == intent_of(unpaid_url))
    body = js_stringify(sandbox_webhook_payload(intent, "pay", "card"))
    for secret, refused in (
        (gates[SOUTH].config.webhook_secret, 409),  # South's: about another store's intent
        (gates[NORTH].config.webhook_secret, 401),  # North's: not South's secret
    ):
        crossed = requests.post(
            gates[SOUTH].config.webhook_url,
            data=body,
            headers={"Content-Type": "application/json", "x-signature": sign(secret, body)},
            timeout=10,
        )
        assert crossed.status_code == refused, crossed.text
    north.idle()
    assert "Awaiting payment" in north.status(unpaid.ts)
    assert links_of(stack, NORTH.team)[intent.order_reference].status == "awaiting_payment"

    # App Home, /paylink list and the export of each workspace show its own links only.
    mine = {t: links_of(stack, t.team) for t in TENANTS}
    assert [sorted(k.status for k in mine[t].values()) for t in TENANTS] == [
        ["awaiting_payment", "paid"],
        ["awaiting_approval", "paid"],
    ]
    for tenant in TENANTS:
        flow, theirs = flows[tenant], set(mine[other[tenant]])
        rep_home = _text(flow.home(tenant.rep)["blocks"])  # the rep's own links
        assert all(ref in rep_home for ref in mine[tenant])
        approver_home = _text(flow.home(tenant.approver)["blocks"])  # and what waits
        waiting = [r for r, k in mine[tenant].items() if k.status == "awaiting_approval"]
        assert all(ref in approver_home for ref in waiting)
        listed = flow.command(tenant.approver, "list all", channel=tenant.sales)
        assert listed.status_code == 200, listed.text
        everyone = _text(listed.json()["blocks"])
        assert all(ref in everyone for ref in mine[tenant])
        for seen in (rep_home, approver_home, everyone):
            assert not any(ref in seen for ref in theirs)
            assert other[tenant].customer not in seen

        exported = flow.command(tenant.approver, "export", channel=tenant.sales)
        assert "Preparing your export" in exported.text
        dm = "D" + tenant.approver[1:]
        file = flow.slack.wait_for(
            lambda s, dm=dm: next((f for f in s.files if f.channel == dm), None)
        )
        rows = list(csv.DictReader(io.StringIO(file.content.decode("utf-8-sig"))))
        assert {row["reference"] for row in rows} == set(mine[tenant])
        (upload,) = [
            c
            for c in stack.slack.calls_of("files.completeUploadExternal")
            if c.params.get("channel_id") == dm
        ]
        assert upload.team == tenant.team
    # North's approver approves nothing in South: no export of South's links for them.
    assert "Only approvers can export" in south.command(NORTH.approver, "export").text
    check_slack_calls(stack)
