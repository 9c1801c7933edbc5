"""The benchmark machinery runs end to end in its tiny mode (no timing assertions here)."""

import json
import sys
from pathlib import Path

import pytest

from tests.procs import Procs

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_smoke_writes_results(tmp_path: Path, procs: Procs) -> None:
    out = tmp_path / "latest.json"
    proc = procs.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)], cwd=ROOT, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(out) in proc.stdout
    report = json.loads(out.read_text())
    assert report["mode"] == "smoke"
    assert {"cpu_model", "cores", "ram_gb", "python", "packages", "git_commit"} <= set(
        report["machine"]
    )
    runs = report["runs"]
    assert {"bare", "sqlite_small", "sqlite_large", "sqlite_slow_gateway"} <= set(runs)
    for name in ("bare", "sqlite_small", "sqlite_large"):
        run = runs[name]
        for kind in ("ack_command", "ack_approve"):
            assert set(run[kind]) == {"1", "2"}
            assert run[kind]["1"]["n"] + run[kind]["1"]["errors"] == 20
        assert run["webhook"]["steps"]
        assert "max_sustained_rps" in run["webhook"]
        assert run["rss_idle_mb"] > 0
    for name in ("sqlite_small", "sqlite_large"):
        # the cards were updated, so the worker beside `paylink serve` applied the queued
        # payments and delivered the cards
        assert runs[name]["webhook"]["steps"][0]["card_update"]["n"] > 0
        assert "end_to_end_rps" in runs[name]["webhook"]
        assert runs[name]["worker_rss_idle_mb"] > 0
        assert "home_render" in runs[name]
    assert runs["sqlite_small"]["filler_links"] == 100
    assert "ack_approve" in runs["sqlite_slow_gateway"]
    assert report["budgets"]
    assert all({"budget", "pass", "detail"} <= set(b) for b in report["budgets"])


def _throughput_verdict(ours: int, bare: int) -> bool:
    from bench.modes import MODES
    from bench.report import budgets

    runs = {
        "bare": {"webhook": {"max_sustained_rps": bare, "ceiling_reached": True}},
        "sqlite_small": {"webhook": {"max_sustained_rps": ours}},
    }
    (verdict,) = [b["pass"] for b in budgets(runs, MODES["full"]) if "throughput" in b["budget"]]
    return verdict


def test_webhook_throughput_budget_reads_the_ladder():
    # Two rungs of the √2 ladder below the bare endpoint's is half its rate, although
    # rounding to whole requests puts 1131 a hair under half of 2263.
    assert _throughput_verdict(1131, 2263)
    assert _throughput_verdict(800, 1600)
    assert not _throughput_verdict(800, 2263)
    assert not _throughput_verdict(1131, 3200)


def test_a_step_that_only_stalled_is_run_again_and_one_that_fell_behind_is_not():
    from bench.measure import _stalled

    def step(p50: float, p99: float, errors: int = 0) -> dict[str, object]:
        return {"p50_ms": p50, "p99_ms": p99, "errors": errors, "sustained": p99 <= 500}

    # Figures of earlier full runs: one disk sync of 0.6 s at 25/s, and a collapse.
    assert _stalled(step(4.1, 605.5))
    assert _stalled(step(7.3, 516.8))
    assert not _stalled(step(3222.4, 5390.0))
    assert not _stalled(step(4.1, 12.0))  # sustained: nothing to run again
    assert not _stalled(step(4.1, 605.5, errors=3))  # refused or dropped webhooks are failures


@pytest.mark.slow
def test_the_finding_benchmark_runs_every_question(procs: Procs) -> None:
    """``python -m bench.finding`` on a small store, in this process and over HTTP: it calls
    the Finder as the listeners do, so a change of the Finder's signature breaks it here
    rather than at the next run."""
    for over_http in ([], ["--http"]):
        proc = procs.run(
            [sys.executable, "-m", "bench.finding", "--links", "300", "--runs", "1", *over_http],
            cwd=ROOT,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        for question in ("/paylink list", "/paylink find", "/paylink status REF"):
            assert question in proc.stdout
        assert ("App Home" in proc.stdout) is not bool(over_http)
