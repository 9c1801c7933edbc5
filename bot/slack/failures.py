"""What a failed Slack call means for whoever runs ``paylink``: a token Slack refuses, Slack
out of reach from this machine, or Slack answering with an error of its own. Each needs a
different fix, so each gets its own line."""

from __future__ import annotations

from urllib.error import URLError

from slack_sdk.errors import SlackApiError

# Slack's answers that mean "this token will not do", whatever the method.
TOKEN_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
        "missing_scope",
    }
)
TOKEN_FIXES = {
    "SLACK_BOT_TOKEN": "reinstall the app and copy the Bot User OAuth Token (xoxb-…)",
    # a workspace's installation's token, in multi-workspace mode
    "SLACK_CLIENT_ID": "install Paylink in that workspace again from /slack/install",
    "SLACK_APP_TOKEN": (
        "make an app-level token (xapp-…) with connections:write on your Slack app's "
        "Basic Information page"
    ),
}


def slack_failure(exc: SlackApiError | OSError, *, call: str, setting: str, api_url: str) -> str:
    """One line on why ``call``, made with the token in ``setting``, failed, and the fix."""
    if isinstance(exc, SlackApiError):
        error = exc.response.get("error") if exc.response is not None else None
        if error in TOKEN_ERRORS:
            return f"{setting}: Slack refused it ({call}: {error}): {TOKEN_FIXES[setting]}"
        status = exc.response.status_code if exc.response is not None else 0
        return (
            f"Slack answered {call} with {error or f'HTTP {status}'}: try again in a few "
            "minutes; if it lasts, see https://slack-status.com"
        )
    return (
        f"cannot reach Slack at {api_url} ({_network_reason(exc)}): check this machine's "
        "network, DNS, proxy and firewall for outbound HTTPS, and SLACK_API_URL"
    )


def _network_reason(exc: BaseException) -> str:
    """The innermost cause of a failed connection, in words: "Connection refused", "Name or
    service not known", "timed out" (the outer ones only wrap it)."""
    while True:
        inner = exc.reason if isinstance(exc, URLError) else exc.__cause__ or exc.__context__
        if not isinstance(inner, BaseException):
            break
        exc = inner
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
