"""Block Kit payloads: limits, escaping, masking, buttons per status, modal round trip."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from bot.config import Settings
from bot.links.finding import Counts, Filter, Page
from bot.links.kinds import ThreadKind
from bot.links.states import Status
from bot.links.tables import Link
from bot.local.standin import validate_blocks
from bot.slack import blocks as b
from bot.slack.blocks.common import clip_mrkdwn

EMAIL = "ayesha.khan@example.com"
PHONE = "03415682456"
NASTY = "<!channel> <https://evil.example|bank.com> <@U0BOSS> Tom & Jerry"
WHEN = datetime(2025, 3, 1, 10, 30, tzinfo=UTC)

ALLOWED_TOKEN = re.compile(
    r"<@[UW][A-Z0-9]+>"
    r"|<#[CGD][A-Z0-9]+>"
    r"|<!date\^\d+\^[^|<>]+\|[^<>]+>"
    r"|<https?://[^\s|<>]+(\|[^<>]*)?>"
)
BAD_AMP = re.compile(r"&(?!amp;|lt;|gt;)")


def settings(**kw: Any) -> Settings:
    return Settings(_env_file=None, **kw)


def make_link(status: Status = Status.AWAITING_APPROVAL, **kw: Any) -> Link:
    data: dict[str, Any] = dict(
        id=42,
        reference="PL-ABC123",
        amount=Decimal("1500.50"),
        currency="PKR",
        customer_name="Ayesha Khan",
        customer_email=EMAIL,
        customer_phone=PHONE,
        shipping={
            "address1": "12 Main Blvd",
            "city": "Lahore",
            "province": "Punjab",
            "country": "Pakistan",
            "zip": "54000",
            "shipping_method": "TCS",
        },
        payment_methods=["card", "easypaisa"],
        success_url=None,
        failure_url=None,
        requester_id="U0REP",
        channel_id="C0APPROVE",
        message_ts="1700000000.000100",
        status=status.value,
        decided_by=None,
        decided_at=None,
        reject_reason=None,
        cancelled_by=None,
        intent_id=None,
        checkout_url=None,
        gateway_message=None,
        paid_method=None,
        bank_message=None,
        created_at=WHEN,
        updated_at=WHEN,
        history=[],
    )
    if status not in (Status.AWAITING_APPROVAL,):
        data.update(decided_by="U0BOSS", decided_at=WHEN)
    if status in (Status.AWAITING_PAYMENT, Status.PAID, Status.PAYMENT_FAILED):
        data.update(
            intent_id="pi_1", checkout_url="https://xstak-pay.xstak.com/checkout/pi_1?a=1&b=2"
        )
    if status is Status.REJECTED:
        data["reject_reason"] = "Customer unknown"
    if status in (Status.LINK_FAILED, Status.LINK_UNKNOWN):
        data["gateway_message"] = "Invalid signature"
    if status is Status.PAID:
        data.update(paid_method="card", bank_message="Approved")
    if status is Status.PAYMENT_FAILED:
        data["bank_message"] = "Insufficient funds"
    if status is Status.CANCELLED:
        data["cancelled_by"] = "U0REP"
    data.update(kw)
    return Link(**data)


def nasty_link(status: Status) -> Link:
    """Every user- or gateway-supplied field carries an injection attempt."""
    return make_link(
        status,
        reference=NASTY,
        customer_name=NASTY,
        shipping={k: NASTY for k in ("address1", "city", "province", "country", "zip")},
        reject_reason=NASTY,
        gateway_message=NASTY,
        bank_message=NASTY,
        paid_method=NASTY,
        requester_id="cli:<!here>&",
        decided_by="U0BOSS" if status is not Status.AWAITING_APPROVAL else None,
        cancelled_by="<!everyone>" if status is Status.CANCELLED else None,
    )


def mrkdwn_texts(node: Any) -> list[str]:
    """Every mrkdwn string in a payload (text objects of type mrkdwn)."""
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
            found.append(node["text"])
        for value in node.values():
            found.extend(mrkdwn_texts(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(mrkdwn_texts(value))
    return found


def all_strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in all_strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in all_strings(v)]
    return []


def assert_safe_mrkdwn(text: str) -> None:
    """Only our own tokens (mentions of IDs, dates, real links) survive; the rest is escaped."""
    rest = ALLOWED_TOKEN.sub("", text)
    assert "<" not in rest and ">" not in rest, text
    assert not BAD_AMP.search(text), text
    assert "<!channel>" not in text and "<!here>" not in text and "<!everyone>" not in text
    assert "<https://evil.example" not in text
    assert "<@U0BOSS> Tom" not in text


def assert_masked(payload: Any) -> None:
    for s in all_strings(payload):
        assert EMAIL not in s and "ayesha.khan" not in s, s
        assert PHONE not in s, s


def buttons(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for block in blocks:
        for el in block.get("elements", []) if block["type"] == "actions" else []:
            out[el["action_id"]] = el
        if block.get("accessory", {}).get("type") == "button":
            out[block["accessory"]["action_id"]] = block["accessory"]
    return out


def check_message(text: str, blocks: list[dict[str, Any]]) -> None:
    assert validate_blocks(blocks, surface="message") == []
    assert text
    assert_safe_mrkdwn(text)
    for t in mrkdwn_texts(blocks):
        assert_safe_mrkdwn(t)
    for block in blocks:
        assert block.get("block_id"), block
        for el in block.get("elements", []) if block["type"] == "actions" else []:
            assert el.get("action_id")


# --- helpers -----------------------------------------------------------------------------


def test_escape() -> None:
    assert b.escape("a & <b> c") == "a &amp; &lt;b&gt; c"
    assert b.escape(None) == ""


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Decimal("1500.50"), "PKR", "PKR 1,500.50"),
        (Decimal("5000.00"), "PKR", "PKR 5,000"),
        (Decimal("5000"), "USD", "USD 5,000"),
        (Decimal("0.5"), "PKR", "PKR 0.50"),
        ("1234567.8", "PKR", "PKR 1,234,567.80"),
        ("1E+900000000", "PKR", "PKR 1E+900000000"),  # no amount: never written out
        ("9" * 5000, "PKR", "PKR " + "9" * 31 + "…"),
    ],
)
def test_format_amount(amount: Any, currency: str, expected: str) -> None:
    assert b.format_amount(amount, currency) == expected


def test_clip_mrkdwn_never_cuts_an_entity() -> None:
    text = b.escape("&" * 1000)
    clipped = clip_mrkdwn(text, 3000)
    assert len(clipped) <= 3000
    assert not BAD_AMP.search(clipped)
    clipped = clip_mrkdwn("x <@U123> " * 400, 3000)
    assert len(clipped) <= 3000
    assert_safe_mrkdwn(clipped)


# --- the card ------------------------------------------------------------------------------

# By status; every card whose customer left an e-mail or phone also has Show contact.
EXPECTED_BUTTONS = {
    status: buttons | {b.ActionId.SHOW_CONTACT}
    for status, buttons in {
        Status.AWAITING_APPROVAL: {b.ActionId.APPROVE, b.ActionId.REJECT, b.ActionId.CANCEL},
        Status.REJECTED: set(),
        Status.CREATING_LINK: set(),
        Status.LINK_FAILED: {b.ActionId.RETRY, b.ActionId.CANCEL},
        Status.LINK_UNKNOWN: {b.ActionId.RETRY, b.ActionId.CANCEL},
        Status.AWAITING_PAYMENT: {b.ActionId.OPEN_CARD, b.ActionId.CANCEL},
        Status.PAID: set(),
        Status.PAYMENT_FAILED: {b.ActionId.OPEN_CARD, b.ActionId.CANCEL},
        Status.CANCELLED: set(),
        Status.EXPIRED: {b.ActionId.RENEW, b.ActionId.CANCEL},
    }.items()
}


@pytest.mark.parametrize("status", list(Status))
def test_card_every_status(status: Status) -> None:
    link = make_link(status)
    text, blocks = b.card(link)
    check_message(text, blocks)
    assert_masked([text, blocks])
    found = buttons(blocks)
    assert set(found) == EXPECTED_BUTTONS[status]
    for button in found.values():
        assert button["value"] == "42"
    rendered = "\n".join(mrkdwn_texts(blocks))
    assert f"*Status:* {b.STATUS_EMOJI[status]} {status.label}" in rendered
    assert "PKR 1,500.50" in rendered
    assert "<@U0REP>" in rendered
    assert "a•••n@example.com" in rendered
    assert "•••••••2456" in rendered
    assert "Card, Easypaisa" in rendered
    assert "Lahore" in rendered
    header = blocks[0]
    assert header["type"] == "header"
    assert header["text"]["text"] == "Payment link request · PL-ABC123"


def test_card_buttons_styles_and_confirms() -> None:
    _, blocks = b.card(make_link(Status.AWAITING_APPROVAL))
    found = buttons(blocks)
    assert found[b.ActionId.APPROVE]["style"] == "primary"
    assert found[b.ActionId.REJECT]["style"] == "danger"
    assert found[b.ActionId.CANCEL]["confirm"]["title"]["text"] == "Cancel this payment link?"
    _, blocks = b.card(make_link(Status.LINK_FAILED))
    found = buttons(blocks)
    assert found[b.ActionId.RETRY]["style"] == "primary"
    assert "confirm" in found[b.ActionId.RETRY]
    _, blocks = b.card(make_link(Status.AWAITING_PAYMENT))
    found = buttons(blocks)
    assert found[b.ActionId.OPEN_CARD]["url"] == "https://xstak-pay.xstak.com/checkout/pi_1?a=1&b=2"
    assert found[b.ActionId.OPEN_CARD]["text"]["text"] == "Open checkout page"


def test_card_status_details() -> None:
    def status_text(link: Link) -> str:
        _, blocks = b.card(link)
        return next(bl["text"]["text"] for bl in blocks if bl["block_id"] == "status")

    approved = status_text(make_link(Status.AWAITING_PAYMENT))
    assert "Approved by <@U0BOSS> <!date^1740825000^{date_short_pretty} {time}|" in approved
    rejected = status_text(make_link(Status.REJECTED))
    assert "Rejected by <@U0BOSS>" in rejected and "Customer unknown" in rejected
    assert "Approved by" not in rejected
    failed = status_text(make_link(Status.LINK_FAILED))
    assert "Link creation failed: Invalid signature" in failed
    unknown = status_text(make_link(Status.LINK_UNKNOWN))
    assert b.UNKNOWN_NOTE in unknown
    assert "Retry only if the customer has no link." in unknown
    assert "Paid via Card" in status_text(make_link(Status.PAID))
    assert "Payment failed: Insufficient funds" in status_text(make_link(Status.PAYMENT_FAILED))
    assert "Cancelled by <@U0REP>" in status_text(make_link(Status.CANCELLED))
    after = status_text(make_link(Status.PAID, cancelled_by="U0REP"))
    assert "Paid via Card" in after and "cancelled" in after


def test_card_no_approvers_note() -> None:
    _, blocks = b.card(make_link(), approvers_configured=False)
    assert b.NO_APPROVERS_NOTE in "\n".join(mrkdwn_texts(blocks))
    _, blocks = b.card(make_link(), approvers_configured=True)
    assert b.NO_APPROVERS_NOTE not in "\n".join(mrkdwn_texts(blocks))
    _, blocks = b.card(make_link(Status.PAID), approvers_configured=False)
    assert b.NO_APPROVERS_NOTE not in "\n".join(mrkdwn_texts(blocks))


def test_card_optional_bits() -> None:
    link = make_link(customer_phone=None, payment_methods=[], shipping={})
    _, blocks = b.card(link)
    rendered = "\n".join(mrkdwn_texts(blocks))
    assert "All methods" in rendered
    assert "*Phone*" not in rendered
    assert "*Shipping*" not in rendered
    check_message("x", blocks)


def test_card_non_slack_requester_is_text() -> None:
    _, blocks = b.card(make_link(requester_id="cli:ops"))
    rendered = "\n".join(mrkdwn_texts(blocks))
    assert "cli:ops" in rendered and "<@cli:ops>" not in rendered


@pytest.mark.parametrize("status", list(Status))
def test_card_escapes_everything(status: Status) -> None:
    link = nasty_link(status)
    text, blocks = b.card(link, approvers_configured=False)
    check_message(text, blocks)
    rendered = "\n".join(mrkdwn_texts(blocks))
    assert "Tom &amp; Jerry" in rendered
    assert "&lt;!channel&gt;" in rendered


@pytest.mark.parametrize("status", list(Status))
def test_card_long_text_still_fits(status: Status) -> None:
    long_msg = "&<>x" * 2000
    link = make_link(
        status,
        customer_name="&" * 200,
        reference="R" * 64,
        gateway_message=long_msg,
        bank_message=long_msg,
        reject_reason="<" * 500,
        paid_method="m" * 64,
        shipping={k: "&" * 200 for k in ("address1", "city", "province", "country", "zip")},
        checkout_url="https://pay.example/" + "a" * 1900,
    )
    text, blocks = b.card(link)
    check_message(text, blocks)
    for kind in b.THREAD_KINDS:
        check_message(*b.thread_reply(link, kind))


def test_card_long_customer_name() -> None:
    link = make_link(customer_name="N" * 200)
    text, blocks = b.card(link)
    check_message(text, blocks)
    assert "N" * 200 in "\n".join(mrkdwn_texts(blocks))


# --- thread replies -------------------------------------------------------------------------

REPLY_STATUS = {
    "link_ready": Status.AWAITING_PAYMENT,
    "paid": Status.PAID,
    "payment_failed": Status.PAYMENT_FAILED,
    "rejected": Status.REJECTED,
    "cancelled": Status.CANCELLED,
    "link_failed": Status.LINK_FAILED,
    "paid_after_cancel": Status.PAID,
    "amount_mismatch": Status.AWAITING_PAYMENT,
    "mailed": Status.AWAITING_PAYMENT,
    "mail_failed": Status.AWAITING_PAYMENT,
    "first_approval": Status.AWAITING_APPROVAL,
    "remind_approvers": Status.AWAITING_APPROVAL,
    "remind_rep": Status.AWAITING_PAYMENT,
    "expired": Status.EXPIRED,
    "link_renewed": Status.AWAITING_PAYMENT,
    "double_payment": Status.PAID,
}


def test_reply_kinds_cover_contract() -> None:
    assert set(REPLY_STATUS) == set(b.THREAD_KINDS)
    with pytest.raises(ValueError):
        b.thread_reply(make_link(), "bogus")


def test_every_thread_kind_has_a_renderer() -> None:
    assert set(ThreadKind) == b.THREAD_KINDS
    text, _ = b.thread_reply(make_link(Status.AWAITING_PAYMENT), ThreadKind.LINK_READY)
    assert text == "Checkout link ready for Ayesha Khan: PKR 1,500.50"


@pytest.mark.parametrize("kind", sorted(REPLY_STATUS))
def test_thread_reply(kind: str) -> None:
    link = make_link(REPLY_STATUS[kind])
    if kind == "paid_after_cancel":
        link.cancelled_by = "U0REP"
    text, blocks = b.thread_reply(link, kind)
    check_message(text, blocks)
    assert_masked([text, blocks])
    assert not buttons(blocks)


@pytest.mark.parametrize("kind", sorted(REPLY_STATUS))
def test_thread_reply_escapes(kind: str) -> None:
    text, blocks = b.thread_reply(nasty_link(REPLY_STATUS[kind]), kind)
    check_message(text, blocks)


def test_amount_mismatch_reply_names_both_sums() -> None:
    link = make_link(Status.AWAITING_PAYMENT)
    text, blocks = b.thread_reply(
        link, "amount_mismatch", {"amount": "10", "currency": "<!channel>"}
    )
    check_message(text, blocks)
    reply = "\n".join(mrkdwn_texts(blocks))
    assert "XPay reports a payment of &lt;!channel&gt; 10" in reply
    assert "PKR 1,500.50" in reply and "<@U0REP>" in reply and "status is unchanged" in reply


def _reply(link: Link, kind: str) -> str:
    text, blocks = b.thread_reply(link, kind)
    return "\n".join(mrkdwn_texts(blocks))


def test_thread_reply_contents() -> None:
    ready = _reply(make_link(Status.AWAITING_PAYMENT), "link_ready")
    assert "<https://xstak-pay.xstak.com/checkout/pi_1?a=1&amp;b=2>" in ready
    assert "Share this link with Ayesha Khan" in ready
    assert "PKR 1,500.50" in ready and "<@U0REP>" in ready

    paid = _reply(make_link(Status.PAID, amount=Decimal("5000")), "paid")
    assert ":white_check_mark: Paid: PKR 5,000 via Card" in paid
    assert "Approved" in paid and "<@U0REP>" in paid

    failed = _reply(make_link(Status.PAYMENT_FAILED), "payment_failed")
    assert ":x: Payment failed" in failed and "Insufficient funds" in failed
    assert "<@U0REP>" in failed

    rejected = _reply(make_link(Status.REJECTED), "rejected")
    assert "<@U0BOSS>" in rejected and "Customer unknown" in rejected

    assert "Cancelled by <@U0REP>" in _reply(make_link(Status.CANCELLED), "cancelled")

    link_failed = _reply(make_link(Status.LINK_FAILED), "link_failed")
    assert "<@U0BOSS>" in link_failed and "Invalid signature" in link_failed
    unknown = _reply(make_link(Status.LINK_UNKNOWN), "link_failed")
    assert b.UNKNOWN_NOTE in unknown

    after = _reply(make_link(Status.PAID, cancelled_by="U0REP"), "paid_after_cancel")
    assert "Paid after the request was cancelled" in after and "PKR 1,500.50" in after


def test_link_ready_disguised_url_stays_harmless() -> None:
    # A gateway URL is shown as itself: no label can be smuggled in with "|" or ">".
    link = make_link(Status.AWAITING_PAYMENT, checkout_url="https://pay.example|bank.com>x")
    text, blocks = b.thread_reply(link, "link_ready")
    check_message(text, blocks)
    rendered = "\n".join(mrkdwn_texts(blocks))
    assert "|bank.com" not in rendered
    assert "<https://pay.example%7Cbank.com%3Ex>" in rendered
    # Not an http(s) URL at all: plain escaped text, not a link.
    link = make_link(Status.AWAITING_PAYMENT, checkout_url="javascript:<!channel>")
    text, blocks = b.thread_reply(link, "link_ready")
    check_message(text, blocks)


# --- modals -------------------------------------------------------------------------------


def test_request_modal_defaults() -> None:
    view = b.request_modal(settings(), channel_id="C0SALES")
    assert validate_blocks(None, surface="modal", view=view) == []
    assert view["type"] == "modal"
    assert view["callback_id"] == b.CallbackId.REQUEST
    assert view["title"]["text"] == "New payment link"
    assert view["submit"]["text"] == "Send for approval"
    assert view["close"]["text"] == "Cancel"
    assert json.loads(view["private_metadata"]) == {"channel_id": "C0SALES"}
    assert b.submission_channel(view) == "C0SALES"
    inputs = {bl["block_id"]: bl for bl in view["blocks"] if bl["type"] == "input"}
    assert set(inputs) == set(b.FIELD_BLOCKS.values())
    for field, block_id in b.FIELD_BLOCKS.items():
        assert inputs[block_id]["element"]["action_id"] == "value", field
    required = {k for k, v in inputs.items() if not v.get("optional")}
    assert required == {"amount", "currency", "customer_name"}
    assert inputs["amount"]["element"]["type"] == "plain_text_input"
    assert inputs["amount"]["element"]["placeholder"]["text"] == "5000 or 1500.50"
    assert "initial_value" not in inputs["amount"]["element"]
    assert inputs["currency"]["element"]["initial_option"]["value"] == "PKR"
    assert inputs["customer_email"]["element"]["type"] == "email_text_input"
    assert "03415682456" in inputs["customer_phone"]["hint"]["text"]
    assert inputs["country"]["element"]["initial_value"] == "Pakistan"
    assert inputs["order_reference"]["hint"]["text"] == "Left blank: generated"
    methods = inputs["payment_methods"]
    assert methods["element"]["type"] == "checkboxes"
    assert [o["text"]["text"] for o in methods["element"]["options"]] == [
        "Card",
        "Easypaisa",
        "JazzCash",
        "Google Pay",
        "Raast QR",
    ]
    assert methods["hint"]["text"] == "None selected: all methods"
    assert inputs["success_url"]["element"]["type"] == "url_text_input"
    assert "initial_value" not in inputs["success_url"]["element"]
    hints = "\n".join(mrkdwn_texts(view["blocks"]))
    assert "e-mail or phone" in hints


def test_request_modal_prefill_and_settings() -> None:
    s = settings(
        paylink_currencies="PKR,USD",
        paylink_payment_methods="card,dqr",
        paylink_success_url="https://shop.example/ok",
        paylink_failure_url="https://shop.example/fail",
    )
    view = b.request_modal(s, channel_id="C1", amount="5000", currency="usd")
    assert validate_blocks(None, surface="modal", view=view) == []
    inputs = {bl["block_id"]: bl for bl in view["blocks"] if bl["type"] == "input"}
    assert inputs["amount"]["element"]["initial_value"] == "5000"
    assert inputs["currency"]["element"]["initial_option"]["value"] == "USD"
    assert [o["value"] for o in inputs["currency"]["element"]["options"]] == ["PKR", "USD"]
    assert [o["value"] for o in inputs["payment_methods"]["element"]["options"]] == [
        "card",
        "dqr",
    ]
    assert inputs["success_url"]["element"]["initial_value"] == "https://shop.example/ok"
    assert inputs["failure_url"]["element"]["initial_value"] == "https://shop.example/fail"
    # An unknown currency falls back to the first offered one.
    view = b.request_modal(s, channel_id="C1", currency="EUR")
    inputs = {bl["block_id"]: bl for bl in view["blocks"] if bl["type"] == "input"}
    assert inputs["currency"]["element"]["initial_option"]["value"] == "PKR"


def slack_state(**over: Any) -> dict[str, Any]:
    """A view as Slack sends it in a view_submission payload."""

    def text(value: str | None, kind: str = "plain_text_input") -> dict[str, Any]:
        return {"value": {"type": kind, "value": value}}

    values: dict[str, Any] = {
        "amount": text("1,500.50"),
        "currency": {
            "value": {
                "type": "static_select",
                "selected_option": {
                    "text": {"type": "plain_text", "text": "USD", "emoji": True},
                    "value": "USD",
                },
            }
        },
        "customer_name": text("Ayesha Khan"),
        "customer_email": text(EMAIL, "email_text_input"),
        "customer_phone": text(None),
        "address1": text("12 Main Blvd"),
        "city": text(None),
        "province": text(None),
        "country": text("Pakistan"),
        "zip": text(None),
        "shipping_method": text(None),
        "order_reference": text(None),
        "payment_methods": {
            "value": {
                "type": "checkboxes",
                "selected_options": [
                    {"text": {"type": "plain_text", "text": "Card"}, "value": "card"},
                    {"text": {"type": "plain_text", "text": "Raast QR"}, "value": "dqr"},
                ],
            }
        },
        "success_url": text("https://shop.example/ok", "url_text_input"),
        "failure_url": text(None, "url_text_input"),
    }
    values.update(over)
    return {
        "id": "V123",
        "type": "modal",
        "callback_id": b.CallbackId.REQUEST,
        "private_metadata": json.dumps({"channel_id": "C0SALES"}),
        "state": {"values": values},
    }


def test_read_submission_round_trip() -> None:
    view = slack_state()
    fields = b.read_submission(view)
    assert fields == {
        "amount": "1,500.50",
        "currency": "USD",
        "customer_name": "Ayesha Khan",
        "customer_email": EMAIL,
        "customer_phone": "",
        "address1": "12 Main Blvd",
        "city": "",
        "province": "",
        "country": "Pakistan",
        "zip": "",
        "shipping_method": "",
        "order_reference": "",
        "payment_methods": ["card", "dqr"],
        "success_url": "https://shop.example/ok",
        "failure_url": "",
    }
    assert b.submission_channel(view) == "C0SALES"

    from bot.checkout import parse_checkout

    req = parse_checkout(fields, currencies=["PKR", "USD"], methods=["card", "easypaisa", "dqr"])
    assert req.amount == Decimal("1500.50") and req.currency == "USD"
    assert req.payment_methods == ("card", "dqr")


def test_read_submission_missing_values() -> None:
    view = slack_state(
        payment_methods={"value": {"type": "checkboxes", "selected_options": []}},
        currency={"value": {"type": "static_select", "selected_option": None}},
    )
    del view["state"]["values"]["zip"]
    fields = b.read_submission(view)
    assert fields["payment_methods"] == []
    assert fields["currency"] == ""
    assert fields["zip"] == ""
    assert set(fields) == set(b.FIELD_BLOCKS)
    assert b.read_submission({}) == {
        k: ([] if k == "payment_methods" else "") for k in b.FIELD_BLOCKS
    }


def test_submission_channel_bad_metadata() -> None:
    assert b.submission_channel({"private_metadata": ""}) is None
    assert b.submission_channel({"private_metadata": "not json"}) is None
    assert b.submission_channel({"private_metadata": "[1]"}) is None


def test_reject_modal() -> None:
    view = b.reject_modal(make_link())
    assert validate_blocks(None, surface="modal", view=view) == []
    assert view["callback_id"] == b.CallbackId.REJECT
    assert view["private_metadata"] == "42"
    assert view["title"]["text"] == "Reject request"
    assert view["submit"]["text"] == "Reject"
    reason = next(bl for bl in view["blocks"] if bl["type"] == "input")
    assert reason["block_id"] == "reason"
    assert reason["element"]["action_id"] == "value"
    assert reason["element"]["multiline"] is True
    assert reason["element"]["max_length"] == 500
    assert not reason.get("optional")
    assert "PL-ABC123" in "\n".join(mrkdwn_texts(view["blocks"]))


def test_reject_modal_escapes_and_fits() -> None:
    view = b.reject_modal(nasty_link(Status.AWAITING_APPROVAL))
    assert validate_blocks(None, surface="modal", view=view) == []
    for t in mrkdwn_texts(view["blocks"]):
        assert_safe_mrkdwn(t)
    view = b.reject_modal(make_link(customer_name="&" * 200, reference="R" * 64))
    assert validate_blocks(None, surface="modal", view=view) == []


# --- small texts and App Home ---------------------------------------------------------------


def test_help_text() -> None:
    text = b.help_text(["PKR", "USD"])
    assert "/paylink" in text and "/paylink 5000" in text and "/paylink 5000 USD" in text
    assert "approv" in text.lower()
    # With one currency on offer, no example suggests another.
    assert "USD" not in b.help_text(["PKR"])


def test_sent_for_approval_text() -> None:
    link = make_link()
    with_link = b.sent_for_approval_text(link, "https://acme.slack.com/archives/C0/p1")
    assert "<https://acme.slack.com/archives/C0/p1|View the request>" in with_link
    assert "PL-ABC123" in with_link and "PKR 1,500.50" in with_link
    assert_safe_mrkdwn(with_link)
    without = b.sent_for_approval_text(link, None)
    assert "<#C0APPROVE>" in without
    nasty = b.sent_for_approval_text(nasty_link(Status.AWAITING_APPROVAL), None)
    assert_safe_mrkdwn(nasty)
    assert_masked(nasty)


def _links(n: int, status: Status = Status.AWAITING_APPROVAL, **kw: Any) -> list[Link]:
    return [make_link(status, id=i, reference=f"PL-{i:04d}", **kw) for i in range(1, n + 1)]


def home(
    mine: list[Link],
    waiting: list[Link],
    *,
    is_approver: bool,
    permalinks: dict[int, str],
) -> dict[str, Any]:
    """The Home tab's first page showing ``mine`` (20 of them) and ``waiting``."""
    data = b.HomeData(
        state=b.HomeState(),
        is_approver=is_approver,
        page=Page(mine[:20], newer=False, older=len(mine) > 20),
        counts=Counts({f: len(mine) if f is Filter.ALL else 0 for f in Filter}, set()),
        now=WHEN,
        permalinks=permalinks,
        waiting=waiting,
        waiting_total=len(waiting),
    )
    return b.home_view(data)


def test_home_view_full_lists_fit() -> None:
    mine = _links(30, Status.AWAITING_PAYMENT, customer_name=NASTY)
    waiting = _links(30, requester_id="U0OTHER")
    permalinks = {i: f"https://acme.slack.com/archives/C0/p{i}" for i in range(1, 31, 2)}
    view = home(mine, waiting, is_approver=True, permalinks=permalinks)
    assert view["type"] == "home"
    assert validate_blocks(None, surface="home", view=view) == []
    assert len(view["blocks"]) < 100
    for t in mrkdwn_texts(view["blocks"]):
        assert_safe_mrkdwn(t)
    assert_masked(view)
    rows = [bl for bl in view["blocks"] if re.fullmatch(r"mine_\d+", bl["block_id"])]
    assert len(rows) == 20
    first = rows[0]
    assert "PL-0001" in first["text"]["text"] and "Awaiting payment" in first["text"]["text"]
    assert first["accessory"]["action_id"] == b.ActionId.OPEN_CARD
    assert first["accessory"]["url"] == permalinks[1]
    assert first["accessory"]["value"] == "1"
    assert "accessory" not in rows[1]
    waiting_rows = [bl for bl in view["blocks"] if re.fullmatch(r"waiting_\d+", bl["block_id"])]
    assert len(waiting_rows) == 20
    assert "<@U0OTHER>" in waiting_rows[0]["text"]["text"]
    assert "…and 10 more" in json.dumps(view, ensure_ascii=False)


def test_home_view_empty_states() -> None:
    view = home([], [], is_approver=True, permalinks={})
    assert validate_blocks(None, surface="home", view=view) == []
    rendered = "\n".join(mrkdwn_texts(view["blocks"]))
    assert "not requested any payment links yet" in rendered
    assert "Nothing is waiting for you" in rendered

    view = home([], _links(3), is_approver=False, permalinks={})
    assert validate_blocks(None, surface="home", view=view) == []
    texts = json.dumps(view)
    assert "Waiting for you" not in texts


@pytest.mark.parametrize("status", list(Status))
def test_home_row_every_status(status: Status) -> None:
    view = home([make_link(status)], [], is_approver=False, permalinks={42: "https://x.y/z"})
    assert validate_blocks(None, surface="home", view=view) == []
    assert status.label in json.dumps(view)


# --- sandbox links say they are tests ------------------------------------------------------

SANDBOX_NOTE = "TEST — sandbox, no real money"
# The replies that show the link or a payment.
MONEY_REPLIES = (
    "link_ready",
    "paid",
    "payment_failed",
    "paid_after_cancel",
    "amount_mismatch",
    "remind_rep",
    "link_renewed",
    "double_payment",
)


@pytest.mark.parametrize("status", list(Status))
def test_a_sandbox_card_says_it_is_a_test(status: Status) -> None:
    for link in (make_link(status, sandbox=True), nasty_link(status)):
        link.sandbox = True
        text, blocks = b.card(link, approvers_configured=False)
        check_message(text, blocks)
        assert SANDBOX_NOTE in "\n".join(mrkdwn_texts(blocks))
        assert text.startswith("TEST: "), text  # the notification says so too
        assert blocks[0]["type"] == "header"
    text, blocks = b.card(make_link(status, sandbox=False))
    assert "TEST" not in text + json.dumps(blocks)


@pytest.mark.parametrize("kind", MONEY_REPLIES)
def test_sandbox_replies_with_the_link_or_a_payment_say_it_is_a_test(kind: str) -> None:
    link = make_link(REPLY_STATUS[kind], sandbox=True, cancelled_by="U0REP")
    text, blocks = b.thread_reply(link, kind)
    check_message(text, blocks)
    assert SANDBOX_NOTE in "\n".join(mrkdwn_texts(blocks))
    assert text.startswith("TEST: "), text
    link.sandbox = False
    text, blocks = b.thread_reply(link, kind)
    assert "TEST" not in text + json.dumps(blocks)


def test_sandbox_rows_in_app_home_say_they_are_tests() -> None:
    links = [make_link(Status.PAID, id=1, sandbox=True), make_link(Status.PAID, id=2)]
    view = home(links, links, is_approver=True, permalinks={1: "https://x.y/z"})
    assert validate_blocks(None, surface="home", view=view) == []
    rows = {bl["block_id"]: bl["text"]["text"] for bl in view["blocks"] if bl["type"] == "section"}
    for prefix in ("mine", "waiting"):
        assert "TEST" in rows[f"{prefix}_1"]
        assert "TEST" not in rows[f"{prefix}_2"]
