"""Wires one running bot together: database, XPay client, service, Slack, background work."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from bot.config import Settings
from bot.db import WalCheckpointer, make_engine
from bot.links.jobs import Jobs
from bot.links.outbox import Deliver, OutboxDrainer
from bot.links.service import LinkService
from bot.links.store import CREATE, DECISION, PAYMENT, LinkStore
from bot.links.tables import Link, OutboxMessage
from bot.links.wakeup import WakeListener, WakeSender, socket_path
from bot.metrics import Metrics
from bot.xpay.client import XPayClient

if TYPE_CHECKING:
    from bot.slack.delivery import SlackDelivery
    from bot.slack.transport import PooledWebClient

log = logging.getLogger("bot")


Role = Literal["all", "web", "worker"]


class Runtime:
    """Everything a process needs; ``slack=False`` for the CLI's create/status commands.

    ``role`` splits the bot over two processes when PAYLINK_WORKER=separate: "web" answers
    HTTP (acks and webhooks) and wakes the worker; "worker" delivers the outbox (Slack
    messages and gateway calls) and runs the periodic jobs. "all" does everything.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        slack: bool = True,
        jobs_interval: float = 30.0,
        role: Role = "all",
    ):
        self.settings = settings
        self.role = role
        self.metrics = Metrics()
        self.engine = make_engine(settings.database_url)
        self.checkpointer = (
            WalCheckpointer(self.engine) if settings.database_url.startswith("sqlite") else None
        )
        self.store = LinkStore(self.engine)
        api_key, account_id, hmac_secret = settings.xpay_credentials()
        self.xpay = XPayClient(
            settings.xpay_url,
            api_key,
            account_id,
            hmac_secret,
            read_timeout=settings.xpay_timeout,
        )
        self.gateway_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="gateway")
        self.slack_client: PooledWebClient | None = None
        self.delivery_client: PooledWebClient | None = None
        self.bolt_app = None
        self.drainer: OutboxDrainer | None = None
        self.decisions: ThreadPoolExecutor | None = None
        self.after_ack: ThreadPoolExecutor | None = None
        self._wake_listener: WakeListener | None = None
        self._wake_sender: WakeSender | None = None

        from bot.slack.approvers import ApproverDirectory

        if slack and settings.slack_bot_token:
            from bot.slack.app import make_web_client

            self.slack_client = make_web_client(settings)
        self.approvers = ApproverDirectory(self.slack_client, settings.paylink_approvers)
        self.service = LinkService(
            self.store,
            self.xpay,
            is_approver=self.approvers.may_decide,
            allow_self_approval=settings.paylink_allow_self_approval,
            executor=self.gateway_pool,
            via_worker=role == "web",
            reconcile_after=timedelta(seconds=settings.paylink_reconcile_after),
            metrics=self.metrics,
        )
        self.jobs = Jobs(self.service, interval=jobs_interval)
        if self.slack_client is not None and role != "worker":
            from bot.slack.app import build_bolt_app
            from bot.slack.context import SlackContext

            # Two threads: decisions are short database writes, which SQLite serialises anyway.
            self.decisions = ThreadPoolExecutor(max_workers=2, thread_name_prefix="decide")
            # Many: these wait on Slack, and a modal must open within 3 s of its command.
            self.after_ack = ThreadPoolExecutor(max_workers=32, thread_name_prefix="after-ack")
            self.slack_context = SlackContext(
                settings,
                self.service,
                self.approvers,
                self.slack_client,
                self.decisions,
                self.after_ack,
            )
            self.bolt_app = build_bolt_app(self.slack_context, self.slack_client)
        if role == "web":
            self._wake_sender = WakeSender(socket_path(settings.database_url))
            self.store.on_commit(self._wake_sender)
        elif self.slack_client is not None:
            from bot.slack.delivery import SlackDelivery

            self.delivery_client = make_web_client(settings, retries=False)
            slack_delivery = SlackDelivery(
                self.delivery_client, self.store, approvers_configured=self.approvers.configured
            )
            self.drainer = OutboxDrainer(
                self.store,
                self._deliver(slack_delivery),
                together={PAYMENT: self.service.apply_queued},
            )

    def _deliver(self, slack: SlackDelivery) -> Deliver:
        """The drainer's callback: what a web process queued for the worker is done here
        (gateway jobs start in the gateway pool, so the drainer does not wait for XPay;
        payment webhooks are applied; clicks decided, a refusal told to the clicker); the
        rest go to Slack."""

        def deliver(message: OutboxMessage, link: Link) -> None:
            if message.kind == CREATE:
                if self.service.claim_creation(link.id):
                    self.service.start_creation(link.id)
            elif message.kind == PAYMENT:
                self.service.apply_queued([message])
            elif message.kind == DECISION:
                click = message.payload
                refusal = self.service.decide_click(click["action"], link.id, click["user"])
                if refusal:
                    slack.tell(click.get("channel"), click["user"], refusal)
            else:
                slack(message, link)

        return deliver

    def start(self) -> None:
        """Start the background work of this role: outbox drainer and periodic jobs."""
        if self.slack_client is not None and self.role != "worker":
            try:
                self.slack_context.team_url = self.slack_client.auth_test().get("url")
            except Exception as exc:  # the bot still works; App Home just lacks card links
                log.warning("auth.test failed: %s", type(exc).__name__)
        if self.slack_client is not None:
            # Warm the approver groups so the first click decided here does not wait on Slack.
            threading.Thread(target=self.approvers.refresh, name="approvers", daemon=True).start()
        if self.settings.database_url.startswith("sqlite"):
            from bot.db import claim_sqlite_file
            from bot.links.jobs import release_after_restart

            # Leases and claims are taken by the process doing the work: a web process
            # beside a worker holds none, so it must not release the worker's.
            if self.role != "web" and claim_sqlite_file(self.settings.database_url, self.role):
                release_after_restart(self.store)
        if self.checkpointer is not None:
            self.checkpointer.start()
        if self.role == "web":
            return
        if self.drainer:
            self.drainer.start()
            if self.role == "worker":
                path = socket_path(self.settings.database_url)
                self._wake_listener = WakeListener(path, self.drainer.wake).start()
        self.jobs.start()

    def stop(self) -> None:
        """Stop background work and release connections."""
        # First: a decision may queue outbox rows or start a link's creation.
        for pool in (self.decisions, self.after_ack):
            if pool is not None:
                pool.shutdown(wait=True)
        self.jobs.stop()
        if self._wake_listener:
            self._wake_listener.close()
        if self._wake_sender:
            self._wake_sender.close()
        if self.drainer:
            self.drainer.stop()
        self.gateway_pool.shutdown(wait=True, cancel_futures=False)
        for client in (self.slack_client, self.delivery_client):
            if client is not None:
                client.close()
        self.xpay.close()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.store.close()
