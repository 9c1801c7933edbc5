"""Finding links over real HTTP: ``/paylink list|status`` answered in the ack, Show contact
on the card (recorded, refused to strangers), and App Home's pages and search, against the
Slack stand-in. The rules themselves are unit-tested in tests/test_finding.py."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from bot.links.tables import History
from bot.links.workspaces import Workspace
from bot.local.simulator import TEAM, state_values
from bot.local.stack import APPROVER, OUTSIDER, REP
from tests.conftest import Flow, _text
from tests.factories import insert_links

EMAIL, PHONE = "ayesha.khan@example.com", "03415682456"


def answer(response: Any) -> dict[str, Any]:
    """The ephemeral answer a slash command got in its ack (Bolt sends a text-only one as
    text/plain, which Slack shows only to the user too)."""
    assert response.status_code == 200, response.text
    if not response.headers["Content-Type"].startswith("application/json"):
        return {"text": response.text, "blocks": []}
    body = response.json()
    assert body.get("response_type", "ephemeral") == "ephemeral"
    return body


def test_list_status_and_show_contact(flow: Flow) -> None:
    card = flow.request(order_reference="ORD-FIND-1")
    modals = len(flow.slack.views_opened)

    listed = answer(flow.sim.command(REP, "list"))
    assert "ORD-FIND-1" in _text(listed["blocks"]) and EMAIL not in str(listed)
    status = answer(flow.sim.command(REP, "status ord-find-1"))
    assert "ORD-FIND-1: Awaiting approval" in _text(status["blocks"])
    assert EMAIL not in str(status)
    refused = answer(flow.sim.command(OUTSIDER, "status ORD-FIND-1"))
    assert refused["text"] == "No link with reference `ORD-FIND-1` among your links."
    helped = answer(flow.sim.command(REP, "lsit"))
    assert "is not a Paylink command" in helped["text"]
    assert len(flow.slack.views_opened) == modals  # no modal on a guess

    flow.click(OUTSIDER, card.ts, "paylink_show_contact")
    flow.wait_ephemeral(OUTSIDER, "Only the rep who asked for this link or an approver")
    for user in (REP, APPROVER):
        flow.click(user, card.ts, "paylink_show_contact")
        [shown] = flow.wait_ephemeral(user, EMAIL)
        assert PHONE in shown
    assert not any(EMAIL in text for text in flow.ephemerals_for(OUTSIDER))
    with flow.stack.runtime.store.reading() as s:
        reasons = list(
            s.scalars(
                select(History.reason).where(History.reason.is_not(None)).order_by(History.id)
            )
        )
    assert reasons == ["contact shown to <@U0REP>", "contact shown to <@U0APPROVER>"]
    status = answer(flow.sim.command(REP, "status ORD-FIND-1"))
    assert "contact shown to &lt;@U0APPROVER&gt; (by U0APPROVER)" in _text(status["blocks"])


def test_help_and_pre_fill_offer_the_workspace_s_currencies(flow: Flow) -> None:
    """The environment offers PKR only; the workspace's Settings offer USD too."""
    changed = flow.stack.runtime.workspaces.save_settings(
        TEAM["id"], "U0ADMIN", {"paylink_currencies": "PKR,USD"}
    )
    assert changed == ["Currencies"]
    helped = answer(flow.sim.command(REP, "help"))
    assert "• `/paylink 5000 USD`: amount and currency filled in" in helped["text"]

    view = flow.open_modal(text="5000 USD")
    fields = {block["block_id"]: block["element"] for block in view["blocks"] if "element" in block}
    assert fields["amount"]["initial_value"] == "5000"
    assert fields["currency"]["initial_option"]["value"] == "USD"


def test_app_home_pages_and_searches(flow: Flow) -> None:
    insert_links(flow.stack.runtime.store, 45, workspace=Workspace(TEAM["id"]), prefix="HOME")
    flow.sim.home_opened(REP).raise_for_status()
    first = flow.slack.wait_for(lambda s: s.home_views.get(REP))
    assert "1–20 of 45, newest first" in _text(first["blocks"])

    flow.sim.click_view(REP, first, "paylink_home_page_next").raise_for_status()
    second = flow.slack.wait_for(
        lambda s: (v := s.home_views.get(REP)) and "21–40 of 45" in _text(v["blocks"]) and v
    )
    page_one = set(re.findall(r"HOME-\d+", _text(first["blocks"])))
    page_two = set(re.findall(r"HOME-\d+", _text(second["blocks"])))
    assert len(page_two) == 20 and not page_one & page_two

    flow.sim.click_view(REP, second, "paylink_home_search").raise_for_status()
    modal = flow.slack.wait_for(lambda s: next(iter(s.views_opened), None))
    response = flow.sim.submit_view(REP, modal, state_values(modal, {"search": "home-0004"}))
    update = response.json()
    assert update["response_action"] == "update"
    found = set(re.findall(r"HOME-\d+", _text(update["view"]["blocks"])))
    assert found == {f"HOME-0004{i}" for i in range(5)}
    assert all(c.ok for c in flow.slack.calls_of("views.publish"))
