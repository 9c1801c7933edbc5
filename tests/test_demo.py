"""`paylink demo` prints the thread the way Slack shows it, not as mrkdwn source."""

from __future__ import annotations

import re

import pytest

from bot.local.demo import run_demo
from bot.local.stack import PEOPLE
from bot.local.terminal import SlackShows

NAMES = {"U0REP": "Sara"}


def shows(text: str, gone: str | None = None) -> str:
    return SlackShows(NAMES.__getitem__, gone_prefix=gone)(text)


@pytest.mark.parametrize(
    ("mrkdwn", "seen"),
    [
        ("<@U0REP> the link is ready", "@Sara the link is ready"),
        ("Approved <!date^1740825000^{date_short_pretty} {time}|2025-03-01 10:30 UTC>",
         "Approved 2025-03-01 10:30 UTC"),
        ("*Status:* :white_check_mark: Paid", "Status: ✅ Paid"),
        ("<https://x.example/a?b=1&amp;c=2|View the request>",
         "View the request (https://x.example/a?b=1&c=2)"),
        ("<https://x.example/p>", "https://x.example/p"),
        ("Tom &amp; Jerry &lt;3 <!here> <#C0SALES>", "Tom & Jerry <3 @here #C0SALES"),
        ("5*3*2 and a_b_c stay", "5*3*2 and a_b_c stay"),
        ("*<@U0REP>*", "@Sara"),
        # An emoji name inside a URL is part of the address.
        ("<https://x.example/:tada:/p|page>", "page (https://x.example/:tada:/p)"),
    ],
)  # fmt: skip
def test_mrkdwn_as_slack_shows_it(mrkdwn: str, seen: str) -> None:
    assert shows(mrkdwn) == seen


def test_links_to_a_stopped_sandbox_are_marked_gone() -> None:
    gone = "http://127.0.0.1:5000/sandbox/"
    text = "ready: <http://127.0.0.1:5000/sandbox/checkout/pi_1> or <https://x.example/>"
    assert shows(text, gone) == (
        "ready: http://127.0.0.1:5000/sandbox/checkout/pi_1 (gone: the demo has stopped) "
        "or https://x.example/"
    )


@pytest.mark.integration  # the demo runs a whole local stack in this process
@pytest.mark.parametrize(("decline", "final"), [(False, "Paid"), (True, "Payment failed")])
def test_demo_prints_the_thread_as_slack_shows_it(
    capsys: pytest.CaptureFixture[str], decline: bool, final: str
) -> None:
    assert run_demo(decline=decline) == 0
    out = capsys.readouterr().out
    steps, thread = out.split("The thread in #C0APPROVALS:\n")
    assert f"@{PEOPLE['U0REP']} types /paylink" in steps
    assert f"@{PEOPLE['U0APPROVER']} approves" in steps

    # No mrkdwn source is left: mentions, dates, links, emoji codes, bold.
    for source in ("<@", "<!date", "<http", "*", "&amp;"):
        assert source not in thread, source
    assert not re.search(r":[a-z_]+:", thread), thread
    assert f"@{PEOPLE['U0REP']} " in thread and f"Approved by @{PEOPLE['U0APPROVER']} " in thread
    assert re.search(r"created \d{4}-\d\d-\d\d \d\d:\d\d UTC", thread), thread
    assert "🔗" in thread and ("✅" if final == "Paid" else "❌") in thread
    assert f"Status: {'✅' if final == 'Paid' else '❌'} {final}" in thread
    assert "TEST — sandbox, no real money" in thread
    # The sandbox stopped with the demo: its checkout link no longer opens, and says so.
    assert re.search(r"/sandbox/checkout/\S+ \(gone: the demo has stopped\)", thread), thread

    # Every line of a reply is indented under it.
    lines = thread.rstrip().split("\n\nDone in")[0].splitlines()
    replies = [i for i, line in enumerate(lines) if line.strip() == "↳ reply"]
    assert len(replies) == 2, thread
    for line in lines[replies[0] + 1 :]:
        assert line.startswith("      ") or line.strip() == "↳ reply", line


@pytest.mark.integration  # the demo runs a whole local stack in this process
def test_demo_policy_prints_auto_approval_two_approvers_a_reminder_and_a_renewal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 21: one run, four threads, oldest first, each ending Paid."""
    assert run_demo(policy=True) == 0
    steps, threads = capsys.readouterr().out.split("The threads in #C0APPROVALS, oldest first:\n")
    assert "the policy approves it at once" in steps and "@Hina approves too" in steps
    assert "the approvers are reminded" in steps and "@Sara clicks Renew" in steps
    assert "Approved automatically: under PKR 10,000" in threads
    assert "Approved by @Omar: waiting for a second approver." in threads
    assert "Approved by @Omar and @Hina " in threads
    # The approvers' reminder, then the rep's, the expiry and the renewal (reference -2).
    assert re.search(r"🔔 @Omar @Hina this request has waited \d seconds for approval", threads)
    assert re.search(r"🔔 @Sara the checkout link has waited \d seconds for payment", threads)
    expired = re.search(r"⌛ @Sara The checkout link (PL-\w+) expired without payment", threads)
    assert expired, threads
    assert f"the new checkout link is ready (reference {expired.group(1)}-2)" in threads
    assert threads.count("the checkout link is ready") == 4
    assert threads.count("Status: ✅ Paid") == 4 and threads.count("✅ Paid: PKR") == 4
    assert "Done in" in threads and "4 requests" in threads
