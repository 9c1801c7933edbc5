"""`paylink serve` run as an operator runs it: a real process with its default worker child,
on a new database, stopped by SIGTERM, and held to its limits by slow or oversized requests.

Everything talks to 127.0.0.1; each loop here is bounded in time, so a test that fails still
stops by itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from bot.db import make_engine, make_sessionmaker
from bot.local.simulator import SlackSimulator
from bot.local.stack import BOT_TOKEN, REP
from bot.schema import head_revision
from bot.xpay.keys import sandbox_keys
from bot.xpay.signing import js_stringify, sign
from tests.procs import Procs
from tests.test_crash_recovery import SIGNING_SECRET, BotProcess, WatchedStandIn, cards
from tests.test_crash_recovery import submit_request as submit
from tests.waiting import wait_until

# Every test runs serve as a process; the module-wide one is not the ``procs`` fixture.
pytestmark = pytest.mark.integration

UNKNOWN_INTENT = js_stringify(
    {
        "type": "PAYMENT_INTENT_NOTIFICATION",
        "payment_intent_id": "xpay_pi_nobody_knows",
        "amount": 250,
        "currency": "PKR",
        "status": "succeeded",
        "payment_method_types": "card",
    }
)
HUGE = 200 * 1024 * 1024


def worker_pids(bot: BotProcess) -> list[int]:
    """The worker children serve has started, in order (from its log)."""
    return [int(pid) for pid in re.findall(r"worker started \(pid (\d+)\)", bot.logs())]


def start(bot: BotProcess) -> int:
    """Start serve and wait until its worker child runs; returns the worker's pid."""
    bot.start()
    pid = wait_until(lambda: worker_pids(bot), 20, message=bot.logs)[0]
    wait_until(lambda: "worker running" in bot.logs(), 20, message=bot.logs)
    return pid


def running(pid: int) -> bool:
    """True while ``pid`` is a live process (not gone, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def sandbox_secret(bot: BotProcess) -> str:
    """The webhook secret the bot's sandbox made for its database."""
    engine = make_engine(bot.env["DATABASE_URL"])
    try:
        return sandbox_keys(make_sessionmaker(engine)).webhook_secret
    finally:
        engine.dispose()


def webhook(bot: BotProcess, secret: str | None = None) -> requests.Response:
    """A correctly signed payment webhook (for an intent the bot never created: 404)."""
    headers = {
        "Content-Type": "application/json",
        "x-signature": sign(secret or sandbox_secret(bot), UNKNOWN_INTENT),
    }
    return requests.post(
        bot.base_url + "/xpay/webhook", data=UNKNOWN_INTENT, headers=headers, timeout=10
    )


def assert_unknown_intent(response: requests.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.json() == {"success": False, "reason": "unknown payment intent"}


@contextmanager
def serving_a_new_database(procs: Procs) -> Iterator[tuple[BotProcess, WatchedStandIn]]:
    """A `paylink serve` to start (``bot.start()``) in ``procs``'s directory on a new
    database, and its Slack."""
    with WatchedStandIn(bot_token=BOT_TOKEN) as slack:
        bot = BotProcess(procs, procs.cwd, slack, migrate=False)
        try:
            yield bot, slack
        finally:
            bot.stop()


@pytest.fixture
def new(procs: Procs) -> Iterator[tuple[BotProcess, WatchedStandIn]]:
    with serving_a_new_database(procs) as both:
        yield both


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotProcess]:
    """One, started, for the tests that only send requests."""
    with serving_a_new_database(Procs(tmp_path_factory.mktemp("served"))) as (bot, _slack):
        bot.start()
        yield bot


# A new database, the worker child --------------------------------------------------------


def test_serve_creates_the_schema_of_a_new_database(served: BotProcess) -> None:
    assert served.rows("select version_num from alembic_version") == [(head_revision(),)]
    assert f"new database: schema created at {head_revision()}" in served.logs()
    assert f"serving on 127.0.0.1 port {served.port}" in served.logs()  # PAYLINK_HOST
    assert requests.get(served.base_url + "/healthz", timeout=5).json()["database"] == "ok"


@pytest.mark.slow  # two workers started, and a whole request
def test_the_default_serve_restarts_its_worker_and_stops_it_on_sigterm(
    new: tuple[BotProcess, WatchedStandIn],
) -> None:
    bot, slack = new
    first = start(bot)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: len(worker_pids(bot)) == 2, 20, message=bot.logs)
    assert f"worker (pid {first}) was killed by SIGKILL" in bot.logs()
    second = worker_pids(bot)[1]

    # The new worker does the work: the request's card is posted.
    submit(bot, slack)
    slack.wait_for(lambda s: next(iter(cards(s)), None), 20)

    assert bot.proc is not None
    bot.proc.send_signal(signal.SIGTERM)
    assert bot.proc.wait(timeout=30) == 0
    assert not running(second)
    assert "Traceback" not in bot.logs()


def test_a_worker_whose_serve_was_killed_stops_by_itself(
    new: tuple[BotProcess, WatchedStandIn],
) -> None:
    bot, _slack = new
    pid = start(bot)
    assert bot.proc is not None
    bot.proc.send_signal(signal.SIGKILL)  # serve alone (an OOM kill, say): nobody stops the worker
    bot.proc.wait(timeout=10)
    wait_until(lambda: not running(pid), 15, message=bot.logs)
    assert "is gone: stopping" in bot.logs()


# SIGTERM -----------------------------------------------------------------------------------


def test_sigterm_answers_the_request_under_way_then_exits_0(
    new: tuple[BotProcess, WatchedStandIn],
) -> None:
    """systemd, Docker and Kubernetes stop a service with SIGTERM: serve stops taking
    connections, answers the request it is in the middle of, stops its worker and exits 0."""
    bot, _slack = new
    worker = start(bot)
    answer: dict[str, requests.Response] = {}
    assert bot.proc is not None
    secret = sandbox_secret(bot)  # read before the lock below holds every writer back
    # Every writer of ours takes this lock first: holding it keeps the webhook's insert, and
    # so its request, under way in serve until the lock is let go.
    with (bot.workdir / "paylink.db.write").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sender = threading.Thread(target=lambda: answer.update(response=webhook(bot, secret)))
        sender.start()
        # Nothing outside serve shows the request waiting for the lock: give it the time to
        # get there, as the scenario is SIGTERM with a request under way.
        time.sleep(0.5)
        assert "response" not in answer
        bot.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: refused(bot.port), 10, message="serve still accepts connections")
        fcntl.flock(lock, fcntl.LOCK_UN)
    sender.join(timeout=20)
    assert_unknown_intent(answer["response"])
    assert bot.proc.wait(timeout=30) == 0
    logs = bot.logs()
    assert "Traceback" not in logs and "Bad file descriptor" not in logs, logs
    assert "stopped" in logs
    assert not running(worker)


def test_sigterm_to_every_process_of_the_service_stops_both_for_good(
    new: tuple[BotProcess, WatchedStandIn],
) -> None:
    """systemd (KillMode=control-group, its default) sends SIGTERM to serve and its worker
    at once: the worker stops by itself, and serve does not start another."""
    bot, _slack = new
    worker = start(bot)
    assert bot.proc is not None
    bot.proc.signal_group(signal.SIGTERM)
    assert bot.proc.wait(timeout=30) == 0
    assert not running(worker)
    assert worker_pids(bot) == [worker]
    assert "restarting" not in bot.logs()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except (ConnectionRefusedError, ConnectionResetError):
        # Reset: the listening socket closed with this connection still in its backlog.
        return True
    return False


# Limits ------------------------------------------------------------------------------------


class SlowClients:
    """``count`` connections that each send one more byte of a request's headers every
    ``every`` seconds and never finish it (a slow-client attack, or very bad networks).
    Stops after ``lifetime`` seconds at most, whatever the test does."""

    def __init__(self, port: int, count: int, every: float, lifetime: float = 60.0):
        self.socks = [
            socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)
        ]
        for sock in self.socks:
            sock.sendall(b"POST /xpay/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        self.every, self.sent = every, 0
        self._until = time.monotonic() + lifetime
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)

    def _drip(self) -> None:
        while not self._stop.wait(self.every) and time.monotonic() < self._until:
            for sock in self.socks:
                sock.sendall(b"a")
                self.sent += 1

    def __enter__(self) -> SlowClients:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for sock in self.socks:
            sock.close()

    def open(self) -> int:
        """How many of the connections the server still holds open."""
        readable, _, _ = select.select(self.socks, [], [], 0)
        return len(self.socks) - len(readable)  # a closed one reads as end-of-file


@pytest.mark.slow  # three rounds of the slow clients' 2 s drip
def test_a_hundred_slow_clients_do_not_hold_up_anyone_else(served: BotProcess) -> None:
    with SlowClients(served.port, count=100, every=2.0) as slow:
        for _ in range(3):
            sent = slow.sent
            wait_until(lambda: slow.sent >= sent + 100, 5)  # each sent another byte meanwhile
            timings = {}
            started = time.monotonic()
            health = requests.get(served.base_url + "/healthz", timeout=5)
            timings["healthz"] = time.monotonic() - started
            assert health.status_code == 200
            started = time.monotonic()
            ack = SlackSimulator(served.base_url, SIGNING_SECRET).command(REP, "")
            timings["Slack ack"] = time.monotonic() - started
            assert ack.status_code == 200
            started = time.monotonic()
            assert_unknown_intent(webhook(served))
            timings["webhook"] = time.monotonic() - started
            assert max(timings.values()) < 1.0, timings
        assert slow.sent >= 200
        assert slow.open() == 100


def test_a_200_megabyte_body_is_refused_before_it_is_sent(served: BotProcess) -> None:
    """The limit is applied to Content-Length, before the body is read: the answer comes
    while the client is still sending, and serve's memory does not grow."""
    assert served.proc is not None
    peak_before = peak_rss_kb(served.proc.pid)
    started = time.monotonic()
    sent, reply = 0, b""
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(
            b"POST /xpay/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(HUGE).encode() + b"\r\n\r\n"
        )
        sock.setblocking(False)
        chunk = b"{" * 65536
        while time.monotonic() - started < 10 and sent < HUGE:
            readable, writable, _ = select.select([sock], [sock], [], 0.5)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                reply += data
            elif writable:
                with contextlib.suppress(BlockingIOError, BrokenPipeError, ConnectionResetError):
                    sent += sock.send(chunk)
    elapsed = time.monotonic() - started
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), reply[:300]
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {
        "success": False,
        "reason": "request body too large (the limit is 1024 KiB)",
    }
    assert sent < 16 * 1024 * 1024, f"{sent} bytes sent before the answer"
    assert elapsed < 5
    assert peak_rss_kb(served.proc.pid) - peak_before < 10 * 1024


def peak_rss_kb(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
