"""``python -m bench``: Paylink against bare baselines, side by side, on this machine.

Processes: this one generates load (one thread, see ``bench.load``) and hosts the slow-gateway
stub; the Slack stand-in runs in ``bench.standin_proc``; each Paylink target is the real
``paylink serve`` as configured by default (waitress, and the `paylink worker` child it
starts) with a sandbox gateway of its own in XPay's place (``bench.gateway_proc``); the
baseline (bare Bolt + a bare webhook endpoint that verifies the HMAC and commits one row,
waitress, same thread count) is ``bench.bare``. Every target is started
first and the measurements take them in turns (``bench.measure``). All traffic stays on
127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import seed
from bench.measure import P99_LIMIT_MS, acks, home_render, rss_key, webhook_ladders
from bench.modes import MODES, Mode
from bench.procs import (
    THREADS,
    Secrets,
    SlowGateway,
    StandIn,
    Target,
    log,
    pg_schema,
    rss_mb,
    start_bare,
    start_gateway,
    start_paylink,
)
from bench.report import budgets, machine, table

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def paylink_target(
    name: str,
    url: str,
    filler: int,
    mode: Mode,
    workdir: Path,
    standin: StandIn,
    sec: Secrets,
    *,
    index: int,
    slow: SlowGateway | None = None,
) -> Target:
    """A database with ``filler`` links and the requests the Approve clicks will use, and
    `paylink serve` (with its worker child) on it, with a gateway of its own (or ``slow``)."""
    log(f"{name}: preparing database ({filler} links)")
    t0 = time.perf_counter()
    seed.prepare(url, filler=filler, home_links=min(mode.home_links, filler))
    approvals = seed.request_approvals(url, mode.requests * len(mode.concurrency), name)
    gateway, gateway_url = (None, slow.url) if slow else start_gateway(workdir, sec)
    target = start_paylink(name, workdir, url, standin, sec, gateway_url)
    target.gateway, target.filler, target.approvals = gateway, filler, approvals
    target.slow_gateway = slow is not None
    target.ts_second = 1_600_000_000 + index
    target.result = {
        "filler_links": filler,
        "links_in_store": seed.count_links(url),
        "seed_seconds": round(time.perf_counter() - t0, 1),
    }
    return target


def measure(targets: list[Target], mode: Mode, standin: StandIn) -> None:
    """Every measurement, each interleaved over the targets it applies to."""
    for target in targets:
        target.wait_quiet(120)
    time.sleep(1)
    for target in targets:
        for role, process in target.processes().items():
            target.result[rss_key(role, "idle")] = rss_mb(process)
    log("idle RSS: " + ", ".join(f"{t.name} {t.result['rss_idle_mb']} MB" for t in targets))
    fast = [t for t in targets if not t.slow_gateway]
    acks(fast, "ack_command", mode.concurrency, mode.requests, mode.rounds, standin)
    acks(targets, "ack_approve", mode.concurrency, mode.requests, mode.rounds, standin)
    for target in fast:
        target.wait_quiet(120)
    for target in targets:
        if target.slow_gateway:  # its creations would go on failing beside the webhooks
            target.stop()
    paylink = [t for t in fast if not t.is_bare]
    home_render(paylink, standin, mode.home_samples, mode.rounds)
    webhook_ladders(fast, mode.rates, mode.step_seconds, standin)
    for target in paylink:
        target.result["links_in_store_end"] = seed.count_links(target.db_url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--full", action="store_true", help="30 s webhook steps, 1000 requests per level"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny run for the test suite")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get("PAYLINK_BENCH_DATABASE_URL"),
        help="also run on PostgreSQL (a scratch schema per target is created and dropped)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    args = parser.parse_args(argv)
    mode = MODES["smoke" if args.smoke else "full" if args.full else "default"]
    started = time.time()
    load_before = os.getloadavg()
    sec = Secrets(signing=secrets.token_hex(16), webhook=secrets.token_hex(16))
    targets: list[Target] = []
    drops: list[Callable[[], None]] = []
    with tempfile.TemporaryDirectory(prefix="paylink-bench-") as tmp:
        workdir = Path(tmp)
        standin = StandIn(workdir)
        slow = SlowGateway(mode.slow_gateway_delay)
        try:
            bare = start_bare(workdir, standin, sec)
            bare.approvals = list(range(1, 1 + mode.requests * len(mode.concurrency)))
            targets.append(bare)
            configs: list[tuple[str, str, int, SlowGateway | None]] = [
                (f"sqlite_{label}", f"sqlite:///{workdir / f'sqlite_{label}.db'}", size, None)
                for label, size in (("small", mode.small), ("large", mode.large))
            ]
            configs.append(
                ("sqlite_slow_gateway", f"sqlite:///{workdir / 'sqlite_slow.db'}", mode.small, slow)
            )
            if args.postgres:
                for label, size in (("small", mode.small), ("large", mode.large)):
                    url, drop = pg_schema(args.postgres, label)
                    drops.append(drop)
                    configs.append((f"postgres_{label}", url, size, None))
            for index, (name, url, size, gateway) in enumerate(configs):
                targets.append(
                    paylink_target(
                        name, url, size, mode, workdir, standin, sec, index=index, slow=gateway
                    )
                )
            measure(targets, mode, standin)
        finally:
            for target in targets:
                target.stop()
            for drop in drops:
                drop()
            slow.close()
            standin.stop()
    runs = {target.name: target.result for target in targets}
    checks = budgets(runs, mode)
    report = {
        "mode": mode.name,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "settings": {
            "concurrency": list(mode.concurrency),
            "requests_per_level": mode.requests,
            "rounds": mode.rounds,
            "webhook_rates": list(mode.rates),
            "webhook_step_seconds": mode.step_seconds,
            "webhook_p99_limit_ms": P99_LIMIT_MS,
            "server_threads": THREADS,
            "slow_gateway_delay_s": mode.slow_gateway_delay,
            "processes": "load generator (one thread) + slow-gateway stub | Slack stand-in | "
            "per Paylink target: the default `paylink serve` (waitress) and the `paylink "
            "worker` child it starts, sandbox gateway | bare baseline (Bolt; webhooks: HMAC "
            "and one committed row on SQLite): separate processes, all running through the "
            "whole run, measured in turns; RSS is given for serve and worker each",
        },
        "machine": machine()
        | {"loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": os.getloadavg()},
        "runs": runs,
        "budgets": checks,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    m = report["machine"]
    print(
        f"\nPaylink benchmark ({mode.name}) on {m['cpu_model']} x{m['cores']}, {m['ram_gb']} GB, "
        f"Python {m['python']}, commit {m['git_commit'][:10]}"
    )
    print(
        "RSS: of `paylink serve` and `paylink worker`, each (stand-in, gateway and load "
        "generator are other processes)"
    )
    print(
        f"load average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} "
        "(other work on this machine skews the figures)\n"
    )
    print(table(runs, mode))
    print("\nBudgets:")
    for c in checks:
        print(f"  {'PASS' if c['pass'] else 'FAIL'}  {c['budget']}: {c['detail']}")
    print(f"\nJSON: {args.out}  ({report['duration_s']} s)")
    return 0
