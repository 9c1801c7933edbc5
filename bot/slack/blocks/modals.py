"""The two modals: the ``/paylink`` request form and the rejection reason."""

from __future__ import annotations

import functools
import json
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    CheckboxesElement,
    EmailInputElement,
    InputBlock,
    Option,
    PlainTextInputElement,
    StaticSelectElement,
    UrlInputElement,
)
from slack_sdk.models.views import View

from bot.config import Settings
from bot.links.policy import ApprovalPolicy
from bot.links.states import Status
from bot.links.tables import Link
from bot.payment_methods import method_label
from bot.slack.blocks.common import (
    NAME_BUDGET,
    OPTION_TEXT_MAX,
    REASON_BUDGET,
    STATUS_EMOJI,
    amount_text,
    channel_mention,
    clip,
    context,
    escape,
    mention,
    safe,
    section,
    slack_date,
    url_link,
)
from bot.slack.blocks.ids import FIELD_BLOCKS, ActionId, BlockId, CallbackId

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
            action_id=ActionId.INPUT,
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
            ApprovalPolicy.from_settings(settings).summary(currencies),
        )
    )
    view["private_metadata"] = json.dumps({"channel_id": channel_id})
    if amount:
        (block,) = (b for b in view["blocks"] if b["block_id"] == FIELD_BLOCKS["amount"])
        block["element"]["initial_value"] = clip(amount, 50)
    return view


# The modal opens in the ack's wake and building Block Kit models is the costly part of it, so
# what depends on settings (and the chosen currency) only is rendered once and kept as JSON;
# each modal gets its own copy.


@functools.lru_cache(maxsize=64)
def _request_view(
    currencies: tuple[str, ...],
    chosen: str,
    methods: tuple[str, ...],
    success: str | None,
    failure: str | None,
    policy: str,
) -> str:
    """The modal with no amount and no channel; ``policy`` is the approval policy's line
    for the offered currencies ("" when no threshold applies)."""
    currency_options = [Option(value=c, label=c) for c in currencies[:100]]
    prefilled: list[Block] = [
        _text_input(
            "amount",
            "Amount",
            optional=False,
            placeholder="5000 or 1500.50",
            max_length=20,
        ),
        *([context(BlockId.POLICY, f":scales: Approval: {escape(policy)}")] if policy else []),
        InputBlock(
            block_id=FIELD_BLOCKS["currency"],
            label="Currency",
            element=StaticSelectElement(
                action_id=ActionId.INPUT,
                placeholder="Currency",
                options=currency_options,
                initial_option=currency_options[currencies.index(chosen)],
            ),
        ),
    ]
    view = View(
        type="modal",
        callback_id=CallbackId.REQUEST,
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
    """The modal's blocks after the currency, which depend on settings only."""
    method_options = [
        Option(value=m, label=clip(method_label(m), OPTION_TEXT_MAX)) for m in methods
    ][:10]
    blocks: list[Block] = [
        _text_input("customer_name", "Customer name", optional=False, max_length=200),
        InputBlock(
            block_id=FIELD_BLOCKS["customer_email"],
            label="Customer e-mail",
            optional=True,
            element=EmailInputElement(action_id=ActionId.INPUT, placeholder="name@example.com"),
        ),
        _text_input(
            "customer_phone",
            "Customer phone",
            placeholder="03415682456",
            hint="Pakistani numbers like 03415682456 are fine",
            max_length=32,
        ),
        context(
            BlockId.CONTACT_HINT,
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
            element=CheckboxesElement(action_id=ActionId.INPUT, options=method_options),
        ),
        InputBlock(
            block_id=FIELD_BLOCKS["success_url"],
            label="Success URL",
            optional=True,
            hint="Where the customer lands after paying",
            element=UrlInputElement(action_id=ActionId.INPUT, initial_value=success or None),
        ),
        InputBlock(
            block_id=FIELD_BLOCKS["failure_url"],
            label="Failure URL",
            optional=True,
            hint="Where the customer lands when the payment fails",
            element=UrlInputElement(action_id=ActionId.INPUT, initial_value=failure or None),
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
        state = (values.get(block_id) or {}).get(ActionId.INPUT) or {}
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


# --- the duplicate guard --------------------------------------------------------------------

PRIVATE_METADATA_MAX = 3000  # Slack's limit, in characters


def duplicate_metadata(
    fields: dict[str, Any], channel_id: str | None, view_id: str | None
) -> str | None:
    """What "Create anyway" needs, for the guard's view's ``private_metadata``: the form's
    fields as submitted (non-empty ones), its channel and its view id (which makes the
    request: one however often Slack sends the confirmation). None when it does not fit
    Slack's 3,000 characters."""
    held = {
        "view": view_id,
        "channel": channel_id,
        "fields": {k: v for k, v in fields.items() if v},
    }
    text = json.dumps(held, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= PRIVATE_METADATA_MAX else None


def read_duplicate_metadata(
    view: dict[str, Any],
) -> tuple[dict[str, Any], str | None, str | None] | None:
    """``(fields, channel id, form view id)`` from the guard's view; None if unreadable."""
    try:
        held = json.loads((view or {}).get("private_metadata") or "")
        fields = held["fields"]
    except (TypeError, ValueError, KeyError):
        return None
    if not isinstance(fields, dict):
        return None
    channel, view_id = held.get("channel"), held.get("view")
    return (
        fields,
        channel if isinstance(channel, str) else None,
        view_id if isinstance(view_id, str) else None,
    )


def duplicate_modal(earlier: Link, *, permalink: str | None, metadata: str) -> dict[str, Any]:
    """The duplicate guard's view, pushed over the request form: the earlier request for
    the same sum and customer. Its submit, "Create anyway", makes the new request; its
    close, "Go back", returns to the form as it was filled (Slack keeps the state of a view
    another was pushed over)."""
    status = Status(earlier.status)
    reference = safe(earlier.reference, 64)
    where = (
        url_link(permalink, earlier.reference)
        if permalink
        else f"{reference} (in {channel_mention(earlier.channel_id)})"
    )
    summary = (
        ":warning: *A request like this one was made recently*: the same amount and the same "
        "customer e-mail or phone."
    )
    details = (
        f"*{where}* · {amount_text(earlier)} for {safe(earlier.customer_name, NAME_BUDGET)}\n"
        f"Requested by {mention(earlier.requester_id)} {slack_date(earlier.created_at)}\n"
        f"*Status:* {STATUS_EMOJI[status]} {status.label}"
    )
    view = View(
        type="modal",
        callback_id=CallbackId.DUPLICATE,
        title="Possible duplicate",
        submit="Create anyway",
        close="Go back",
        private_metadata=metadata,
        blocks=[
            section(BlockId.SUMMARY, summary),
            section(BlockId.EARLIER, details),
            context(
                BlockId.DUPLICATE_HINT,
                "*Create anyway* sends yours for approval as well. *Go back* returns to your "
                "form as you filled it.",
            ),
        ],
    )
    return view.to_dict()


def duplicate_refused_modal(message: str) -> dict[str, Any]:
    """Shown in place of the guard's view when "Create anyway" cannot make the request
    (the form no longer passes, its order reference was taken meanwhile): "Go back"
    returns to the form."""
    return View(
        type="modal",
        callback_id=CallbackId.DUPLICATE,
        title="Possible duplicate",
        close="Go back",
        blocks=[section(BlockId.SUMMARY, f":warning: {escape(message)}")],
    ).to_dict()


# --- the reject modal ---------------------------------------------------------------------


def reject_modal(link: Link) -> dict[str, Any]:
    """The "Reject request" modal; ``private_metadata`` is the link id, the reason is required."""
    summary = (
        f"Reject *{safe(link.reference, 64)}*: {amount_text(link)} for "
        f"{safe(link.customer_name, NAME_BUDGET)}, requested by {mention(link.requester_id)}?"
    )
    view = View(
        type="modal",
        callback_id=CallbackId.REJECT,
        title="Reject request",
        submit="Reject",
        close="Cancel",
        private_metadata=str(link.id),
        blocks=[
            section(BlockId.SUMMARY, summary),
            InputBlock(
                block_id=BlockId.REASON,
                label="Reason",
                hint="The requester sees this on the request and in its thread.",
                element=PlainTextInputElement(
                    action_id=ActionId.INPUT, multiline=True, max_length=REASON_BUDGET
                ),
            ),
        ],
    )
    return view.to_dict()


def read_reason(view: dict[str, Any]) -> str:
    """The reason typed in the reject modal's ``view_submission``; "" when none."""
    values = ((view or {}).get("state") or {}).get("values") or {}
    return ((values.get(BlockId.REASON) or {}).get(ActionId.INPUT) or {}).get("value") or ""
