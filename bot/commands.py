"""What each ``paylink`` subcommand does (the CLI module only parses arguments)."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
from typing import Any

import requests

from bot.checkout import CheckoutInvalid, parse_with_settings
from bot.config import ConfigError, Settings
from bot.links.store import DuplicateReference
from bot.runtime import Role, Runtime
from bot.schema import SchemaOutdated, current_revision, head_revision, require_current, upgrade

log = logging.getLogger("bot")

# `paylink worker` runs at this lower CPU priority: its work has no deadline, while serve's
# answers do (Slack's 3 s, XPay's webhook timeout), and the two often share a machine.
WORKER_NICENESS = 10
SWITCH_INTERVAL = 0.0005  # seconds; Python's default is 0.005


def _err(line: str) -> None:
    print(f"paylink: {line}", file=sys.stderr)


def serve(settings: Settings, *, port: int | None = None, threads: int = 16) -> int:
    """Run the HTTP server until interrupted."""
    from bot.server import Server
    from bot.web import create_app

    settings.require("slack_bot_token", "slack_signing_secret")
    if port:
        settings = settings.model_copy(update={"port": port})
    runtime = _serving_runtime(settings)
    if runtime is None:
        return 2
    server = Server(create_app(runtime), port=settings.port, threads=threads)
    _start(runtime)
    signal.signal(signal.SIGTERM, lambda *_: server.close())
    log.info("serving on port %s (XPay: %s)", server.port, settings.xpay_env)
    try:
        server.serve_forever()
    finally:
        runtime.stop()
    return 0


def socket_mode(settings: Settings) -> int:
    """Slack over Socket Mode; the webhook and health endpoints are still served on PORT."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bot.server import Server
    from bot.web import create_app

    settings.require("slack_bot_token", "slack_app_token")
    runtime = _serving_runtime(settings)
    if runtime is None:
        return 2
    server = Server(create_app(runtime), port=settings.port).start()
    _start(runtime)
    try:
        SocketModeHandler(runtime.bolt_app, settings.slack_app_token.get_secret_value()).start()
    finally:
        server.close()
        runtime.stop()
    return 0


def worker(settings: Settings) -> int:
    """Deliver the outbox to Slack and run the periodic jobs until SIGTERM or Ctrl-C, beside
    a `paylink serve` run with PAYLINK_WORKER=separate."""
    settings.require("slack_bot_token")
    if settings.paylink_worker != "separate":
        # An inline `serve` creates links itself: a worker would take its leases for dead.
        _err(
            "PAYLINK_WORKER: set it to 'separate' for `paylink serve` and `paylink worker` "
            "alike (now `serve` does the worker's job itself)"
        )
        return 2
    runtime = _serving_runtime(settings, role="worker")
    if runtime is None:
        return 2
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    os.nice(WORKER_NICENESS)
    _start(runtime)
    log.info("worker running (outbox and periodic jobs)")
    try:
        stopping.wait()
    finally:
        runtime.stop()
    return 0


def _start(runtime: Runtime) -> None:
    """Start a long-running process's background work, after setting aside what start-up
    built (modules, Bolt, SQLAlchemy's metadata) from the garbage collector: a full
    collection then walks only what requests create (serve's pause under load: 91 → 14 ms,
    each such pause added to every request in flight)."""
    gc.freeze()
    runtime.start()


def _serving_runtime(settings: Settings, role: Role | None = None) -> Runtime | None:
    """The runtime for a long-running process, or None (after saying why) when the schema
    is outdated. Its role comes from PAYLINK_WORKER unless given."""
    role = role or ("web" if settings.paylink_worker == "separate" else "all")
    # These processes' threads mostly wait on sockets and the database; one whose answer has
    # arrived should not wait the default 5 ms for the GIL behind a busy thread (each
    # database statement gives it up and takes it back).
    sys.setswitchinterval(SWITCH_INTERVAL)
    runtime = Runtime(settings, role=role)
    try:
        require_current(runtime.engine)
    except SchemaOutdated as exc:
        _err(str(exc))
        runtime.engine.dispose()
        return None
    _warn_sqlite_replicas(settings, role)
    return runtime


def _warn_sqlite_replicas(settings: Settings, role: Role) -> None:
    from bot.sqlite import claim_sqlite_file

    url = settings.database_url
    if url.startswith("sqlite") and not claim_sqlite_file(url, role):
        log.warning(
            "another paylink process is using this SQLite database: SQLite is correct for one "
            "process only; set DATABASE_URL to PostgreSQL to run several replicas"
        )


def migrate(settings: Settings) -> int:
    """Upgrade the schema to this version's head."""
    runtime = Runtime(settings, slack=False)
    before, after = upgrade(runtime.engine)
    print(f"database schema: {before or 'empty'} → {after}")
    runtime.engine.dispose()
    return 0


def check(settings: Settings) -> int:
    """Check what a deployment needs; print each problem with its fix."""
    problems: list[str] = []
    ok: list[str] = []
    try:
        settings.require("slack_bot_token")
    except ConfigError as exc:
        problems.extend(exc.lines)
    if not (settings.slack_signing_secret or settings.slack_app_token):
        problems.append(
            "SLACK_SIGNING_SECRET (for `paylink serve`) or SLACK_APP_TOKEN (for `paylink "
            "socket`) is not set: copy it from your Slack app's Basic Information page"
        )
    runtime = Runtime(settings, slack=False)
    try:
        current, head = current_revision(runtime.engine), head_revision()
        if current != head:
            problems.append(
                f"DATABASE_URL: schema at {current or 'nothing'}, needs {head}: "
                "run `paylink migrate`"
            )
        else:
            ok.append("database reachable, schema up to date")
    except Exception as exc:
        problems.append(
            f"DATABASE_URL: cannot connect ({type(exc).__name__}): check the URL "
            "and that the database server is running"
        )
    if settings.slack_bot_token:
        from bot.slack.app import make_web_client

        try:
            auth = make_web_client(settings).auth_test()
            ok.append(f"Slack: connected as {auth.get('user')} in {auth.get('team')}")
        except Exception as exc:
            problems.append(
                f"SLACK_BOT_TOKEN: auth.test failed ({_reason(exc)}): reinstall the "
                "app and copy the Bot User OAuth Token"
            )
    try:
        requests.get(settings.xpay_url, timeout=5)
        ok.append(f"XPay ({settings.xpay_env}) reachable at {settings.xpay_url}")
    except requests.RequestException as exc:
        fix = (
            "start `paylink serve`: the sandbox gateway runs inside it"
            if settings.sandbox
            else "check XPAY_ENV / XPAY_BASE_URL and outbound HTTPS"
        )
        problems.append(f"XPay unreachable at {settings.xpay_url} ({type(exc).__name__}): {fix}")
    runtime.engine.dispose()
    for line in ok:
        print(f"ok: {line}")
    print(f"webhook URL to set in the XPay portal: {settings.public_url}/xpay/webhook")
    for line in problems:
        print(f"problem: {line}")
    return 1 if problems else 0


def _reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return (
        response.get("error", type(exc).__name__)
        if hasattr(response, "get")
        else type(exc).__name__
    )


def create(settings: Settings, fields: dict[str, Any]) -> int:
    """Create a link at XPay now and print its URL and reference."""
    fields = {  # PAYLINK_SUCCESS_URL / PAYLINK_FAILURE_URL are the defaults, as in the modal
        **fields,
        "success_url": fields.get("success_url") or settings.paylink_success_url,
        "failure_url": fields.get("failure_url") or settings.paylink_failure_url,
    }
    try:
        request = parse_with_settings(fields, settings)
    except CheckoutInvalid as exc:
        for name, message in exc.errors.items():
            _err(f"--{name.replace('_', '-')}: {message}")
        return 2
    runtime = Runtime(settings, slack=False)
    try:
        require_current(runtime.engine)
        link = runtime.service.create_direct(
            request, actor=fields.get("actor") or "cli", workspace=runtime.learn_workspace()
        )
    except SchemaOutdated as exc:
        _err(str(exc))
        return 2
    except DuplicateReference:
        _err(f"--reference: {request.order_reference} is already used by another link")
        return 2
    finally:
        runtime.stop()
    if not link.checkout_url:
        _err(
            f"{link.status_label}: {link.gateway_message or 'no link'} (reference {link.reference})"
        )
        if settings.sandbox:
            _err("the sandbox gateway runs inside `paylink serve`: start it, then try again")
        return 1
    print(link.checkout_url)
    print(f"reference: {link.reference}")
    return 0


def status(settings: Settings, reference: str) -> int:
    """Print a link's status and its history."""
    runtime = Runtime(settings, slack=False)
    try:
        require_current(runtime.engine)
        with runtime.store.reading() as s:
            link = runtime.store.by_reference(s, reference)
            if link is None:
                _err(f"no link with reference {reference}")
                return 1
            history = list(link.history)
    except SchemaOutdated as exc:
        _err(str(exc))
        return 2
    finally:
        runtime.engine.dispose()
    print(f"{link.reference}: {link.status_label}")
    print(f"amount: {link.currency} {link.amount:,}")
    if link.checkout_url:
        print(f"link: {link.checkout_url}")
    for row in history:
        source = f"{row.from_status} → " if row.from_status else ""
        why = f" ({row.reason})" if row.reason else ""
        print(f"  {row.at:%Y-%m-%d %H:%M:%S} {source}{row.to_status} by {row.actor}{why}")
    return 0
