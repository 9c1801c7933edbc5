"""Sharing a link, in process: the customer's e-mail as composed, who may send it and the
question before a second send, the "Send to customer" button, and the QR code image."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image

from bot.config import Settings, load_settings
from bot.db import utcnow
from bot.links.kinds import JobKind, ThreadKind
from bot.links.outcomes import AlreadyDecided, NotAllowed, OtherWorkspace
from bot.links.service import LinkService
from bot.links.sharing import AlreadySent, MailQueued, Sharing, customer_email
from bot.links.states import Status
from bot.links.store import LinkStore
from bot.links.tables import History, Job, Link
from bot.links.workspaces import Workspace
from bot.mail import SmtpServer
from bot.slack import blocks as b
from bot.slack.blocks.sharing import send_again
from bot.slack.qr import qr_png
from tests.dbs import BACKENDS, migrated_engine
from tests.factories import checkout_request
from tests.fakes import FakeGateway
from tests.test_slack_blocks import assert_masked, buttons, check_message, make_link, mrkdwn_texts

HOME = Workspace("T0HOME")
SMTP = {
    "paylink_smtp_url": "smtp://paylink:s3cret@127.0.0.1:2525",
    "paylink_mail_from": "Sales <sales@shop.example>",
    "paylink_company_name": "Shop & Co",
}


def settings(**kw: Any) -> Settings:
    return load_settings(_env_file=None, **{**SMTP, **kw})


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LinkStore]:
    with migrated_engine(request.param, tmp_path) as engine:
        yield LinkStore(engine)


@pytest.fixture
def service(store: LinkStore) -> LinkService:
    return LinkService(store, FakeGateway(), is_approver=lambda user: user == "U0APPROVER")


def made(service: LinkService, **fields: Any) -> Link:
    """A request of U0REP in HOME whose link is created (Awaiting payment)."""
    with service.store.transaction() as s:
        link = service.store.insert_link(
            s,
            checkout_request(**fields),
            requester_id="U0REP",
            actor="U0REP",
            channel_id="C0APPROVALS",
            workspace=HOME,
        )
    service.approve(link.id, "U0APPROVER")
    return service._load(link.id)


def parts(message: Any) -> tuple[str, str]:
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    return text, html


# --- the e-mail ----------------------------------------------------------------------------


def test_the_email_has_text_and_html_with_the_amount_reference_and_link() -> None:
    link = make_link(Status.AWAITING_PAYMENT, amount=Decimal("150000"))
    message = customer_email(link, settings())
    assert message["To"] == "Ayesha Khan <ayesha.khan@example.com>"
    assert message["From"] == "Sales <sales@shop.example>"
    assert message["Subject"] == "Payment link for PKR 150,000 (PL-ABC123) from Shop & Co"
    assert message["Message-ID"].endswith("@shop.example>")
    text, html = parts(message)
    for body in (text, html):
        # As every Slack surface writes it: decimals only when there are some.
        assert "PKR 150,000" in body and "150,000.00" not in body and "PL-ABC123" in body
        assert "expires" not in body  # this link records no expiry
    assert "https://xstak-pay.xstak.com/checkout/pi_1?a=1&b=2" in text
    assert "Shop & Co has sent you a link" in text
    assert 'href="https://xstak-pay.xstak.com/checkout/pi_1?a=1&amp;b=2"' in html
    assert "Shop &amp; Co has sent you" in html


def test_the_email_escapes_names_and_says_when_the_link_expires() -> None:
    link = make_link(Status.AWAITING_PAYMENT, customer_name="<b>Ayesha</b>", sandbox=True)
    link.expires_at = datetime(2026, 12, 9, 9, 30, tzinfo=UTC)  # type: ignore[attr-defined]
    message = customer_email(link, settings(paylink_company_name=None))
    text, html = parts(message)
    assert "&lt;b&gt;Ayesha&lt;/b&gt;" in html and "<b>Ayesha" not in html
    assert "We have sent you a link" in text
    assert "The link expires on 9 December 2026, 14:30 (Asia/Karachi)." in text
    assert "14:30 (Asia/Karachi)" in html
    assert message["Subject"].startswith("TEST: ") and "TEST — sandbox" in text


def test_the_smtp_url_is_read_with_its_defaults() -> None:
    plain = SmtpServer.from_url("smtp://sales%40shop:p%40ss@mail.example")
    assert (plain.host, plain.port, plain.implicit_tls) == ("mail.example", 587, False)
    assert (plain.user, plain.password) == ("sales@shop", "p@ss")
    assert "p@ss" not in repr(plain)
    tls = SmtpServer.from_url("smtps://mail.example")
    assert (tls.port, tls.implicit_tls, tls.user) == (465, True, None)
    with pytest.raises(ValueError):
        SmtpServer.from_url("http://mail.example")


# --- asking --------------------------------------------------------------------------------


def test_the_requester_and_approvers_may_send_others_not(service: LinkService) -> None:
    sharing = Sharing(service, settings())
    link = made(service)
    with pytest.raises(NotAllowed, match="Only the rep who asked for this link or an approver"):
        sharing.request_mail(link.id, "U0OUTSIDER", HOME)
    with pytest.raises(OtherWorkspace):
        sharing.request_mail(link.id, "U0REP", Workspace("T0OTHER"))
    assert sharing.request_mail(link.id, "U0REP", HOME) == MailQueued("a•••n@example.com")
    # A second click before the e-mail went: one e-mail.
    with pytest.raises(AlreadyDecided, match="being e-mailed already"):
        sharing.request_mail(link.id, "U0APPROVER", HOME)
    with service.store.reading() as s:
        jobs = s.query(Job).filter_by(link_id=link.id, kind=JobKind.MAIL.value).all()
    assert [j.payload for j in jobs] == [{"user": "U0REP"}]


def test_nothing_to_send_without_an_email_a_link_or_smtp(service: LinkService) -> None:
    sharing = Sharing(service, settings())
    phone_only = made(service, customer_email=None, customer_phone="03415682456")
    with pytest.raises(NotAllowed, match="no e-mail address"):
        sharing.request_mail(phone_only.id, "U0REP", HOME)
    link = made(service)
    service.cancel(link.id, "U0REP")
    with pytest.raises(AlreadyDecided, match="Nothing to send: this request is cancelled"):
        sharing.request_mail(link.id, "U0REP", HOME)
    off = Sharing(service, load_settings(_env_file=None))
    with pytest.raises(NotAllowed, match="not set up"):
        off.request_mail(link.id, "U0REP", HOME)


def test_a_link_sent_before_is_sent_again_only_when_asked(service: LinkService) -> None:
    sharing = Sharing(service, settings())
    link = made(service)
    at = utcnow()  # after its checkout link was made
    with service.store.transaction() as s:  # as the mail job records a send
        s.add(
            History(
                link_id=link.id,
                from_status=link.status,
                to_status=link.status,
                actor="U0REP",
                reason="e-mail to a•••n@example.com: sent",
                at=at,
            )
        )
    asked = sharing.request_mail(link.id, "U0APPROVER", HOME)
    assert asked == AlreadySent("a•••n@example.com", at, tried=1, reference=link.reference)
    assert sharing.request_mail(link.id, "U0APPROVER", HOME, again=1) == MailQueued(
        "a•••n@example.com"
    )
    text, blocks = send_again(link.id, asked)
    check_message(text, blocks)
    assert f"The checkout link {link.reference} was already sent to a•••n@example.com" in text
    assert buttons(blocks)["paylink_send_again"]["value"] == f"{link.id}:1"


# --- the thread ------------------------------------------------------------------------------


def test_the_link_reply_has_a_send_button_only_with_smtp_and_an_email() -> None:
    link = make_link(Status.AWAITING_PAYMENT)
    text, with_mail = b.thread_reply(link, ThreadKind.LINK_READY, mail=True)
    check_message(text, with_mail)
    assert buttons(with_mail)["paylink_send_to_customer"]["value"] == "42"
    _, renewed = b.thread_reply(link, ThreadKind.LINK_RENEWED, {"reference": "R-2"}, mail=True)
    assert buttons(renewed)["paylink_send_to_customer"]["value"] == "42"
    _, without = b.thread_reply(link, ThreadKind.LINK_READY)
    assert not buttons(without)
    link.customer_email = None
    _, no_email = b.thread_reply(link, ThreadKind.LINK_READY, mail=True)
    assert not buttons(no_email)
    _, paid = b.thread_reply(make_link(Status.PAID), ThreadKind.PAID, mail=True)
    assert not buttons(paid)


def test_the_mail_notes_in_the_thread_are_masked_and_escaped() -> None:
    link = make_link(Status.AWAITING_PAYMENT)
    details = {"by": "U0REP", "to": "a•••n@example.com", "reference": "INV-7-2"}
    text, sent = b.thread_reply(link, ThreadKind.MAILED, details)
    check_message(text, sent)
    assert "link INV-7-2 was sent to a•••n@example.com by <@U0REP>" in mrkdwn_texts(sent)[0]
    failed = {**details, "reason": "535 5.7.8 <!channel> bad credentials"}
    text, blocks = b.thread_reply(link, ThreadKind.MAIL_FAILED, failed)
    check_message(text, blocks)
    reply = "\n".join(mrkdwn_texts(blocks))
    assert (
        "link INV-7-2 could not be e-mailed to a•••n@example.com: 535 5.7.8 &lt;!channel&gt;"
        in reply
    )
    assert "Nothing was retried" in reply
    assert_masked([text, blocks, sent])


# --- the QR code -----------------------------------------------------------------------------


def test_the_qr_code_reads_back_as_the_checkout_url() -> None:
    url = "https://xstak-pay.xstak.com/checkout/pi_1?a=1&b=2"
    png = qr_png(url)
    assert png.startswith(b"\x89PNG")
    (found,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert found.text == url


def _mail_job(service: LinkService, link: Link) -> Job:
    with service.store.reading() as s:
        return s.query(Job).filter_by(link_id=link.id, kind=JobKind.MAIL.value).one()


def _thread_notes(service: LinkService, link: Link) -> list[dict[str, Any]]:
    with service.store.reading() as s:
        jobs = s.query(Job).filter_by(link_id=link.id, kind=JobKind.THREAD.value).all()
        return [j.payload for j in jobs if j.payload["kind"].startswith("mail")]


def test_a_send_whose_outcome_was_lost_is_reported_not_made_again(service: LinkService) -> None:
    sharing = Sharing(service, settings())
    link = made(service)
    sharing.request_mail(link.id, "U0REP", HOME)
    job = _mail_job(service, link)
    job.last_error = "started, outcome not recorded"  # as the claim of a crashed attempt left it
    sharing.mail(job, service._load(link.id))  # no SMTP server listens: nothing is tried
    (note,) = _thread_notes(service, link)
    assert note["kind"] == "mail_failed" and note["to"] == "a•••n@example.com"
    assert "may or may not have gone out" in note["reason"]
    with service.store.reading() as s:
        history = [h.reason for h in s.get(Link, link.id).history]
    assert history[-1].startswith("e-mail to a•••n@example.com: failed, Paylink stopped")


def test_a_link_that_moved_on_before_the_send_is_not_mailed(service: LinkService) -> None:
    sharing = Sharing(service, settings())
    link = made(service)
    sharing.request_mail(link.id, "U0REP", HOME)
    service.cancel(link.id, "U0REP")
    sharing.mail(_mail_job(service, link), service._load(link.id))
    (note,) = _thread_notes(service, link)
    assert note["reason"] == "the request is cancelled now, so nothing was sent"
