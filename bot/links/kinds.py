"""Names the link service shares with Slack, the web endpoints and the job queue."""

from __future__ import annotations

from enum import StrEnum


class ThreadKind(StrEnum):
    """A reply the bot posts in a request's thread; each has one renderer in Slack."""

    LINK_READY = "link_ready"
    PAID = "paid"
    PAYMENT_FAILED = "payment_failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    LINK_FAILED = "link_failed"
    PAID_AFTER_CANCEL = "paid_after_cancel"
    AMOUNT_MISMATCH = "amount_mismatch"
    MAILED = "mailed"  # the link was e-mailed to the customer
    MAIL_FAILED = "mail_failed"  # … or the mail server did not take it
    FIRST_APPROVAL = "first_approval"  # one of two approvers approved: waiting for the other
    REMIND_APPROVERS = "remind_approvers"  # a request still waits for approval
    REMIND_REP = "remind_rep"  # a link still waits for payment
    EXPIRED = "expired"  # the checkout link expired unpaid: Renew is offered
    LINK_RENEWED = "link_renewed"  # Renew's new checkout link (the old one may still work)
    DOUBLE_PAYMENT = "double_payment"  # a second of the request's links was paid: refund


class JobKind(StrEnum):
    """A queued job: written in the transaction that caused it, carried out at least once."""

    CARD = "card"  # post or update the request's card in Slack
    THREAD = "thread"  # post a reply in the card's thread
    CREATE = "create"  # call XPay for this link
    PAYMENT = "payment"  # apply a verified payment webhook to the link
    DECISION = "decision"  # carry out a button click (approve, retry, cancel)
    CONFIRM = "confirm"  # ask XPay about a payment a webhook reported without its amount
    MAIL = "mail"  # e-mail the checkout link to the customer
    QR = "qr"  # post a QR code image of the checkout link in the thread
    REMIND = "remind"  # a timer: remind whoever the link waits for, if it still waits
    DIGEST = "digest"  # post the daily digest (a job of no link)
    EXPIRE = "expire"  # a timer: the checkout link expires if still unpaid (due at expiry)


class WebhookOutcome(StrEnum):
    """What a payment webhook did (the JSON answer's ``outcome`` and a metric label)."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    STALE = "stale"
    AMOUNT_MISMATCH = "amount_mismatch"
    UNKNOWN_INTENT = "unknown_intent"
    QUEUED = "queued"  # stored for the worker, which applies it
    CONFIRMING = "confirming"  # paid without amount or currency: XPay is asked first
    DOUBLE_PAYMENT = "double_payment"  # another link of a Paid request was paid as well


class Click(StrEnum):
    """A button click the service decides."""

    APPROVE = "approve"
    RETRY = "retry"
    CANCEL = "cancel"
    RENEW = "renew"
