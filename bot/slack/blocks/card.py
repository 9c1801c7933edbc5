"""The request card in the approval channel: details, status and the buttons that fit it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.checkout import mask_email, mask_phone
from bot.links.policy import POLICY_ACTOR, TWO, threshold_note
from bot.links.states import Status
from bot.links.tables import Link
from bot.slack.blocks.common import (
    EXPIRED_LINK_NOTE,
    FALLBACK_MAX,
    FIELD_TEXT_MAX,
    HEADER_MAX,
    MESSAGE_BUDGET,
    NAME_BUDGET,
    OLD_LINK_NOTE,
    REASON_BUDGET,
    SANDBOX_NOTE,
    SHIPPING_BUDGET,
    STATUS_EMOJI,
    UNKNOWN_NOTE,
    amount_text,
    clip,
    clip_mrkdwn,
    context,
    escape,
    mention,
    methods_text,
    paid_method,
    safe,
    section,
    slack_date,
    test_prefix,
    to_dicts,
)
from bot.slack.blocks.finding import contact_button
from bot.slack.blocks.ids import ActionId, BlockId
from bot.urls import is_http_url

NO_APPROVERS_NOTE = (
    "No approvers are configured (PAYLINK_APPROVERS), so nobody can approve this request."
)


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


def _approval_lines(link: Link, status: Status, approvals: Sequence[str]) -> list[str]:
    """Who approved, or what the approval policy decided or still waits for."""
    note = escape(threshold_note(link.approvals_needed, link.policy_threshold, link.currency))
    if link.decided_by == POLICY_ACTOR:
        return [f"Approved automatically: {note}"]
    when = slack_date(link.decided_at)
    if link.approvals_needed == TWO:
        if status is Status.AWAITING_APPROVAL:
            if approvals:
                return [
                    f"Approved by {mention(approvals[0])} · waiting for a second approver "
                    f"({note} needs two)"
                ]
            return [f"{note} needs two approvers, neither of them the requester"]
        if link.decided_by and len(approvals) > 1:
            return [
                f"Approved by {mention(approvals[0])} and {mention(approvals[1])}"
                + (f" {when}" if when else "")
            ]
    if link.decided_by:
        return [f"Approved by {mention(link.decided_by)}" + (f" {when}" if when else "")]
    return []


def _status_text(link: Link, status: Status, approvals: Sequence[str]) -> str:
    lines = [f"*Status:* {STATUS_EMOJI[status]} {status.label}"]
    if status is not Status.REJECTED:
        lines += _approval_lines(link, status, approvals)
    if status is Status.REJECTED:
        when = slack_date(link.decided_at)
        line = f"Rejected by {mention(link.decided_by)}" + (f" {when}" if when else "")
        if link.reject_reason:
            line += f": {safe(link.reject_reason, REASON_BUDGET)}"
        lines.append(line)
    elif status is Status.LINK_FAILED:
        message = safe(link.gateway_message, MESSAGE_BUDGET) or "no message from XPay"
        lines.append(f"Link creation failed: {message}")
    elif status is Status.LINK_UNKNOWN:
        lines.append(UNKNOWN_NOTE)
        if link.gateway_message:
            lines.append(f"XPay said: {safe(link.gateway_message, MESSAGE_BUDGET)}")
    elif status is Status.PAID:
        method = paid_method(link)
        lines.append("Paid" + (f" via {method}" if method else ""))
        if link.cancelled_by:
            lines.append(
                f":warning: Paid even though {mention(link.cancelled_by)} had cancelled it: "
                "the money has moved."
            )
    elif status is Status.PAYMENT_FAILED:
        message = safe(link.bank_message, MESSAGE_BUDGET) or "no message from the bank"
        lines.append(f"Payment failed: {message}")
        lines.append("The customer can try again on the same checkout page.")
    elif status is Status.CANCELLED:
        lines.append(f"Cancelled by {mention(link.cancelled_by)}")
    elif status is Status.EXPIRED:
        lines.append(
            f"The checkout link expired {slack_date(link.expires_at)} without payment. Renew "
            "creates a new one for the same request."
        )
        lines.append(EXPIRED_LINK_NOTE)
    if status in (Status.AWAITING_PAYMENT, Status.PAYMENT_FAILED):
        lines += _checkout_lines(link)
    return "\n".join(lines)


def _checkout_lines(link: Link) -> list[str]:
    """When the checkout link expires, and after a renewal which one is current."""
    lines = []
    if link.checkout_reference and link.checkout_reference != link.reference:
        lines.append(f"Renewed: the current checkout link is {safe(link.checkout_reference, 64)}.")
        lines.append(OLD_LINK_NOTE)
    if link.expires_at:
        lines.append(f"The checkout link expires {slack_date(link.expires_at)}.")
    return lines


def _cancel_button(link: Link) -> ButtonElement:
    return ButtonElement(
        action_id=ActionId.CANCEL,
        text="Cancel",
        value=str(link.id),
        confirm=ConfirmObject(
            title="Cancel this payment link?",
            # plain_text: the reference is user-supplied and a confirm's text defaults to mrkdwn
            text=PlainTextObject(
                text=clip(f"{link.reference}: the request will be marked as cancelled.", 300),
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
            ButtonElement(action_id=ActionId.APPROVE, text="Approve", value=value, style="primary"),
            ButtonElement(action_id=ActionId.REJECT, text="Reject", value=value, style="danger"),
            _cancel_button(link),
        ]
    if status in (Status.LINK_FAILED, Status.LINK_UNKNOWN):
        return [
            ButtonElement(
                action_id=ActionId.RETRY,
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
    if status is Status.EXPIRED:
        return [
            ButtonElement(action_id=ActionId.RENEW, text="Renew", value=value, style="primary"),
            _cancel_button(link),
        ]
    if status in (Status.AWAITING_PAYMENT, Status.PAYMENT_FAILED):
        buttons: list[ButtonElement] = []
        if is_http_url(link.checkout_url):
            buttons.append(
                ButtonElement(
                    action_id=ActionId.OPEN_CARD,
                    text="Open checkout page",
                    url=link.checkout_url,
                    value=value,
                )
            )
        buttons.append(_cancel_button(link))
        return buttons
    return []


def card(
    link: Link,
    *,
    approvers_configured: bool = True,
    store: str | None = None,
    approvals: Sequence[str] = (),
) -> tuple[str, list[dict[str, Any]]]:
    """The request card in the approval channel: ``(fallback text, blocks)``; ``store``
    names the link's XPay store (when its workspace has several).

    Used for ``chat.postMessage`` and every later ``chat.update``; the buttons follow the status.
    ``approvals``: who approved a request that needs two approvers, first first.
    """
    status = Status(link.status)
    reference = safe(link.reference, 64)
    name = safe(link.customer_name, NAME_BUDGET)
    fields = [
        f"*Requested by*\n{mention(link.requester_id)}",
        f"*Amount*\n{amount_text(link)}",
        f"*Customer*\n{name}",
    ]
    if link.customer_email:
        fields.append(f"*E-mail*\n{escape(mask_email(link.customer_email))}")
    if link.customer_phone:
        fields.append(f"*Phone*\n{escape(mask_phone(link.customer_phone))}")
    fields.append(f"*Order reference*\n{reference}")
    fields.append(f"*Methods*\n{escape(methods_text(link.payment_methods))}")
    shipping = _shipping_line(link.shipping)
    if shipping:
        fields.append(f"*Shipping*\n{safe(shipping, SHIPPING_BUDGET)}")
    if store:
        fields.append(f"*Store*\n{safe(store, NAME_BUDGET)}")

    blocks: list[Block] = [
        HeaderBlock(
            block_id=BlockId.TITLE,
            text=PlainTextObject(
                text=clip(f"Payment link request · {link.reference}", HEADER_MAX), emoji=False
            ),
        ),
    ]
    if link.sandbox:
        blocks.append(context(BlockId.SANDBOX, SANDBOX_NOTE))
    blocks += [
        SectionBlock(
            block_id=BlockId.DETAILS,
            fields=[MarkdownTextObject(text=clip_mrkdwn(f, FIELD_TEXT_MAX)) for f in fields],
        ),
        section(BlockId.STATUS, _status_text(link, status, approvals)),
    ]
    if status is Status.AWAITING_APPROVAL and not approvers_configured:
        blocks.append(context(BlockId.NO_APPROVERS, f":warning: {NO_APPROVERS_NOTE}"))
    buttons = _buttons(link, status)
    if link.customer_email or link.customer_phone:
        buttons.append(contact_button(link))
    if buttons:
        blocks.append(ActionsBlock(block_id=BlockId.ACTIONS, elements=buttons))
    footer = f"Request #{link.id}"
    if link.created_at:
        footer += f" · created {slack_date(link.created_at)}"
    blocks.append(context(BlockId.FOOTER, footer))

    fallback = clip_mrkdwn(
        f"{test_prefix(link)}Payment link request {reference}: {amount_text(link)} for {name} "
        f"({status.label})",
        FALLBACK_MAX,
    )
    return fallback, to_dicts(blocks)
