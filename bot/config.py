"""Configuration from environment variables (and a ``.env`` file), validated at start-up."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from datetime import time, timedelta
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.durations import parse_duration
from bot.errors import ConfigError
from bot.money import MAX_AMOUNT, amount_problem
from bot.payment_methods import PAYMENT_METHODS
from bot.urls import is_http_url

XPAY_BASE_URLS = {
    "staging": "https://xstak-pay-stg.xstak.com",
    "live": "https://xstak-pay.xstak.com",
}

#: The settings that hold keys for a real XPay (from its portal).
XPAY_KEYS = ("xpay_api_key", "xpay_account_id", "xpay_hmac_secret", "xpay_webhook_secret")

CsvList = Annotated[list[str], NoDecode]
#: Per-currency amounts, written ``PKR:10000,USD:50``.
Thresholds = Annotated[dict[str, Decimal], NoDecode]


def _parts(text: str) -> list[str]:
    """The non-blank parts of a comma-separated value, stripped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _split_csv(value: object) -> object:
    return _parts(value) if isinstance(value, str) else value


class Settings(BaseSettings):
    """Every setting (docs/reference.md lists them for people)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"

    xpay_env: Literal["sandbox", "staging", "live"] = "sandbox"
    xpay_base_url: str | None = None
    xpay_api_key: SecretStr | None = None
    xpay_account_id: str | None = None
    xpay_hmac_secret: SecretStr | None = None
    xpay_webhook_secret: SecretStr | None = None
    # Well inside the 60-second lease on a link being created, so that a call still running
    # is never taken for a crashed one and made a second time.
    xpay_timeout: float = Field(default=10.0, gt=0, le=30)

    database_url: str = "sqlite:///paylink.db"

    paylink_approvers: CsvList = Field(default_factory=list)
    paylink_approval_channel: str | None = None
    paylink_allow_self_approval: bool = False
    paylink_currencies: CsvList = Field(default_factory=lambda: ["PKR"])
    paylink_payment_methods: CsvList = Field(default_factory=lambda: list(PAYMENT_METHODS))
    paylink_success_url: str | None = None
    paylink_failure_url: str | None = None
    paylink_max_amount: Decimal | None = None
    paylink_public_url: str | None = None
    paylink_reconcile_after: int = Field(default=900, ge=10)
    # Where the background work runs, so that it never slows an ack: "child", a `paylink
    # worker` process that `serve` starts and looks after; "separate", one run by hand beside
    # `serve`; "inline", `serve` itself (one process). See docs/decisions/0005.
    paylink_worker: Literal["child", "separate", "inline"] = "child"
    paylink_host: str = "0.0.0.0"  # noqa: S104  (all addresses, as the spec asks)
    port: int = Field(default=3000, ge=1, le=65535)

    # Approval policy and follow-up.
    paylink_auto_approve_under: Thresholds = Field(default_factory=dict)
    paylink_second_approval_from: Thresholds = Field(default_factory=dict)
    paylink_remind_approvers_after: timedelta = timedelta(hours=4)
    paylink_remind_rep_after: timedelta = timedelta(hours=24)
    paylink_digest_at: time | None = time(9, 0)
    paylink_timezone: str = "Asia/Karachi"
    paylink_link_ttl: timedelta = timedelta(days=7)
    paylink_duplicate_window: timedelta = timedelta(hours=24)

    # Sharing: the link e-mailed to the customer, and its QR code.
    paylink_smtp_url: SecretStr | None = None
    paylink_mail_from: str | None = None
    paylink_company_name: str | None = None
    paylink_qr: bool = True

    # Workspaces: OAuth installs, secrets stored encrypted, who may change Settings.
    slack_client_id: str | None = None
    slack_client_secret: SecretStr | None = None
    paylink_secret_key: SecretStr | None = None
    paylink_admins: CsvList = Field(default_factory=list)

    _csv = field_validator(
        "paylink_approvers",
        "paylink_currencies",
        "paylink_payment_methods",
        "paylink_admins",
        mode="before",
    )(_split_csv)

    @field_validator("slack_api_url", "xpay_base_url", "paylink_public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not is_http_url(value):
            raise ValueError("expected an http:// or https:// URL")
        return value

    @field_validator("paylink_host")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        # An address, not a name: a name can resolve to several, and the server binds one.
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError(
                "expected an IP address such as 0.0.0.0 (every IPv4 address), 127.0.0.1 "
                "(this machine only) or :: (every IPv6 address)"
            ) from None

    @field_validator("paylink_success_url", "paylink_failure_url")
    @classmethod
    def _redirect_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        return cls._http_url(value)

    @field_validator("xpay_webhook_secret")
    @classmethod
    def _webhook_secret_list(cls, value: SecretStr | None) -> SecretStr | None:
        # Set but nothing between the commas: every webhook would then find no key.
        if value is not None and value.get_secret_value() and not _parts(value.get_secret_value()):
            raise ValueError("expected one or more secrets separated by commas, got only commas")
        return value

    @field_validator("paylink_approvers")
    @classmethod
    def _approver_ids(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not (v[:1] in ("U", "W", "S") and v[1:].isalnum())]
        if bad:
            raise ValueError(f"expected Slack user IDs (U…) or user-group IDs (S…), got {bad}")
        return value

    @field_validator("paylink_currencies")
    @classmethod
    def _currencies(cls, value: list[str]) -> list[str]:
        codes = [v.upper() for v in value]
        bad = [c for c in codes if not (len(c) == 3 and c.isalpha())]
        if bad or not codes:
            raise ValueError(f"expected ISO 4217 codes like PKR,USD, got {bad or 'nothing'}")
        return codes

    @field_validator("paylink_payment_methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        methods = [v.lower() for v in value]
        bad = [m for m in methods if m not in PAYMENT_METHODS]
        if bad or not methods:
            raise ValueError(f"expected some of {','.join(PAYMENT_METHODS)}, got {bad}")
        return methods

    @field_validator("paylink_max_amount")
    @classmethod
    def _max_amount(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and (value <= 0 or amount_problem(value)):
            raise ValueError(
                f"expected a positive amount below {MAX_AMOUNT:,} with at most 2 decimal places"
            )
        return value

    @field_validator("paylink_auto_approve_under", "paylink_second_approval_from", mode="before")
    @classmethod
    def _thresholds(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        thresholds: dict[str, Decimal] = {}
        for part in _parts(value):
            currency, _, amount = part.partition(":")
            try:
                number = Decimal(amount.strip())
            except InvalidOperation:
                number = Decimal(0)
            currency = currency.strip().upper()
            if (
                len(currency) != 3
                or not currency.isalpha()
                or number <= 0
                or amount_problem(number)
            ):
                raise ValueError(
                    f"expected CURRENCY:AMOUNT pairs such as PKR:10000,USD:50, got {part!r}"
                )
            thresholds[currency] = number
        return thresholds

    @field_validator(
        "paylink_remind_approvers_after",
        "paylink_remind_rep_after",
        "paylink_link_ttl",
        "paylink_duplicate_window",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("paylink_digest_at", mode="before")
    @classmethod
    def _digest_at(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None  # empty: no digest
        try:
            return time.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"expected a time of day such as 09:00 (or empty for no digest), got {value!r}"
            ) from None

    @field_validator("paylink_timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"expected an IANA time zone such as Asia/Karachi, got {value!r}"
            ) from None
        return value

    @field_validator("paylink_smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            # The value may hold a password: never repeat it.
            raise ValueError(
                "expected smtp://user:pass@host:587 (STARTTLS) or smtps://user:pass@host:465"
            )
        return value

    @field_validator("paylink_secret_key")
    @classmethod
    def _secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        for part in value.get_secret_value().split(","):  # during a rotation: NEW,OLD
            try:
                key = base64.urlsafe_b64decode(part.strip().encode())
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != 32:
                # Never repeat the value: it is a secret.
                raise ValueError(
                    "expected a Fernet key (32 url-safe base64-encoded bytes), or during a "
                    "rotation the new key and the old one, comma-separated (NEW,OLD); make a "
                    "key with python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'"
                )
        return value

    @model_validator(mode="after")
    def _pairs(self) -> Settings:
        if bool(self.paylink_smtp_url) != bool(self.paylink_mail_from):
            raise ValueError(
                "PAYLINK_SMTP_URL and PAYLINK_MAIL_FROM go together: set both, or neither"
            )
        if bool(self.slack_client_id) != _present(self.slack_client_secret):
            raise ValueError(
                "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET go together: set both, or neither"
            )
        if self.multi_workspace and not _present(self.paylink_secret_key):
            raise ValueError(
                "PAYLINK_SECRET_KEY is not set: multi-workspace mode (SLACK_CLIENT_ID) stores "
                "each workspace's XPay keys encrypted with it"
            )
        return self

    @model_validator(mode="after")
    def _xpay_credentials(self) -> Settings:
        given = [name for name in XPAY_KEYS if _present(getattr(self, name))]
        if given and "xpay_env" not in self.model_fields_set:
            # Keys for a real XPay must never run on the sandbox merely by default.
            raise ValueError(
                ", ".join(name.upper() for name in given)
                + " set but XPAY_ENV is not: set XPAY_ENV to `staging` or `live`, "
                "or unset the XPay keys to try the sandbox"
            )
        if self.xpay_env != "sandbox":
            missing = [name for name in XPAY_KEYS if name not in given]
            if missing:
                raise ValueError(
                    "XPAY_ENV="
                    + self.xpay_env
                    + " needs "
                    + ", ".join(m.upper() for m in missing)
                    + " (from the XPay portal: Settings → Store Info → Key Details)"
                )
        return self

    # Derived values -------------------------------------------------------------------

    @property
    def public_url(self) -> str:
        """This server's public base URL, without a trailing slash."""
        return (self.paylink_public_url or f"http://localhost:{self.port}").rstrip("/")

    @property
    def xpay_url(self) -> str:
        """The XPay base URL the client talks to."""
        if self.xpay_base_url:
            return self.xpay_base_url.rstrip("/")
        if self.xpay_env == "sandbox":
            return f"{self.public_url}/sandbox"
        return XPAY_BASE_URLS[self.xpay_env]

    @property
    def timezone(self) -> ZoneInfo:
        """The time zone of the digest's hour and of export dates."""
        return ZoneInfo(self.paylink_timezone)

    @property
    def multi_workspace(self) -> bool:
        """True when workspaces install the app through OAuth (SLACK_CLIENT_ID is set)."""
        return bool(self.slack_client_id)

    @property
    def mail_enabled(self) -> bool:
        """True when links can be e-mailed to customers (SMTP configured)."""
        return self.paylink_smtp_url is not None

    @property
    def sandbox(self) -> bool:
        """True when the embedded sandbox gateway is mounted."""
        return self.xpay_env == "sandbox"

    def xpay_credentials(self) -> tuple[str, str, str] | None:
        """(api key, account id, API HMAC secret) as configured; None on the sandbox when
        they are not (it then has keys of its own, in the database: bot.xpay.keys)."""
        if self.sandbox and not _present(self.xpay_hmac_secret):
            return None
        return (
            _secret(self.xpay_api_key),
            self.xpay_account_id or "",
            _secret(self.xpay_hmac_secret),
        )

    @cached_property
    def webhook_secrets(self) -> list[str]:
        """Configured webhook HMAC secrets, newest first; several allow rotation. Empty on
        the sandbox when none is set (it then has one of its own: bot.xpay.keys)."""
        return _parts(_secret(self.xpay_webhook_secret))

    def require(self, *names: str) -> None:
        """Raise ConfigError naming each of ``names`` that is unset (e.g. for ``serve``)."""
        hints = {
            "slack_bot_token": "the bot token xoxb-… from your Slack app's OAuth & Permissions page",
            "slack_signing_secret": "the Signing Secret from your Slack app's Basic Information page",
            "slack_app_token": "an app-level token xapp-… with connections:write (Socket Mode)",
        }
        lines = [
            f"{name.upper()} is not set: expected {hints.get(name, 'a value')}"
            for name in names
            if not _present(getattr(self, name))
        ]
        if lines:
            raise ConfigError(lines)


def _present(value: SecretStr | str | None) -> bool:
    return bool(_secret(value) if isinstance(value, SecretStr) else value)


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def load_settings(**overrides: object) -> Settings:
    """Read settings; turn pydantic's errors into one clear line per variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise _config_error(exc) from None


def with_overrides(settings: Settings, **overrides: object) -> Settings:
    """``settings`` with those of ``overrides`` that are given (not None), validated like the
    rest (e.g. a command line's --host and --port)."""
    given = {name: value for name, value in overrides.items() if value is not None}
    if not given:
        return settings
    try:
        return Settings.model_validate(dict(settings) | given)
    except ValidationError as exc:
        raise _config_error(exc) from None


def _config_error(exc: ValidationError) -> ConfigError:
    lines = []
    for err in exc.errors():
        name = str(err["loc"][0]).upper() if err["loc"] else "configuration"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{name}: {message}" if err["loc"] else message)
    return ConfigError(lines)
