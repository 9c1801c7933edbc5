"""SQLite files hold customer names, e-mails, phones and addresses: only their owner may
read them, whatever the process's umask, and files left wider by an earlier version are
tightened at start-up (with a warning)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.db import make_engine
from bot.local.stack import LocalStack
from bot.runtime import Runtime
from tests.conftest import Flow


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def modes(directory: Path) -> dict[str, str]:
    """Each file's permission bits, by name."""
    return {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in sorted(directory.iterdir())}


def test_every_sqlite_file_is_the_owners_alone_after_a_real_write(
    tmp_path: Path, make_stack: Callable[..., LocalStack]
) -> None:
    # A umask that would leave everything readable by everyone: nothing may depend on it.
    with umask(0):
        stack = make_stack(workdir=tmp_path)
        flow = Flow(stack)
        card = flow.request()
        flow.approve(card.ts)
        flow.idle()
        worker = Runtime(stack.settings, role="worker")  # takes the worker's lock file
        worker.start()
        worker.stop()
        files = modes(tmp_path)
    expected = {"paylink.db", "paylink.db-wal", "paylink.db-shm", "paylink.db.write"}
    expected |= {"paylink.db.lock", "paylink.db.worker.lock"}
    assert expected <= files.keys(), files
    assert files == dict.fromkeys(files, "0o600")


def test_files_left_readable_by_others_are_tightened_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "paylink.db"
    url = f"sqlite:///{database}"
    with umask(0o022):
        engine = make_engine(url)
        with engine.begin() as conn:  # a WAL, a shared-memory and a write-lock file
            conn.exec_driver_sql("CREATE TABLE t (x)")
        engine.dispose()
    for path in tmp_path.iterdir():
        path.chmod(0o644)
    caplog.set_level(logging.WARNING)
    make_engine(url).dispose()
    assert modes(tmp_path) == dict.fromkeys(modes(tmp_path), "0o600")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("paylink.db " in m and "0o644" in m for m in warned), warned
