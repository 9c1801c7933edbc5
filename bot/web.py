"""The WSGI app: Slack events, XPay webhooks, health, metrics and the sandbox gateway."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from werkzeug.exceptions import HTTPException

from bot.xpay.webhooks import (
    MAX_WEBHOOK_BYTES,
    WebhookError,
    parse_payment_event,
    verify_webhook,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from bot.metrics import Metrics
    from bot.runtime import Runtime

log = logging.getLogger("bot.http")

MAX_BODY = 1024 * 1024
SLOW_MS = 1000.0  # a request this slow is logged even when it succeeded
WEBHOOK_PATH = "/xpay/webhook"


def create_app(runtime: Runtime) -> Flask:
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

    # Without a signing secret (Socket Mode) nothing could be verified: no HTTP route at all.
    if runtime.bolt_app is not None and settings.slack_signing_secret:
        from slack_bolt.adapter.flask.handler import to_bolt_request, to_flask_response

        bolt_app = runtime.bolt_app

        @app.post("/slack/events")
        def slack_events() -> Any:
            try:
                # Bolt parses the body (and reads team/user ids out of it) before it checks
                # the signature: invalid JSON, or JSON of another shape, from anyone would
                # otherwise be a 500. Slack itself never sends such a body.
                bolt_request = to_bolt_request(request)
            except (ValueError, TypeError, AttributeError, KeyError):
                return jsonify(success=False, reason="malformed request body"), 400
            return to_flask_response(bolt_app.dispatch(bolt_request))

    @app.get("/healthz")
    def healthz() -> Any:
        try:
            with runtime.store.reading() as s:
                s.execute(text("SELECT 1"))
                backlog, age = runtime.store.outbox_backlog(s)
        except Exception as exc:
            log.warning("health check: database unavailable: %s", type(exc).__name__)
            return jsonify(status="unavailable", database="unavailable"), 503
        return jsonify(
            status="ok", database="ok", outbox_backlog=backlog, outbox_oldest_seconds=round(age, 1)
        )

    @app.get("/metrics")
    def prometheus() -> Response:
        with runtime.store.reading() as s:
            backlog, age = runtime.store.outbox_backlog(s)
        metrics.outbox_backlog.set(backlog)
        metrics.outbox_age.set(age)
        return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)

    if settings.sandbox:
        from bot.xpay.sandbox import SandboxConfig, make_sandbox_blueprint

        app.register_blueprint(
            make_sandbox_blueprint(SandboxConfig.from_settings(settings), runtime.store.sessions),
            url_prefix="/sandbox",
        )
    app.wsgi_app = webhook_route(runtime, app.wsgi_app)  # type: ignore[method-assign]
    return app


def webhook_route(runtime: Runtime, fallback: WSGIApplication) -> WSGIApplication:
    """``POST /xpay/webhook`` as plain WSGI in front of Flask, ``fallback`` for the rest.

    Every payment webhook of a burst comes through here, and Flask's request and response
    machinery cost more than the webhook's own work (verify, one insert). The answers are
    the same JSON as every other route's: 200 with the outcome, 404 for an unknown intent,
    401/400/413 with a reason from :mod:`bot.xpay.webhooks`.
    """
    secrets, service, metrics = runtime.settings.webhook_secrets, runtime.service, runtime.metrics

    def handle(environ: WSGIEnvironment) -> tuple[int, dict[str, object]]:
        """The status and JSON body of the answer to one webhook."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or MAX_WEBHOOK_BYTES + 1)
        except ValueError:
            return 400, {"success": False, "reason": "invalid Content-Length"}
        # Never more than one byte past the limit: verify_webhook then answers 413.
        raw = environ["wsgi.input"].read(min(max(length, 0), MAX_WEBHOOK_BYTES + 1))
        try:
            data = verify_webhook(raw, environ.get("HTTP_X_SIGNATURE"), secrets)
            event = parse_payment_event(data)
        except WebhookError as exc:
            metrics.webhooks.labels(type(exc).__name__).inc()
            return exc.http_status, {"success": False, "reason": exc.reason}
        result = service.receive_payment(event)
        metrics.webhooks.labels(result.outcome).inc()
        if result.outcome == "unknown_intent":
            return 404, {"success": False, "reason": "unknown payment intent"}
        return 200, {"success": True, "outcome": result.outcome}

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != WEBHOOK_PATH:
            return fallback(environ, start_response)
        method, started = environ.get("REQUEST_METHOD", ""), time.perf_counter()
        headers = [("Content-Type", "application/json")]
        if method != "POST":
            status, body = 405, {"success": False, "reason": "only POST is allowed here"}
            headers.append(("Allow", "POST"))
        else:
            try:
                status, body = handle(environ)
            except Exception:
                log.exception("webhook failed")  # XPay retries a 5xx
                status, body = 500, {"success": False, "reason": "internal error"}
        payload = json.dumps(body).encode()
        headers.append(("Content-Length", str(len(payload))))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        _observe(metrics, method, WEBHOOK_PATH, status, started)
        return [payload]

    return app


def _observe(metrics: Metrics, method: str, route: str, status: int, started: float) -> None:
    """Count a request; log it only when it failed or was slow (a line per webhook and
    click cost a tenth of the CPU at a few hundred requests a second; /metrics counts)."""
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
