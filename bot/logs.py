"""One-line structured logs that never carry secrets or full customer contact details."""

from __future__ import annotations

import json
import logging
import re
import sys

# Last line of defence: whatever slips into a message is redacted before it is written.
_REDACTIONS = [
    (re.compile(r"(xox[abposr]|xapp)-[A-Za-z0-9-]+"), r"\1-[redacted]"),
    (
        re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})"),
        r"\1***@\2",
    ),
    (re.compile(r"(?<![\w.])(\+?\d[\d -]{6,}\d)(?![\w.])"), lambda m: "***" + m.group(1)[-4:]),
]
_EXTRAS = ("ref", "user", "team", "link_id", "kind", "route", "status")


def redact(text: str) -> str:
    """Mask tokens, e-mail addresses and phone numbers in ``text``."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class LineFormatter(logging.Formatter):
    """``time level logger message key=value…`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        extras = " ".join(
            f"{key}={json.dumps(str(getattr(record, key)))}"
            for key in _EXTRAS
            if hasattr(record, key)
        )
        line = (
            f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} {record.levelname} "
            f"{record.name} {message}" + (f" {extras}" if extras else "")
        )
        if record.exc_info:
            line += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        return redact(line)


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr; Bolt's verifier logs whole bodies at INFO, so keep it at WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # alembic.runtime.plugins logs a line per plugin on import, burying start-up errors.
    for noisy in (
        "slack_bolt",
        "slack_sdk",
        "urllib3",
        "alembic",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # slack_sdk logs an ERROR for each failed attempt at a call, retried or not, and then
    # raises: whoever made the call says once what became of it.
    logging.getLogger("slack_sdk.web.base_client").addFilter(_not_an_attempt)
    # A warning per request queued behind busy threads: under load, thousands of lines that
    # cost CPU the queue is waiting for (the load shows in latency and /metrics).
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def _not_an_attempt(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Failed to send a request to Slack API server")
