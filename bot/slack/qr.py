"""QR codes of checkout links, made on this machine (segno), for a customer at the counter
to scan from a screen."""

from __future__ import annotations

import io

import segno

# Pixels per module, and the quiet zone around the code in modules (the standard's 4).
SCALE = 8
BORDER = 4


def qr_png(url: str) -> bytes:
    """A PNG of a QR code that reads back as ``url`` (error correction M: scans from a
    phone held to a screen)."""
    out = io.BytesIO()
    segno.make(url, error="m", micro=False).save(out, kind="png", scale=SCALE, border=BORDER)
    return out.getvalue()
