"""Settings for workspace admins: `/paylink settings` and App Home's buttons open the
Settings and XPay store modals; their submissions are checked and stored. Anyone else is
refused (an ephemeral in a channel, a note in a modal from App Home) and nothing changes."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk.errors import SlackApiError

from bot.links.workspace_settings import StoreProblems
from bot.links.workspaces import Workspace
from bot.slack.admins import settings_refusal
from bot.slack.blocks.ids import ActionId, BlockId, CallbackId
from bot.slack.blocks.settings import (
    STORE_ERROR_BLOCKS,
    read_settings,
    read_store,
    refused_modal,
    settings_error_block,
    settings_modal,
    store_modal,
)
from bot.slack.context import SlackContext
from bot.slack.delivery import tell
from bot.slack.listeners.events import publish_home
from bot.slack.origin import sender

log = logging.getLogger(__name__)


def _modal(ctx: SlackContext, team_id: str | None, action: str, value: str) -> dict[str, Any]:
    """The modal an admin's click opens: Settings, a new store, or store ``value``."""
    workspaces = ctx.workspaces
    assert workspaces is not None and team_id is not None
    if action == ActionId.OPEN_SETTINGS:
        return settings_modal(ctx.settings, workspaces.stored(team_id))
    store = next((st for st in workspaces.stores(team_id) if str(st.id) == value), None)
    return store_modal(store, ctx.settings.public_url)


def _open(ctx: SlackContext, team_id: str, trigger_id: str, view: dict[str, Any]) -> None:
    try:
        ctx.client_of(team_id).views_open(trigger_id=trigger_id, view=view)
    except SlackApiError as exc:
        log.warning("views.open (settings) failed: %s", exc.response.get("error"))


def open_settings(ctx: SlackContext, ack: Ack, body: dict[str, Any]) -> None:
    """`/paylink settings`: the Settings modal for an admin, an ephemeral refusal otherwise."""
    ack()
    user, channel, team = body.get("user_id", ""), body.get("channel_id"), body.get("team_id")

    def work() -> None:
        refusal = settings_refusal(ctx, user, team or None)
        if refusal is not None:
            if team:
                tell(ctx.client_of(team), channel, user, refusal)
            return
        _open(ctx, team, body["trigger_id"], _modal(ctx, team, ActionId.OPEN_SETTINGS, ""))

    ctx.later(ctx.after_ack, work)


def register(app: App, ctx: SlackContext) -> None:
    """Register App Home's Settings buttons and the two modals' submissions."""

    def on_button(action_id: ActionId) -> None:
        @app.action(action_id)
        def clicked(ack: Ack, body: dict[str, Any]) -> None:
            ack()
            user = str((body.get("user") or {}).get("id") or "")
            team = sender(body).team_id
            value = str(((body.get("actions") or [{}])[0]).get("value") or "")

            def work() -> None:
                refusal = settings_refusal(ctx, user, team)
                view = (
                    _modal(ctx, team, action_id, value)
                    if refusal is None
                    else refused_modal(refusal)
                )
                _open(ctx, team, body["trigger_id"], view)

            ctx.later(ctx.after_ack, work)

    for action_id in (ActionId.OPEN_SETTINGS, ActionId.ADD_STORE, ActionId.EDIT_STORE):
        on_button(action_id)

    def admitted(ack: Ack, body: dict[str, Any], first_block: str) -> str | None:
        """The workspace of a submission by an admin; None after refusing it inline."""
        team = sender(body).team_id
        refusal = settings_refusal(ctx, body["user"]["id"], team)
        if refusal is not None:
            ack(response_action="errors", errors={first_block: refusal})
            return None
        return team

    @app.view(CallbackId.SETTINGS)
    def submit_settings(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        team = admitted(ack, body, BlockId.APPROVER_USERS)
        if team is None:
            return
        user = body["user"]["id"]
        try:
            changed = ctx.workspaces.save_settings(team, user, read_settings(view))  # type: ignore[union-attr]
        except StoreProblems as exc:
            ack(
                response_action="errors",
                errors={settings_error_block(k): v for k, v in exc.errors.items()},
            )
            return
        ack()
        log.info("settings changed: %s", ", ".join(changed) or "nothing", extra={"user": user})

    @app.view(CallbackId.STORE)
    def submit_store(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        team = admitted(ack, body, BlockId.STORE_NAME)
        if team is None:
            return
        user = body["user"]["id"]
        store_id, fields, secrets = read_store(view)
        try:
            store = ctx.workspaces.save_store(  # type: ignore[union-attr]
                team, user, fields, secrets, store_id=store_id
            )
        except StoreProblems as exc:
            ack(
                response_action="errors",
                errors={
                    STORE_ERROR_BLOCKS.get(k, BlockId.STORE_NAME): v for k, v in exc.errors.items()
                },
            )
            return
        ack()
        log.info("XPay store saved", extra={"user": user, "store": store.id})
        # The Home tab lists the stores and their webhook URLs.
        ctx.later(ctx.after_ack, publish_home, ctx, user, Workspace(team))
