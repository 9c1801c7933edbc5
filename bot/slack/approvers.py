"""Who may approve: user IDs, and the members of user groups as Slack last confirmed them.

A group's members are refreshed in the background every ``ttl`` seconds. They approve only
while Slack has confirmed them within ``max_age`` seconds: a group Paylink cannot read (the
scope removed, Slack down) must not let people removed from it approve forever, so after
that its members are refused, with a word on why, until Slack answers again. No answer
waits on Slack, a refusal least of all: a click's trigger_id lives 3 seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.config import Settings
from bot.links.outcomes import Refused
from bot.links.workspaces import Workspace

if TYPE_CHECKING:
    from bot.slack.clients import SlackClients

log = logging.getLogger("bot.slack")

PAUSED = (
    "Approvals are paused: Paylink cannot read the approvers' user group from Slack right "
    "now, so it cannot tell who is in it. Try again in a few minutes, or ask whoever runs "
    "Paylink to look at its logs."
)

# Right after start-up, before Slack's first answer: nothing is wrong, so no logs to read.
WARMING_UP = (
    "Paylink is still reading the approvers' user group from Slack (it has just started). "
    "Try again in a moment."
)

GroupsState = Literal["none", "ok", "paused"]


class ApprovalsPaused(Refused):
    """The answer depends on user groups Slack has not confirmed lately (``warming_up``:
    not yet, since start-up, and no lookup has failed)."""

    def __init__(self, *, warming_up: bool = False) -> None:
        super().__init__(WARMING_UP if warming_up else PAUSED)


class ApproverDirectory:
    """Answers who may approve from PAYLINK_APPROVERS (U… users, S… groups)."""

    def __init__(
        self,
        client: WebClient | None,
        ids: list[str],
        *,
        ttl: float = 300.0,
        max_age: float = 900.0,
        retry: float = 30.0,
    ):
        """``ttl``: seconds between refreshes; ``max_age``: seconds the groups' members
        approve without a successful one; ``retry``: seconds between failed tries."""
        self.client = client
        self.users = {i for i in ids if not i.startswith("S")}
        self.groups = [i for i in ids if i.startswith("S")]
        self.ttl, self.max_age, self.retry = ttl, max_age, retry
        self._members: frozenset[str] = frozenset()
        self._confirmed_at: float | None = None  # monotonic; the last successful refresh
        self._tried_at: float | None = None
        self._refreshing = False
        self._failing = False  # the last refresh failed
        self._paused = False  # the pause was logged
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        """False when nobody at all can approve."""
        return bool(self.users or self.groups)

    def is_approver(self, user_id: str, workspace: Workspace | None = None) -> bool:
        """True when the user is listed, or in a listed group as Slack confirmed lately
        (``workspace`` is any: this directory answers for the one of SLACK_BOT_TOKEN)."""
        try:
            return self.may_decide(user_id)
        except ApprovalsPaused:
            return False

    def may_decide(self, user_id: str, workspace: Workspace | None = None) -> bool:
        """:meth:`is_approver` for a decision, which says why when it cannot know:
        :class:`ApprovalsPaused` (a Refused) when that depends on groups gone unconfirmed."""
        if user_id in self.users:
            return True
        members = self._members_now()
        if members is None:
            with self._lock:
                warming_up = self._confirmed_at is None and not self._failing
            raise ApprovalsPaused(warming_up=warming_up)
        return user_id in members

    @property
    def groups_state(self) -> GroupsState:
        """``none`` (no groups listed), ``ok``, or ``paused`` (members unconfirmed)."""
        if not self.groups or self.client is None:
            return "none"
        return "paused" if self._members_now() is None else "ok"

    def _members_now(self) -> frozenset[str] | None:
        """The groups' members, or None when Slack has not confirmed them within max_age;
        starts a refresh in the background when one is due."""
        if not self.groups or self.client is None:
            return frozenset()
        now = time.monotonic()
        with self._lock:
            confirmed = self._confirmed_at
            due = (
                not self._refreshing
                and (confirmed is None or now - confirmed >= self.ttl)
                and not (self._failing and now - (self._tried_at or 0) < self.retry)
            )
            if due:
                self._refreshing, self._tried_at = True, now
            expired = confirmed is None or now - confirmed >= self.max_age
            # Said once per outage, when it starts to matter (not while start-up warms up).
            pausing = expired and self._failing and not self._paused
            self._paused = self._paused or pausing
            members = self._members
        if due:
            threading.Thread(target=self._refresh, name="approvers", daemon=True).start()
        if pausing:
            log.warning(
                "approvals by members of %s are paused: Slack has not confirmed who is in "
                "them %s; they are refused until usergroups.users.list answers again",
                ",".join(self.groups),
                "since start-up" if confirmed is None else f"for {now - confirmed:.0f} s",
            )
        return None if expired else members

    def refresh(self) -> None:
        """Fetch the groups' members now (start-up warms the list with it)."""
        if not self.groups or self.client is None:
            return
        with self._lock:
            self._refreshing, self._tried_at = True, time.monotonic()
        self._refresh()

    def _refresh(self) -> None:
        members: set[str] = set()
        failure = None
        try:
            for group in self.groups:
                answer = self.client.usergroups_users_list(usergroup=group)  # type: ignore[union-attr]
                members.update(answer["users"])
        except SlackApiError as exc:
            failure = str(exc.response.get("error") or exc.response.status_code)
        except Exception as exc:  # Slack out of reach: try again after `retry`
            failure = type(exc).__name__
        with self._lock:
            self._refreshing, self._failing = False, failure is not None
            resumed = self._paused and failure is None
            if failure is None:
                self._members, self._confirmed_at = frozenset(members), time.monotonic()
                self._paused = False
        if failure is not None:
            log.warning("usergroups.users.list failed: %s", failure)
        elif resumed:
            log.info("usergroups.users.list answers again: approvals by the groups' members resume")


class _GroupsOf:
    """What a directory reads from Slack, for one workspace: the client is looked up at each
    read, so a refreshed token is used and an uninstalled workspace reads nothing."""

    def __init__(self, clients: SlackClients, workspace: Workspace):
        self.clients = clients
        self.workspace = workspace

    def usergroups_users_list(self, **kwargs: Any) -> Any:
        """``usergroups.users.list`` with the workspace's token."""
        return self.clients.for_workspace(self.workspace).usergroups_users_list(**kwargs)


class WorkspaceApprovers:
    """Who may approve in each workspace: its approvers as its settings say (stored in
    Slack's Settings, else PAYLINK_APPROVERS), each list with its own directory whose
    user-group members are read with that workspace's token. In single-workspace mode one
    directory serves a list whatever the workspace (a group is not read again for each)."""

    def __init__(
        self,
        clients: SlackClients | None,
        settings_for: Callable[[str | None], Settings],
        **timing: float,
    ):
        self.clients = clients
        self.settings_for = settings_for
        self.timing = timing
        self._directories: dict[tuple[str | None, tuple[str, ...]], ApproverDirectory] = {}
        self._lock = threading.Lock()
        self.directory(None)  # the environment's: warmed at start-up, shown by /healthz

    def directory(self, team_id: str | None) -> ApproverDirectory:
        """The approver directory of workspace ``team_id``."""
        ids = tuple(self.settings_for(team_id).paylink_approvers)
        multi = self.clients is not None and self.clients.multi_workspace
        key = (team_id if multi else None, ids)
        with self._lock:
            found = self._directories.get(key)
            made = found is None
            if found is None:
                found = self._directories[key] = ApproverDirectory(
                    self._reader(team_id, multi), list(ids), **self.timing
                )
        if made and len(self._directories) > 1:
            # A list or workspace new since start-up: read its groups now, as start-up does.
            threading.Thread(target=found.refresh, name="approvers", daemon=True).start()
        return found

    def _reader(self, team_id: str | None, multi: bool) -> Any:
        """What reads workspace ``team_id``'s groups: its own client in multi-workspace mode
        (nothing for no workspace), the one client otherwise."""
        if self.clients is None or (multi and team_id is None):
            return None
        return _GroupsOf(self.clients, Workspace(team_id)) if multi else self.clients.base

    def may_decide(self, user_id: str, team_id: str | None = None) -> bool:
        """:meth:`ApproverDirectory.may_decide` in workspace ``team_id``."""
        return self.directory(team_id).may_decide(user_id)

    def is_approver(self, user_id: str, team_id: str | None = None) -> bool:
        """:meth:`ApproverDirectory.is_approver` in workspace ``team_id``."""
        return self.directory(team_id).is_approver(user_id)

    def configured(self, team_id: str | None = None) -> bool:
        """False when nobody at all can approve in workspace ``team_id``."""
        return self.directory(team_id).configured

    @property
    def groups_state(self) -> GroupsState:
        """``paused`` when any workspace's groups are, else ``ok`` when some are read."""
        with self._lock:
            states = {d.groups_state for d in self._directories.values()}
        return "paused" if "paused" in states else "ok" if "ok" in states else "none"

    def refresh(self) -> None:
        """Read the groups' members of every list and workspace seen so far (start-up warms
        them)."""
        with self._lock:
            directories = list(self._directories.values())
        for directory in directories:
            directory.refresh()
