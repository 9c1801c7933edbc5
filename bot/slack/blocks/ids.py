"""The ids our Slack payloads carry and the listeners match on, one place for each."""

from __future__ import annotations

from enum import StrEnum

from bot.checkout import FIELDS


class CallbackId(StrEnum):
    """A modal's ``callback_id``: which ``view_submission`` listener gets it."""

    REQUEST = "paylink_request"
    REJECT = "paylink_reject"


class ActionId(StrEnum):
    """An element's ``action_id``: which ``block_actions`` listener gets a click."""

    APPROVE = "paylink_approve"
    REJECT = "paylink_reject_open"  # opens the reject modal; the modal's submit rejects
    RETRY = "paylink_retry"
    CANCEL = "paylink_cancel"
    RENEW = "paylink_renew"  # an expired link: a new checkout link for the same request
    OPEN_CARD = "paylink_open_card"  # URL buttons: Slack still sends the click, to be acked
    INPUT = "value"  # the element inside every input block of the modals


class BlockId(StrEnum):
    """A block's ``block_id``: unique within its message or view."""

    # The card.
    TITLE = "title"
    SANDBOX = "sandbox"
    DETAILS = "details"
    STATUS = "status"
    NO_APPROVERS = "no_approvers"
    ACTIONS = "paylink_actions"
    FOOTER = "footer"
    # Thread replies.
    REPLY = "reply"
    REPLY_DETAILS = "reply_details"
    # The modals (their input fields are in FIELD_BLOCKS).
    CONTACT_HINT = "contact_hint"
    SUMMARY = "summary"
    REASON = "reason"
    # App Home; each row's id is its list's prefix and the link id.
    HOME_TITLE = "home_title"
    HOME_INTRO = "home_intro"
    HOME_DIVIDER = "home_divider"
    WAITING = "waiting"
    WAITING_TITLE = "waiting_title"
    WAITING_MORE = "waiting_more"
    WAITING_EMPTY = "waiting_empty"
    MINE = "mine"
    MINE_TITLE = "mine_title"
    MINE_EMPTY = "mine_empty"
    EXPIRING = "expiring"
    EXPIRING_TITLE = "expiring_title"


#: Checkout field name (as :func:`bot.checkout.parse_checkout` expects it) → modal block_id.
#: Keys are also the keys of ``CheckoutInvalid.errors``, so errors map straight onto blocks.
FIELD_BLOCKS: dict[str, str] = {name: name for name in FIELDS}
