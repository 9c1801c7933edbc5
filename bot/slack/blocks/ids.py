"""The ids our Slack payloads carry and the listeners match on, one place for each."""

from __future__ import annotations

from enum import StrEnum

from bot.checkout import FIELDS


class CallbackId(StrEnum):
    """A modal's ``callback_id``: which ``view_submission`` listener gets it."""

    REQUEST = "paylink_request"
    REJECT = "paylink_reject"
    SEARCH = "paylink_search"  # App Home's search modal


class ActionId(StrEnum):
    """An element's ``action_id``: which ``block_actions`` listener gets a click."""

    APPROVE = "paylink_approve"
    REJECT = "paylink_reject_open"  # opens the reject modal; the modal's submit rejects
    RETRY = "paylink_retry"
    CANCEL = "paylink_cancel"
    OPEN_CARD = "paylink_open_card"  # URL buttons: Slack still sends the click, to be acked
    INPUT = "value"  # the element inside every input block of the modals
    SHOW_CONTACT = "paylink_show_contact"  # the customer's full e-mail and phone, ephemeral
    # App Home: every button that shows another page carries the whole page state in its
    # value; its action_id is this prefix and a suffix (unique within its block).
    HOME_PAGE = "paylink_home_page"
    HOME_SEARCH = "paylink_home_search"  # opens the search modal


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
    HOME_TOOLS = "home_tools"
    MONTH_TITLE = "month_title"
    MONTH = "month"
    MONTH_NOTE = "month_note"
    MONTH_DIVIDER = "month_divider"
    FILTERS = "filters"
    SCOPES = "scopes"
    SHOWING = "showing"
    PAGER = "pager"
    # The search modal and the slash command's answers.
    SEARCH = "search"
    RESULTS = "results"
    RESULT = "result"
    ANSWER = "answer"
    NOTE = "note"
    STATUS_REPORT = "status_report"


#: Checkout field name (as :func:`bot.checkout.parse_checkout` expects it) → modal block_id.
#: Keys are also the keys of ``CheckoutInvalid.errors``, so errors map straight onto blocks.
FIELD_BLOCKS: dict[str, str] = {name: name for name in FIELDS}
