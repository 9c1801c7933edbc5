"""Durations as people write them in settings: ``90s``, ``30m``, ``4h``, ``7d``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_DURATION = re.compile(r"\s*([0-9]+)\s*([smhd])\s*")

#: What a duration setting's error says it expects.
EXPECTED = "a duration such as 90s, 30m, 4h or 7d"


def parse_duration(text: str) -> timedelta:
    """``text`` as a positive timedelta; ValueError naming :data:`EXPECTED` otherwise."""
    match = _DURATION.fullmatch(text)
    if match is None or int(match[1]) == 0:
        raise ValueError(f"expected {EXPECTED}, got {text!r}")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def format_duration(value: timedelta) -> str:
    """``value`` the way a person would write it back (the largest whole unit)."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
