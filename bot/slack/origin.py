"""Which workspace a Slack payload comes from, and which one this installation is in.

Slack signs every workspace's requests to an app with the app's one signing secret, so a
verified payload may still come from a workspace other than the link's (the app installed
twice, a guest from elsewhere in a shared channel).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slack_bolt import BoltContext
from slack_sdk.web import SlackResponse

from bot.links.workspaces import Workspace


def _id(value: Any, key: str = "id") -> str | None:
    found = value.get(key) if isinstance(value, Mapping) else None
    return found if isinstance(found, str) and found else None


def sender(body: Mapping[str, Any]) -> Workspace:
    """The workspace a click or submission came from: the team the payload names, which
    must be the user's own team too (else the team is None: nobody's), and its Enterprise
    Grid organisation."""
    team, user_team = _id(body.get("team")), _id(body.get("user"), "team_id")
    if user_team is not None and user_team != team:
        team = None
    return Workspace(team, _id(body.get("enterprise")))


def workspace_of(body: Mapping[str, Any]) -> Workspace:
    """The workspace a slash command or an Events API envelope comes from (their bodies
    name it flat: ``team_id``, ``enterprise_id``)."""
    return Workspace(_id(body, "team_id"), _id(body, "enterprise_id"))


def installed_in(context: BoltContext) -> Workspace | None:
    """This installation's workspace, as auth.test told Bolt (which asks before it hands
    an interactive payload to a listener, and refuses the payload when it cannot)."""
    result = context.authorize_result
    if result is None:
        return None
    return Workspace(result.team_id or None, result.enterprise_id or None)


def of_auth_test(response: SlackResponse) -> Workspace:
    """The workspace an ``auth.test`` answer names."""
    return Workspace(response.get("team_id") or None, response.get("enterprise_id") or None)
