"""Sharing end to end, on the local stack: the QR code in the thread, the CSV export by direct
message, and "Send to customer" through a real SMTP server (aiosmtpd, STARTTLS and a login,
with a certificate from a test CA the bot is told to trust)."""

from __future__ import annotations

import csv
import io
import logging
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trustme
import zxingcpp
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from PIL import Image
from slack_sdk import WebClient

from bot.config import Settings, load_settings
from bot.db import utcnow
from bot.links.sharing import customer_email
from bot.links.states import Status
from bot.local.stack import APPROVAL_CHANNEL, APPROVER, OUTSIDER, REP, LocalStack, free_port
from bot.local.standin import RESPONSE_URL, Ephemeral, PostedMessage
from bot.mail import MailFailed, SmtpServer
from bot.slack.listeners.share import _replace_question
from tests.conftest import Flow, _text
from tests.test_slack_blocks import make_link

pytestmark = pytest.mark.integration  # an SMTP server, or the local stack

PASSWORD = "s3cret-pa55"


@dataclass
class Inbox:
    """What the SMTP server received, and how many logins were tried."""

    messages: list[EmailMessage] = field(default_factory=list)
    logins: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        self.logins += 1
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"paylink",
            PASSWORD.encode(),
        )
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535


@dataclass
class Smtp:
    inbox: Inbox
    port: int

    def url(self, password: str = PASSWORD) -> str:
        return f"smtp://paylink:{password}@127.0.0.1:{self.port}"


@pytest.fixture
def smtp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Smtp]:
    """An SMTP server on 127.0.0.1 that requires STARTTLS, then a login (LOGIN only, so one
    attempt is one login), with a certificate of a CA this process trusts (SSL_CERT_FILE)."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_context,
        require_starttls=True,
        authenticator=inbox.authenticate,
        auth_require_tls=True,
        auth_exclude_mechanism=["PLAIN"],
    )
    controller.start()
    try:
        yield Smtp(inbox, port)
    finally:
        controller.stop()


def link_reply(flow: Flow, card: PostedMessage) -> PostedMessage:
    return next(
        m
        for m in flow.slack.thread(APPROVAL_CHANNEL, card.ts)[1:]
        if "checkout link" in _text(m.blocks)
    )


def click_reply(flow: Flow, user: str, message: PostedMessage | Any, action_id: str) -> None:
    ts = getattr(message, "ts", None) or message.message_ts
    response = flow.sim.click(
        user, {"ts": ts, "blocks": message.blocks}, action_id, channel=APPROVAL_CHANNEL
    )
    assert response.status_code == 200, response.text


def click_ephemeral(flow: Flow, user: str, ephemeral: Ephemeral, action_id: str) -> None:
    response = flow.sim.click_ephemeral(user, ephemeral, action_id)
    assert response.status_code == 200, response.text


def wait_answered(flow: Flow, question: Ephemeral) -> Ephemeral:
    """``question`` once a response_url answer replaced it."""
    return flow.slack.wait_for(
        lambda s: next(
            (e for e in s.ephemerals if e.message_ts == question.message_ts and e.replaced), None
        )
    )


def answer(flow: Flow, user: str, text: str) -> str:
    """What ``/paylink <text>`` answers ``user`` at once (Bolt sends ack's text as it is)."""
    response = flow.sim.command(user, text)
    assert response.status_code == 200, response.text
    return response.text


def read_png(content: bytes) -> str:
    (found,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(content)))
    return found.text


# --- QR code and export ------------------------------------------------------------------------


def test_the_qr_code_follows_the_link_and_approvers_get_the_export(flow: Flow) -> None:
    card = flow.request()
    url = flow.approve(card.ts)
    qr = flow.slack.wait_for(lambda s: s.files)[0]
    assert (qr.channel, qr.thread_ts) == (APPROVAL_CHANNEL, card.ts)
    assert qr.filename.endswith("-qr.png") and qr.title and "TEST" in qr.title
    assert read_png(qr.content) == url
    assert "paylink_send_to_customer" not in str(link_reply(flow, card).blocks)  # no SMTP

    assert "Only approvers can export" in answer(flow, REP, "export")
    assert "Preparing your export of" in answer(flow, APPROVER, "export")
    dm = "D" + APPROVER[1:]
    export = flow.slack.wait_for(lambda s: [f for f in s.files if f.channel == dm])[0]
    assert export.filename.endswith(".csv") and "1 link, one row each" in (
        export.initial_comment or ""
    )
    assert export.content.startswith(b"\xef\xbb\xbf")
    header, row = list(csv.reader(io.StringIO(export.content.decode("utf-8-sig"))))
    cells = dict(zip(header, row, strict=True))
    assert cells["status"] == "Awaiting payment" and cells["test"] == "TEST"
    assert cells["customer e-mail"] and "•" not in cells["customer e-mail"]
    assert len(flow.slack.files) == 2  # the rep got nothing
    assert "expected a month as YYYY-MM" in answer(flow, APPROVER, "export 2026-13")


def test_no_qr_code_when_turned_off(make_stack: Callable[..., LocalStack]) -> None:
    flow = Flow(make_stack(paylink_qr=False))
    flow.approve(flow.request().ts)
    flow.idle()
    assert not flow.slack.files
    assert not flow.slack.calls_of("files.getUploadURLExternal")


def test_without_files_write_the_link_is_posted_alone_and_the_log_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with LocalStack() as stack, caplog.at_level(logging.WARNING):
        stack.slack.scopes = {"chat:write", "usergroups:read", "im:write"}
        flow = Flow(stack)
        for _ in range(2):
            card = flow.request()
            flow.approve(card.ts)
        flow.idle()
        assert not stack.slack.files
        refused = stack.slack.calls_of("files.getUploadURLExternal")
        assert [c.response["error"] for c in refused] == ["missing_scope"] * 2  # not retried
    why = [r for r in caplog.records if "files:write" in r.getMessage()]
    assert len(why) == 1, why  # once


# --- Send to customer ------------------------------------------------------------------------


def test_send_to_customer_emails_the_link_and_asks_before_sending_again(
    make_stack: Callable[..., LocalStack], smtp: Smtp
) -> None:
    stack = make_stack(
        paylink_smtp_url=smtp.url(),
        paylink_mail_from="sales@shop.example",
        paylink_company_name="Shop",
    )
    flow = Flow(stack)
    card = flow.request()
    url = flow.approve(card.ts)
    reply = link_reply(flow, card)

    click_reply(flow, OUTSIDER, reply, "paylink_send_to_customer")
    flow.wait_ephemeral(OUTSIDER, "Only the rep who asked for this link or an approver")
    click_reply(flow, REP, reply, "paylink_send_to_customer")
    flow.wait_ephemeral(REP, "Sending the checkout link to a•••n@example.com")
    note = flow.wait_reply(card.ts, "was sent to")
    assert "sent to a•••n@example.com by <@U0REP>" in note
    (mail,) = smtp.inbox.messages
    assert mail["To"].addresses[0].addr_spec == "ayesha.khan@example.com"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    for body in (text, html):
        assert url in body and "PKR 15,000" in body and "Shop" in body

    click_reply(flow, APPROVER, reply, "paylink_send_to_customer")
    (question,) = stack.slack.wait_for(
        lambda s: [e for e in s.ephemerals if e.user == APPROVER and e.blocks]
    )
    assert "already sent to a•••n@example.com" in (question.text or "")
    assert len(smtp.inbox.messages) == 1  # asked, not sent
    click_ephemeral(flow, APPROVER, question, "paylink_send_again")
    stack.slack.wait_for(lambda s: len(smtp.inbox.messages) == 2)
    flow.wait_reply(card.ts, "by <@U0APPROVER>")
    # The question gives way to what came of it, through the click's response_url: its
    # button is gone, and no other ephemeral was posted.
    answered = wait_answered(flow, question)
    assert (answered.text or "").startswith(
        ":email: Sending the checkout link to a•••n@example.com"
    )
    assert answered.blocks is None and not answered.deleted
    (replace,) = stack.slack.calls_of(RESPONSE_URL)
    assert replace.params == {"replace_original": True, "text": answered.text}
    assert len(flow.ephemerals_for(APPROVER)) == 1
    with pytest.raises(LookupError, match="no paylink_send_again button"):
        click_ephemeral(flow, APPROVER, answered, "paylink_send_again")
    flow.idle()
    assert len(smtp.inbox.messages) == 2
    assert "ayesha.khan" not in str([m.blocks for m in stack.slack.messages()])


def test_a_send_again_overtaken_is_refused_in_its_questions_place_and_a_failed_answer_falls_back(
    smtp: Smtp, caplog: pytest.LogCaptureFixture
) -> None:
    """Two questions are out; the rep's is answered, and its response_url fails (HTTP 500):
    the e-mail still goes and the note comes as a new ephemeral, logged without the URL.
    The approver's question, overtaken, is replaced by the refusal and sends nothing."""
    with (
        LocalStack(paylink_smtp_url=smtp.url(), paylink_mail_from="sales@shop.example") as stack,
        caplog.at_level(logging.WARNING),
    ):
        flow = Flow(stack)
        card = flow.request()
        flow.approve(card.ts)
        reply = link_reply(flow, card)
        click_reply(flow, REP, reply, "paylink_send_to_customer")
        flow.wait_reply(card.ts, "was sent to")
        click_reply(flow, APPROVER, reply, "paylink_send_to_customer")
        click_reply(flow, REP, reply, "paylink_send_to_customer")
        approvers, reps = (
            stack.slack.wait_for(
                lambda s, user=user: [e for e in s.ephemerals if e.user == user and e.blocks]
            )[0]
            for user in (APPROVER, REP)
        )

        stack.slack.fail_next(RESPONSE_URL, status=500)
        click_ephemeral(flow, REP, reps, "paylink_send_again")
        flow.wait_ephemeral(REP, "Sending the checkout link to a•••n@example.com", count=2)
        stack.slack.wait_for(lambda s: len(smtp.inbox.messages) == 2)
        assert next(e for e in stack.slack.ephemerals if e.message_ts == reps.message_ts).blocks

        click_ephemeral(flow, APPROVER, approvers, "paylink_send_again")
        refused = wait_answered(flow, approvers)
        assert "e-mailed (or tried) again after you were asked" in (refused.text or "")
        assert refused.blocks is None and len(flow.ephemerals_for(APPROVER)) == 1
        flow.idle()
        assert len(smtp.inbox.messages) == 2
        assert [c.status for c in stack.slack.calls_of(RESPONSE_URL)] == [500, 200]
    (warning,) = [r for r in caplog.records if "Send again question" in r.getMessage()]
    assert warning.levelno == logging.WARNING and "HTTP 500" in warning.getMessage()
    assert "/response/" not in caplog.text


def test_after_a_renewal_the_qr_code_and_the_email_are_the_new_links(
    make_stack: Callable[..., LocalStack], smtp: Smtp
) -> None:
    """The link expires and the rep renews it (``REF-2``): the QR code that follows is of
    the new checkout URL and named after its reference, and "Send to customer" e-mails the
    new link with its reference and expiry, not the first one's."""
    stack = make_stack(paylink_smtp_url=smtp.url(), paylink_mail_from="sales@shop.example")
    flow = Flow(stack)
    card = flow.request()
    old_url = flow.approve(card.ts)
    reference = flow.intent(old_url).order_reference
    flow.slack.wait_for(lambda s: s.files)
    service, store = stack.runtime.service, stack.runtime.store
    with store.transaction() as s:  # it expired on time, a while ago
        link = store.by_reference(s, reference)
        assert link is not None and link.intent_id is not None
        gone = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
        store.update_fields(s, link.id, expires_at=gone)
        store.update_intent(s, link.intent_id, expires_at=gone)
    service.expire(link.id, link.intent_id)  # what its timer does
    flow.wait_status(card.ts, "Expired")
    flow.click(REP, card.ts, "paylink_renew")
    renewed = flow.wait_reply(card.ts, "new checkout link is ready")
    match = re.search(r"<(https?://[^|>]+/sandbox/checkout/[^|>]+)>", renewed)
    assert match and match.group(1) != old_url
    new_url = match.group(1)

    first, second = flow.slack.wait_for(lambda s: len(s.files) == 2 and s.files)
    assert first.filename == f"{reference}-qr.png" and read_png(first.content) == old_url
    assert second.filename == f"{reference}-2-qr.png"
    assert second.title and f"for {reference}-2" in second.title
    assert (second.channel, second.thread_ts) == (APPROVAL_CHANNEL, card.ts)
    assert read_png(second.content) == new_url

    renewal_reply = next(
        m
        for m in flow.slack.thread(APPROVAL_CHANNEL, card.ts)
        if "new checkout link is ready" in _text(m.blocks)
    )
    click_reply(flow, REP, renewal_reply, "paylink_send_to_customer")
    flow.wait_reply(card.ts, f"link {reference}-2 was sent to")
    (mail,) = smtp.inbox.messages
    assert f"({reference}-2)" in mail["Subject"]
    with store.reading() as s:
        expires = store.by_reference(s, reference).expires_at
    assert expires is not None and expires > gone
    local = expires.astimezone(ZoneInfo("Asia/Karachi"))
    text, html = mail.get_body(("plain",)).get_content(), mail.get_body(("html",)).get_content()
    for body in (text, html):
        assert new_url in body and old_url not in body
        assert f"reference {reference}-2" in body
        assert f"{local:%B %Y, %H:%M} (Asia/Karachi)" in body and "2 November 2026" not in body


def test_after_a_renewal_the_new_link_is_sent_without_asking_though_the_first_was_sent(
    make_stack: Callable[..., LocalStack], smtp: Smtp
) -> None:
    """The rep e-mailed REF, it expired and was renewed (REF-2): Send to customer on the
    renewal's reply sends REF-2 at once (it was never sent), and only a second click asks,
    naming REF-2."""
    stack = make_stack(paylink_smtp_url=smtp.url(), paylink_mail_from="sales@shop.example")
    flow = Flow(stack)
    card = flow.request()
    old_url = flow.approve(card.ts)
    reference = flow.intent(old_url).order_reference
    click_reply(flow, REP, link_reply(flow, card), "paylink_send_to_customer")
    flow.wait_reply(card.ts, f"link {reference} was sent to")
    service, store = stack.runtime.service, stack.runtime.store
    with store.transaction() as s:  # it expired on time
        link = store.by_reference(s, reference)
        assert link is not None and link.intent_id is not None
        gone = utcnow() - timedelta(minutes=1)
        store.update_fields(s, link.id, expires_at=gone)
        store.update_intent(s, link.intent_id, expires_at=gone)
    service.expire(link.id, link.intent_id)
    flow.wait_status(card.ts, "Expired")
    flow.click(REP, card.ts, "paylink_renew")
    flow.wait_reply(card.ts, "new checkout link is ready")
    renewal_reply = next(
        m
        for m in flow.slack.thread(APPROVAL_CHANNEL, card.ts)
        if "new checkout link is ready" in _text(m.blocks)
    )

    click_reply(flow, REP, renewal_reply, "paylink_send_to_customer")
    flow.wait_reply(card.ts, f"link {reference}-2 was sent to")
    first, second = smtp.inbox.messages
    assert f"({reference})" in first["Subject"] and f"({reference}-2)" in second["Subject"]
    assert flow.wait_ephemeral(REP, "Sending the checkout link", count=2)
    assert not [e for e in stack.slack.ephemerals if e.user == REP and e.blocks]  # not asked

    click_reply(flow, REP, renewal_reply, "paylink_send_to_customer")
    (question,) = stack.slack.wait_for(
        lambda s: [e for e in s.ephemerals if e.user == REP and e.blocks]
    )
    assert f"The checkout link {reference}-2 was already sent to a•••n@example.com" in (
        question.text or ""
    )
    flow.idle()
    assert len(smtp.inbox.messages) == 2  # asked, not sent


def test_a_refused_login_is_said_in_the_thread_and_not_retried(
    make_stack: Callable[..., LocalStack], smtp: Smtp
) -> None:
    stack = make_stack(
        paylink_smtp_url=smtp.url("wrong-password"), paylink_mail_from="sales@shop.example"
    )
    flow = Flow(stack)
    card = flow.request()
    flow.approve(card.ts)
    click_reply(flow, REP, link_reply(flow, card), "paylink_send_to_customer")
    failed = flow.wait_reply(card.ts, "could not be e-mailed")
    assert "a•••n@example.com: 535" in failed and "Nothing was retried" in failed
    flow.idle()
    assert smtp.inbox.logins == 1 and not smtp.inbox.messages
    assert "wrong-password" not in str(stack.slack.calls)
    with stack.runtime.store.reading() as s:
        link = stack.runtime.store.get(s, 1)
        reasons = [h.reason for h in link.history if h.reason and h.reason.startswith("e-mail")]
    assert len(reasons) == 1 and reasons[0].startswith("e-mail to a•••n@example.com: failed, 535")


def test_smtps_speaks_tls_from_the_first_byte_and_smtp_insists_on_starttls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))

    def settings(sender: str) -> Settings:
        return load_settings(
            _env_file=None, paylink_smtp_url="smtps://127.0.0.1:1", paylink_mail_from=sender
        )

    link = make_link(Status.AWAITING_PAYMENT)
    with pytest.raises(MailFailed, match="check PAYLINK_MAIL_FROM"):  # a name, no address
        SmtpServer.from_url("smtps://127.0.0.1:1").send(customer_email(link, settings("Shop")))
    message = customer_email(link, settings("s@shop.example"))
    tls, plain = Inbox(), Inbox()
    servers = [
        Controller(tls, hostname="127.0.0.1", port=free_port(), ssl_context=server_context),
        Controller(plain, hostname="127.0.0.1", port=free_port()),  # offers no STARTTLS
    ]
    for server in servers:
        server.start()
    try:
        SmtpServer.from_url(f"smtps://127.0.0.1:{servers[0].port}").send(message)
        assert [m["Subject"] for m in tls.messages] == [message["Subject"]]
        with pytest.raises(MailFailed, match="does not offer STARTTLS"):
            SmtpServer.from_url(f"smtp://u:p@127.0.0.1:{servers[1].port}").send(message)
        assert not plain.messages
    finally:
        for server in servers:
            server.stop()


def test_a_response_url_out_of_reach_is_a_warning_that_leaves_the_url_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listens at the click's response_url (or the click has none): the question
    is not replaced, said at warning level, and the URL, which lets its holder write to
    the user, is in no log line."""
    url = f"http://127.0.0.1:{free_port()}/response/secret-path-123"
    client = WebClient(token="xoxb-test", timeout=2)
    with caplog.at_level(logging.WARNING):
        assert not _replace_question(client, {"response_url": url}, "Sending…")
        assert not _replace_question(client, {}, "Sending…")
    ours = caplog.records  # and nothing from slack_sdk, which would log the URL
    assert [(r.name, r.levelno) for r in ours] == [
        ("bot.slack.listeners.share", logging.WARNING)
    ] * 2
    assert "URLError" in ours[0].getMessage() and "without a response_url" in ours[1].getMessage()
    assert "secret-path-123" not in caplog.text
