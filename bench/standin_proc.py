"""The Slack Web API stand-in in its own process, driven by JSON lines on stdin/stdout.

Keeping the stand-in out of the bot's process isolates the bot's RSS and CPU; keeping it out
of the load generator's process keeps its work off the generator's GIL.

Commands (one JSON object per line, one JSON answer per line):
  {"cmd": "cards", "cards": [[channel, ts], ...]}   make these messages exist (bot cards)
  {"cmd": "calls", "method": "chat.update", "since": 0}
      -> {"calls": [[channel, ts, user, at, ok, trigger_id]], "next": n}
  {"cmd": "quit"}
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
from typing import Any

from bot.local.stack import APPROVER, BOT_TOKEN
from bot.local.standin import PostedMessage, SlackStandIn


def _freeze_every(seconds: float) -> None:
    """Set what the stand-in has recorded so far aside from the garbage collector, again and
    again. It keeps every call (views, blocks) for the run, so its heap grows to millions of
    objects (1.8 GB in a full run), and a full collection walks them all while every Slack
    call waits: here 10,000 recorded modals took 0.36 s to collect, 60,000 took 2 s, and a
    full run's modal opens had a p99 of up to 1.8 s. The calls live until the process ends
    anyway, so freezing them costs nothing."""
    while True:
        time.sleep(seconds)
        gc.freeze()


def main() -> int:
    threading.Thread(target=_freeze_every, args=(1.0,), daemon=True).start()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints go to stderr, never into the protocol
    slack = SlackStandIn(bot_token=BOT_TOKEN, usergroups={"S0FINANCE": [APPROVER]}).start()
    out.write(json.dumps({"url": slack.base_url, "pid": os.getpid()}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req.get("cmd")
        answer: dict[str, Any] = {"ok": True}
        if cmd == "cards":
            # Cards the bot "posted" earlier (links inserted straight into the database).
            with slack._lock:
                for channel, ts in req["cards"]:
                    slack._messages[(channel, ts)] = PostedMessage(
                        ts=ts, channel=channel, thread_ts=None, text="card", blocks=None
                    )
        elif cmd == "calls":
            since = int(req.get("since", 0))
            with slack._lock:
                calls = slack.calls[since:]
                nxt = since + len(calls)
            answer["calls"] = [
                [
                    c.params.get("channel"),
                    str(c.params.get("ts") or ""),
                    c.params.get("user_id"),
                    c.at,
                    c.ok,
                    c.params.get("trigger_id"),
                ]
                for c in calls
                if c.method == req["method"]
            ]
            answer["next"] = nxt
        elif cmd == "quit":
            out.write(json.dumps(answer) + "\n")
            break
        else:
            answer = {"ok": False, "error": f"unknown command {cmd!r}"}
        out.write(json.dumps(answer) + "\n")
    slack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
