"""Test layers: each test is ``unit``, or one or more of ``integration``, ``pg``, ``browser``
and ``slow``, so that ``pytest -m unit`` gives fast feedback and CI can run the rest.

The markers are derived at collection from what a test uses:

* ``integration``: a fixture that runs the local stack, a server or a process
  (:data:`SERVER_FIXTURES`);
* ``pg``: parametrized with the PostgreSQL backend, or a fixture on PostgreSQL;
* ``browser``: the headless Chromium fixture;
* ``slow``: marked by hand on the test (over about 3 s);
* ``unit``: none of these: in-process, SQLite at most.

Where the rule cannot see what a test uses, the test or its module is marked by hand. A
marker cannot be wrong silently: while a test that is neither ``integration`` nor ``browser``
runs, an audit hook notes whether it starts a process or binds or connects a TCP socket, and
a pool listener whether it connects to PostgreSQL without ``pg``; either fails the test.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Collection, Iterable
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.pool import Pool

LAYERS = ("unit", "integration", "pg", "browser", "slow")
UNIT = "unit"
# Fixtures that start the local stack, a stand-in or stub server, or a process.
SERVER_FIXTURES = frozenset(
    {
        "stack",
        "make_stack",
        "flow",
        "make_faulty",
        "procs",
        "slack",
        "stub",
        "xpay_stub",
        "recorder",
        "distributed",
        "gateways",
    }
)
PG_FIXTURES = frozenset({"pg"})
PG_BACKEND = "postgresql"  # the backend parameter of tests/dbs.py
BROWSER_FIXTURES = frozenset({"chrome"})

# What the audit hook watches for, and the layers that may do it.
_AUDIT_EVENTS = {
    "subprocess.Popen": "started a process",
    "socket.bind": "bound a TCP socket",
    "socket.connect": "opened a TCP connection",
}
_POSTGRESQL = "connected to PostgreSQL"
_MAY = {
    **dict.fromkeys(_AUDIT_EVENTS.values(), frozenset({"integration", "browser"})),
    _POSTGRESQL: frozenset({"pg"}),
}


class LayerError(Exception):
    """A test's explicit markers contradict what it uses."""


def layers_of(
    fixtures: Collection[str], params: Iterable[Any], marked: Collection[str]
) -> set[str]:
    """The layers of a test that uses ``fixtures``, is parametrized with ``params`` and carries
    the layer markers ``marked``; LayerError when ``unit`` is marked on a test that is not."""
    found = {name for name in marked if name != UNIT}
    if SERVER_FIXTURES.intersection(fixtures):
        found.add("integration")
    if PG_FIXTURES.intersection(fixtures) or any(
        isinstance(p, str) and p == PG_BACKEND for p in params
    ):
        found.add("pg")
    if BROWSER_FIXTURES.intersection(fixtures):
        found.add("browser")
    if UNIT in marked and found:
        raise LayerError(f"marked unit, but it is {', '.join(sorted(found))}")
    return found or {UNIT}


def _marked(item: pytest.Item) -> set[str]:
    return {m.name for m in item.iter_markers() if m.name in LAYERS}


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by these markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every collected test with its layers; refuse to run with contradicting markers."""
    problems = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec else ()
        try:
            found = layers_of(getattr(item, "fixturenames", ()), params, _marked(item))
        except LayerError as exc:
            problems.append(f"{item.nodeid}: {exc}")
            continue
        for name in sorted(found):
            item.add_marker(name)
    for item in items:
        marked = _marked(item)
        if not marked or (UNIT in marked and len(marked) > 1):
            problems.append(f"{item.nodeid}: layer markers {sorted(marked)}")
    if problems:
        raise pytest.UsageError("tests with wrong layer markers:\n" + "\n".join(problems))


class Watch:
    """What the test running now did that only some layers may (main thread only: servers
    that earlier tests left running answer on threads of their own)."""

    def __init__(self) -> None:
        self.active = False
        self.seen: set[str] = set()

    def audit(self, name: str, args: tuple[Any, ...]) -> None:
        """A ``sys.addaudithook`` hook: note processes and TCP sockets (not Unix sockets)."""
        what = _AUDIT_EVENTS.get(name)
        if what is None or not self._watching():
            return
        if name != "subprocess.Popen" and not isinstance(args[1], tuple):
            return  # a Unix socket's address is a path
        self.seen.add(what)

    def connected(self, dbapi_connection: Any, _record: Any) -> None:
        """A pool ``connect`` listener: note connections to PostgreSQL."""
        if self._watching() and type(dbapi_connection).__module__.startswith("psycopg"):
            self.seen.add(_POSTGRESQL)

    def _watching(self) -> bool:
        return self.active and threading.current_thread() is threading.main_thread()

    def take(self) -> set[str]:
        """What was noted since the last call."""
        seen, self.seen = self.seen, set()
        return seen

    def not_allowed(self, layers: Collection[str]) -> list[str]:
        """What was noted that none of ``layers`` may do (and forget it)."""
        return sorted(what for what in self.take() if not _MAY[what].intersection(layers))


WATCH = Watch()


def pytest_configure(config: pytest.Config) -> None:
    sys.addaudithook(WATCH.audit)
    event.listen(Pool, "connect", WATCH.connected)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    WATCH.take()
    WATCH.active = True


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    # Module fixtures end in the teardown of whichever test comes last: not its doing.
    WATCH.active = False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.when != "teardown":
        layers = _marked(item)
        wrong = WATCH.not_allowed(layers)
        if wrong and report.passed:
            report.outcome = "failed"
            report.longrepr = (
                f"{item.nodeid} is {', '.join(sorted(layers))} but it {' and '.join(wrong)}: "
                "use a fixture tests/layers.py knows, or mark it integration (or pg)"
            )
    return report
