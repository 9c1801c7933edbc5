"""Slack payloads: the request, duplicate-guard and reject modals, the request card, thread
replies, App Home, the daily digest.

Pure functions: they read a :class:`~bot.links.tables.Link` (or settings) and return plain
dicts built with slack_sdk's typed Block Kit models, ready for ``WebClient`` calls. One module
per surface; :mod:`~bot.slack.blocks.common` holds what they share and
:mod:`~bot.slack.blocks.ids` the ids the listeners match on.

Safety rules every surface keeps:

* every user-supplied string that lands in a ``mrkdwn`` text goes through :func:`escape`, so
  ``<!channel>``, ``<@U…>`` or ``<https://evil|bank.com>`` typed by someone stay literal text;
* the customer's e-mail and phone are always masked;
* text is clipped to Slack's limits (after escaping, without cutting an ``&amp;`` in half);
* every block and element has an explicit ``block_id`` / ``action_id``.
"""

from __future__ import annotations

from bot.slack.blocks.card import NO_APPROVERS_NOTE, card
from bot.slack.blocks.common import STATUS_EMOJI, UNKNOWN_NOTE, escape, format_amount
from bot.slack.blocks.digest import digest
from bot.slack.blocks.ephemeral import help_text, sent_for_approval_text
from bot.slack.blocks.finding import (
    contact_text,
    find_answer,
    list_answer,
    read_search,
    search_modal,
    status_answer,
)
from bot.slack.blocks.home import EXPIRING_WITHIN, HOME_LIST_MAX, HomeData, HomeState, home_view
from bot.slack.blocks.ids import FIELD_BLOCKS, ActionId, BlockId, CallbackId
from bot.slack.blocks.modals import (
    duplicate_metadata,
    duplicate_modal,
    duplicate_refused_modal,
    read_duplicate_metadata,
    read_reason,
    read_submission,
    reject_modal,
    request_modal,
    submission_channel,
)
from bot.slack.blocks.thread import THREAD_KINDS, thread_reply

__all__ = [
    "FIELD_BLOCKS",
    "EXPIRING_WITHIN",
    "HOME_LIST_MAX",
    "NO_APPROVERS_NOTE",
    "STATUS_EMOJI",
    "THREAD_KINDS",
    "UNKNOWN_NOTE",
    "ActionId",
    "BlockId",
    "CallbackId",
    "HomeData",
    "HomeState",
    "card",
    "digest",
    "duplicate_metadata",
    "duplicate_modal",
    "duplicate_refused_modal",
    "contact_text",
    "escape",
    "find_answer",
    "format_amount",
    "help_text",
    "home_view",
    "read_duplicate_metadata",
    "list_answer",
    "read_reason",
    "read_search",
    "read_submission",
    "reject_modal",
    "request_modal",
    "search_modal",
    "status_answer",
    "sent_for_approval_text",
    "submission_channel",
    "thread_reply",
]
