"""The baseline: a bare Bolt app and a bare webhook endpoint on the same server kind.

``python -m bench.bare`` serves on Paylink's own server (:class:`bot.server.Server`, waitress)
with the same thread count as ``paylink serve``:
  POST /slack/events  Bolt (same adapter, same executor size as Paylink): ``/paylink`` acks
                      and opens a fixed modal (Paylink's, built once) with views.open; the
                      Approve button only acks
  POST /xpay/webhook  verifies the HMAC of the raw body, commits it as one row (a
                      transaction of its own, through bot.db's engine and WAL checkpoints,
                      on the same kind of database as Paylink's) and answers 200 (401
                      otherwise): the floor for a webhook endpoint that keeps what it acks
  GET  /healthz       200
Configured by env: PORT, THREADS, SLACK_API_URL, SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN,
XPAY_WEBHOOK_SECRET, DATABASE_URL.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask, request
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler
from slack_sdk import WebClient
from sqlalchemy import Column, Integer, LargeBinary, MetaData, Table, insert

from bot.config import load_settings
from bot.db import make_engine
from bot.server import Server
from bot.slack.blocks import request_modal
from bot.sqlite import WalCheckpointer

APPROVE = "paylink_approve"  # bot.slack.blocks.ActionId.APPROVE
# Paylink's own request modal, built once: the Slack stand-in then does the same work for
# both apps, and the difference measured is what Paylink does per request, not modal size.
FIXED_MODAL = request_modal(load_settings(_env_file=None), channel_id="C0BENCH")
WEBHOOKS = Table(
    "bare_webhooks",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("body", LargeBinary, nullable=False),
)


def build(env: dict[str, str]) -> Any:
    client = WebClient(token=env["SLACK_BOT_TOKEN"], base_url=env["SLACK_API_URL"], timeout=10)
    bolt = App(
        client=client,
        signing_secret=env["SLACK_SIGNING_SECRET"],
        token_verification_enabled=False,
        process_before_response=False,
        listener_executor=ThreadPoolExecutor(max_workers=32, thread_name_prefix="bolt"),
        logger=logging.getLogger("slack_bolt.bare"),
    )

    @bolt.command("/paylink")
    def command(ack: Any, body: dict[str, Any], client: WebClient) -> None:
        ack()
        client.views_open(trigger_id=body["trigger_id"], view=FIXED_MODAL)

    @bolt.action(APPROVE)
    def approve(ack: Any) -> None:
        ack()

    flask = Flask("bare")
    handler = SlackRequestHandler(bolt)

    @flask.post("/slack/events")
    def events() -> Any:
        return handler.handle(request)

    @flask.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok"}

    key = env["XPAY_WEBHOOK_SECRET"].encode()
    engine = make_engine(env["DATABASE_URL"])
    if engine.dialect.name == "sqlite":  # checkpointed as Paylink's are, off the commits
        WalCheckpointer(engine).start()
    WEBHOOKS.metadata.create_all(engine)
    store = insert(WEBHOOKS)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("PATH_INFO") != "/xpay/webhook":
            return flask(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        given = (environ.get("HTTP_X_SIGNATURE") or "").strip().lower().encode()
        digest = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
        ok = hmac.compare_digest(digest, given)
        if ok:
            with engine.begin() as conn:
                conn.execute(store, {"body": body})
        payload = b'{"success":true}' if ok else b'{"success":false}'
        start_response(
            "200 OK" if ok else "401 Unauthorized",
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    return app


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    env = dict(os.environ)
    server = Server(
        build(env), host="127.0.0.1", port=int(env["PORT"]), threads=int(env["THREADS"])
    )
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
