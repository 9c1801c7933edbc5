"""How long ``/paylink list``, ``find``, ``status`` and App Home take to build their answer
with many links in the store (SQLite file, as `paylink serve` uses it).

    python -m bench.finding                  # 100,000 links of one rep
    python -m bench.finding --links 500000 --runs 50
    python -m bench.finding --http           # the slash commands' acks over HTTP

Measures the Finder (the reads and the Block Kit answer: everything the slash command does
before its ack) in this process, with no HTTP; prints the median and p95 per question. With
``--http``, the same store is served by the local stack (Paylink's server, Bolt, the Slack
stand-in) and each slash command is timed from the signed POST to its ack, as Slack would.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import cycle
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert

from bot.db import make_engine
from bot.links.states import Status
from bot.links.store import LinkStore
from bot.links.tables import Link
from bot.links.workspaces import Workspace
from bot.local.simulator import TEAM as STACK_TEAM
from bot.local.stack import APPROVER as STACK_APPROVER
from bot.local.stack import REP as STACK_REP
from bot.local.stack import LocalStack
from bot.schema import upgrade
from bot.slack import blocks
from bot.slack.finding import Asker, Finder

# The local stack's workspace and people, so that --http asks as they do.
TEAM = Workspace(STACK_TEAM["id"])
REP, OTHER, APPROVER = STACK_REP, "U0OTHER", STACK_APPROVER
BATCH = 10_000


def seed(store: LinkStore, count: int) -> None:
    """``count`` links, 90 % of them the rep's, every status in turn, a minute apart."""
    now = datetime.now(UTC)
    statuses = cycle(list(Status))
    for first in range(0, count, BATCH):
        rows: list[dict[str, Any]] = []
        for i in range(first, min(first + BATCH, count)):
            at = now - timedelta(minutes=count - i)
            rows.append(
                {
                    "reference": f"PL-{i:08d}",
                    "amount": Decimal("1500.50"),
                    "currency": "PKR",
                    "customer_name": f"Customer {i}",
                    "customer_email": f"buyer{i}@example.com",
                    "customer_phone": f"0341{i:07d}",
                    "shipping": {},
                    "payment_methods": [],
                    "requester_id": OTHER if i % 10 == 0 else REP,
                    "team_id": TEAM.team_id,
                    "channel_id": "C0APPROVALS",
                    "message_ts": f"1700000000.{i:06d}",
                    "status": next(statuses).value,
                    "version": 1,
                    "attempts": 0,
                    "sandbox": False,
                    "created_at": at,
                    "updated_at": at,
                }
            )
        with store.transaction() as s:
            s.execute(insert(Link.__table__), rows)


def timed(work: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and p95 of ``runs`` calls, in milliseconds (after one warm-up call)."""
    work()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main() -> None:
    """Seed, then time each question."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--links", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--http", action="store_true", help="time the acks over HTTP")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="paylink-bench-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'paylink.db'}")
        upgrade(engine)
        store = LinkStore(engine)
        started = time.perf_counter()
        seed(store, args.links)
        print(f"seeded {args.links:,} links in {time.perf_counter() - started:.1f} s")
        if args.http:
            engine.dispose()
            http_acks(Path(tmp), args.runs)
            return
        finder = Finder(
            store,
            currencies_for=lambda _team: ["PKR"],
            timezone=ZoneInfo("Asia/Karachi"),
            allow_self_approval=False,
            permalink=lambda channel, ts, _url: f"https://acme.slack.com/archives/{channel}/p{ts}",
        )
        rep, approver = Asker(REP, TEAM, False), Asker(APPROVER, TEAM, True)
        middle = blocks.HomeState(page=101, before=args.links // 2)
        questions: dict[str, Callable[[], object]] = {
            "/paylink list": lambda: finder.command(rep, "list"),
            "/paylink list paid": lambda: finder.command(rep, "list paid"),
            "/paylink list pending all": lambda: finder.command(approver, "list pending all"),
            "/paylink find Customer 4242": lambda: finder.command(rep, "find Customer 4242"),
            "/paylink find (no match, rep)": lambda: finder.command(rep, "find nobody"),
            "/paylink find (no match, approver)": lambda: finder.command(approver, "find nobody"),
            "/paylink status REF": lambda: finder.command(rep, "status PL-00004242"),
            "App Home, rep, page 1": lambda: blocks.home_view(finder.home(rep, blocks.HomeState())),
            "App Home, rep, a middle page": lambda: blocks.home_view(finder.home(rep, middle)),
            "App Home, approver": lambda: blocks.home_view(
                finder.home(approver, blocks.HomeState(everyone=True))
            ),
        }
        print(f"{'question':38} {'median ms':>10} {'p95 ms':>8}")
        for name, work in questions.items():
            median, p95 = timed(work, args.runs)
            print(f"{name:38} {median:10.1f} {p95:8.1f}")
        engine.dispose()


def http_acks(workdir: Path, runs: int) -> None:
    """Serve the seeded store with the local stack and time each slash command's ack."""
    commands = {
        "/paylink list": (REP, "list"),
        "/paylink list pending all (approver)": (APPROVER, "list pending all"),
        "/paylink find Customer 4242": (REP, "find Customer 4242"),
        "/paylink status REF": (REP, "status PL-00004242"),
    }
    url = f"sqlite:///{workdir / 'paylink.db'}"
    with LocalStack(database_url=url, workdir=workdir / "stack") as stack:
        print(f"{'slash command, signed POST to ack':38} {'median ms':>10} {'p95 ms':>8}")
        for name, (user, text) in commands.items():

            def ask(user: str = user, text: str = text) -> None:
                response = stack.simulator.command(user, text)
                if response.status_code != 200 or not response.text.strip():
                    raise SystemExit(f"{text}: {response.status_code} {response.text[:200]}")

            median, p95 = timed(ask, runs)
            print(f"{name:38} {median:10.1f} {p95:8.1f}")


if __name__ == "__main__":
    main()
