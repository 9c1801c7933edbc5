"""What the link service answers besides a link: refusals, and what a payment webhook did."""

from __future__ import annotations

from dataclasses import dataclass

from bot.links.kinds import WebhookOutcome

GONE = "That request no longer exists."  # told to whoever acts on a link that is not there
# told to whoever acts on a link, or asks for one, from a workspace that is not its own
ELSEWHERE = "This request belongs to another Slack workspace: nothing changed."


class Refused(Exception):
    """The person may not do this, or it was already done; ``message`` says why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotAllowed(Refused):
    """This person may not do this to this link (not an approver, not the requester …)."""


class OtherWorkspace(NotAllowed):
    """The click or submission came from a workspace that does not own the link."""

    def __init__(self) -> None:
        super().__init__(ELSEWHERE)


class AlreadyDecided(Refused):
    """The link is not in a state for this: someone was first, or it is over."""


class AlreadyApproved(AlreadyDecided):
    """This approver approved the request already; it waits for a second approver."""

    def __init__(self) -> None:
        super().__init__("You already approved this request: it is waiting for a second approver.")


class LinkGone(Refused):
    """There is no such link."""

    def __init__(self) -> None:
        super().__init__(GONE)


class Incomplete(Refused):
    """The decision lacks something it needs (a rejection's reason)."""


@dataclass(frozen=True)
class WebhookResult:
    """What a payment webhook did, and to which link."""

    outcome: WebhookOutcome
    link_id: int | None = None
