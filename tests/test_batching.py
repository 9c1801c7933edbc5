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
