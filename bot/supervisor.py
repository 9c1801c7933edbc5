"""`paylink worker` as a child of `paylink serve` (PAYLINK_WORKER=child, the default).

The child is started with serve, restarted when it dies (after a pause that grows while it
keeps dying), and stopped when serve stops. It runs at a lower CPU priority, so the acks
serve owes Slack and XPay never wait behind it: see docs/decisions/0005.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

from bot.config import Settings

log = logging.getLogger("bot")

RESTART_DELAYS = (1, 2, 5, 10, 30)  # seconds before each restart in a row
STEADY = 60.0  # seconds: a child that ran this long before dying starts the delays afresh


class WorkerChild:
    """Runs ``python -m bot worker --parent <this pid>`` with this process's environment."""

    def __init__(self, settings: Settings):
        self._cmd = [sys.executable, "-m", "bot", "worker", "--parent", str(os.getpid())]
        # The environment is serve's own (so is its .env file, read from the same working
        # directory); a --port given to serve decides the sandbox gateway's URL there too.
        self._env = {**os.environ, "PORT": str(settings.port)}
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # no child is started once stopping is set
        self._thread = threading.Thread(target=self._supervise, name="worker-child", daemon=True)

    def start(self) -> WorkerChild:
        """Start the child, and look after it from a thread."""
        self._thread.start()
        return self

    def _supervise(self) -> None:
        restarts = 0
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                proc = subprocess.Popen(self._cmd, env=self._env, stdin=subprocess.DEVNULL)  # noqa: S603
                self._proc = proc
            log.info("worker started (pid %s)", proc.pid)
            started = time.monotonic()
            code = proc.wait()
            if self._stopping.is_set():
                return
            ran = time.monotonic() - started
            restarts = 0 if ran >= STEADY else restarts
            delay = RESTART_DELAYS[min(restarts, len(RESTART_DELAYS) - 1)]
            restarts += 1
            log.warning(
                "worker (pid %s) %s after %.0f s: restarting it in %s s",
                proc.pid,
                _ended(code),
                ran,
                delay,
            )
            if self._stopping.wait(delay):
                return

    def stop_restarting(self) -> None:
        """Start no other child from now on (serve is stopping: a child that ends now, e.g.
        on the SIGTERM systemd sends every process of the service, stays stopped)."""
        with self._lock:
            self._stopping.set()

    def terminate(self) -> None:
        """Ask the child to stop (SIGTERM: it finishes what it is doing) and start no other."""
        self.stop_restarting()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def stop(self, deadline: float) -> None:
        """Stop the child, waiting until ``deadline`` (time.monotonic()) before killing it."""
        self.terminate()
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "worker (pid %s) still busy at the end of the grace period: killed", proc.pid
                )
                proc.kill()
                proc.wait()
        self._thread.join(timeout=5)


def _ended(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"
