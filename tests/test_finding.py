"""Finding links: ``/paylink list|find|status|help`` as a rep and as an approver, App Home
with thousands of links (filters, counts, pages, search), and Show contact's audit trail.

Unit tests on a migrated SQLite file: the answers and views are built by the same code the
listeners call (bot.slack.finding), with no HTTP.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.links import finding
from bot.links.finding import (
    COUNT_CAP,
    GROUPS,
    PAGE_SIZE,
    Filter,
    Scope,
    counts,
    status_report,
)
from bot.links.outcomes import NotAllowed, OtherWorkspace
from bot.links.service import LinkService
from bot.links.states import Status
from bot.links.store import LinkStore
from bot.links.tables import History, Link
from bot.links.workspaces import Workspace
from bot.local.standin import validate_blocks
from bot.slack import blocks
from bot.slack.finding import Asker, Finder, month_of, prefill
from tests.dbs import BACKENDS, migrated_engine
from tests.factories import insert_links
from tests.fakes import FakeGateway

HOME, ELSEWHERE = Workspace("T0HOME"), Workspace("T0ELSE")
REP, OTHER_REP, APPROVER = "U0REP", "U0OTHERREP", "U0APPROVER"
KARACHI = ZoneInfo("Asia/Karachi")
NOW = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)
TEAM_URL = "https://acme.slack.com"


def rep(user: str = REP, workspace: Workspace = HOME) -> Asker:
    return Asker(user, workspace, is_approver=False)


def approver(workspace: Workspace = HOME) -> Asker:
    return Asker(APPROVER, workspace, is_approver=True)


def add_links(store: LinkStore, count: int, **kw: Any) -> None:
    """:func:`insert_links`, created until a day before NOW unless told."""
    insert_links(store, count, created=kw.pop("created", NOW - timedelta(days=1)), **kw)


def permalink(channel: str | None, ts: str | None, _team_url: str | None = None) -> str | None:
    if not (channel and ts):
        return None
    return f"{TEAM_URL}/archives/{channel}/p{ts.replace('.', '')}"


def make_finder(store: LinkStore, **kw: Any) -> Finder:
    return Finder(
        store,
        currencies_for=lambda _team: ["PKR", "USD"],
        timezone=KARACHI,
        allow_self_approval=False,
        permalink=permalink,
        clock=lambda: NOW,
        **kw,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LinkStore]:
    with migrated_engine("sqlite", tmp_path) as engine:
        yield LinkStore(engine)


@pytest.fixture(scope="module")
def finder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finder]:
    """A rep's 30 links, another rep's 12 and 5 of another workspace's (read only)."""
    with migrated_engine("sqlite", tmp_path_factory.mktemp("small")) as engine:
        store = LinkStore(engine)
        add_links(store, 30, prefix="MINE")
        add_links(store, 12, requester=OTHER_REP, prefix="THEIRS")
        add_links(store, 5, workspace=ELSEWHERE, prefix="ELSE")
        yield make_finder(store)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finder]:
    """5,000 links of the rep, every status in turn, and 100 of another rep."""
    with migrated_engine("sqlite", tmp_path_factory.mktemp("big")) as engine:
        store = LinkStore(engine)
        add_links(store, 5_000, prefix="BIG")
        add_links(store, 100, requester=OTHER_REP, prefix="OTHER")
        yield make_finder(store)


def texts(answer: Any) -> str:
    """Every text of an answer or view, joined."""
    return json.dumps(answer, ensure_ascii=False)


def references(answer_blocks: list[dict[str, Any]]) -> list[str]:
    return re.findall(r"\*([A-Z]+-\d{5})\*", texts(answer_blocks))


# --- filters ---------------------------------------------------------------------------


def test_every_status_is_in_exactly_one_filter() -> None:
    assert set(GROUPS) == set(Status)
    for status in Status:
        assert [f for f in Filter if f is not Filter.ALL and status in f.statuses] == [
            GROUPS[status]
        ]
    assert set(Filter.ALL.statuses) == set(Status)


# --- /paylink list -----------------------------------------------------------------------


def test_list_shows_a_reps_own_20_newest(finder: Finder) -> None:
    text, answer = finder.command(rep(), "list")  # type: ignore[misc]
    assert validate_blocks(answer) == []
    refs = references(answer)
    assert refs == [f"MINE-{i:05d}" for i in range(29, 9, -1)]  # newest first, 20
    rendered = texts(answer)
    assert "THEIRS" not in rendered and "ELSE" not in rendered
    assert "the 20 newest" in text
    assert f"<{TEAM_URL}/archives/C0APPROVALS/p1700000000000029|card>" in rendered
    assert " · 1 day" in rendered  # the age
    assert "buyer" not in rendered and "0341" not in rendered  # no contact in a list


def test_list_filters_by_status(finder: Finder) -> None:
    for word, chosen in (
        ("pending", Filter.PENDING),
        ("unpaid", Filter.UNPAID),
        ("PAID", Filter.PAID),
    ):
        _, answer = finder.command(rep(), f"list {word}")  # type: ignore[misc]
        labels = re.findall(r":[a-z_]+: ([A-Z][a-z ]+)", texts(answer))
        assert labels and {Status(s).label for s in chosen.statuses} >= set(labels), word
    text, _ = finder.command(rep(), "list closed")  # type: ignore[misc]
    assert "Closed" in text


def test_list_all_is_everyones_for_approvers_only(finder: Finder) -> None:
    text, answer = finder.command(approver(), "list all")  # type: ignore[misc]
    rendered = texts(answer)
    assert "Everyone's links" in text and "the 20 newest" in text
    assert "THEIRS-00011" in rendered and "requested by <@U0OTHERREP>" in rendered
    assert "ELSE" not in rendered

    text, answer = finder.command(rep(), "list all")  # type: ignore[misc]
    assert "Only approvers can list everyone's links" in text
    assert "THEIRS" not in texts(answer) and "MINE-00029" in texts(answer)

    _, answer = finder.command(approver(), "list paid all")  # type: ignore[misc]
    assert "THEIRS" in texts(answer) and "Awaiting payment" not in texts(answer)

    # An approver's own list is their own links: none here.
    text, _ = finder.command(approver(), "list")  # type: ignore[misc]
    assert "none" in text


def test_list_usage_for_unknown_words(finder: Finder) -> None:
    text, answer = finder.command(rep(), "list yesterday")  # type: ignore[misc]
    assert text.startswith("Usage: `/paylink list") and answer == []


def test_nothing_crosses_workspaces(finder: Finder) -> None:
    outsider = Asker(APPROVER, ELSEWHERE, is_approver=True)
    _, answer = finder.command(outsider, "list all")  # type: ignore[misc]
    assert set(references(answer)) == {f"ELSE-{i:05d}" for i in range(5)}
    text, _ = finder.command(outsider, "status MINE-00001")  # type: ignore[misc]
    assert text.startswith("No link with reference")
    text, _ = finder.command(outsider, "find MINE")  # type: ignore[misc]
    assert text.startswith("No link matches")
    nobody = Asker(APPROVER, Workspace(None), is_approver=True)
    assert finder.command(nobody, "list all")[0].endswith("none.")  # type: ignore[index]


# --- /paylink find -----------------------------------------------------------------------


def test_find_for_a_rep_searches_their_own_by_reference_and_name(finder: Finder) -> None:
    _, answer = finder.command(rep(), "find mine-00003")  # type: ignore[misc]
    assert references(answer) == ["MINE-00003"]
    _, answer = finder.command(rep(), "find customer MINE 1")  # type: ignore[misc]
    assert set(references(answer)) == {"MINE-00001"} | {f"MINE-{i:05d}" for i in range(10, 20)}
    # Another rep's links, and contact details, are not searched for a rep.
    assert finder.command(rep(), "find THEIRS")[0].startswith("No link matches")  # type: ignore[index]
    assert finder.command(rep(), "find buyer3@")[0].startswith("No link matches")  # type: ignore[index]


def test_find_for_an_approver_searches_everyones_contact_too(finder: Finder) -> None:
    _, answer = finder.command(approver(), "find buyer3@theirs")  # type: ignore[misc]
    assert references(answer) == ["THEIRS-00003"]
    _, answer = finder.command(approver(), "find 0341 0000007")  # type: ignore[misc]
    assert set(references(answer)) == {"MINE-00007", "THEIRS-00007"}


def test_find_shows_masked_contact_and_show_contact_to_who_may_see_it(finder: Finder) -> None:
    for asker in (rep(), approver()):
        _, answer = finder.command(asker, "find MINE-00004")  # type: ignore[misc]
        assert validate_blocks(answer) == []
        rendered = texts(answer)
        assert "b•••4@mine.example.com" in rendered and "•••••••0004" in rendered
        assert "buyer4@" not in rendered and "03410000004" not in rendered
        [result] = [b for b in answer if b.get("block_id", "").startswith("result_")]
        assert result["accessory"]["action_id"] == blocks.ActionId.SHOW_CONTACT


def test_find_escapes_what_was_typed_and_bounds_results(big: Finder) -> None:
    text, answer = big.command(approver(), "find <!channel> & <@U1>")  # type: ignore[misc]
    assert "&lt;!channel&gt; &amp; &lt;@U1&gt;" in text and "<!channel>" not in texts(answer)
    text, answer = big.command(rep(), "find customer")  # type: ignore[misc]
    assert len(references(answer)) == PAGE_SIZE and "20+" in text
    assert validate_blocks(answer) == []
    assert big.command(rep(), "find x")[0].startswith("Usage")  # type: ignore[index]


# --- /paylink status ---------------------------------------------------------------------


def test_status_as_the_cli_prints_it(finder: Finder) -> None:
    text, answer = finder.command(rep(), "status mine-00002")  # type: ignore[misc]
    assert validate_blocks(answer) == []
    with finder.store.reading() as s:
        link = s.scalar(select(Link).where(Link.reference == "MINE-00002"))
        report = status_report(link, link.history)
    assert report[0] == f"MINE-00002: {link.status_label}"
    assert texts(answer).count(report[0]) == 1 and text.endswith(link.status_label)
    buttons = {e["action_id"] for b in answer if b["type"] == "actions" for e in b["elements"]}
    assert buttons == {blocks.ActionId.OPEN_CARD, blocks.ActionId.SHOW_CONTACT}

    # A rep sees only their own; an approver anyone's.
    text, _ = finder.command(rep(), "status THEIRS-00001")  # type: ignore[misc]
    assert text == "No link with reference `THEIRS-00001` among your links."
    text, _ = finder.command(approver(), "status THEIRS-00001")  # type: ignore[misc]
    assert text.startswith("THEIRS-00001: ")
    assert finder.command(rep(), "status")[0].startswith("Usage")  # type: ignore[index]


# --- help, unknown words, pre-fill --------------------------------------------------------


def test_help_lists_every_subcommand(finder: Finder) -> None:
    text, answer = finder.command(rep(), "help")  # type: ignore[misc]
    for usage in (
        "/paylink list [pending|unpaid|paid] [all]",
        "/paylink find TEXT",
        "/paylink status REF",
        "/paylink export [YYYY-MM]",
        "/paylink help",
        "/paylink 5000 USD",
    ):
        assert usage in text
    assert answer == []


@pytest.mark.parametrize("typed", ["lsit", "5000 EUR", "5000 6000", "statuss PL-1", "<@U1>"])
def test_unknown_words_answer_with_help(finder: Finder, typed: str) -> None:
    text, _ = finder.command(rep(), typed)  # type: ignore[misc]
    assert "is not a Paylink command" in text and "/paylink find TEXT" in text
    assert "<@U1>" not in text


@pytest.mark.parametrize(
    ("typed", "filled"),
    [
        ("", None),
        ("5000 PKR", ("5000", "PKR")),
        ("usd 1,500.50", ("1500.50", "USD")),
        ("0", (None, None)),
    ],
)
def test_the_modal_still_opens_and_prefills(finder: Finder, typed: str, filled: Any) -> None:
    assert finder.command(rep(), typed) is None
    assert prefill(typed, ["PKR", "USD"]) == (filled or (None, None))


# --- App Home ----------------------------------------------------------------------------


def home(finder: Finder, asker: Asker, state: blocks.HomeState | None = None) -> dict[str, Any]:
    view = blocks.home_view(finder.home(asker, state or blocks.HomeState()))
    assert validate_blocks(None, surface="home", view=view) == []
    assert len(view["blocks"]) <= 60  # room left under Slack's 100 for more sections
    return view


def button(view: dict[str, Any], name: str) -> dict[str, Any] | None:
    action_id = f"{blocks.ActionId.HOME_PAGE}_{name}"
    return next(
        (
            e
            for b in view["blocks"]
            if b["type"] == "actions"
            for e in b["elements"]
            if e["action_id"] == action_id
        ),
        None,
    )


def click(finder: Finder, asker: Asker, view: dict[str, Any], name: str) -> dict[str, Any]:
    """The Home tab after clicking the page button ``name`` (its value is the state)."""
    found = button(view, name)
    assert found is not None, name
    return home(finder, asker, blocks.HomeState.decode(found["value"]))


def rows(view: dict[str, Any]) -> list[str]:
    return [b["block_id"] for b in view["blocks"] if re.fullmatch(r"mine_\d+", b["block_id"])]


def test_home_with_5000_links_pages_within_slacks_limits(big: Finder) -> None:
    first = home(big, rep())
    assert len(rows(first)) == PAGE_SIZE
    assert "1–20 of 5,000, newest first" in texts(first)
    assert button(first, "previous") is None
    second = click(big, rep(), first, "next")
    assert len(rows(second)) == PAGE_SIZE and not set(rows(first)) & set(rows(second))
    assert "21–40 of 5,000" in texts(second)
    third = click(big, rep(), second, "next")
    assert rows(click(big, rep(), third, "previous")) == rows(second)
    assert rows(click(big, rep(), second, "previous")) == rows(first)
    assert len(json.dumps(first["private_metadata"])) < 3000


def test_home_filter_pages_to_the_end(big: Finder) -> None:
    view = click(big, rep(), home(big, rep()), Filter.PAID.value)
    paid = 5_000 // len(Status) + (
        1 if 5_000 % len(Status) > list(Status).index(Status.PAID) else 0
    )
    assert f"Paid ({paid:,})" in texts(view)
    seen = rows(view)
    while button(view, "next") is not None:
        view = click(big, rep(), view, "next")
        seen += rows(view)
    assert len(seen) == len(set(seen)) == paid  # every paid link once, and no Next on the last
    assert "Awaiting payment" not in texts(view)


def test_home_counts_by_filter(big: Finder) -> None:
    view = home(big, rep())
    scope = Scope(HOME, REP)
    with big.store.reading() as s:
        expected = counts(s, scope)
    assert not expected.capped
    assert expected[Filter.ALL] == 5_000 == sum(expected[f] for f in Filter if f is not Filter.ALL)
    for f in Filter:
        assert f"{f.label} ({expected[f]:,})" in texts(view)
    chosen = [e for e in view["blocks"] if e["block_id"] == "filters"][0]["elements"]
    assert [e.get("style") for e in chosen] == ["primary", None, None, None, None]


def test_home_everyone_is_for_approvers(big: Finder) -> None:
    assert button(home(big, rep()), "everyone") is None
    forced = home(big, rep(), blocks.HomeState(everyone=True))
    assert "Everyone's links" not in texts(forced) and "OTHER-" not in texts(forced)
    mine = home(big, approver())
    assert "Mine (" not in texts(mine) and button(mine, "everyone") is not None
    everyone = click(big, approver(), mine, "everyone")
    assert "Everyone's links" in texts(everyone) and "of 5,100" in texts(everyone)
    assert "OTHER-00099" in texts(everyone)  # the newest of them all


def test_home_waiting_for_you_and_month_totals(store: LinkStore) -> None:
    # This month in Karachi began 2026-11-30 19:00 UTC.
    add_links(store, 3, requester=OTHER_REP, prefix="WAIT", statuses=[Status.AWAITING_APPROVAL])
    add_links(store, 2, prefix="OWN", statuses=[Status.AWAITING_APPROVAL])  # the approver's?
    insert_links(
        store, 2, prefix="USD", statuses=[Status.PAID], currency="USD", amount=Decimal("10.10")
    )
    insert_links(
        store,
        1,
        prefix="NOV",
        statuses=[Status.PAID],
        created=datetime(2026, 11, 30, 18, 59, tzinfo=UTC) + timedelta(minutes=1),
    )
    add_links(store, 1, prefix="REJ", statuses=[Status.REJECTED], amount=Decimal(999))
    finder = make_finder(store)
    view = home(finder, Asker(REP, HOME, is_approver=True))
    rendered = texts(view)
    waiting = [b for b in view["blocks"] if re.fullmatch(r"waiting_\d+", b["block_id"])]
    assert [re.search(r"\*(WAIT-\d+)\*", json.dumps(b)).group(1) for b in waiting] == [
        "WAIT-00000",
        "WAIT-00001",
        "WAIT-00002",
    ]  # oldest first, not the approver's own
    assert "waiting 1 day" in rendered and "requested by <@U0OTHERREP>" in rendered
    assert "This month: December 2026 (Asia/Karachi)" in rendered
    # 5 awaiting approval in PKR, the November one is out, the rejected one not counted.
    assert "*PKR*: requested PKR 7,502.50 (5) · paid PKR 0 (0)" in rendered
    assert "*USD*: requested USD 20.20 (2) · paid USD 20.20 (2)" in rendered
    assert "Waiting for you" not in texts(home(finder, rep()))


def test_month_of_is_the_month_in_the_timezone() -> None:
    start, end = month_of(datetime(2026, 11, 30, 19, 30, tzinfo=UTC), KARACHI)
    assert start == datetime(2026, 11, 30, 19, 0, tzinfo=UTC)
    assert end == datetime(2026, 12, 31, 19, 0, tzinfo=UTC)


def test_home_state_survives_a_round_trip_and_bad_values() -> None:
    state = blocks.HomeState(Filter.UNPAID, True, 7, before=123)
    assert blocks.HomeState.decode(state.encode()) == state
    for bad in (None, "", "x|1|2||", "all|0|zero||", "a|b"):
        assert blocks.HomeState.decode(bad) == blocks.HomeState()


def test_search_modal(big: Finder) -> None:
    empty = blocks.search_modal(is_approver=False)
    assert validate_blocks(None, surface="modal", view=empty) == []
    view = big.search(rep(), "BIG-0420")
    assert validate_blocks(None, surface="modal", view=view) == []
    assert view["callback_id"] == blocks.CallbackId.SEARCH
    assert view["blocks"][0]["element"]["initial_value"] == "BIG-0420"
    assert set(references(view["blocks"])) == {f"BIG-0420{i}" for i in range(10)}
    assert references(big.search(rep(), "OTHER-00001")["blocks"]) == []
    assert references(big.search(approver(), "OTHER-00001")["blocks"]) == ["OTHER-00001"]
    many = big.search(approver(), "customer")
    assert validate_blocks(None, surface="modal", view=many) == []
    assert "20+ match(es)" in texts(many)
    assert (
        blocks.read_search({"state": {"values": {"search": {"value": {"value": " a  b "}}}}})
        == "a b"
    )


# --- Show contact ------------------------------------------------------------------------


def contact_rows(store: LinkStore, link_id: int) -> list[History]:
    with store.reading() as s:
        return [
            row
            for row in s.scalars(select(History).where(History.link_id == link_id))
            if row.reason and row.reason.startswith("contact shown")
        ]


def test_show_contact_is_recorded_for_the_requester_and_approvers(store: LinkStore) -> None:
    add_links(store, 1, prefix="SHOW", statuses=[Status.AWAITING_PAYMENT])
    with store.reading() as s:
        link_id = s.scalar(select(Link.id))
    service = LinkService(store, FakeGateway(), is_approver=lambda user: user == APPROVER)
    for user in (REP, APPROVER):
        link = service.show_contact(link_id, user, origin=HOME)
        text = blocks.contact_text(link)
        assert "buyer0@show.example.com" in text and "03410000000" in text
    for user, origin, refusal in (
        ("U0STRANGER", HOME, NotAllowed),
        (APPROVER, ELSEWHERE, OtherWorkspace),
    ):
        with pytest.raises(refusal):
            service.show_contact(link_id, user, origin=origin)
    recorded = contact_rows(store, link_id)
    assert [(r.actor, r.reason) for r in recorded] == [
        (REP, "contact shown to <@U0REP>"),
        (APPROVER, "contact shown to <@U0APPROVER>"),
    ]
    assert all(r.from_status == r.to_status == "awaiting_payment" for r in recorded)
    with store.reading() as s:
        link = s.get(Link, link_id)
        report = "\n".join(status_report(link, link.history))
    assert "Awaiting payment: contact shown to <@U0REP> (by U0REP)" in report


def test_show_contact_logs_no_contact_details(
    store: LinkStore, caplog: pytest.LogCaptureFixture
) -> None:
    add_links(store, 1, prefix="LOG")
    with store.reading() as s:
        link_id = s.scalar(select(Link.id))
    service = LinkService(store, FakeGateway(), is_approver=lambda user: False)
    caplog.set_level("DEBUG")
    service.show_contact(link_id, REP, origin=HOME)
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "contact shown" in logged
    assert "buyer0" not in logged and "03410000000" not in logged


def test_counts_stop_at_the_cap(store: LinkStore) -> None:
    add_links(store, COUNT_CAP + 5, statuses=[Status.PAID], prefix="CAP")
    add_links(store, 3, statuses=[Status.REJECTED], prefix="REJ")
    with store.reading() as s:
        found = counts(s, Scope(HOME, REP))
    assert found.capped == {Filter.ALL, Filter.PAID}
    assert found.text(Filter.PAID) == "1,000+" and found.text(Filter.ALL) == "1,003+"
    assert found.text(Filter.CLOSED) == "3"
    view = home(make_finder(store), rep())
    assert "Paid (1,000+)" in texts(view) and "1–20 of 1,003+, newest first" in texts(view)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_query_on_every_backend(backend: str, tmp_path: Path) -> None:
    with migrated_engine(backend, tmp_path) as engine:
        store = LinkStore(engine)
        add_links(store, 50, prefix="ANY")
        add_links(
            store, 5, requester=OTHER_REP, prefix="OTHER", currency="USD", statuses=[Status.PAID]
        )
        add_links(store, 5, workspace=ELSEWHERE, prefix="ELSE")
        finder = make_finder(store)
        first = home(finder, approver(), blocks.HomeState(everyone=True))
        assert "1–20 of 55, newest first" in texts(first)
        second = click(finder, approver(), first, "next")
        assert rows(click(finder, approver(), second, "previous")) == rows(first)
        assert "*USD*: requested USD 7,502.50 (5) · paid USD 7,502.50 (5)" in texts(first)
        _, found = finder.command(approver(), "find buyer7@any")  # type: ignore[misc]
        assert references(found) == ["ANY-00007"]
        text, _ = finder.command(rep(), "status any-00003")  # type: ignore[misc]
        assert text.startswith("ANY-00003: ")
        with store.reading() as s:
            assert counts(s, Scope(HOME)).text(Filter.ALL) == "55"


def test_search_reads_the_newest_links_only_but_finds_any_reference(
    big: Finder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(finding, "SEARCH_WINDOW", 100)
    with big.store.reading() as s:
        scope = Scope(HOME, REP)
        old, more = finding.search(s, scope, "Customer BIG 17", contact=False)
        assert old == [] and more  # past the window: "more may match"
        recent, _ = finding.search(s, scope, "Customer BIG 4990", contact=False)
        assert [link.reference for link in recent] == ["BIG-04990"]
        exact, _ = finding.search(s, scope, "big-00017", contact=False)
        assert [link.reference for link in exact] == ["BIG-00017"]
        many, more = finding.search(s, scope, "Customer", contact=False)
        assert len(many) == PAGE_SIZE and more
        assert [link.id for link in many] == sorted((link.id for link in many), reverse=True)


def test_a_long_history_shows_its_newest_rows(store: LinkStore) -> None:
    add_links(store, 1, prefix="LONG", statuses=[Status.PAID])
    with store.reading() as s:
        link_id = s.scalar(select(Link.id))
    service = LinkService(store, FakeGateway(), is_approver=lambda user: user == APPROVER)
    for _ in range(60):
        service.show_contact(link_id, APPROVER, origin=HOME)
    service.show_contact(link_id, REP, origin=HOME)
    _, answer = make_finder(store).command(approver(), "status LONG-00000")  # type: ignore[misc]
    assert validate_blocks(answer) == []
    [report] = [b["text"]["text"] for b in answer if b["block_id"] == "status_report"]
    assert report.startswith("```LONG-00000: Paid") and report.endswith("```")
    assert "earlier rows (paylink status shows all)" in report
    assert report.rstrip("`").endswith("contact shown to &lt;@U0REP&gt; (by U0REP)")


def test_sandbox_links_say_they_are_tests(store: LinkStore) -> None:
    add_links(store, 1, prefix="SBX", statuses=[Status.AWAITING_PAYMENT], sandbox=True)
    add_links(store, 1, prefix="REAL", statuses=[Status.PAID], requester=OTHER_REP)
    finder = make_finder(store)
    _, listed = finder.command(rep(), "list")  # type: ignore[misc]
    assert ":test_tube: TEST" in texts(listed)
    _, real = finder.command(Asker(OTHER_REP, HOME, is_approver=False), "list")  # type: ignore[misc]
    assert "TEST" not in texts(real)
    text, status = finder.command(rep(), "status SBX-00000")  # type: ignore[misc]
    assert text.startswith("TEST: ") and "TEST — sandbox, no real money" in texts(status)
    assert ":test_tube: TEST" in texts(home(finder, rep()))
    with store.reading() as s:
        link = s.scalar(select(Link).where(Link.reference == "SBX-00000"))
    assert blocks.contact_text(link).startswith("TEST: ")
