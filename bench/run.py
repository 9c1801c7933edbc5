"""``python -m bench``: Paylink against bare baselines, side by side, on this machine.

Processes: this one generates load (threads, one ``requests.Session`` each) and hosts the
slow-gateway stub; the Slack stand-in runs in ``bench.standin_proc``; the sandbox gateway, in
XPay's place, in ``bench.gateway_proc``; the bot is the real ``paylink serve`` (waitress) and
``paylink worker`` (PAYLINK_WORKER=separate), each a subprocess with its own RSS; the baseline
(bare Bolt + bare HMAC webhook endpoint, waitress, same thread count) is ``bench.bare``. All
traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import requests
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench import seed
from bench.load import Outcome, closed_loop, open_loop, summary
from bot.db import make_engine
from bot.local import BOT_TOKEN, free_port
from bot.slack.blocks import ACTION_APPROVE
from bot.slack.simulator import TEAM, SlackSimulator, new_trigger_id

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
THREADS = 16  # `paylink serve` default


@dataclass
class Mode:
    name: str
    concurrency: tuple[int, ...]
    requests: int  # per concurrency level, per kind
    rates: tuple[int, ...]
    step_seconds: float
    small: int
    large: int
    home_links: int
    home_samples: int
    slow_gateway_delay: float = 5.0


MODES = {
    "default": Mode(
        "default", (1, 8, 32), 300, (25, 50, 100, 200, 400, 800, 1600), 5, 100, 100_000, 1000, 20
    ),
    "full": Mode(
        "full", (1, 8, 32), 1000, (25, 50, 100, 200, 400, 800, 1600), 30, 100, 100_000, 1000, 50
    ),
    "smoke": Mode("smoke", (1, 2), 20, (10,), 1, 100, 150, 50, 3, 0.2),
}
P99_LIMIT_MS = 500.0


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ processes


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "XPAY_", "PAYLINK_", "DATABASE_URL", "PORT"))
    }
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Child:
    """A subprocess with stderr in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], workdir: Path, **kw: Any):
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(  # noqa: S603
            cmd, env=env, cwd=workdir, stderr=self._log, **kw
        )
        self.ps = psutil.Process(self.proc.pid)

    def rss_mb(self) -> float:
        return round(self.ps.memory_info().rss / 2**20, 1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


class StandIn(Child):
    """The Slack stand-in process and its JSON-lines control channel."""

    def __init__(self, workdir: Path):
        super().__init__(
            "slack-standin",
            [sys.executable, "-m", "bench.standin_proc"],
            _clean_env(),
            workdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lock = threading.Lock()
        self.url = json.loads(self._readline())["url"]
        self._next = {"chat.update": 0, "views.publish": 0}

    def _readline(self) -> str:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"stand-in exited; see {self.log_path}")
        return line

    def ask(self, **req: Any) -> dict[str, Any]:
        with self._lock:
            self.proc.stdin.write(json.dumps(req) + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            return json.loads(self._readline())

    def add_cards(self, cards: list[tuple[str, str]]) -> None:
        for i in range(0, len(cards), 5000):
            self.ask(cmd="cards", cards=cards[i : i + 5000])

    def new_calls(self, method: str) -> list[list[Any]]:
        answer = self.ask(cmd="calls", method=method, since=self._next[method])
        self._next[method] = answer["next"]
        return answer["calls"]

    def stop(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            self.ask(cmd="quit")
        super().stop()


def _wait_http(url: str, child: Child, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited; see {child.log_path}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{child.name} did not answer {url} in {timeout}s; see {child.log_path}")


@dataclass
class Secrets:
    signing: str
    webhook: str


class Target:
    """A server under test: the base URL, its process and the Slack signing secret."""

    def __init__(
        self,
        name: str,
        child: Child,
        port: int,
        sec: Secrets,
        db_url: str = "",
        worker: Child | None = None,
    ):
        self.name, self.child, self.sec, self.db_url = name, child, sec, db_url
        self.worker = worker
        self.base_url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.child.stop()
        if self.worker:
            self.worker.stop()

    def simulator(self, session: requests.Session) -> SlackSimulator:
        return SlackSimulator(self.base_url, self.sec.signing, session=session)

    def backlog(self) -> int:
        try:
            return int(requests.get(self.base_url + "/healthz", timeout=5).json()["outbox_backlog"])
        except (requests.RequestException, KeyError, ValueError):
            return -1

    def wait_quiet(self, timeout: float) -> bool:
        """Wait until the outbox is drained and no link is still being created at the gateway
        (so one phase's background work does not leak into the next phase's figures)."""
        if not self.db_url:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.backlog() == 0 and seed.creating(self.db_url) == 0:
                return True
            time.sleep(0.2)
        log(f"{self.name}: background work not finished after {timeout:.0f} s")
        return False


def start_paylink(
    name: str, workdir: Path, db_url: str, standin: StandIn, sec: Secrets, gateway_url: str
) -> Target:
    """`paylink serve` with PAYLINK_WORKER=separate and its `paylink worker`."""
    port = free_port()
    env = _clean_env() | {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": sec.signing,
        "SLACK_API_URL": standin.url,
        "XPAY_ENV": "sandbox",
        "XPAY_BASE_URL": gateway_url,
        "XPAY_WEBHOOK_SECRET": sec.webhook,
        "DATABASE_URL": db_url,
        "PAYLINK_APPROVERS": seed.APPROVER,
        "PAYLINK_APPROVAL_CHANNEL": seed.CHANNEL,
        "PAYLINK_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PAYLINK_WORKER": "separate",
        "PORT": str(port),
    }
    cmd = [sys.executable, "-m", "bot", "serve", "--port", str(port), "--threads", str(THREADS)]
    child = Child(f"paylink-{name}", cmd, env, workdir)
    worker = Child(f"paylink-{name}-worker", [sys.executable, "-m", "bot", "worker"], env, workdir)
    target = Target(name, child, port, sec, db_url, worker=worker)
    _wait_http(target.base_url + "/healthz", child)
    return target


def start_gateway(workdir: Path, sec: Secrets) -> tuple[Child, str]:
    """The sandbox gateway in its own process (XPay's work is not the bot's CPU)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = _clean_env() | {
        "XPAY_ENV": "sandbox",
        "XPAY_WEBHOOK_SECRET": sec.webhook,
        "DATABASE_URL": f"sqlite:///{workdir / f'gateway-{port}.db'}",
        "PAYLINK_PUBLIC_URL": url,
        "PORT": str(port),
    }
    child = Child(f"gateway-{port}", [sys.executable, "-m", "bench.gateway_proc"], env, workdir)
    _wait_http(url + "/healthz", child)
    return child, url + "/sandbox"


def start_bare(workdir: Path, standin: StandIn, sec: Secrets) -> Target:
    port = free_port()
    env = _clean_env() | {
        "PORT": str(port),
        "THREADS": str(THREADS),
        "SLACK_API_URL": standin.url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": sec.signing,
        "XPAY_WEBHOOK_SECRET": sec.webhook,
    }
    child = Child("bare", [sys.executable, "-m", "bench.bare"], env, workdir)
    target = Target("bare", child, port, sec)
    _wait_http(target.base_url + "/healthz", child)
    return target


class SlowGateway:
    """A stand-in XPay that answers every request after ``delay`` seconds (with a 503)."""

    def __init__(self, delay: float):
        class Handler(BaseHTTPRequestHandler):
            def _slow(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                time.sleep(delay)
                body = b'{"success":false,"message":"slow stub"}'
                with contextlib.suppress(OSError):  # the bot may be gone by now
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            do_GET = do_POST = _slow  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------ measurements


def _click_payload(link_id: int) -> dict[str, Any]:
    ts = f"1700000000.{link_id % 1_000_000:06d}"
    return {
        "type": "block_actions",
        "team": TEAM,
        "user": {"id": seed.APPROVER, "team_id": TEAM["id"]},
        "api_app_id": "A0PAYLINK",
        "trigger_id": new_trigger_id(),
        "container": {"type": "message", "message_ts": ts, "channel_id": seed.CHANNEL},
        "channel": {"id": seed.CHANNEL},
        "message": {"ts": ts, "blocks": []},
        "actions": [
            {
                "type": "button",
                "action_id": ACTION_APPROVE,
                "block_id": "paylink_actions",
                "value": str(link_id),
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def ack_command(target: Target, mode: Mode) -> dict[str, Any]:
    result = {}
    for c in mode.concurrency:
        out = closed_loop(
            lambda s, _i: target.simulator(s).command(seed.REP, "15000 PKR", channel="C0SALES"),
            mode.requests,
            c,
        )
        result[str(c)] = summary(out.latencies, out.errors)
    return result


def ack_approve(
    target: Target, mode: Mode, link_ids: list[int], *, settle: bool = True
) -> dict[str, Any]:
    """Approve clicks, each on a distinct request awaiting approval; between levels, wait
    until the links approved so far are created and their cards updated (unless not
    ``settle``: the slow-gateway run keeps its gateway pool busy on purpose)."""
    result, offset = {}, 0
    for c in mode.concurrency:
        if settle and offset:
            target.wait_quiet(120)
        ids = link_ids[offset : offset + mode.requests]
        offset += mode.requests
        out = closed_loop(
            lambda s, i, ids=ids: target.simulator(s).interactive(_click_payload(ids[i])),
            len(ids),
            c,
        )
        result[str(c)] = summary(out.latencies, out.errors)
    return result


def home_render(target: Target, standin: StandIn, samples: int) -> dict[str, Any]:
    """app_home_opened sent → views.publish for that user recorded by the stand-in."""
    standin.new_calls("views.publish")
    times, missing = [], 0
    with requests.Session() as session:
        sim = target.simulator(session)
        for _ in range(samples):
            sent = time.time()
            sim.home_opened(seed.HOME_USER).raise_for_status()
            deadline = time.monotonic() + 10
            got = None
            while got is None and time.monotonic() < deadline:
                for _ch, _ts, user, at, _ok in standin.new_calls("views.publish"):
                    if user == seed.HOME_USER and at >= sent:
                        got = at
                if got is None:
                    time.sleep(0.002)
            if got is None:
                missing += 1
            else:
                times.append(got - sent)
    return summary(times, missing)


class RssSampler:
    """Peak RSS of a process, sampled every 0.2 s while running."""

    def __init__(self, child: Child):
        self.child, self.peak = child, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.peak = max(self.peak, self.child.rss_mb())
            except psutil.Error:
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


def webhook_ladder(
    target: Target,
    mode: Mode,
    webhooks: list[tuple[bytes, str, str, str]],
    standin: StandIn | None,
) -> dict[str, Any]:
    """Signed webhooks at rising rates until p99 passes 500 ms (or a step has errors).

    With the stand-in, each step also times webhook → card update. The cards keep pace
    while that p99 stays within the same 500 ms; past that rate webhooks are still answered
    (they are queued) but cards lag behind. ``end_to_end_rps`` is the highest rate whose
    cards kept pace, and the card figure pools the steps up to it.
    """
    url = target.base_url + "/xpay/webhook"
    steps, offset, best, end_to_end = [], 0, 0, 0
    card_latencies: list[float] = []
    if standin:
        standin.new_calls("chat.update")
    for rate in mode.rates:
        n = int(rate * mode.step_seconds)
        batch = (
            webhooks[offset : offset + n]
            if standin
            else [webhooks[i % len(webhooks)] for i in range(n)]
        )
        offset += n
        if len(batch) < n:
            log(f"{target.name}: not enough webhook links for {rate}/s; stopping")
            break

        def send(s: requests.Session, i: int, batch: list[Any] = batch) -> requests.Response:
            body, sig, _ch, _ts = batch[i]
            return s.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", "x-signature": sig},
                timeout=10,
            )

        # At most 64 client connections: waitress accepts 100 at a time, and connections the
        # previous step left closing could otherwise hold the next step's last ones out
        # (the bare endpoint once "failed" 400/s with 4 such errors).
        workers = min(64, max(8, rate // 4))
        out: Outcome = open_loop(send, rate, mode.step_seconds, workers=workers)
        step = {"rate": rate, **summary(out.latencies, out.errors)}
        step["achieved_rps"] = round(len(out.latencies) / out.elapsed, 1) if out.elapsed else 0
        sustained = out.errors == 0 and (step["p99_ms"] or 1e9) <= P99_LIMIT_MS
        step["sustained"] = sustained
        if standin:
            step["card_update"] = _card_updates(target, standin, batch, out, mode)
            raw = step["card_update"].pop("_raw")
            cards = step["card_update"]
            step["cards_keep_pace"] = (
                cards["errors"] == 0 and (cards["p99_ms"] or 1e9) <= P99_LIMIT_MS
            )
            if sustained and step["cards_keep_pace"] and end_to_end == best:
                card_latencies.extend(raw)
                end_to_end = rate
        steps.append(step)
        log(
            f"{target.name}: webhooks {rate}/s p50 {step['p50_ms']} p99 {step['p99_ms']} ms "
            f"errors {out.errors}"
            + (f" card p50 {step['card_update']['p50_ms']} ms" if standin else "")
        )
        if not sustained:
            break
        best = rate
    result: dict[str, Any] = {
        "steps": steps,
        "max_sustained_rps": best,
        "ceiling_reached": bool(steps) and not steps[-1]["sustained"],
    }
    if standin:
        result["card_update"] = summary(card_latencies)
        result["end_to_end_rps"] = end_to_end
    return result


def _card_updates(
    target: Target, standin: StandIn, batch: list[Any], out: Outcome, mode: Mode
) -> dict[str, Any]:
    """Webhook sent → first chat.update of that card recorded by the stand-in (Call.at)."""
    sent = {
        (ch, ts): out.sent_at[i] for i, (_b, _s, ch, ts) in enumerate(batch) if i in out.sent_at
    }
    first: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + max(15.0, 3 * mode.step_seconds)
    while time.monotonic() < deadline:
        for ch, ts, _u, at, ok in standin.new_calls("chat.update"):
            key = (ch, ts)
            if ok and key in sent and key not in first:
                first[key] = at
        if len(first) >= len(sent):
            break
        time.sleep(0.1)
    target.wait_quiet(30)
    raw = [first[k] - sent[k] for k in first]
    return {**summary(raw, len(sent) - len(first)), "_raw": raw}


# ------------------------------------------------------------------ runs


def paylink_run(
    name: str,
    url: str,
    filler: int,
    mode: Mode,
    workdir: Path,
    standin: StandIn,
    sec: Secrets,
    *,
    webhooks: bool = True,
    slow: SlowGateway | None = None,
) -> dict[str, Any]:
    log(f"{name}: preparing database ({filler} links)")
    t0 = time.perf_counter()
    hooks = sum(int(r * mode.step_seconds) for r in mode.rates) if webhooks else 0
    seeded = seed.prepare(
        url,
        filler=filler,
        home_links=min(mode.home_links, filler),
        webhook_links=hooks,
        webhook_secret=sec.webhook,
    )
    approvals = seed.request_approvals(url, mode.requests * len(mode.concurrency), name)
    standin.add_cards(seeded.webhook_cards)
    result: dict[str, Any] = {
        "filler_links": filler,
        "links_in_store": seed.count_links(url),
        "seed_seconds": round(time.perf_counter() - t0, 1),
    }
    gateway, gateway_url = (None, slow.url) if slow else start_gateway(workdir, sec)
    target = start_paylink(name, workdir, url, standin, sec, gateway_url)
    try:
        target.wait_quiet(120)
        time.sleep(1)
        result["rss_idle_mb"] = target.child.rss_mb()
        result["worker_rss_idle_mb"] = target.worker.rss_mb()
        log(f"{name}: idle RSS {result['rss_idle_mb']} MB; measuring acks")
        if not slow:
            result["ack_command"] = ack_command(target, mode)
        result["ack_approve"] = ack_approve(target, mode, approvals, settle=not slow)
        if slow:
            return result
        target.wait_quiet(120)
        result["home_render"] = home_render(target, standin, mode.home_samples)
        target.wait_quiet(60)
        if webhooks:
            with RssSampler(target.child) as sampler, RssSampler(target.worker) as wsampler:
                result["webhook"] = webhook_ladder(target, mode, seeded.webhooks, standin)
            result["rss_under_load_peak_mb"] = sampler.peak
            result["worker_rss_under_load_peak_mb"] = wsampler.peak
        return result
    finally:
        target.stop()
        if gateway:
            gateway.stop()


def bare_run(mode: Mode, workdir: Path, standin: StandIn, sec: Secrets) -> dict[str, Any]:
    target = start_bare(workdir, standin, sec)
    try:
        time.sleep(0.5)
        result: dict[str, Any] = {"rss_idle_mb": target.child.rss_mb()}
        log("bare: measuring acks")
        result["ack_command"] = ack_command(target, mode)
        result["ack_approve"] = ack_approve(
            target, mode, list(range(1, 1 + mode.requests * len(mode.concurrency)))
        )
        fake = seed.Seeded()
        from types import SimpleNamespace

        from bot.xpay.sandbox import sandbox_webhook_payload
        from bot.xpay.signing import js_stringify, sign

        for i in range(500):
            intent = SimpleNamespace(
                id=f"xpay_pi_bare_{i}",
                amount=1500.5,
                currency="PKR",
                customer={"name": "Ayesha Khan", "email": "a@example.com"},
                body={"shipping": seed.SHIPPING},
            )
            body = js_stringify(sandbox_webhook_payload(intent, "pay", "card"))  # type: ignore[arg-type]
            fake.webhooks.append((body, sign(sec.webhook, body), seed.CHANNEL, str(i)))
        with RssSampler(target.child) as sampler:
            result["webhook"] = webhook_ladder(target, mode, fake.webhooks, None)
        result["rss_under_load_peak_mb"] = sampler.peak
        return result
    finally:
        target.child.stop()


def pg_schema(base_url: str, name: str) -> tuple[str, Callable[[], None]]:
    """A fresh schema for one run (search_path in the URL) and a function dropping it."""
    schema = f"paylink_bench_{os.getpid()}_{name}"
    engine = make_engine(base_url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)

    def drop() -> None:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()

    return rendered, drop


# ------------------------------------------------------------------ report


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in (
        "paylink",
        "slack-bolt",
        "slack-sdk",
        "flask",
        "waitress",
        "SQLAlchemy",
        "psycopg",
        "requests",
        "psutil",
    ):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(  # noqa: S603
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(  # noqa: S603
                ["git", "-C", str(ROOT), "status", "--porcelain", "--", "bot"],  # noqa: S607
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        )
    except OSError:
        commit, dirty = "", False
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "git_commit": commit,
        "bot_tree_dirty": dirty,
    }


def _fmt(stats: dict[str, Any] | None) -> str:
    if not stats or stats.get("p50_ms") is None:
        return "-"
    s = f"{stats['p50_ms']:.1f}/{stats['p95_ms']:.1f}/{stats['p99_ms']:.1f}"
    return s + (f" ({stats['errors']} err)" if stats.get("errors") else "")


def _get(d: dict[str, Any], *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def budgets(runs: dict[str, Any], mode: Mode) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool | None, detail: str) -> None:
        checks.append({"budget": name, "pass": bool(ok), "detail": detail})

    top = str(max(mode.concurrency))
    bare = runs.get("bare", {})
    small_runs = [n for n in runs if n.endswith("_small")]
    for run in small_runs:
        for kind, label in (("ack_command", "/paylink"), ("ack_approve", "Approve")):
            p99 = _get(runs[run], kind, top, "p99_ms")
            base = _get(bare, kind, top, "p99_ms")
            if p99 is None or base is None:
                check(f"{run}: {label} ack p99 @c={top}", False, "missing figure")
                continue
            ratio = p99 / base if base else float("inf")
            ok = p99 <= 1.5 * base and p99 < 300
            check(
                f"{run}: {label} ack p99 @c={top} <= 1.5x bare and < 300 ms",
                ok,
                f"{p99:.1f} ms vs bare {base:.1f} ms (x{ratio:.2f})",
            )
    slow = runs.get("sqlite_slow_gateway")
    if slow:
        normal = _get(runs, "sqlite_small", "ack_approve", top, "p99_ms")
        slowp = _get(slow, "ack_approve", top, "p99_ms")
        if normal is not None and slowp is not None:
            check(
                f"slow gateway ({mode.slow_gateway_delay:g} s) does not move Approve ack p99 @c={top}",
                slowp <= normal * 1.25 + 5,
                f"{slowp:.1f} ms vs {normal:.1f} ms normal (tolerance x1.25 + 5 ms)",
            )
    bare_rate = _get(bare, "webhook", "max_sustained_rps")
    for run in small_runs:
        rate = _get(runs[run], "webhook", "max_sustained_rps")
        if rate is not None and bare_rate is not None:
            capped = (
                ""
                if _get(bare, "webhook", "ceiling_reached")
                else " (bare never hit its ceiling: >=)"
            )
            check(
                f"{run}: webhook throughput >= 0.5x bare",
                rate >= 0.5 * bare_rate,
                f"{rate} vs {bare_rate} req/s{capped}",
            )
        card = _get(runs[run], "webhook", "card_update", "p50_ms")
        end_to_end = _get(runs[run], "webhook", "end_to_end_rps")
        check(
            f"{run}: webhook -> card update p50 < 250 ms",
            card is not None and card < 250,
            f"{card} ms (the steps whose cards kept pace pooled: up to {end_to_end}/s)",
        )
    for run in small_runs:
        large = run.replace("_small", "_large")
        if large not in runs:
            continue
        figures: list[tuple[str, float | None, float | None, bool]] = []
        for kind in ("ack_command", "ack_approve"):
            for c in mode.concurrency:
                for q in ("p50_ms", "p99_ms"):
                    figures.append(
                        (
                            f"{kind} c={c} {q}",
                            _get(runs[run], kind, str(c), q),
                            _get(runs[large], kind, str(c), q),
                            False,
                        )
                    )
        for path, higher_better in (
            (("home_render", "p50_ms"), False),
            (("webhook", "card_update", "p50_ms"), False),
            (("webhook", "max_sustained_rps"), True),
            (("webhook", "end_to_end_rps"), True),
        ):
            figures.append(
                (" ".join(path), _get(runs[run], *path), _get(runs[large], *path), higher_better)
            )
        for label, a, b, higher_better in figures:
            if a is None or b is None:
                check(f"scale {large} vs {run}: {label}", False, "missing figure")
                continue
            # latencies: 20% or 2 ms absolute (timer noise on tiny figures)
            ok = b >= 0.8 * a if higher_better else (b <= 1.2 * a or b - a <= 2.0)
            check(
                f"{run.split('_')[0]} scale {runs[large]['filler_links']} vs "
                f"{runs[run]['filler_links']} links: {label} within 20%",
                ok,
                f"{b} vs {a}",
            )
    for run in runs:
        if run.startswith(("sqlite", "postgres")) and "rss_idle_mb" in runs[run]:
            rss = runs[run]["rss_idle_mb"]
            check(f"{run}: idle RSS < 150 MB (serve)", rss < 150, f"{rss} MB")
            rss = runs[run].get("worker_rss_idle_mb")
            check(f"{run}: idle RSS < 150 MB (worker)", rss is not None and rss < 150, f"{rss} MB")
    return checks


def table(runs: dict[str, Any], mode: Mode) -> str:
    cols = list(runs)
    rows: list[tuple[str, list[str]]] = []
    for kind, label in (("ack_command", "/paylink ack"), ("ack_approve", "Approve ack")):
        for c in mode.concurrency:
            rows.append(
                (f"{label} c={c} p50/p95/p99 ms", [_fmt(_get(runs[r], kind, str(c))) for r in cols])
            )
    rows.append(
        (
            "webhook max sustained req/s",
            [
                str(
                    _get(runs[r], "webhook", "max_sustained_rps")
                    if _get(runs[r], "webhook")
                    else "-"
                )
                for r in cols
            ],
        )
    )
    rows.append(
        (
            "webhook end-to-end req/s (cards keep pace)",
            [str(_get(runs[r], "webhook", "end_to_end_rps") or "-") for r in cols],
        )
    )
    rows.append(
        ("webhook->card update ms", [_fmt(_get(runs[r], "webhook", "card_update")) for r in cols])
    )
    rows.append(("App Home render ms", [_fmt(_get(runs[r], "home_render")) for r in cols]))
    rows.append(("pre-existing links", [str(runs[r].get("filler_links", "-")) for r in cols]))
    rows.append(
        ("links in store (+ test links)", [str(runs[r].get("links_in_store", "-")) for r in cols])
    )
    for label, key in (
        ("RSS idle MB (serve)", "rss_idle_mb"),
        ("RSS idle MB (worker)", "worker_rss_idle_mb"),
        ("RSS peak under webhooks MB (serve)", "rss_under_load_peak_mb"),
        ("RSS peak under webhooks MB (worker)", "worker_rss_under_load_peak_mb"),
    ):
        rows.append((label, [str(runs[r].get(key, "-")) for r in cols]))
    width0 = max(len(r[0]) for r in rows)
    widths = [max(len(c), *(len(r[1][i]) for r in rows)) for i, c in enumerate(cols)]
    lines = ["  ".join([" " * width0, *(c.rjust(w) for c, w in zip(cols, widths, strict=True))])]
    for label, vals in rows:
        lines.append(
            "  ".join(
                [label.ljust(width0), *(v.rjust(w) for v, w in zip(vals, widths, strict=True))]
            )
        )
    lines.append("")
    lines.append("webhook steps (rate: p50/p95/p99 ms, card p50 ms; cards lag: card p99 > 500 ms):")
    for r in cols:
        steps = _get(runs[r], "webhook", "steps") or []
        parts = [
            f"{s['rate']}/s: {_fmt(s)}"
            + (f" card {s['card_update']['p50_ms']}" if "card_update" in s else "")
            + ("" if s.get("cards_keep_pace", True) else " (cards lag)")
            + ("" if s["sustained"] else " FAIL")
            for s in steps
        ]
        if parts:
            lines.append(f"  {r}: " + "; ".join(parts))
    return "\n".join(lines)


# ------------------------------------------------------------------ main


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
        help="also run on PostgreSQL (a scratch schema is created and dropped)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    args = parser.parse_args(argv)
    mode = MODES["smoke" if args.smoke else "full" if args.full else "default"]
    started = time.time()
    load_before = os.getloadavg()
    sec = Secrets(signing=secrets.token_hex(16), webhook=secrets.token_hex(16))
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="paylink-bench-") as tmp:
        workdir = Path(tmp)
        standin = StandIn(workdir)
        slow = SlowGateway(mode.slow_gateway_delay)
        try:
            runs["bare"] = bare_run(mode, workdir, standin, sec)
            for label, size in (("small", mode.small), ("large", mode.large)):
                url = f"sqlite:///{workdir / f'sqlite_{label}.db'}"
                runs[f"sqlite_{label}"] = paylink_run(
                    f"sqlite_{label}", url, size, mode, workdir, standin, sec
                )
            url = f"sqlite:///{workdir / 'sqlite_slow.db'}"
            runs["sqlite_slow_gateway"] = paylink_run(
                "sqlite_slow_gateway",
                url,
                mode.small,
                mode,
                workdir,
                standin,
                sec,
                webhooks=False,
                slow=slow,
            )
            if args.postgres:
                for label, size in (("small", mode.small), ("large", mode.large)):
                    url, drop = pg_schema(args.postgres, label)
                    try:
                        runs[f"postgres_{label}"] = paylink_run(
                            f"postgres_{label}", url, size, mode, workdir, standin, sec
                        )
                    finally:
                        drop()
        finally:
            slow.close()
            standin.stop()
    checks = budgets(runs, mode)
    report = {
        "mode": mode.name,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "settings": {
            "concurrency": list(mode.concurrency),
            "requests_per_level": mode.requests,
            "webhook_rates": list(mode.rates),
            "webhook_step_seconds": mode.step_seconds,
            "webhook_p99_limit_ms": P99_LIMIT_MS,
            "server_threads": THREADS,
            "slow_gateway_delay_s": mode.slow_gateway_delay,
            "processes": "load generator + slow-gateway stub | Slack stand-in | sandbox gateway "
            "| `paylink serve` (waitress) | `paylink worker` | bare baseline: separate "
            "processes; RSS is given for serve and worker each",
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
        f"\nPaylink benchmark ({mode.name}) on {m['cpu_model']} x{m['cores']}, {m['ram_gb']} GB, Python {m['python']}, commit {m['git_commit'][:10]}"
    )
    print(
        "RSS: of `paylink serve` and `paylink worker`, each (stand-in, gateway and load generator are other processes)"
    )
    print(
        f"load average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} (other work on this machine skews the figures)\n"
    )
    print(table(runs, mode))
    print("\nBudgets:")
    for c in checks:
        print(f"  {'PASS' if c['pass'] else 'FAIL'}  {c['budget']}: {c['detail']}")
    print(f"\nJSON: {args.out}  ({report['duration_s']} s)")
    return 0
