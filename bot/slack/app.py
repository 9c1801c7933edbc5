"""Builds the Slack Web API client and the Bolt app with every listener registered."""

from __future__ import annotations

import logging

from slack_bolt import App
from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.config import Settings
from bot.slack.context import SlackContext
from bot.slack.listeners import register_all
from bot.slack.transport import PooledWebClient

log = logging.getLogger("bot.slack")


def make_web_client(settings: Settings, *, retries: bool = True) -> PooledWebClient:
    """A WebClient for SLACK_API_URL that keeps its connections open; with ``retries``,
    connection errors, 429 and 5xx are retried in the call. The job runner's client has none:
    a retried chat.postMessage can post twice, so the job runner retries itself, after looking
    for the earlier post. In multi-workspace mode it has no token: each workspace's comes
    from its installation (bot.slack.clients)."""
    token = (
        settings.slack_bot_token.get_secret_value()
        if settings.slack_bot_token and not settings.multi_workspace
        else None
    )
    handlers = (
        [
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=2),
            ServerErrorRetryHandler(max_retry_count=2),
        ]
        if retries
        else []
    )
    return PooledWebClient(
        token=token,
        base_url=settings.slack_api_url
        if settings.slack_api_url.endswith("/")
        else settings.slack_api_url + "/",
        timeout=10,
        retry_handlers=handlers,
    )


def build_bolt_app(ctx: SlackContext, client: WebClient, oauth: OAuthSettings | None = None) -> App:
    """The Bolt app: request verification on, every listener acknowledged before slow work;
    with ``oauth`` (multi-workspace mode) the install flow, and each request authorized by
    its workspace's installation."""
    settings = ctx.settings
    bolt_logger = logging.getLogger("slack_bolt.paylink")
    # Bolt also reads SLACK_BOT_TOKEN from the environment and warns that our client (which
    # carries the same token, with retry handlers) takes precedence: expected, so not logged.
    bolt_logger.addFilter(
        lambda record: record.getMessage() != warning_client_prioritized_and_token_skipped()
    )
    app = App(
        client=client,
        signing_secret=settings.slack_signing_secret.get_secret_value()
        if settings.slack_signing_secret
        else "",
        token_verification_enabled=False,
        # Listeners run in the request's thread and only ack (a submission: after checking
        # it); the rest goes to SlackContext's pools, so the answer leaves as soon as they
        # return instead of at Bolt's next ack poll (docs/decisions/0012-ack-first.md).
        process_before_response=True,
        logger=bolt_logger,
        oauth_settings=oauth,
        authorize=oauth.authorize if oauth is not None else None,
    )

    @app.error
    def on_error(error: Exception) -> None:
        # Never log the request body: it carries customer details.
        log.error("listener failed: %s", type(error).__name__, exc_info=error)

    register_all(app, ctx)
    return app
