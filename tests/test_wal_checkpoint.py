"""SQLite's write-ahead log is checkpointed by a thread of its own, never inside a commit."""

from __future__ import annotations

from pathlib import Path

from bot.db import make_engine
from bot.sqlite import WalCheckpointer
from tests.waiting import wait_until

PAGES = 1100  # past the 1,000 pages at which a commit would checkpoint by default


def test_commits_leave_the_log_to_the_checkpointer_thread(tmp_path: Path) -> None:
    """With a checkpointer, 1,100 commits of a page each stay in the log (by default one of
    them would have copied it into the database file); once its thread runs, they reach the
    database file, and writing goes on meanwhile."""
    database = tmp_path / "wal.db"
    engine = make_engine(f"sqlite:///{database}")
    checkpointer = WalCheckpointer(engine, interval=0.05)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x BLOB)")
    for _ in range(PAGES):
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (zeroblob(4000))")
    page = 4096
    assert database.stat().st_size < 100 * page
    assert Path(f"{database}-wal").stat().st_size > PAGES * page
    checkpointer.start()

    def checkpointed() -> bool:
        with engine.begin() as conn:  # writing goes on meanwhile
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        return database.stat().st_size >= PAGES * page

    try:
        wait_until(checkpointed, 10)
        assert database.stat().st_size >= PAGES * page
    finally:
        checkpointer.stop()
        engine.dispose()
