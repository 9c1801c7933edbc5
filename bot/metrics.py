"""Prometheus metrics, on a registry of our own so several apps in one process stay apart."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """The metrics one running bot exposes at /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "paylink_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.webhooks = Counter(
            "paylink_webhooks", "XPay webhooks by outcome", ["outcome"], registry=self.registry
        )
        self.gateway_seconds = Histogram(
            "paylink_gateway_seconds",
            "XPay call latency",
            ["call", "result"],
            registry=self.registry,
        )
        self.jobs_backlog = Gauge(
            "paylink_jobs_backlog",
            "Queued jobs not done yet (Slack messages, link creations, payments, clicks)",
            registry=self.registry,
        )
        self.jobs_age = Gauge(
            "paylink_jobs_oldest_seconds",
            "Age of the oldest queued job not done yet",
            registry=self.registry,
        )
