"""Who may approve: user IDs and the members of user groups, refreshed every few minutes."""

from __future__ import annotations

import logging
import threading
import time

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger("bot.slack")


class ApproverDirectory:
    """Answers ``is_approver(user_id)`` from PAYLINK_APPROVERS (U… users, S… groups)."""

    def __init__(self, client: WebClient | None, ids: list[str], *, ttl: float = 300.0):
        self.client = client
        self.users = {i for i in ids if not i.startswith("S")}
        self.groups = [i for i in ids if i.startswith("S")]
        self.ttl = ttl
        self._members: set[str] = set()
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        """False when nobody at all can approve."""
        return bool(self.users or self.groups)

    def is_approver(self, user_id: str) -> bool:
        """True when the user is listed or belongs to a listed user group."""
        return user_id in self.users or user_id in self._group_members()

    def _group_members(self) -> set[str]:
        if not self.groups or self.client is None:
            return set()
        with self._lock:
            if time.monotonic() - self._fetched_at < self.ttl:
                return self._members
            members: set[str] = set()
            for group in self.groups:
                try:
                    members.update(self.client.usergroups_users_list(usergroup=group)["users"])
                except SlackApiError as exc:
                    # Keep the last good list rather than lock every approver out.
                    log.warning(
                        "usergroups.users.list %s failed: %s", group, exc.response.get("error")
                    )
                    return self._members
            self._members, self._fetched_at = members, time.monotonic()
            return members
