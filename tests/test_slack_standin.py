"""Tests for the local Slack Web API stand-in, driven through the real slack_sdk WebClient."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextBlock,
    EmailInputElement,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    NumberInputElement,
    Option,
    PlainTextInputElement,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View
from slack_sdk.webhook import WebhookClient

from bot.local.simulator import ephemeral_click_payload
from bot.local.standin import RESPONSE_URL, SlackStandIn, validate_blocks


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(usergroups={"S123": ["U1", "U2"]}) as standin:
        yield standin


@pytest.fixture
def client(slack: SlackStandIn) -> WebClient:
    return WebClient(token="xoxb-test", base_url=slack.base_url, timeout=5)


def _error(exc: pytest.ExceptionInfo[SlackApiError]) -> str:
    return exc.value.response["error"]


def card_blocks(status: str = "Awaiting approval") -> list:
    return [
        HeaderBlock(text="Payment link request"),
        SectionBlock(
            block_id="summary",
            text=MarkdownTextObject(text="*PKR 5,000* for Ali"),
            fields=[MarkdownTextObject(text="*Order*\nORD-1"), MarkdownTextObject(text="*By*")],
        ),
        ContextBlock(block_id="status", elements=[MarkdownTextObject(text=f"Status: {status}")]),
        ActionsBlock(
            block_id="decide",
            elements=[
                ButtonElement(text="Approve", action_id="approve", value="L1", style="primary"),
                ButtonElement(text="Reject", action_id="reject", value="L1", style="danger"),
            ],
        ),
    ]


def valid_modal() -> View:
    return View(
        type="modal",
        callback_id="paylink_create",
        title="New payment link",
        submit="Create",
        close="Cancel",
        private_metadata=json.dumps({"channel": "C1"}),
        blocks=[
            InputBlock(
                block_id="amount",
                label="Amount",
                element=NumberInputElement(action_id="value", is_decimal_allowed=True),
            ),
            InputBlock(
                block_id="currency",
                label="Currency",
                element=StaticSelectElement(
                    action_id="value",
                    placeholder="Pick one",
                    options=[Option(text="PKR", value="PKR"), Option(text="USD", value="USD")],
                ),
            ),
            InputBlock(
                block_id="email",
                label="Customer e-mail",
                optional=True,
                hint="Either e-mail or phone",
                element=EmailInputElement(action_id="value"),
            ),
            InputBlock(
                block_id="name",
                label="Customer name",
                element=PlainTextInputElement(action_id="value", max_length=200),
            ),
        ],
    )


# ------------------------------------------------------------------ messages


def test_post_update_thread_permalink(slack: SlackStandIn, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="C1", text="Payment request", blocks=card_blocks())
    ts = posted["ts"]
    assert posted["channel"] == "C1"
    assert posted["message"]["text"] == "Payment request"
    assert ts.startswith("1700000000.") and len(ts.split(".")[1]) == 6

    reply = client.chat_postMessage(channel="C1", text="Link: https://pay", thread_ts=ts)
    assert float(reply["ts"]) > float(ts)
    assert reply["message"]["thread_ts"] == ts

    updated = client.chat_update(
        channel="C1", ts=ts, text="Approved", blocks=card_blocks("Awaiting payment")
    )
    assert updated["ts"] == ts

    thread = slack.thread("C1", ts)
    assert [m.ts for m in thread] == [ts, reply["ts"]]
    assert thread[0].text == "Approved" and thread[0].updated == 1
    assert thread[0].blocks[2]["elements"][0]["text"] == "Status: Awaiting payment"
    assert thread[1].thread_ts == ts
    assert len(slack.messages("C1")) == 2 and slack.messages("C2") == []

    link = client.chat_getPermalink(channel="C1", message_ts=ts)["permalink"]
    assert link == f"https://slack.example/archives/C1/p{ts.replace('.', '')}"
    reply_link = client.chat_getPermalink(channel="C1", message_ts=reply["ts"])["permalink"]
    assert f"thread_ts={ts}" in reply_link

    text = slack.render_thread_text("C1", ts)
    assert "Status: Awaiting payment" in text and "[Approve] [Reject]" in text
    assert "*PKR 5,000* for Ali" in text and "Link: https://pay" in text
    assert slack.missing_text_warnings == []


def test_update_unknown_message_and_ephemeral(slack: SlackStandIn, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as exc:
        client.chat_update(channel="C1", ts="1700000000.999999", text="x")
    assert _error(exc) == "message_not_found"

    eph = client.chat_postEphemeral(channel="C1", user="U9", text="Only approvers may approve")
    assert eph["message_ts"]
    assert slack.ephemerals[0].user == "U9"
    # An ephemeral is not a message the bot can update.
    with pytest.raises(SlackApiError) as exc:
        client.chat_update(channel="C1", ts=eph["message_ts"], text="x")
    assert _error(exc) == "message_not_found"
    assert slack.messages() == []


def test_an_ephemerals_response_url_replaces_deletes_or_follows_it(
    slack: SlackStandIn, client: WebClient
) -> None:
    """What a click on an ephemeral may do with the ``response_url`` it came with, as
    slack_sdk's WebhookClient (and Bolt's ``respond``) send it."""
    question = card_blocks()[-1:]
    client.chat_postEphemeral(channel="C1", user="U9", text="Send it?", blocks=question)
    client.chat_postEphemeral(channel="C1", user="U9", text="Only approvers may approve")
    first, second = slack.ephemerals
    assert first.response_url and second.response_url
    assert first.response_url.startswith(f"http://127.0.0.1:{slack.port}/response/")
    assert first.response_url != second.response_url
    click = ephemeral_click_payload("U9", first, "approve")
    assert click["response_url"] == first.response_url and "message" not in click
    assert click["container"] == {
        "type": "message",
        "message_ts": first.message_ts,
        "channel_id": "C1",
        "is_ephemeral": True,
    }
    assert click["actions"][0]["value"] == "L1"

    replaced = WebhookClient(first.response_url).send_dict(
        {"replace_original": True, "text": "Sending…"}
    )
    assert (replaced.status_code, replaced.body) == (200, "ok")
    (call,) = slack.calls_of(RESPONSE_URL)
    assert call.ok and call.params == {"replace_original": True, "text": "Sending…"}
    first, _ = slack.ephemerals
    assert (first.text, first.blocks, first.replaced, first.deleted) == ("Sending…", None, 1, False)
    assert slack.messages() == []

    followed = WebhookClient(first.response_url).send(text="And another thing")
    assert followed.status_code == 200
    assert [(e.user, e.channel, e.text) for e in slack.ephemerals[2:]] == [
        ("U9", "C1", "And another thing")
    ]
    assert slack.ephemerals[0].text == "Sending…"

    assert WebhookClient(second.response_url).send_dict({"delete_original": True}).body == "ok"
    second = slack.ephemerals[1]
    assert second.deleted and second.text is None and second.replaced == 0

    no_text = WebhookClient(first.response_url).send_dict({"replace_original": True})
    assert (no_text.status_code, no_text.body) == (400, "no_text")
    base = first.response_url.rsplit("/", 1)[0]
    unknown = WebhookClient(f"{base}/999").send(text="x")
    assert (unknown.status_code, unknown.body) == (404, "expired_url")
    slack.fail_next(RESPONSE_URL, status=500)
    failed = WebhookClient(first.response_url).send_dict({"replace_original": True, "text": "y"})
    assert failed.status_code == 500
    assert slack.ephemerals[0].text == "Sending…"  # a failed answer changes nothing
    assert [c.status for c in slack.calls_of(RESPONSE_URL)] == [200, 200, 200, 400, 404, 500]


def test_form_encoded_body_with_json_blocks(slack: SlackStandIn, client: WebClient) -> None:
    blocks = [b.to_dict() for b in card_blocks()]
    resp = client.api_call(
        "chat.postMessage",
        params={"channel": "C1", "text": "hi", "blocks": json.dumps(blocks)},
    )
    assert resp["ok"]
    assert slack.messages()[0].blocks == blocks
    assert slack.calls_of("chat.postMessage")[0].params["blocks"] == blocks


def test_missing_text_is_only_a_warning(slack: SlackStandIn, client: WebClient) -> None:
    with pytest.warns(UserWarning):
        resp = client.chat_postMessage(channel="C1", blocks=card_blocks())
    assert resp["ok"]
    assert [c.method for c in slack.missing_text_warnings] == ["chat.postMessage"]


def test_invalid_auth_and_unknown_method(slack: SlackStandIn) -> None:
    bad = WebClient(token="xoxb-wrong", base_url=slack.base_url)
    with pytest.raises(SlackApiError) as exc:
        bad.chat_postMessage(channel="C1", text="hi")
    assert _error(exc) == "invalid_auth"
    assert exc.value.response.status_code == 200
    assert slack.messages() == []
    assert slack.calls_of("chat.postMessage")[0].response["error"] == "invalid_auth"

    good = WebClient(token="xoxb-test", base_url=slack.base_url)
    with pytest.raises(SlackApiError) as exc:
        good.api_call("payments.teleport")
    assert _error(exc) == "unknown_method"
    assert good.auth_test()["user_id"] == slack.bot_user_id


# ------------------------------------------------------------------ limits


def _section(text: str = "x", **extra: Any) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def _button(text: str = "Go", value: str = "v", action_id: str = "go") -> dict:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "value": value,
        "action_id": action_id,
    }


def _select(options: list[dict], placeholder: str = "Pick") -> dict:
    return {
        "type": "static_select",
        "action_id": "sel",
        "placeholder": {"type": "plain_text", "text": placeholder},
        "options": options,
    }


def _opt(text: str = "A", value: str = "a") -> dict:
    return {"text": {"type": "plain_text", "text": text}, "value": value}


def _input(element: dict, label: str = "Label", **extra: Any) -> dict:
    return {
        "type": "input",
        "block_id": "in",
        "label": {"type": "plain_text", "text": label},
        "element": element,
        **extra,
    }


def _text_input(**extra: Any) -> dict:
    return {"type": "plain_text_input", "action_id": "v", **extra}


def _modal(blocks: list[dict], **extra: Any) -> dict:
    view = {
        "type": "modal",
        "title": {"type": "plain_text", "text": "Title"},
        "submit": {"type": "plain_text", "text": "Submit"},
        "blocks": blocks,
    }
    view.update(extra)
    return {k: v for k, v in view.items() if v is not None}


def _pt(text: str) -> dict:
    return {"type": "plain_text", "text": text}


LIMIT_CASES = [
    # id, surface, blocks (message) or view (modal), expected json-pointer
    ("message-51-blocks", "message", [_section()] * 51, "/blocks]"),
    ("modal-101-blocks", "modal", _modal([_section()] * 101), "/view/blocks]"),
    ("modal-title-25", "modal", _modal([], title=_pt("t" * 25)), "/view/title/text"),
    ("modal-submit-25", "modal", _modal([], submit=_pt("s" * 25)), "/view/submit/text"),
    ("modal-close-25", "modal", _modal([], close=_pt("c" * 25)), "/view/close/text"),
    ("modal-input-no-submit", "modal", _modal([_input(_text_input())], submit=None), "submit"),
    ("private-metadata", "modal", _modal([], private_metadata="m" * 3001), "private_metadata"),
    ("callback-id", "modal", _modal([], callback_id="c" * 256), "/view/callback_id"),
    ("block-id", "message", [_section(block_id="b" * 256)], "/blocks/0/block_id"),
    (
        "action-id",
        "message",
        [{"type": "actions", "elements": [_button(action_id="a" * 256)]}],
        "/elements/0/action_id",
    ),
    ("section-text", "message", [_section("x" * 3001)], "/blocks/0/text/text"),
    (
        "section-11-fields",
        "message",
        [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
        "/blocks/0/fields]",
    ),
    ("header-151", "message", [{"type": "header", "text": _pt("h" * 151)}], "/text/text"),
    ("button-text-76", "message", [_section(accessory=_button("b" * 76))], "accessory/text/text"),
    ("button-value", "message", [_section(accessory=_button(value="v" * 2001))], "/value"),
    (
        "select-101-options",
        "message",
        [_section(accessory=_select([_opt(value=f"v{i}") for i in range(101)]))],
        "/accessory/options]",
    ),
    (
        "option-text-76",
        "message",
        [_section(accessory=_select([_opt(text="o" * 76)]))],
        "/options/0/text/text",
    ),
    (
        "option-value-151",
        "message",
        [_section(accessory=_select([_opt(value="o" * 151)]))],
        "/options/0/value",
    ),
    (
        "placeholder-151",
        "message",
        [_section(accessory=_select([_opt()], placeholder="p" * 151))],
        "/placeholder/text",
    ),
    ("input-label", "modal", _modal([_input(_text_input(), label="l" * 2001)]), "/label/text"),
    (
        "input-hint",
        "modal",
        _modal([_input(_text_input(), hint=_pt("h" * 2001))]),
        "/hint/text",
    ),
    (
        "max-length-3001",
        "modal",
        _modal([_input(_text_input(max_length=3001))]),
        "/element/max_length",
    ),
    (
        "number-input-no-decimal-flag",
        "modal",
        _modal([_input({"type": "number_input", "action_id": "n"})]),
        "is_decimal_allowed",
    ),
    (
        "duplicate-block-ids",
        "message",
        [_section(block_id="same"), _section(block_id="same")],
        "/blocks/1/block_id",
    ),
    (
        "duplicate-action-ids",
        "message",
        [{"type": "actions", "elements": [_button(action_id="x"), _button(action_id="x")]}],
        "/elements/1/action_id",
    ),
    (
        "email-input-outside-input",
        "message",
        [{"type": "actions", "elements": [{"type": "email_text_input", "action_id": "e"}]}],
        "/elements/0/type",
    ),
]


@pytest.mark.parametrize(
    ("surface", "payload", "pointer"),
    [case[1:] for case in LIMIT_CASES],
    ids=[case[0] for case in LIMIT_CASES],
)
def test_limit_violation_is_invalid_blocks(
    slack: SlackStandIn, client: WebClient, surface: str, payload: Any, pointer: str
) -> None:
    with pytest.raises(SlackApiError) as exc:
        if surface == "message":
            client.chat_postMessage(channel="C1", text="fallback", blocks=payload)
        else:
            client.views_open(trigger_id="123.456.abc", view=payload)
    resp = exc.value.response
    assert resp.status_code == 200
    assert resp["error"] == "invalid_blocks"
    assert any(pointer in e for e in resp["errors"]), resp["errors"]
    assert slack.messages() == [] and slack.views_opened == []
    # The pure validator agrees.
    view = payload if surface == "modal" else None
    blocks = payload["blocks"] if view else payload
    assert validate_blocks(blocks, surface=surface, view=view) == resp["errors"]


def test_valid_modal_with_inputs_opens_and_updates(slack: SlackStandIn, client: WebClient) -> None:
    view = valid_modal()
    assert validate_blocks(view.to_dict()["blocks"], surface="modal", view=view.to_dict()) == []
    opened = client.views_open(trigger_id="123.456.abc", view=view)["view"]
    assert opened["id"].startswith("V")
    assert opened["callback_id"] == "paylink_create"
    assert opened["state"] == {"values": {}}
    assert slack.views_opened[0]["id"] == opened["id"]

    with pytest.raises(SlackApiError) as exc:
        client.views_open(trigger_id="123.456.abc", view=view)
    assert _error(exc) == "exchanged_trigger_id"
    with pytest.raises(SlackApiError) as exc:
        client.views_open(trigger_id="expired.1", view=view)
    assert _error(exc) == "expired_trigger_id"

    loading = View(type="modal", title="Done", blocks=[SectionBlock(text="Created")])
    updated = client.views_update(view_id=opened["id"], view=loading, hash=opened["hash"])
    assert updated["view"]["id"] == opened["id"]
    assert slack.view(opened["id"])["title"]["text"] == "Done"
    with pytest.raises(SlackApiError) as exc:
        client.views_update(view_id=opened["id"], view=loading, hash=opened["hash"])
    assert _error(exc) == "hash_conflict"
    with pytest.raises(SlackApiError) as exc:
        client.views_update(external_id="nope", view=loading)
    assert _error(exc) == "not_found"

    pushed = client.views_push(trigger_id="789", view=dict(loading.to_dict(), external_id="ext"))
    again = client.views_update(external_id="ext", view=loading)
    assert again["view"]["id"] == pushed["view"]["id"]


def test_views_publish_recorded(slack: SlackStandIn, client: WebClient) -> None:
    home = View(type="home", blocks=[SectionBlock(text="Your links")])
    first = client.views_publish(user_id="U1", view=home)["view"]
    second = client.views_publish(
        user_id="U1", view=View(type="home", blocks=[SectionBlock(text="No links")])
    )["view"]
    assert first["id"] == second["id"]
    assert slack.home_views["U1"]["blocks"][0]["text"]["text"] == "No links"
    assert [c.method for c in slack.calls] == ["views.publish", "views.publish"]
    with pytest.raises(SlackApiError) as exc:
        client.views_publish(user_id="U1", view={"type": "modal", "blocks": []})
    assert _error(exc) == "invalid_blocks"


# ------------------------------------------------------------------ faults


def test_rate_limit_surfaced_then_retried(
    slack: SlackStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The handler sleeps Retry-After + random() seconds; drop the jitter to keep this fast.
    monkeypatch.setattr("slack_sdk.http_retry.builtin_handlers.random.random", lambda: 0.0)
    plain = WebClient(token="xoxb-test", base_url=slack.base_url)
    slack.fail_next("chat.postMessage", retry_after=0)
    with pytest.raises(SlackApiError) as exc:
        plain.chat_postMessage(channel="C1", text="hi")
    assert exc.value.response.status_code == 429
    assert exc.value.response.headers["Retry-After"] == "0"
    assert slack.messages() == []

    retrying = WebClient(
        token="xoxb-test",
        base_url=slack.base_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    slack.fail_next("chat.postMessage", retry_after=0)
    resp = retrying.chat_postMessage(channel="C1", text="hi")
    assert resp["ok"]
    statuses = [c.status for c in slack.calls_of("chat.postMessage")]
    assert statuses == [429, 429, 200]
    assert len(slack.messages()) == 1


def test_fail_next_500_error_and_delay(slack: SlackStandIn, client: WebClient) -> None:
    slack.fail_next("chat.update", status=500, times=2)
    ts = client.chat_postMessage(channel="C1", text="v1")["ts"]
    for _ in range(2):
        with pytest.raises(SlackApiError) as exc:
            client.chat_update(channel="C1", ts=ts, text="v2")
        assert exc.value.response.status_code == 500
    assert slack.messages()[0].text == "v1"
    client.chat_update(channel="C1", ts=ts, text="v2")
    assert slack.messages()[0].text == "v2"

    slack.fail_next("chat.postMessage", error="channel_not_found", delay=0.2)
    started = time.monotonic()
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel="C1", text="x")
    assert time.monotonic() - started >= 0.2
    assert exc.value.response.status_code == 200 and _error(exc) == "channel_not_found"
    assert len(slack.messages()) == 1
    assert not slack.calls_of("chat.postMessage")[-1].ok


def test_usergroups_and_users(slack: SlackStandIn, client: WebClient) -> None:
    assert client.usergroups_users_list(usergroup="S123")["users"] == ["U1", "U2"]
    with pytest.raises(SlackApiError) as exc:
        client.usergroups_users_list(usergroup="S999")
    assert _error(exc) == "no_such_subteam"
    user = client.users_info(user="U1")["user"]
    assert user["id"] == "U1" and not user["is_bot"]


# ------------------------------------------------------------------ concurrency / waiting


def test_wait_for_and_concurrent_posts(slack: SlackStandIn, client: WebClient) -> None:
    slack.set_delay("chat.postMessage", 0.05)
    threads = [
        threading.Thread(target=client.chat_postMessage, kwargs={"channel": "C1", "text": str(i)})
        for i in range(10)
    ]
    for t in threads:
        t.start()
    msgs = slack.wait_for(lambda s: len(s.messages("C1")) == 10 and s.messages("C1"))
    for t in threads:
        t.join()
    assert len({m.ts for m in msgs}) == 10
    assert [m.ts for m in msgs] == sorted(m.ts for m in msgs)

    with pytest.raises(AssertionError, match="chat.postMessage"):
        slack.wait_for(lambda s: s.calls_of("views.open"), timeout=0.1)
    slack.clear()
    assert slack.calls == [] and slack.messages() == []


def test_history_and_replies_honour_oldest(slack: SlackStandIn, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="C1", text="before")["ts"]
    client.chat_postMessage(channel="C1", text="reply before", thread_ts=parent)
    time.sleep(0.05)  # ``since`` after those posts, however coarse the clock
    since = time.time()
    client.chat_postMessage(channel="C1", text="after")
    client.chat_postMessage(channel="C1", text="reply after", thread_ts=parent)

    def texts(response: Any) -> list[str]:
        return [m["text"] for m in response["messages"]]

    assert texts(client.conversations_history(channel="C1")) == ["after", "before"]
    assert texts(client.conversations_history(channel="C1", oldest=str(since))) == ["after"]
    replies = client.conversations_replies(channel="C1", ts=parent, oldest=str(since))
    assert texts(replies) == ["before", "reply after"]  # the parent always comes first


def test_files_arrive_through_slacks_upload_flow(slack: SlackStandIn, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="C1", text="card")["ts"]
    dm = client.conversations_open(users="U1")["channel"]["id"]
    assert dm == "D1"
    done = client.files_upload_v2(
        content=b"\x89PNG bytes",
        filename="qr.png",
        title="QR code",
        alt_txt="a QR code",
        channel="C1",
        thread_ts=parent,
    )
    (shared,) = slack.files
    assert done["file"]["id"] == shared.id
    assert (shared.content, shared.filename, shared.title) == (
        b"\x89PNG bytes",
        "qr.png",
        "QR code",
    )
    assert (shared.channel, shared.thread_ts, shared.alt_txt) == ("C1", parent, "a QR code")
    assert slack.thread("C1", parent)[1:] == []  # a file is not a message here
    (_, share) = client.conversations_replies(channel="C1", ts=parent)["messages"]
    assert share["files"] == [{"id": shared.id, "name": "qr.png", "title": "QR code"}]
    client.files_upload_v2(content="a,b\r\n", filename="x.csv", channel=dm, initial_comment="hi")
    assert (slack.files[1].channel, slack.files[1].initial_comment) == ("D1", "hi")
    with pytest.raises(SlackApiError) as exc:
        client.files_upload_v2(content=b"x", filename="x", channel="C1", thread_ts="1.2")
    assert _error(exc) == "invalid_thread_ts"
    with pytest.raises(SlackApiError) as exc:
        client.files_completeUploadExternal(files=[{"id": "F404"}], channel_id="C1")
    assert _error(exc) == "file_not_found"


def test_methods_need_their_scope_when_scopes_are_given(
    slack: SlackStandIn, client: WebClient
) -> None:
    slack.scopes = {"chat:write"}
    client.chat_postMessage(channel="C1", text="fine")
    with pytest.raises(SlackApiError) as exc:
        client.files_upload_v2(content=b"x", filename="x.png", channel="C1")
    assert _error(exc) == "missing_scope"
    assert exc.value.response["needed"] == "files:write"
    with pytest.raises(SlackApiError) as exc:
        client.conversations_open(users="U1")
    assert exc.value.response["needed"] == "im:write"
    assert not slack.files


def test_socket_mode_urls_take_the_app_token_only_and_serve_one_connection(
    slack: SlackStandIn, client: WebClient
) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from bot.local.socketmode import SocketModeStandIn

    with pytest.raises(SlackApiError) as unknown:
        client.apps_connections_open(app_token=slack.app_token)
    assert _error(unknown) == "unknown_method"  # no Socket Mode attached yet
    with SocketModeStandIn(slack):
        url = client.apps_connections_open(app_token=slack.app_token)["url"]
        assert url.startswith("ws://127.0.0.1:")
        for token, error in (("xoxb-test", "not_allowed_token_type"), ("xapp-1-x", "invalid_auth")):
            with pytest.raises(SlackApiError) as refused:
                client.apps_connections_open(app_token=token)
            assert _error(refused) == error
        with pytest.raises(SlackApiError) as app_token_elsewhere:
            WebClient(token=slack.app_token, base_url=slack.base_url).chat_postMessage(
                channel="C1", text="hi"
            )
        assert _error(app_token_elsewhere) == "not_allowed_token_type"

        with connect(url) as ws:
            hello = json.loads(ws.recv(timeout=5))
        assert hello["type"] == "hello" and hello["num_connections"] == 1
        with pytest.raises(InvalidStatus):  # a URL is good for one connection
            connect(url).close()


@pytest.fixture
def oauth_slack() -> Iterator[SlackStandIn]:
    with SlackStandIn(client_id="1.2", client_secret="shh", token_rotation=True) as standin:  # noqa: S106
        yield standin


@pytest.mark.integration  # the stand-in listens on a port
def test_oauth_code_is_exchanged_once_for_a_token_of_its_team(oauth_slack: SlackStandIn) -> None:
    app = WebClient(base_url=oauth_slack.base_url, timeout=5)
    code = oauth_slack.authorize("T0ALPHA", "https://bot.example/slack/oauth_redirect")
    with pytest.raises(SlackApiError) as wrong_secret:
        app.oauth_v2_access(client_id="1.2", client_secret="nope", code=code)  # noqa: S106
    assert _error(wrong_secret) == "bad_client_secret"
    with pytest.raises(SlackApiError) as wrong_redirect:
        app.oauth_v2_access(
            client_id="1.2", client_secret="shh", code=code, redirect_uri="https://evil.example/"
        )  # noqa: S106
    assert _error(wrong_redirect) == "bad_redirect_uri"
    code = oauth_slack.authorize("T0ALPHA")
    answer = app.oauth_v2_access(client_id="1.2", client_secret="shh", code=code)  # noqa: S106
    assert answer["team"]["id"] == "T0ALPHA" and answer["token_type"] == "bot"
    assert answer["expires_in"] == 43_200 and answer["refresh_token"].startswith("xoxe-")
    with pytest.raises(SlackApiError) as again:
        app.oauth_v2_access(client_id="1.2", client_secret="shh", code=code)  # noqa: S106
    assert _error(again) == "invalid_code"
    token = answer["access_token"]
    assert app.auth_test(token=token)["team_id"] == "T0ALPHA"
    assert app.auth_test(token="xoxb-test")["team_id"] == oauth_slack.team_id

    refreshed = app.oauth_v2_access(
        client_id="1.2",
        client_secret="shh",  # noqa: S106
        grant_type="refresh_token",
        refresh_token=answer["refresh_token"],
    )
    assert refreshed["access_token"] != token and refreshed["team"]["id"] == "T0ALPHA"
    oauth_slack.revoke("T0ALPHA")
    for dead in (token, refreshed["access_token"]):
        with pytest.raises(SlackApiError) as revoked:
            app.auth_test(token=dead)
        assert _error(revoked) == "token_revoked"
    with pytest.raises(SlackApiError) as gone:
        app.oauth_v2_access(
            client_id="1.2",
            client_secret="shh",  # noqa: S106
            grant_type="refresh_token",
            refresh_token=answer["refresh_token"],
        )
    assert _error(gone) == "invalid_refresh_token"


@pytest.mark.integration
def test_authorize_page_sends_the_admin_back_with_a_code_and_the_state(
    oauth_slack: SlackStandIn,
) -> None:
    page = oauth_slack.base_url.removesuffix("/api/") + "/oauth/v2/authorize"
    query = {"client_id": "1.2", "state": "s1", "redirect_uri": "https://bot.example/cb"}
    answer = requests.get(page, params={**query, "team": "T0B"}, allow_redirects=False, timeout=5)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith("https://bot.example/cb?code=code-t0b-") and "state=s1" in location
    refused = requests.get(page, params={**query, "client_id": "9"}, timeout=5)
    assert refused.status_code == 400
