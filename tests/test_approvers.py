"""Approvers from user IDs and user groups; a click never waits on a slow group lookup, and
a group Slack stops confirming stops approving."""

from __future__ import annotations

import logging
import time

import pytest
from slack_sdk import WebClient

from bot.local.standin import SlackStandIn
from bot.slack.approvers import PAUSED, WARMING_UP, ApprovalsPaused, ApproverDirectory
from tests.waiting import wait_until

pytestmark = pytest.mark.integration  # a Slack stand-in on a real socket in each test


def test_groups_are_resolved_and_a_stale_list_answers_at_once() -> None:
    with SlackStandIn(bot_token="xoxb-test", usergroups={"S0FIN": ["U0ANA"]}) as slack:
        client = WebClient(token="xoxb-test", base_url=slack.base_url)
        directory = ApproverDirectory(client, ["U0BOB", "S0FIN"], ttl=300)
        directory.refresh()  # as start-up does
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


def test_a_refusal_never_waits_on_slack_nor_asks_it_for_each_click() -> None:
    """Before the first lookup has answered, a click by someone not listed is refused at
    once, and a burst of them makes one usergroups.users.list call, not one each."""
    with SlackStandIn(bot_token="xoxb-test", usergroups={"S0FIN": ["U0ANA"]}) as slack:
        client = WebClient(token="xoxb-test", base_url=slack.base_url)
        directory = ApproverDirectory(client, ["U0BOB", "S0FIN"])
        slack.set_delay("usergroups.users.list", 1.0)
        started = time.monotonic()
        for _ in range(20):
            assert not directory.is_approver("U0EVE")
            with pytest.raises(ApprovalsPaused) as refused:
                directory.may_decide("U0EVE")
            # Nothing is wrong yet: the refusal says so rather than send people to the logs.
            assert refused.value.message == WARMING_UP
            assert directory.may_decide("U0BOB")  # listed by ID: never depends on Slack
        assert time.monotonic() - started < 0.5
        assert directory.groups_state == "paused"
        slack.wait_for(lambda s: s.calls_of("usergroups.users.list"), timeout=5)
        wait_until(lambda: directory.groups_state == "ok", 5)  # the answer is on its way back
        assert directory.may_decide("U0ANA")
        assert len(slack.calls_of("usergroups.users.list")) == 1


def test_removed_members_stop_approving_once_slack_stops_confirming_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While usergroups.users.list fails, the last list it gave approves for max_age only:
    someone removed from the group meanwhile cannot go on approving."""
    with SlackStandIn(bot_token="xoxb-test", usergroups={"S0FIN": ["U0ANA"]}) as slack:
        client = WebClient(token="xoxb-test", base_url=slack.base_url)
        directory = ApproverDirectory(client, ["S0FIN"], ttl=0.05, max_age=0.5, retry=0.05)
        directory.refresh()
        assert directory.may_decide("U0ANA")
        confirmed = time.monotonic()

        slack.usergroups["S0FIN"] = []  # Ana leaves the group; Slack stops answering
        slack.fail_next("usergroups.users.list", status=503, times=10_000)
        wait_until(lambda: not directory.is_approver("U0ANA"), 5, message="still approving")
        assert time.monotonic() - confirmed >= 0.5
        with pytest.raises(ApprovalsPaused) as refused:
            directory.may_decide("U0ANA")
        assert refused.value.message == PAUSED
        assert directory.groups_state == "paused"
        assert any(
            r.levelno == logging.WARNING and "paused" in r.getMessage() for r in caplog.records
        )

        slack.clear()  # Slack answers again, with the group as it is now
        wait_until(lambda: directory.groups_state == "ok", 5, message="still paused")
        assert not directory.may_decide("U0ANA")
