"""Errors that stop a command with one line per problem, whichever module finds them."""

from __future__ import annotations


class ConfigError(Exception):
    """Configuration is missing or malformed; ``lines`` has one message per problem."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines
