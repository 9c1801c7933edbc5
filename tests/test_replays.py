"""One modal, one request: a view_submission Slack sends again (the same view, even the same
signed body) answers as the first did and makes nothing new, also when the copies arrive at
once. On SQLite and on PostgreSQL, where the copies really race."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.links.tables import Link
from bot.local.simulator import FORM, state_values, view_submission_body
from bot.local.stack import APPROVAL_CHANNEL, REP, LocalStack
from tests.conftest import FIELDS, Flow
from tests.dbs import BACKENDS, database_url

COPIES = 8


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def flow(db_url: str, make_stack: Callable[..., LocalStack]) -> Flow:
    return Flow(make_stack(database_url=db_url))


def signed_submission(flow: Flow, **fields: str) -> tuple[str, dict[str, str]]:
    """A request modal filled and submitted once: its body and signed headers, to send as
    often as Slack might."""
    view = flow.open_modal()
    body = view_submission_body(REP, view, state_values(view, {**FIELDS, **fields}))
    return body, flow.sim.signed_headers(body, FORM)


def send(flow: Flow, body: str, headers: dict[str, str]) -> tuple[int, bytes]:
    response = flow.sim.http.post(flow.sim.url, data=body.encode(), headers=headers, timeout=30)
    return response.status_code, response.content.strip()


def requests_made(flow: Flow) -> int:
    flow.idle()
    with flow.stack.runtime.store.reading() as s:
        return s.scalar(select(func.count()).select_from(Link)) or 0


def cards(flow: Flow) -> int:
    return len([m for m in flow.slack.messages(APPROVAL_CHANNEL) if m.thread_ts is None])


@pytest.mark.parametrize("reference", ["ORD-REPLAY", ""], ids=["reference", "generated"])
def test_the_same_submission_three_times_makes_one_request(flow: Flow, reference: str) -> None:
    body, headers = signed_submission(flow, order_reference=reference)
    assert [send(flow, body, headers) for _ in range(3)] == [(200, b"")] * 3
    flow.slack.wait_for(lambda s: cards(flow) == 1)
    assert requests_made(flow) == 1
    assert cards(flow) == 1
    assert len(flow.wait_ephemeral(REP, "Sent for approval")) == 1


def test_copies_arriving_at_once_make_one_request(flow: Flow) -> None:
    body, headers = signed_submission(flow, order_reference="ORD-RACE")
    start = threading.Barrier(COPIES)

    def one(_: int) -> tuple[int, bytes]:
        start.wait(timeout=30)
        return send(flow, body, headers)

    with ThreadPoolExecutor(COPIES) as pool:
        assert list(pool.map(one, range(COPIES))) == [(200, b"")] * COPIES
    flow.slack.wait_for(lambda s: cards(flow) == 1)
    assert requests_made(flow) == 1
    assert cards(flow) == 1


def test_another_modal_with_a_used_reference_is_still_refused(flow: Flow) -> None:
    flow.request(order_reference="ORD-TAKEN")
    body, headers = signed_submission(flow, order_reference="ORD-TAKEN")
    response = flow.sim.http.post(flow.sim.url, data=body.encode(), headers=headers, timeout=30)
    assert list(response.json()["errors"]) == ["order_reference"]
    assert requests_made(flow) == 1


def test_a_modal_corrected_after_an_error_makes_its_request(flow: Flow) -> None:
    flow.request(order_reference="ORD-FIRST")
    view = flow.open_modal()
    refused = flow.submit(view=view, order_reference="ORD-FIRST")
    assert list(refused.json()["errors"]) == ["order_reference"]
    accepted = flow.submit(view=view, order_reference="ORD-SECOND")
    assert accepted.status_code == 200 and not accepted.content.strip(), accepted.text
    flow.slack.wait_for(lambda s: cards(flow) == 2)
    assert requests_made(flow) == 2
