"""Settings for workspace admins: App Home's Settings section, the Settings modal and the
XPay store modal. Secrets are write-only: a store's modal says when and by whom each was set,
never its value."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    CheckboxesElement,
    ConversationMultiSelectElement,
    ConversationSelectElement,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    SectionBlock,
    StaticSelectElement,
    UrlInputElement,
    UserMultiSelectElement,
)
from slack_sdk.models.views import View

from bot.config import Settings
from bot.links.workspace_settings import (
    EDITABLE,
    STORE_SECRETS,
    StoreInfo,
    environment_text,
)
from bot.payment_methods import PAYMENT_METHODS, method_label
from bot.slack.blocks.common import (
    NAME_BUDGET,
    OPTION_TEXT_MAX,
    channel_mention,
    clip,
    context,
    mention,
    safe,
    section,
)
from bot.slack.blocks.ids import ActionId, BlockId, CallbackId

#: Settings modal inputs typed as text: Settings field → (hint, the block's id is the field).
TEXT_SETTINGS: dict[str, str] = {
    "paylink_currencies": "ISO codes, comma-separated: PKR,USD",
    "paylink_max_amount": "The most one link may ask for, e.g. 500000",
    "paylink_auto_approve_under": "Per currency, CUR:AMOUNT: PKR:10000,USD:50",
    "paylink_second_approval_from": "Per currency, CUR:AMOUNT: PKR:500000",
    "paylink_remind_approvers_after": "A duration: 90s, 30m, 4h, 7d",
    "paylink_remind_rep_after": "A duration: 90s, 30m, 4h, 7d",
    "paylink_link_ttl": "A duration: 90s, 30m, 4h, 7d",
    "paylink_duplicate_window": "A duration: 90s, 30m, 4h, 7d",
}
URL_SETTINGS = ("paylink_success_url", "paylink_failure_url")

#: XPay store environments as the store modal offers them.
ENVIRONMENT_LABELS = {
    "sandbox": "Sandbox (TEST: the embedded gateway)",
    "staging": "XPay staging",
    "live": "XPay live",
    "url": "Another base URL (below)",
}
SECRET_BLOCKS = {
    "api_key": BlockId.STORE_API_KEY,
    "hmac_secret": BlockId.STORE_HMAC_SECRET,
    "webhook_secret": BlockId.STORE_WEBHOOK_SECRET,
}

NOT_ADMIN = (
    "Only the workspace's admins and owners (and the people in PAYLINK_ADMINS) can change "
    "Paylink's settings."
)
CANNOT_CHECK_ADMIN = (
    "Paylink cannot check who is an admin here: Slack did not answer users.info (is the "
    "users:read scope missing? Reinstalling the app adds it). Ask whoever runs Paylink."
)


def webhook_url(public_url: str, store_id: int) -> str:
    """A store's own webhook URL, for its XPay portal."""
    return f"{public_url}/xpay/webhook/{store_id}"


def _default_hint(env: Settings, name: str) -> str:
    value = environment_text(env, name)
    return f"Empty: the default ({clip(value, 60)})" if value else "Empty: none"


def home_settings(stores: Sequence[StoreInfo], public_url: str) -> list[Block]:
    """App Home's Settings section, for admins: the Settings button, the XPay stores with
    their webhook URLs, and a button to add one."""
    blocks: list[Block] = [
        HeaderBlock(block_id=BlockId.SETTINGS_TITLE, text="Settings"),
        ActionsBlock(
            block_id=BlockId.SETTINGS_ACTIONS,
            elements=[
                ButtonElement(action_id=ActionId.OPEN_SETTINGS, text="Settings", value="settings"),
                ButtonElement(action_id=ActionId.ADD_STORE, text="Add XPay store", value="new"),
            ],
        ),
    ]
    for store in stores[:20]:
        channels = ", ".join(channel_mention(c) for c in store.channels) or "no channel"
        text = (
            f"*{safe(store.name, NAME_BUDGET)}*"
            + (" (default)" if store.is_default else "")
            + f" · {ENVIRONMENT_LABELS.get(store.environment, store.environment)}"
            + f" · {channels}\nWebhook URL: `{webhook_url(public_url, store.id)}`"
        )
        blocks.append(
            SectionBlock(
                block_id=f"{BlockId.STORE_ROW}_{store.id}",
                text=MarkdownTextObject(text=text),
                accessory=ButtonElement(
                    action_id=ActionId.EDIT_STORE, text="Edit", value=str(store.id)
                ),
            )
        )
    if not stores:
        blocks.append(
            context(
                BlockId.SETTINGS_NOTE,
                "No XPay store: links use the environment's XPay settings (XPAY_*).",
            )
        )
    return blocks


def settings_modal(env: Settings, stored: Mapping[str, str]) -> dict[str, Any]:
    """The Settings modal: each field shows the workspace's value, empty for the
    environment's (its hint says which)."""
    approvers = [a for a in stored.get("paylink_approvers", "").split(",") if a]
    users = [a for a in approvers if not a.startswith("S")]
    groups = [a for a in approvers if a.startswith("S")]
    methods = [m for m in stored.get("paylink_payment_methods", "").split(",") if m]
    method_options = [
        Option(value=m, label=clip(method_label(m), OPTION_TEXT_MAX)) for m in PAYMENT_METHODS
    ]
    blocks: list[Block] = [
        context(
            BlockId.SETTINGS_NOTE,
            "Empty fields use the defaults the server was started with. Every change is "
            "recorded (`paylink settings history`).",
        ),
        InputBlock(
            block_id=BlockId.APPROVER_USERS,
            label="Approvers",
            optional=True,
            hint=_default_hint(env, "paylink_approvers"),
            element=UserMultiSelectElement(
                action_id=ActionId.INPUT, placeholder="People", initial_users=users or None
            ),
        ),
        InputBlock(
            block_id=BlockId.APPROVER_GROUPS,
            label="Approver user groups",
            optional=True,
            hint="User-group IDs (S…), comma-separated: Slack has no picker for groups",
            element=PlainTextInputElement(
                action_id=ActionId.INPUT, initial_value=",".join(groups) or None
            ),
        ),
        InputBlock(
            block_id="paylink_approval_channel",
            label="Approval channel",
            optional=True,
            hint="Empty: "
            + (
                "the default channel"
                if env.paylink_approval_channel
                else "the channel where /paylink was typed"
            ),
            element=ConversationSelectElement(
                action_id=ActionId.INPUT,
                placeholder="Channel",
                initial_conversation=stored.get("paylink_approval_channel") or None,
            ),
        ),
        InputBlock(
            block_id="paylink_payment_methods",
            label="Payment methods",
            optional=True,
            hint=_default_hint(env, "paylink_payment_methods"),
            element=CheckboxesElement(
                action_id=ActionId.INPUT,
                options=method_options,
                initial_options=[o for o in method_options if o.value in methods] or None,
            ),
        ),
    ]
    for name in URL_SETTINGS:
        blocks.append(
            InputBlock(
                block_id=name,
                label=EDITABLE[name],
                optional=True,
                hint=_default_hint(env, name),
                element=UrlInputElement(
                    action_id=ActionId.INPUT, initial_value=stored.get(name) or None
                ),
            )
        )
    for name, hint in TEXT_SETTINGS.items():
        blocks.append(
            InputBlock(
                block_id=name,
                label=EDITABLE[name],
                optional=True,
                hint=f"{hint}. {_default_hint(env, name)}",
                element=PlainTextInputElement(
                    action_id=ActionId.INPUT, initial_value=stored.get(name) or None
                ),
            )
        )
    return View(
        type="modal",
        callback_id=CallbackId.SETTINGS,
        title="Paylink settings",
        submit="Save",
        close="Cancel",
        blocks=blocks,
    ).to_dict()


def _state(view: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    values = ((view or {}).get("state") or {}).get("values") or {}
    return {block: (v.get(ActionId.INPUT) or {}) for block, v in values.items()}


def _text(state: Mapping[str, Any]) -> str:
    return str(state.get("value") or "").strip()


def read_settings(view: Mapping[str, Any]) -> dict[str, str]:
    """The Settings modal's submission as Settings field → text ("": the default)."""
    state = _state(view)
    users = state.get(BlockId.APPROVER_USERS, {}).get("selected_users") or []
    groups = [
        g.strip() for g in _text(state.get(BlockId.APPROVER_GROUPS, {})).split(",") if g.strip()
    ]
    methods = [
        o["value"]
        for o in state.get("paylink_payment_methods", {}).get("selected_options") or []
        if o and o.get("value")
    ]
    values = {
        "paylink_approvers": ",".join([*users, *groups]),
        "paylink_approval_channel": str(
            state.get("paylink_approval_channel", {}).get("selected_conversation") or ""
        ),
        "paylink_payment_methods": ",".join(methods),
    }
    for name in (*URL_SETTINGS, *TEXT_SETTINGS):
        values[name] = _text(state.get(name, {}))
    return values


def settings_error_block(name: str) -> str:
    """The block of the Settings modal where an error about setting ``name`` goes."""
    if name == "paylink_approvers":
        return BlockId.APPROVER_GROUPS
    return name


def _set_line(store: StoreInfo | None) -> str:
    if store is None:
        return "New store: its keys are stored encrypted and never shown again."
    lines = []
    for column, label in STORE_SECRETS.items():
        done = store.secrets_set.get(column)
        if done:
            when = datetime.fromisoformat(done["at"]).strftime("%Y-%m-%d")
            lines.append(f"{label}: set on {when} by {mention(done.get('by'))}")
        else:
            lines.append(f"{label}: not set")
    return "\n".join(lines) + "\nLeave a key empty to keep it."


def store_modal(store: StoreInfo | None, public_url: str) -> dict[str, Any]:
    """The modal that adds (``store`` None) or changes an XPay store; keys are write-only."""
    env_options = [Option(value=k, label=v) for k, v in ENVIRONMENT_LABELS.items()]
    chosen = store.environment if store else "live"
    blocks: list[Block] = []
    if store is not None:
        blocks.append(
            section(
                BlockId.STORE_WEBHOOK_URL,
                f"Webhook URL for this store's XPay portal:\n`{webhook_url(public_url, store.id)}`",
            )
        )
    blocks += [
        InputBlock(
            block_id=BlockId.STORE_NAME,
            label="Name",
            element=PlainTextInputElement(
                action_id=ActionId.INPUT,
                max_length=80,
                initial_value=store.name if store else None,
            ),
        ),
        InputBlock(
            block_id=BlockId.STORE_ENVIRONMENT,
            label="XPay environment",
            element=StaticSelectElement(
                action_id=ActionId.INPUT,
                options=env_options,
                initial_option=next(o for o in env_options if o.value == chosen),
            ),
        ),
        InputBlock(
            block_id=BlockId.STORE_BASE_URL,
            label="Base URL",
            optional=True,
            hint="Only for “Another base URL”",
            element=UrlInputElement(
                action_id=ActionId.INPUT, initial_value=(store.base_url if store else None)
            ),
        ),
        InputBlock(
            block_id=BlockId.STORE_ACCOUNT_ID,
            label="Account id",
            optional=True,
            hint="XPay portal: Settings → Store Info → Key Details (not needed on the sandbox)",
            element=PlainTextInputElement(
                action_id=ActionId.INPUT, initial_value=(store.account_id if store else None)
            ),
        ),
        context(BlockId.STORE_SECRETS_SET, _set_line(store)),
    ]
    for column, label in STORE_SECRETS.items():
        blocks.append(
            InputBlock(
                block_id=SECRET_BLOCKS[column],
                label=label,
                optional=True,
                element=PlainTextInputElement(
                    action_id=ActionId.INPUT,
                    placeholder="set: type to replace"
                    if store and store.secrets_set.get(column)
                    else "from the XPay portal",
                ),
            )
        )
    blocks += [
        InputBlock(
            block_id=BlockId.STORE_CHANNELS,
            label="Channels that use it",
            optional=True,
            hint="/paylink in these channels uses this store",
            element=ConversationMultiSelectElement(
                action_id=ActionId.INPUT,
                placeholder="Channels",
                initial_conversations=list(store.channels) if store and store.channels else None,
            ),
        ),
        InputBlock(
            block_id=BlockId.STORE_DEFAULT,
            label="Default",
            optional=True,
            element=CheckboxesElement(
                action_id=ActionId.INPUT,
                options=[Option(value="default", label="Requests from other channels use it")],
                initial_options=[
                    Option(value="default", label="Requests from other channels use it")
                ]
                if store and store.is_default
                else None,
            ),
        ),
    ]
    return View(
        type="modal",
        callback_id=CallbackId.STORE,
        title="XPay store",
        submit="Save",
        close="Cancel",
        private_metadata=str(store.id) if store else "",
        blocks=blocks,
    ).to_dict()


def read_store(view: Mapping[str, Any]) -> tuple[int | None, dict[str, Any], dict[str, str]]:
    """The store modal's submission: (store id or None for a new one, fields, secrets typed)."""
    state = _state(view)
    raw_id = str((view or {}).get("private_metadata") or "")
    fields = {
        "name": _text(state.get(BlockId.STORE_NAME, {})),
        "environment": str(
            (state.get(BlockId.STORE_ENVIRONMENT, {}).get("selected_option") or {}).get("value")
            or ""
        ),
        "base_url": _text(state.get(BlockId.STORE_BASE_URL, {})),
        "account_id": _text(state.get(BlockId.STORE_ACCOUNT_ID, {})),
        "channels": list(state.get(BlockId.STORE_CHANNELS, {}).get("selected_conversations") or []),
        "is_default": bool(state.get(BlockId.STORE_DEFAULT, {}).get("selected_options")),
    }
    secrets = {column: _text(state.get(block, {})) for column, block in SECRET_BLOCKS.items()}
    return (int(raw_id) if raw_id.isdigit() else None), fields, secrets


#: Store field (or secret column) → the store modal's block, for inline errors.
STORE_ERROR_BLOCKS: dict[str, str] = {
    "name": BlockId.STORE_NAME,
    "environment": BlockId.STORE_ENVIRONMENT,
    "base_url": BlockId.STORE_BASE_URL,
    "account_id": BlockId.STORE_ACCOUNT_ID,
    **SECRET_BLOCKS,
}


def refused_modal(text: str) -> dict[str, Any]:
    """A modal that only says why (e.g. to someone who may not change the settings)."""
    return View(
        type="modal",
        title="Paylink settings",
        close="Close",
        blocks=[section(BlockId.SETTINGS_NOTE, text)],
    ).to_dict()
