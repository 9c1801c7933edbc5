"""Each XPay store's gateway and webhook secrets: a link is created and reconciled with its
own store's keys, and a webhook is verified with the secret of the store its intent is in.

A link with no store (``store_id`` None) is the environment's: XPAY_* settings, or on the
sandbox the sandbox's own keys (:class:`~bot.xpay.keys.GatewayKeys`).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from bot.links.tables import Link, LinkIntent
from bot.links.workspace_settings import NoSecretKey, StoreInfo, WorkspaceSettings, base_url_of
from bot.secretbox import WrongKey
from bot.xpay.client import XPayClient, XPayKeys, XPayUnavailable
from bot.xpay.keys import GatewayKeys

if TYPE_CHECKING:
    from bot.links.service import Gateway


class UnknownStore(Exception):
    """No store has this id (deleted, or never made)."""


class StoreGateways:
    """One XPay client per store, made on first use and made again when the store changes;
    ``env`` is the environment's gateway, for links with no store."""

    def __init__(
        self,
        workspaces: WorkspaceSettings,
        env: Gateway,
        keys: GatewayKeys,
        *,
        timeout: float = 10.0,
    ):
        self.workspaces = workspaces
        self.env = env
        self.keys = keys
        self.timeout = timeout
        self._clients: dict[int, tuple[datetime, XPayClient]] = {}
        self._lock = threading.Lock()

    def choose(self, team_id: str | None, channel_id: str | None) -> StoreInfo | None:
        """The store a request of ``team_id`` typed in ``channel_id`` uses (None: the
        environment's XPay)."""
        return self.workspaces.store_for(team_id, channel_id)

    def _store(self, store_id: int) -> StoreInfo:
        store = self.workspaces.store_by_id(store_id)
        if store is None:
            raise UnknownStore(store_id)
        return store

    def gateway(self, store_id: int | None) -> Gateway:
        """The gateway of store ``store_id`` (the environment's for None)."""
        if store_id is None:
            return self.env
        store = self._store(store_id)
        with self._lock:
            cached = self._clients.get(store_id)
        if cached is not None and cached[0] == store.updated_at:
            return cached[1]
        client = XPayClient(
            base_url_of(store, self.workspaces.env), self._keys(store), read_timeout=self.timeout
        )
        with self._lock:
            old = self._clients.get(store_id)
            self._clients[store_id] = (store.updated_at, client)
        if old is not None:
            old[1].close()
        return client

    def is_sandbox(self, store_id: int | None) -> bool:
        """True when links of store ``store_id`` are made on the sandbox gateway."""
        if store_id is None:
            return self.workspaces.env.sandbox
        return self._store(store_id).sandbox

    def _keys(self, store: StoreInfo) -> XPayKeys:
        """The store's keys; XPayUnavailable (nothing was sent) when they cannot be read."""
        if store.sandbox:
            return self.keys.sandbox().xpay
        try:
            return XPayKeys(
                self.workspaces.secret(store, "api_key"),
                store.account_id or "",
                self.workspaces.secret(store, "hmac_secret"),
            )
        except (NoSecretKey, WrongKey):
            raise XPayUnavailable(
                f"The keys of the XPay store {store.name} cannot be decrypted "
                "(PAYLINK_SECRET_KEY is missing or another key): run `paylink check`"
            ) from None

    def webhook_secrets(self, store_id: int | None) -> list[str]:
        """The secrets a webhook about store ``store_id``'s links may be signed with (the
        environment's for None); UnknownStore when there is no such store."""
        if store_id is None:
            return self.keys.webhook_secrets()
        store = self._store(store_id)
        if store.sandbox:
            return [self.keys.sandbox().webhook_secret]
        secrets = self.workspaces.secret(store, "webhook_secret")
        return [part.strip() for part in secrets.split(",") if part.strip()]

    def store_of_intent(self, intent_id: str | None) -> tuple[bool, int | None]:
        """(a link has this payment intent, its store id). Any of a link's checkout links,
        as a payment is applied (``LinkStore.by_intents``): a renewed link's earlier intent
        is its store's too."""
        if not intent_id:
            return False, None
        with self.workspaces.store.reading() as s:
            found = s.execute(
                select(Link.store_id)
                .join(LinkIntent, LinkIntent.link_id == Link.id)
                .where(LinkIntent.intent_id == intent_id)
            ).first()
        return (True, found[0]) if found is not None else (False, None)

    def close(self) -> None:
        """Release every store client's connections."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for _, client in clients:
            client.close()
