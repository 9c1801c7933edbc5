"""The WSGI app: Slack events (and in multi-workspace mode the install flow), XPay webhooks,
health, metrics and the sandbox gateway."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.request import BoltRequest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import text
from werkzeug.exceptions import HTTPException

from bot.links.stores import UnknownStore
from bot.links.workspace_settings import NoSecretKey
from bot.secretbox import WrongKey
from bot.xpay.webhooks import (
    MAX_WEBHOOK_BYTES,
    WebhookError,
    parse_payment_event,
    verify_webhook,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from slack_bolt import App

    from bot.config import Settings
    from bot.links.queue import JobQueue
    from bot.links.service import LinkService
    from bot.links.store import LinkStore
    from bot.links.stores import StoreGateways
    from bot.metrics import Metrics
    from bot.xpay.keys import GatewayKeys

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024  # bytes; a larger request is refused on its Content-Length, unread
SLOW_MS = 1000.0  # a request this slow is logged even when it succeeded
WEBHOOK_PATH = "/xpay/webhook"
STORE_WEBHOOK_PREFIX = WEBHOOK_PATH + "/"  # + a store's id: its own webhook URL
SLACK_PATH = "/slack/events"


class ApproverHealth(Protocol):
    """What /healthz reports of the approver directory (``bot.slack.approvers``)."""

    @property
    def groups_state(self) -> str: ...


class WebRuntime(Protocol):
    """The parts of the process the routes use; ``bot.runtime.Runtime`` has them all.

    A protocol rather than ``Runtime`` itself, so the web layer never imports the entry points.
    """

    settings: Settings
    metrics: Metrics
    store: LinkStore
    queue: JobQueue
    service: LinkService
    approvers: ApproverHealth
    gateway_keys: GatewayKeys
    stores: StoreGateways
    bolt_app: App | None  # None when this process does not answer Slack (no token, worker)


def create_app(runtime: WebRuntime) -> Flask:
    """Mount every route on one Flask app (served by waitress)."""
    app = Flask("paylink")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    settings, metrics = runtime.settings, runtime.metrics

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _log(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        started = g.get("started", time.perf_counter())
        _observe(metrics, request.method, route, response.status_code, started)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify(success=False, reason=exc.description), exc.code or 500

    @app.get("/healthz")
    def healthz() -> Any:
        # "paused": Slack has not confirmed the approver groups' members lately, so they
        # cannot approve; the rest works, so the status stays ok.
        groups = runtime.approvers.groups_state
        try:
            with runtime.store.reading() as s:
                s.execute(text("SELECT 1"))
                backlog, age = runtime.queue.backlog(s)
        except Exception as exc:
            log.warning("health check: database unavailable: %s", type(exc).__name__)
            return jsonify(
                status="unavailable", database="unavailable", approver_groups=groups
            ), 503
        # The job queue's backlog, under the keys health checks and monitors already read.
        return jsonify(
            status="ok",
            database="ok",
            approver_groups=groups,
            outbox_backlog=backlog,
            outbox_oldest_seconds=round(age, 1),
        )

    @app.get("/metrics")
    def prometheus() -> Response:
        with runtime.store.reading() as s:
            backlog, age = runtime.queue.backlog(s)
        metrics.jobs_backlog.set(backlog)
        metrics.jobs_age.set(age)
        return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)

    oauth = runtime.bolt_app.oauth_flow if runtime.bolt_app is not None else None
    if oauth is not None:  # multi-workspace mode: Bolt's install flow
        from slack_bolt.adapter.flask.handler import to_bolt_request, to_flask_response

        @app.get(oauth.install_path)
        def slack_install() -> Response:
            return to_flask_response(oauth.handle_installation(to_bolt_request(request)))

        @app.get(oauth.redirect_uri_path)
        def slack_oauth_redirect() -> Response:
            return to_flask_response(oauth.handle_callback(to_bolt_request(request)))

    if settings.sandbox:
        from bot.xpay.sandbox import SandboxConfig, make_sandbox_blueprint

        app.register_blueprint(
            make_sandbox_blueprint(
                SandboxConfig.from_settings(settings, runtime.gateway_keys), runtime.store.sessions
            ),
            url_prefix="/sandbox",
        )
    app.wsgi_app = front_routes(runtime, app.wsgi_app)  # type: ignore[method-assign]
    return app


Answer = tuple[int, dict[str, object] | bytes, list[tuple[str, str]]]


def front_routes(runtime: WebRuntime, fallback: WSGIApplication) -> WSGIApplication:
    """``POST /xpay/webhook`` and ``POST /slack/events`` as plain WSGI in front of Flask,
    ``fallback`` for the rest.

    Every webhook and every Slack request of a burst comes through here, and Flask's request
    and response machinery cost more than a webhook's own work (verify, one insert) and a
    tenth of a click's. The answers are the same as every other route's: JSON with a reason
    for a refusal (401/400/413 from :mod:`bot.xpay.webhooks`, 404 for an unknown intent,
    413 for a Slack body over 1 MB, 401 for one Slack did not sign, 400 for one Bolt cannot
    read), Bolt's own otherwise.
    """
    settings = runtime.settings
    secrets = runtime.gateway_keys.webhook_secrets()
    service, metrics, stores = runtime.service, runtime.metrics, runtime.stores
    bolt_app = runtime.bolt_app
    signing_secret = settings.slack_signing_secret
    # Without a signing secret (Socket Mode) nothing could be verified: no Slack route.
    verifier = (
        SignatureVerifier(signing_secret.get_secret_value())
        if bolt_app is not None and signing_secret
        else None
    )

    def webhook_secrets(intent: str | None, store_id: int | None) -> tuple[list[str], int | None]:
        """The secrets a webhook must be signed with, and the store they are of (None: the
        environment's): store ``store_id``'s for its own URL; on the plain URL, those of the
        store payment intent ``intent`` is in (the environment's for its links, and always
        while no workspace has a store)."""
        if store_id is not None:
            return stores.webhook_secrets(store_id), store_id
        if not stores.workspaces.any_stores():
            return secrets, None
        owner = stores.store_of_intent(intent)[1]
        return stores.webhook_secrets(owner), owner

    def webhook(environ: WSGIEnvironment, store_id: int | None = None) -> Answer:
        """The answer to one payment webhook (to store ``store_id``'s own URL, if given)."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or MAX_WEBHOOK_BYTES + 1)
        except ValueError:
            return 400, {"success": False, "reason": "invalid Content-Length"}, []
        # Never more than one byte past the limit: verify_webhook then answers 413.
        raw = environ["wsgi.input"].read(min(max(length, 0), MAX_WEBHOOK_BYTES + 1))
        peeked = _peek_intent(raw) if store_id is None else None
        try:
            keys, signer = webhook_secrets(peeked, store_id)
        except UnknownStore:
            return 404, {"success": False, "reason": "unknown store"}, []
        except (NoSecretKey, WrongKey):
            # XPay retries a 5xx: once PAYLINK_SECRET_KEY is right, the webhook gets through.
            log.error(
                "webhook: a store's webhook secret cannot be decrypted "
                "(PAYLINK_SECRET_KEY is missing or another key): run `paylink check`"
            )
            return 503, {"success": False, "reason": "webhook secret unavailable"}, []
        try:
            data = verify_webhook(raw, environ.get("HTTP_X_SIGNATURE"), keys)
            event = parse_payment_event(data)
        except WebhookError as exc:
            metrics.webhooks.labels(type(exc).__name__).inc()
            return exc.http_status, {"success": False, "reason": exc.reason}, []
        if store_id is None and event.payment_intent_id != peeked:
            # The body names another intent than the one whose store's secret was asked
            # for: the intent's own store must have signed it (or the environment, for its).
            if stores.store_of_intent(event.payment_intent_id)[1] != signer:
                metrics.webhooks.labels("WebhookSignatureError").inc()
                return 401, {"success": False, "reason": "not signed by the intent's store"}, []
        elif store_id is not None:
            found, owner = stores.store_of_intent(event.payment_intent_id)
            if found and owner != store_id:
                # Signed by this store, about another's link: this store cannot change it.
                metrics.webhooks.labels("other_store").inc()
                return 409, {"success": False, "reason": "payment intent of another store"}, []
        result = service.receive_payment(event)
        metrics.webhooks.labels(result.outcome).inc()
        if result.outcome == "unknown_intent":
            return 404, {"success": False, "reason": "unknown payment intent"}, []
        return 200, {"success": True, "outcome": result.outcome}, []

    def slack_event(environ: WSGIEnvironment) -> Answer:
        """Bolt's answer to one Slack request, once its signature checked out."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return 400, {"success": False, "reason": "invalid Content-Length"}, []
        if length > MAX_BODY:
            return 413, {"success": False, "reason": "request body too large"}, []
        request = WsgiHttpRequest(environ)
        try:
            body = request.get_body()
        except UnicodeDecodeError:
            return 400, {"success": False, "reason": "request body is not UTF-8"}, []
        headers = request.get_headers()
        refusal = _unsigned(verifier, body, headers)  # type: ignore[arg-type]
        if refusal:
            return 401, {"success": False, "reason": refusal}, []
        try:
            # Bolt parses the body (and reads team/user ids out of it) before it checks the
            # signature, and an authentic body it cannot read would otherwise be a 500.
            # Slack itself never sends such a body.
            bolt_request = BoltRequest(body=body, query=request.query_string, headers=headers)
        except (ValueError, TypeError, AttributeError, KeyError, RecursionError):
            return 400, {"success": False, "reason": "malformed request body"}, []
        answer = bolt_app.dispatch(bolt_request)  # type: ignore[union-attr]
        sent = [(name, value) for name, values in answer.headers.items() for value in values]
        return answer.status, answer.body.encode(), sent

    routes = {WEBHOOK_PATH: webhook} | ({SLACK_PATH: slack_event} if verifier else {})

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        route = routes.get(path)
        store = path.removeprefix(STORE_WEBHOOK_PREFIX)
        if route is None and store != path and store.isdigit() and len(store) < 12:
            route = functools.partial(webhook, store_id=int(store))
            path = STORE_WEBHOOK_PREFIX + "<store id>"  # one metrics label for every store
        if route is None:
            return fallback(environ, start_response)
        method, started = environ.get("REQUEST_METHOD", ""), time.perf_counter()
        headers: list[tuple[str, str]] = []
        if method != "POST":
            status, body = 405, {"success": False, "reason": "only POST is allowed here"}
            headers.append(("Allow", "POST"))
        else:
            try:
                status, body, headers = route(environ)
            except Exception:
                log.exception("%s failed", path)  # XPay and Slack retry a 5xx
                status, body = 500, {"success": False, "reason": "internal error"}
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            headers.append(("Content-Type", "application/json"))
        headers = [h for h in headers if h[0].lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        _observe(metrics, method, path, status, started)
        return [body]

    return app


def _peek_intent(raw: bytes) -> str | None:
    """The payment intent an unverified webhook names (only to choose the key that must
    have signed it), or None."""
    if len(raw) > MAX_WEBHOOK_BYTES:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    intent = data.get("payment_intent_id") if isinstance(data, dict) else None
    # Stripped as PaymentEvent strips it: the key is chosen for the id the event is about.
    return (intent.strip() or None) if isinstance(intent, str) else None


def _unsigned(verifier: SignatureVerifier, body: str, headers: Mapping[str, Any]) -> str | None:
    """Why a request to the Slack route is not one Slack signed in the last five minutes,
    or None. Checked before anything parses the body: a stranger's body is never read."""
    timestamp = headers.get("x-slack-request-timestamp")
    signature = headers.get("x-slack-signature")
    if not timestamp or not signature:
        return "missing Slack signature"
    try:
        signed = verifier.is_valid(body, timestamp, signature)
    except ValueError:  # slack_sdk reads the timestamp with int()
        return "invalid X-Slack-Request-Timestamp"
    return None if signed else "invalid or expired Slack signature"


def _observe(metrics: Metrics, method: str, route: str, status: int, started: float) -> None:
    """Count a request; log it only when it failed or was slow: a line for every webhook
    and click would cost CPU under load, and /metrics counts them anyway."""
    metrics.requests.labels(route, str(status)).inc()
    elapsed = (time.perf_counter() - started) * 1000
    if status < 400 and elapsed < SLOW_MS:
        return
    log.info(
        "%s %s %s %.1fms",
        method,
        route,
        status,
        elapsed,
        extra={"route": route, "status": status},
    )
