"""Logs at DEBUG, through the production formatter, carry no secret and no customer contact."""

from __future__ import annotations

import io
import logging

import pytest

from bot.local.demo import DEMO_FIELDS, play_flow
from bot.local.stack import BOT_TOKEN, LocalStack
from bot.logs import LineFormatter


@pytest.mark.integration  # the local stack, inside the log capture
def test_full_flow_logs_no_secrets_or_contact_details() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(LineFormatter())
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    saved = root.level, {n: logging.getLogger(n).level for n in ("slack_bolt", "slack_sdk")}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in saved[1]:
        logging.getLogger(name).setLevel(logging.DEBUG)  # the noisiest libraries, fully on
    try:
        with LocalStack() as stack:
            play_flow(stack, say=lambda _line: None)
            secrets = [BOT_TOKEN, stack.signing_secret]
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)
    text = out.getvalue()
    assert "link requested" in text  # the capture worked
    for secret in secrets:
        assert secret not in text, "a secret reached the logs"
    for contact in (DEMO_FIELDS["customer_email"], DEMO_FIELDS["customer_phone"]):
        assert contact not in text, f"{contact} reached the logs unmasked"
