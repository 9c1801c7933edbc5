"""The ids our Slack payloads carry and the listeners match on, one place for each."""

from __future__ import annotations

from enum import StrEnum

from bot.checkout import FIELDS


class CallbackId(StrEnum):
    """A modal's ``callback_id``: which ``view_submission`` listener gets it."""

    REQUEST = "paylink_request"
    REJECT = "paylink_reject"
    SETTINGS = "paylink_settings"
    STORE = "paylink_store"
    DUPLICATE = "paylink_duplicate"  # "a request like this exists": Create anyway / Go back
    SEARCH = "paylink_search"  # App Home's search modal


class ActionId(StrEnum):
    """An element's ``action_id``: which ``block_actions`` listener gets a click."""

    APPROVE = "paylink_approve"
    REJECT = "paylink_reject_open"  # opens the reject modal; the modal's submit rejects
    RETRY = "paylink_retry"
    CANCEL = "paylink_cancel"
    RENEW = "paylink_renew"  # an expired link: a new checkout link for the same request
    OPEN_CARD = "paylink_open_card"  # URL buttons: Slack still sends the click, to be acked
    INPUT = "value"  # the element inside every input block of the modals
    OPEN_SETTINGS = "paylink_settings_open"  # App Home, admins: the Settings modal
    ADD_STORE = "paylink_store_add"  # App Home, admins: a new XPay store
    EDIT_STORE = "paylink_store_edit"  # App Home, admins: one store's modal (value: its id)
    SEND_TO_CUSTOMER = "paylink_send_to_customer"  # e-mail the link (the link's reply)
    SEND_AGAIN = "paylink_send_again"  # e-mail it once more (asked after a first send)
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
    REPLY_ACTIONS = "reply_actions"
    SEND_AGAIN = "send_again"
    # The modals (their input fields are in FIELD_BLOCKS).
    CONTACT_HINT = "contact_hint"
    SUMMARY = "summary"
    REASON = "reason"
    POLICY = "policy"  # the request form's line on the approval policy
    EARLIER = "earlier"  # the duplicate guard's view: the earlier request
    DUPLICATE_HINT = "duplicate_hint"
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
    # App Home's Settings section (admins), and the Settings and store modals. The Settings
    # modal's other inputs are named after their settings (SETTINGS_BLOCKS).
    SETTINGS_TITLE = "settings_title"
    SETTINGS_ACTIONS = "settings_actions"
    STORE_ROW = "store"  # prefix: store_<id>
    SETTINGS_NOTE = "settings_note"
    APPROVER_USERS = "approver_users"
    APPROVER_GROUPS = "approver_groups"
    STORE_NAME = "store_name"
    STORE_ENVIRONMENT = "store_environment"
    STORE_BASE_URL = "store_base_url"
    STORE_ACCOUNT_ID = "store_account_id"
    STORE_API_KEY = "store_api_key"  # noqa: S105  (block ids, not secrets)
    STORE_HMAC_SECRET = "store_hmac_secret"  # noqa: S105
    STORE_WEBHOOK_SECRET = "store_webhook_secret"  # noqa: S105
    STORE_CHANNELS = "store_channels"
    STORE_DEFAULT = "store_default"
    STORE_WEBHOOK_URL = "store_webhook_url"
    STORE_SECRETS_SET = "store_secrets_set"
    # The daily digest.
    DIGEST_TITLE = "digest_title"
    DIGEST_APPROVAL = "digest_approval"
    DIGEST_PAYMENT = "digest_payment"
    DIGEST_PAID = "digest_paid"
    DIGEST_ACTION = "digest_action"
    DIGEST_FOOTER = "digest_footer"
    EXPIRING = "expiring"
    EXPIRING_TITLE = "expiring_title"
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
    DIGEST_EXPIRING = "digest_expiring"


#: Checkout field name (as :func:`bot.checkout.parse_checkout` expects it) → modal block_id.
#: Keys are also the keys of ``CheckoutInvalid.errors``, so errors map straight onto blocks.
FIELD_BLOCKS: dict[str, str] = {name: name for name in FIELDS}
