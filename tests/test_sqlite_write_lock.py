"""SQLite writers of ours take turns through an flock beside the database file
(``<db>.write``), so that a writer waiting for another process is woken when that one's
transaction ends instead of polling for SQLite's lock."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bot import sqlite
from bot.db import make_engine, reader
from tests.procs import Procs

# Another process of ours: holds a write transaction until told to commit.
HOLDER = textwrap.dedent(
    """
    import sys
    from bot.db import make_engine
    engine = make_engine(sys.argv[1])
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES ('from the other process')")
        print("holding", flush=True)
        sys.stdin.readline()
    print("committed", flush=True)
    """
)


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "paylink.db"


@pytest.fixture
def engine(database: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x TEXT)")
    yield engine
    engine.dispose()


def lock_is_free(database: Path) -> bool:
    """Whether the write lock could be taken right now (as another process would)."""
    fd = os.open(f"{database}.write", os.O_RDONLY | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also lets go of it, if taken
    return True


def test_another_process_writing_holds_the_lock_and_the_next_writer_follows_it(
    engine: Engine, database: Path, procs: Procs
) -> None:
    holder = procs.start([sys.executable, "-c", HOLDER, f"sqlite:///{database}"], stdin=True)
    holder.wait_for_output("holding\n")
    assert not lock_is_free(database)
    holder.send("go\n")
    with engine.begin() as conn:  # waits for the other's commit, then writes after it
        rows = conn.exec_driver_sql("SELECT x FROM t").scalars().all()
        conn.exec_driver_sql("INSERT INTO t VALUES ('from here')")
    assert rows == ["from the other process"]
    holder.wait_for_output("committed\n")
    assert holder.wait() == 0
    assert lock_is_free(database)


@pytest.mark.parametrize("end", ["commit", "rollback", "close"])
def test_a_write_transaction_holds_the_lock_until_it_ends(
    engine: Engine, database: Path, end: str
) -> None:
    conn = engine.connect()
    transaction = conn.begin()
    conn.exec_driver_sql("INSERT INTO t VALUES ('x')")
    assert not lock_is_free(database)
    if end == "close":
        conn.invalidate()  # the DBAPI connection is closed with its transaction open
    else:
        getattr(transaction, end)()
    assert lock_is_free(database)
    conn.close()
    with engine.connect() as check:
        assert check.exec_driver_sql("SELECT count(*) FROM t").scalar() == (end == "commit")


def test_readers_do_not_take_it(engine: Engine, database: Path) -> None:
    with reader(engine).begin() as conn:
        conn.exec_driver_sql("SELECT count(*) FROM t").scalar()
        assert lock_is_free(database)


def test_a_thread_writing_through_a_second_connection_fails_rather_than_wait_on_itself(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taking the lock again would wait forever; SQLite's own lock refuses it instead."""
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT", 0.2)
    with engine.begin() as first:
        first.exec_driver_sql("INSERT INTO t VALUES ('first')")
        with pytest.raises(sqlite3.OperationalError, match="locked"), engine.begin() as second:
            second.exec_driver_sql("INSERT INTO t VALUES ('second')")
    with engine.connect() as check:
        assert check.exec_driver_sql("SELECT x FROM t").scalars().all() == ["first"]
