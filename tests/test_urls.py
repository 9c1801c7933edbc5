"""One rule for web addresses: settings, the request form, the XPay client and Slack links
accept and refuse the same ones."""

from __future__ import annotations

import pytest

from bot.checkout import CheckoutInvalid, parse_checkout
from bot.config import ConfigError, load_settings
from bot.slack.blocks.common import url_link
from bot.urls import is_http_url
from bot.xpay.client import XPayClient, XPayKeys

ACCEPTED = [
    "https://shop.example.com/ok?o=1",
    "http://x.test/f",
    "HTTPS://SHOP.EXAMPLE.COM/",
    "http://127.0.0.1:3000/sandbox",
    "https://user@shop.example.com/ok#top",
    "https://bücher.example/ü",
]
REFUSED = [
    "ftp://x.test/a",
    "javascript:alert(1)",
    "shop.example.com",
    "//shop.example.com/ok",
    "https://",
    "https:///path",
    "https://:443/",
    "http:// x",
    "https://shop.example.com/a b",
    "https://shop.example.com/a\x00b",
    "http://[::1",
]


def _settings_accept(url: str) -> bool:
    try:
        load_settings(_env_file=None, slack_api_url=url, paylink_success_url=url)
    except ConfigError as exc:
        assert {line.split(":")[0] for line in exc.lines} == {
            "SLACK_API_URL",
            "PAYLINK_SUCCESS_URL",
        }
        assert all("expected an http:// or https:// URL" in line for line in exc.lines)
        return False
    return True


def _form_accepts(url: str) -> bool:
    fields = {"amount": "100", "customer_name": "Ali", "customer_phone": "03415682456"}
    try:
        parse_checkout({**fields, "success_url": url}, currencies=["PKR"], methods=["card"])
    except CheckoutInvalid as exc:
        assert exc.errors == {"success_url": "Enter a full http:// or https:// address."}
        return False
    return True


def _client_accepts(url: str) -> bool:
    try:
        XPayClient(url, XPayKeys("key", "account", "secret")).close()
    except ValueError as exc:
        assert str(exc) == "base_url must be an http(s) URL"
        return False
    return True


def _slack_links(url: str) -> bool:
    return url_link(url).startswith("<")


@pytest.mark.parametrize("url", ACCEPTED)
def test_every_surface_accepts(url: str) -> None:
    assert is_http_url(url)
    assert _settings_accept(url)
    assert _form_accepts(url)
    assert _client_accepts(url)
    assert _slack_links(url)


@pytest.mark.parametrize("url", REFUSED)
def test_every_surface_refuses(url: str) -> None:
    assert not is_http_url(url)
    assert not _settings_accept(url)
    assert not _form_accepts(url)
    assert not _client_accepts(url)
    assert not _slack_links(url)


def test_only_strings_are_addresses() -> None:
    assert not is_http_url(None)
    assert not is_http_url(b"https://shop.example.com/")
