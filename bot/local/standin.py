"""A local stand-in for the Slack Web API.

Used by the project's tests, benchmarks and ``paylink demo``: point a
``slack_sdk.WebClient`` at it with ``base_url=standin.base_url`` and every Web API
call is answered locally, recorded, and checked against Slack's Block Kit limits the way
Slack would check them: at most 50 blocks in a message and 100 in a modal or Home tab, views
of at most 250 kB, and the per-field text, option and element limits of Slack's Block Kit
reference (https://docs.slack.dev/reference/block-kit/blocks).

Example::

    with SlackStandIn(usergroups={"S1": ["U1"]}) as slack:
        client = WebClient(token="xoxb-test", base_url=slack.base_url)
        resp = client.chat_postMessage(channel="C1", text="hi")
        assert slack.messages("C1")[0].ts == resp["ts"]

Behaviour worth knowing:

* Answers are HTTP 200 with ``{"ok": false, "error": ...}`` for API errors, as Slack does;
  ``fail_next`` can inject HTTP 5xx / 429 answers.
* A request with no token at all gets ``not_authed`` (as on Slack); a wrong token
  gets ``invalid_auth``.
* ``chat.postMessage`` to a user ID (``U…``/``W…``) posts to a DM channel ``D…`` and
  returns that channel ID, as Slack does; ``chat.update`` then needs the ``D…`` ID.
* A ``trigger_id`` is single use: reusing one answers ``exchanged_trigger_id``; one that
  starts with ``expired`` answers ``expired_trigger_id``.
* ``conversations.history`` and ``.replies`` honour ``oldest`` against the time a message
  was posted (its ``ts`` counts up from 1700000000, so it is no time).
* Connections are kept alive (HTTP/1.1), as Slack's are; ``connections_accepted`` counts
  them, and ``stop()`` ends the open ones.
* Invalid blocks/views answer ``invalid_blocks`` with Slack-style ``errors`` messages
  (``"must be less than 25 characters [json-pointer:/view/title/text]"``).
* Files arrive as Slack's upload flow (slack_sdk's ``files_upload_v2``) sends them:
  ``files.getUploadURLExternal`` hands out an ``upload_url`` on the stand-in, the bytes are
  POSTed there, and ``files.completeUploadExternal`` shares them in a channel (and thread);
  ``files`` lists them with their bytes. They are not messages: ``messages()`` and
  ``thread()`` stay as they were; ``conversations.replies`` shows one shared in a thread as
  Slack does, a reply with ``files`` (``id``, ``name``, ``title``).
* ``scopes``: the bot token's scopes. None (the default) grants every scope; a set makes the
  methods that need a scope missing from it answer ``missing_scope`` as Slack does.
* ``apps.connections.open`` (Socket Mode) exists once a Socket Mode stand-in is attached
  (:class:`bot.local.socketmode.SocketModeStandIn`); it takes only the app-level token
  ``xapp-…`` and every other method refuses that token, with ``not_allowed_token_type``, as
  Slack does.
* Several workspaces: every token belongs to a team, and ``auth.test`` answers with the
  token's team; each call records it (``Call.team``, ``PostedMessage.team``).
* OAuth (with ``client_id`` and ``client_secret``): ``GET /oauth/v2/authorize?team=T…``
  plays the admin approving the install: it redirects to ``redirect_uri`` with a code and
  the ``state``. ``oauth.v2.access`` exchanges a code once for a bot token of that team
  (``invalid_code`` otherwise) and, with ``token_rotation``, a ``refresh_token`` and
  ``expires_in``; ``grant_type=refresh_token`` gives a new token (``invalid_refresh_token``
  for one it never issued). An expired token answers ``token_expired``; ``revoke(team)``
  makes the team's tokens answer ``token_revoked``, as after an uninstall.
* Every ephemeral gets a ``response_url`` on the stand-in (``/response/<n>``), which the
  simulator sends with a click on it (``SlackSimulator.click_ephemeral``). A JSON POST there
  with ``replace_original`` replaces the ephemeral's text and blocks (``Ephemeral.replaced``
  counts it), ``delete_original`` deletes it (``Ephemeral.deleted``), and neither posts a new
  ephemeral to the same user; ``response_type: in_channel`` is not played. The answer is
  ``ok`` (HTTP 200), or the error as text: 404 ``expired_url`` for an unknown URL, 400
  otherwise (``no_text``, ``invalid_blocks``). Each POST is recorded as a call of
  ``"response_url"`` (:data:`RESPONSE_URL`), and ``fail_next("response_url")`` fails the
  next ones. Uses are not limited (Slack allows 5 within 30 minutes).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import email.parser
import email.policy
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from bot.local.terminal import render_thread

__all__ = [
    "Call",
    "RESPONSE_URL",
    "Ephemeral",
    "PostedMessage",
    "SlackStandIn",
    "UploadedFile",
    "validate_blocks",
]

Surface = Literal["message", "modal", "home"]
T = TypeVar("T")

# --------------------------------------------------------------------------------------
# Block Kit validation
# --------------------------------------------------------------------------------------

MAX_BLOCKS = {"message": 50, "modal": 100, "home": 100}
MAX_VIEW_BYTES = 250_000

_KNOWN_BLOCKS = frozenset(
    {
        "actions",
        "alert",
        "call",
        "card",
        "carousel",
        "container",
        "context_actions",
        "plan",
        "task_card",
        "context",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "table",
        "video",
    }
)
_SELECTS = frozenset(
    {
        "static_select",
        "multi_static_select",
        "external_select",
        "multi_external_select",
        "users_select",
        "multi_users_select",
        "conversations_select",
        "multi_conversations_select",
        "channels_select",
        "multi_channels_select",
    }
)
_INPUT_ONLY = frozenset(
    {
        "plain_text_input",
        "email_text_input",
        "url_text_input",
        "number_input",
        "rich_text_input",
        "file_input",
    }
)
_INPUT_ELEMENTS = (
    _SELECTS
    | _INPUT_ONLY
    | {"checkboxes", "radio_buttons", "datepicker", "timepicker", "datetimepicker"}
)
_ACTION_ELEMENTS = _SELECTS | {
    "button",
    "checkboxes",
    "radio_buttons",
    "datepicker",
    "timepicker",
    "datetimepicker",
    "overflow",
    "workflow_button",
    "rich_text_input",
}
_ACCESSORY_ELEMENTS = _ACTION_ELEMENTS | {"image"}
_PLACEHOLDER_ELEMENTS = _SELECTS | _INPUT_ONLY | {"datepicker", "timepicker"}


class _Errors:
    """Collects Slack-style error strings: ``"<message> [json-pointer:<path>]"``."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str, path: str) -> None:
        self.items.append(f"{message} [json-pointer:{path}]")

    def too_long(self, value: Any, limit: int, path: str) -> None:
        if isinstance(value, str) and len(value) > limit:
            self.add(f"must be less than {limit + 1} characters", path)


def _check_text(
    errs: _Errors,
    obj: Any,
    path: str,
    limit: int,
    *,
    plain_only: bool = False,
    required: bool = True,
) -> None:
    """Checks a composition text object (``{"type": "plain_text", "text": ...}``)."""
    if obj is None:
        if required:
            errs.add("must provide an object", path)
        return
    if not isinstance(obj, dict):
        errs.add("must be an object", path)
        return
    kind = obj.get("type")
    if kind not in ("plain_text", "mrkdwn"):
        errs.add("must be one of plain_text, mrkdwn", f"{path}/type")
    elif plain_only and kind != "plain_text":
        errs.add("must be plain_text", f"{path}/type")
    text = obj.get("text")
    if not isinstance(text, str):
        errs.add("must be a string", f"{path}/text")
    elif not text:
        errs.add("must be more than 0 characters", f"{path}/text")
    else:
        errs.too_long(text, limit, f"{path}/text")


def _check_options(
    errs: _Errors, options: Any, path: str, limit: int, *, plain_only: bool = True
) -> None:
    if not isinstance(options, list):
        errs.add("must be an array", path)
        return
    if len(options) > limit:
        errs.add(f"must be less than {limit + 1} items", path)
    for i, opt in enumerate(options):
        opath = f"{path}/{i}"
        if not isinstance(opt, dict):
            errs.add("must be an object", opath)
            continue
        _check_text(errs, opt.get("text"), f"{opath}/text", 75, plain_only=plain_only)
        value = opt.get("value")
        if value is not None:
            errs.too_long(value, 150, f"{opath}/value")
        _check_text(errs, opt.get("description"), f"{opath}/description", 75, required=False)


def _check_element(
    errs: _Errors,
    el: Any,
    path: str,
    *,
    allowed: frozenset[str] | set[str],
    action_ids: set[str],
) -> None:
    if not isinstance(el, dict):
        errs.add("must be an object", path)
        return
    kind = el.get("type")
    if not isinstance(kind, str):
        errs.add("must provide a type", f"{path}/type")
        return
    if kind not in allowed:
        if kind in _INPUT_ONLY:
            errs.add(f"{kind} is only allowed in input blocks", f"{path}/type")
        else:
            where = "input blocks" if allowed is _INPUT_ELEMENTS else "this position"
            errs.add(f"element type {kind} is not allowed in {where}", f"{path}/type")
    action_id = el.get("action_id")
    if action_id is not None:
        errs.too_long(action_id, 255, f"{path}/action_id")
        if action_id in action_ids:
            errs.add(f"action_id {action_id!r} already exists in this block", f"{path}/action_id")
        action_ids.add(action_id)
    if kind in _PLACEHOLDER_ELEMENTS:
        _check_text(errs, el.get("placeholder"), f"{path}/placeholder", 150, required=False)

    if kind == "button":
        _check_text(errs, el.get("text"), f"{path}/text", 75, plain_only=True)
        errs.too_long(el.get("value"), 2000, f"{path}/value")
        errs.too_long(el.get("url"), 3000, f"{path}/url")
        style = el.get("style")
        if style is not None and style not in ("primary", "danger"):
            errs.add("must be one of primary, danger", f"{path}/style")
    elif kind in ("static_select", "multi_static_select"):
        if "options" in el:
            _check_options(errs, el["options"], f"{path}/options", 100)
        elif "option_groups" in el:
            groups = el["option_groups"]
            if not isinstance(groups, list) or len(groups) > 100:
                errs.add("must be less than 101 items", f"{path}/option_groups")
            else:
                for g, group in enumerate(groups):
                    gpath = f"{path}/option_groups/{g}"
                    _check_text(errs, (group or {}).get("label"), f"{gpath}/label", 75)
                    _check_options(errs, (group or {}).get("options"), f"{gpath}/options", 100)
        else:
            errs.add("must provide either options or option_groups", path)
    elif kind == "overflow":
        _check_options(errs, el.get("options"), f"{path}/options", 5)
    elif kind in ("checkboxes", "radio_buttons"):
        _check_options(errs, el.get("options"), f"{path}/options", 10, plain_only=False)
    elif kind == "plain_text_input":
        for key in ("max_length", "min_length"):
            value = el.get(key)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                errs.add("must be a non-negative integer", f"{path}/{key}")
            elif value > 3000:
                errs.add("must be less than 3001", f"{path}/{key}")
        lo, hi = el.get("min_length"), el.get("max_length")
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            errs.add("min_length must not exceed max_length", f"{path}/min_length")
    elif kind == "number_input":
        if not isinstance(el.get("is_decimal_allowed"), bool):
            errs.add("must provide is_decimal_allowed", f"{path}/is_decimal_allowed")
    elif kind == "image":
        errs.too_long(el.get("alt_text"), 2000, f"{path}/alt_text")


def _check_block(
    errs: _Errors, block: Any, path: str, *, surface: Surface, block_ids: set[str]
) -> None:
    if not isinstance(block, dict):
        errs.add("must be an object", path)
        return
    kind = block.get("type")
    if not isinstance(kind, str):
        errs.add("must provide a type", f"{path}/type")
        return
    if kind not in _KNOWN_BLOCKS:
        errs.add(f"unsupported type: {kind}", f"{path}/type")
        return
    block_id = block.get("block_id")
    if block_id is not None:
        if not isinstance(block_id, str) or not block_id:
            errs.add("must be a non-empty string", f"{path}/block_id")
        else:
            errs.too_long(block_id, 255, f"{path}/block_id")
            if block_id in block_ids:
                errs.add(f"block_id {block_id!r} already exists", f"{path}/block_id")
            block_ids.add(block_id)
    action_ids: set[str] = set()

    if kind == "section":
        text, fields = block.get("text"), block.get("fields")
        if text is None and not fields:
            errs.add("must provide either text or fields", path)
        _check_text(errs, text, f"{path}/text", 3000, required=False)
        if fields is not None:
            if not isinstance(fields, list):
                errs.add("must be an array", f"{path}/fields")
            else:
                if len(fields) > 10:
                    errs.add("must be less than 11 items", f"{path}/fields")
                for i, f in enumerate(fields):
                    _check_text(errs, f, f"{path}/fields/{i}", 2000)
        if block.get("accessory") is not None:
            _check_element(
                errs,
                block["accessory"],
                f"{path}/accessory",
                allowed=_ACCESSORY_ELEMENTS,
                action_ids=action_ids,
            )
    elif kind == "header":
        _check_text(errs, block.get("text"), f"{path}/text", 150, plain_only=True)
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements:
            errs.add("must provide a non-empty array", f"{path}/elements")
        else:
            if len(elements) > 10:
                errs.add("must be less than 11 items", f"{path}/elements")
            for i, el in enumerate(elements):
                epath = f"{path}/elements/{i}"
                if isinstance(el, dict) and el.get("type") == "image":
                    errs.too_long(el.get("alt_text"), 2000, f"{epath}/alt_text")
                else:
                    _check_text(errs, el, epath, 3000)
    elif kind == "actions":
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements:
            errs.add("must provide a non-empty array", f"{path}/elements")
        else:
            if len(elements) > 25:
                errs.add("must be less than 26 items", f"{path}/elements")
            for i, el in enumerate(elements):
                _check_element(
                    errs,
                    el,
                    f"{path}/elements/{i}",
                    allowed=_ACTION_ELEMENTS,
                    action_ids=action_ids,
                )
    elif kind == "input":
        _check_text(errs, block.get("label"), f"{path}/label", 2000, plain_only=True)
        _check_text(errs, block.get("hint"), f"{path}/hint", 2000, required=False)
        element = block.get("element")
        if element is None:
            errs.add("must provide an object", f"{path}/element")
        else:
            _check_element(
                errs, element, f"{path}/element", allowed=_INPUT_ELEMENTS, action_ids=action_ids
            )
    elif kind == "image":
        if not block.get("image_url") and not block.get("slack_file"):
            errs.add("must provide image_url or slack_file", path)
        alt = block.get("alt_text")
        if not isinstance(alt, str) or not alt:
            errs.add("must provide a non-empty string", f"{path}/alt_text")
        else:
            errs.too_long(alt, 2000, f"{path}/alt_text")
        _check_text(errs, block.get("title"), f"{path}/title", 2000, required=False)
    elif kind == "markdown":
        text = block.get("text")
        if not isinstance(text, str) or not text:
            errs.add("must provide a non-empty string", f"{path}/text")
        else:
            errs.too_long(text, 12000, f"{path}/text")


def validate_blocks(
    blocks: Any,
    *,
    surface: Surface = "message",
    view: Mapping[str, Any] | None = None,
) -> list[str]:
    """Check blocks (and, for modals and home tabs, the view around them) like Slack does.

    Args:
        blocks: the ``blocks`` array as sent (list of dicts). ``None`` means "take
            ``view["blocks"]``" when a view is given, else no blocks.
        surface: ``"message"`` (50 blocks), ``"modal"`` or ``"home"`` (100 blocks).
        view: the whole view for ``"modal"``/``"home"``: title/submit/close lengths,
            ``submit`` required with input blocks, ``private_metadata`` (3000),
            ``callback_id``/``external_id`` (255), 250 kB payload.

    Returns:
        Slack-style error strings, e.g. ``"must be less than 51 items [json-pointer:/blocks]"``;
        empty when the payload is valid.
    """
    if surface not in MAX_BLOCKS:
        raise ValueError(f"unknown surface {surface!r}")
    errs = _Errors()
    root = "/blocks" if surface == "message" else "/view/blocks"
    if blocks is None and view is not None:
        blocks = view.get("blocks")
    if view is not None:
        _check_view(errs, view, surface, blocks)
    if blocks is None:
        return errs.items
    if not isinstance(blocks, list):
        errs.add("must be an array", root)
        return errs.items
    limit = MAX_BLOCKS[surface]
    if len(blocks) > limit:
        errs.add(f"must be less than {limit + 1} items", root)
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        _check_block(errs, block, f"{root}/{i}", surface=surface, block_ids=block_ids)
    return errs.items


def _check_view(errs: _Errors, view: Mapping[str, Any], surface: Surface, blocks: Any) -> None:
    expected = "home" if surface == "home" else "modal"
    if view.get("type") != expected:
        errs.add(f"must be {expected}", "/view/type")
    if surface == "modal":
        _check_text(errs, view.get("title"), "/view/title", 24, plain_only=True)
        _check_text(errs, view.get("close"), "/view/close", 24, plain_only=True, required=False)
        _check_text(errs, view.get("submit"), "/view/submit", 24, plain_only=True, required=False)
        has_input = isinstance(blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "input" for b in blocks
        )
        if has_input and view.get("submit") is None:
            errs.add("must provide submit when the view has input blocks", "/view/submit")
    errs.too_long(view.get("private_metadata"), 3000, "/view/private_metadata")
    errs.too_long(view.get("callback_id"), 255, "/view/callback_id")
    errs.too_long(view.get("external_id"), 255, "/view/external_id")
    try:
        size = len(json.dumps(view, ensure_ascii=False).encode())
    except (TypeError, ValueError):
        errs.add("must be JSON", "/view")
    else:
        if size > MAX_VIEW_BYTES:
            errs.add(f"must be less than {MAX_VIEW_BYTES} bytes", "/view")


# --------------------------------------------------------------------------------------
# Recorded state
# --------------------------------------------------------------------------------------


@dataclass
class Call:
    """One Web API call as the stand-in received and answered it."""

    method: str
    params: dict[str, Any]
    response: dict[str, Any]
    at: float
    status: int = 200
    team: str | None = None  # the team of the token the call was made with

    @property
    def ok(self) -> bool:
        """True when the call succeeded (HTTP 200 and ``"ok": true``)."""
        return self.status == 200 and bool(self.response.get("ok"))


@dataclass
class PostedMessage:
    """Current state of a message posted through ``chat.postMessage``."""

    ts: str
    channel: str
    thread_ts: str | None
    text: str | None
    blocks: list[dict[str, Any]] | None
    updated: int = 0
    attachments: list[Any] | None = None
    metadata: dict[str, Any] | None = None
    user: str = ""
    posted_at: float = 0.0  # time.time() when it was posted
    team: str | None = None  # the team of the token that posted it


@dataclass
class Ephemeral:
    """A message posted through ``chat.postEphemeral``."""

    message_ts: str
    channel: str
    user: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None = None
    # Where a click on it may answer it (the simulator sends it with each click), and what
    # answers came there: ``replaced`` times with ``replace_original``, or ``deleted``.
    response_url: str | None = None
    replaced: int = 0
    deleted: bool = False


@dataclass
class UploadedFile:
    """A file shared through ``files.completeUploadExternal``, with the bytes uploaded."""

    id: str
    filename: str
    title: str | None
    content: bytes
    channel: str | None
    thread_ts: str | None
    initial_comment: str | None = None
    alt_txt: str | None = None
    ts: str | None = None  # the ts of its share in the channel
    posted_at: float = 0.0


# The scope each method that needs one asks for (Slack's method reference).
_SCOPE_OF = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "conversations.open": "im:write",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    "usergroups.users.list": "usergroups:read",
}


@dataclass
class _Token:
    """A bot token the stand-in issued: its team, and when it stops working."""

    team: str
    expires_at: float | None = None
    revoked: bool = False


@dataclass
class _Fault:
    status: int
    retry_after: float | None
    error: str | None
    delay: float
    remaining: int
    after_effect: bool = False


def _apply_fault(fault: _Fault, call: Call, headers: dict[str, str]) -> None:
    """Turn ``call``'s answer into the one ``fault`` describes."""
    call.status = 200 if fault.error else fault.status
    if fault.error:
        call.response = {"ok": False, "error": fault.error}
    elif fault.status == 429:
        call.response = {"ok": False, "error": "ratelimited"}
        if fault.retry_after is not None:
            headers["Retry-After"] = _fmt_seconds(fault.retry_after)
    else:
        call.response = {"ok": False, "error": "internal_error"}


class _ApiError(Exception):
    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.body = {"ok": False, "error": error, **extra}


# Methods called with the app-level token (xapp-…) rather than the bot's.
_APP_LEVEL = frozenset({"apps.connections.open"})
_JSON_PARAMS = ("blocks", "view", "attachments", "metadata", "user_auth_blocks")
_EPOCH_US = 1_700_000_000_000_000
# What a POST to a response_url is recorded as (a Call's ``method``; ``fail_next`` takes it).
RESPONSE_URL = "response_url"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a burst of calls (each of plain slack_sdk's calls
    # is a new connection) overflowed it, and the dropped connections were retried a second
    # later.
    request_queue_size = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self.accepted = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
            self.accepted += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """End every kept-alive connection: a stopped Slack answers nothing, not even on a
        connection opened before it stopped."""
        with self._open_lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


# --------------------------------------------------------------------------------------
# The stand-in
# --------------------------------------------------------------------------------------


class SlackStandIn:
    """A thread-safe local Slack Web API for tests, benchmarks and ``paylink demo``.

    Args:
        bot_token: the only token accepted (``Authorization: Bearer`` or ``token`` param).
        app_token: the app-level token, accepted by ``apps.connections.open`` only.
        usergroups: user group ID → member user IDs, for ``usergroups.users.list``.
        users: user ID → extra fields merged into the ``users.info`` answer.
        team_id, bot_user_id, bot_id: identities returned by ``auth.test``.
        host, port: where to listen; port 0 picks a free port.
        scopes: the bot token's scopes (None: all of them); see the module's docstring.
        client_id, client_secret: the app's, for ``oauth.v2.access`` (OAuth installs).
        token_rotation: tokens issued by OAuth expire after ``token_ttl`` seconds and come
            with a refresh token.
    """

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",  # noqa: S107 - a test token, not a secret
        app_token: str = "xapp-stand-in-test",  # noqa: S107 - likewise
        usergroups: Mapping[str, Iterable[str]] | None = None,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        team_id: str = "T0PAYLINK",
        bot_user_id: str = "U0PAYBOT",
        bot_id: str = "B0PAYBOT",
        host: str = "127.0.0.1",
        port: int = 0,
        scopes: Iterable[str] | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        token_rotation: bool = False,
        token_ttl: float = 43_200,
    ) -> None:
        self.bot_token = bot_token
        self.scopes: set[str] | None = set(scopes) if scopes is not None else None
        self.app_token = app_token
        self.team_id = team_id
        self.client_id, self.client_secret = client_id, client_secret
        self.token_rotation, self.token_ttl = token_rotation, token_ttl
        self._tokens: dict[str, _Token] = {bot_token: _Token(team_id)}
        self._refresh_tokens: dict[str, str] = {}  # refresh token → team
        self._codes: dict[str, tuple[str, str | None]] = {}  # code → (team, redirect_uri)
        self._issued = itertools.count(1)
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.usergroups: dict[str, list[str]] = {k: list(v) for k, v in (usergroups or {}).items()}
        self.users: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (users or {}).items()}
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._handlers: dict[str, Callable[[dict[str, Any], Call], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.push": self._views_push,
            "views.publish": self._views_publish,
            "usergroups.users.list": self._usergroups_users_list,
            "users.info": self._users_info,
            "conversations.open": self._conversations_open,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "oauth.v2.access": self._oauth_v2_access,
        }
        self._delays: dict[str, float] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._reset_state()

    # ---------------------------------------------------------------- lifecycle

    def _reset_state(self) -> None:
        self.calls: list[Call] = []
        self._messages: dict[tuple[str, str], PostedMessage] = {}
        self._ephemerals: list[Ephemeral] = []
        self._answerable: dict[str, Ephemeral] = {}  # response_url id → its ephemeral
        self._response_counter = itertools.count(1)
        self._views: dict[str, dict[str, Any]] = {}
        self._views_opened: list[str] = []
        self._home_views: dict[str, str] = {}
        self._used_triggers: set[str] = set()
        self._ts_counter = itertools.count(1)
        self._view_counter = itertools.count(1)
        self._file_counter = itertools.count(1)
        self._uploads: dict[str, dict[str, Any]] = {}  # file id → what getUploadURL was told
        self._files: list[UploadedFile] = []

    def start(self) -> SlackStandIn:
        """Bind and start serving in a daemon thread (no-op when already running)."""
        with self._lock:
            if self._server is not None:
                return self
            server = _Server((self._host, self._port), _make_handler(self))
            self._server = server
            self._port = server.server_address[1]
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.01},
                name=f"slack-standin:{self._port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.drop_connections()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> SlackStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port (only known after ``start()`` when constructed with port 0)."""
        if self._server is None and self._port == 0:
            raise RuntimeError("SlackStandIn is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """Base URL for ``WebClient(base_url=...)``, e.g. ``http://127.0.0.1:PORT/api/``."""
        return f"http://{self._host}:{self.port}/api/"

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted since start (a client keeping its connection open makes
        many calls over one)."""
        return self._server.accepted if self._server is not None else 0

    def attach_socket_mode(self, connection_url: Callable[[], str]) -> None:
        """Answer ``apps.connections.open`` with ``{"url": connection_url()}``: the address of
        a Socket Mode connection, as Slack gives one to an app with Socket Mode turned on."""

        def apps_connections_open(params: dict[str, Any], call: Call) -> dict[str, Any]:
            return {"url": connection_url()}

        with self._lock:
            self._handlers["apps.connections.open"] = apps_connections_open

    # ---------------------------------------------------------------- fault injection

    def fail_next(
        self,
        method: str,
        *,
        status: int = 500,
        times: int = 1,
        retry_after: float | None = None,
        error: str | None = None,
        delay: float = 0.0,
        after_effect: bool = False,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail; faults queue up in order.

        * ``error`` given: HTTP 200 with ``{"ok": false, "error": error}``.
        * ``retry_after`` given: HTTP 429 (whatever ``status`` says) with a
          ``Retry-After`` header and ``{"ok": false, "error": "ratelimited"}``.
        * otherwise HTTP ``status`` (default 500).

        ``delay`` seconds are slept before answering. Failed calls are recorded but do
        not change any state, unless ``after_effect``: then the call takes effect (a message
        is posted) and only the answer is the failure, as when Slack fails after storing.
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        if retry_after is not None:
            status = 429
        fault = _Fault(status, retry_after, error, delay, times, after_effect)
        with self._lock:
            self._faults.setdefault(method, []).append(fault)

    def set_delay(self, method: str, seconds: float) -> None:
        """Answer every call of ``method`` ``seconds`` late (0 removes the delay)."""
        with self._lock:
            if seconds > 0:
                self._delays[method] = seconds
            else:
                self._delays.pop(method, None)

    def _delayed(self, method: str) -> _Fault | None:
        """Wait as long as ``method`` is set to take (``set_delay``, plus its next fault's
        delay), then return that fault, if one is queued."""
        with self._lock:
            delay = self._delays.get(method, 0.0)
        fault = self._take_fault(method)
        if fault is not None:
            delay += fault.delay
        if delay > 0:
            time.sleep(delay)
        return fault

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(method)
            if not queue:
                return None
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.pop(0)
            return fault

    # ---------------------------------------------------------------- inspection

    def calls_of(self, method: str) -> list[Call]:
        """Recorded calls of one method, oldest first (failed ones included)."""
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def methods(self) -> list[str]:
        """Names of all recorded calls, oldest first."""
        with self._lock:
            return [c.method for c in self.calls]

    def messages(self, channel: str | None = None) -> list[PostedMessage]:
        """Copies of the current state of posted messages (optionally one channel), by ts."""
        with self._lock:
            found = [
                copy.deepcopy(m)
                for m in self._messages.values()
                if channel is None or m.channel == channel
            ]
        return sorted(found, key=lambda m: _ts_key(m.ts))

    def message(self, channel: str, ts: str) -> PostedMessage | None:
        """Copy of one posted message, or None."""
        with self._lock:
            msg = self._messages.get((channel, ts))
            return copy.deepcopy(msg) if msg else None

    def thread(self, channel: str, ts: str) -> list[PostedMessage]:
        """The parent message followed by its replies in order (empty if unknown)."""
        with self._lock:
            parent = self._messages.get((channel, ts))
            if parent is None:
                return []
            replies = [
                m
                for m in self._messages.values()
                if m.channel == channel and m.thread_ts == ts and m.ts != ts
            ]
            result = [parent, *sorted(replies, key=lambda m: _ts_key(m.ts))]
            return copy.deepcopy(result)

    @property
    def ephemerals(self) -> list[Ephemeral]:
        """Ephemeral messages posted, oldest first."""
        with self._lock:
            return copy.deepcopy(self._ephemerals)

    @property
    def views_opened(self) -> list[dict[str, Any]]:
        """Current state of every view opened with ``views.open``, oldest first."""
        with self._lock:
            return [copy.deepcopy(self._views[v]) for v in self._views_opened]

    def view(self, view_id: str) -> dict[str, Any] | None:
        """Current state of any view (opened, pushed, updated or published) by ID."""
        with self._lock:
            found = self._views.get(view_id)
            return copy.deepcopy(found) if found else None

    @property
    def home_views(self) -> dict[str, dict[str, Any]]:
        """User ID → the home tab view last published for that user."""
        with self._lock:
            return {u: copy.deepcopy(self._views[v]) for u, v in self._home_views.items()}

    @property
    def files(self) -> list[UploadedFile]:
        """Files shared through ``files.completeUploadExternal``, oldest first."""
        with self._lock:
            return copy.deepcopy(self._files)

    @property
    def missing_text_warnings(self) -> list[Call]:
        """Successful chat.postMessage/chat.update calls that sent blocks without ``text``."""
        with self._lock:
            return [c for c in self.calls if "missing_text" in c.response.get("warning", "")]

    def clear(self) -> None:
        """Forget all calls, messages, views and pending faults/delays."""
        with self._lock:
            self._reset_state()
            self._faults.clear()
            self._delays.clear()

    def wait_for(self, predicate: Callable[[SlackStandIn], T], timeout: float = 5.0) -> T:
        """Block until ``predicate(self)`` is truthy and return its value.

        Re-evaluated whenever a call is recorded. Raises AssertionError listing the
        recorded method names when ``timeout`` seconds pass first.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(self)
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"condition not met within {timeout}s; calls so far: {self.methods()}"
                    )
                self._cond.wait(min(remaining, 0.1))

    # ---------------------------------------------------------------- rendering

    def render_thread_text(self, channel: str, ts: str) -> str:
        """A message and its thread replies as plain text, mrkdwn kept as source (see
        :mod:`bot.local.terminal`; ``paylink demo`` shows it the way Slack does)."""
        msgs = self.thread(channel, ts)
        if not msgs:
            return f"(no message {ts} in {channel})"
        return render_thread(msgs)

    # ---------------------------------------------------------------- request handling

    def _handle(
        self,
        method: str,
        params: dict[str, Any],
        auth_header: str | None,
        bad_request: str | None = None,
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        """Answer one API request; returns (HTTP status, extra headers, JSON body).

        ``bad_request`` is an error found while decoding the body (answered after the
        method and token checks, like Slack).
        """
        at = time.time()
        token = params.pop("token", None)
        if auth_header and auth_header.lower().startswith("bearer "):
            token = auth_header[7:].strip()
        fault = self._delayed(method)

        call = Call(method=method, params=params, response={}, at=at)
        headers: dict[str, str] = {}
        if fault is not None and not fault.after_effect:
            _apply_fault(fault, call, headers)
        else:
            with self._lock:
                try:
                    handler = self._handlers.get(method)
                    if handler is None:
                        raise _ApiError("unknown_method")
                    if method == "oauth.v2.access":  # the app's id and secret, not a token
                        self._check_client(params, auth_header)
                    elif token and token.startswith("xapp-") != (method in _APP_LEVEL):
                        # An app-level token where a bot token belongs, or the other way round.
                        raise _ApiError("not_allowed_token_type")
                    elif method in _APP_LEVEL:
                        if token != self.app_token:
                            raise _ApiError("invalid_auth" if token else "not_authed")
                    else:
                        call.team = self._team_of(token)
                    needed = _SCOPE_OF.get(method)
                    if self.scopes is not None and needed and needed not in self.scopes:
                        raise _ApiError(
                            "missing_scope", needed=needed, provided=",".join(sorted(self.scopes))
                        )
                    if bad_request:
                        raise _ApiError(bad_request)
                    body = handler(params, call)
                    call.response = {"ok": True, **body}
                except _ApiError as exc:
                    call.response = exc.body
            if fault is not None:  # the call took effect; only the answer is lost
                _apply_fault(fault, call, headers)
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()
        return call.status, headers, call.response

    # ---------------------------------------------------------------- helpers (under lock)
    #
    # What a call stores (views, blocks) is the request's own parsed JSON, and it is only
    # ever replaced, never changed in place; so handlers keep and answer with it as it is,
    # and only the public accessors above copy it for their callers: the stand-in shares the
    # benchmark's cores with the bot, so it copies nothing under the lock every call takes.

    def _next_ts(self) -> str:
        us = _EPOCH_US + 100 * next(self._ts_counter)
        return f"{us // 1_000_000}.{us % 1_000_000:06d}"

    def _require_blocks_ok(self, errors: list[str]) -> None:
        if errors:
            raise _ApiError(
                "invalid_blocks",
                errors=errors,
                response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
            )

    def _message_payload(self, msg: PostedMessage) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "team": self.team_id,
            "ts": msg.ts,
            "text": msg.text or "",
        }
        if msg.blocks is not None:
            out["blocks"] = msg.blocks
        if msg.attachments is not None:
            out["attachments"] = msg.attachments
        if msg.thread_ts and msg.thread_ts != msg.ts:
            out["thread_ts"] = msg.thread_ts
            out["parent_user_id"] = self.bot_user_id
        if msg.updated:
            out["edited"] = {"user": self.bot_user_id, "ts": msg.ts}
        return out

    @staticmethod
    def _missing_text(params: Mapping[str, Any], body: dict[str, Any]) -> None:
        if params.get("blocks") and not params.get("text"):
            body["warning"] = "missing_text_or_fallback"
            body["response_metadata"] = {"warnings": ["missing_text_or_fallback"]}

    def _channel(self, params: Mapping[str, Any]) -> str:
        channel = params.get("channel")
        if not isinstance(channel, str) or not channel:
            raise _ApiError("channel_not_found")
        if channel[0] in "UW" and channel[1:].isalnum():
            return "D" + channel[1:]
        return channel

    def _make_view(
        self, view: Any, surface: Surface, *, view_id: str | None = None
    ) -> dict[str, Any]:
        if isinstance(view, str):
            try:
                view = json.loads(view)
            except ValueError:
                raise _ApiError("invalid_arguments") from None
        if not isinstance(view, dict):
            raise _ApiError("invalid_arguments")
        self._require_blocks_ok(validate_blocks(view.get("blocks", []), surface=surface, view=view))
        vid = view_id or f"V{next(self._view_counter):010d}"
        stored = dict(view)  # the call's params keep the view as it was sent
        stored.update(
            id=vid,
            team_id=self.team_id,
            app_id="A0PAYLINK",
            bot_id=self.bot_id,
            blocks=stored.get("blocks", []),
            private_metadata=stored.get("private_metadata", ""),
            callback_id=stored.get("callback_id", ""),
            external_id=stored.get("external_id", ""),
            state={"values": {}},
            hash=f"{time.time():.6f}.{vid}.{next(self._view_counter)}",
            root_view_id=vid,
            previous_view_id=None,
        )
        return stored

    def _use_trigger(self, params: Mapping[str, Any]) -> None:
        trigger = params.get("trigger_id") or params.get("interactivity_pointer")
        if not isinstance(trigger, str) or not trigger:
            raise _ApiError("invalid_arguments")
        if trigger.startswith("expired"):
            raise _ApiError("expired_trigger_id")
        if trigger in self._used_triggers:
            raise _ApiError("exchanged_trigger_id")
        self._used_triggers.add(trigger)

    # ---------------------------------------------------------------- methods

    def _team_of(self, token: str | None) -> str:
        """The team of a bot token, or the error Slack answers for it."""
        if not token:
            raise _ApiError("not_authed")
        found = self._tokens.get(token)
        if found is None:
            raise _ApiError("invalid_auth")
        if found.revoked:
            raise _ApiError("token_revoked")
        if found.expires_at is not None and found.expires_at <= time.time():
            raise _ApiError("token_expired")
        return found.team

    def _check_client(self, params: dict[str, Any], auth_header: str | None) -> None:
        """oauth.v2.access authenticates the app: HTTP Basic, or client_id/client_secret."""
        client_id, client_secret = params.get("client_id"), params.get("client_secret")
        if auth_header and auth_header.lower().startswith("basic "):
            decoded = base64.b64decode(auth_header[6:].strip()).decode()
            client_id, _, client_secret = decoded.partition(":")
        if not self.client_id or client_id != self.client_id:
            raise _ApiError("invalid_client_id")
        if client_secret != self.client_secret:
            raise _ApiError("bad_client_secret")

    def _issue_token(self, team: str) -> dict[str, Any]:
        """A new bot token for ``team`` as oauth.v2.access returns it."""
        n = next(self._issued)
        token = f"xoxb-{team.lower()}-{n}"
        expires = time.time() + self.token_ttl if self.token_rotation else None
        self._tokens[token] = _Token(team, expires)
        answer: dict[str, Any] = {
            "app_id": "A0PAYLINK",
            "scope": "commands,chat:write",
            "token_type": "bot",
            "access_token": token,
            "bot_user_id": self.bot_user_id,
            "team": {"id": team, "name": f"Team {team}"},
            "enterprise": None,
            "is_enterprise_install": False,
        }
        if self.token_rotation:
            refresh = f"xoxe-1-{team.lower()}-{n}"
            self._refresh_tokens[refresh] = team
            answer.update(refresh_token=refresh, expires_in=int(self.token_ttl))
        return answer

    def authorize(self, team: str, redirect_uri: str | None = None) -> str:
        """The code Slack hands the app once an admin of ``team`` approved the install."""
        code = f"code-{team.lower()}-{next(self._issued)}"
        with self._lock:
            self._codes[code] = (team, redirect_uri)
        return code

    def revoke(self, team: str) -> None:
        """Revoke every token of ``team`` (as Slack does when the app is uninstalled)."""
        with self._lock:
            for token in self._tokens.values():
                if token.team == team:
                    token.revoked = True
            for refresh in [r for r, t in self._refresh_tokens.items() if t == team]:
                del self._refresh_tokens[refresh]

    def _oauth_v2_access(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        if params.get("grant_type") == "refresh_token":
            team = self._refresh_tokens.get(str(params.get("refresh_token") or ""))
            if team is None:
                raise _ApiError("invalid_refresh_token")
        else:
            found = self._codes.pop(str(params.get("code") or ""), None)
            if found is None:
                raise _ApiError("invalid_code")
            team, redirect_uri = found
            if redirect_uri and params.get("redirect_uri") != redirect_uri:
                raise _ApiError("bad_redirect_uri")
        call.team = team
        answer = self._issue_token(team)
        if params.get("grant_type") != "refresh_token":
            answer["authed_user"] = {"id": "U0INSTALLER"}
        return answer

    def _auth_test(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        return {
            "url": "https://slack.example/",
            "team": "Paylink Test",
            "user": "paylink",
            "team_id": call.team or self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        channel = self._channel(params)
        blocks = params.get("blocks")
        if not params.get("text") and not blocks and not params.get("attachments"):
            raise _ApiError("no_text")
        if blocks is not None:
            self._require_blocks_ok(validate_blocks(blocks, surface="message"))
        thread_ts = params.get("thread_ts") or None
        if thread_ts:
            thread_ts = str(thread_ts)
            parent = self._messages.get((channel, thread_ts))
            if parent is not None and parent.thread_ts:
                thread_ts = parent.thread_ts  # replying to a reply lands in the same thread
        msg = PostedMessage(
            ts=self._next_ts(),
            channel=channel,
            thread_ts=thread_ts,
            text=params.get("text"),
            blocks=blocks,
            attachments=params.get("attachments"),
            metadata=params.get("metadata"),
            user=self.bot_user_id,
            posted_at=call.at,
            team=call.team,
        )
        self._messages[(channel, msg.ts)] = msg
        body = {"channel": channel, "ts": msg.ts, "message": self._message_payload(msg)}
        self._missing_text(params, body)
        return body

    def _chat_update(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        channel = params.get("channel")
        if not channel:
            raise _ApiError("channel_not_found")
        ts = str(params.get("ts") or "")
        msg = self._messages.get((channel, ts))
        if msg is None:
            raise _ApiError("message_not_found")
        blocks = params.get("blocks")
        if blocks is not None:
            self._require_blocks_ok(validate_blocks(blocks, surface="message"))
        if "text" not in params and blocks is None and "attachments" not in params:
            raise _ApiError("no_text")
        if "text" in params:
            msg.text = params["text"]
        if blocks is not None:
            msg.blocks = blocks or None
        if "attachments" in params:
            msg.attachments = params["attachments"]
        if "metadata" in params:
            msg.metadata = params["metadata"]
        msg.updated += 1
        body = {
            "channel": channel,
            "ts": ts,
            "text": msg.text or "",
            "message": self._message_payload(msg),
        }
        self._missing_text(params, body)
        return body

    def _chat_post_ephemeral(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        channel = self._channel(params)
        user = params.get("user")
        if not user:
            raise _ApiError("user_not_found")
        blocks = params.get("blocks")
        if not params.get("text") and not blocks and not params.get("attachments"):
            raise _ApiError("no_text")
        if blocks is not None:
            self._require_blocks_ok(validate_blocks(blocks, surface="message"))
        eph = Ephemeral(
            message_ts=self._next_ts(),
            channel=channel,
            user=str(user),
            text=params.get("text"),
            blocks=blocks,
            thread_ts=params.get("thread_ts") or None,
        )
        self._add_ephemeral(eph)
        return {"message_ts": eph.message_ts}

    def _add_ephemeral(self, eph: Ephemeral) -> None:
        answer_id = str(next(self._response_counter))
        eph.response_url = f"http://{self._host}:{self.port}/response/{answer_id}"
        self._answerable[answer_id] = eph
        self._ephemerals.append(eph)

    def _respond(self, answer_id: str, raw: bytes) -> tuple[int, str]:
        """A POST to an ephemeral's ``response_url``; returns (HTTP status, text), Slack's
        ``ok`` or the error. Recorded as a call of :data:`RESPONSE_URL`, whose faults
        (``fail_next``, ``set_delay``) it takes like a Web API method."""
        at = time.time()
        fault = self._delayed(RESPONSE_URL)
        try:
            params = json.loads(raw.decode("utf-8")) if raw else {}
        except (ValueError, UnicodeDecodeError):
            params = None
        call = Call(method=RESPONSE_URL, params=params or {}, response={}, at=at)
        headers: dict[str, str] = {}
        if fault is not None and not fault.after_effect:
            _apply_fault(fault, call, headers)
        else:
            with self._lock:
                try:
                    if not isinstance(params, dict):
                        raise _ApiError("invalid_payload")
                    self._answer(answer_id, params)
                    call.response = {"ok": True}
                except _ApiError as exc:
                    call.response = exc.body
                    call.status = 404 if exc.body["error"] == "expired_url" else 400
            if fault is not None:
                _apply_fault(fault, call, headers)
        if call.status == 200 and not call.ok:  # an injected error: not HTTP 200 here
            call.status = 400
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()
        return call.status, "ok" if call.ok else str(call.response.get("error"))

    def _answer(self, answer_id: str, params: dict[str, Any]) -> None:
        eph = self._answerable.get(answer_id)
        if eph is None:
            raise _ApiError("expired_url")
        if params.get("delete_original"):
            eph.deleted, eph.text, eph.blocks = True, None, None
            return
        text, blocks = params.get("text"), params.get("blocks")
        if not text and not blocks:
            raise _ApiError("no_text")
        if blocks is not None:
            self._require_blocks_ok(validate_blocks(blocks, surface="message"))
        if params.get("replace_original"):
            if eph.deleted:
                raise _ApiError("message_not_found")
            eph.text, eph.blocks = text, blocks
            eph.replaced += 1
            return
        if params.get("response_type") == "in_channel":
            raise _ApiError("in_channel_not_supported_by_the_stand_in")
        self._add_ephemeral(
            Ephemeral(
                message_ts=self._next_ts(),
                channel=eph.channel,
                user=eph.user,
                text=text,
                blocks=blocks,
                thread_ts=eph.thread_ts,
            )
        )

    def _chat_get_permalink(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        channel = params.get("channel")
        if not channel:
            raise _ApiError("channel_not_found")
        ts = str(params.get("message_ts") or "")
        msg = self._messages.get((channel, ts))
        if msg is None:
            raise _ApiError("message_not_found")
        link = f"https://slack.example/archives/{channel}/p{ts.replace('.', '')}"
        if msg.thread_ts and msg.thread_ts != ts:
            link += f"?thread_ts={msg.thread_ts}&cid={channel}"
        return {"channel": channel, "permalink": link}

    def _history_payload(self, msg: PostedMessage, params: Mapping[str, Any]) -> dict[str, Any]:
        out = self._message_payload(msg)
        if str(params.get("include_all_metadata", "")).lower() in ("1", "true") and msg.metadata:
            out["metadata"] = msg.metadata
        return out

    def _conversations_history(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        """Top-level messages, newest first (``limit``, ``oldest``; metadata with
        include_all_metadata)."""
        channel = params.get("channel")
        if not channel:
            raise _ApiError("channel_not_found")
        limit, oldest = int(params.get("limit") or 100), float(params.get("oldest") or 0)
        found = sorted(
            (
                m
                for m in self._messages.values()
                if m.channel == channel
                and (m.thread_ts is None or m.thread_ts == m.ts)
                and m.posted_at >= oldest
            ),
            key=lambda m: _ts_key(m.ts),
            reverse=True,
        )
        return {
            "messages": [self._history_payload(m, params) for m in found[:limit]],
            "has_more": len(found) > limit,
        }

    def _conversations_replies(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        """The parent message and its replies since ``oldest``, oldest first."""
        channel, ts = params.get("channel"), str(params.get("ts") or "")
        if not channel:
            raise _ApiError("channel_not_found")
        if (channel, ts) not in self._messages:
            raise _ApiError("thread_not_found")
        limit, oldest = int(params.get("limit") or 100), float(params.get("oldest") or 0)
        replies = [
            self._history_payload(m, params)
            for m in self._messages.values()
            if m.channel == channel and m.thread_ts == ts and m.ts != ts and m.posted_at >= oldest
        ] + [
            self._file_share_payload(f, ts)
            for f in self._files
            if f.channel == channel and f.thread_ts == ts and f.ts and f.posted_at >= oldest
        ]
        found = [self._history_payload(self._messages[(channel, ts)], params)] + sorted(
            replies, key=lambda m: _ts_key(m["ts"])
        )
        return {"messages": found[:limit], "has_more": len(found) > limit}

    def _file_share_payload(self, shared: UploadedFile, thread_ts: str) -> dict[str, Any]:
        """A file shared in a thread, as conversations.replies shows it."""
        return {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "ts": shared.ts,
            "thread_ts": thread_ts,
            "parent_user_id": self.bot_user_id,
            "text": shared.initial_comment or "",
            "files": [
                {"id": shared.id, "name": shared.filename, "title": shared.title or shared.filename}
            ],
        }

    def _views_open(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        self._use_trigger(params)
        view = self._make_view(params.get("view"), "modal")
        self._views[view["id"]] = view
        self._views_opened.append(view["id"])
        return {"view": view}

    def _views_push(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        self._use_trigger(params)
        view = self._make_view(params.get("view"), "modal")
        self._views[view["id"]] = view
        return {"view": view}

    def _views_update(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        view_id, external_id = params.get("view_id"), params.get("external_id")
        if view_id:
            current = self._views.get(view_id)
        elif external_id:
            current = next(
                (v for v in self._views.values() if v.get("external_id") == external_id), None
            )
        else:
            raise _ApiError("invalid_arguments")
        if current is None:
            raise _ApiError("not_found")
        if params.get("hash") and params["hash"] != current["hash"]:
            raise _ApiError("hash_conflict")
        surface: Surface = "home" if current.get("type") == "home" else "modal"
        view = self._make_view(params.get("view"), surface, view_id=current["id"])
        view["root_view_id"] = current.get("root_view_id", current["id"])
        self._views[current["id"]] = view
        return {"view": view}

    def _views_publish(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        user = params.get("user_id")
        if not user:
            raise _ApiError("invalid_arguments")
        previous_id = self._home_views.get(str(user))
        expected_hash = self._views[previous_id]["hash"] if previous_id else None
        if expected_hash and params.get("hash") and params["hash"] != expected_hash:
            raise _ApiError("hash_conflict")
        view = self._make_view(params.get("view"), "home", view_id=previous_id)
        self._views[view["id"]] = view
        self._home_views[str(user)] = view["id"]
        return {"view": view}

    def _conversations_open(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        """The direct message with one user (``users``), as chat.postMessage to a user ID
        posts it."""
        users = [u for u in str(params.get("users") or "").split(",") if u]
        if not users:
            raise _ApiError("users_list_not_supplied")
        if len(users) > 1:
            raise _ApiError("not_implemented")  # group DMs: nothing here uses them
        return {"channel": {"id": self._channel({"channel": users[0]})}}

    def _files_get_upload_url(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        filename, length = params.get("filename"), str(params.get("length") or "")
        if not filename or not length.isdigit() or int(length) < 1:
            raise _ApiError("invalid_arguments")
        file_id = f"F{next(self._file_counter):08d}"
        self._uploads[file_id] = {
            "filename": str(filename),
            "length": int(length),
            "alt_txt": params.get("alt_txt"),
            "content": None,
        }
        return {
            "upload_url": f"http://{self._host}:{self.port}/upload/v1/{file_id}",
            "file_id": file_id,
        }

    def _receive_upload(self, file_id: str, content: bytes) -> tuple[int, str]:
        """The upload URL's answer to POSTed bytes: Slack's ``OK - <length>``."""
        with self._lock:
            upload = self._uploads.get(file_id)
            if upload is None:
                return 404, "not found"
            upload["content"] = content
        return 200, f"OK - {len(content)}"

    def _files_complete_upload(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        try:
            files = json.loads(params.get("files") or "")
        except ValueError:
            raise _ApiError("invalid_arguments") from None
        if not isinstance(files, list) or not files:
            raise _ApiError("invalid_arguments")
        channel = params.get("channel_id") or None
        thread_ts = params.get("thread_ts") or None
        if thread_ts and not channel:
            raise _ApiError("invalid_arguments")
        if thread_ts and (channel, thread_ts) not in self._messages:
            raise _ApiError("invalid_thread_ts")
        shared = []
        for item in files:
            upload = self._uploads.get(str((item or {}).get("id")))
            if upload is None or upload["content"] is None:
                raise _ApiError("file_not_found")
            if len(upload["content"]) != upload["length"]:
                raise _ApiError("file_upload_size_mismatch")
            shared.append((str(item["id"]), item.get("title"), upload))
        out = []
        for file_id, title, upload in shared:
            del self._uploads[file_id]
            self._files.append(
                UploadedFile(
                    id=file_id,
                    filename=upload["filename"],
                    title=title,
                    content=upload["content"],
                    channel=channel,
                    thread_ts=thread_ts,
                    initial_comment=params.get("initial_comment") or None,
                    alt_txt=upload["alt_txt"],
                    ts=self._next_ts() if channel else None,
                    posted_at=call.at,
                )
            )
            out.append(
                {"id": file_id, "title": title or upload["filename"], "name": upload["filename"]}
            )
        return {"files": out}

    def _usergroups_users_list(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        group = params.get("usergroup")
        if group not in self.usergroups:
            raise _ApiError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    def _users_info(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        user = params.get("user")
        if not isinstance(user, str) or not user or user[0] not in "UWB":
            raise _ApiError("user_not_found")
        return {"user": self.user_info(user)}

    def user_info(self, user: str) -> dict[str, Any]:
        """The user ``users.info`` describes: a made-up name unless ``users`` gave one."""
        is_bot = user == self.bot_user_id
        name = "paylink" if is_bot else f"user-{user.lower()}"
        info: dict[str, Any] = {
            "id": user,
            "team_id": self.team_id,
            "name": name,
            "real_name": name.title(),
            "deleted": False,
            "is_bot": is_bot,
            "is_admin": False,
            "tz": "Asia/Karachi",
            "tz_offset": 18000,
            "profile": {"display_name": name, "real_name": name.title()},
        }
        info.update(copy.deepcopy(self.users.get(user, {})))
        return info

    def display_name(self, user: str) -> str:
        """The name Slack shows for ``user``: their display name, else their user name."""
        info = self.user_info(user)
        return str(info.get("profile", {}).get("display_name") or info["name"])


# --------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _ts_key(ts: str) -> tuple[int, int]:
    sec, _, frac = ts.partition(".")
    return int(sec or 0), int(frac or 0)


def _parse_body(content_type: str, raw: bytes) -> dict[str, Any]:
    ctype = content_type.split(";")[0].strip().lower()
    if not raw:
        return {}
    if ctype == "application/json":
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("JSON body must be an object")
        return data
    if ctype == "multipart/form-data":
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw
        )
        out: dict[str, Any] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                payload = part.get_payload(decode=True) or b""
                out[str(name)] = (
                    payload if part.get_filename() else payload.decode("utf-8", "replace")
                )
        return out
    return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))


def _decode_json_params(params: dict[str, Any]) -> str | None:
    """Decode JSON-string params sent in a form body; returns an error name or None."""
    for key in _JSON_PARAMS:
        value = params.get(key)
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            try:
                params[key] = json.loads(value)
            except ValueError:
                return "invalid_blocks_format" if key == "blocks" else "invalid_arguments"
    return None


def _make_handler(standin: SlackStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "SlackStandIn/1.0"
        protocol_version = "HTTP/1.1"  # keep-alive, as Slack's API does
        # Headers and body leave in two writes: on a kept-alive connection Nagle's algorithm
        # would hold the body back until the client's delayed ACK.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return  # keep test output quiet

        def _reply(self, status: int, body: dict[str, Any], headers: Mapping[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _upload(self, file_id: str) -> None:
            self._text_reply(*standin._receive_upload(file_id, self._body()))

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _text_reply(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorize(self, query: dict[str, str]) -> None:
            """Slack's install page, approved at once by an admin of ``team``."""
            redirect_uri, team = query.get("redirect_uri"), query.get("team") or standin.team_id
            if not redirect_uri or query.get("client_id") != standin.client_id:
                self._reply(400, {"ok": False, "error": "invalid_client_id"}, {})
                return
            code = standin.authorize(team, redirect_uri)
            sep = "&" if "?" in redirect_uri else "?"
            target = (
                f"{redirect_uri}{sep}{urlencode({'code': code, 'state': query.get('state', '')})}"
            )
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _respond(self, answer_id: str) -> None:
            self._text_reply(*standin._respond(answer_id, self._body()))

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            if parts.path.startswith("/response/") and self.command == "POST":
                self._respond(parts.path.rsplit("/", 1)[1])
                return
            if parts.path.startswith("/upload/v1/") and self.command == "POST":
                self._upload(parts.path.rsplit("/", 1)[1])
                return
            if parts.path == "/oauth/v2/authorize":
                self._authorize(dict(parse_qsl(parts.query)))
                return
            if not parts.path.startswith("/api/"):
                self._reply(404, {"ok": False, "error": "not_found"}, {})
                return
            method = parts.path[len("/api/") :].strip("/")
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            params: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
            bad_request: str | None = None
            try:
                params.update(_parse_body(self.headers.get("Content-Type", ""), raw))
                bad_request = _decode_json_params(params)
            except (ValueError, UnicodeDecodeError):
                bad_request = "invalid_json"
            status, headers, body = standin._handle(
                method, params, self.headers.get("Authorization"), bad_request
            )
            self._reply(status, body, headers)

        do_POST = _serve
        do_GET = _serve

    return Handler
