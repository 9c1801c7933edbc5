"""Replies in a request card's thread: one renderer per :class:`ThreadKind`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement

from bot.links.kinds import ThreadKind
from bot.links.policy import TWO, threshold_note
from bot.links.states import Status
from bot.links.tables import Link
from bot.slack.blocks.common import (
    EXPIRED_LINK_NOTE,
    FALLBACK_MAX,
    MESSAGE_BUDGET,
    NAME_BUDGET,
    OLD_LINK_NOTE,
    REASON_BUDGET,
    SANDBOX_NOTE,
    UNKNOWN_NOTE,
    amount_text,
    approver_mention,
    clip_mrkdwn,
    context,
    escape,
    format_amount,
    mention,
    paid_method,
    safe,
    section,
    test_prefix,
    to_dicts,
    url_link,
    waited_text,
)
from bot.slack.blocks.ids import ActionId, BlockId


@dataclass(frozen=True)
class _Reply:
    text: str  # the reply's first line, in a section
    fallback: str  # the notification text
    details: list[str] = field(default_factory=list)  # further lines, in a context block


def _name(link: Link) -> str:
    return safe(link.customer_name, NAME_BUDGET)


def _via(link: Link) -> str:
    method = paid_method(link)
    return f" via {method}" if method else ""


def _bank(link: Link) -> str:
    return safe(link.bank_message, MESSAGE_BUDGET)


def _link_ready(link: Link, details: dict[str, Any]) -> _Reply:
    url = url_link(link.checkout_url) or "(XPay returned no address)"
    return _Reply(
        text=f":link: {mention(link.requester_id)} the checkout link is ready: {url}",
        details=[f"Share this link with {_name(link)}. Amount: {amount_text(link)}."],
        fallback=f"Checkout link ready for {_name(link)}: {amount_text(link)}",
    )


def _bank_lines(link: Link) -> list[str]:
    bank = _bank(link)
    return [f"Bank: {bank}"] if bank else []


def _earlier_link(details: dict[str, Any]) -> list[str]:
    """Paid on a checkout link a renewal had replaced: which one."""
    if "reference" not in details:
        return []
    return [f"Paid on the earlier checkout link {safe(details['reference'], 64)}."]


def _paid(link: Link, details: dict[str, Any]) -> _Reply:
    return _Reply(
        text=f":white_check_mark: Paid: {amount_text(link)}{_via(link)}",
        details=[
            *_bank_lines(link),
            *_earlier_link(details),
            f"{mention(link.requester_id)} {_name(link)} has paid.",
        ],
        fallback=f"Paid: {amount_text(link)}{_via(link)}",
    )


def _payment_failed(link: Link, details: dict[str, Any]) -> _Reply:
    return _Reply(
        text=f":x: Payment failed: {_bank(link) or 'no message from the bank'}",
        details=[
            f"{mention(link.requester_id)} {_name(link)} can try again on the same checkout "
            "page, or you can cancel the request."
        ],
        fallback=f"Payment failed for {amount_text(link)}",
    )


def _rejected(link: Link, details: dict[str, Any]) -> _Reply:
    reason = safe(link.reject_reason, REASON_BUDGET) or "no reason given"
    approver = mention(link.decided_by)
    return _Reply(
        text=f":no_entry: {mention(link.requester_id)} your request was rejected by {approver}.",
        details=[f"Reason: {reason}"],
        fallback=f"Rejected by {approver}",
    )


def _cancelled(link: Link, details: dict[str, Any]) -> _Reply:
    by = mention(link.cancelled_by)
    note = "If the customer already has the checkout link and pays anyway, this thread will say so."
    return _Reply(
        text=f":no_entry_sign: Cancelled by {by}.",
        details=[note] if link.checkout_url else [],
        fallback=f"Cancelled by {by}",
    )


def _link_failed(link: Link, details: dict[str, Any]) -> _Reply:
    message = safe(link.gateway_message, MESSAGE_BUDGET) or "no message from XPay"
    # The approver clicked and is waiting for the link; without one (a CLI create), the rep.
    who = mention(link.decided_by or link.requester_id)
    if Status(link.status) is Status.LINK_UNKNOWN:
        text = f":grey_question: {who} {UNKNOWN_NOTE}"
        lines = [f"XPay said: {message}"]
    else:
        text = f":warning: {who} Link creation failed: {message}"
        lines = []
    return _Reply(
        text=text,
        details=[*lines, "Use Retry or Cancel on the request above."],
        fallback="Link creation failed",
    )


def _paid_after_cancel(link: Link, details: dict[str, Any]) -> _Reply:
    paid = f"{amount_text(link)}{_via(link)}"
    lines = [*_bank_lines(link), *_earlier_link(details)]
    if link.cancelled_by:
        lines.append(f"It had been cancelled by {mention(link.cancelled_by)}.")
    return _Reply(
        text=(
            f":warning: {mention(link.requester_id)} Paid after the request was cancelled: "
            f"{paid}. The money has moved; refund or fulfil the order as appropriate."
        ),
        details=lines,
        fallback=f"Paid after cancel: {paid}",
    )


def _amount_mismatch(link: Link, details: dict[str, Any]) -> _Reply:
    reported = safe(format_amount(details.get("amount"), details.get("currency")), 64)
    return _Reply(
        text=(
            f":warning: {mention(link.requester_id)} XPay reports a payment of "
            f"{reported or 'an unknown amount'} for this request of {amount_text(link)}. The "
            "status is unchanged: check the payment in the XPay portal before fulfilling the "
            "order."
        ),
        fallback=f"Payment amount differs: {reported} for {amount_text(link)}",
    )


def _mailed(link: Link, details: dict[str, Any]) -> _Reply:
    to, by = safe(details.get("to"), NAME_BUDGET), mention(details.get("by"))
    reference = safe(details.get("reference"), 64)  # replies queued before it was noted: none
    which = f"The checkout link {reference}" if reference else "The checkout link"
    return _Reply(
        text=f":email: {which} was sent to {to} by {by}.",
        fallback=f"Checkout link e-mailed to {to}",
    )


def _mail_failed(link: Link, details: dict[str, Any]) -> _Reply:
    to, by = safe(details.get("to"), NAME_BUDGET), mention(details.get("by"))
    reason = safe(details.get("reason"), MESSAGE_BUDGET) or "no reason given"
    reference = safe(details.get("reference"), 64)
    which = f"The checkout link {reference}" if reference else "The checkout link"
    return _Reply(
        text=f":warning: {by} {which} could not be e-mailed to {to}: {reason}",
        details=[
            "Nothing was retried. Share the link another way, or try Send to customer again "
            "once the mail server is fixed."
        ],
        fallback=f"E-mailing the checkout link to {to} failed",
    )


def _first_approval(link: Link, details: dict[str, Any]) -> _Reply:
    by = mention(details.get("approver"))
    note = escape(threshold_note(TWO, link.policy_threshold, link.currency)) or "This request"
    return _Reply(
        text=f":ballot_box_with_check: Approved by {by}: waiting for a second approver.",
        details=[
            f"{note} needs two approvers, neither of them the requester: the next approver's "
            "Approve creates the link."
        ],
        fallback=f"Approved by {by}: waiting for a second approver",
    )


def _remind_approvers(link: Link, details: dict[str, Any]) -> _Reply:
    waited = waited_text(details.get("waited", 0))
    who = " ".join(approver_mention(str(a)) for a in details.get("approvers") or [])
    approved = ", ".join(mention(str(a)) for a in details.get("approved_by") or [])
    awaited = "a second approver" if approved else "approval"
    first = [f"Approved by {approved}: one more approval creates the link."] if approved else []
    return _Reply(
        text=(
            f":bell: {who} this request has waited {waited} for {awaited}: "
            f"{amount_text(link)} for {_name(link)}."
        ),
        details=[
            *first,
            f"Requested by {mention(link.requester_id)}. Approve or reject it above.",
        ],
        fallback=f"Reminder: a request of {amount_text(link)} has waited {waited} for {awaited}",
    )


def _remind_rep(link: Link, details: dict[str, Any]) -> _Reply:
    waited = waited_text(details.get("waited", 0))
    # The reply keeps the checkout link it was about (reminders queued before they said
    # which show the link's current one).
    url = url_link(details.get("url") or link.checkout_url) or "(no address)"
    reference = details.get("reference")
    renewal = f" {safe(reference, 64)}" if reference and reference != link.reference else ""
    return _Reply(
        text=(
            f":bell: {mention(link.requester_id)} the checkout link{renewal} has waited "
            f"{waited} for payment: {url}"
        ),
        details=[
            f"{_name(link)} has not paid {amount_text(link)} yet. Send the link again, or "
            "cancel the request if it is no longer needed."
        ],
        fallback=f"Reminder: {amount_text(link)} unpaid after {waited}",
    )


def _expired(link: Link, details: dict[str, Any]) -> _Reply:
    reference = safe(details.get("reference") or link.checkout_reference or link.reference, 64)
    return _Reply(
        text=(
            f":hourglass: {mention(link.requester_id)} The checkout link {reference} expired "
            "without payment. Renew on the request above creates a new one."
        ),
        details=[EXPIRED_LINK_NOTE],
        fallback=f"Checkout link expired: {amount_text(link)} for {_name(link)}",
    )


def _link_renewed(link: Link, details: dict[str, Any]) -> _Reply:
    url = url_link(details.get("url")) or "(XPay returned no address)"
    reference = safe(details.get("reference"), 64)
    return _Reply(
        text=(
            f":link: {mention(link.requester_id)} the new checkout link is ready "
            f"(reference {reference}): {url}"
        ),
        details=[
            f"Share this link with {_name(link)}. Amount: {amount_text(link)}.",
            OLD_LINK_NOTE,
        ],
        fallback=f"New checkout link ready for {_name(link)}: {amount_text(link)}",
    )


def _double_payment(link: Link, details: dict[str, Any]) -> _Reply:
    first, second = safe(details.get("first"), 64), safe(details.get("second"), 64)
    return _Reply(
        text=(
            f":rotating_light: {mention(link.requester_id)} Double payment: {amount_text(link)} "
            f"was paid on {first} and again on {second}. Refund one of them in the XPay portal."
        ),
        details=["The request stays Paid."],
        fallback=f"Double payment: {amount_text(link)} paid on {first} and {second}: refund one",
    )


_RENDERERS: dict[ThreadKind, Callable[[Link, dict[str, Any]], _Reply]] = {
    ThreadKind.LINK_READY: _link_ready,
    ThreadKind.PAID: _paid,
    ThreadKind.PAYMENT_FAILED: _payment_failed,
    ThreadKind.REJECTED: _rejected,
    ThreadKind.CANCELLED: _cancelled,
    ThreadKind.LINK_FAILED: _link_failed,
    ThreadKind.PAID_AFTER_CANCEL: _paid_after_cancel,
    ThreadKind.AMOUNT_MISMATCH: _amount_mismatch,
    ThreadKind.MAILED: _mailed,
    ThreadKind.MAIL_FAILED: _mail_failed,
    ThreadKind.FIRST_APPROVAL: _first_approval,
    ThreadKind.REMIND_APPROVERS: _remind_approvers,
    ThreadKind.REMIND_REP: _remind_rep,
    ThreadKind.EXPIRED: _expired,
    ThreadKind.LINK_RENEWED: _link_renewed,
    ThreadKind.DOUBLE_PAYMENT: _double_payment,
}

#: Every kind of thread reply there is a renderer for.
THREAD_KINDS = frozenset(_RENDERERS)

# The replies that show the link or a payment: on a sandbox link, these say it is a test.
_SHOW_MONEY = frozenset(
    {
        ThreadKind.LINK_READY,
        ThreadKind.PAID,
        ThreadKind.PAYMENT_FAILED,
        ThreadKind.PAID_AFTER_CANCEL,
        ThreadKind.AMOUNT_MISMATCH,
        ThreadKind.REMIND_REP,
        ThreadKind.LINK_RENEWED,
        ThreadKind.DOUBLE_PAYMENT,
    }
)


# The replies that bring a checkout link: the first, and each renewal's.
_OFFER_SEND = frozenset({ThreadKind.LINK_READY, ThreadKind.LINK_RENEWED})


def thread_reply(
    link: Link,
    kind: ThreadKind | str,
    details: dict[str, Any] | None = None,
    *,
    mail: bool = False,
) -> tuple[str, list[dict[str, Any]]]:
    """A reply in the card's thread: ``(fallback text, blocks)``.

    ``details`` is the reply's payload; an amount mismatch reads the ``amount`` and
    ``currency`` XPay reported from it, an e-mail's notes who sent it (``by``), to which
    masked address (``to``) and why it failed (``reason``). ``mail``: links can be e-mailed
    (PAYLINK_SMTP_URL), so the reply bringing a checkout link (the first or a renewal's) has a
    "Send to customer" button when the customer has an e-mail address. A ``kind`` that is not a :class:`ThreadKind` raises ValueError.
    """
    kind = ThreadKind(kind)
    reply = _RENDERERS[kind](link, details or {})
    lines, fallback = reply.details, reply.fallback
    if link.sandbox and kind in _SHOW_MONEY:
        lines, fallback = [SANDBOX_NOTE, *lines], test_prefix(link) + fallback
    blocks: list[Block] = [section(BlockId.REPLY, reply.text)]
    if lines:
        blocks.append(context(BlockId.REPLY_DETAILS, "\n".join(lines)))
    if mail and kind in _OFFER_SEND and link.customer_email and link.checkout_url:
        blocks.append(
            ActionsBlock(
                block_id=BlockId.REPLY_ACTIONS,
                elements=[
                    ButtonElement(
                        text="Send to customer",
                        action_id=ActionId.SEND_TO_CUSTOMER,
                        value=str(link.id),
                    )
                ],
            )
        )
    return clip_mrkdwn(fallback, FALLBACK_MAX), to_dicts(blocks)
