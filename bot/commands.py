"""What each ``paylink`` subcommand does (the CLI module only parses arguments)."""

from __future__ import annotations

import gc
import io
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, date
from typing import Any

import requests
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bot.checkout import CheckoutInvalid, parse_with_settings
from bot.config import ConfigError, Settings, with_overrides
from bot.db import DatabaseUnusable, make_engine
from bot.links.finding import status_report
from bot.links.outcomes import Refused
from bot.links.states import SANDBOX_LABEL, Status
from bot.links.store import DuplicateReference, LinkStore
from bot.links.workspace_settings import WorkspaceSettings
from bot.runtime import Role, Runtime
from bot.schema import (
    SchemaOutdated,
    current_revision,
    head_revision,
    is_empty,
    require_current,
    upgrade,
)
from bot.server import stop_signals
from bot.supervisor import WorkerChild

log = logging.getLogger("bot")

# `paylink worker` runs at this lower CPU priority: its work has no deadline, while serve's
# answers do (Slack's 3 s, XPay's webhook timeout), and the two share a machine.
WORKER_NICENESS = 10
SWITCH_INTERVAL = 0.0005  # seconds; Python's default is 0.005
PARENT_CHECK = 1.0  # seconds between a child worker's looks at whether serve is still there


def _err(line: str) -> None:
    print(f"paylink: {line}", file=sys.stderr)


def serve(
    settings: Settings, *, host: str | None = None, port: int | None = None, threads: int = 16
) -> int:
    """Run the HTTP server until SIGTERM or Ctrl-C, then stop gracefully (see :func:`_run`)."""
    from bot.server import Server
    from bot.web import create_app

    settings.require(*_bot_token(settings), "slack_signing_secret")
    settings = with_overrides(settings, paylink_host=host, port=port)
    stopping = stop_signals()
    runtime = _serving_runtime(settings)
    if runtime is None:
        return 2
    server = Server(
        create_app(runtime), host=settings.paylink_host, port=settings.port, threads=threads
    )
    log.info(
        "serving on %s port %s (XPay: %s, worker: %s)",
        settings.paylink_host,
        server.port,
        _gateway(settings),
        settings.paylink_worker,
    )
    return _run(settings, runtime, stopping, start=server.start, stop=server.close)


def socket_mode(settings: Settings) -> int:
    """Slack over Socket Mode; the webhook and health endpoints are still served on PORT."""
    from slack_sdk.errors import SlackApiError

    from bot.server import Server
    from bot.slack.failures import slack_failure
    from bot.slack.socket_mode import SocketMode
    from bot.web import create_app

    settings.require(*_bot_token(settings), "slack_app_token")
    stopping = stop_signals()
    runtime = _serving_runtime(settings)
    if runtime is None:
        return 2
    server = Server(create_app(runtime), host=settings.paylink_host, port=settings.port)
    handler = SocketMode(runtime.bolt_app, settings.slack_app_token.get_secret_value())

    def start() -> None:
        server.start()
        log.info("Socket Mode; webhooks on port %s (XPay: %s)", server.port, _gateway(settings))
        handler.connect()

    def stop(grace: float) -> None:
        handler.close()
        server.close(grace)

    try:
        return _run(settings, runtime, stopping, start=start, stop=stop)
    except (SlackApiError, OSError) as exc:  # Slack refused the token or is out of reach
        _err(
            slack_failure(
                exc,
                call="apps.connections.open",
                setting="SLACK_APP_TOKEN",
                api_url=settings.slack_api_url,
            )
        )
        return 1


def _run(
    settings: Settings,
    runtime: Runtime,
    stopping: threading.Event,
    *,
    start: Callable[[], None],
    stop: Callable[[float], None],
) -> int:
    """Start the background work (and the worker child, by default) and then the front
    (``start``: HTTP, Socket Mode); when ``stopping`` is set, stop them in order within the
    grace period: the front first (``stop(grace)``: no new requests, those under way are
    answered), then this process's work, then the child (killed if still busy at the end)."""
    child = WorkerChild(settings) if settings.paylink_worker == "child" else None
    _start(runtime)
    if child:
        child.start()
    try:
        start()
        stopping.wait()
    finally:
        if child:
            child.stop_restarting()
        grace = stop_grace(settings)
        deadline = time.monotonic() + grace
        log.info("stopping (within %.0f s)", grace)
        stop(grace)
        if child:
            child.terminate()  # it finishes its work while this process finishes its own
        runtime.stop()
        if child:
            child.stop(deadline)
    log.info("stopped")
    return 0


def stop_grace(settings: Settings) -> float:
    """Seconds a graceful stop may take: long enough for a gateway call under way to end,
    so that no link is left half-created at XPay."""
    return settings.xpay_timeout + 5


def worker(settings: Settings, *, parent: int | None = None) -> int:
    """Run the job queue (Slack messages, link creation, payments, clicks) and the periodic
    jobs until SIGTERM or Ctrl-C: beside a `paylink serve` run with PAYLINK_WORKER=separate,
    or as the child of one (``parent``: its pid; the worker stops when that process is gone)."""
    settings.require(*_bot_token(settings))
    mode = settings.paylink_worker
    if mode == "inline" or (mode == "child" and parent is None):
        # A worker beside a `serve` that does the work itself (inline) or runs a worker of its
        # own (child) would compete with it: two drainers woken through one socket.
        now = "does the worker's job itself" if mode == "inline" else "starts a worker of its own"
        _err(
            "PAYLINK_WORKER: set it to 'separate' for `paylink serve` and `paylink worker` "
            f"alike (now `serve` {now})"
        )
        return 2
    stopping = stop_signals()
    if parent is not None:
        # Ctrl-C reaches the whole process group: serve stops its child itself, in order.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    runtime = _serving_runtime(settings, role="worker")
    if runtime is None:
        return 2
    os.nice(WORKER_NICENESS)
    _start(runtime)
    log.info("worker running (job queue and periodic jobs; XPay: %s)", _gateway(settings))
    try:
        while not stopping.wait(PARENT_CHECK):
            if parent is not None and os.getppid() != parent:
                log.warning("worker: its `paylink serve` (pid %s) is gone: stopping", parent)
                break
    finally:
        runtime.stop()
    return 0


def _bot_token(settings: Settings) -> tuple[str, ...]:
    """SLACK_BOT_TOKEN, unless each workspace's installation holds its token (multi-workspace
    mode): the settings a long-running process needs for Slack's Web API."""
    return () if settings.multi_workspace else ("slack_bot_token",)


def _gateway(settings: Settings) -> str:
    """The gateway as a start-up log names it: the sandbox says it is a test."""
    return "sandbox: TEST — no real money" if settings.sandbox else settings.xpay_env


def _start(runtime: Runtime) -> None:
    """Start a long-running process's background work, after setting aside what start-up
    built (modules, Bolt, SQLAlchemy's metadata) from the garbage collector: a full
    collection then walks only what requests create (and its pause is added to every
    request in flight)."""
    gc.freeze()
    runtime.start()


def _serving_runtime(settings: Settings, role: Role | None = None) -> Runtime | None:
    """The runtime for a long-running process, or None (after saying why) when the schema
    is outdated; a new, empty database gets the schema first. Its role comes from
    PAYLINK_WORKER unless given."""
    role = role or ("all" if settings.paylink_worker == "inline" else "web")
    # These processes' threads mostly wait on sockets and the database; one whose answer has
    # arrived should not wait the default 5 ms for the GIL behind a busy thread (each
    # database statement gives it up and takes it back).
    sys.setswitchinterval(SWITCH_INTERVAL)
    runtime = Runtime(settings, role=role)
    try:
        _create_schema_if_new(runtime.engine)
        require_current(runtime.engine)
    except SchemaOutdated as exc:
        _err(str(exc))
        runtime.engine.dispose()
        return None
    _warn_sqlite_replicas(settings, role)
    return runtime


def _create_schema_if_new(engine: Engine) -> None:
    """Create the schema in a database with no tables at all. One that has tables is only
    ever changed by `paylink migrate`: upgrading is the operator's step (after a backup)."""
    if current_revision(engine) is not None or not is_empty(engine):
        return
    try:
        _, head = upgrade(engine)
    except SQLAlchemyError:
        # Another process starting on the same new database may have created it meanwhile.
        if current_revision(engine) != head_revision():
            raise
    else:
        log.info("new database: schema created at %s", head)


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
        settings.require(*_bot_token(settings))
    except ConfigError as exc:
        problems.extend(exc.lines)
    if not (settings.slack_signing_secret or settings.slack_app_token):
        problems.append(
            "SLACK_SIGNING_SECRET (for `paylink serve`) or SLACK_APP_TOKEN (for `paylink "
            "socket`) is not set: copy it from your Slack app's Basic Information page"
        )
    engine = None
    try:
        engine = make_engine(settings.database_url)
        current, head = current_revision(engine), head_revision()
        if current != head:
            problems.append(
                f"DATABASE_URL: schema at {current or 'nothing'}, needs {head}: "
                "run `paylink migrate`"
            )
        else:
            ok.append("database reachable, schema up to date")
            key_problem = WorkspaceSettings(settings, LinkStore(engine)).check_key()
            if key_problem:
                problems.append(key_problem)
            if settings.multi_workspace:
                ok.append(_installations(settings, engine))
    except DatabaseUnusable as exc:
        problems.extend(exc.lines)
    except DBAPIError as exc:
        problems.extend(DatabaseUnusable(settings.database_url, exc).lines)
    finally:
        if engine is not None:
            engine.dispose()
    if settings.slack_bot_token and not settings.multi_workspace:
        from slack_sdk.errors import SlackApiError

        from bot.slack.app import make_web_client
        from bot.slack.failures import slack_failure

        try:
            auth = make_web_client(settings).auth_test()
            ok.append(f"Slack: connected as {auth.get('user')} in {auth.get('team')}")
        except (SlackApiError, OSError) as exc:
            problems.append(
                slack_failure(
                    exc, call="auth.test", setting="SLACK_BOT_TOKEN", api_url=settings.slack_api_url
                )
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
    for line in ok:
        print(f"ok: {line}")
    print(f"webhook URL to set in the XPay portal: {settings.public_url}/xpay/webhook")
    if settings.sandbox:
        print(
            "XPAY_ENV=sandbox: TEST — no real money; links are made on the embedded sandbox "
            "gateway (set XPAY_ENV to `staging` or `live` for real payments)"
        )
    for line in problems:
        print(f"problem: {line}")
    return 1 if problems else 0


def _installations(settings: Settings, engine: Engine) -> str:
    """What `check` says of multi-workspace mode: how many workspaces installed, and where
    more install."""
    from bot.slack.oauth import INSTALL_PATH, installed_workspaces

    count = installed_workspaces(settings, engine)
    return (
        f"Slack: multi-workspace mode, installed in {count} workspace"
        f"{'' if count == 1 else 's'}; install at {settings.public_url}{INSTALL_PATH}"
    )


def create(settings: Settings, fields: dict[str, Any], *, flags: dict[str, str]) -> int:
    """Create a link at XPay now and print its URL and reference; ``flags`` names the
    command-line flag of each field, for the error messages. The fields are checked, and
    the policy applied, with the settings of SLACK_BOT_TOKEN's workspace, which the link
    becomes (the environment's in multi-workspace mode: the link is nobody's)."""
    runtime = Runtime(settings, slack=False)
    try:
        require_current(runtime.engine)
        workspace = runtime.learn_workspace()
        if (
            workspace is None
            and not settings.multi_workspace
            and runtime.workspaces.any_settings_stored()
        ):
            # The link would become the workspace's once Slack answers: its thresholds and
            # limits cannot be skipped by creating it while Slack does not.
            _err(
                "cannot tell which Slack workspace this is (SLACK_BOT_TOKEN unset, or Slack "
                "did not answer auth.test) and workspaces have their own settings: "
                "try again once Slack answers, or request it in Slack with /paylink"
            )
            return 2
        effective = runtime.workspaces.for_team(workspace.team_id if workspace else None)
        fields = {  # the Success/Failure URL settings are the defaults, as in the modal
            **fields,
            "success_url": fields.get("success_url") or effective.paylink_success_url,
            "failure_url": fields.get("failure_url") or effective.paylink_failure_url,
        }
        request = parse_with_settings(fields, effective)
        link = runtime.service.create_direct(
            request, actor=fields.get("actor") or "cli", workspace=workspace
        )
    except CheckoutInvalid as exc:
        for name, message in exc.errors.items():
            _err(f"{flags.get(name, name)}: {message}")
        return 2
    except SchemaOutdated as exc:
        _err(str(exc))
        return 2
    except DuplicateReference:
        _err(f"{flags['order_reference']}: {request.order_reference} is already used")
        return 2
    except Refused as exc:  # the approval policy: two approvers needed
        _err(f"{flags.get('amount', 'amount')}: {exc.message}")
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
    if link.sandbox:
        print(SANDBOX_LABEL)
    return 0


def status(settings: Settings, reference: str) -> int:
    """Print a link's status and its history."""
    runtime = Runtime(settings, slack=False)
    try:
        require_current(runtime.engine)
        with runtime.store.reading() as s:
            link = runtime.store.by_reference(s, reference)
            if link is None:  # a renewal's reference names its link too
                intent = runtime.store.by_checkout_reference(s, reference)
                link = intent and runtime.store.get(s, intent.link_id)
            if link is None:
                _err(f"no link with reference {reference}")
                return 1
            history = list(link.history)
            intents = runtime.store.intents_of(s, link.id)
    except SchemaOutdated as exc:
        _err(str(exc))
        return 2
    finally:
        runtime.engine.dispose()
    print("\n".join(status_report(link, history, intents)))
    return 0


def digest(settings: Settings, team: str | None = None) -> int:
    """Post a digest in the approval channel now and print it ("nothing to report" when
    there is none); the next digest's "paid since" starts from it. In multi-workspace mode
    ``team`` names the workspace (required): its links only, its channel, its token."""
    from slack_sdk.errors import SlackApiError

    from bot.secretbox import WrongKey
    from bot.slack.app import make_web_client
    from bot.slack.clients import NotInstalled
    from bot.slack.delivery import post_digest
    from bot.slack.failures import slack_failure
    from bot.slack.oauth import installed_list, slack_clients

    if settings.multi_workspace and not team:
        _err("with several workspaces (SLACK_CLIENT_ID), name one: paylink digest --team T0123")
        return 2
    if team and not settings.multi_workspace:
        _err("--team is for several workspaces (SLACK_CLIENT_ID): without it, leave it out")
        return 2
    if not settings.multi_workspace:
        settings.require("slack_bot_token")
    runtime = Runtime(settings, slack=False)
    base = None
    try:
        require_current(runtime.engine)
        workspace = None
        if team:
            installed = installed_list(settings, runtime.engine)
            workspace = next((w for w in installed if w.team_id == team), None)
            if workspace is None:
                _err(f"Paylink is not installed in workspace {team}")
                return 1
        report, channel = runtime.digests.read_now(workspace=workspace)
        if report.empty:
            print("nothing to report")
            return 0
        if channel is None:
            _err(
                "no channel to post the digest in: set the approval channel in Settings, or "
                "PAYLINK_APPROVAL_CHANNEL"
            )
            return 1
        base = make_web_client(settings)
        setting = "SLACK_BOT_TOKEN"
        try:
            if workspace is None:
                client = base
            else:
                setting = "SLACK_CLIENT_ID"
                client = slack_clients(settings, base, runtime.engine).for_workspace(workspace)
            text, posted = post_digest(client, channel, report, f"now:{report.until}")
        except NotInstalled:
            _err(f"Paylink is not installed in workspace {team}")
            return 1
        except WrongKey as exc:  # names the workspace and what to run, never the token
            _err(str(exc))
            return 1
        except (SlackApiError, OSError) as exc:
            _err(
                slack_failure(
                    exc, call="chat.postMessage", setting=setting, api_url=settings.slack_api_url
                )
            )
            return 1
        runtime.digests.record_now(report, channel, workspace)
    except SchemaOutdated as exc:
        _err(str(exc))
        return 2
    finally:
        if base is not None:
            base.close()
        runtime.engine.dispose()
    print(f"posted in {channel}: {text}")
    for block in posted:
        for part in [block.get("text"), *block.get("elements", [])]:
            if isinstance(part, dict) and part.get("text"):
                print(part["text"])
    return 0


def settings_history(settings: Settings) -> int:
    """Print every change made in Slack's Settings: when, which workspace, who, what."""
    runtime = Runtime(settings, slack=False)
    try:
        require_current(runtime.engine)
        changes = runtime.workspaces.history()
    except SchemaOutdated as exc:
        _err(str(exc))
        return 2
    finally:
        runtime.engine.dispose()
    if not changes:
        print("no settings changed in Slack yet: every setting is the environment's")
    for change in changes:
        at = change.at.astimezone(UTC)
        detail = f": {change.detail}" if change.detail else ""
        print(
            f"{at:%Y-%m-%d %H:%M:%S} UTC {change.team_id} {change.actor} {change.setting}{detail}"
        )
    return 0


def rotate_key(settings: Settings, new_key: str | None) -> int:
    """Re-encrypt every stored secret (XPay stores' keys, Slack installations' tokens, sealing
    those still in plain text), in one transaction, after checking PAYLINK_SECRET_KEY opens
    them all: with its first key, set as ``NEW,OLD`` on every process (which then
    decrypt with either meanwhile), or with ``new_key`` (``--new-key``, or
    PAYLINK_NEW_SECRET_KEY)."""
    from bot.secretbox import SecretBox

    new_key = new_key or os.environ.get("PAYLINK_NEW_SECRET_KEY")
    current = settings.paylink_secret_key.get_secret_value() if settings.paylink_secret_key else ""
    if not new_key and "," not in current:
        _err(
            "set PAYLINK_SECRET_KEY to the new key and the old one, comma-separated (NEW,OLD), "
            "on every paylink process, then run this again to re-encrypt with NEW"
        )
        return 2
    if new_key:
        try:
            SecretBox(new_key)
        except ValueError:  # never repeat the value: it is a secret
            _err(
                "--new-key: expected a Fernet key (32 url-safe base64-encoded bytes), e.g. from "
                "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
            )
            return 2
    runtime = Runtime(settings, slack=False)
    try:
        require_current(runtime.engine)
        problem = runtime.workspaces.check_key()
        if problem:
            _err(problem)
            return 1
        count = runtime.workspaces.rotate_key(new_key)
    except SchemaOutdated as exc:
        _err(str(exc))
        return 2
    finally:
        runtime.engine.dispose()
    if new_key:
        print(
            f"{count} stored secrets re-encrypted with the new key: set PAYLINK_SECRET_KEY to it "
            "and restart every paylink process"
        )
    else:
        print(
            f"{count} stored secrets re-encrypted with the first key of PAYLINK_SECRET_KEY: "
            "the old key may now be dropped from it"
        )
    return 0


def export(
    settings: Settings,
    *,
    first: date,
    last: date,
    status: Status | None = None,
    output: str | None = None,
) -> int:
    """Write the CSV of every link created from ``first`` to ``last`` (both included, in
    PAYLINK_TIMEZONE), of one ``status`` if given, to ``output`` or stdout."""
    from bot.links import export as csv_export

    try:
        period = csv_export.days(first, last, settings.timezone)
    except ValueError as exc:
        _err(str(exc))
        return 2
    runtime = Runtime(settings, slack=False)
    try:
        require_current(runtime.engine)
        body = csv_export.rows(runtime.store, period, timezone=settings.timezone, status=status)
        if output is None:
            out = io.TextIOWrapper(
                sys.stdout.buffer, encoding=csv_export.ENCODING, newline="", write_through=True
            )
            count = csv_export.write(out, body, settings.timezone)
            out.detach()  # stdout stays open for whoever prints after us
        else:
            # Created for its owner only: the file holds customers' e-mails and phones.
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(fd, "w", encoding=csv_export.ENCODING, newline="") as out:
                count = csv_export.write(out, body, settings.timezone)
    except SchemaOutdated as exc:
        _err(str(exc))
        return 2
    except OSError as exc:
        _err(f"--output: {exc.strerror or exc}")
        return 1
    finally:
        runtime.stop()
    print(f"{count} links created {period.name} ({settings.paylink_timezone})", file=sys.stderr)
    return 0
