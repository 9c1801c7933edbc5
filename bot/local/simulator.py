"""Sends requests to the bot exactly as Slack would: signed form bodies and JSON events.

Used by ``paylink demo``, the end-to-end tests and the benchmarks.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import requests
from slack_sdk.signature import SignatureVerifier

TEAM = {"id": "T0PAYLINK", "domain": "paylink-demo"}
FORM = "application/x-www-form-urlencoded"  # slash commands and interactivity


@dataclass(frozen=True)
class Origin:
    """Where an interactive payload says it comes from: the workspace (``team``), the
    clicker's own team (``user_team``, the same unless they are a guest from elsewhere) and
    the Enterprise Grid organisation, if any. By default the stand-in's workspace."""

    team: str = TEAM["id"]
    user_team: str | None = None
    enterprise: str | None = None

    def payload(self, user: str) -> dict[str, Any]:
        """The ``team``, ``user`` and ``enterprise`` fields of a payload sent by ``user``."""
        return {
            "team": {"id": self.team, "domain": TEAM["domain"]},
            "user": {"id": user, "team_id": self.user_team or self.team},
            "enterprise": {"id": self.enterprise} if self.enterprise else None,
            "is_enterprise_install": False,
        }


class SlackSimulator:
    """Plays Slack's side of the conversation against ``{base_url}/slack/events``."""

    def __init__(
        self, base_url: str, signing_secret: str, *, session: requests.Session | None = None
    ):
        self.url = base_url.rstrip("/") + "/slack/events"
        self.verifier = SignatureVerifier(signing_secret)
        self.http = session or requests.Session()

    def signed_headers(
        self, body: str, content_type: str, *, timestamp: int | None = None
    ) -> dict[str, str]:
        """The headers Slack sends with ``body``: its content type, timestamp and signature."""
        ts = str(timestamp if timestamp is not None else int(time.time()))
        return {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": self.verifier.generate_signature(timestamp=ts, body=body),
        }

    def post(
        self,
        body: str,
        content_type: str,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> requests.Response:
        """POST a body signed as Slack signs it (or with the given bad signature)."""
        headers = self.signed_headers(body, content_type, timestamp=timestamp)
        if signature:
            headers["X-Slack-Signature"] = signature
        return self.http.post(self.url, data=body.encode("utf-8"), headers=headers, timeout=10)

    def command(
        self,
        user: str,
        text: str = "",
        *,
        channel: str = "C0SALES",
        trigger_id: str | None = None,
        team: str = TEAM["id"],
        **kwargs: Any,
    ) -> requests.Response:
        """``/paylink <text>`` typed by ``user`` in ``channel`` of workspace ``team``."""
        return self.post(command_body(user, text, channel, trigger_id, team), FORM, **kwargs)

    def interactive(self, payload: dict[str, Any], **kwargs: Any) -> requests.Response:
        """An interactivity payload (``payload=<json>``)."""
        return self.post(interactive_body(payload), FORM, **kwargs)

    def submit_view(
        self,
        user: str,
        view: dict[str, Any],
        values: dict[str, Any],
        *,
        origin: Origin | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Submit ``view`` (as opened by the bot) with ``values`` as Slack's state, from the
        bot's own workspace unless ``origin`` says otherwise."""
        return self.post(view_submission_body(user, view, values, origin), FORM, **kwargs)

    def click(
        self,
        user: str,
        message: dict[str, Any],
        action_id: str,
        *,
        channel: str,
        origin: Origin | None = None,
    ) -> requests.Response:
        """Click the button ``action_id`` on a message the bot posted, from the bot's own
        workspace unless ``origin`` says otherwise."""
        return self.interactive(
            click_payload(user, message, action_id, channel=channel, origin=origin)
        )

    def click_ephemeral(
        self,
        user: str,
        ephemeral: Any,
        action_id: str,
        *,
        origin: Origin | None = None,
    ) -> requests.Response:
        """Click the button ``action_id`` on an ephemeral message the bot posted to ``user``
        (the stand-in's :class:`~bot.local.standin.Ephemeral`): the payload carries the
        ephemeral's ``response_url``, as Slack's does."""
        return self.interactive(ephemeral_click_payload(user, ephemeral, action_id, origin=origin))

    def click_view(
        self,
        user: str,
        view: dict[str, Any],
        action_id: str,
        *,
        origin: Origin | None = None,
        trigger_id: str | None = None,
    ) -> requests.Response:
        """Click the button ``action_id`` in a view the bot published or opened (App Home,
        a modal), from the bot's own workspace unless ``origin`` says otherwise; with
        ``trigger_id``, the modal the click opens can be told from others."""
        button = find_action(view.get("blocks") or [], action_id)
        if button is None:
            raise LookupError(f"no {action_id} button in the view")
        return self.interactive(
            {
                "type": "block_actions",
                **(origin or Origin()).payload(user),
                "api_app_id": "A0PAYLINK",
                "trigger_id": trigger_id or new_trigger_id(),
                "container": {"type": "view", "view_id": view.get("id", "")},
                "view": view,
                "actions": [_pressed(action_id, button)],
            }
        )

    def home_opened(self, user: str, *, team: str = TEAM["id"], **kwargs: Any) -> requests.Response:
        """The ``app_home_opened`` event for ``user`` of workspace ``team``."""
        return self.post(json.dumps(home_opened_payload(user, team)), "application/json", **kwargs)

    def event(
        self, event: dict[str, Any], *, team: str = TEAM["id"], **kwargs: Any
    ) -> requests.Response:
        """An Events API delivery of ``event`` about workspace ``team``."""
        return self.post(json.dumps(event_payload(event, team)), "application/json", **kwargs)


def command_body(
    user: str,
    text: str = "",
    channel: str = "C0SALES",
    trigger_id: str | None = None,
    team: str = TEAM["id"],
) -> str:
    """The form body of ``/paylink <text>`` typed by ``user`` in ``channel`` of ``team``."""
    return urlencode(command_payload(user, text, channel, trigger_id, team))


def command_payload(
    user: str,
    text: str = "",
    channel: str = "C0SALES",
    trigger_id: str | None = None,
    team: str = TEAM["id"],
) -> dict[str, str]:
    """The fields of ``/paylink <text>`` typed by ``user`` in ``channel`` of ``team``: a form
    body over HTTP, a ``slash_commands`` envelope's payload in Socket Mode."""
    return {
        "token": "verification-token-unused",
        "team_id": team,
        "team_domain": TEAM["domain"],
        "channel_id": channel,
        "channel_name": "sales",
        "user_id": user,
        "user_name": user.lower(),
        "command": "/paylink",
        "text": text,
        "api_app_id": "A0PAYLINK",
        "response_url": "https://hooks.slack.com/commands/T0PAYLINK/1/x",
        "trigger_id": trigger_id or new_trigger_id(),
    }


def view_submission_body(
    user: str, view: dict[str, Any], values: dict[str, Any], origin: Origin | None = None
) -> str:
    """The form body of ``view`` submitted by ``user`` with ``values`` as Slack's state."""
    return interactive_body(view_submission_payload(user, view, values, origin))


def view_submission_payload(
    user: str, view: dict[str, Any], values: dict[str, Any], origin: Origin | None = None
) -> dict[str, Any]:
    """The ``view_submission`` payload of ``view`` submitted by ``user`` with ``values``."""
    submitted = dict(view, id=view.get("id", "V0MODAL"), state={"values": values})
    return {
        "type": "view_submission",
        **(origin or Origin()).payload(user),
        "api_app_id": "A0PAYLINK",
        "trigger_id": new_trigger_id(),
        "view": submitted,
    }


def click_payload(
    user: str,
    message: dict[str, Any],
    action_id: str,
    *,
    channel: str,
    origin: Origin | None = None,
) -> dict[str, Any]:
    """The ``block_actions`` payload of ``user`` clicking the button ``action_id`` on a
    message the bot posted in ``channel``."""
    button = find_action(message.get("blocks") or [], action_id)
    if button is None:
        raise LookupError(f"no {action_id} button on the message")
    return {
        "type": "block_actions",
        **(origin or Origin()).payload(user),
        "api_app_id": "A0PAYLINK",
        "trigger_id": new_trigger_id(),
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel},
        "channel": {"id": channel},
        "message": {"ts": message["ts"], "blocks": message.get("blocks")},
        "actions": [_pressed(action_id, button)],
    }


def ephemeral_click_payload(
    user: str, ephemeral: Any, action_id: str, *, origin: Origin | None = None
) -> dict[str, Any]:
    """The ``block_actions`` payload of ``user`` clicking the button ``action_id`` on
    ``ephemeral`` (``message_ts``, ``channel``, ``blocks``, ``response_url``): the container
    says ``is_ephemeral``, the ``response_url`` answers it, and there is no ``message``
    (Slack keeps no copy of an ephemeral to send)."""
    payload = click_payload(
        user,
        {"ts": ephemeral.message_ts, "blocks": ephemeral.blocks},
        action_id,
        channel=ephemeral.channel,
        origin=origin,
    )
    del payload["message"]
    payload["container"]["is_ephemeral"] = True
    payload["response_url"] = ephemeral.response_url
    return payload


def _pressed(action_id: str, button: dict[str, Any]) -> dict[str, Any]:
    """The ``actions`` entry of a click on ``button``."""
    return {
        "type": "button",
        "action_id": action_id,
        "block_id": button["block_id"],
        "value": button.get("value", ""),
        "action_ts": f"{time.time():.6f}",
    }


def home_opened_payload(user: str, team: str = TEAM["id"]) -> dict[str, Any]:
    """The ``event_callback`` of ``app_home_opened`` for ``user`` (its ``event_id`` new)."""
    home = {"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home"}
    return event_payload(home, team)


def event_payload(event: dict[str, Any], team: str = TEAM["id"]) -> dict[str, Any]:
    """The ``event_callback`` delivering ``event`` about workspace ``team`` (a new
    ``event_id``)."""
    return {
        "token": "unused",
        "team_id": team,
        "api_app_id": "A0PAYLINK",
        "type": "event_callback",
        "event_id": "Ev" + uuid.uuid4().hex[:10].upper(),
        "event_time": int(time.time()),
        "event": event,
    }


def interactive_body(payload: dict[str, Any]) -> str:
    """The form body of an interactivity payload."""
    return urlencode({"payload": json.dumps(payload)})


def new_trigger_id() -> str:
    """A fresh trigger id shaped like Slack's."""
    return f"{int(time.time())}.1.{uuid.uuid4().hex}"


def find_action(blocks: list[dict[str, Any]], action_id: str) -> dict[str, Any] | None:
    """The element with ``action_id`` (and its ``block_id``) in ``blocks``."""
    for block in blocks:
        elements = list(block.get("elements") or [])
        if block.get("accessory"):
            elements.append(block["accessory"])
        for element in elements:
            if element.get("action_id") == action_id:
                return dict(element, block_id=block.get("block_id"))
    return None


def state_values(view: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """Slack's ``view.state.values`` for the modal's inputs filled with ``fields``."""
    values: dict[str, Any] = {}
    for block in view.get("blocks", []):
        if block.get("type") != "input":
            continue
        block_id, element = block["block_id"], block["element"]
        raw = fields.get(block_id)
        kind = element["type"]
        if kind == "static_select":
            state = {"type": kind, "selected_option": {"value": raw} if raw else None}
        elif kind == "checkboxes":
            state = {"type": kind, "selected_options": [{"value": v} for v in raw or []]}
        elif kind == "multi_users_select":
            state = {"type": kind, "selected_users": list(raw or [])}
        elif kind == "conversations_select":
            state = {"type": kind, "selected_conversation": raw or None}
        elif kind == "multi_conversations_select":
            state = {"type": kind, "selected_conversations": list(raw or [])}
        else:
            state = {"type": kind, "value": raw if raw not in ("", None) else None}
        values[block_id] = {element["action_id"]: state}
    return values
