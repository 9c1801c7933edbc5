"""What a run found: the machine it ran on, the budgets checked, and the table printed."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from bench.modes import Mode
from bench.procs import ROOT


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in (
        "paylink",
        "slack-bolt",
        "slack-sdk",
        "flask",
        "waitress",
        "SQLAlchemy",
        "psycopg",
        "requests",
        "psutil",
    ):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(  # noqa: S603
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(  # noqa: S603
                ["git", "-C", str(ROOT), "status", "--porcelain", "--", "bot"],  # noqa: S607
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        )
    except OSError:
        commit, dirty = "", False
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
        "git_commit": commit,
        "bot_tree_dirty": dirty,
    }


def _fmt(stats: dict[str, Any] | None) -> str:
    if not stats or stats.get("p50_ms") is None:
        return "-"
    s = f"{stats['p50_ms']:.1f}/{stats['p95_ms']:.1f}/{stats['p99_ms']:.1f}"
    return s + (f" ({stats['errors']} err)" if stats.get("errors") else "")


def _get(d: dict[str, Any], *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def budgets(runs: dict[str, Any], mode: Mode) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool | None, detail: str) -> None:
        checks.append({"budget": name, "pass": bool(ok), "detail": detail})

    top = str(max(mode.concurrency))
    bare = runs.get("bare", {})
    small_runs = [n for n in runs if n.endswith("_small")]
    for run in small_runs:
        for kind, label in (("ack_command", "/paylink"), ("ack_approve", "Approve")):
            p99 = _get(runs[run], kind, top, "p99_ms")
            base = _get(bare, kind, top, "p99_ms")
            if p99 is None or base is None:
                check(f"{run}: {label} ack p99 @c={top}", False, "missing figure")
                continue
            ratio = p99 / base if base else float("inf")
            ok = p99 <= 1.5 * base and p99 < 300
            check(
                f"{run}: {label} ack p99 @c={top} <= 1.5x bare and < 300 ms",
                ok,
                f"{p99:.1f} ms vs bare {base:.1f} ms (x{ratio:.2f})",
            )
    for run in [*small_runs, *(n for n in runs if n.endswith("_large"))]:
        modal = _get(runs[run], "ack_command", top, "modal_open")
        if modal is not None:
            check(
                f"{run}: /paylink modal opened within 3 s (trigger_id lifetime) @c={top}, every one",
                modal["errors"] == 0 and (modal["max_ms"] or 1e9) < 3000,
                f"max {modal['max_ms']} ms, p99 {modal['p99_ms']} ms, {modal['errors']} not opened",
            )
    slow = runs.get("sqlite_slow_gateway")
    if slow:
        normal = _get(runs, "sqlite_small", "ack_approve", top, "p99_ms")
        slowp = _get(slow, "ack_approve", top, "p99_ms")
        if normal is not None and slowp is not None:
            check(
                f"slow gateway ({mode.slow_gateway_delay:g} s) does not move Approve ack p99 @c={top}",
                slowp <= normal * 1.25 + 5,
                f"{slowp:.1f} ms vs {normal:.1f} ms normal (tolerance x1.25 + 5 ms)",
            )
    bare_rate = _get(bare, "webhook", "max_sustained_rps")
    for run in small_runs:
        rate = _get(runs[run], "webhook", "max_sustained_rps")
        if rate is not None and bare_rate is not None:
            capped = (
                ""
                if _get(bare, "webhook", "ceiling_reached")
                else " (bare never hit its ceiling: >=)"
            )
            check(
                f"{run}: webhook throughput >= 0.5x bare (HMAC + one committed row)",
                # The rungs are √2 apart, rounded to whole requests: two rungs down is half
                # (1131 of 2263, 800 of 1600), give or take that rounding.
                2 * rate >= bare_rate - 1,
                f"{rate} vs {bare_rate} req/s{capped}",
            )
        card = _get(runs[run], "webhook", "card_update", "p50_ms")
        end_to_end = _get(runs[run], "webhook", "end_to_end_rps")
        check(
            f"{run}: webhook -> card update p50 < 250 ms",
            card is not None and card < 250,
            f"{card} ms (the steps whose cards kept pace pooled: up to {end_to_end}/s)",
        )
    for run in small_runs:
        large = run.replace("_small", "_large")
        if large not in runs:
            continue
        figures: list[tuple[str, float | None, float | None, bool]] = []
        for kind in ("ack_command", "ack_approve"):
            for c in mode.concurrency:
                for q in ("p50_ms", "p99_ms"):
                    figures.append(
                        (
                            f"{kind} c={c} {q}",
                            _get(runs[run], kind, str(c), q),
                            _get(runs[large], kind, str(c), q),
                            False,
                        )
                    )
        for path, higher_better in (
            (("home_render", "p50_ms"), False),
            (("webhook", "card_update", "p50_ms"), False),
            (("webhook", "max_sustained_rps"), True),
            (("webhook", "end_to_end_rps"), True),
        ):
            figures.append(
                (" ".join(path), _get(runs[run], *path), _get(runs[large], *path), higher_better)
            )
        for label, a, b, higher_better in figures:
            if a is None or b is None:
                check(f"scale {large} vs {run}: {label}", False, "missing figure")
                continue
            # latencies: 20% or 2 ms absolute (timer noise on tiny figures)
            ok = b >= 0.8 * a if higher_better else (b <= 1.2 * a or b - a <= 2.0)
            check(
                f"{run.split('_')[0]} scale {runs[large]['filler_links']} vs "
                f"{runs[run]['filler_links']} links: {label} within 20%",
                ok,
                f"{b} vs {a}",
            )
    for run in runs:
        if run.startswith(("sqlite", "postgres")) and "rss_idle_mb" in runs[run]:
            rss = runs[run]["rss_idle_mb"]
            check(f"{run}: idle RSS < 150 MB (serve)", rss < 150, f"{rss} MB")
            rss = runs[run].get("worker_rss_idle_mb")
            check(f"{run}: idle RSS < 150 MB (worker)", rss is not None and rss < 150, f"{rss} MB")
    return checks


def table(runs: dict[str, Any], mode: Mode) -> str:
    cols = list(runs)
    rows: list[tuple[str, list[str]]] = []
    for kind, label in (("ack_command", "/paylink ack"), ("ack_approve", "Approve ack")):
        for c in mode.concurrency:
            rows.append(
                (f"{label} c={c} p50/p95/p99 ms", [_fmt(_get(runs[r], kind, str(c))) for r in cols])
            )
        if kind == "ack_command":
            for c in mode.concurrency:
                rows.append(
                    (
                        f"/paylink -> modal open c={c} p50/p95/p99 ms",
                        [_fmt(_get(runs[r], kind, str(c), "modal_open")) for r in cols],
                    )
                )
    rows.append(
        (
            "webhook max sustained req/s",
            [
                str(
                    _get(runs[r], "webhook", "max_sustained_rps")
                    if _get(runs[r], "webhook")
                    else "-"
                )
                for r in cols
            ],
        )
    )
    rows.append(
        (
            "webhook end-to-end req/s (cards keep pace)",
            [str(_get(runs[r], "webhook", "end_to_end_rps") or "-") for r in cols],
        )
    )
    rows.append(
        ("webhook->card update ms", [_fmt(_get(runs[r], "webhook", "card_update")) for r in cols])
    )
    rows.append(("App Home render ms", [_fmt(_get(runs[r], "home_render")) for r in cols]))
    rows.append(("pre-existing links", [str(runs[r].get("filler_links", "-")) for r in cols]))
    rows.append(
        ("links in store (+ test links)", [str(runs[r].get("links_in_store", "-")) for r in cols])
    )
    for label, key in (
        ("RSS idle MB (serve)", "rss_idle_mb"),
        ("RSS idle MB (worker)", "worker_rss_idle_mb"),
        ("RSS peak under webhooks MB (serve)", "rss_under_load_peak_mb"),
        ("RSS peak under webhooks MB (worker)", "worker_rss_under_load_peak_mb"),
    ):
        rows.append((label, [str(runs[r].get(key, "-")) for r in cols]))
    width0 = max(len(r[0]) for r in rows)
    widths = [max(len(c), *(len(r[1][i]) for r in rows)) for i, c in enumerate(cols)]
    lines = ["  ".join([" " * width0, *(c.rjust(w) for c, w in zip(cols, widths, strict=True))])]
    for label, vals in rows:
        lines.append(
            "  ".join(
                [label.ljust(width0), *(v.rjust(w) for v, w in zip(vals, widths, strict=True))]
            )
        )
    lines.append("")
    lines.append(
        "webhook steps (rate: p50/p95/p99 ms, card p50 ms; cards lag: card p99 > 500 ms; "
        "stalled: p99 > 500 ms, p50 <= 50 ms):"
    )
    for r in cols:
        steps = _get(runs[r], "webhook", "steps") or []
        parts = [
            f"{s['rate']}/s: {_fmt(s)}"
            + (f" card {s['card_update']['p50_ms']}" if "card_update" in s else "")
            + ("" if s.get("cards_keep_pace", True) else " (cards lag)")
            + ("" if s["sustained"] else " FAIL")
            + (" (stalled: run again)" if s.get("stalled") else "")
            for s in steps
        ]
        if parts:
            lines.append(f"  {r}: " + "; ".join(parts))
    return "\n".join(lines)
