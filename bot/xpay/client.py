"""HTTP client for XStak XPay: create hosted-checkout links and read payment intents.

The create call is not idempotent (XPay documents no idempotency key), so the client is strict
about what it retries and about how it reports failures:

* ``GET`` (``get_intent``) is retried on connect errors and on 502/503/504, with backoff and
  ``Retry-After`` respected (capped);
* ``POST`` (``create_checkout``) is retried only when the connection could not be opened,
  i.e. the request was certainly not sent. Read errors, timeouts and 5xx are never retried;
* every failure is an :class:`XPayError` subclass telling the caller what is known:
  :class:`XPayRejected` (a definite refusal), :class:`XPayServerError` (5xx but 502/504),
  :class:`XPayUnavailable` (nothing was sent) and :class:`XPayOutcomeUnknown` (the request
  went out and we cannot tell whether a link now exists, including a proxy's 502/504;
  never report it as safe to retry).

The body is serialised once with :func:`bot.xpay.signing.js_stringify`, signed, and those
exact bytes are sent. Nothing logged or raised contains credentials, the body or customer data.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.retry import Retry

from bot.money import AmountError, json_number, to_amount
from bot.urls import is_http_url
from bot.xpay.signing import js_stringify, sign

logger = logging.getLogger(__name__)

CHECKOUT_PATH = "/public/v1/payment/checkout"
INTENT_PATH = "/public/v1/payment/intent/details/{pi_id}"

#: Largest response body read from XPay; anything bigger is treated as malformed.
MAX_RESPONSE_BYTES = 1024 * 1024
#: Longest gateway ``message`` we pass on to people.
MAX_MESSAGE_CHARS = 300
#: Longest ``Retry-After`` we are willing to sleep for inside a call.
MAX_RETRY_AFTER_SECONDS = 5.0


class XPayError(Exception):
    """Base class for XPay failures.

    ``message`` is human-readable and safe to show (XPay's own ``message`` when it gave one);
    ``status_code`` is the HTTP status when a response arrived. ``maybe_created`` says whether
    the call might have had an effect at XPay despite the error.
    """

    maybe_created: bool = False

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    def __str__(self) -> str:
        return self.message


class XPayRejected(XPayError):
    """XPay definitely refused the request (4xx, or 2xx with ``success: false``).

    Nothing was created; show the message, fix the cause, then it is safe to try again.
    """


class XPayServerError(XPayError):
    """XPay answered with a 5xx: the call failed at the gateway."""


class XPayUnavailable(XPayError):
    """XPay could not be reached at all: the request was certainly not sent."""


class XPayOutcomeUnknown(XPayError):
    """The request was sent but the result is unknown (timeout, dropped connection, or an
    answer we cannot understand). For a create, the link MAY exist: reconcile, don't retry."""

    maybe_created = True


@dataclass(frozen=True)
class XPayKeys:
    """What XPay asks of every caller: ``x-api-key``, ``x-account-id`` and the HMAC secret
    that signs request bodies."""

    api_key: str = field(repr=False)
    account_id: str
    hmac_secret: str = field(repr=False)


@dataclass(frozen=True)
class CheckoutCreated:
    """A checkout link XPay created."""

    intent_id: str
    checkout_url: str
    status: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class IntentDetails:
    """A payment intent as XPay currently reports it."""

    intent_id: str
    status: str
    amount: Decimal | None
    currency: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)


class _CappedRetry(Retry):
    """``Retry`` that never sleeps longer than ``MAX_RETRY_AFTER_SECONDS`` for Retry-After."""

    def get_retry_after(self, response: Any) -> float | None:
        value = super().get_retry_after(response)
        return None if value is None else min(value, MAX_RETRY_AFTER_SECONDS)


def _retry_policy() -> Retry:
    # One policy serves both methods because urllib3 applies ``allowed_methods`` to read and
    # status retries only: POST gets connect retries (request certainly not sent) and nothing
    # else; GET additionally gets 502/503/504 retries. Read errors are retried for no method.
    return _CappedRetry(
        total=3,
        connect=2,
        read=0,
        status=3,
        other=0,
        redirect=0,
        allowed_methods=frozenset({"GET"}),
        status_forcelist=frozenset({502, 503, 504}),
        backoff_factor=0.3,
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
    )


def _clean_message(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    if not text:
        return None
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


def _never_connected(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) shows the TCP/TLS connection was never opened."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        err = stack.pop()
        if not isinstance(err, BaseException) or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, NewConnectionError | ConnectTimeoutError | requests.ConnectTimeout):
            return True
        stack.extend([err.__cause__, err.__context__, getattr(err, "reason", None), *err.args])
    return False


class XPayClient:
    """Talks to XPay's public API with one ``requests.Session``.

    ``keys`` are the caller's keys, or what to ask for them at each call (the sandbox's
    live in the database, which may not exist yet when the client is made).
    ``session`` may be supplied (e.g. to share a pool); the client mounts its retry adapter on
    it either way, and :meth:`close` closes it only when the client created it.
    """

    def __init__(
        self,
        base_url: str,
        keys: XPayKeys | Callable[[], XPayKeys],
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        if not is_http_url(base_url):
            raise ValueError("base_url must be an http(s) URL")
        self._base_url = base_url.rstrip("/")
        self._keys = keys if callable(keys) else lambda: keys
        self._timeout = (connect_timeout, read_timeout)
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        adapter = HTTPAdapter(max_retries=_retry_policy())
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)

    def __repr__(self) -> str:
        return f"XPayClient(base_url={self._base_url!r})"

    def close(self) -> None:
        """Release pooled connections (closes the session if this client created it)."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> XPayClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- public calls ---------------------------------------------------------------------

    def create_checkout(self, payload: Mapping[str, Any]) -> CheckoutCreated:
        """Create a hosted checkout link from XPay's create body (``Decimal`` amounts welcome).

        Raises :class:`XPayRejected`, :class:`XPayServerError`, :class:`XPayUnavailable` or
        :class:`XPayOutcomeUnknown` (the link may exist). ``TypeError``/``ValueError`` if
        ``payload`` cannot be serialised (nothing is sent then).
        """
        body = js_stringify(dict(payload))
        keys = self._keys()
        headers = {
            **self._auth_headers(keys),
            "x-signature": sign(keys.hmac_secret, body),
            "Content-Type": "application/json",
        }
        status, doc = self._call("POST", CHECKOUT_PATH, headers=headers, body=body)
        data = doc.get("data")
        if not isinstance(data, dict):
            raise XPayOutcomeUnknown(
                "XPay accepted the request but its answer had no payment intent", status
            )
        intent_id, url = data.get("_id"), data.get("checkout_page_url")
        if not (isinstance(intent_id, str) and intent_id and isinstance(url, str) and url):
            raise XPayOutcomeUnknown(
                "XPay accepted the request but its answer had no intent id or checkout link",
                status,
            )
        pi_status = data.get("pi_status")
        return CheckoutCreated(
            intent_id=intent_id,
            checkout_url=url,
            status=pi_status if isinstance(pi_status, str) else None,
            raw=doc,
        )

    def get_intent(self, intent_id: str) -> IntentDetails:
        """Fetch a payment intent's current status from XPay.

        Raises the same exceptions as :meth:`create_checkout`; for this read-only call
        :class:`XPayOutcomeUnknown` just means no usable answer arrived.
        """
        if not intent_id:
            raise ValueError("intent_id is required")
        path = INTENT_PATH.format(pi_id=quote(intent_id, safe=""))
        status, doc = self._call("GET", path, headers=self._auth_headers(self._keys()), body=None)
        data = doc.get("data") if isinstance(doc.get("data"), dict) else doc
        pi_status = data.get("pi_status") or data.get("status")
        if not isinstance(pi_status, str) or not pi_status:
            raise XPayOutcomeUnknown("XPay's answer had no payment intent status", status)
        found_id = data.get("_id")
        currency = data.get("currency")
        try:
            amount = None if data.get("amount") is None else to_amount(data["amount"])
        except AmountError as exc:
            # Never settle, or show, a sum we cannot act on: the answer is unusable.
            raise XPayOutcomeUnknown(f"XPay's answer had an amount that is {exc}", status) from None
        return IntentDetails(
            intent_id=found_id if isinstance(found_id, str) and found_id else intent_id,
            status=pi_status,
            amount=amount,
            currency=currency if isinstance(currency, str) else None,
            raw=doc,
        )

    # -- plumbing -------------------------------------------------------------------------

    @staticmethod
    def _auth_headers(keys: XPayKeys) -> dict[str, str]:
        return {
            "x-api-key": keys.api_key,
            "x-account-id": keys.account_id,
            "Accept": "application/json",
        }

    def _call(
        self, method: str, path: str, *, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, dict[str, Any]]:
        """Send one request; return (status, JSON object) for a successful answer or raise."""
        started = time.monotonic()
        status: int | None = None
        outcome = "error"
        try:
            try:
                with self._session.request(
                    method,
                    self._base_url + path,
                    data=body,
                    headers=headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                    stream=True,
                ) as response:
                    status = response.status_code
                    content = self._read_capped(response)
            except requests.RequestException as exc:
                outcome = type(exc).__name__
                if _never_connected(exc):
                    raise XPayUnavailable("Could not connect to XPay; nothing was sent") from None
                if isinstance(exc, requests.Timeout):
                    raise XPayOutcomeUnknown(
                        "XPay did not answer in time; the request may have been processed",
                        status,
                    ) from None
                raise XPayOutcomeUnknown(
                    "The connection to XPay failed after sending; the request may have been "
                    "processed",
                    status,
                ) from None
            doc = self._interpret(status, content)
            outcome = "ok"
            return status, doc
        except XPayError as err:
            if outcome == "error":
                outcome = type(err).__name__
            raise
        finally:
            elapsed_ms = (time.monotonic() - started) * 1000
            logger.info(
                "xpay %s %s status=%s elapsed_ms=%.0f outcome=%s",
                method,
                path,
                status if status is not None else "-",
                elapsed_ms,
                outcome,
            )

    @staticmethod
    def _read_capped(response: requests.Response) -> bytes | None:
        """The response body, or None if it is larger than ``MAX_RESPONSE_BYTES``."""
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=64 * 1024):
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _interpret(status: int, content: bytes | None) -> dict[str, Any]:
        doc: Any = None
        if content is not None:
            try:
                doc = json.loads(content, parse_float=json_number, parse_int=json_number)
            except (ValueError, RecursionError):
                doc = None
        message = _clean_message(doc.get("message")) if isinstance(doc, dict) else None

        if status in (502, 504):
            # A proxy in front of XPay gave up waiting: XPay itself may have created the link.
            raise XPayOutcomeUnknown(
                message or f"XPay's gateway did not get an answer in time (HTTP {status})", status
            )
        if status >= 500:
            raise XPayServerError(message or f"XPay had a server error (HTTP {status})", status)
        if not 200 <= status < 300:
            raise XPayRejected(message or f"XPay refused the request (HTTP {status})", status)
        if not isinstance(doc, dict):
            raise XPayOutcomeUnknown(
                f"XPay answered HTTP {status} with a body that is not a JSON object", status
            )
        if doc.get("success") is False:
            raise XPayRejected(message or "XPay refused the request", status)
        return doc
