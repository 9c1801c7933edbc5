"""The ``paylink`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bot.config import ConfigError, Settings, load_settings

USAGE = """Paylink: XPay checkout links from Slack, approved in a channel, paid in the thread.

Start with `paylink demo` to watch the whole flow on this machine with no accounts.
Configuration comes from environment variables or a .env file (see README)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paylink", description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    sub.add_parser("check", help="check configuration, database, Slack and XPay")
    sub.add_parser("migrate", help="bring the database schema up to date")

    create = sub.add_parser("create", help="create a checkout link now (no approval step)")
    create.add_argument("--amount", required=True, help="amount in major units, e.g. 1500.50")
    create.add_argument("--currency", help="ISO 4217 code (default: first of PAYLINK_CURRENCIES)")
    create.add_argument("--name", required=True, dest="customer_name", help="customer name")
    create.add_argument("--email", dest="customer_email", help="customer e-mail")
    create.add_argument("--phone", dest="customer_phone", help="customer phone, e.g. 03415682456")
    create.add_argument("--address", dest="address1", help="shipping address")
    for name in ("city", "province", "country", "zip"):
        create.add_argument(f"--{name}", help=f"shipping {name}")
    create.add_argument("--shipping-method", dest="shipping_method", help="e.g. Standard")
    create.add_argument("--reference", dest="order_reference", help="order reference (generated)")
    create.add_argument(
        "--method",
        dest="payment_methods",
        action="append",
        help="allowed payment method; repeat for several (default: all)",
    )
    create.add_argument("--success-url", help="where the customer lands after paying")
    create.add_argument("--failure-url", help="where the customer lands if the payment fails")
    create.add_argument("--as", dest="actor", default="cli", help="who is recorded as creator")

    status = sub.add_parser("status", help="show a link's status and history")
    status.add_argument("reference", help="the order reference")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``paylink`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from bot.logs import setup_logging

    setup_logging()
    try:
        settings = load_settings()
        return COMMANDS[args.command](settings, args)
    except ConfigError as exc:
        for line in exc.lines:
            print(f"paylink: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


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
    from bot.demo import run_demo

    return run_demo(decline=args.decline)


def _check(settings: Settings, args: argparse.Namespace) -> int:
    from bot.commands import check

    return check(settings)


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from bot.commands import migrate

    return migrate(settings)


def _create(settings: Settings, args: argparse.Namespace) -> int:
    from bot.commands import create

    return create(settings, vars(args))


def _status(settings: Settings, args: argparse.Namespace) -> int:
    from bot.commands import status

    return status(settings, args.reference)


COMMANDS = {
    "serve": _serve,
    "socket": _socket,
    "worker": _worker,
    "demo": _demo,
    "check": _check,
    "migrate": _migrate,
    "create": _create,
    "status": _status,
}
