"""What counts as a web address wherever one is typed, configured or shown."""

from __future__ import annotations

from urllib.parse import urlsplit


def is_http_url(text: object) -> bool:
    """True for an absolute ``http://`` or ``https://`` URL with a host.

    Blanks and control characters anywhere make it false: they are never part of a real
    address, and in a Slack link or a redirect they could hide what the address is.
    """
    if not isinstance(text, str) or any(c.isspace() or not c.isprintable() for c in text):
        return False
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unclosed "[" in an IPv6 host
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
