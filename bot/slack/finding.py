"""Reads links for a Slack user and renders what they asked for: ``/paylink list|find|status``
answers, the App Home tab and the search modal. Reads only, bounded (bot.links.finding),
so the slash command's answer goes out in its ack.

Who sees what: a rep their own links; an approver everyone's (``list all``, ``find``,
``status``, Home's "Everyone's"); all of it only within the asker's own workspace. Contact
details appear masked, with a Show contact button for the requester and approvers: the full
details only ever reach someone through that button, whose every use is recorded.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from bot.checkout import parse_amount
from bot.db import utcnow
from bot.links import finding
from bot.links.finding import Filter, Scope
from bot.links.store import LinkStore
from bot.links.tables import Link
from bot.links.workspaces import Workspace
from bot.slack import blocks
from bot.slack.blocks.finding import Answer

# (channel, ts, the workspace's URL or None) → the card's URL
Permalink = Callable[[str | None, str | None, str | None], str | None]

LIST_USAGE = "Usage: `/paylink list [pending|unpaid|paid|closed] [all]`."
_NUMBER = re.compile(r"[0-9][0-9.,]*")
ONLY_APPROVERS_ALL = (
    "Only approvers can list everyone's links (`/paylink list all`). Here are yours."
)


@dataclass(frozen=True)
class Asker:
    """Who is asking, from which workspace, and whether they approve."""

    user: str
    workspace: Workspace
    is_approver: bool
    # The workspace's address (Bolt's authorize result), for links to cards; None: the one
    # auth.test gave at start-up (single-workspace mode).
    team_url: str | None = None

    def may_see_contact(self, link: Link) -> bool:
        """Whether the asker gets Show contact on ``link`` (the requester, approvers)."""
        return finding.may_see_contact(link, self.user, is_approver=self.is_approver)

    def scope(self, *, everyone: bool) -> Scope:
        """Everyone's links of the workspace (approvers only), else the asker's own."""
        return Scope(self.workspace, None if everyone and self.is_approver else self.user)


class Finder:
    """Answers questions about links, for the slash command and App Home."""

    def __init__(
        self,
        store: LinkStore,
        *,
        currencies_for: Callable[[str | None], Sequence[str]],
        timezone: ZoneInfo,
        allow_self_approval: bool,
        permalink: Permalink,
        clock: Callable[[], datetime] = utcnow,
    ):
        """``currencies_for(team_id)``: the currencies that workspace offers (its Settings,
        else the environment's), for help and the pre-fill; ``clock``: now, in UTC (ages,
        this month)."""
        self.store = store
        self.clock = clock
        self.currencies_for = currencies_for
        self.timezone = timezone
        self.allow_self_approval = allow_self_approval
        self.permalink = permalink
        #: ``/paylink <name> …``: each subcommand's answer.
        self.subcommands: dict[str, Callable[[Asker, list[str]], Answer]] = {
            "list": self.list_links,
            "find": self.find_links,
            "status": self.show_status,
            **dict.fromkeys(("help", "?", "-h", "--help"), self.help),
        }

    def _permalinks(self, asker: Asker, links: Iterable[Link]) -> dict[int, str]:
        return {
            link.id: url
            for link in links
            if (url := self.permalink(link.channel_id, link.message_ts, asker.team_url))
        }

    # The slash command ---------------------------------------------------------------

    def command(self, asker: Asker, text: str) -> Answer | None:
        """The answer to ``/paylink <text>``; None when the modal should open instead
        (nothing typed, or an amount and currency to pre-fill). A word that is no
        subcommand answers with help: the modal never opens on a guess."""
        words = text.split()
        if not words:
            return None
        subcommand = self.subcommands.get(words[0].lower())
        if subcommand is not None:
            return subcommand(asker, words[1:])
        if prefill(text, self._currencies(asker)) is not None:
            return None
        return self.unknown(asker, text)

    def _currencies(self, asker: Asker) -> list[str]:
        """The currencies of the asker's workspace."""
        return list(self.currencies_for(asker.workspace.team_id))

    def help(self, asker: Asker, args: list[str]) -> Answer:
        """``/paylink help``: usage (text only), with the asker's workspace's currencies."""
        return blocks.help_text(self._currencies(asker)), []

    def unknown(self, asker: Asker, typed: str) -> Answer:
        """What text that is no subcommand (nor an amount and currency) answers: help."""
        said = blocks.escape(" ".join(typed.split())[:60])
        usage = blocks.help_text(self._currencies(asker))
        return f"`{said}` is not a Paylink command.\n\n{usage}", []

    def list_links(self, asker: Asker, args: list[str]) -> Answer:
        """``/paylink list [pending|unpaid|paid|closed] [all]``: the 20 newest links."""
        words = [w.lower() for w in args]
        everyone = "all" in words
        rest = [w for w in words if w != "all"]
        try:
            (chosen,) = [Filter(w) for w in rest] or [Filter.ALL]
        except ValueError:
            return LIST_USAGE, []
        note = ""
        if everyone and not asker.is_approver:
            note, everyone = ONLY_APPROVERS_ALL, False
        scope = asker.scope(everyone=everyone)
        with self.store.reading() as s:
            page = finding.page(s, scope, chosen)
        whose = "Everyone's links" if everyone else "Your links"
        title = whose if chosen is Filter.ALL else f"{whose} · {chosen.label}"
        return blocks.list_answer(
            page.links,
            title=f"*{title}*",
            more=page.older,
            permalinks=self._permalinks(asker, page.links),
            now=self.clock(),
            everyone=everyone,
            note=note,
        )

    def find_links(self, asker: Asker, args: list[str]) -> Answer:
        """``/paylink find TEXT``: the asker's links (approvers: everyone's) matching it."""
        query = " ".join(args)
        if len(query.strip()) < finding.SEARCH_MIN:
            return "Usage: `/paylink find TEXT` (at least 2 characters).", []
        scope = asker.scope(everyone=True)
        with self.store.reading() as s:
            links, more = finding.search(s, scope, query, contact=asker.is_approver)
        return blocks.find_answer(
            query,
            links,
            more,
            permalinks=self._permalinks(asker, links),
            now=self.clock(),
            contact_for=[link.id for link in links if asker.may_see_contact(link)],
            everyone=asker.is_approver,
        )

    def show_status(self, asker: Asker, args: list[str]) -> Answer:
        """``/paylink status REF``: the link's status and history (a rep: their own only)."""
        if len(args) != 1:
            return "Usage: `/paylink status REF` (the order reference, e.g. PL-1A2B3C4D).", []
        with self.store.reading() as s:
            link = finding.by_reference(s, asker.scope(everyone=True), args[0])
            report = (
                finding.status_report(link, link.history, self.store.intents_of(s, link.id))
                if link
                else []
            )
        if link is None:
            whose = "" if asker.is_approver else " among your links"
            return f"No link with reference `{blocks.escape(args[0][:64])}`{whose}.", []
        return blocks.status_answer(
            link,
            report,
            self.permalink(link.channel_id, link.message_ts, asker.team_url),
            contact=asker.may_see_contact(link),
        )

    # App Home ---------------------------------------------------------------------------

    def home(self, asker: Asker, state: blocks.HomeState) -> blocks.HomeData:
        """What ``asker``'s Home tab shows in ``state``."""
        now = self.clock()
        if state.everyone and not asker.is_approver:
            state = state.first(everyone=False)
        scope = asker.scope(everyone=state.everyone)
        with self.store.reading() as s:
            page = finding.page(s, scope, state.filter, before=state.before, after=state.after)
            data = blocks.HomeData(
                state=state,
                is_approver=asker.is_approver,
                page=page,
                counts=finding.counts(s, scope),
                now=now,
                expiring=self.store.expiring_for(
                    s, asker.user, now + blocks.EXPIRING_WITHIN, workspace=asker.workspace
                ),
            )
            if asker.is_approver:
                self._approver_sections(s, asker, data)
        data.permalinks = self._permalinks(asker, [*page.links, *data.waiting, *data.expiring])
        return data

    def _approver_sections(self, s: Session, asker: Asker, data: blocks.HomeData) -> None:
        data.waiting, data.waiting_total = self.store.awaiting_approval(
            s,
            excluding=None if self.allow_self_approval else asker.user,
            viewer=asker.user,
            limit=blocks.HOME_LIST_MAX,
            workspace=asker.workspace,
        )
        start, end = month_of(data.now, self.timezone)
        data.month = finding.month_totals(s, Scope(asker.workspace), start, end)
        data.month_label = f"{start.astimezone(self.timezone):%B %Y} ({self.timezone.key})"

    def search(self, asker: Asker, query: str) -> dict:
        """The search modal showing the matches for ``query``."""
        scope = asker.scope(everyone=True)
        with self.store.reading() as s:
            links, more = finding.search(s, scope, query, contact=asker.is_approver)
        return blocks.search_modal(
            is_approver=asker.is_approver,
            query=query,
            results=links,
            more=more,
            permalinks=self._permalinks(asker, links),
            now=self.clock(),
            everyone=asker.is_approver,
        )


def prefill(text: str, currencies: Sequence[str]) -> tuple[str | None, str | None] | None:
    """``5000 PKR`` → ("5000", "PKR"); an amount that does not parse (``0``, ``1.234``) is
    left blank for the modal to check. None when a word is neither a number nor a currency
    on offer, or a second number: that is no request to pre-fill."""
    amount = currency = None
    numbers = 0
    for word in text.split():
        if word.upper() in currencies:
            currency = word.upper()
            continue
        numbers += 1
        if numbers > 1 or not _NUMBER.fullmatch(word):
            return None
        with contextlib.suppress(ValueError):
            value = parse_amount(word)
            amount = str(value.to_integral()) if value == value.to_integral() else str(value)
    return amount, currency


def month_of(now: datetime, timezone: ZoneInfo) -> tuple[datetime, datetime]:
    """The start of ``now``'s month in ``timezone`` and the start of the next, in UTC terms."""
    local = now.astimezone(timezone)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (start + timedelta(days=32)).replace(day=1)
    # In UTC: SQLite stores times without their offset, so a bound time must be UTC.
    return start.astimezone(UTC), following.astimezone(UTC)
