"""The Slack app manifests ask for exactly what the code uses: manifest.yml (one workspace,
HTTP), manifests/socket.yml (Socket Mode), manifests/distributed.yml (OAuth installs) and
manifests/socket-distributed.yml (OAuth installs, Socket Mode)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bot.local.demo import play_flow
from bot.local.stack import APPROVER, REP, LocalStack
from bot.slack.oauth import BOT_SCOPES, REDIRECT_PATH

ROOT = Path(__file__).parent.parent
MANIFEST = yaml.safe_load((ROOT / "manifest.yml").read_text())
SOCKET = yaml.safe_load((ROOT / "manifests" / "socket.yml").read_text())
DISTRIBUTED = yaml.safe_load((ROOT / "manifests" / "distributed.yml").read_text())
SOCKET_DISTRIBUTED = yaml.safe_load((ROOT / "manifests" / "socket-distributed.yml").read_text())
SCHEMA = json.loads((Path(__file__).parent / "data" / "slack_manifest.schema.json").read_text())

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


@pytest.mark.parametrize(
    "manifest",
    [MANIFEST, SOCKET, DISTRIBUTED, SOCKET_DISTRIBUTED],
    ids=["manifest", "socket", "distributed", "socket-distributed"],
)
def test_every_manifest_is_one_slack_accepts(manifest: dict[str, Any]) -> None:
    jsonschema.validate(manifest, SCHEMA)


def test_a_misspelt_key_fails_the_schema() -> None:
    wrong = dict(MANIFEST, settings=dict(MANIFEST["settings"], socket_mode=True))
    with pytest.raises(jsonschema.ValidationError, match="socket_mode"):
        jsonschema.validate(wrong, SCHEMA)


def _urls(node: Any) -> list[str]:
    """Every request URL in a manifest."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("url", "request_url")]
        return found + [u for v in node.values() for u in _urls(v)]
    if isinstance(node, list):
        return [u for item in node for u in _urls(item)]
    return []


def test_socket_mode_manifest_has_no_request_urls_and_the_same_app() -> None:
    assert SOCKET["settings"]["socket_mode_enabled"] is True
    assert _urls(SOCKET) == []
    assert SOCKET["oauth_config"]["scopes"] == MANIFEST["oauth_config"]["scopes"]
    assert (
        SOCKET["settings"]["event_subscriptions"]["bot_events"]
        == MANIFEST["settings"]["event_subscriptions"]["bot_events"]
    )
    assert [c["command"] for c in SOCKET["features"]["slash_commands"]] == ["/paylink"]


def test_distributed_manifest_redirects_to_the_oauth_route_and_hears_of_uninstalls() -> None:
    redirect = DISTRIBUTED["oauth_config"]["redirect_urls"]
    assert len(redirect) == 1 and redirect[0].endswith(REDIRECT_PATH)
    # The install asks for exactly the scopes the app declares, which are manifest.yml's.
    assert DISTRIBUTED["oauth_config"]["scopes"]["bot"] == list(BOT_SCOPES)
    assert set(BOT_SCOPES) == set(MANIFEST["oauth_config"]["scopes"]["bot"])
    events = DISTRIBUTED["settings"]["event_subscriptions"]["bot_events"]
    assert set(events) == {"app_home_opened", "app_uninstalled", "tokens_revoked"}
    urls = _urls(DISTRIBUTED)
    assert len(urls) == 3 and all(u.endswith("/slack/events") for u in urls)
    assert DISTRIBUTED["settings"]["socket_mode_enabled"] is False


def test_socket_distributed_manifest_is_distributed_s_app_over_socket_mode() -> None:
    """manifests/distributed.yml's app (its redirect, scopes and events) with Socket Mode's
    settings: no request URL; the OAuth redirect is the one URL Paylink still needs."""
    assert SOCKET_DISTRIBUTED["settings"]["socket_mode_enabled"] is True
    assert _urls(SOCKET_DISTRIBUTED) == []
    assert SOCKET_DISTRIBUTED["oauth_config"] == DISTRIBUTED["oauth_config"]
    assert (
        SOCKET_DISTRIBUTED["settings"]["event_subscriptions"]["bot_events"]
        == DISTRIBUTED["settings"]["event_subscriptions"]["bot_events"]
    )
    assert SOCKET_DISTRIBUTED["features"] == SOCKET["features"]
    assert SOCKET_DISTRIBUTED["settings"]["interactivity"] == SOCKET["settings"]["interactivity"]
