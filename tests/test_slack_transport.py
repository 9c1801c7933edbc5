"""The pooled Slack client: calls share a connection, and failures look to slack_sdk (its
retry handlers, SlackApiError) and to the outbox exactly as they do over urllib."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.error import URLError

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

from bot.local.standin import SlackStandIn
from bot.slack.transport import PooledWebClient

pytestmark = pytest.mark.integration  # the stand-in on a real socket, also started in a test

TOKEN = "xoxb-test"  # noqa: S105 - the stand-in's test token


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(bot_token=TOKEN) as standin:
        yield standin


def client(slack: SlackStandIn, **kw) -> PooledWebClient:
    return PooledWebClient(token=TOKEN, base_url=slack.base_url, **kw)


def test_calls_share_one_connection(slack: SlackStandIn) -> None:
    web = client(slack)
    for i in range(20):
        posted = web.chat_postMessage(channel="C1", text=f"card {i}")
        web.chat_update(channel="C1", ts=posted["ts"], text=f"card {i}, paid")
    assert [m.text for m in slack.messages("C1")][-1] == "card 19, paid"
    assert slack.connections_accepted == 1


def test_slack_refusal_is_a_slack_api_error(slack: SlackStandIn) -> None:
    with pytest.raises(SlackApiError) as refused:
        client(slack).chat_update(channel="C1", ts="1.000001", text="x")
    assert refused.value.response["error"] == "message_not_found"


def test_rate_limit_keeps_status_and_retry_after(slack: SlackStandIn) -> None:
    slack.fail_next("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as limited:
        client(slack).chat_postMessage(channel="C1", text="card")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "7"
    assert slack.messages("C1") == []


def test_retry_handlers_still_retry(slack: SlackStandIn) -> None:
    slack.fail_next("chat.postMessage", status=503)
    quick = FixedValueRetryIntervalCalculator(0.01)
    web = client(slack, retry_handlers=[ServerErrorRetryHandler(1, interval_calculator=quick)])
    assert web.chat_postMessage(channel="C1", text="card")["ok"]
    assert len(slack.messages("C1")) == 1


def test_no_answer_in_time_is_a_timeout(slack: SlackStandIn) -> None:
    # SlackDelivery waits before looking for the post that may still land: it needs to
    # tell a timeout from other failures.
    slack.set_delay("chat.postMessage", 0.5)
    with pytest.raises(TimeoutError):
        client(slack, timeout=0.1).chat_postMessage(channel="C1", text="card")


def test_stopped_slack_fails_and_recovers_on_a_new_connection() -> None:
    slack = SlackStandIn(bot_token=TOKEN).start()
    port = slack.port
    web = PooledWebClient(token=TOKEN, base_url=slack.base_url)
    assert web.auth_test()["ok"]
    slack.stop()  # the kept-alive connection goes too
    with pytest.raises(URLError):
        web.auth_test()
    with SlackStandIn(bot_token=TOKEN, port=port) as again:
        retrying = PooledWebClient(
            token=TOKEN,
            base_url=again.base_url,
            retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1)],
        )
        assert retrying.auth_test()["ok"]
        assert web.auth_test()["ok"]
