"""The WSGI app: Slack events, XPay webhooks, health, metrics and the sandbox gateway."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from werkzeug.exceptions import HTTPException

from bot.xpay.webhooks import WebhookError, parse_payment_event, verify_webhook

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger("bot.http")

MAX_BODY = 1024 * 1024
SLOW_MS = 1000.0  # a request this slow is logged even when it succeeded


def create_app(runtime: Runtime) -> Flask:
    """Mount every route on one Flask app (served by waitress)."""
    app = Flask("paylink")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    settings, service, metrics = runtime.settings, runtime.service, runtime.metrics

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _log(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.requests.labels(route, str(response.status_code)).inc()
        elapsed = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        # Failed and slow requests get a line; the rest are counted in /metrics (a line per
        # webhook and click cost a tenth of the CPU at a few hundred requests a second).
        if response.status_code < 400 and elapsed < SLOW_MS:
            return response
        log.info(
            "%s %s %s %.1fms",
            request.method,
            route,
            response.status_code,
            elapsed,
            extra={"route": route, "status": response.status_code},
        )
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

    @app.post("/xpay/webhook")
    def xpay_webhook() -> Any:
        raw = request.get_data(cache=False)
        try:
            data = verify_webhook(raw, request.headers.get("x-signature"), settings.webhook_secrets)
            event = parse_payment_event(data)
        except WebhookError as exc:
            metrics.webhooks.labels(type(exc).__name__).inc()
            return jsonify(success=False, reason=exc.reason), exc.http_status
        result = service.apply_payment(event)
        metrics.webhooks.labels(result.outcome).inc()
        if result.outcome == "unknown_intent":
            return jsonify(success=False, reason="unknown payment intent"), 404
        return jsonify(success=True, outcome=result.outcome)

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
    return app
