"""Wires one running bot together: database, XPay client, service, Slack, background work."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from bot.config import Settings
from bot.db import make_engine
from bot.links.digest import Digests
from bot.links.followup import FollowUp, Inline, Queued, QueuedWork
from bot.links.intake import JobIntake
from bot.links.periodic import Periodic, release_after_restart
from bot.links.policy import ApprovalPolicy
from bot.links.queue import JobQueue
from bot.links.reminders import Reminders
from bot.links.runner import JobRunner
from bot.links.service import LinkService
from bot.links.states import Status
from bot.links.store import LinkStore
from bot.links.stores import StoreGateways
from bot.links.wakeup import WakeListener, WakeSender, socket_path
from bot.links.workspace_settings import WorkspaceSettings
from bot.links.workspaces import Workspace
from bot.metrics import Metrics
from bot.sqlite import WalCheckpointer, claim_sqlite_file
from bot.xpay.client import XPayClient
from bot.xpay.keys import GatewayKeys

if TYPE_CHECKING:
    from bot.slack.clients import SlackClients
    from bot.slack.transport import PooledWebClient

log = logging.getLogger(__name__)


Role = Literal["all", "web", "worker"]


@dataclass(frozen=True)
class Plan:
    """What a process of one role runs."""

    answers_slack: bool  # Bolt's listeners: acks, modals, clicks
    queues_follow_up: bool  # creations, webhooks and clicks go to a worker as jobs
    runs_jobs: bool  # the job runner and the periodic timers; holds leases and claims
    woken_by_socket: bool  # a web process on this host wakes its job runner


# "web" answers HTTP (acks and webhooks) and wakes the worker; "worker" runs the jobs (Slack
# messages and the follow-up work "web" queues) and the periodic timers; "all" does both,
# the follow-up inline.
PLANS: dict[Role, Plan] = {
    "all": Plan(answers_slack=True, queues_follow_up=False, runs_jobs=True, woken_by_socket=False),
    "web": Plan(answers_slack=True, queues_follow_up=True, runs_jobs=False, woken_by_socket=False),
    "worker": Plan(
        answers_slack=False, queues_follow_up=False, runs_jobs=True, woken_by_socket=True
    ),
}


class Runtime:
    """Everything a process needs; ``slack=False`` for the CLI's create/status commands.

    ``role`` splits the bot over two processes (see :data:`PLANS`); ``jobs_interval`` is the
    periodic timers' interval in seconds.
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
        self.plan = PLANS[role]
        self.metrics = Metrics()
        self.engine = make_engine(settings.database_url)
        self.on_sqlite = settings.database_url.startswith("sqlite")
        self.checkpointer = WalCheckpointer(self.engine) if self.on_sqlite else None
        self.store = LinkStore(self.engine)
        self.queue = JobQueue(self.store)
        self.gateway_keys = GatewayKeys(settings, self.store.sessions)
        self.xpay = XPayClient(
            settings.xpay_url, self.gateway_keys.xpay, read_timeout=settings.xpay_timeout
        )
        self.gateway_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="gateway")
        self.inline = Inline(self.gateway_pool)
        self.intake = JobIntake(self.store) if self.plan.queues_follow_up else None
        follow_up: FollowUp = Queued(self.intake) if self.intake else self.inline
        self.slack_client: PooledWebClient | None = None
        self.clients: SlackClients | None = None  # each workspace's client (bot.slack.clients)
        self.delivery_client: PooledWebClient | None = None
        self.bolt_app = None
        self.runner: JobRunner | None = None
        self.decisions: ThreadPoolExecutor | None = None
        self.after_ack: ThreadPoolExecutor | None = None
        self._wake_listener: WakeListener | None = None
        self._wake_sender: WakeSender | None = None
        self.team_url: str | None = None  # the workspace's address, from auth.test
        # The single workspace (SLACK_BOT_TOKEN's), once auth.test has said which it is.
        self.workspace: Workspace | None = None
        self.workspace_retry = 30.0  # seconds between auth.test calls until Slack answers one
        self._stopping = threading.Event()

        from bot.slack.approvers import WorkspaceApprovers

        if slack and (settings.slack_bot_token or settings.multi_workspace):
            from bot.slack.app import make_web_client
            from bot.slack.oauth import slack_clients

            self.slack_client = make_web_client(settings)
            self.clients = slack_clients(settings, self.slack_client, self.engine)
        # Each workspace's settings (stored in Slack's Settings over the environment's) and
        # XPay stores; with none stored, everything is the environment's.
        self.workspaces = WorkspaceSettings(settings, self.store)
        self.stores = StoreGateways(
            self.workspaces, self.xpay, self.gateway_keys, timeout=settings.xpay_timeout
        )
        self.approvers = WorkspaceApprovers(self.clients, self.workspaces.for_team)
        self.service = LinkService(
            self.store,
            self.xpay,
            is_approver=self.approvers.may_decide,
            approvers_in=self.approvers.may_decide,
            stores=self.stores,
            allow_self_approval=settings.paylink_allow_self_approval,
            follow_up=follow_up,
            reconcile_after=timedelta(seconds=settings.paylink_reconcile_after),
            remind_after_for=self._remind_after,
            metrics=self.metrics,
            sandbox=settings.sandbox,
            qr_codes=settings.paylink_qr,
            link_ttl_for=lambda team: self.workspaces.for_team(team).paylink_link_ttl,
            policy_for=lambda team: ApprovalPolicy.from_settings(self.workspaces.for_team(team)),
            duplicate_window_for=lambda team: (
                self.workspaces.for_team(team).paylink_duplicate_window
            ),
        )
        self.digests = Digests(
            self.queue,
            at=settings.paylink_digest_at,
            zone=settings.timezone,
            channel=self.digest_channel,
            # With several workspaces, one digest per installed workspace, of its links only.
            installed=self.installed_workspaces if settings.multi_workspace else None,
            channel_of=lambda w: self.workspaces.for_team(w.team_id).paylink_approval_channel,
        )
        # The daily digest is posted by whoever runs the jobs, so only with Slack to post to.
        self.periodic = Periodic(
            self.service,
            interval=jobs_interval,
            digests=self.digests if self.slack_client is not None else None,
        )
        if self.slack_client is not None and self.plan.answers_slack:
            self._build_bolt_app()
        if self.plan.queues_follow_up:
            self._wake_sender = WakeSender(socket_path(settings.database_url))
            self.store.on_commit(self._wake_sender)
        if self.slack_client is not None and self.plan.runs_jobs:
            self.runner = self._build_runner()

    def _build_bolt_app(self) -> None:
        from bot.slack.app import build_bolt_app
        from bot.slack.context import SlackContext

        # Two threads: decisions are short database writes, which SQLite serialises anyway.
        self.decisions = ThreadPoolExecutor(max_workers=2, thread_name_prefix="decide")
        # Many: these wait on Slack, and a modal must open within 3 s of its command.
        self.after_ack = ThreadPoolExecutor(max_workers=32, thread_name_prefix="after-ack")
        self.slack_context = SlackContext(
            self.settings,
            self.service,
            self.approvers,
            self.clients,  # type: ignore[arg-type]  (built with slack_client)
            self.decisions,
            self.after_ack,
            workspaces=self.workspaces,
        )
        oauth = None
        if self.settings.multi_workspace:
            from bot.slack.oauth import oauth_settings

            oauth = oauth_settings(self.settings, self.engine, self.slack_client)  # type: ignore[arg-type]
        self.bolt_app = build_bolt_app(self.slack_context, self.slack_client, oauth)

    def _build_runner(self) -> JobRunner:
        """The job runner, with a handler for every job kind: Slack's, and the follow-up work
        a web process queues (carried out here inline)."""
        from bot.links.sharing import Sharing
        from bot.slack.app import make_web_client
        from bot.slack.delivery import SlackDelivery
        from bot.slack.oauth import slack_clients

        self.delivery_client = make_web_client(self.settings, retries=False)
        slack = SlackDelivery(
            slack_clients(self.settings, self.delivery_client, self.engine),
            self.queue,
            approvers_configured=self.approvers.configured,
            store_label=self._store_label,
            mail_enabled=self.settings.mail_enabled,
        )
        work = QueuedWork(self.service, self.inline, slack.tell)
        sharing = Sharing(self.service, self.settings)
        reminders = Reminders(
            self.queue,
            lambda team: self.workspaces.for_team(team).paylink_approvers,
            allow_self_approval=self.service.allow_self_approval,
            remind_after_for=self._remind_after,
        )
        return JobRunner(
            self.queue,
            slack.handlers() | work.handlers() | sharing.handlers() | reminders.handlers(),
            together=work.together(),
        )

    def _remind_after(self, team_id: str | None) -> dict[Status, timedelta]:
        """How long a link of that workspace waits in a status before its one reminder."""
        settings = self.workspaces.for_team(team_id)
        return {
            Status.AWAITING_APPROVAL: settings.paylink_remind_approvers_after,
            Status.AWAITING_PAYMENT: settings.paylink_remind_rep_after,
        }

    def digest_channel(self) -> str | None:
        """Where the digest goes: the approval channel set in the workspace's Settings, else
        PAYLINK_APPROVAL_CHANNEL (None: neither). The workspace is SLACK_BOT_TOKEN's, asked
        of auth.test by a process that has not asked yet (a worker, the command line)."""
        workspace = self.workspace or self.learn_workspace()
        team = workspace.team_id if workspace else None
        return self.workspaces.for_team(team).paylink_approval_channel

    def installed_workspaces(self) -> list[Workspace]:
        """The workspaces Paylink is installed in now (multi-workspace mode), each of which
        gets a digest; an organisation-wide install names no team, so its workspaces get
        none (not yet supported)."""
        from bot.slack.oauth import installed_list

        return [w for w in installed_list(self.settings, self.engine) if w.team_id is not None]

    def _store_label(self, team_id: str | None, store_id: int | None) -> str | None:
        """The name of a link's store, for its card, when its workspace has several."""
        stores = self.workspaces.stores(team_id)
        if len(stores) < 2:
            return None
        return next((st.name for st in stores if st.id == store_id), None)

    def learn_workspace(self) -> Workspace | None:
        """The workspace of SLACK_BOT_TOKEN, as auth.test reports it (None without a token,
        in multi-workspace mode, or when Slack does not answer). Links with no workspace
        recorded become its: made before links recorded one, or from the command line while
        Slack did not answer. (In multi-workspace mode such links stay nobody's.)"""
        if not self.settings.slack_bot_token or self.settings.multi_workspace:
            return None
        from bot.slack.app import make_web_client
        from bot.slack.origin import of_auth_test

        client = self.slack_client or make_web_client(self.settings, retries=False)
        try:
            auth = client.auth_test()
        except Exception as exc:  # App Home lacks card links; Bolt asks again per request
            log.warning("auth.test failed: %s", type(exc).__name__)
            return None
        finally:
            if client is not self.slack_client:
                client.close()
        self.team_url = auth.get("url")
        workspace = of_auth_test(auth)
        if workspace.team_id is not None:
            self.workspace = workspace
            with self.store.transaction() as s:
                adopted = self.store.adopt(s, workspace)
            if adopted:
                log.info(
                    "%d links recorded as the workspace's",
                    adopted,
                    extra={"team": workspace.team_id},
                )
        return workspace

    def start(self) -> None:
        """Start the background work of this role: job runner and periodic timers."""
        if (
            self.slack_client is not None
            and self.plan.answers_slack
            and not self.settings.multi_workspace
        ):
            if self.learn_workspace() is None:
                threading.Thread(
                    target=self._learn_workspace_later, name="workspace", daemon=True
                ).start()
            self.slack_context.team_url = self.team_url
        if self.slack_client is not None:
            # Warm the approver groups so the first click decided here does not wait on Slack.
            threading.Thread(target=self.approvers.refresh, name="approvers", daemon=True).start()
        # Leases and claims are taken by the process running the jobs: a web process beside
        # a worker holds none, so it must not release the worker's.
        if (
            self.on_sqlite
            and self.plan.runs_jobs
            and claim_sqlite_file(self.settings.database_url, self.role)
        ):
            release_after_restart(self.store)
        if self.checkpointer is not None:
            self.checkpointer.start()
        if not self.plan.runs_jobs:
            return
        if self.runner:
            self.runner.start()
            if self.plan.woken_by_socket:
                path = socket_path(self.settings.database_url)
                self._wake_listener = WakeListener(path, self.runner.wake).start()
        self.periodic.start()

    def _learn_workspace_later(self) -> None:
        """Ask auth.test again until Slack answers: until then, links whose workspace is not
        recorded yet refuse every click as coming from elsewhere."""
        while not self._stopping.wait(self.workspace_retry):
            if self.learn_workspace() is not None:
                self.slack_context.team_url = self.team_url
                return

    def stop(self) -> None:
        """Stop background work and release connections."""
        self._stopping.set()
        # First: a decision may queue jobs or start a link's creation.
        for pool in (self.decisions, self.after_ack):
            if pool is not None:
                pool.shutdown(wait=True)
        self.periodic.stop()
        if self._wake_listener:
            self._wake_listener.close()
        if self._wake_sender:
            self._wake_sender.close()
        if self.runner:
            self.runner.stop()
        self.gateway_pool.shutdown(wait=True, cancel_futures=False)
        for client in (self.slack_client, self.delivery_client):
            if client is not None:
                client.close()
        self.xpay.close()
        self.stores.close()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        if self.intake is not None:
            self.intake.close()
        self.store.close()
