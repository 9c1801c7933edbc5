"""Database engine and ORM base: SQLite by default (WAL, busy timeout), PostgreSQL via URL."""

from __future__ import annotations

import fcntl
import logging
import os
import select
import sqlite3
import threading
import time
import weakref
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, sessionmaker

from bot.config import ConfigError

log = logging.getLogger("bot.db")

READ_ONLY = "paylink_read_only"
BUSY_TIMEOUT = 30.0  # seconds a SQLite statement waits for another process's lock


class Base(DeclarativeBase):
    """Declarative base for every table (links, history, webhook events, outbox, sandbox)."""


class DatabaseUnusable(ConfigError):
    """DATABASE_URL names no database this process can use: one line saying what went wrong
    and what to do, never the URL itself (it may carry a password)."""

    def __init__(self, url: str, exc: Exception):
        super().__init__([f"DATABASE_URL: {_what_failed(url, exc)}"])


def _what_failed(url: str, exc: Exception) -> str:
    if not isinstance(exc, DBAPIError):  # SQLAlchemy could not make an engine of the URL
        return (
            f"not a database URL Paylink can use ({exc}): expected sqlite:///paylink.db "
            "or postgresql://user:password@host:5432/dbname"
        )
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
    if url.startswith("sqlite"):
        return (
            f"cannot use the SQLite database {make_url(url).database} ({reason}): check that "
            "its directory exists and that this user may write there"
        )
    if isinstance(exc, OperationalError | InterfaceError):
        return (
            f"cannot connect ({reason}): check the host, port, user and password, and that "
            "the database server is running"
        )
    return f"the database refused ({reason}): check that its user may create and change tables"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and immediate write transactions.
    :class:`DatabaseUnusable` when the URL names no database SQLAlchemy can open."""
    try:
        return _engine(url, **kwargs)
    except (ArgumentError, ImportError) as exc:  # unknown scheme, driver not installed
        raise DatabaseUnusable(url, exc) from None


def _engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False, "factory": _Connection},
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # BEGIN is issued by the "begin" listener below, so that writers can take the
            # write lock up front (IMMEDIATE) instead of failing with "database is locked"
            # when a read turns into a write.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT * 1000:.0f}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Readers (see ``reader``) begin deferred: under WAL they never wait for a writer.
            if conn.get_execution_options().get(READ_ONLY, False):
                conn.exec_driver_sql("BEGIN")
            else:
                _begin_immediate(conn.connection.dbapi_connection)

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


def server_hung_up(conn: Connection) -> bool:
    """True when an idle connection's server has said something unasked: on PostgreSQL that
    is the notice it sends before it closes the connection (a restart, an administrator's
    ``pg_terminate_backend``), after which the next statement would fail. Costs one
    ``select`` rather than a round trip; SQLite has no server (False)."""
    raw = conn.connection.dbapi_connection
    fileno = getattr(raw, "fileno", None)
    if fileno is None:
        return False
    if raw.closed:
        return True
    readable, _, _ = select.select([fileno()], [], [], 0)
    return bool(readable)


class _Connection(sqlite3.Connection):
    """A SQLite connection whose write transactions also hold an flock on
    ``<database>.write``, which every process of ours on the file takes before SQLite's own
    write lock (see :func:`_begin_immediate`)."""

    _lock_fd = -1
    _locked = False
    _held = threading.local()  # .conn: a weak reference to the one this thread took it by

    def take_write_lock(self) -> None:
        """Wait until no other connection of ours is in a write transaction on this file.

        The kernel wakes a waiter the moment the holder lets go, whereas polling for
        SQLite's lock let the worker, which begins its transactions back to back, take it
        again and again first (webhook p99 beside the worker: README, Performance). There
        is no timeout: the holder is inside one write transaction, and ours make no network
        calls; a process that dies lets go with its descriptors. (Threads of a process queue
        on ``LinkStore``'s lock, with a timeout, before this.) A thread that holds it through
        another connection already goes without: waiting would be waiting on itself, and
        SQLite's lock then fails it after BUSY_TIMEOUT as before."""
        held = getattr(self._held, "conn", None)
        if held is not None and getattr(held(), "_locked", False):
            return
        if self._lock_fd < 0:
            path = self.execute("PRAGMA database_list").fetchone()[2]
            if not path:  # in memory or temporary: no other process can open it
                return
            self._lock_fd = os.open(path + ".write", os.O_RDONLY | os.O_CREAT, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._locked = True
        self._held.conn = weakref.ref(self)

    def release_write_lock(self) -> None:
        """Let the next writer in (the transaction has ended)."""
        if self._locked:
            self._locked = False
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release_write_lock()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_write_lock()

    def close(self) -> None:
        try:
            super().close()  # rolls back a transaction still open
        finally:
            self.release_write_lock()
            self._close_lock_file()

    def __del__(self) -> None:
        # A connection dropped unclosed must not keep the flock for the process's lifetime.
        self._close_lock_file()

    def _close_lock_file(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _begin_immediate(raw: _Connection) -> None:
    """Take the write lock: first our processes' flock (:class:`_Connection`), then
    SQLite's, polling every millisecond or so while a process that is not ours (the sqlite3
    shell, say) holds it. SQLite's own busy handler sleeps 1, 2, 5 … up to 100 ms between
    tries, so a writer that loses twice waits far longer than the other's transaction
    lasted (Approve ack p99 at c=32 with a worker writing beside: 250 → see README)."""
    raw.take_write_lock()
    raw.execute("PRAGMA busy_timeout=0")
    deadline = time.monotonic() + BUSY_TIMEOUT
    delay = 0.0002
    try:
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.002)
    except BaseException:
        raw.release_write_lock()
        raise
    finally:
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT * 1000:.0f}")


class WalCheckpointer:
    """Copies a SQLite database's write-ahead log into the database file from a thread of
    its own, every ``interval`` seconds, rather than in whichever commit fills the log.

    By default the commit that takes the log past 1,000 pages checkpoints before it returns,
    syncing the log and the database file; a webhook's group commit (and every webhook in
    it) then waited on the disk, whose syncs on this project's machines sometimes take
    hundreds of milliseconds under load (PostgreSQL's commits waited up to 185 ms for
    theirs). Connections of an engine given to this class never checkpoint
    themselves (``wal_autocheckpoint=0``); its thread runs PASSIVE checkpoints, which
    neither wait for nor block readers and writers. Create it before the engine's first
    connection.
    """

    def __init__(self, engine: Engine, interval: float = 1.0):
        self.engine = engine
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        event.listen(engine, "connect", _no_autocheckpoint)

    def start(self) -> WalCheckpointer:
        """Checkpoint every ``interval`` seconds from a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread after one last checkpoint."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=BUSY_TIMEOUT)

    def checkpoint(self) -> None:
        """One PASSIVE checkpoint: what the log holds that no reader still needs."""
        raw = self.engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").close()
        finally:
            raw.close()

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(self.interval)
            try:
                self.checkpoint()
            except sqlite3.Error as exc:  # the next one will catch up
                log.warning("WAL checkpoint failed: %s", exc)
            if stopping:
                return


def _no_autocheckpoint(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


def reader(engine: Engine) -> Engine:
    """The same engine and pool, for transactions that only read (SQLite: a deferred BEGIN,
    so reads neither take nor wait for the write lock)."""
    return engine.execution_options(**{READ_ONLY: True})


def make_sessionmaker(engine: Engine) -> sessionmaker:
    """Sessions that keep loaded attributes after commit (we hand records to renderers)."""
    return sessionmaker(engine, expire_on_commit=False)


_guards: list[Any] = []


def claim_sqlite_file(url: str, role: str = "all") -> bool:
    """Hold a lock beside a SQLite file for this process's lifetime, one per role ("all" and
    "web" share one: both answer HTTP; a "worker" takes its own).

    Returns False when another process already holds it: a sign of several replicas on one
    SQLite file, which start-up reports (SQLite is correct for one process per role only).
    """
    from pathlib import Path

    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if not database or database == ":memory:":
        return True
    lock = database + (".worker.lock" if role == "worker" else ".lock")
    if any(g.name == lock for g in _guards):
        return True  # this process holds it already
    handle = Path(lock).open("a")  # noqa: SIM115  (held until exit)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return False
    _guards.append(handle)
    return True
