"""Slack payloads: the request modal, the request card, thread replies and the App Home tab.

Pure functions: they read a :class:`~bot.links.tables.Link` (or settings) and return plain
dicts built with slack_sdk's typed Block Kit models, ready for ``WebClient`` calls.

Safety rules kept here, in one place:

* every user-supplied string that lands in a ``mrkdwn`` text goes through :func:`escape`, so
  ``<!channel>``, ``<@U…>`` or ``<https://evil|bank.com>`` typed by someone stay literal text;
* the customer's e-mail and phone are always masked;
* text is clipped to Slack's limits (after escaping, without cutting an ``&amp;`` in half);
* every block and element has an explicit ``block_id`` / ``action_id``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    CheckboxesElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    EmailInputElement,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
    UrlInputElement,
)
from slack_sdk.models.views import View

from bot.checkout import FIELDS, mask_email, mask_phone
from bot.config import Settings
from bot.links.states import Status
from bot.links.tables import Link

__all__ = [
    "ACTION_APPROVE",
    "ACTION_CANCEL",
    "ACTION_OPEN_CARD",
    "ACTION_REJECT",
    "ACTION_RETRY",
    "CALLBACK_REJECT",
    "CALLBACK_REQUEST",
    "FIELD_BLOCKS",
    "METHOD_LABELS",
    "THREAD_KINDS",
    "card",
    "escape",
    "format_amount",
    "help_text",
    "home_view",
    "method_label",
    "read_submission",
    "reject_modal",
    "request_modal",
    "sent_for_approval_text",
    "submission_channel",
    "thread_reply",
]

# --- contract: ids other modules depend on ----------------------------------------------

CALLBACK_REQUEST = "paylink_request"
CALLBACK_REJECT = "paylink_reject"

ACTION_APPROVE = "paylink_approve"
ACTION_REJECT = "paylink_reject_open"
ACTION_RETRY = "paylink_retry"
ACTION_CANCEL = "paylink_cancel"
ACTION_OPEN_CARD = "paylink_open_card"

#: The action_id of the element inside every input block of the modals.
INPUT_ACTION = "value"

#: Checkout field name (as :func:`bot.checkout.parse_checkout` expects it) → modal block_id.
#: Keys are also the keys of ``CheckoutInvalid.errors``, so errors map straight onto blocks.
FIELD_BLOCKS: dict[str, str] = {name: name for name in FIELDS}

METHOD_LABELS: dict[str, str] = {
    "card": "Card",
    "easypaisa": "Easypaisa",
    "jazzcash": "JazzCash",
    "googlepay": "Google Pay",
    "dqr": "Raast QR",
}

THREAD_KINDS = frozenset(
    {
        "link_ready",
        "paid",
        "payment_failed",
        "rejected",
        "cancelled",
        "link_failed",
        "paid_after_cancel",
        "amount_mismatch",
    }
)

# --- limits (shared/slack/REFERENCE.md) ------------------------------------------------

SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
CONTEXT_TEXT_MAX = 2000
HEADER_MAX = 150
BUTTON_TEXT_MAX = 75
OPTION_TEXT_MAX = 75
MODAL_TITLE_MAX = 24
# Raw (unescaped) budgets for free text typed by people or returned by gateways: escaping
# can grow text five-fold (``&`` → ``&amp;``), so these keep every block under its limit.
NAME_BUDGET = 200
REASON_BUDGET = 500
MESSAGE_BUDGET = 400
SHIPPING_BUDGET = 300
FALLBACK_MAX = 500
HOME_LIST_MAX = 20

STATUS_EMOJI: dict[Status, str] = {
    Status.AWAITING_APPROVAL: ":hourglass_flowing_sand:",
    Status.REJECTED: ":no_entry:",
    Status.CREATING_LINK: ":gear:",
    Status.LINK_FAILED: ":warning:",
    Status.LINK_UNKNOWN: ":grey_question:",
    Status.AWAITING_PAYMENT: ":link:",
    Status.PAID: ":white_check_mark:",
    Status.PAYMENT_FAILED: ":x:",
    Status.CANCELLED: ":no_entry_sign:",
}

UNKNOWN_NOTE = (
    "XPay did not confirm whether the link was created. Retry only if the customer has no link."
)
NO_APPROVERS_NOTE = (
    "No approvers are configured (PAYLINK_APPROVERS), so nobody can approve this request."
)

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")


# --- text helpers -------------------------------------------------------------------------


def escape(text: Any) -> str:
    """Escape ``&``, ``<`` and ``>`` so Slack mrkdwn shows ``text`` literally.

    ``None`` becomes ``""``. Apply to every user- or gateway-supplied string placed in mrkdwn.
    """
    if text is None:
        return ""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    """Shorten raw text to ``limit`` characters, ending with an ellipsis when cut."""
    text = " ".join(text.split()) if "\n" not in text else text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _clip_mrkdwn(text: str, limit: int) -> str:
    """Shorten already-escaped mrkdwn without leaving half an entity or half a ``<…>`` token."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    lt = cut.rfind("<")
    if lt != -1 and ">" not in cut[lt:]:
        cut = cut[:lt]
    return cut.rstrip() + "…"


def _safe(text: Any, budget: int) -> str:
    """Clip raw user text to ``budget`` characters, then escape it for mrkdwn."""
    return escape(_clip(str(text or ""), budget))


def _user(user_id: str | None) -> str:
    """A mention for Slack user IDs; anything else (CLI actors, "system") as escaped text."""
    if not user_id:
        return "someone"
    if _USER_ID.match(user_id):
        return f"<@{user_id}>"
    return escape(_clip(user_id, 64))


def _channel(channel_id: str | None) -> str:
    if channel_id and _CHANNEL_ID.match(channel_id):
        return f"<#{channel_id}>"
    return "the approval channel"


def _date(at: datetime | None) -> str:
    """A Slack date token shown in the reader's time zone, with a UTC fallback."""
    if at is None:
        return ""
    fallback = at.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def _day(at: datetime | None) -> str:
    if at is None:
        return ""
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}}|{at.strftime('%Y-%m-%d')}>"


def _link(url: str | None, label: str | None = None) -> str:
    """A clickable mrkdwn link to an http(s) URL; anything else is shown as escaped text."""
    if not url:
        return ""
    if not re.match(r"^https?://[^\s]+$", url, re.IGNORECASE):
        return escape(url)
    safe = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    return f"<{safe}|{escape(label)}>" if label else f"<{safe}>"


def format_amount(amount: Decimal | int | str | None, currency: str | None) -> str:
    """``PKR 1,500.50`` / ``PKR 5,000``: thousands separators, decimals only when needed."""
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return f"{currency or ''} {amount}".strip()
    if not value.is_finite():
        return f"{currency or ''} {amount}".strip()
    text = f"{value:,.0f}" if value == value.to_integral_value() else f"{value:,.2f}"
    return f"{currency} {text}" if currency else text


def method_label(method: str | None) -> str:
    """Friendly name of a payment method (``googlepay`` → ``Google Pay``); raw text otherwise."""
    if not method:
        return ""
    return METHOD_LABELS.get(method.lower(), method)


def _methods_text(methods: Iterable[str] | None) -> str:
    chosen = list(methods or [])
    if not chosen:
        return "All methods"
    return ", ".join(method_label(m) for m in chosen)


def _status(link: Link) -> Status:
    return Status(link.status)


def _shipping_line(shipping: dict[str, str] | None) -> str:
    if not shipping:
        return ""
    parts = [
        shipping.get(key, "")
        for key in ("address1", "city", "province", "zip", "country")
        if shipping.get(key)
    ]
    line = ", ".join(parts)
    method = shipping.get("shipping_method")
    if method:
        line = f"{line} ({method})" if line else method
    return line


def _amount(link: Link) -> str:
    return escape(format_amount(link.amount, link.currency))


def _section(block_id: str, text: str) -> SectionBlock:
    return SectionBlock(
        block_id=block_id, text=MarkdownTextObject(text=_clip_mrkdwn(text, SECTION_TEXT_MAX))
    )


def _context(block_id: str, *texts: str) -> ContextBlock:
    return ContextBlock(
        block_id=block_id,
        elements=[MarkdownTextObject(text=_clip_mrkdwn(t, CONTEXT_TEXT_MAX)) for t in texts],
    )


def _dicts(blocks: Iterable[Block]) -> list[dict[str, Any]]:
    return [b.to_dict() for b in blocks]


# --- the /paylink modal -------------------------------------------------------------------


def _text_input(
    field: str,
    label: str,
    *,
    optional: bool = True,
    initial: str | None = None,
    placeholder: str | None = None,
    hint: str | None = None,
    max_length: int | None = None,
) -> InputBlock:
    return InputBlock(
        block_id=FIELD_BLOCKS[field],
        label=label,
        optional=optional,
        hint=hint,
        element=PlainTextInputElement(
            action_id=INPUT_ACTION,
            initial_value=initial or None,
            placeholder=placeholder,
            max_length=max_length,
        ),
    )


def request_modal(
    settings: Settings,
    *,
    channel_id: str,
    amount: str | None = None,
    currency: str | None = None,
) -> dict[str, Any]:
    """The ``/paylink`` modal (``views.open``), pre-filled with ``amount``/``currency`` if given.

    Validation is server-side (``parse_checkout``); errors go back inline with the block_ids in
    :data:`FIELD_BLOCKS`. ``private_metadata`` carries the channel where ``/paylink`` was typed.
    """
    currencies = list(settings.paylink_currencies) or ["PKR"]
    chosen = (currency or "").strip().upper()
    if chosen not in currencies:
        chosen = currencies[0]
    view = json.loads(
        _request_view(
            tuple(currencies),
            chosen,
            tuple(settings.paylink_payment_methods),
            settings.paylink_success_url,
            settings.paylink_failure_url,
        )
    )
    view["private_metadata"] = json.dumps({"channel_id": channel_id})
    if amount:
        (block,) = (b for b in view["blocks"] if b["block_id"] == FIELD_BLOCKS["amount"])
        block["element"]["initial_value"] = _clip(amount, 50)
    return view


@functools.lru_cache(maxsize=64)
def _request_view(
    currencies: tuple[str, ...],
    chosen: str,
    methods: tuple[str, ...],
    success: str | None,
    failure: str | None,
) -> str:
    """The modal with no amount and no channel, which depends on settings and the currency
    only: rendered from Block Kit models once and kept as JSON, so each modal gets its own
    copy (the models were a fifth of an ack's CPU, then a sixth of a `/paylink`'s)."""
    currency_options = [Option(value=c, label=c) for c in currencies[:100]]
    prefilled: list[Block] = [
        _text_input(
            "amount",
            "Amount",
            optional=False,
            placeholder="5000 or 1500.50",
            max_length=20,
        ),
        InputBlock(
            block_id=FIELD_BLOCKS["currency"],
            label="Currency",
            element=StaticSelectElement(
                action_id=INPUT_ACTION,
                placeholder="Currency",
                options=currency_options,
                initial_option=currency_options[currencies.index(chosen)],
            ),
        ),
    ]
    view = View(
        type="modal",
        callback_id=CALLBACK_REQUEST,
        title="New payment link",
        submit="Send for approval",
        close="Cancel",
        private_metadata="",
        blocks=prefilled,
    ).to_dict()
    view["blocks"] += json.loads(_fixed_request_blocks(methods, success, failure))
    return json.dumps(view)


@functools.lru_cache(maxsize=16)
def _fixed_request_blocks(
    methods: tuple[str, ...], success: str | None, failure: str | None
) -> str:
    """The modal's blocks after the currency, which depend on settings only: rendered once
    (Block Kit models are a fifth of the CPU an ack costs) and kept as JSON, so each modal
    gets its own copy."""
    method_options = [
        Option(value=m, label=_clip(method_label(m), OPTION_TEXT_MAX)) for m in methods
    ][:10]
    blocks: list[Block] = [
        _text_input("customer_name", "Customer name", optional=False, max_length=200),
        InputBlock(
            block_id=FIELD_BLOCKS["customer_email"],
            label="Customer e-mail",
            optional=True,
            element=EmailInputElement(action_id=INPUT_ACTION, placeholder="name@example.com"),
        ),
        _text_input(
            "customer_phone",
            "Customer phone",
            placeholder="03415682456",
            hint="Pakistani numbers like 03415682456 are fine",
            max_length=32,
        ),
        _context(
            "contact_hint",
            "Give the customer's e-mail or phone (at least one is required).",
        ),
        _text_input("address1", "Shipping address", max_length=200),
        _text_input("city", "City", max_length=200),
        _text_input("province", "Province", max_length=200),
        _text_input("country", "Country", initial="Pakistan", max_length=200),
        _text_input("zip", "Postal code", max_length=200),
        _text_input("shipping_method", "Shipping method", max_length=200),
        _text_input(
            "order_reference",
            "Order reference",
            hint="Left blank: generated",
            max_length=64,
        ),
        InputBlock(
            block_id=FIELD_BLOCKS["payment_methods"],
            label="Payment methods",
            optional=True,
            hint="None selected: all methods",
            element=CheckboxesElement(action_id=INPUT_ACTION, options=method_options),
        ),
        InputBlock(
            block_id=FIELD_BLOCKS["success_url"],
            label="Success URL",
            optional=True,
            hint="Where the customer lands after paying",
            element=UrlInputElement(action_id=INPUT_ACTION, initial_value=success or None),
        ),
        InputBlock(
            block_id=FIELD_BLOCKS["failure_url"],
            label="Failure URL",
            optional=True,
            hint="Where the customer lands when the payment fails",
            element=UrlInputElement(action_id=INPUT_ACTION, initial_value=failure or None),
        ),
    ]
    return json.dumps([block.to_dict() for block in blocks])


def read_submission(view: dict[str, Any]) -> dict[str, Any]:
    """Raw field values from a ``view_submission``'s ``view``, keyed as :data:`FIELD_BLOCKS`.

    Text inputs give their ``value``, the select its ``selected_option.value``, the checkboxes a
    list of selected values. Missing or empty values become ``""`` (``[]`` for methods).
    """
    values: dict[str, Any] = ((view or {}).get("state") or {}).get("values") or {}
    fields: dict[str, Any] = {}
    for field, block_id in FIELD_BLOCKS.items():
        state = (values.get(block_id) or {}).get(INPUT_ACTION) or {}
        if field == "payment_methods":
            selected = state.get("selected_options") or []
            fields[field] = [o["value"] for o in selected if o and o.get("value")]
            continue
        if "selected_option" in state:
            option = state.get("selected_option") or {}
            value = option.get("value")
        else:
            value = state.get("value")
        fields[field] = "" if value is None else str(value)
    return fields


def submission_channel(view: dict[str, Any]) -> str | None:
    """The channel where ``/paylink`` was typed, from the modal's ``private_metadata``."""
    raw = (view or {}).get("private_metadata") or ""
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        return None
    channel = data.get("channel_id") if isinstance(data, dict) else None
    return channel if isinstance(channel, str) and channel else None


# --- the reject modal ---------------------------------------------------------------------


def reject_modal(link: Link) -> dict[str, Any]:
    """The "Reject request" modal; ``private_metadata`` is the link id, the reason is required."""
    summary = (
        f"Reject *{_safe(link.reference, 64)}*: {_amount(link)} for "
        f"{_safe(link.customer_name, NAME_BUDGET)}, requested by {_user(link.requester_id)}?"
    )
    view = View(
        type="modal",
        callback_id=CALLBACK_REJECT,
        title="Reject request",
        submit="Reject",
        close="Cancel",
        private_metadata=str(link.id),
        blocks=[
            _section("summary", summary),
            InputBlock(
                block_id="reason",
                label="Reason",
                hint="The requester sees this on the request and in its thread.",
                element=PlainTextInputElement(
                    action_id=INPUT_ACTION, multiline=True, max_length=REASON_BUDGET
                ),
            ),
        ],
    )
    return view.to_dict()


# --- the request card ---------------------------------------------------------------------


def _status_text(link: Link, status: Status) -> str:
    lines = [f"*Status:* {STATUS_EMOJI[status]} {status.label}"]
    if link.decided_by and status is not Status.REJECTED:
        when = _date(link.decided_at)
        lines.append(f"Approved by {_user(link.decided_by)}" + (f" {when}" if when else ""))
    if status is Status.REJECTED:
        when = _date(link.decided_at)
        line = f"Rejected by {_user(link.decided_by)}" + (f" {when}" if when else "")
        if link.reject_reason:
            line += f": {_safe(link.reject_reason, REASON_BUDGET)}"
        lines.append(line)
    elif status is Status.LINK_FAILED:
        message = _safe(link.gateway_message, MESSAGE_BUDGET) or "no message from XPay"
        lines.append(f"Link creation failed: {message}")
    elif status is Status.LINK_UNKNOWN:
        lines.append(UNKNOWN_NOTE)
        if link.gateway_message:
            lines.append(f"XPay said: {_safe(link.gateway_message, MESSAGE_BUDGET)}")
    elif status is Status.PAID:
        method = _safe(method_label(link.paid_method), 64)
        lines.append("Paid" + (f" via {method}" if method else ""))
        if link.cancelled_by:
            lines.append(
                f":warning: Paid even though {_user(link.cancelled_by)} had cancelled it: "
                "the money has moved."
            )
    elif status is Status.PAYMENT_FAILED:
        message = _safe(link.bank_message, MESSAGE_BUDGET) or "no message from the bank"
        lines.append(f"Payment failed: {message}")
        lines.append("The customer can try again on the same checkout page.")
    elif status is Status.CANCELLED:
        lines.append(f"Cancelled by {_user(link.cancelled_by)}")
    return "\n".join(lines)


def _cancel_button(link: Link) -> ButtonElement:
    return ButtonElement(
        action_id=ACTION_CANCEL,
        text="Cancel",
        value=str(link.id),
        confirm=ConfirmObject(
            title="Cancel this payment link?",
            # plain_text: the reference is user-supplied and a confirm's text defaults to mrkdwn
            text=PlainTextObject(
                text=_clip(f"{link.reference}: the request will be marked as cancelled.", 300),
                emoji=False,
            ),
            confirm="Cancel link",
            deny="Keep it",
        ),
    )


def _buttons(link: Link, status: Status) -> list[ButtonElement]:
    value = str(link.id)
    if status is Status.AWAITING_APPROVAL:
        return [
            ButtonElement(action_id=ACTION_APPROVE, text="Approve", value=value, style="primary"),
            ButtonElement(action_id=ACTION_REJECT, text="Reject", value=value, style="danger"),
            _cancel_button(link),
        ]
    if status in (Status.LINK_FAILED, Status.LINK_UNKNOWN):
        return [
            ButtonElement(
                action_id=ACTION_RETRY,
                text="Retry",
                value=value,
                style="primary",
                confirm=ConfirmObject(
                    title="Create the link again?",
                    text=PlainTextObject(
                        text="Retry only if the customer has no working link for this request."
                    ),
                    confirm="Retry",
                    deny="Not now",
                ),
            ),
            _cancel_button(link),
        ]
    if status in (Status.AWAITING_PAYMENT, Status.PAYMENT_FAILED):
        buttons: list[ButtonElement] = []
        if link.checkout_url and re.match(r"^https?://", link.checkout_url, re.IGNORECASE):
            buttons.append(
                ButtonElement(
                    action_id=ACTION_OPEN_CARD,
                    text="Open checkout page",
                    url=link.checkout_url,
                    value=value,
                )
            )
        buttons.append(_cancel_button(link))
        return buttons
    return []


def card(link: Link, *, approvers_configured: bool = True) -> tuple[str, list[dict[str, Any]]]:
    """The request card in the approval channel: ``(fallback text, blocks)``.

    Used for ``chat.postMessage`` and every later ``chat.update``; the buttons follow the status.
    """
    status = _status(link)
    reference = _safe(link.reference, 64)
    name = _safe(link.customer_name, NAME_BUDGET)
    fields = [
        f"*Requested by*\n{_user(link.requester_id)}",
        f"*Amount*\n{_amount(link)}",
        f"*Customer*\n{name}",
    ]
    if link.customer_email:
        fields.append(f"*E-mail*\n{escape(mask_email(link.customer_email))}")
    if link.customer_phone:
        fields.append(f"*Phone*\n{escape(mask_phone(link.customer_phone))}")
    fields.append(f"*Order reference*\n{reference}")
    fields.append(f"*Methods*\n{escape(_methods_text(link.payment_methods))}")
    shipping = _shipping_line(link.shipping)
    if shipping:
        fields.append(f"*Shipping*\n{_safe(shipping, SHIPPING_BUDGET)}")

    blocks: list[Block] = [
        HeaderBlock(
            block_id="title",
            text=PlainTextObject(
                text=_clip(f"Payment link request · {link.reference}", HEADER_MAX), emoji=False
            ),
        ),
        SectionBlock(
            block_id="details",
            fields=[MarkdownTextObject(text=_clip_mrkdwn(f, FIELD_TEXT_MAX)) for f in fields],
        ),
        _section("status", _status_text(link, status)),
    ]
    if status is Status.AWAITING_APPROVAL and not approvers_configured:
        blocks.append(_context("no_approvers", f":warning: {NO_APPROVERS_NOTE}"))
    buttons = _buttons(link, status)
    if buttons:
        blocks.append(ActionsBlock(block_id="paylink_actions", elements=buttons))
    footer = f"Request #{link.id}"
    if link.created_at:
        footer += f" · created {_date(link.created_at)}"
    blocks.append(_context("footer", footer))

    fallback = _clip_mrkdwn(
        f"Payment link request {reference}: {_amount(link)} for {name} ({status.label})",
        FALLBACK_MAX,
    )
    return fallback, _dicts(blocks)


# --- thread replies -----------------------------------------------------------------------


def thread_reply(
    link: Link, kind: str, details: dict[str, Any] | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """A reply in the card's thread: ``(fallback text, blocks)``.

    ``kind`` is one of :data:`THREAD_KINDS`: link_ready, paid, payment_failed, rejected,
    cancelled, link_failed, paid_after_cancel, amount_mismatch (``details`` has the
    ``amount`` and ``currency`` XPay reported).
    """
    amount = _amount(link)
    name = _safe(link.customer_name, NAME_BUDGET)
    requester = _user(link.requester_id)
    method = _safe(method_label(link.paid_method), 64)
    via = f" via {method}" if method else ""
    bank = _safe(link.bank_message, MESSAGE_BUDGET)
    extra: list[str] = []

    if kind == "link_ready":
        url = _link(link.checkout_url) or "(XPay returned no address)"
        text = f":link: {requester} the checkout link is ready: {url}"
        extra.append(f"Share this link with {name}. Amount: {amount}.")
        fallback = f"Checkout link ready for {name}: {amount}"
    elif kind == "paid":
        text = f":white_check_mark: Paid: {amount}{via}"
        if bank:
            extra.append(f"Bank: {bank}")
        extra.append(f"{requester} {name} has paid.")
        fallback = f"Paid: {amount}{via}"
    elif kind == "payment_failed":
        text = f":x: Payment failed: {bank or 'no message from the bank'}"
        extra.append(
            f"{requester} {name} can try again on the same checkout page, or you can cancel "
            "the request."
        )
        fallback = f"Payment failed for {amount}"
    elif kind == "rejected":
        reason = _safe(link.reject_reason, REASON_BUDGET) or "no reason given"
        text = f":no_entry: {requester} your request was rejected by {_user(link.decided_by)}."
        extra.append(f"Reason: {reason}")
        fallback = f"Rejected by {_user(link.decided_by)}"
    elif kind == "cancelled":
        text = f":no_entry_sign: Cancelled by {_user(link.cancelled_by)}."
        if link.checkout_url:
            extra.append(
                "If the customer already has the checkout link and pays anyway, "
                "this thread will say so."
            )
        fallback = f"Cancelled by {_user(link.cancelled_by)}"
    elif kind == "link_failed":
        message = _safe(link.gateway_message, MESSAGE_BUDGET) or "no message from XPay"
        approver = _user(link.decided_by) if link.decided_by else requester
        if _status(link) is Status.LINK_UNKNOWN:
            text = f":grey_question: {approver} {UNKNOWN_NOTE}"
            extra.append(f"XPay said: {message}")
        else:
            text = f":warning: {approver} Link creation failed: {message}"
        extra.append("Use Retry or Cancel on the request above.")
        fallback = "Link creation failed"
    elif kind == "paid_after_cancel":
        text = (
            f":warning: {requester} Paid after the request was cancelled: {amount}{via}. "
            "The money has moved; refund or fulfil the order as appropriate."
        )
        if bank:
            extra.append(f"Bank: {bank}")
        if link.cancelled_by:
            extra.append(f"It had been cancelled by {_user(link.cancelled_by)}.")
        fallback = f"Paid after cancel: {amount}{via}"
    elif kind == "amount_mismatch":
        details = details or {}
        reported = _safe(format_amount(details.get("amount"), details.get("currency")), 64)
        text = (
            f":warning: {requester} XPay reports a payment of {reported or 'an unknown amount'} "
            f"for this request of {amount}. The status is unchanged: check the payment in the "
            "XPay portal before fulfilling the order."
        )
        fallback = f"Payment amount differs: {reported} for {amount}"
    else:
        raise ValueError(f"unknown thread reply kind: {kind!r}")

    blocks: list[Block] = [_section("reply", text)]
    if extra:
        blocks.append(_context("reply_details", "\n".join(extra)))
    return _clip_mrkdwn(fallback, FALLBACK_MAX), _dicts(blocks)


# --- small texts --------------------------------------------------------------------------


def help_text(currencies: list[str]) -> str:
    """Usage for ``/paylink help`` (mrkdwn); examples use the currencies on offer."""
    currency_line = (
        [f"• `/paylink 5000 {currencies[-1]}`: amount and currency filled in"]
        if len(currencies) > 1
        else []
    )
    return "\n".join(
        [
            "*Paylink: XPay checkout links, approved in Slack*",
            "• `/paylink`: open the form for a new payment link",
            "• `/paylink 5000`: the same, with the amount filled in",
            *currency_line,
            "• `/paylink help`: this message",
            "",
            "*What happens next*",
            "1. The request is posted in the approval channel with Approve / Reject buttons.",
            "2. When an approver approves, the checkout link is created and posted in the "
            "request's thread: share it with the customer.",
            "3. When the customer pays (or the payment fails), the request's status changes and "
            "the thread says so.",
            "The customer's e-mail and phone are masked in the channel. Your recent links are "
            "on the app's Home tab.",
        ]
    )


def sent_for_approval_text(link: Link, permalink: str | None) -> str:
    """The ephemeral confirmation shown to the rep after the modal is submitted."""
    if permalink:
        where = _link(permalink, "View the request")
    else:
        where = f"Posted in {_channel(link.channel_id)}"
    return _clip_mrkdwn(
        f":outbox_tray: Sent for approval: *{_safe(link.reference, 64)}*, {_amount(link)} "
        f"for {_safe(link.customer_name, NAME_BUDGET)}. {where}. "
        "The checkout link will appear in the request's thread once it is approved.",
        SECTION_TEXT_MAX,
    )


# --- App Home -------------------------------------------------------------------------------


def _home_row(prefix: str, link: Link, permalink: str | None, *, show_requester: bool) -> Block:
    status = _status(link)
    text = (
        f"*{_safe(link.reference, 64)}* · {_amount(link)} · "
        f"{STATUS_EMOJI[status]} {status.label}\n{_safe(link.customer_name, 100)}"
    )
    if show_requester:
        text += f" · requested by {_user(link.requester_id)}"
    if link.created_at:
        text += f" · {_day(link.created_at)}"
    accessory = None
    if permalink and re.match(r"^https?://", permalink, re.IGNORECASE):
        accessory = ButtonElement(
            action_id=ACTION_OPEN_CARD,
            text="Open request",
            url=permalink,
            value=str(link.id),
        )
    return SectionBlock(
        block_id=f"{prefix}_{link.id}",
        text=MarkdownTextObject(text=_clip_mrkdwn(text, SECTION_TEXT_MAX)),
        accessory=accessory,
    )


def home_view(
    *,
    my_links: list[Link],
    waiting: list[Link],
    is_approver: bool,
    permalinks: dict[int, str],
    waiting_total: int | None = None,
) -> dict[str, Any]:
    """The App Home tab (``views.publish``): the user's recent links and, for approvers, the queue.

    At most :data:`HOME_LIST_MAX` rows per list, one section per link, so the view stays far
    under Slack's 100-block limit. ``waiting_total`` is how many requests wait in all (when
    ``waiting`` is only the first page of them); the rest are counted in a note.
    """
    waiting_total = len(waiting) if waiting_total is None else max(waiting_total, len(waiting))
    blocks: list[Block] = [
        HeaderBlock(block_id="home_title", text="Paylink"),
        _context("home_intro", "Type `/paylink` in any channel to request a payment link."),
    ]
    if is_approver:
        blocks.append(HeaderBlock(block_id="waiting_title", text="Waiting for your approval"))
        if waiting:
            blocks.extend(
                _home_row("waiting", link, permalinks.get(link.id), show_requester=True)
                for link in waiting[:HOME_LIST_MAX]
            )
            if waiting_total > HOME_LIST_MAX:
                blocks.append(
                    _context(
                        "waiting_more",
                        f"…and {waiting_total - HOME_LIST_MAX} more in the approval channel.",
                    )
                )
        else:
            blocks.append(_section("waiting_empty", "Nothing is waiting for you. :tada:"))
        blocks.append(DividerBlock(block_id="home_divider"))
    blocks.append(HeaderBlock(block_id="mine_title", text="Your recent links"))
    if my_links:
        blocks.extend(
            _home_row("mine", link, permalinks.get(link.id), show_requester=False)
            for link in my_links[:HOME_LIST_MAX]
        )
    else:
        blocks.append(
            _section(
                "mine_empty",
                "You have not requested any payment links yet. Type `/paylink` to start one.",
            )
        )
    return View(type="home", blocks=blocks).to_dict()
