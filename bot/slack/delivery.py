"""Runs the jobs that talk to Slack: post or update a request's card, reply in its thread,
post the daily digest."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from bot.links.digest import Report, digest_owner
from bot.links.kinds import JobKind
from bot.links.policy import TWO
from bot.links.queue import JobQueue
from bot.links.runner import Handler, RetryLater, Stop
from bot.links.states import Status
from bot.links.tables import Job, Link
from bot.links.workspaces import Workspace
from bot.slack import blocks
from bot.slack.clients import NotInstalled, SlackClients
from bot.slack.qr import qr_png

log = logging.getLogger(__name__)

# Slack's answers that mean the token itself is dead (revoked, expired, its workspace gone),
# whatever the call: in multi-workspace mode the installation is looked at again.
DEAD_TOKEN = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)

# Errors that will not go away by retrying: log and give up on that one message.
PERMANENT = {
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "invalid_blocks",
    "msg_too_long",
    "no_text",
    "message_not_found",
    "cant_update_message",
}

# chat.postMessage has no idempotency key, and a post whose answer never came (timeout, crash)
# may still have landed. Posts carry message metadata naming the job's effect; before posting
# again after such an attempt, the bot looks for its earlier post (conversations.history /
# .replies, scopes channels:history and groups:history) and adopts it instead of posting twice.
CARD_EVENT = "paylink_card"
REPLY_EVENT = "paylink_reply"
DIGEST_EVENT = "paylink_digest"
# Slack allows apps distributed outside its Marketplace one such call a minute and 15
# messages, so the bot looks only at what was posted since the effect could first have been
# attempted, less a margin for the clocks of Slack and this machine.
LOOKBACK = 15
CLOCK_MARGIN = timedelta(minutes=1)


def post_digest(
    client: WebClient, channel: str, report: Report, key: str
) -> tuple[str, list[dict[str, Any]]]:
    """Post ``report`` in ``channel``, each request it names linked to its card (a link
    whose permalink Slack does not give is named unlinked); returns what was posted.
    ``key`` names the post in its metadata, so a retry can find it."""
    permalinks: dict[int, str] = {}
    for item in report.named():
        if item.channel_id and item.message_ts and item.link_id not in permalinks:
            try:
                permalinks[item.link_id] = client.chat_getPermalink(
                    channel=item.channel_id, message_ts=item.message_ts
                )["permalink"]
            except SlackApiError as exc:
                log.info("no permalink for a digest line: %s", exc.response.get("error"))
    text, digest_blocks = blocks.digest(report, permalinks)
    client.chat_postMessage(
        channel=channel,
        text=text,
        blocks=digest_blocks,
        unfurl_links=False,
        metadata={"event_type": DIGEST_EVENT, "event_payload": {"key": key}},
    )
    return text, digest_blocks


def tell(client: WebClient, channel: str | None, user: str, text: str) -> None:
    """An ephemeral note to ``user`` in ``channel`` (no channel, as in App Home: nothing)."""
    if not channel:
        return
    try:
        client.chat_postEphemeral(channel=channel, user=user, text=text)
    except SlackApiError as exc:
        log.warning("could not send ephemeral: %s", exc.response.get("error"))


class SlackDelivery:
    """The job runner's handlers for the jobs that talk to Slack, each with the client of
    its link's workspace (a workspace that uninstalled Paylink: the job is stopped)."""

    def __init__(
        self,
        clients: SlackClients,
        queue: JobQueue,
        *,
        approvers_configured: Callable[[str | None], bool],
        store_label: Callable[[str | None, int | None], str | None] = lambda _t, _s: None,
        mail_enabled: bool = False,
    ) -> None:
        """``approvers_configured(team_id)``: somebody may approve in that workspace;
        ``store_label(team_id, store_id)``: the store name a card shows, if any;
        ``mail_enabled``: the link's reply offers "Send to customer"."""
        self.clients = clients
        self.queue = queue
        self.store = queue.store
        self.approvers_configured = approvers_configured
        self.store_label = store_label
        self.mail_enabled = mail_enabled
        self._told_no_files = False  # the missing files:write scope is logged once

    def handlers(self) -> dict[JobKind, Handler]:
        """Each Slack job kind's handler, for the job runner."""
        return {
            JobKind.CARD: self.card,
            JobKind.THREAD: self.thread,
            JobKind.QR: self.qr,
            JobKind.DIGEST: self.digest,
        }

    def tell(self, origin: Workspace, channel: str | None, user: str, text: str) -> None:
        """An ephemeral note in ``origin`` (the clicker's workspace), e.g. a refusal of a
        click the worker decided."""
        try:
            client = self.clients.for_workspace(origin)
        except NotInstalled:
            return  # nobody there to tell
        tell(client, channel, user, text)

    def card(self, job: Job, link: Link) -> None:
        """Post the request's card, or bring it up to the link's latest state."""
        client = self._client(link)
        with self._slack_errors(job, link, client, gave_up=self._card_undeliverable):
            self._card(job, link, client)

    def thread(self, job: Job, link: Link) -> None:
        """Post a reply in the card's thread."""
        client = self._client(link)
        with self._slack_errors(job, link, client):
            self._thread(job, link, client)

    def _client(self, link: Link) -> WebClient:
        """The client of the link's workspace; Stop when Paylink is not installed there."""
        return self._client_of(link.workspace, "the link's")

    def _client_of(self, workspace: Workspace, whose: str = "the digest's") -> WebClient:
        """The client of ``workspace``; Stop when Paylink is not installed there."""
        try:
            return self.clients.for_workspace(workspace)
        except NotInstalled:
            raise Stop(f"Paylink is not installed in {whose} Slack workspace") from None

    def qr(self, job: Job, link: Link) -> None:
        """Post a QR code image of the checkout URL in the thread, after the link's reply (a
        job of its own: the reply never waits for it), named after that checkout link's
        order reference (a renewal's ``REF-2``). Without the files:write scope the thread
        keeps the link alone, and the log says why, once."""
        # The job names its checkout link (jobs queued before it did: the link's current).
        url = job.payload.get("url") or link.checkout_url
        reference = job.payload.get("reference") or link.checkout_reference or link.reference
        if not url:
            return
        if link.message_ts is None:
            raise RetryLater("the card is not posted yet", 1.0)
        test = "TEST " if link.sandbox else ""
        filename = f"{reference}-qr.png"
        client = self._client(link)
        with self._slack_errors(job, link, client):
            # An upload whose answer never came (a timeout) may have landed: files have no
            # metadata, so the thread is searched for the file by its name.
            if self._earlier(
                job,
                client,
                link.channel_id,
                lambda posted: any(f.get("name") == filename for f in posted.get("files") or []),
                since=job.created_at,
                thread_ts=link.message_ts,
            ):
                return
            try:
                client.files_upload_v2(
                    content=qr_png(url),
                    filename=filename,
                    title=f"{test}QR code of the checkout link for {reference}",
                    alt_txt=f"{test}QR code of the checkout link",
                    channel=link.channel_id,
                    thread_ts=link.message_ts,
                )
            except SlackApiError as exc:
                if exc.response is None or exc.response.get("error") != "missing_scope":
                    raise
                if not self._told_no_files:
                    self._told_no_files = True
                    log.warning(
                        "QR codes are not posted: the Slack app lacks the files:write scope "
                        "(add it from manifest.yml and reinstall the app, or set PAYLINK_QR=false)"
                    )
            except SlackRequestError as exc:  # the upload URL refused the bytes
                raise RetryLater(f"file upload failed: {exc}") from None

    def digest(self, job: Job, link: Link | None) -> None:
        """Post the daily digest (a job of no link), once: the single workspace's with the
        one token, or in multi-workspace mode the workspace's its payload names with that
        workspace's token (a workspace that uninstalled Paylink: the job is stopped)."""
        owner = digest_owner(job.payload)
        if owner is None and self.clients.multi_workspace:
            raise Stop("a digest of no workspace: nobody to post it to")
        client = self.clients.base if owner is None else self._client_of(owner)
        with self._slack_errors(job, link, client, owner=owner):
            channel, key = job.payload["channel"], job.dedupe_key or f"job:{job.id}"
            found = self._earlier_post(
                job, client, channel, DIGEST_EVENT, key, since=job.created_at
            )
            if found is None:
                post_digest(client, channel, Report.from_json(job.payload["report"]), key)

    @contextmanager
    def _slack_errors(
        self,
        job: Job,
        link: Link | None,
        client: WebClient,
        gave_up: Callable[[Link, str, WebClient], None] | None = None,
        owner: Workspace | None = None,
    ) -> Iterator[None]:
        """Slack's errors as the runner needs them: RetryLater, or for an error retrying
        will not fix, logged and given up on (``gave_up`` is told); Stop for a workspace
        whose token Slack no longer takes (the link's, else ``owner``)."""
        try:
            yield
        except SlackApiError as exc:
            error = exc.response.get("error", "") if exc.response is not None else ""
            status = exc.response.status_code if exc.response is not None else 0
            if status == 429:
                retry_after = exc.response.headers.get("Retry-After", "1")
                raise RetryLater("rate limited", float(retry_after or 1)) from None
            workspace = link.workspace if link is not None else owner
            if error in DEAD_TOKEN and self.clients.multi_workspace and workspace is not None:
                self._check_installed(workspace, client, error)
            if error not in PERMANENT:
                raise RetryLater(f"slack error {status} {error}") from None
            log.error("slack refused %s for link %s: %s", job.kind, job.link_id, error)
            if gave_up is not None and link is not None:
                gave_up(link, error, client)
        except TimeoutError:
            # Slack may still be working on the call: give it time to land before the next
            # attempt looks for it (see _earlier_post), rather than racing it with a re-post.
            raise RetryLater("slack did not answer in time", 2.0 * client.timeout) from None

    def _check_installed(self, workspace: Workspace, client: WebClient, error: str) -> None:
        """Slack refused the workspace's token: Stop when the installation is gone or still
        holds that token (no event may ever come to say so), else the next attempt uses the
        token that replaced it."""
        if self._client_of(workspace, "the").token == client.token:
            raise Stop(f"Slack refuses the workspace's token ({error})")

    def _render(self, link: Link) -> tuple[str, list[dict]]:
        """The card for ``link`` as it is now (with its approvals, when it needs two)."""
        approvals: list[str] = []
        if link.approvals_needed == TWO:
            with self.store.reading() as s:
                approvals = self.store.approvers(s, link.id)
        return blocks.card(
            link,
            approvers_configured=self.approvers_configured(link.team_id),
            store=self.store_label(link.team_id, link.store_id),
            approvals=approvals,
        )

    def _card(self, job: Job, link: Link, client: WebClient) -> None:
        text, card_blocks = self._render(link)
        if link.message_ts is None:
            key = f"card:{link.id}"
            # No attempt precedes its row; a link's card rows are delivered as one (the newest
            # row stands for older ones), so any of them may have posted it since the link began.
            found = self._earlier_post(
                job, client, link.channel_id, CARD_EVENT, key, since=link.created_at
            )
            if found is None:
                response = client.chat_postMessage(
                    channel=link.channel_id,
                    text=text,
                    blocks=card_blocks,
                    unfurl_links=False,
                    metadata=_metadata(CARD_EVENT, link, key),
                )
                ts, channel = response["ts"], response["channel"]
            else:
                ts, channel = found, link.channel_id
            with self.store.transaction() as s:
                self.store.update_fields(s, link.id, message_ts=ts, channel_id=channel)
            link.message_ts, link.channel_id = ts, channel
            if found is not None:  # the earlier post may show an older state
                self._update_card(link, client, text, card_blocks)
            if job.payload.get("notify_requester"):
                self._tell_requester(link, client)
        else:
            self._update_card(link, client, text, card_blocks)

    def _update_card(
        self, link: Link, client: WebClient, text: str, card_blocks: list[dict]
    ) -> None:
        """chat.update, and again while the link moved on meanwhile: with several runners
        an older render could otherwise land last and show a status going backwards."""
        for _ in range(3):
            client.chat_update(
                channel=link.channel_id, ts=link.message_ts, text=text, blocks=card_blocks
            )
            if self.store.version(link.id) in (None, link.version):
                return
            with self.store.reading() as s:
                link = self.store.get(s, link.id)
            text, card_blocks = self._render(link)

    def _earlier_post(
        self,
        message: Job,
        client: WebClient,
        channel: str | None,
        event: str,
        key: str,
        *,
        since: datetime,
        thread_ts: str | None = None,
    ) -> str | None:
        """The ts of a post an earlier attempt made for this effect in ``channel`` (in the
        thread ``thread_ts``) since ``since``, if it landed: named ``key`` in metadata of
        type ``event``. Slack's 429 is raised: the next attempt looks again, rather than
        post a second time."""

        def ours(posted: dict[str, Any]) -> bool:
            metadata = posted.get("metadata") or {}
            return metadata.get("event_type") == event and (
                (metadata.get("event_payload") or {}).get("key") == key
            )

        return self._earlier(message, client, channel, ours, since=since, thread_ts=thread_ts)

    def _earlier(
        self,
        message: Job,
        client: WebClient,
        channel: str | None,
        ours: Callable[[dict[str, Any]], bool],
        *,
        since: datetime,
        thread_ts: str | None = None,
    ) -> str | None:
        """The ts of the first message in ``channel`` (in the thread ``thread_ts``) since
        ``since`` that is ``ours``, looked for only after an earlier attempt of ``message``
        (see :meth:`_earlier_post`)."""
        if not channel or not self.queue.attempted_before(message):
            return None  # nothing attempted yet (each claim is marked): nothing posted
        oldest = since - CLOCK_MARGIN
        window = {"limit": LOOKBACK, "oldest": f"{oldest.timestamp():.6f}"}
        try:
            if thread_ts is None:
                found = client.conversations_history(
                    channel=channel, include_all_metadata=True, **window
                )
            else:
                found = client.conversations_replies(
                    channel=channel, ts=thread_ts, include_all_metadata=True, **window
                )
        except SlackApiError as exc:
            if exc.response is not None and exc.response.status_code == 429:
                raise
            # Without history access we cannot check; posting again is better than never.
            log.warning(
                "cannot check for an earlier post (%s); posting again",
                exc.response.get("error") if exc.response is not None else "error",
                extra={"link_id": message.link_id, "kind": message.kind},
            )
            return None
        matches = sorted(m["ts"] for m in found.get("messages") or [] if ours(m))
        if matches:
            log.info(
                "an earlier post landed after all; not posting again",
                extra={"link_id": message.link_id, "kind": message.kind},
            )
        return matches[0] if matches else None

    def _card_undeliverable(self, link: Link, error: str, client: WebClient) -> None:
        """The request card cannot be posted at all (it is not posted yet): withdraw the
        request (nobody could ever approve it) and tell the rep, in the channel or else by
        direct message."""
        if link.message_ts is not None:
            return
        with self.store.transaction() as s:
            withdrawn = self.store.move(
                s,
                link.id,
                Status.AWAITING_APPROVAL,
                Status.CANCELLED,
                actor="paylink",
                reason=f"the request card could not be posted ({error})",
            )
        # Told only what happened: a request that moved on meanwhile was not withdrawn.
        if withdrawn is None or not link.requester_id.startswith(("U", "W")):
            return
        text = (
            f"Your payment link request {blocks.escape(link.reference)} could not be posted "
            f"for approval in <#{link.channel_id}> (Slack said `{error}`), so it was withdrawn. "
            "Invite the Paylink app to that channel and run /paylink again, or ask your admin "
            "to check PAYLINK_APPROVAL_CHANNEL."
        )
        try:
            client.chat_postEphemeral(
                channel=link.origin_channel_id or link.channel_id, user=link.requester_id, text=text
            )
            return
        except SlackApiError:
            pass  # most likely the same channel the card could not reach
        try:
            client.chat_postMessage(channel=link.requester_id, text=text)
        except SlackApiError as exc:
            log.error("could not tell the requester either: %s", exc.response.get("error"))

    def _tell_requester(self, link: Link, client: WebClient) -> None:
        if not link.requester_id.startswith(("U", "W")):
            return
        try:
            permalink = client.chat_getPermalink(
                channel=link.channel_id, message_ts=link.message_ts
            )["permalink"]
        except SlackApiError:
            permalink = None
        try:
            client.chat_postEphemeral(
                channel=link.origin_channel_id or link.channel_id,
                user=link.requester_id,
                text=blocks.sent_for_approval_text(link, permalink),
            )
        except SlackApiError as exc:
            # The rep may have typed /paylink in a DM the bot cannot post to; the card stands.
            log.info("could not tell the requester: %s", exc.response.get("error"))

    def _thread(self, job: Job, link: Link, client: WebClient) -> None:
        if link.message_ts is None:
            raise RetryLater("the card is not posted yet", 1.0)
        key = job.dedupe_key or f"job:{job.id}"
        found = self._earlier_post(
            job,
            client,
            link.channel_id,
            REPLY_EVENT,
            key,
            since=job.created_at,
            thread_ts=link.message_ts,
        )
        if found is not None:
            return
        text, reply_blocks = blocks.thread_reply(
            link, job.payload["kind"], job.payload, mail=self.mail_enabled
        )
        client.chat_postMessage(
            channel=link.channel_id,
            thread_ts=link.message_ts,
            text=text,
            blocks=reply_blocks,
            unfurl_links=False,
            metadata=_metadata(REPLY_EVENT, link, key),
        )


def _metadata(event: str, link: Link, key: str) -> dict:
    return {"event_type": event, "event_payload": {"link_id": link.id, "key": key}}
