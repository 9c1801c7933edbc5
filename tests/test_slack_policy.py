"""The approval policy and the duplicate guard end to end: real HTTP between the bot, the
Slack stand-in and the sandbox gateway (tests/conftest.py's Flow)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from bot.links.states import Status
from bot.local.stack import APPROVAL_CHANNEL, APPROVER, REP, SECOND_APPROVER, LocalStack
from bot.local.standin import validate_blocks
from bot.slack import blocks as b
from tests.conftest import Flow
from tests.test_slack_blocks import NASTY, assert_safe_mrkdwn, make_link, mrkdwn_texts

POLICY = {
    "paylink_auto_approve_under": "PKR:10000,USD:50",
    "paylink_second_approval_from": "PKR:100000",
    "paylink_currencies": ["PKR", "USD"],
}


@pytest.fixture
def policy_flow(make_stack: Callable[..., LocalStack]) -> Flow:
    return Flow(
        make_stack(
            **POLICY,
            paylink_approvers=[APPROVER, SECOND_APPROVER, REP],
            paylink_allow_self_approval=True,
        )
    )


def test_the_form_names_the_policy_and_a_small_request_is_approved_automatically(
    policy_flow: Flow,
) -> None:
    flow = policy_flow
    view = flow.open_modal()
    line = next(b for b in view["blocks"] if b["block_id"] == "policy")
    assert line["elements"][0]["text"] == (
        ":scales: Approval: PKR: under PKR 10,000 approved automatically; PKR 100,000 or "
        "more needs two approvers, neither of them you · USD: under USD 50 approved "
        "automatically"
    )
    blocks = [b["block_id"] for b in view["blocks"]]
    assert blocks.index("policy") == blocks.index("amount") + 1  # right under the amount

    card = flow.request(view=view, amount="9999.99")
    flow.wait_reply(card.ts, "checkout link is ready")  # nobody clicked
    status = flow.wait_status(card.ts, "Awaiting payment")
    assert "Approved automatically: under PKR 10,000" in status
    flow.wait_ephemeral(REP, "Approved automatically (under PKR 10,000)")


def test_two_approvers_decide_a_large_request(policy_flow: Flow) -> None:
    flow = policy_flow
    card = flow.request(amount="100000")
    assert "PKR 100,000 or more needs two approvers" in flow.status(card.ts)

    flow.click(APPROVER, card.ts, "paylink_approve")
    status = flow.wait_status(card.ts, "waiting for a second approver")
    assert status.startswith("*Status:* :hourglass_flowing_sand: Awaiting approval")
    assert f"Approved by <@{APPROVER}> · waiting for a second approver" in status

    flow.click(APPROVER, card.ts, "paylink_approve")  # again: nothing changes
    flow.wait_ephemeral(APPROVER, "You already approved this request")
    flow.click(REP, card.ts, "paylink_approve")  # the requester, though self-approval is on
    flow.wait_ephemeral(REP, "needs two approvers other than you")
    flow.idle()
    assert "Awaiting approval" in flow.status(card.ts) and flow.intent_count() == 0

    flow.approve(card.ts, SECOND_APPROVER)
    status = flow.wait_status(card.ts, "Awaiting payment")
    assert f"Approved by <@{APPROVER}> and <@{SECOND_APPROVER}>" in status
    assert flow.intent_count() == 1


@pytest.mark.slow  # waits for the approvers' reminder
def test_the_reminder_after_a_first_approval_mentions_who_can_still_approve(
    make_stack: Callable[..., LocalStack],
) -> None:
    flow = Flow(
        make_stack(
            **POLICY,
            paylink_approvers=[APPROVER, SECOND_APPROVER, REP, "S0FINANCE"],
            paylink_remind_approvers_after=timedelta(seconds=3),
        )
    )
    card = flow.request(amount="100000")
    flow.click(APPROVER, card.ts, "paylink_approve")
    flow.wait_status(card.ts, "waiting for a second approver")

    reminder = flow.wait_reply(card.ts, "this request has waited", timeout=10)
    # Neither the approver who approved nor the rep who asked; the group as a group.
    first_line = reminder.splitlines()[0]
    assert first_line.startswith(
        f":bell: <@{SECOND_APPROVER}> <!subteam^S0FINANCE> this request has waited"
    )
    assert "for a second approver: PKR 100,000 for" in first_line
    assert f"Approved by <@{APPROVER}>: one more approval creates the link." in reminder


def submit_json(flow: Flow, view: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    response = flow.submit(view=view, **fields)
    assert response.status_code == 200, response.text
    return response.json() if response.content.strip() else {}


@pytest.fixture
def guarded(make_stack: Callable[..., LocalStack]) -> Flow:
    return Flow(make_stack(paylink_duplicate_window="24h"))


def test_duplicate_guard_warns_lets_the_rep_go_back_or_confirm(guarded: Flow) -> None:
    flow = guarded
    earlier = flow.request()
    earlier_ref = flow.card(earlier.ts).blocks[0]["text"]["text"].split(" · ")[1]

    answer = submit_json(flow)
    assert answer["response_action"] == "push"
    warning = answer["view"]
    assert (warning["title"]["text"], warning["submit"]["text"], warning["close"]["text"]) == (
        "Possible duplicate",
        "Create anyway",
        "Go back",
    )
    earlier_text = next(b for b in warning["blocks"] if b["block_id"] == "earlier")["text"]["text"]
    permalink = f"https://slack.example/archives/{APPROVAL_CHANNEL}/p{earlier.ts.replace('.', '')}"
    assert f"*<{permalink}|{earlier_ref}>* · PKR 15,000 for Ayesha Khan" in earlier_text
    assert f"Requested by <@{REP}> <!date^" in earlier_text
    assert "*Status:* :hourglass_flowing_sand: Awaiting approval" in earlier_text
    assert len(flow.slack.messages(APPROVAL_CHANNEL)) == 1  # nothing created yet
    # Its order reference typed again: the form's own error comes first.
    refused = submit_json(flow, order_reference=earlier_ref)
    assert (refused["response_action"], list(refused["errors"])) == ("errors", ["order_reference"])

    # "Go back" is Slack's: the form comes back as filled; with another amount it goes through.
    other = flow.request(amount="15001")
    assert other.ts != earlier.ts

    # The same again, then "Create anyway" (sent twice by Slack): one more request.
    form = flow.open_modal()
    warning = submit_json(flow, view=form)["view"]
    warning["id"] = "V0WARNING"
    for _ in range(2):
        confirmed = flow.sim.submit_view(REP, warning, {})
        assert confirmed.json() == {"response_action": "clear"}
    flow.idle()
    cards = [m for m in flow.slack.messages(APPROVAL_CHANNEL) if m.thread_ts is None]
    assert len(cards) == 3
    # The form's own submission sent again is recognised, not warned about.
    assert submit_json(flow, view=form) == {}
    flow.idle()
    assert len([m for m in flow.slack.messages(APPROVAL_CHANNEL) if m.thread_ts is None]) == 3


# The Block Kit of it -------------------------------------------------------------------------


def status_text(link: Any, approvals: tuple[str, ...] = ()) -> str:
    _, blocks = b.card(link, approvals=approvals)
    return next(x["text"]["text"] for x in blocks if x["block_id"] == "status")


def test_the_card_tells_what_the_policy_decided_and_waits_for() -> None:
    auto = make_link(
        Status.AWAITING_PAYMENT, approvals_needed=0, policy_threshold=Decimal(10000),
        decided_by="policy",
    )  # fmt: skip
    assert status_text(auto).endswith("\nApproved automatically: under PKR 10,000")
    two = {"approvals_needed": 2, "policy_threshold": Decimal("100000.50")}
    waiting = make_link(Status.AWAITING_APPROVAL, **two)
    assert status_text(waiting).endswith(
        "\nPKR 100,000.50 or more needs two approvers, neither of them the requester"
    )
    assert status_text(waiting, ("U0A",)).endswith(
        "\nApproved by <@U0A> · waiting for a second approver (PKR 100,000.50 or more needs two)"
    )
    done = make_link(Status.CREATING_LINK, decided_by="U0B", **two)
    assert "\nApproved by <@U0A> and <@U0B> <!date^" in status_text(done, ("U0A", "U0B"))


def test_the_duplicate_view_shows_the_earlier_request_safely() -> None:
    earlier = make_link(reference=NASTY, customer_name=NASTY, message_ts=None)
    metadata = b.duplicate_metadata({"amount": "1500.50", "city": ""}, "C0SALES", "V0FORM")
    assert metadata == '{"view":"V0FORM","channel":"C0SALES","fields":{"amount":"1500.50"}}'
    view = b.duplicate_modal(earlier, permalink=None, metadata=metadata)
    assert validate_blocks(view["blocks"], surface="modal", view=view) == []
    for text in mrkdwn_texts(view["blocks"]):
        assert_safe_mrkdwn(text)
    assert "(in <#C0APPROVE>)" in str(view["blocks"])  # no permalink: its channel
    assert b.read_duplicate_metadata(view) == ({"amount": "1500.50"}, "C0SALES", "V0FORM")
    assert b.read_duplicate_metadata({"private_metadata": "nonsense"}) is None
    # A form too long to hold in Slack's 3,000 characters is not held.
    assert (
        b.duplicate_metadata({"success_url": "https://x.example/" + "a" * 3000}, None, "V") is None
    )
