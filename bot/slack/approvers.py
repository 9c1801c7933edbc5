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
        self._refreshing = False
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        """False when nobody at all can approve."""
        return bool(self.users or self.groups)

    def is_approver(self, user_id: str) -> bool:
        """True when the user is listed or belongs to a listed user group."""
        return user_id in self.users or user_id in self._group_members()

    def _group_members(self) -> set[str]:
        """Members of the groups. Only the very first answer waits for Slack; after that a
        stale list is answered at once and refreshed in the background, so a click (whose
        trigger_id lives 3 s) never waits on usergroups.users.list."""
        if not self.groups or self.client is None:
            return set()
        with self._lock:
            fetched, age = self._fetched_at > 0, time.monotonic() - self._fetched_at
            refresh = age >= self.ttl and not self._refreshing
            if refresh:
                self._refreshing = True
        if not fetched:
            self.refresh()
        elif refresh:
            threading.Thread(target=self.refresh, name="approvers", daemon=True).start()
        return self._members

    def refresh(self) -> None:
        """Fetch the groups' members now (also called once at start-up)."""
        if not self.groups or self.client is None:
            return
        members: set[str] = set()
        try:
            for group in self.groups:
                members.update(self.client.usergroups_users_list(usergroup=group)["users"])
        except SlackApiError as exc:
            # Keep the last good list rather than lock every approver out.
            log.warning("usergroups.users.list failed: %s", exc.response.get("error"))
            members = self._members
        except Exception as exc:  # Slack unreachable: same, try again next time
            log.warning("usergroups.users.list failed: %s", type(exc).__name__)
            members = self._members
        else:
            with self._lock:
                self._fetched_at = time.monotonic()
        with self._lock:
            self._members, self._refreshing = members, False
