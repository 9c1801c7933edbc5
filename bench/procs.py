"""The processes of a benchmark run: the bot (the default `paylink serve` and the worker child
it starts), its gateway, the baselines and the Slack stand-in, each a subprocess with its own
log and RSS."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import requests
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench import seed
from bot.commands import WORKER_NICENESS
from bot.db import make_engine
from bot.local.simulator import SlackSimulator
from bot.local.stack import BOT_TOKEN, free_port

ROOT = Path(__file__).resolve().parent.parent
THREADS = 16  # `paylink serve` default
# The Slack stand-in and the sandbox gateways play Slack's and XPay's machines: here they
# share the bot's two cores, so they run at the worker's priority, below `serve`, the bare
# baselines and the load generator, rather than taking CPU from what is being measured.
ELSEWHERE_NICENESS = WORKER_NICENESS
STOP_WAIT = 20.0  # seconds; `paylink serve` stops gracefully, its worker child with it


def rss_mb(process: psutil.Process) -> float:
    return round(process.memory_info().rss / 2**20, 1)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "XPAY_", "PAYLINK_", "DATABASE_URL", "PORT"))
    }
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Child:
    """A subprocess with stderr in a log file (``nice``: its niceness); stopped with SIGTERM,
    then SIGKILL."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str],
        workdir: Path,
        nice: int = 0,
        **kw: Any,
    ):
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(  # noqa: S603
            cmd, env=env, cwd=workdir, stderr=self._log, **kw
        )
        self.ps = psutil.Process(self.proc.pid)
        if nice:
            self.ps.nice(nice)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_WAIT)
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
            nice=ELSEWHERE_NICENESS,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lock = threading.Lock()
        self.url = json.loads(self._readline())["url"]
        self._next = {"chat.update": 0, "views.publish": 0, "views.open": 0}

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
    # The bot and its gateway each have a database, so each would make sandbox keys of its
    # own: both are given this one instead.
    xpay: str = field(default_factory=lambda: secrets.token_hex(16))

    def xpay_env(self) -> dict[str, str]:
        """The XPAY_ settings the bot and the gateway share."""
        return {
            "XPAY_ENV": "sandbox",
            "XPAY_API_KEY": self.xpay,
            "XPAY_ACCOUNT_ID": "bench",
            "XPAY_HMAC_SECRET": self.xpay,
            "XPAY_WEBHOOK_SECRET": self.webhook,
        }


@dataclass
class Target:
    """A server under test, with what the measurements need of it and what they found.

    ``worker`` (serve's worker child) and ``gateway`` are None for the baseline;
    ``approvals`` are the ids of the requests awaiting approval that its Approve clicks use
    up, in order.
    """

    name: str
    child: Child
    port: int
    sec: Secrets
    db_url: str = ""
    worker: psutil.Process | None = None
    gateway: Child | None = None
    filler: int = 0
    approvals: list[int] = field(default_factory=list)
    slow_gateway: bool = False
    ts_second: int = 0  # the integer part of its webhook cards' ts, unique per target
    hooks_seeded: int = 0
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_bare(self) -> bool:
        return self.worker is None

    def simulator(self, session: requests.Session) -> SlackSimulator:
        return SlackSimulator(self.base_url, self.sec.signing, session=session)

    def processes(self) -> dict[str, psutil.Process]:
        """The processes whose RSS is reported, by role."""
        return {"serve": self.child.ps} | ({"worker": self.worker} if self.worker else {})

    def stop(self) -> None:
        for child in (self.child, self.gateway):  # serve stops its worker
            if child:
                child.stop()

    def backlog(self) -> int:
        try:
            return int(requests.get(self.base_url + "/healthz", timeout=5).json()["outbox_backlog"])
        except (requests.RequestException, KeyError, ValueError):
            return -1

    def quiet(self) -> bool:
        """Nothing queued and no link still being created at the gateway."""
        return self.is_bare or (self.backlog() == 0 and seed.creating(self.db_url) == 0)

    def wait_quiet(self, timeout: float) -> bool:
        """Wait until :meth:`quiet` (so that one measurement's background work does not leak
        into the next one's figures)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.quiet():
                return True
            time.sleep(0.2)
        log(f"{self.name}: background work not finished after {timeout:.0f} s")
        return False


def start_paylink(
    name: str, workdir: Path, db_url: str, standin: StandIn, sec: Secrets, gateway_url: str
) -> Target:
    """The default `paylink serve` (PAYLINK_WORKER unset), once it answers and its worker
    child is running."""
    port = free_port()
    env = _clean_env() | {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": sec.signing,
        "SLACK_API_URL": standin.url,
        **sec.xpay_env(),
        "XPAY_BASE_URL": gateway_url,
        "DATABASE_URL": db_url,
        "PAYLINK_APPROVERS": seed.APPROVER,
        "PAYLINK_APPROVAL_CHANNEL": seed.CHANNEL,
        "PAYLINK_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PAYLINK_HOST": "127.0.0.1",
        "PORT": str(port),
    }
    cmd = [sys.executable, "-m", "bot", "serve", "--port", str(port), "--threads", str(THREADS)]
    child = Child(f"paylink-{name}", cmd, env, workdir)
    _wait_http(f"http://127.0.0.1:{port}/healthz", child)
    return Target(name, child, port, sec, db_url, worker=_worker_of(child))


def _worker_of(serve: Child, timeout: float = 60.0) -> psutil.Process:
    """The worker child `serve` started, once it says it is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "worker running" in serve.log_path.read_text(errors="replace"):
            (worker,) = serve.ps.children()
            return worker
        if serve.proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"{serve.name}: no worker running; see {serve.log_path}")


def start_gateway(workdir: Path, sec: Secrets) -> tuple[Child, str]:
    """The sandbox gateway in its own process (XPay's work is not the bot's CPU)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = (
        _clean_env()
        | sec.xpay_env()
        | {
            "DATABASE_URL": f"sqlite:///{workdir / f'gateway-{port}.db'}",
            "PAYLINK_PUBLIC_URL": url,
            "PORT": str(port),
        }
    )
    child = Child(
        f"gateway-{port}",
        [sys.executable, "-m", "bench.gateway_proc"],
        env,
        workdir,
        nice=ELSEWHERE_NICENESS,
    )
    _wait_http(url + "/healthz", child)
    return child, url + "/sandbox"


def start_bare(workdir: Path, standin: StandIn, sec: Secrets) -> Target:
    port = free_port()
    env = _clean_env() | {
        "DATABASE_URL": f"sqlite:///{workdir / 'bare.db'}",
        "PORT": str(port),
        "THREADS": str(THREADS),
        "SLACK_API_URL": standin.url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": sec.signing,
        "XPAY_ENV": "sandbox",  # with a key set, the settings it loads must name one
        "XPAY_WEBHOOK_SECRET": sec.webhook,
    }
    child = Child("bare", [sys.executable, "-m", "bench.bare"], env, workdir)
    target = Target("bare", child, port, sec)
    _wait_http(target.base_url + "/healthz", child)
    return target


class _BacklogServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # socketserver's default, 5, drops a burst's connections


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

        self.server = _BacklogServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pg_schema(base_url: str, name: str) -> tuple[str, Any]:
    """A fresh schema for one target (search_path in the URL) and a function dropping it."""
    schema = f"paylink_bench_{os.getpid()}_{name}"
    engine = make_engine(base_url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)

    def drop() -> None:
        seed.dispose(rendered)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()

    return rendered, drop


class RssSampler:
    """Peak RSS of some processes, sampled every 0.2 s while switched on; the peaks are
    kept across :meth:`on`/:meth:`off`."""

    def __init__(self, children: dict[str, psutil.Process]):
        self.children = children
        self.peak = dict.fromkeys(children, 0.0)
        self._on = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            if not self._on.is_set():
                continue
            for role, process in self.children.items():
                with contextlib.suppress(psutil.Error):
                    self.peak[role] = max(self.peak[role], rss_mb(process))

    def on(self) -> None:
        self._on.set()

    def off(self) -> None:
        self._on.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
