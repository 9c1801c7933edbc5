"""Multi-workspace mode (SLACK_CLIENT_ID, SLACK_CLIENT_SECRET): Bolt's OAuth flow, with
installations and OAuth states kept in our database by slack_sdk's SQLAlchemy stores
(tables: bot/links/installations.py, migrations 0011 and 0013; the installations' tokens
sealed with PAYLINK_SECRET_KEY, bot/slack/installation_store.py), and the Web API client of
each workspace (bot/slack/clients.py)."""

from __future__ import annotations

import html
import logging
from collections import OrderedDict

from slack_bolt.authorization.authorize import InstallationStoreAuthorize
from slack_bolt.oauth.callback_options import CallbackOptions, FailureArgs, SuccessArgs
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from slack_sdk.oauth.token_rotation import TokenRotator
from sqlalchemy import Engine, select

from bot.config import Settings
from bot.errors import ConfigError
from bot.links.installations import BOTS
from bot.links.workspaces import Workspace
from bot.secretbox import SecretBox
from bot.slack.clients import ROTATE_BEFORE_MINUTES, InstalledTokens, SlackClients
from bot.slack.installation_store import SealedInstallationStore
from bot.slack.transport import PooledWebClient

log = logging.getLogger("bot.slack")

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
# The bot scopes an install asks for: manifests/distributed.yml's (tests/test_manifest.py).
BOT_SCOPES = (
    "commands",
    "chat:write",
    "chat:write.public",
    "usergroups:read",
    "users:read",
    "channels:history",
    "groups:history",
    "files:write",
    "im:write",
)
STATE_SECONDS = 600  # an install started at /slack/install must finish within this
AUTH_CACHE_SIZE = 2000  # tokens whose auth.test answer is remembered

# What the installer is told when Slack's redirect cannot be taken (Bolt's reason → words).
FAILURES = {
    "access_denied": "The install was cancelled in Slack, so nothing was installed.",
    "invalid_browser": (
        "This install was started in another browser (or its cookie expired): open the "
        "install page again in this browser."
    ),
    "invalid_state": (
        "This install link has expired or was already used: open the install page again "
        "to start a new one."
    ),
    "missing_code": "Slack's answer carried no authorization code: start the install again.",
    "invalid_code": (
        "Slack did not accept the authorization code (it expires after 10 minutes and "
        "works once): start the install again."
    ),
    "storage_error": "The installation could not be saved: try again in a minute.",
}


def installation_store(settings: Settings, engine: Engine) -> SealedInstallationStore:
    """The installations of this app (SLACK_CLIENT_ID) in our database, their tokens sealed
    with PAYLINK_SECRET_KEY (which multi-workspace mode requires)."""
    key = settings.paylink_secret_key
    if key is None:
        raise ConfigError(
            [
                "PAYLINK_SECRET_KEY is not set: multi-workspace mode stores Slack tokens sealed with it"
            ]
        )
    box = SecretBox(key.get_secret_value())
    return SealedInstallationStore(str(settings.slack_client_id), engine, box)


def installed_workspaces(settings: Settings, engine: Engine) -> int:
    """How many workspaces (and Enterprise Grid organisations) have this app's bot
    installed now."""
    return len(installed_list(settings, engine))


def installed_list(settings: Settings, engine: Engine) -> list[Workspace]:
    """The workspaces that have this app's bot installed now (its bot token not revoked);
    an organisation-wide install names its organisation and no team."""
    query = (
        select(BOTS.c.enterprise_id, BOTS.c.team_id)
        .where(BOTS.c.client_id == settings.slack_client_id, BOTS.c.bot_token.is_not(None))
        .distinct()
        .order_by(BOTS.c.team_id)
    )
    with engine.connect() as conn:
        return [Workspace(row.team_id, row.enterprise_id) for row in conn.execute(query)]


def token_rotator(settings: Settings, client: PooledWebClient) -> TokenRotator:
    """Refreshes rotating tokens with oauth.v2.access at SLACK_API_URL (``client`` has no
    token: the app's client id and secret authenticate the call)."""
    return TokenRotator(
        client_id=str(settings.slack_client_id),
        client_secret=_secret(settings),
        client=client,
    )


def slack_clients(settings: Settings, base: PooledWebClient, engine: Engine) -> SlackClients:
    """Each workspace's Web API client: the one token's, or in multi-workspace mode the
    workspace's installation's."""
    if not settings.multi_workspace:
        return SlackClients(base)
    tokens = InstalledTokens(installation_store(settings, engine), token_rotator(settings, base))
    return SlackClients(base, tokens)


def authorization_url(settings: Settings) -> str:
    """Slack's page where an admin approves the install: next to SLACK_API_URL's ``/api/``
    (https://slack.com/oauth/v2/authorize; on the stand-in, its own)."""
    api = settings.slack_api_url.rstrip("/")
    return api.removesuffix("/api") + "/oauth/v2/authorize"


def oauth_settings(settings: Settings, engine: Engine, client: PooledWebClient) -> OAuthSettings:
    """Bolt's OAuth flow: ``/slack/install`` shows "Add to Slack" and sets a state cookie;
    ``/slack/oauth_redirect`` checks the state (once, within STATE_SECONDS, in the same
    browser), exchanges the code with oauth.v2.access and stores the installation."""
    store = installation_store(settings, engine)
    oauth = OAuthSettings(
        client_id=str(settings.slack_client_id),
        client_secret=_secret(settings),
        scopes=list(BOT_SCOPES),
        user_scopes=[],
        redirect_uri=f"{settings.public_url}{REDIRECT_PATH}",
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        authorization_url=authorization_url(settings),
        installation_store=store,
        token_rotation_expiration_minutes=ROTATE_BEFORE_MINUTES,
        state_store=SQLAlchemyOAuthStateStore(expiration_seconds=STATE_SECONDS, engine=engine),
        state_expiration_seconds=STATE_SECONDS,
        callback_options=CallbackOptions(success=_installed, failure=_refused),
    )
    # Bolt's own would refresh tokens at slack.com whatever SLACK_API_URL says; one auth.test
    # per token rather than per request (a click's ack waits for it).
    authorize = InstallationStoreAuthorize(
        logger=logging.getLogger("slack_bolt.paylink"),
        installation_store=store,
        client_id=oauth.client_id,
        client_secret=oauth.client_secret,
        token_rotation_expiration_minutes=ROTATE_BEFORE_MINUTES,
        cache_enabled=True,
        client=client,
    )
    authorize.authorize_result_cache = _Recent(AUTH_CACHE_SIZE)
    oauth.authorize = authorize
    return oauth


class _Recent(OrderedDict):
    """A dict that forgets its oldest entries beyond ``size``: Bolt's cache of auth.test
    answers, one per token, would otherwise grow by two tokens a day per workspace that
    rotates them."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def __setitem__(self, key: object, value: object) -> None:
        super().__setitem__(key, value)
        while len(self) > self.size:
            self.popitem(last=False)


def _installed(args: SuccessArgs) -> BoltResponse:
    installation = args.installation
    log.info(
        "installed in a workspace",
        extra={"team": installation.team_id, "user": installation.user_id},
    )
    return args.default.success(args)


def _refused(args: FailureArgs) -> BoltResponse:
    reason = args.reason
    log.warning("install refused: %s", reason)
    words = FAILURES.get(reason, "The install did not complete: start it again.")
    body = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Paylink: not installed"
        "</title></head><body style='font-family: sans-serif; text-align: center'>"
        f"<h2>Paylink was not installed</h2><p>{html.escape(words)}</p>"
        f"<p><a href='{INSTALL_PATH}'>Open the install page again</a></p>"
        f"<p><small>(reason: {html.escape(reason)})</small></p></body></html>"
    )
    return BoltResponse(
        status=args.suggested_status_code,
        body=body,
        headers={"Content-Type": "text/html; charset=utf-8"},
    )


def _secret(settings: Settings) -> str:
    secret = settings.slack_client_secret
    return secret.get_secret_value() if secret is not None else ""
