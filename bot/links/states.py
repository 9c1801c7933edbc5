"""Link statuses and the moves allowed between them."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    REJECTED = "rejected"
    CREATING_LINK = "creating_link"
    LINK_FAILED = "link_failed"
    LINK_UNKNOWN = "link_unknown"
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    PAYMENT_FAILED = "payment_failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def label(self) -> str:
        """The label people see in Slack and the CLI."""
        return LABELS[self]

    @property
    def final(self) -> bool:
        """No further move is possible."""
        return not TRANSITIONS[self]


LABELS = {
    Status.AWAITING_APPROVAL: "Awaiting approval",
    Status.REJECTED: "Rejected",
    Status.CREATING_LINK: "Creating link",
    Status.LINK_FAILED: "Link creation failed",
    Status.LINK_UNKNOWN: "Link creation unconfirmed",
    Status.AWAITING_PAYMENT: "Awaiting payment",
    Status.PAID: "Paid",
    Status.PAYMENT_FAILED: "Payment failed",
    Status.CANCELLED: "Cancelled",
    Status.EXPIRED: "Expired",
}

#: What every surface showing a link made on the sandbox gateway says about it.
SANDBOX_LABEL = "TEST — sandbox, no real money"

# Forward-only. A failed payment can still be paid (the customer tries again on the same
# page), and a cancelled link that was paid anyway must show Paid: the money moved.
# The one way back is Renew's: Expired → Creating link → Awaiting payment, with a new XPay
# link. The earlier one cannot be voided, so a payment on it still counts: a link being
# renewed (Creating link, or its creation failed) or expired can still become Paid.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.AWAITING_APPROVAL: frozenset({Status.CREATING_LINK, Status.REJECTED, Status.CANCELLED}),
    Status.CREATING_LINK: frozenset(
        {Status.AWAITING_PAYMENT, Status.LINK_FAILED, Status.LINK_UNKNOWN, Status.PAID}
    ),
    Status.LINK_FAILED: frozenset({Status.CREATING_LINK, Status.CANCELLED, Status.PAID}),
    Status.LINK_UNKNOWN: frozenset({Status.CREATING_LINK, Status.CANCELLED, Status.PAID}),
    Status.AWAITING_PAYMENT: frozenset(
        {Status.PAID, Status.PAYMENT_FAILED, Status.CANCELLED, Status.EXPIRED}
    ),
    Status.PAYMENT_FAILED: frozenset({Status.PAID, Status.CANCELLED, Status.EXPIRED}),
    Status.EXPIRED: frozenset({Status.CREATING_LINK, Status.PAID, Status.CANCELLED}),
    Status.CANCELLED: frozenset({Status.PAID}),
    Status.PAID: frozenset(),
    Status.REJECTED: frozenset(),
}

CANCELLABLE = frozenset(s for s, targets in TRANSITIONS.items() if Status.CANCELLED in targets)
# Where a payment on one of the link's checkout links moves it to Paid (every status whose
# link may exist at XPay, the creation states through a renewal).
PAYABLE = frozenset(s for s, targets in TRANSITIONS.items() if Status.PAID in targets)
# A link awaiting payment expires: a failed payment too (the customer could try again).
EXPIRING = frozenset(s for s, targets in TRANSITIONS.items() if Status.EXPIRED in targets)

#: The statuses of a request the duplicate guard counts: all but those that ended it unpaid
#: (Rejected, Cancelled, Expired). Listed rather than excluded, so that a status added later
#: is not counted until someone decides it should be.
LIVE = (
    Status.AWAITING_APPROVAL,
    Status.CREATING_LINK,
    Status.LINK_FAILED,
    Status.LINK_UNKNOWN,
    Status.AWAITING_PAYMENT,
    Status.PAID,
    Status.PAYMENT_FAILED,
)


def can_move(src: Status, dst: Status) -> bool:
    """True when ``src → dst`` is a legal move."""
    return dst in TRANSITIONS[src]
