"""Which keys the bot uses with its gateway, and the sandbox gateway's own.

The sandbox's keys are random per database, made by whoever needs them first and kept in the
``sandbox_keys`` table: a value written in the code or the docs would let anyone who read it
sign webhooks that a bot on the sandbox believes.
"""

from __future__ import annotations

import secrets
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Integer, String
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from bot.db import Base, UTCDateTime, utcnow
from bot.xpay.client import XPayKeys

if TYPE_CHECKING:
    from bot.config import Settings

_ONLY = 1  # the table's one row


class SandboxKeys(Base):
    """The sandbox gateway's keys in this database: one row, made on first use."""

    __tablename__ = "sandbox_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    api_key: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str] = mapped_column(String(64))
    hmac_secret: Mapped[str] = mapped_column(String(64))
    webhook_secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"SandboxKeys(account_id={self.account_id!r})"

    @property
    def xpay(self) -> XPayKeys:
        """The keys a caller of the sandbox's API sends."""
        return XPayKeys(self.api_key, self.account_id, self.hmac_secret)


def sandbox_keys(sessions: sessionmaker) -> SandboxKeys:
    """This database's sandbox keys; the first caller makes them, at random."""
    with sessions() as session:
        found = session.get(SandboxKeys, _ONLY)
    if found is not None:
        return found
    try:
        with sessions.begin() as session:
            session.add(
                SandboxKeys(
                    id=_ONLY,
                    api_key=secrets.token_hex(32),
                    account_id="sandbox-" + secrets.token_hex(8),
                    hmac_secret=secrets.token_hex(32),
                    webhook_secret=secrets.token_hex(32),
                )
            )
    except IntegrityError:
        pass  # another process or thread made them first: theirs are the ones
    with sessions() as session:
        made = session.get(SandboxKeys, _ONLY)
    assert made is not None
    return made


class GatewayKeys:
    """The keys the bot uses with its gateway: the configured ones, or on the sandbox (when
    they are not configured) the sandbox's own.

    The sandbox's are read on first use, not when the process starts: ``paylink migrate``
    and ``check`` build their runtime before the table may exist.
    """

    def __init__(self, settings: Settings, sessions: sessionmaker):
        self._settings = settings
        self._sessions = sessions
        self._stored: SandboxKeys | None = None
        self._lock = threading.Lock()

    def sandbox(self) -> SandboxKeys:
        """The sandbox gateway's keys in this database (made on first use)."""
        with self._lock:
            if self._stored is None:
                self._stored = sandbox_keys(self._sessions)
            return self._stored

    def xpay(self) -> XPayKeys:
        """The keys sent with every call to the gateway's API."""
        configured = self._settings.xpay_credentials()
        return XPayKeys(*configured) if configured else self.sandbox().xpay

    def webhook_secrets(self) -> list[str]:
        """The secrets a webhook may be signed with, newest first."""
        return self._settings.webhook_secrets or (
            [self.sandbox().webhook_secret] if self._settings.sandbox else []
        )
