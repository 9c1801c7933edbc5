"""Durations as settings write them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("4h", timedelta(hours=4)),
        (" 7d ", timedelta(days=7)),
    ],
)
def test_each_unit(text: str, value: timedelta) -> None:
    assert parse_duration(text) == value
    assert format_duration(value) == text.strip()


@pytest.mark.parametrize("text", ["", "7", "0s", "-4h", "4 hours", "1.5h", "4w"])
def test_anything_else_is_refused_saying_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="90s, 30m, 4h or 7d"):
        parse_duration(text)


def test_a_duration_is_written_back_in_its_largest_whole_unit() -> None:
    assert format_duration(timedelta(hours=48)) == "2d"
    assert format_duration(timedelta(seconds=3630)) == "3630s"
