"""The CSV export of links: its columns, encoding, defused formulas, the period in the time
zone, the status filter and the workspace; ``paylink export`` from the command line."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.cli import _parser
from bot.commands import export as export_command
from bot.config import load_settings
from bot.links import export
from bot.links.policy import ApprovalPolicy
from bot.links.service import LinkService
from bot.links.states import Status
from bot.links.store import LinkStore
from bot.links.tables import Link
from bot.links.workspaces import Workspace
from tests.dbs import BACKENDS, migrated_engine
from tests.factories import checkout_request, payment_event
from tests.fakes import FakeGateway
from tests.procs import Procs

KARACHI = ZoneInfo("Asia/Karachi")  # UTC+5, no daylight saving time
HOME, ELSEWHERE = Workspace("T0HOME"), Workspace("T0OTHER")
NOVEMBER = export.days(date(2026, 11, 1), date(2026, 11, 30), KARACHI)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LinkStore]:
    with migrated_engine(request.param, tmp_path) as engine:
        yield LinkStore(engine)


@pytest.fixture
def service(store: LinkStore) -> LinkService:
    return LinkService(store, FakeGateway(), is_approver=lambda user: user == "U0APPROVER")


def add(
    store: LinkStore,
    created: datetime,
    *,
    workspace: Workspace = HOME,
    **fields: str,
) -> Link:
    """A request of ``workspace`` made at ``created``."""
    with store.transaction() as s:
        link = store.insert_link(
            s, checkout_request(**fields), requester_id="U0REP", actor="U0REP", workspace=workspace
        )
        store.update_fields(s, link.id, created_at=created)
    return link


def table(store: LinkStore, period: export.Period = NOVEMBER, **kw: object) -> list[list[str]]:
    """The export as a spreadsheet would read it: rows of cells, the header first."""
    out = io.StringIO()
    export.write(out, export.rows(store, period, timezone=KARACHI, **kw), KARACHI)  # type: ignore[arg-type]
    return list(csv.reader(io.StringIO(out.getvalue())))


def test_a_paid_link_has_every_column(store: LinkStore, service: LinkService) -> None:
    link = service.create_direct(
        checkout_request(customer_phone="03415682456", amount="5000"),
        actor="U0APPROVER",
        workspace=HOME,
    )
    service.apply_payment(payment_event(link.intent_id, amount="5000", method="jazzcash"))
    period = export.days(date.today(), date.today(), UTC)  # type: ignore[arg-type]
    out = io.StringIO()
    export.write(out, export.rows(store, period, timezone=KARACHI), KARACHI)
    header, row = list(csv.reader(io.StringIO(out.getvalue())))
    assert header == [
        "reference",
        "created (Asia/Karachi)",
        "requester",
        "approver(s)",
        "status",
        "amount",
        "currency",
        "customer name",
        "customer e-mail",
        "customer phone",
        "XPay intent id",
        "paid at (Asia/Karachi)",
        "payment method",
        "bank message",
        "test",
    ]
    cells = dict(zip(header, row, strict=True))
    assert cells["reference"] == link.reference
    assert cells["requester"] == "U0APPROVER" and cells["approver(s)"] == "U0APPROVER"
    assert cells["status"] == "Paid"
    assert cells["amount"] == "5000.00" and cells["currency"] == "PKR"
    assert cells["customer name"] == "Ayesha Khan"
    assert cells["customer e-mail"] == "ayesha.khan@example.com"  # in full: approvers only
    assert cells["customer phone"] == "+923415682456" or cells["customer phone"].endswith("2456")
    assert cells["XPay intent id"] == link.intent_id
    assert cells["payment method"] == "jazzcash"
    assert cells["bank message"] == "The payment was completed successfully"
    assert cells["test"] == ""
    created = datetime.strptime(cells["created (Asia/Karachi)"], "%Y-%m-%d %H:%M:%S")
    paid = datetime.strptime(cells["paid at (Asia/Karachi)"], "%Y-%m-%d %H:%M:%S")
    now = datetime.now(KARACHI).replace(tzinfo=None)
    assert abs((now - created).total_seconds()) < 60 and created <= paid


def test_both_approvers_of_a_two_approver_request_in_the_order_they_approved(
    store: LinkStore,
) -> None:
    policy = ApprovalPolicy(second_from={"PKR": Decimal("100000")})
    service = LinkService(
        store,
        FakeGateway(),
        is_approver=lambda user: user in ("U0B", "U0A", "U0C"),
        policy_for=lambda _team: policy,
    )

    def request(amount: str, hour: int) -> Link:
        link = service.request_link(
            checkout_request(amount=amount), requester_id="U0REP", channel_id="C0", workspace=HOME
        )
        with store.transaction() as s:
            store.update_fields(s, link.id, created_at=datetime(2026, 11, 10, hour, tzinfo=UTC))
        return link

    both = request("150000", 9)
    service.approve(both.id, "U0B", origin=HOME)
    service.approve(both.id, "U0A", origin=HOME)
    waiting = request("150000", 10)
    service.approve(waiting.id, "U0C", origin=HOME)
    one = request("5000", 11)
    service.approve(one.id, "U0A", origin=HOME)
    header, *body = table(store)
    column = header.index("approver(s)")
    assert [row[column] for row in body] == ["U0B, U0A", "U0C", "U0A"]


def test_the_file_is_utf8_with_a_bom_and_urdu_names_survive(
    store: LinkStore, tmp_path: Path
) -> None:
    add(store, datetime(2026, 11, 10, 12, tzinfo=UTC), customer_name="عائشہ خان")
    path = tmp_path / "links.csv"
    with open(path, "w", encoding=export.ENCODING, newline="") as out:
        export.write(out, export.rows(store, NOVEMBER, timezone=KARACHI), KARACHI)
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\xef\xbb\xbf") == 1
    assert b"\r\n" in raw  # the line ends spreadsheets expect
    header, row = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert header[0] == "reference"
    assert row[header.index("customer name")] == "عائشہ خان"


@pytest.mark.parametrize(
    ("typed", "written"),
    [
        ('=HYPERLINK("http://evil","x")', '\'=HYPERLINK("http://evil","x")'),
        ("+92 300 1234567", "'+92 300 1234567"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("Ayesha = Khan", "Ayesha = Khan"),  # only the first character matters
        ("", ""),
    ],
)
def test_cells_that_a_spreadsheet_would_run_are_defused(typed: str, written: str) -> None:
    assert export.defuse(typed) == written


def test_formula_names_are_written_as_text(store: LinkStore) -> None:
    add(store, datetime(2026, 11, 10, tzinfo=UTC), customer_name="=cmd|' /C calc'!A0")
    header, row = table(store)
    assert row[header.index("customer name")] == "'=cmd|' /C calc'!A0"
    assert row[header.index("amount")] == "1500.50"  # a number, untouched


def test_the_period_is_whole_days_in_the_time_zone(store: LinkStore) -> None:
    # Midnight in Karachi is 19:00 UTC the day before.
    before = add(store, datetime(2026, 10, 31, 18, 59, 59, tzinfo=UTC))
    first = add(store, datetime(2026, 10, 31, 19, 0, 0, tzinfo=UTC))
    last = add(store, datetime(2026, 11, 30, 18, 59, 59, tzinfo=UTC))
    after = add(store, datetime(2026, 11, 30, 19, 0, 0, tzinfo=UTC))
    header, *rows = table(store)
    assert [r[0] for r in rows] == [first.reference, last.reference]
    created = header.index("created (Asia/Karachi)")
    assert [r[created] for r in rows] == ["2026-11-01 00:00:00", "2026-11-30 23:59:59"]
    assert {before.reference, after.reference}.isdisjoint(r[0] for r in rows)


def test_a_month_is_its_days_in_the_time_zone() -> None:
    november = export.month("2026-11", KARACHI, date(2027, 1, 5))
    assert (november.start, november.end) == (NOVEMBER.start, NOVEMBER.end)
    assert november.name == "November 2026"
    december = export.month("", KARACHI, date(2026, 12, 2))  # the current month
    assert december.start == datetime(2026, 12, 1, tzinfo=KARACHI)
    assert december.end == datetime(2027, 1, 1, tzinfo=KARACHI)
    for bad in ("2026-13", "11-2026", "november", "2026-1"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            export.month(bad, KARACHI, date(2026, 12, 2))
    with pytest.raises(ValueError, match="before"):
        export.days(date(2026, 11, 30), date(2026, 11, 1), KARACHI)


def test_the_status_filter_and_the_workspace(store: LinkStore, service: LinkService) -> None:
    waiting = add(store, datetime(2026, 11, 3, tzinfo=UTC))
    paid = add(store, datetime(2026, 11, 4, tzinfo=UTC))
    foreign = add(store, datetime(2026, 11, 5, tzinfo=UTC), workspace=ELSEWHERE)
    service.approve(paid.id, "U0APPROVER")
    service.apply_payment(payment_event(service._load(paid.id).intent_id))
    refs = lambda **kw: [r[0] for r in table(store, **kw)[1:]]  # noqa: E731
    assert refs() == [waiting.reference, paid.reference, foreign.reference]
    assert refs(status=Status.PAID) == [paid.reference]
    assert refs(status=Status.AWAITING_APPROVAL, workspace=HOME) == [waiting.reference]
    assert refs(workspace=ELSEWHERE) == [foreign.reference]
    assert table(store, status=Status.CANCELLED) == [export.header(KARACHI)]


def test_statuses_are_named_by_value_or_label() -> None:
    assert export.parse_status("paid") is Status.PAID
    assert export.parse_status("Awaiting payment") is Status.AWAITING_PAYMENT
    assert export.parse_status("link-failed") is Status.LINK_FAILED
    with pytest.raises(ValueError, match="expected one of awaiting_approval"):
        export.parse_status("settled")


def test_the_command_writes_an_owner_only_file(
    store: LinkStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add(store, datetime(2026, 11, 10, tzinfo=UTC))
    args = _parser().parse_args(
        ["export", "--from", "2026-11-01", "--to", "2026-11-30", "--status", "Awaiting approval",
         "--output", str(tmp_path / "nov.csv")]
    )  # fmt: skip
    settings = load_settings(
        _env_file=None, database_url=store.engine.url.render_as_string(hide_password=False)
    )
    code = export_command(
        settings, first=args.first, last=args.last, status=args.status, output=args.output
    )
    assert code == 0
    assert (tmp_path / "nov.csv").stat().st_mode & 0o777 == 0o600
    assert len((tmp_path / "nov.csv").read_text(encoding="utf-8-sig").splitlines()) == 2
    assert "1 links created 2026-11-01 to 2026-11-30 (Asia/Karachi)" in capsys.readouterr().err
    code = export_command(settings, first=date(2026, 11, 2), last=date(2026, 11, 1))
    assert code == 2
    assert "is before" in capsys.readouterr().err


def test_the_command_line_refuses_bad_dates_and_statuses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for bad in (["--from", "2026-11-31"], ["--status", "settled"]):
        argv = ["export", "--from", "2026-11-01", "--to", "2026-11-30", *bad]
        with pytest.raises(SystemExit) as exited:
            _parser().parse_args(argv)
        assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "expected a date as YYYY-MM-DD, got '2026-11-31'" in err
    assert "expected one of awaiting_approval" in err


def test_paylink_export_prints_the_csv(tmp_path: Path, procs: Procs) -> None:
    with migrated_engine("sqlite", tmp_path) as engine:
        add(LinkStore(engine), datetime(2026, 11, 10, tzinfo=UTC), customer_name="عائشہ خان")
    result = procs.paylink(
        "export", "--from", "2026-11-01", "--to", "2026-11-30",
        DATABASE_URL=f"sqlite:///{tmp_path / 'paylink-test.db'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("\ufeffreference,")
    assert "عائشہ خان" in result.stdout


def test_a_renewed_link_shows_the_intent_that_was_paid(
    store: LinkStore, service: LinkService
) -> None:
    """Renewed (``REF-2``) and then paid on the earlier link ``REF``: the row is the
    request's (its own reference) with the intent the customer paid, not the current one.
    Paid on both (a double payment): still one row, with the intent paid first."""

    def renewed(hour: int) -> Link:
        link = add(store, datetime(2026, 11, 10, hour, tzinfo=UTC))
        service.approve(link.id, "U0APPROVER")
        first = service._load(link.id).intent_id
        assert first is not None
        assert service.expire(link.id, first) is not None
        service.renew(link.id, "U0REP")
        renewed = service._load(link.id)
        assert renewed.checkout_reference == f"{link.reference}-2"
        assert renewed.intent_id != first
        return renewed

    old_paid = renewed(9)  # xpay_pi_1, then xpay_pi_2 (current)
    service.apply_payment(payment_event("xpay_pi_1", method="card"))
    twice = renewed(10)  # xpay_pi_3, then xpay_pi_4 (current)
    service.apply_payment(payment_event("xpay_pi_4", method="easypaisa"))
    service.apply_payment(payment_event("xpay_pi_3", method="card"))  # the double payment
    unpaid = renewed(11)  # xpay_pi_5, then xpay_pi_6 (current)

    header, *body = table(store)
    rows = [dict(zip(header, row, strict=True)) for row in body]
    assert [r["reference"] for r in rows] == [old_paid.reference, twice.reference, unpaid.reference]
    assert [r["status"] for r in rows] == ["Paid", "Paid", "Awaiting payment"]
    assert [r["XPay intent id"] for r in rows] == ["xpay_pi_1", "xpay_pi_4", "xpay_pi_6"]
    assert [r["payment method"] for r in rows] == ["card", "easypaisa", ""]
    assert rows[0]["paid at (Asia/Karachi)"] and rows[1]["paid at (Asia/Karachi)"]
    assert rows[2]["paid at (Asia/Karachi)"] == ""
