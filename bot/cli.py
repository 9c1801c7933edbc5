"""The ``paylink`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from bot.config import ConfigError, Settings, load_settings

USAGE = """Paylink: XPay checkout links from Slack, approved in a channel, paid in the thread.

Start with `paylink demo` to watch the whole flow on this machine with no accounts.
Configuration comes from environment variables or a .env file (see README)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paylink", description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="serve Slack events, XPay webhooks and health over HTTP")
    serve.add_argument(
        "--host", help="address to listen on (default: PAYLINK_HOST or 0.0.0.0, every address)"
    )
    serve.add_argument("--port", type=int, help="HTTP port (default: PORT or 3000)")
    serve.add_argument("--threads", type=int, default=16, help="HTTP worker threads")
    sub.add_parser("socket", help="Slack over Socket Mode; webhooks and health still on PORT")
    worker = sub.add_parser(
        "worker",
        help="create links, deliver Slack messages and run periodic jobs "
        "(PAYLINK_WORKER=separate; `serve` starts its own by default)",
    )
    worker.add_argument(
        "--parent",
        type=int,
        metavar="PID",
        help="stop when process PID ends (how `serve` runs its worker)",
    )
    demo = sub.add_parser("demo", help="play the whole flow locally and print the Slack thread")
    demo.add_argument("--decline", action="store_true", help="decline the payment instead")
    demo.add_argument(
        "--policy",
        action="store_true",
        help="the approval policy: a request approved automatically, one by two approvers",
    )
    sub.add_parser("check", help="check configuration, database, Slack and XPay")
    sub.add_parser("migrate", help="bring the database schema up to date")

    create = sub.add_parser("create", help="create a checkout link now (no approval step)")
    flags: dict[str, str] = {}  # field → the flag that sets it, for error messages

    def option(flag: str, **kwargs: Any) -> None:
        flags[create.add_argument(flag, **kwargs).dest] = flag

    option("--amount", required=True, help="amount in major units, e.g. 1500.50")
    option("--currency", help="ISO 4217 code (default: first of PAYLINK_CURRENCIES)")
    option("--name", required=True, dest="customer_name", help="customer name")
    option("--email", dest="customer_email", help="customer e-mail")
    option("--phone", dest="customer_phone", help="customer phone, e.g. 03415682456")
    option("--address", dest="address1", help="shipping address")
    for name in ("city", "province", "country", "zip"):
        option(f"--{name}", help=f"shipping {name}")
    option("--shipping-method", dest="shipping_method", help="e.g. Standard")
    option("--reference", dest="order_reference", help="order reference (generated)")
    option(
        "--method",
        dest="payment_methods",
        action="append",
        help="allowed payment method; repeat for several (default: all)",
    )
    option("--success-url", help="where the customer lands after paying")
    option("--failure-url", help="where the customer lands if the payment fails")
    option("--as", dest="actor", default="cli", help="who is recorded as creator")
    create.set_defaults(flags=flags)

    status = sub.add_parser("status", help="show a link's status and history")
    status.add_argument("reference", help="the order reference")
    workspace = sub.add_parser("settings", help="what admins changed in Slack's Settings")
    workspace.add_argument("action", choices=["history"], help="history: every change")
    rotate = sub.add_parser(
        "rotate-key",
        help="re-encrypt the stored XPay secrets and Slack tokens with a new PAYLINK_SECRET_KEY",
    )
    rotate.add_argument(
        "--new-key",
        help="the new Fernet key (default: PAYLINK_NEW_SECRET_KEY); preferred: no flag, "
        "with PAYLINK_SECRET_KEY=NEW,OLD",
    )

    export = sub.add_parser(
        "export", help="CSV of the links created between two dates (PAYLINK_TIMEZONE)"
    )
    export.add_argument(
        "--from", dest="first", required=True, type=_day, help="first day, YYYY-MM-DD"
    )
    export.add_argument("--to", dest="last", required=True, type=_day, help="last day, included")
    export.add_argument(
        "--status", type=_status_name, help="only links with this status, e.g. paid"
    )
    export.add_argument("--output", metavar="FILE", help="write to FILE (default: stdout)")
    digest = sub.add_parser("digest", help="post the digest in the approval channel now")
    digest.add_argument(
        "--team",
        metavar="T0123",
        help="the workspace's (required with several workspaces, SLACK_CLIENT_ID)",
    )
    return parser


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def _status_name(text: str) -> Any:
    from bot.links.export import parse_status

    try:
        return parse_status(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _version() -> str:
    try:
        return version("paylink")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(version unknown: not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``paylink`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from bot.logs import setup_logging

    setup_logging()
    from sqlalchemy.exc import DBAPIError

    from bot.db import DatabaseUnusable

    try:
        settings = load_settings()
        return COMMANDS[args.command](settings, args)
    except ConfigError as exc:
        lines = exc.lines
    except DBAPIError as exc:  # the database is unreachable, or refused: say which, once
        lines = DatabaseUnusable(settings.database_url, exc).lines
    except KeyboardInterrupt:
        return 130
    for line in lines:
        print(f"paylink: {line}", file=sys.stderr)
    return 2


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from bot.commands import serve

    return serve(settings, host=args.host, port=args.port, threads=args.threads)


def _socket(settings: Settings, args: argparse.Namespace) -> int:
    from bot.commands import socket_mode

    return socket_mode(settings)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from bot.commands import worker

    return worker(settings, parent=args.parent)


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from bot.local.demo import run_demo

    return run_demo(decline=args.decline, policy=args.policy)


def _check(settings: Settings, args: argparse.Namespace) -> int:
    from bot.commands import check

    return check(settings)


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from bot.commands import migrate

    return migrate(settings)


def _create(settings: Settings, args: argparse.Namespace) -> int:
    from bot.commands import create

    fields = vars(args)
    return create(settings, fields, flags=fields.pop("flags"))


def _status(settings: Settings, args: argparse.Namespace) -> int:
    from bot.commands import status

    return status(settings, args.reference)


def _settings(settings: Settings, args: argparse.Namespace) -> int:
    from bot.commands import settings_history

    return settings_history(settings)


def _rotate_key(settings: Settings, args: argparse.Namespace) -> int:
    from bot.commands import rotate_key

    return rotate_key(settings, args.new_key)


def _export(settings: Settings, args: argparse.Namespace) -> int:
    from bot.commands import export

    return export(
        settings, first=args.first, last=args.last, status=args.status, output=args.output
    )


def _digest(settings: Settings, args: argparse.Namespace) -> int:
    from bot.commands import digest

    return digest(settings, team=args.team)


COMMANDS = {
    "serve": _serve,
    "socket": _socket,
    "worker": _worker,
    "demo": _demo,
    "check": _check,
    "migrate": _migrate,
    "create": _create,
    "status": _status,
    "settings": _settings,
    "rotate-key": _rotate_key,
    "export": _export,
    "digest": _digest,
}
