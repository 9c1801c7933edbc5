"""Sending the checkout link to the customer by e-mail: who may ask, asking before a second
send, the message itself, and the job that hands it to the mail server and tells the thread.

Each send is recorded in the link's history (``e-mail to a•••n@example.com: sent``), which is
also how a second send of the current checkout link is noticed (after a renewal, only the
sends since the new link was made count). A send is never retried behind anyone's back: a
refusal is final and said in the thread, and a send whose outcome was lost (the worker
stopped during it) is reported as such rather than made again.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.checkout import mask_email
from bot.config import Settings
from bot.links.kinds import JobKind, ThreadKind
from bot.links.outcomes import AlreadyDecided, LinkGone, NotAllowed, OtherWorkspace
from bot.links.runner import Handler
from bot.links.service import LinkService
from bot.links.states import SANDBOX_LABEL, Status
from bot.links.tables import History, Job, Link, LinkIntent
from bot.links.workspaces import Workspace
from bot.logs import redact
from bot.mail import MailFailed, SmtpServer
from bot.money import money_text

log = logging.getLogger(__name__)

#: Every history row of an e-mail starts so; then the masked address and what happened.
MAIL_HISTORY = "e-mail to "
SENT = "sent"
#: The statuses whose link the customer can still pay.
PAYABLE = (Status.AWAITING_PAYMENT, Status.PAYMENT_FAILED)
# Said when the worker stopped while a send was under way: the server may have taken it.
LOST = "Paylink stopped while handing it to the mail server, so it may or may not have gone out"


@dataclass(frozen=True)
class MailQueued:
    """The e-mail will be sent to ``to`` (masked)."""

    to: str


@dataclass(frozen=True)
class AlreadySent:
    """The current checkout link ``reference`` was e-mailed to ``to`` (masked) at ``at``
    already: ask before another. ``tried``: the sends of the request tried so far (of any
    of its checkout links), which a "Send again" must still find."""

    to: str
    at: datetime
    tried: int
    reference: str


def sent_at(session: Session, link: Link) -> tuple[datetime | None, int]:
    """When the link's current checkout link was last e-mailed successfully (None: never,
    a renewal's new link counting only the sends since it was made), and how many sends of
    the request were tried (sent or failed, of any of its checkout links)."""
    prefix = History.reason.startswith(MAIL_HISTORY, autoescape=True)
    sent = History.reason.endswith(f": {SENT}")
    intent = (
        session.scalar(select(LinkIntent.created_at).where(LinkIntent.intent_id == link.intent_id))
        if link.intent_id
        else None
    )
    if intent is not None:  # the current checkout link was made then: earlier sends were others
        sent = sent & (History.at >= intent)
    last, tried = session.execute(
        select(func.max(History.at).filter(sent), func.count(History.id)).where(
            History.link_id == link.id, prefix
        )
    ).one()
    return last, int(tried)


class Sharing:
    """E-mailing links to customers, with ``service``'s store and approvers."""

    def __init__(self, service: LinkService, settings: Settings):
        self.service = service
        self.store = service.store
        self.queue = service.queue
        self.settings = settings

    # Asking ---------------------------------------------------------------------------

    def request_mail(
        self, link_id: int, user_id: str, origin: Workspace | None, *, again: int | None = None
    ) -> MailQueued | AlreadySent:
        """Queue the e-mail of the link to its customer for ``user_id`` (the requester or an
        approver, of the link's own workspace). The current checkout link, once e-mailed, is
        only sent again when asked so, ``again`` being :attr:`AlreadySent.tried` of that
        question: otherwise :class:`AlreadySent`. A question that another send overtook is refused, so one
        click is one e-mail however often it is clicked. Refused says why not."""
        if not self.settings.mail_enabled:
            raise NotAllowed("E-mailing links is not set up (PAYLINK_SMTP_URL).")
        try:
            with self.store.transaction() as s:
                link = self.store.get(s, link_id)
                if link is None:
                    raise LinkGone()
                self._check(link, user_id, origin)
                last, tried = sent_at(s, link)
                if again is not None and again != tried:
                    raise AlreadyDecided(
                        "Nothing sent: the link was e-mailed (or tried) again after you were "
                        "asked. Use Send to customer in the thread to send it once more."
                    )
                if last is not None and again is None:
                    reference = link.checkout_reference or link.reference
                    return AlreadySent(mask_email(link.customer_email), last, tried, reference)
                if self._pending(s, link.id):
                    raise AlreadyDecided("This link is being e-mailed already.")
                # One job per attempt number: two clicks at once make one e-mail.
                self.queue.enqueue(
                    s,
                    link,
                    JobKind.MAIL,
                    payload={"user": user_id},
                    dedupe_key=f"mail:{link.id}:{tried}",
                )
        except IntegrityError:
            raise AlreadyDecided("This link is being e-mailed already.") from None
        log.info("e-mail of the link requested", extra={"ref": link.reference, "user": user_id})
        return MailQueued(mask_email(link.customer_email))

    def _check(self, link: Link, user_id: str, origin: Workspace | None) -> None:
        if origin is not None and not link.owned_by(origin):
            raise OtherWorkspace()
        if user_id != link.requester_id and not self.service.approves(link, user_id):
            raise NotAllowed(
                "Only the rep who asked for this link or an approver can send it to the customer."
            )
        if not link.customer_email:
            raise NotAllowed("This customer has no e-mail address: share the link another way.")
        if not link.checkout_url or Status(link.status) not in PAYABLE:
            raise AlreadyDecided(f"Nothing to send: this request is {link.status_label.lower()}.")

    def _pending(self, session: Session, link_id: int) -> bool:
        return (
            session.scalar(
                select(Job.id)
                .where(Job.link_id == link_id, Job.kind == JobKind.MAIL.value)
                .where(Job.done_at.is_(None))
                .limit(1)
            )
            is not None
        )

    # Sending (a job) ------------------------------------------------------------------

    def handlers(self) -> dict[JobKind, Handler]:
        """The mail job's handler, for the job runner."""
        return {JobKind.MAIL: self.mail}

    def mail(self, job: Job, link: Link) -> None:
        """Send the e-mail once, record it, and have the thread say how it went. Never
        raises for the mail server's answer: nothing is retried blindly."""
        user = str(job.payload.get("user") or "")
        if self.queue.attempted_before(job):
            self._record(job, link, user, LOST)
            return
        problem = self._unsendable(link)
        if problem:
            self._record(job, link, user, problem)
            return
        message = customer_email(link, self.settings)
        try:
            SmtpServer.from_url(self.settings.paylink_smtp_url.get_secret_value()).send(message)
        except MailFailed as exc:
            log.warning("e-mailing the link failed: %s", exc.reason, extra={"ref": link.reference})
            self._record(job, link, user, exc.reason)
            return
        log.info("link e-mailed to the customer", extra={"ref": link.reference, "user": user})
        self._record(job, link, user, None)

    def _unsendable(self, link: Link) -> str | None:
        if not self.settings.mail_enabled:
            return "e-mailing links is no longer set up (PAYLINK_SMTP_URL)"
        if not link.customer_email or not link.checkout_url:
            return "the request has no e-mail address or no link"
        if Status(link.status) not in PAYABLE:  # it moved on since the click
            return f"the request is {link.status_label.lower()} now, so nothing was sent"
        return None

    def _record(self, job: Job, link: Link, user: str, failure: str | None) -> None:
        """The history row and the thread reply of one send (``failure``: why it did not
        go; None: sent). The server's reason is shown with any address in it masked."""
        to = mask_email(link.customer_email)
        reason = redact(failure) if failure else None
        with self.store.transaction() as s:
            now = self.store.get(s, link.id)
            status = now.status if now is not None else link.status
            s.add(
                History(
                    link_id=link.id,
                    from_status=status,
                    to_status=status,
                    actor=user or "paylink",
                    reason=f"{MAIL_HISTORY}{to}: {SENT if reason is None else 'failed, ' + reason}",
                )
            )
            self.queue.enqueue(
                s,
                link,
                JobKind.THREAD,
                payload={
                    "kind": (ThreadKind.MAILED if reason is None else ThreadKind.MAIL_FAILED).value,
                    "by": user,
                    "to": to,
                    "reason": reason,
                    # Which checkout link: after a renewal, REF-2's.
                    "reference": link.checkout_reference or link.reference,
                },
                dedupe_key=f"thread:{link.id}:mail:{job.id}",
            )


# The message ------------------------------------------------------------------------------


def _expiry(link: Link, timezone: ZoneInfo) -> str | None:
    """The link's expiry in ``timezone``, when the link records one."""
    expires = getattr(link, "expires_at", None)  # links made before expiry existed have none
    if expires is None:
        return None
    return expires.astimezone(timezone).strftime(f"%d %B %Y, %H:%M ({timezone.key})").lstrip("0")


def customer_email(link: Link, settings: Settings) -> EmailMessage:
    """The e-mail that brings ``link``'s current checkout link to its customer: plain text
    with an HTML alternative, naming the company, the amount, the checkout link's order
    reference (after a renewal ``REF-2``, which XPay's page and receipt show), the link and
    its expiry (if it has one)."""
    company = settings.paylink_company_name or ""
    sender = company or "We"
    amount, reference, url = (
        money_text(link.amount, link.currency),
        link.checkout_reference or link.reference,
        link.checkout_url or "",
    )
    expiry = _expiry(link, settings.timezone)
    test = link.sandbox
    message = EmailMessage()
    message["Subject"] = f"{'TEST: ' if test else ''}Payment link for {amount} ({reference})" + (
        f" from {company}" if company else ""
    )
    message["From"] = settings.paylink_mail_from or ""
    try:
        message["To"] = Address(display_name=link.customer_name, addr_spec=link.customer_email)
    except (ValueError, IndexError):  # an address the header model cannot take: it alone
        message["To"] = link.customer_email or ""
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(
        domain=(settings.paylink_mail_from or "").rpartition("@")[2] or None
    )

    lines = [
        f"Dear {link.customer_name},",
        "",
        f"{sender} {'has' if company else 'have'} sent you a link to pay {amount} "
        f"(reference {reference}):",
        "",
        url,
        "",
    ]
    if expiry:
        lines += [f"The link expires on {expiry}.", ""]
    if test:
        lines += [f"{SANDBOX_LABEL}: this is a test, do not pay it.", ""]
    lines += ["Thank you.", *([company] if company else [])]
    message.set_content("\n".join(lines) + "\n")

    e = html.escape
    parts = [
        f"<p>Dear {e(link.customer_name)},</p>",
        f"<p>{e(sender)} {'has' if company else 'have'} sent you a link to pay "
        f"<strong>{e(amount)}</strong> (reference {e(reference)}):</p>",
        f'<p><a href="{e(url, quote=True)}">Pay {e(amount)}</a></p>',
        f"<p>Or copy this address into your browser: {e(url)}</p>",
    ]
    if expiry:
        parts.append(f"<p>The link expires on {e(expiry)}.</p>")
    if test:
        parts.append(f"<p><strong>{e(SANDBOX_LABEL)}</strong>: this is a test, do not pay it.</p>")
    parts.append(f"<p>Thank you.{'<br>' + e(company) if company else ''}</p>")
    message.add_alternative(
        '<!DOCTYPE html><html><body style="font-family:sans-serif">'
        + "".join(parts)
        + "</body></html>\n",
        subtype="html",
    )
    return message
