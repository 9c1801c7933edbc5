"""The measurements, each interleaved over the targets.

Rounds (acks, App Home) and steps (webhooks) take the targets in turn, starting one further
each time. The machine's speed drifts during a run (here the same work cost a third more CPU
from one minute to the next), and measured one after the other the targets would be compared
across that drift; interleaved, it shifts every target's figures alike.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import requests

from bench import seed
from bench.load import Outcome, closed_loop, http_request, open_loop, summary
from bench.procs import RssSampler, StandIn, Target, log
from bot.local.simulator import (
    FORM,
    TEAM,
    SlackSimulator,
    command_body,
    interactive_body,
    new_trigger_id,
)
from bot.slack.blocks import ActionId
from bot.xpay.sandbox import sandbox_webhook_payload
from bot.xpay.signing import js_stringify, sign

P99_LIMIT_MS = 500.0  # a webhook step whose p99 passes this is not sustained
# A target that cannot keep up with a rate falls further behind every second, and its median
# goes with it (0.4-7 s in every collapse seen); a stall (one slow disk sync) delays a few
# hundred of a step's webhooks and leaves the median alone. A failed step whose median
# stayed under this is run once more before the ladder ends there.
STALL_P50_MS = 50.0
BARE_WEBHOOKS = 500  # distinct bodies the bare endpoint is sent, over and over


def rotations(targets: list[Target], rounds: int) -> Iterator[tuple[int, Target]]:
    """(round, target) for every round, each round starting one target further."""
    for r in range(rounds):
        k = r % len(targets)
        for target in targets[k:] + targets[:k]:
            yield r, target


def _click_payload(link_id: int) -> dict[str, Any]:
    ts = f"1700000000.{link_id % 1_000_000:06d}"
    return {
        "type": "block_actions",
        "team": TEAM,
        "user": {"id": seed.APPROVER, "team_id": TEAM["id"]},
        "api_app_id": "A0PAYLINK",
        "trigger_id": new_trigger_id(),
        "container": {"type": "message", "message_ts": ts, "channel_id": seed.CHANNEL},
        "channel": {"id": seed.CHANNEL},
        "message": {"ts": ts, "blocks": []},
        "actions": [
            {
                "type": "button",
                "action_id": ActionId.APPROVE,
                "block_id": "paylink_actions",
                "value": str(link_id),
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def _slack_requests(target: Target, bodies: list[str]) -> list[bytes]:
    """Signed now, as Slack would send them (the signature is good for five minutes)."""
    sim = SlackSimulator(target.base_url, target.sec.signing)
    return [
        http_request(
            target.base_url, "/slack/events", body.encode(), sim.signed_headers(body, FORM)
        )
        for body in bodies
    ]


def _approve_round(target: Target, n: int, concurrency: int) -> Outcome:
    """``n`` Approve clicks, each on a distinct request; then, unless behind the slow gateway
    (busy on purpose), wait until their links are created and their cards updated."""
    ids, target.approvals = target.approvals[:n], target.approvals[n:]
    if len(ids) < n:
        raise RuntimeError(f"{target.name}: not enough requests awaiting approval")
    bodies = [interactive_body(_click_payload(link_id)) for link_id in ids]
    out = closed_loop(target.base_url, _slack_requests(target, bodies), concurrency)
    if not target.slow_gateway:
        target.wait_quiet(120)
    return out


def _command_round(
    target: Target, n: int, concurrency: int, standin: StandIn, modals: Outcome
) -> Outcome:
    """``n`` `/paylink` commands; then wait until each one's modal is opened (views.open with
    its trigger_id reaching the stand-in, the modals' figures added to ``modals``), so that
    no modal of this round is still being opened during the next target's."""
    triggers = [new_trigger_id() for _ in range(n)]
    bodies = [command_body(seed.REP, "15000 PKR", "C0SALES", trigger) for trigger in triggers]
    standin.new_calls("views.open")  # from here on: this round's modals
    out = closed_loop(target.base_url, _slack_requests(target, bodies), concurrency)
    sent = {triggers[i]: at for i, at in out.sent_at.items()}
    opened: dict[str, float] = {}
    deadline = time.monotonic() + 60
    while len(opened) < len(sent) and time.monotonic() < deadline:
        for _ch, _ts, _u, at, ok, trigger in standin.new_calls("views.open"):
            if ok and trigger in sent:
                opened.setdefault(trigger, at)
        time.sleep(0.02)
    modals.latencies += [opened[t] - sent[t] for t in opened]
    modals.errors += len(sent) - len(opened)
    return out


def acks(
    targets: list[Target],
    kind: str,
    concurrency: tuple[int, ...],
    n: int,
    rounds: int,
    standin: StandIn,
) -> None:
    """``kind`` (ack_command: `/paylink`; ack_approve: Approve clicks) at each concurrency,
    ``n`` requests per target in ``rounds`` interleaved rounds; the figures pool the rounds,
    and each round's p99 is kept beside them. For `/paylink` the time from command to modal
    (views.open) is kept too: Slack's trigger_id dies 3 s after the command."""
    per_round = math.ceil(n / rounds)
    for c in concurrency:
        pooled = {t.name: Outcome() for t in targets}
        modals = {t.name: Outcome() for t in targets}
        p99s: dict[str, list[float | None]] = {t.name: [] for t in targets}
        for r, target in rotations(targets, rounds):
            count = min(per_round, n - r * per_round)
            if count <= 0:
                continue
            if kind == "ack_command":
                out = _command_round(target, count, c, standin, modals[target.name])
            else:
                out = _approve_round(target, count, c)
            pooled[target.name].merge(out)
            p99s[target.name].append(summary(out.latencies, out.errors)["p99_ms"])
        for target in targets:
            out = pooled[target.name]
            figures = summary(out.latencies, out.errors) | {"round_p99_ms": p99s[target.name]}
            if kind == "ack_command":
                figures["modal_open"] = summary(
                    modals[target.name].latencies, modals[target.name].errors
                )
            target.result.setdefault(kind, {})[str(c)] = figures
        log(
            f"{kind} c={c}: "
            + ", ".join(f"{t.name} p99 {t.result[kind][str(c)]['p99_ms']} ms" for t in targets)
        )


def home_render(targets: list[Target], standin: StandIn, samples: int, rounds: int) -> None:
    """app_home_opened sent → views.publish for that user recorded by the stand-in."""
    times: dict[str, list[float]] = {t.name: [] for t in targets}
    missing = dict.fromkeys(times, 0)
    per_round = math.ceil(samples / rounds)
    for _r, target in rotations(targets, rounds):
        standin.new_calls("views.publish")
        with requests.Session() as session:
            sim = target.simulator(session)
            for _ in range(per_round):
                sent = time.time()
                sim.home_opened(seed.HOME_USER).raise_for_status()
                got = _published(standin, sent)
                if got is None:
                    missing[target.name] += 1
                else:
                    times[target.name].append(got - sent)
    for target in targets:
        target.result["home_render"] = summary(times[target.name], missing[target.name])


def _published(standin: StandIn, sent: float) -> float | None:
    """When the stand-in recorded the home user's views.publish sent after ``sent``."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for _ch, _ts, user, at, _ok, _trigger in standin.new_calls("views.publish"):
            if user == seed.HOME_USER and at >= sent:
                return at
        time.sleep(0.002)
    return None


def bare_webhooks(secret: str) -> list[tuple[bytes, str]]:
    """Signed payment webhooks for the bare endpoint (it keeps no state: they can repeat)."""
    reqs = []
    for i in range(BARE_WEBHOOKS):
        intent = SimpleNamespace(
            id=f"xpay_pi_bare_{i}",
            amount=1500.5,
            currency="PKR",
            customer={"name": "Ayesha Khan", "email": "a@example.com"},
            body={"shipping": seed.SHIPPING},
        )
        body = js_stringify(sandbox_webhook_payload(intent, "pay", "card"))  # type: ignore[arg-type]
        reqs.append((body, sign(secret, body)))
    return reqs


def _webhook_request(target: Target, body: bytes, signature: str) -> bytes:
    headers = {"Content-Type": "application/json", "x-signature": signature}
    return http_request(target.base_url, "/xpay/webhook", body, headers)


class Ladder:
    """One target's webhook steps at rising rates, and what they add up to.

    A step is sustained while its p99 stays within 500 ms with no errors; the ladder stops at
    the first that is not. A step that only stalled (STALL_P50_MS) is run once more, and the
    second run decides. With the stand-in, each step also times webhook → card update: the
    cards keep pace while that p99 stays within the same 500 ms. Past that rate webhooks are
    still answered (they are queued) but cards lag. ``end_to_end_rps`` is the highest rate up
    to which every step's cards kept pace, and the card figure pools those steps.
    """

    def __init__(self, target: Target):
        self.target = target
        self.sampler = RssSampler(target.processes())
        self.bare_reqs = (
            [_webhook_request(target, b, s) for b, s in bare_webhooks(target.sec.webhook)]
            if target.is_bare
            else []
        )
        self.steps: list[dict[str, Any]] = []
        self.best = self.end_to_end = 0
        self.cards: list[float] = []
        self.running = True

    def step(self, rate: int, seconds: float, standin: StandIn) -> None:
        """Run ``rate`` for ``seconds`` (twice if the first run only stalled, see
        STALL_P50_MS); the ladder stops unless the last run was sustained."""
        step, cards = self._run(rate, seconds, standin)
        if _stalled(step):
            log(f"{self.target.name}: {rate}/s stalled (p50 {step['p50_ms']} ms): once more")
            step["stalled"] = True
            self.steps.append(step)
            step, cards = self._run(rate, seconds, standin)
        self.steps.append(step)
        if step["sustained"]:
            if step.get("cards_keep_pace") and self.end_to_end == self.best:
                self.cards += cards
                self.end_to_end = rate
            self.best = rate
        else:
            self.running = False

    def _run(
        self, rate: int, seconds: float, standin: StandIn
    ) -> tuple[dict[str, Any], list[float]]:
        """One run of a step: its figures, and each webhook's time to its card update."""
        target, n = self.target, int(rate * seconds)
        if target.is_bare:
            batch = None
            reqs = [self.bare_reqs[i % len(self.bare_reqs)] for i in range(n)]
        else:
            seeded = seed.webhook_links(
                target.db_url,
                target.hooks_seeded,
                n,
                secret=target.sec.webhook,
                ts_second=target.ts_second,
            )
            target.hooks_seeded += n
            standin.add_cards(seeded.webhook_cards)
            batch = seeded.webhooks
            reqs = [_webhook_request(target, body, sig) for body, sig, _ch, _ts in batch]
            standin.new_calls("chat.update")  # from here on: this step's card updates
        self.sampler.on()
        out = open_loop(target.base_url, reqs, rate, max_connections=64)
        step: dict[str, Any] = {"rate": rate, **summary(out.latencies, out.errors)}
        step["achieved_rps"] = round(len(out.latencies) / out.elapsed, 1) if out.elapsed else 0
        step["sustained"] = out.errors == 0 and (step["p99_ms"] or 1e9) <= P99_LIMIT_MS
        raw: list[float] = []
        if batch is not None:
            raw = _card_updates(target, standin, batch, out, seconds)
            step["card_update"] = summary(raw, len(out.sent_at) - len(raw))
            cards = step["card_update"]
            step["cards_keep_pace"] = (
                cards["errors"] == 0 and (cards["p99_ms"] or 1e9) <= P99_LIMIT_MS
            )
        target.wait_quiet(600)
        self.sampler.off()
        log(
            f"{target.name}: webhooks {rate}/s p50 {step['p50_ms']} p99 {step['p99_ms']} ms "
            f"errors {out.errors}"
            + (f" card p50 {step['card_update']['p50_ms']} ms" if batch is not None else "")
        )
        return step, raw

    def result(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "steps": self.steps,
            "max_sustained_rps": self.best,
            "ceiling_reached": bool(self.steps) and not self.steps[-1]["sustained"],
        }
        if not self.target.is_bare:
            result["card_update"] = summary(self.cards)
            result["end_to_end_rps"] = self.end_to_end
        return result


def _stalled(step: dict[str, Any]) -> bool:
    """A step that failed on its p99 alone, with its median still low (see STALL_P50_MS)."""
    p50 = step["p50_ms"]
    return not step["sustained"] and step["errors"] == 0 and p50 is not None and p50 <= STALL_P50_MS


def _card_updates(
    target: Target, standin: StandIn, batch: list[Any], out: Outcome, seconds: float
) -> list[float]:
    """Webhook sent → first chat.update of that card recorded by the stand-in (Call.at), for
    every card updated before the target's outbox was drained (or 10 minutes passed)."""
    sent = {
        (ch, ts): out.sent_at[i] for i, (_b, _s, ch, ts) in enumerate(batch) if i in out.sent_at
    }
    first: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + max(60.0, 20 * seconds)
    drained = False
    while time.monotonic() < deadline:
        for ch, ts, _u, at, ok, _trigger in standin.new_calls("chat.update"):
            key = (ch, ts)
            if ok and key in sent and key not in first:
                first[key] = at
        if len(first) >= len(sent) or drained:
            break
        # Once the outbox is empty every card update has reached the stand-in: one more look.
        drained = target.quiet()
        time.sleep(0.1)
    return [first[k] - sent[k] for k in first]


def webhook_ladders(
    targets: list[Target], rates: tuple[int, ...], seconds: float, standin: StandIn
) -> None:
    """Every target's ladder, step by step: each rate is run on each target still sustaining
    webhooks before the next rate, in turns."""
    ladders = [Ladder(target) for target in targets]
    for i, rate in enumerate(rates):
        running = [ladder for ladder in ladders if ladder.running]
        if not running:
            break
        k = i % len(running)
        for ladder in running[k:] + running[:k]:
            ladder.step(rate, seconds, standin)
    for ladder in ladders:
        ladder.sampler.close()
        ladder.target.result["webhook"] = ladder.result()
        for role, peak in ladder.sampler.peak.items():
            ladder.target.result[rss_key(role, "under_load_peak")] = peak


def rss_key(role: str, when: str) -> str:
    """``rss_idle_mb`` / ``worker_rss_idle_mb``: serve's figure keeps the plain name."""
    return f"rss_{when}_mb" if role == "serve" else f"{role}_rss_{when}_mb"
