"""The Slack app manifest asks for exactly what the code uses."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.local.demo import play_flow
from bot.local.stack import APPROVER, REP, LocalStack

MANIFEST = yaml.safe_load((Path(__file__).parent.parent / "manifest.yml").read_text())

# The bot scope each Web API method needs (methods with no scope map to None).
SCOPE_OF = {
    "auth.test": None,
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "chat.getPermalink": None,
    "views.open": None,
    "views.update": None,
    "views.publish": None,
    "usergroups.users.list": "usergroups:read",
    "users.info": "users:read",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    "conversations.open": "im:write",
}


def test_manifest_routes_every_slack_request_to_the_one_endpoint() -> None:
    settings = MANIFEST["settings"]
    (command,) = MANIFEST["features"]["slash_commands"]
    assert command["command"] == "/paylink"
    urls = {
        command["url"],
        settings["interactivity"]["request_url"],
        settings["event_subscriptions"]["request_url"],
    }
    assert len(urls) == 1 and urls.pop().endswith("/slack/events")
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    assert MANIFEST["features"]["app_home"]["home_tab_enabled"] is True
    assert settings["socket_mode_enabled"] is False


@pytest.mark.integration  # the whole flow on the local stack
def test_manifest_scopes_are_the_ones_the_flow_uses() -> None:
    # Approvers through a user group, so usergroups.users.list is exercised too.
    with LocalStack(paylink_approvers=["S0FINANCE"]) as stack:
        play_flow(stack, say=lambda _line: None)
        stack.simulator.home_opened(REP).raise_for_status()
        stack.simulator.home_opened(APPROVER).raise_for_status()
        stack.slack.wait_for(lambda s: len(s.home_views) == 2)
        methods = {call.method for call in stack.slack.calls}
    unknown = methods - SCOPE_OF.keys()
    assert not unknown, f"add these methods' scopes to SCOPE_OF and the manifest: {unknown}"
    used = {SCOPE_OF[m] for m in methods} - {None}
    declared = set(MANIFEST["oauth_config"]["scopes"]["bot"])
    # commands: the slash command; chat:write.public: posting cards in channels the bot has
    # not joined (the stand-in does not model channel membership).
    # channels:history / groups:history: only read after a post timed out, to find the card
    # or reply if it landed anyway instead of posting twice (tests/test_faults.py).
    # im:write: `/paylink export` opens a DM for the file (tests/test_sharing_flow.py).
    assert declared == used | {
        "commands",
        "chat:write.public",
        "channels:history",
        "groups:history",
        "im:write",
    }
