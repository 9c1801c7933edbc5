"""Group commit: concurrent callers share transactions, and one bad item fails alone."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.links.batching import GroupCommit


def test_concurrent_submits_share_batches_and_each_gets_its_own_result() -> None:
    batches: list[int] = []
    release = threading.Event()

    def write(items: Sequence[int]) -> list[int]:
        release.wait(5)  # the first batch holds the writer while the others pile up
        batches.append(len(items))
        return [item * 10 for item in items]

    commit = GroupCommit(write, name="test", timeout=10)
    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(commit.submit, i) for i in range(20)]
        release.set()
        assert [f.result() for f in futures] == [i * 10 for i in range(20)]
    commit.close()
    assert sum(batches) == 20
    assert len(batches) < 20  # items that waited together were written together


def test_a_failing_batch_is_written_item_by_item_so_only_the_bad_item_fails() -> None:
    calls: list[list[int]] = []
    release = threading.Event()

    def write(items: Sequence[int]) -> list[str]:
        release.wait(5)
        calls.append(list(items))
        if 13 in items:
            raise ValueError("bad item")
        return ["ok"] * len(items)

    commit = GroupCommit(write, name="test", timeout=10)
    with ThreadPoolExecutor(max_workers=5) as pool:
        futures = {i: pool.submit(commit.submit, i) for i in (11, 12, 13, 14, 15)}
        release.set()
        with pytest.raises(ValueError, match="bad item"):
            futures[13].result()
        assert all(futures[i].result() == "ok" for i in (11, 12, 14, 15))
    commit.close()
    assert [13] in calls  # retried alone


def test_closed_group_commit_refuses_new_items() -> None:
    commit = GroupCommit(lambda items: list(items), name="test", timeout=5)
    assert commit.submit(1) == 1
    commit.close()
    with pytest.raises(RuntimeError):
        commit.submit(2)


def test_a_caller_alone_writes_in_its_own_thread() -> None:
    """With nobody else writing there is no hand-over: the caller's own thread writes."""
    writers: list[str] = []

    def write(items: Sequence[int]) -> list[int]:
        writers.append(threading.current_thread().name)
        return list(items)

    commit = GroupCommit(write, name="test", timeout=5)
    assert [commit.submit(i) for i in range(3)] == [0, 1, 2]
    assert writers == [threading.current_thread().name] * 3
    commit.close()


def test_a_caller_whose_batch_never_starts_times_out_and_is_not_written() -> None:
    """While one batch is stuck, a later caller gives up after its timeout; its item is
    then dropped, not written later behind its back, and the next caller is served."""
    written: list[int] = []
    started, release = threading.Event(), threading.Event()

    def write(items: Sequence[int]) -> list[int]:
        if 1 in items:
            started.set()
            release.wait(5)
        written.extend(items)
        return list(items)

    commit = GroupCommit(write, name="test", timeout=0.2)
    with ThreadPoolExecutor(max_workers=1) as pool:
        stuck = pool.submit(commit.submit, 1)
        assert started.wait(5)
        with pytest.raises(TimeoutError):
            commit.submit(2)
        release.set()
        assert stuck.result() == 1
    assert commit.submit(3) == 3
    assert written == [1, 3]
    commit.close()
