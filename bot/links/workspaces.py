"""Which Slack workspace a link belongs to, and where a click or submission came from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Workspace:
    """A Slack workspace: its team id and, in an Enterprise Grid organisation, the
    organisation's id. ``team_id`` is None for a payload that names no one team (a guest
    from another workspace acting in ours): it is nobody's, so it owns no link."""

    team_id: str | None
    enterprise_id: str | None = None
