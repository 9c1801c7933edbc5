"""SQLite specifics: the engine's set-up, the write lock our processes share, the WAL
checkpointer thread, the lock file that tells one process per role it is alone, and file
modes that keep the data its owner's alone."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import stat
import threading
import time
import weakref
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

READ_ONLY = "paylink_read_only"  # execution option of transactions that only read
BUSY_TIMEOUT = 30.0  # seconds a SQLite statement waits for another process's lock
# The database holds customer names, e-mails, phones and addresses: every file beside it
# (its log and shared memory, our lock files) is readable and writable by its owner only.
PRIVATE = 0o600
# What SQLite and this module put beside the database file.
_COMPANIONS = ("-wal", "-shm", "-journal", ".write", ".lock", ".worker.lock")


def sqlite_engine(url: str, **kwargs: Any) -> Engine:
    """An engine on a SQLite file: WAL, a busy timeout, foreign keys, write transactions
    that take the write lock up front (:func:`_begin_immediate`), and files only their
    owner can read (:func:`keep_private`)."""
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        keep_private(database)
    engine = create_engine(
        url,
        connect_args={"timeout": BUSY_TIMEOUT, "check_same_thread": False, "factory": _Connection},
        **kwargs,
    )
    event.listen(engine, "connect", _pragmas)
    event.listen(engine, "begin", _begin)
    return engine


def keep_private(database: str) -> None:
    """Create the database file with mode 0600 unless it exists (SQLite gives its WAL and
    shared-memory files the database file's mode), and take back from group and others
    any access they have to it or the files beside it, with a warning.

    A wider file is tightened, not only reported: a warning leaves the data open until
    someone reads the log, and the bot's processes run as the file's owner. The umask stays
    as it is: it is the whole process's, and its other files are not this module's business.
    """
    # No directory, or none we may write in: SQLite says so when it connects.
    with contextlib.suppress(OSError):
        os.close(os.open(database, os.O_RDONLY | os.O_CREAT, PRIVATE))
    for path in (database, *(database + suffix for suffix in _COMPANIONS)):
        _tighten(path)


def _tighten(path: str) -> None:
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):  # SQLite says so when it connects
        return
    if not mode & 0o077:
        return
    try:
        os.chmod(path, mode & 0o700)
    except OSError as exc:
        log.warning(
            "%s is open to other users (mode %s) and could not be tightened: %s",
            path,
            oct(mode),
            exc.strerror,
        )
        return
    log.warning("%s was open to other users (mode %s): now %s", path, oct(mode), oct(mode & 0o700))


def _private(path: str, flags: int) -> int:
    """``open``'s opener for files created readable by their owner only."""
    return os.open(path, flags, PRIVATE)


def _pragmas(dbapi_conn: Any, _record: Any) -> None:
    # BEGIN is issued by _begin, so that writers can take the write lock up front
    # (IMMEDIATE) instead of failing with "database is locked" when a read turns into a write.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT * 1000:.0f}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _begin(conn: Any) -> None:
    # Readers (see bot.db.reader) begin deferred: under WAL they never wait for a writer.
    if conn.get_execution_options().get(READ_ONLY, False):
        conn.exec_driver_sql("BEGIN")
    else:
        _begin_immediate(conn.connection.dbapi_connection)


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
        SQLite's lock let a process that begins its transactions back to back take it again
        and again first (see docs/decisions/0003-sqlite-write-lock.md). There is no
        timeout: the holder is inside one write transaction, and ours make no network calls;
        a process that dies lets go with its descriptors. (Threads of a process queue on
        ``LinkStore``'s lock, with a timeout, before this.) A thread that holds it through
        another connection already goes without: waiting would be waiting on itself, and
        SQLite's lock then fails it after BUSY_TIMEOUT."""
        held = getattr(self._held, "conn", None)
        if held is not None and getattr(held(), "_locked", False):
            return
        if self._lock_fd < 0:
            path = self.execute("PRAGMA database_list").fetchone()[2]
            if not path:  # in memory or temporary: no other process can open it
                return
            self._lock_fd = _private(path + ".write", os.O_RDONLY | os.O_CREAT)
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
    shell, say) holds it. SQLite's own busy handler sleeps up to 100 ms between tries, so a
    writer that loses twice would wait far longer than the other's transaction lasted (see
    docs/decisions/0003-sqlite-write-lock.md)."""
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
    syncing the log and the database file, and every caller waiting on that commit waits
    on the disk too (see docs/decisions/0008-wal-checkpoint-thread.md). Connections of an
    engine given to this class never checkpoint themselves (``wal_autocheckpoint=0``); its
    thread runs PASSIVE checkpoints, which neither wait for nor block readers and writers.
    Create it before the engine's first connection.
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


_guards: list[Any] = []


def claim_sqlite_file(url: str, role: str = "all") -> bool:
    """Hold a lock beside a SQLite file for this process's lifetime, one per role ("all" and
    "web" share one: both answer HTTP; a "worker" takes its own).

    Returns False when another process already holds it: a sign of several replicas on one
    SQLite file, which start-up reports (SQLite is correct for one process per role only).
    """
    database = make_url(url).database
    if not database or database == ":memory:":
        return True
    lock = database + (".worker.lock" if role == "worker" else ".lock")
    if any(g.name == lock for g in _guards):
        return True  # this process holds it already
    handle = open(lock, "a", opener=_private)  # noqa: SIM115  (held until exit)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return False
    _guards.append(handle)
    return True
