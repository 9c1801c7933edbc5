"""A workspace's own settings and XPay stores, as its admins set them in Slack, over the
environment's: the effective settings of a workspace are a :class:`~bot.config.Settings`
with the values it stored put over the environment's, parsed and validated the same way.

Store secrets (API key, API HMAC secret, webhook secret) are kept encrypted with
PAYLINK_SECRET_KEY (:mod:`bot.secretbox`) and are never read back to anyone: Slack only ever
shows when and by whom each was set. Every change is a :class:`SettingsChange` row naming
who changed which setting, never a secret's value. The same key seals multi-workspace mode's
Slack tokens (:mod:`bot.links.installations`): checking and rotating the key covers both.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import (
    JSON,
    Boolean,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.config import XPAY_BASE_URLS, Settings, with_overrides
from bot.db import Base, UTCDateTime, utcnow
from bot.errors import ConfigError
from bot.links.installations import BOTS, INSTALLATIONS, is_plain, reseal, token_columns
from bot.links.store import LinkStore
from bot.secretbox import SecretBox, WrongKey
from bot.urls import is_http_url

log = logging.getLogger(__name__)

#: The settings a workspace admin may change, by Settings field, with the label Slack shows.
EDITABLE: dict[str, str] = {
    "paylink_approvers": "Approvers",
    "paylink_approval_channel": "Approval channel",
    "paylink_currencies": "Currencies",
    "paylink_payment_methods": "Payment methods",
    "paylink_success_url": "Success URL",
    "paylink_failure_url": "Failure URL",
    "paylink_max_amount": "Maximum amount",
    "paylink_auto_approve_under": "Auto-approve under",
    "paylink_second_approval_from": "Second approval from",
    "paylink_remind_approvers_after": "Remind approvers after",
    "paylink_remind_rep_after": "Remind the rep after",
    "paylink_link_ttl": "Links expire after",
    "paylink_duplicate_window": "Duplicate window",
}

#: A store's secrets, by column, with the label Slack shows.
STORE_SECRETS: dict[str, str] = {
    "api_key": "API key",
    "hmac_secret": "API HMAC secret",
    "webhook_secret": "Webhook HMAC secret",
}
ENVIRONMENTS = ("sandbox", "staging", "live", "url")
#: The tables of multi-workspace mode's installations, whose Slack tokens are sealed too.
SLACK_TABLES = (INSTALLATIONS, BOTS)

# Another process (serve's worker child, a replica) sees a change within this many seconds;
# this one at once. A workspace's settings are read for every command and submission.
FRESH_FOR = 2.0


class WorkspaceSettingsRow(Base):
    """The settings a workspace's admins changed, as typed (the environment variables'
    form); a setting not in ``values`` is the environment's."""

    __tablename__ = "workspace_settings"

    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    values: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(64))


class XPayStore(Base):
    """One of a workspace's XPay stores: where it is, its keys (secrets encrypted), the
    channels whose requests use it, and whether it is the workspace's default."""

    __tablename__ = "xpay_stores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(80))
    environment: Mapped[str] = mapped_column(String(16))  # one of ENVIRONMENTS
    base_url: Mapped[str | None] = mapped_column(String(2000))  # environment "url"
    account_id: Mapped[str | None] = mapped_column(String(200))
    api_key: Mapped[str | None] = mapped_column(Text)  # Fernet tokens, never the secret
    hmac_secret: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str | None] = mapped_column(Text)
    # secret column → {"at": ISO time, "by": user id}: what Slack shows instead of the value.
    secrets_set: Mapped[dict[str, dict[str, str]]] = mapped_column(JSON, default=dict)
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("team_id", "name", name="uq_xpay_stores_team_name"),)

    def __repr__(self) -> str:
        return f"XPayStore(id={self.id!r}, name={self.name!r})"


class SettingsChange(Base):
    """One change to a workspace's settings or stores: who, when, which setting. ``detail``
    says what it became, except for secrets (``set``)."""

    __tablename__ = "settings_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    setting: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str | None] = mapped_column(Text)


@dataclass(frozen=True)
class StoreInfo:
    """A store as read, its secrets still sealed."""

    id: int
    team_id: str
    name: str
    environment: str
    base_url: str | None
    account_id: str | None
    channels: tuple[str, ...]
    is_default: bool
    secrets_set: Mapping[str, Mapping[str, str]]
    updated_at: datetime
    sealed: Mapping[str, str | None] = field(repr=False)

    @property
    def sandbox(self) -> bool:
        """True for a store on the embedded sandbox gateway (its links are tests)."""
        return self.environment == "sandbox"


class StoreProblems(Exception):
    """A store cannot be saved as given: field → what to fix."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


class NoSecretKey(Exception):
    """Secrets must be stored but PAYLINK_SECRET_KEY is not set."""


def settings_problems(base: Settings, values: Mapping[str, str]) -> dict[str, str]:
    """What is wrong with ``values`` (Settings field → text as typed) put over ``base``:
    field → the reason, in the words the environment variable's error would use."""
    try:
        Settings.model_validate(dict(base) | _given(values))
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else ""
            target = name if name in values else next(iter(values), "")
            problems.setdefault(target, err["msg"].removeprefix("Value error, "))
        return problems
    return {}


def _given(values: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in values.items() if value.strip()}


def _text_of(value: object) -> str:
    """A value of the environment's settings in the form an admin would type it."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items())
    if hasattr(value, "total_seconds"):
        seconds = int(value.total_seconds())
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds and seconds % size == 0:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"
    return str(value)


def environment_text(settings: Settings, name: str) -> str:
    """The environment's value of setting ``name``, as an admin would type it."""
    return _text_of(getattr(settings, name))


@dataclass
class _Cached:
    at: float
    effective: Settings
    stored: dict[str, str]
    stores: tuple[StoreInfo, ...]


class WorkspaceSettings:
    """The effective settings of each workspace (stored over the environment's), its XPay
    stores, and the changes admins make to both."""

    def __init__(self, settings: Settings, store: LinkStore):
        self.env = settings
        self.store = store
        key = settings.paylink_secret_key
        self.box = SecretBox(key.get_secret_value()) if key else None
        self._cache: dict[str | None, _Cached] = {}
        self._any_stores: tuple[float, bool] | None = None
        self._lock = threading.Lock()

    # Reading ---------------------------------------------------------------------------

    def _load(self, team_id: str | None) -> _Cached:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(team_id)
        if cached is not None and now - cached.at < FRESH_FOR:
            return cached
        stored: dict[str, str] = {}
        stores: tuple[StoreInfo, ...] = ()
        if team_id is not None:
            with self.store.reading() as s:
                row = s.get(WorkspaceSettingsRow, team_id)
                stored = dict(row.values) if row is not None else {}
                stores = tuple(
                    _info(found)
                    for found in s.scalars(
                        select(XPayStore).where(XPayStore.team_id == team_id).order_by(XPayStore.id)
                    )
                )
        try:
            effective = with_overrides(self.env, **_given(stored)) if stored else self.env
        except ConfigError as exc:
            # Checked when saved, so only a change of the environment gets here: the
            # workspace keeps working with the environment's settings meanwhile.
            log.warning(
                "workspace settings not usable: %s", "; ".join(exc.lines), extra={"team": team_id}
            )
            effective = self.env
        cached = _Cached(now, effective, stored, stores)
        with self._lock:
            self._cache[team_id] = cached
        return cached

    def for_team(self, team_id: str | None) -> Settings:
        """The effective settings of workspace ``team_id`` (the environment's when it stored
        none, or for None)."""
        return self._load(team_id).effective

    def stored(self, team_id: str | None) -> dict[str, str]:
        """What workspace ``team_id`` changed, as typed (Settings field → text)."""
        return dict(self._load(team_id).stored)

    def stores(self, team_id: str | None) -> tuple[StoreInfo, ...]:
        """Workspace ``team_id``'s XPay stores, oldest first."""
        return self._load(team_id).stores

    def store_for(self, team_id: str | None, channel_id: str | None) -> StoreInfo | None:
        """The store a request typed in ``channel_id`` uses: the channel's, else the
        workspace's default; None when it has neither (the environment's XPay settings)."""
        stores = self.stores(team_id)
        chosen = next((st for st in stores if channel_id and channel_id in st.channels), None)
        return chosen or next((st for st in stores if st.is_default), None)

    def store_by_id(self, store_id: int) -> StoreInfo | None:
        """A store by id, whichever workspace it is in (read now: webhooks and link creation
        need its current keys)."""
        with self.store.reading() as s:
            found = s.get(XPayStore, store_id)
            return _info(found) if found is not None else None

    def any_stores(self) -> bool:
        """True when some workspace has an XPay store (webhooks then look up theirs)."""
        now = time.monotonic()
        with self._lock:
            known = self._any_stores
        if known is not None and now - known[0] < FRESH_FOR:
            return known[1]
        with self.store.reading() as s:
            found = s.scalar(select(XPayStore.id).limit(1)) is not None
        with self._lock:
            self._any_stores = (now, found)
        return found

    def any_settings_stored(self) -> bool:
        """True when some workspace's admins changed one of its settings (read now: the
        command line asks once)."""
        with self.store.reading() as s:
            return any(s.scalars(select(WorkspaceSettingsRow.values)))

    def secret(self, store: StoreInfo, name: str) -> str:
        """A store's secret ``name`` in clear ("" when unset); NoSecretKey or WrongKey when
        PAYLINK_SECRET_KEY is missing or is not the key it was encrypted with."""
        token = store.sealed.get(name)
        if not token:
            return ""
        if self.box is None:
            raise NoSecretKey()
        return self.box.open(token)

    def history(self, team_id: str | None = None) -> list[SettingsChange]:
        """Every recorded change (of ``team_id`` only, when given), oldest first."""
        query = select(SettingsChange).order_by(SettingsChange.id)
        if team_id is not None:
            query = query.where(SettingsChange.team_id == team_id)
        with self.store.reading() as s:
            return list(s.scalars(query))

    def forget(self) -> None:
        """Drop what was read, so the next read sees the database (after a change)."""
        with self._lock:
            self._cache.clear()
            self._any_stores = None

    # Changing ----------------------------------------------------------------------------

    def save_settings(self, team_id: str, actor: str, values: Mapping[str, str]) -> list[str]:
        """Store ``values`` (Settings field → text; "" goes back to the environment's) for
        ``team_id`` and record each change; returns the labels of the settings changed.
        ValueError for a field admins may not change; StoreProblems when one is invalid."""
        unknown = set(values) - set(EDITABLE)
        if unknown:
            raise ValueError(f"not a workspace setting: {sorted(unknown)}")
        cleaned = {name: " ".join(value.split()) for name, value in values.items()}
        problems = settings_problems(self.env, cleaned)
        if problems:
            raise StoreProblems(problems)
        changed: list[str] = []
        with self.store.transaction() as s:
            row = s.get(WorkspaceSettingsRow, team_id)
            if row is None:
                row = WorkspaceSettingsRow(team_id=team_id, values={})
                s.add(row)
            current = dict(row.values or {})
            for name, value in cleaned.items():
                if current.get(name, "") == value:
                    continue
                if value:
                    current[name] = value
                else:
                    current.pop(name, None)
                shown = value or f"the environment's ({environment_text(self.env, name) or 'none'})"
                _record(s, team_id, actor, EDITABLE[name], shown)
                changed.append(EDITABLE[name])
            row.values = current
            row.updated_at, row.updated_by = utcnow(), actor
        self.forget()
        return changed

    def save_store(
        self,
        team_id: str,
        actor: str,
        fields: Mapping[str, Any],
        secrets: Mapping[str, str],
        *,
        store_id: int | None = None,
    ) -> StoreInfo:
        """Create (``store_id`` None) or change a store of ``team_id`` and record each change.

        ``fields``: name, environment (one of ENVIRONMENTS), base_url, account_id, channels
        (list), is_default. ``secrets``: the secrets typed ("" keeps the one stored). A store
        with a channel another store has takes it over; the default is one store. Raises
        StoreProblems (field → what to fix) when it cannot be saved."""
        name = " ".join(str(fields.get("name") or "").split())
        environment = str(fields.get("environment") or "")
        base_url = (
            (str(fields.get("base_url") or "").strip() or None) if environment == "url" else None
        )
        account_id = str(fields.get("account_id") or "").strip() or None
        channels = sorted({c for c in fields.get("channels") or () if c})
        typed = {k: v.strip() for k, v in secrets.items() if k in STORE_SECRETS and v.strip()}
        with self.store.transaction() as s:
            others = list(
                s.scalars(
                    select(XPayStore).where(XPayStore.team_id == team_id).order_by(XPayStore.id)
                )
            )
            row = next((o for o in others if o.id == store_id), None)
            if store_id is not None and row is None:
                raise StoreProblems({"name": "This store no longer exists."})
            others = [o for o in others if o is not row]
            problems = self._store_problems(name, environment, base_url, account_id, typed, row)
            if any(o.name == name for o in others):
                problems.setdefault("name", f"Another store is already called {name}.")
            if problems:
                raise StoreProblems(problems)
            if typed and self.box is None:
                raise StoreProblems(
                    {
                        next(iter(typed)): "PAYLINK_SECRET_KEY is not set, so Paylink cannot "
                        "store keys: ask whoever runs Paylink to set it, then try again."
                    }
                )
            new = row is None
            if row is None:
                row = XPayStore(team_id=team_id, secrets_set={}, channels=[], is_default=False)
                s.add(row)
            label = f"store {name}"
            before = {
                "name": row.name,
                "environment": row.environment,
                "base URL": row.base_url,
                "account id": row.account_id,
                "channels": ",".join(row.channels or []),
            }
            row.name, row.environment, row.base_url = name, environment, base_url
            row.account_id, row.channels = account_id, channels
            after = {
                "name": name,
                "environment": environment,
                "base URL": base_url,
                "account id": account_id,
                "channels": ",".join(channels),
            }
            if new:
                _record(s, team_id, actor, label, "created")
            for what, value in after.items():
                if not new and before[what] == value or new and not value:
                    continue
                _record(s, team_id, actor, f"{label}: {what}", value or "none")
            set_at = dict(row.secrets_set or {})
            for column, secret in typed.items():
                setattr(row, column, self.box.seal(secret))  # type: ignore[union-attr]
                set_at[column] = {"at": utcnow().isoformat(timespec="seconds"), "by": actor}
                _record(s, team_id, actor, f"{label}: {STORE_SECRETS[column]}", "set")
            row.secrets_set = set_at
            # One default per workspace: the one made so, or the first store.
            default = bool(fields.get("is_default")) or not any(o.is_default for o in others)
            if default != bool(row.is_default):
                row.is_default = default
                _record(s, team_id, actor, f"{label}: default", "yes" if default else "no")
            for other in others:
                taken = sorted(set(other.channels or []) & set(channels))
                if taken:
                    other.channels = [c for c in other.channels if c not in taken]
                    _record(
                        s,
                        team_id,
                        actor,
                        f"store {other.name}: channels",
                        ",".join(other.channels) or "none",
                    )
                if default and other.is_default:
                    other.is_default = False
                    _record(s, team_id, actor, f"store {other.name}: default", "no")
                other.updated_at = utcnow()
            row.updated_at = utcnow()
            s.flush()
            saved = _info(row)
        self.forget()
        return saved

    def _store_problems(
        self,
        name: str,
        environment: str,
        base_url: str | None,
        account_id: str | None,
        typed: Mapping[str, str],
        row: XPayStore | None,
    ) -> dict[str, str]:
        """Field → what to fix in a store about to be saved (the secrets' format only: XPay
        has no call that checks keys without creating a payment)."""
        problems: dict[str, str] = {}
        if not name:
            problems["name"] = "Give the store a name."
        elif len(name) > 80:
            problems["name"] = "Keep the name under 80 characters."
        if environment not in ENVIRONMENTS:
            problems["environment"] = "Choose sandbox, staging, live or a base URL."
        elif environment == "sandbox" and not self.env.sandbox:
            problems["environment"] = (
                "The sandbox gateway runs only where XPAY_ENV=sandbox: choose staging or live."
            )
        elif environment == "url" and not is_http_url(base_url):
            problems["base_url"] = "Enter the gateway's http:// or https:// base URL."
        if environment != "sandbox":
            if not account_id:
                problems["account_id"] = (
                    "Enter the account id (XPay portal: Settings → Store Info → Key Details)."
                )
            elif len(account_id) > 200 or any(ch.isspace() for ch in account_id):
                problems["account_id"] = "An account id has no spaces and is under 200 characters."
            for column, label in STORE_SECRETS.items():
                value = typed.get(column)
                if value is None:
                    if row is None or not getattr(row, column):
                        problems[column] = f"Enter the {label} from the XPay portal."
                elif (
                    len(value) < 8
                    or len(value) > 500
                    or any(ch.isspace() for ch in value if column != "webhook_secret")
                ):
                    problems[column] = (
                        f"That does not look like an XPay {label}: copy it again from the portal."
                    )
        return problems

    def rotate_key(self, new_key: str | None = None) -> int:
        """Re-encrypt every stored secret with ``new_key``, or else with the first key of
        PAYLINK_SECRET_KEY, in one transaction; returns how many. The secrets: XPay stores'
        and the Slack installations' tokens, those stored in plain text before tokens were
        sealed (migration 0013) sealed now. WrongKey when no key opens one, NoSecretKey when
        there is none (nothing changes then)."""
        keys = self.env.paylink_secret_key
        current = keys.get_secret_value() if keys else ""
        box = SecretBox(",".join(k for k in (new_key, current) if k)) if new_key else self.box
        count = 0
        with self.store.transaction() as s:
            for row in s.scalars(select(XPayStore)):
                for column in STORE_SECRETS:
                    token = getattr(row, column)
                    if not token:
                        continue
                    if box is None or self.box is None:
                        raise NoSecretKey()
                    setattr(row, column, box.rotate(token))
                    count += 1
            for table in SLACK_TABLES:
                columns = token_columns(table)
                # Locked (PostgreSQL): a token refreshed meanwhile is not written back stale.
                query = select(table.c.id, *(table.c[c] for c in columns)).with_for_update()
                for row in s.execute(query).mappings().all():
                    stored = {c: row[c] for c in columns if row[c]}
                    if not stored:
                        continue
                    if box is None:
                        raise NoSecretKey()
                    resealed = {c: reseal(box, token) for c, token in stored.items()}
                    s.execute(update(table).where(table.c.id == row["id"]).values(resealed))
                    count += len(stored)
        self.box = box
        self.forget()
        return count

    def sealed_count(self) -> int:
        """How many secrets are stored encrypted."""
        with self.store.reading() as s:
            rows = list(s.scalars(select(XPayStore)))
        return sum(1 for row in rows for column in STORE_SECRETS if getattr(row, column))

    def check_key(self) -> str | None:
        """Why PAYLINK_SECRET_KEY cannot open the stored secrets (XPay stores' and the sealed
        Slack installation tokens; one line), or None."""
        with self.store.reading() as s:
            rows = list(s.scalars(select(XPayStore)))
            installed = [
                token
                for table in SLACK_TABLES
                for row in s.execute(select(*(table.c[c] for c in token_columns(table))))
                for token in row
                if token and not is_plain(token)
            ]
        stored = {
            "XPay store secrets": [
                getattr(row, c) for row in rows for c in STORE_SECRETS if getattr(row, c)
            ],
            "Slack installation tokens": installed,
        }
        stored = {what: tokens for what, tokens in stored.items() if tokens}
        if not stored:
            return None
        if self.box is None:
            counted = " and ".join(f"{len(tokens)} {what}" for what, tokens in stored.items())
            return (
                f"PAYLINK_SECRET_KEY is not set, but {counted} are stored encrypted: set it to "
                "the key they were encrypted with"
            )
        unopened = [what for what, tokens in stored.items() if not self._opens(tokens)]
        if unopened:
            return (
                f"PAYLINK_SECRET_KEY does not decrypt the {' and the '.join(unopened)} in the "
                "database: set it to the key they were encrypted with (the new one after "
                "`paylink rotate-key`)"
            )
        return None

    def _opens(self, tokens: list[str]) -> bool:
        try:
            for token in tokens:
                self.box.open(token)  # type: ignore[union-attr]
        except WrongKey:
            return False
        return True


def base_url_of(store: StoreInfo, settings: Settings) -> str:
    """Where a store's gateway is."""
    if store.environment == "url" and store.base_url:
        return store.base_url.rstrip("/")
    if store.environment == "sandbox":
        return f"{settings.public_url}/sandbox"
    return XPAY_BASE_URLS[store.environment]


def _record(s: Session, team_id: str, actor: str, setting: str, detail: str | None) -> None:
    s.add(SettingsChange(team_id=team_id, actor=actor, setting=setting, detail=detail, at=utcnow()))


def _info(row: XPayStore) -> StoreInfo:
    return StoreInfo(
        id=row.id,
        team_id=row.team_id,
        name=row.name,
        environment=row.environment,
        base_url=row.base_url,
        account_id=row.account_id,
        channels=tuple(row.channels or ()),
        is_default=bool(row.is_default),
        secrets_set=dict(row.secrets_set or {}),
        updated_at=row.updated_at,
        sealed={column: getattr(row, column) for column in STORE_SECRETS},
    )
