"""E-mail over SMTP to PAYLINK_SMTP_URL's server: STARTTLS for ``smtp://``, TLS from the first
byte for ``smtps://``, a timeout, and for every failure a reason fit to show people (the
server's own words, never the password)."""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import parseaddr
from urllib.parse import unquote, urlsplit

TIMEOUT = 10.0  # seconds for the connection and each answer of the server
REASON_MAX = 300

_PORTS = {"smtp": 587, "smtps": 465}


class MailFailed(Exception):
    """The message was not accepted; ``reason`` says why (the server's code and words)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to hand over mail, read from an ``smtp://`` or ``smtps://`` URL."""

    host: str
    port: int
    implicit_tls: bool
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        """``smtp://user:pass@host:587`` (STARTTLS) or ``smtps://user:pass@host:465`` (TLS);
        the user and password may be percent-encoded. ValueError for anything else."""
        parts = urlsplit(url)
        if parts.scheme not in _PORTS or not parts.hostname:
            raise ValueError("expected smtp://user:pass@host:587 or smtps://user:pass@host:465")
        return cls(
            host=parts.hostname,
            port=parts.port or _PORTS[parts.scheme],
            implicit_tls=parts.scheme == "smtps",
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def send(self, message: EmailMessage, *, timeout: float = TIMEOUT) -> None:
        """Hand ``message`` to the server, over TLS, logged in when the URL names a user.
        MailFailed with the reason when it is not accepted: the caller decides what then
        (the server may have refused for good, or taken it before the answer was lost)."""
        if "@" not in parseaddr(str(message["From"] or ""))[1]:
            raise MailFailed("the sender is not an e-mail address: check PAYLINK_MAIL_FROM")
        # A new context each time: it reads the system's CA certificates (SSL_CERT_FILE too).
        context = ssl.create_default_context()
        # The name we greet with; socket.getfqdn(), smtplib's default, may wait on DNS.
        local = socket.gethostname() or "localhost"
        try:
            if self.implicit_tls:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, local_hostname=local, timeout=timeout, context=context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, local_hostname=local, timeout=timeout)
            with smtp:
                if not self.implicit_tls:
                    # Never in clear text: a server that does not offer STARTTLS is refused.
                    smtp.starttls(context=context)
                if self.user:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(message)
        except smtplib.SMTPNotSupportedError:
            raise MailFailed(self._clean("the mail server does not offer STARTTLS")) from None
        except smtplib.SMTPResponseException as exc:
            words = exc.smtp_error
            text = words.decode("utf-8", "replace") if isinstance(words, bytes) else str(words)
            raise MailFailed(self._clean(f"{exc.smtp_code} {text}")) from None
        except smtplib.SMTPRecipientsRefused as exc:
            refusals = [
                f"{code} {words.decode('utf-8', 'replace')}"
                for code, words in exc.recipients.values()
            ]
            raise MailFailed(self._clean("; ".join(refusals))) from None
        except (smtplib.SMTPException, OSError) as exc:  # no server, TLS failed, timeout
            raise MailFailed(self._clean(str(exc) or type(exc).__name__)) from None

    def _clean(self, reason: str) -> str:
        """The reason on one line, short, and without the password should a server echo it."""
        reason = " ".join(reason.split())
        if self.password:
            reason = reason.replace(self.password, "[password]")
        return reason if len(reason) <= REASON_MAX else reason[: REASON_MAX - 1] + "…"
