"""Processes for tests: ``paylink`` commands and other Python programs, always cleaned up.

The ``procs`` fixture runs a command to its end (:meth:`Procs.run`) or starts one
(:meth:`Procs.start`) whose output is collected while it runs, to wait for a line or for its
HTTP port to answer; whatever still runs when the test ends is stopped. Every process gets
the test's environment minus Paylink's settings, plus the ``env`` given.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import requests

from tests.waiting import wait_until

PAYLINK = str(Path(sys.executable).parent / "paylink")  # the console script
SETTING_PREFIXES = ("PAYLINK_", "SLACK_", "XPAY_")
SETTING_NAMES = ("DATABASE_URL", "PORT")


def clean_environment() -> dict[str, str]:
    """This process's environment without any Paylink setting (none leaks into a test)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not (k.upper().startswith(SETTING_PREFIXES) or k.upper() in SETTING_NAMES)
    }


class Proc:
    """A started process; stdout and stderr are collected together as they come (its
    children's too, as long as they write to what they inherited).

    ``group``: the process leads a process group of its own, so that :meth:`signal_group`
    reaches its children at once, and stopping it stops whatever of the group is left.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        stdin: bool,
        group: bool = False,
    ):
        self.args = list(args)
        self.group = group
        self.popen = subprocess.Popen(  # noqa: S603
            self.args,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=group,
        )
        self._out = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="proc-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        with self.popen.stdout:
            for line in self.popen.stdout:
                with self._lock:
                    self._out += line

    def output(self) -> str:
        """Everything it wrote so far."""
        with self._lock:
            return self._out.decode(errors="replace")

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process alone, and go on without waiting."""
        self.popen.send_signal(sig)

    def signal_group(self, sig: signal.Signals) -> None:
        """Send ``sig`` to every process of its group at once (started with ``group=True``)."""
        assert self.group, "not started with a process group of its own"
        with contextlib.suppress(ProcessLookupError):  # the whole group has ended
            os.killpg(self.popen.pid, sig)

    def _ended(self) -> str:
        """How it ended and what it wrote (all of it: the reader has got to the end)."""
        self._reader.join(10)
        return f"{self.args} ended ({self.popen.returncode}):\n{self.output()}"

    def wait_for_output(self, text: str, timeout: float = 20) -> None:
        """Until it has written ``text``; AssertionError (with its output) if it ends first."""

        def written() -> bool:
            if text in self.output():
                return True
            if self.running:
                return False
            ended = self._ended()  # the reader now has all it wrote, maybe ``text`` too
            assert text in self.output(), ended
            return True

        wait_until(written, timeout, message=lambda: f"{text!r} not in:\n{self.output()}")

    def wait_for_http(self, url: str, timeout: float = 20) -> None:
        """Until a GET of ``url`` answers 200 (its server is up)."""

        def answers() -> bool:
            assert self.running, self._ended()
            try:
                return requests.get(url, timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(answers, timeout, message=lambda: f"{url} not up:\n{self.output()}")

    def wait(self, timeout: float = 20) -> int:
        """Until it ends by itself; its exit code."""
        code = self.popen.wait(timeout)
        self._reader.join(timeout)
        return code

    def send(self, text: str) -> None:
        """Write ``text`` to its standard input (started with ``stdin=True``)."""
        assert self.popen.stdin is not None
        self.popen.stdin.write(text.encode())
        self.popen.stdin.flush()

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10) -> int:
        """Send ``sig`` (SIGKILL if it has not ended within ``timeout``); its exit code."""
        if self.running:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        if self.group:  # children the leader left behind (it was killed alone, say)
            self.signal_group(signal.SIGKILL)
        if self.popen.stdin is not None:
            self.popen.stdin.close()
        self._reader.join(timeout)
        return self.popen.returncode


class Procs:
    """Starts processes for one test (working directory ``cwd``) and stops them after it."""

    def __init__(self, cwd: Path):
        self.cwd = cwd
        self.started: list[Proc] = []

    def run(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cwd: Path | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``args`` to its end; stdout and stderr apart, as text."""
        return subprocess.run(  # noqa: S603
            list(args),
            cwd=cwd or self.cwd,
            env={**clean_environment(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def paylink(
        self, *args: str, cwd: Path | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``paylink`` console script with the settings ``env``."""
        return self.run([PAYLINK, *args], env, cwd=cwd)

    def start(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cwd: Path | None = None,
        stdin: bool = False,
        group: bool = False,
    ) -> Proc:
        """Start ``args`` (``group``: in a process group of its own, see :class:`Proc`); it is
        stopped (SIGTERM, then SIGKILL) when the test ends."""
        proc = Proc(
            args,
            env={**clean_environment(), **(env or {})},
            cwd=cwd or self.cwd,
            stdin=stdin,
            group=group,
        )
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            proc.stop()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Run and start processes in ``tmp_path``; whatever still runs is stopped afterwards."""
    launcher = Procs(tmp_path)
    try:
        yield launcher
    finally:
        launcher.stop_all()
