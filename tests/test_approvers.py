"""Approvers from user IDs and user groups; a click never waits on a slow group lookup."""

from __future__ import annotations

import time

import pytest
from slack_sdk import WebClient

from bot.local.standin import SlackStandIn
from bot.slack.approvers import ApproverDirectory

pytestmark = pytest.mark.integration  # a Slack stand-in on a real socket in each test


def test_groups_are_resolved_and_a_stale_list_answers_at_once() -> None:
    with SlackStandIn(bot_token="xoxb-test", usergroups={"S0FIN": ["U0ANA"]}) as slack:
        client = WebClient(token="xoxb-test", base_url=slack.base_url)
        directory = ApproverDirectory(client, ["U0BOB", "S0FIN"], ttl=300)
        assert directory.is_approver("U0BOB") and directory.is_approver("U0ANA")
        assert not directory.is_approver("U0EVE")
        lookups = len(slack.calls_of("usergroups.users.list"))

        directory.ttl = 0  # the list is now stale, and Slack has become slow
        slack.set_delay("usergroups.users.list", 2.0)
        started = time.monotonic()
        assert directory.is_approver("U0ANA")  # answered from the stale list
        assert time.monotonic() - started < 1.0
        # ... while the refresh happens in the background.
        slack.wait_for(lambda s: len(s.calls_of("usergroups.users.list")) > lookups, timeout=5)


def test_a_failing_lookup_keeps_the_last_good_list() -> None:
    with SlackStandIn(bot_token="xoxb-test", usergroups={"S0FIN": ["U0ANA"]}) as slack:
        client = WebClient(token="xoxb-test", base_url=slack.base_url)
        directory = ApproverDirectory(client, ["S0FIN"], ttl=0.0)
        directory.refresh()
        slack.fail_next("usergroups.users.list", status=200, error="ratelimited")
        directory.refresh()
        assert directory.is_approver("U0ANA")
