"""The KPI figures (KPIS.md, F17) on desk data built by a replayed stream, where every figure is
known by construction; on SQLite and on PostgreSQL; through ``recoverydesk kpi`` (JSON, CSV,
HTML) and ``GET /api/v1/kpis``.

The merchant is in New York (UTC-5 in November): ISO week 2026-W48 runs from Monday 23 November
05:00 UTC to Monday 30 November 05:00 UTC. Ten orders are placed in that week, across two
channels and two fulfilment types; one more was placed on Sunday 22 November at 23:00 local
time (already Monday in UTC) and belongs to the week before. The stream is replayed with the
desk's own code in simulated time (recording fakes answer nothing: only the stream does), as
``recoverydesk replay`` does, but into the test's database.

- o1 (shopify, in_house): shipped on time; delivered Friday 23:30 local, its promised date
  (Saturday in UTC): on time; 20.00 of 100.00 refunded (a concession); a delivery delay; a dispute.
- o2 (shopify, in_house): the customer cancels before release: stopped at once.
- o3 (shopify, in_house): shipped an hour after ship-by; delivered the day after its promise.
- o4 (shopify, 3pl): one of its two lines cancelled (partial).
- o5 (shopify, 3pl): shipped on time, refunded in full with no return (leakage).
- o6 (amazon, in_house): ops cancels while picking; the warehouse acknowledges 45 min later.
- o7 (amazon, in_house): shipped late; delivered 01:00 local the day after its promised date
  (the same date in UTC).
- o8 (amazon, 3pl): the customer asks to cancel after shipment: a return (a late request).
- o9 (amazon, 3pl): shipped on time, then cancelled by the marketplace (a seller cancel).
- o10 (amazon, 3pl): placed Sunday 23:30 local (Monday in UTC); its payment fails 10 min later.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from sqlalchemy import and_, column, create_engine, select, table, text

from recoverydesk.bootstrap import bootstrap
from recoverydesk.config import Settings
from recoverydesk.domain.errors import InvalidEvent
from recoverydesk.entrypoints.intake_file import read_events
from recoverydesk.persistence.tables import cases, orders
from recoverydesk.reports import kpis
from recoverydesk.reports.kpi_orders import local_date
from recoverydesk.reports.kpi_period import week_period
from recoverydesk.sandbox import replay as simulation
from recoverydesk.sandbox.recorders import (
    RecordedActions,
    RecordingChat,
    RecordingEmail,
    RecordingOutside,
)
from recoverydesk.services import merchants as admin
from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.ports import IncomingEvent
from tests.e2e.conftest import LiveDesk

CLI = [sys.executable, "-m", "recoverydesk.entrypoints.cli"]
MERCHANT = "nyc"
CONFIG = "time_zone: America/New_York\n"


def u(day: int, hhmm: str, month: int = 11) -> str:
    """A UTC time in 2026."""
    return f"2026-{month:02d}-{day:02d}T{hhmm}:00Z"


def ev(eid: str, event_type: str, when: str, ref: str, **data: Any) -> dict[str, Any]:
    return {
        "id": eid,
        "source": eid.split(":", 1)[0],
        "type": event_type,
        "occurred_at": when,
        "order": {"ref": ref},
        "data": data,
    }


def placed(ref: str, channel: str, kind: str, when: str, **facts: Any) -> dict[str, Any]:
    event = ev(f"{channel}:{ref}-placed", "order.placed", when, ref)
    event["order"].update(
        channel=channel,
        fulfillment_type=kind,
        value="100.00",
        currency="USD",
        placed_at=when,
        customer={"email": f"{ref}@example.com"},
        lines=[{"sku": "A", "qty": 1, "price": "50.00"}, {"sku": "B", "qty": 1, "price": "50.00"}],
        **facts,
    )
    return event


def captured(ref: str, when: str) -> dict[str, Any]:
    return ev(f"psp:{ref}-cap", "payment.captured", when, ref, amount="100.00")


def shipped(ref: str, when: str) -> dict[str, Any]:
    return ev(f"wms:{ref}-ship", "fulfillment.shipped", when, ref, tracking=f"1Z{ref}")


def delivered(ref: str, when: str) -> dict[str, Any]:
    return ev(f"carrier:{ref}-dlv", "fulfillment.delivered", when, ref)


TUESDAY = u(24, "14:00")  # 09:00 in New York
FRIDAY = u(27, "20:00")  # 15:00 in New York


def refunded(ref: str, when: str, amount: str) -> dict[str, Any]:
    return ev(f"psp:{ref}-refund", "payment.refunded", when, ref, refund_id=ref, amount=amount)


STREAM = [
    # settled card transactions in October (the chargeback ratio's denominator)
    placed("o12", "shopify", "in_house", u(15, "14:00", 10)),
    captured("o12", u(15, "14:05", 10)),
    placed("o13", "shopify", "in_house", u(16, "14:00", 10)),
    captured("o13", u(16, "14:05", 10)),
    # Sunday 22 November 23:00 in New York: the week before
    placed("o11", "shopify", "in_house", u(23, "04:00")),
    placed(
        "o1", "shopify", "in_house", TUESDAY, ship_by=u(25, "22:00"), promised_by=u(27, "20:00")
    ),
    placed("o2", "shopify", "in_house", TUESDAY),
    placed(
        "o3", "shopify", "in_house", TUESDAY, ship_by=u(24, "20:00"), promised_by=u(27, "20:00")
    ),
    placed("o4", "shopify", "3pl", TUESDAY),
    placed("o5", "shopify", "3pl", TUESDAY, ship_by=u(25, "22:00")),
    placed("o6", "amazon", "in_house", TUESDAY),
    placed("o7", "amazon", "in_house", TUESDAY, ship_by=u(24, "22:00"), promised_by=u(27, "03:00")),
    placed("o8", "amazon", "3pl", TUESDAY),
    placed("o9", "amazon", "3pl", TUESDAY, ship_by=u(26, "22:00")),
    captured("o1", u(24, "14:01")),
    captured("o2", u(24, "14:01")),
    captured("o5", u(24, "14:01")),
    captured("o6", u(24, "14:01")),
    captured("o8", u(24, "14:01")),
    # o2: the customer cancels an order the warehouse never saw: stopped at once
    ev("shopify:o2-cancel", "cancel.requested", u(24, "15:00"), "o2", requested_by="customer"),
    # o6: ops cancels while picking; acknowledged after 45 minutes
    ev("wms:o6-picking", "fulfillment.picking", u(24, "15:50"), "o6"),
    ev("desk:o6-cancel", "cancel.requested", u(24, "16:00"), "o6", requested_by="ops"),
    ev("wms:o6-ack", "stopship.acknowledged", u(24, "16:45"), "o6"),
    # the payment provider confirms the desk's refunds of o2 and o6
    refunded("o2", u(24, "15:05"), "100.00"),
    refunded("o6", u(24, "16:50"), "100.00"),
    # o3 and o7 ship late; o1, o5 and o9 on time
    shipped("o3", u(24, "21:00")),
    shipped("o7", u(24, "23:00")),
    shipped("o1", u(25, "20:00")),
    shipped("o5", u(25, "21:00")),
    # o4: one line of two cancelled
    ev("shopify:o4-cancel", "order.cancelled", u(25, "14:30"), "o4", lines=[{"sku": "A"}]),
    # o8: shipped, then the customer asks to cancel: a return
    shipped("o8", u(25, "15:00")),
    ev("amazon:o8-cancel", "cancel.requested", u(25, "16:00"), "o8", requested_by="customer"),
    # o9: shipped, then cancelled by the marketplace
    shipped("o9", u(26, "15:00")),
    ev("amazon:o9-cancel", "order.cancelled", u(26, "16:00"), "o9"),
    # deliveries: o7 at 01:00 on 27 November in New York, promised 26 November 22:00 local
    delivered("o7", u(27, "06:00")),
    refunded("o5", u(27, "15:00"), "100.00"),
    refunded("o1", u(27, "15:10"), "20.00"),
    ev("carrier:o1-delay", "delivery.exception", u(26, "15:00"), "o1", kind="delay"),
    ev("psp:o1-dispute", "dispute.opened", u(27, "16:00"), "o1", amount="80.00", reason="fraud"),
    # o1 at 23:30 on Friday 27 November in New York (its promised date); o3 on Saturday
    delivered("o1", u(28, "04:30")),
    delivered("o3", u(28, "15:00")),
    # o10: Sunday 29 November 23:30 in New York, its payment fails 10 minutes later
    placed("o10", "amazon", "3pl", u(30, "04:30")),
    ev("psp:o10-fail", "payment.failed", u(30, "04:40"), "o10", reason="card_declined"),
]


def build_desk(db_url: str, folder: Path) -> None:
    """Replay the stream with the desk's code in simulated time into ``db_url``."""
    stream = folder / "events.jsonl"
    in_time_order = sorted(STREAM, key=lambda event: event["occurred_at"])
    stream.write_text("".join(json.dumps(event) + "\n" for event in in_time_order))
    config = folder / "merchant.yaml"
    config.write_text(CONFIG)
    items = [item for _, item in read_events(stream) if isinstance(item, IncomingEvent)]
    assert not [item for _, item in read_events(stream) if isinstance(item, InvalidEvent)]
    start, end = simulation.span(items, None)
    clock = SimulatedClock(start)
    recorded = RecordedActions(clock)
    desk = bootstrap(
        Settings(database_url=db_url),
        clock=clock,
        email=RecordingEmail(recorded),
        chat=RecordingChat(recorded),
        outside=RecordingOutside(recorded),
    )
    try:
        desk.upgrade()
        with desk.uow() as uow:
            admin.add_merchant(uow, clock=clock, name=MERCHANT, config=config)
            uow.commit()
        with desk.reader() as uow:
            merchant = admin.require_merchant(uow, MERCHANT)
        simulation.run(
            items,
            clock=clock,
            runner=desk.job_runner("replay"),
            until=end,
            ingest=lambda batch: desk.ingest(merchant, batch),
        )
    finally:
        desk.close()


def kpi_cli(db_url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "kpi", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RECOVERYDESK_DATABASE_URL": db_url},
        check=False,
    )


@pytest.fixture(scope="module")
def sqlite_desk(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp("kpis-sqlite")
    url = f"sqlite:///{folder / 'desk.db'}"
    build_desk(url, folder)
    return url, folder


@pytest.fixture(scope="module")
def pg_desk(pg_server: str) -> Iterator[str]:
    """The stream replayed once into a fresh PostgreSQL database, dropped afterwards."""
    name = f"rd_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as server:
        server.execute(f'CREATE DATABASE "{name}"')
    base = pg_server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    url = f"{base}/{name}"
    build_desk(url, Path(tempfile.mkdtemp(prefix="kpis-pg-")))
    yield url
    with psycopg.connect(pg_server, autocommit=True) as server:
        server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def week(request: pytest.FixtureRequest, sqlite_desk: tuple[str, Path]) -> dict[str, Any]:
    """The figures of week 2026-W48, from ``recoverydesk kpi`` on each database."""
    url, folder = sqlite_desk
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_desk")
    result = kpi_cli(url, "--merchant", MERCHANT, "--week", "2026-W48", cwd=folder)
    assert result.returncode == 0, result.stderr
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


def segment(figures: dict[str, Any], channel: str, kind: str) -> dict[str, Any]:
    (found,) = [
        s for s in figures["by_segment"] if (s["channel"], s["fulfillment_type"]) == (channel, kind)
    ]
    return found


def r(numerator: int, denominator: int) -> dict[str, Any]:
    value = round(numerator / denominator, 6) if denominator else None
    return {"value": value, "numerator": numerator, "denominator": denominator}


def test_the_week_is_monday_to_monday_in_the_merchants_time_zone(week: dict[str, Any]) -> None:
    # given the stream replayed; when the week's figures are asked for
    # then the week runs from Monday 00:00 in New York, and the order placed on Sunday 23:00
    # local (already Monday in UTC) is not in it while Sunday 23:30 of this week is
    assert week["period"] == {
        "from": "2026-11-23T05:00:00+00:00",
        "to": "2026-11-30T05:00:00+00:00",
        "label": "2026-W48",
        "time_zone": "America/New_York",
    }
    assert week["orders"] == 10
    assert [(s["channel"], s["fulfillment_type"], s["orders"]) for s in week["by_segment"]] == [
        ("amazon", "3pl", 3),
        ("amazon", "in_house", 2),
        ("shopify", "3pl", 2),
        ("shopify", "in_house", 3),
    ]


def test_cancellations_overall_and_by_segment(week: dict[str, Any]) -> None:
    # then o2, o6 and o9 are cancelled; o4 partially; o2 and o6 before any shipment; o6 (ops)
    # and o9 (no buyer request) are the seller's cancels
    assert week["cancellation_rate"] == r(3, 10)
    assert week["partial_cancellation_rate"] == r(1, 10)
    assert week["pre_fulfillment_cancel_rate"] == {
        **r(2, 10),
        "threshold": 0.025,
        "above_threshold": True,
    }
    assert week["seller_cancel_rate"] == r(2, 10)
    amazon_3pl = segment(week, "amazon", "3pl")
    assert amazon_3pl["cancellation_rate"] == r(1, 3)
    assert amazon_3pl["pre_fulfillment_cancel_rate"]["numerator"] == 0
    assert amazon_3pl["seller_cancel_rate"] == r(1, 3)
    shopify_in_house = segment(week, "shopify", "in_house")
    assert shopify_in_house["cancellation_rate"] == r(1, 3)
    assert shopify_in_house["seller_cancel_rate"] == r(0, 3)
    assert segment(week, "shopify", "3pl")["partial_cancellation_rate"] == r(1, 2)


def test_late_shipments_and_deliveries_by_calendar_date_in_the_merchants_zone(
    week: dict[str, Any],
) -> None:
    # then o3 and o7 shipped after their ship-by time, of the five shipped orders with one
    assert week["late_shipment_rate"] == {**r(2, 5), "threshold": 0.04, "above_threshold": True}
    # and of the three delivered orders with a promise, o3 (a day late) and o7 (01:00 local the
    # next day, the same date in UTC) are late; o1 (23:30 local on its date, Saturday in UTC)
    # is on time
    assert week["late_delivery_rate"] == r(2, 3)
    assert segment(week, "shopify", "in_house")["late_delivery_rate"] == r(1, 2)
    assert segment(week, "amazon", "in_house")["late_delivery_rate"] == r(1, 1)
    # and o8 shipped without a ship-by time: listed, not counted
    assert week["data_quality"]["missing"]["ship_by"] == 5


def test_time_to_cancel_and_stop_ship_success(week: dict[str, Any]) -> None:
    # then three requests finished: o2 at once, o6 after 45 minutes, o8 at once (a return)
    ttc = week["time_to_cancel"]
    assert (ttc["count"], ttc["median_seconds"], ttc["p90_seconds"]) == (3, 0.0, 2700.0)
    assert ttc["within_1h"] == r(3, 3)
    assert [b["count"] for b in ttc["histogram"]] == [3, 0, 0, 0]
    # and both requests that came before shipment were stopped; o8's came after
    assert week["stop_ship_success_rate"] == r(2, 2)
    assert week["late_cancel_requests"] == 1
    assert segment(week, "amazon", "3pl")["late_cancel_requests"] == 1
    assert segment(week, "amazon", "in_house")["time_to_cancel"]["median_seconds"] == 2700.0


def test_refund_leakage_and_the_money_figures(week: dict[str, Any]) -> None:
    # then o5's full refund after shipment with no return is leakage; o1's 20.00 is not
    leakage = week["refund_leakage"]
    assert leakage["count"] == 1
    assert leakage["amount"] == [{"amount": "100.00", "currency": "USD"}]
    assert leakage["refunded"] == [{"amount": "320.00", "currency": "USD"}]
    assert leakage["share_of_refunded"] == round(100 / 320, 6)
    assert segment(week, "shopify", "3pl")["refund_leakage"]["count"] == 1
    # and o10's failed payment is the revenue at risk at the end of the week
    assert week["revenue_at_risk"] == [{"amount": "100.00", "currency": "USD"}]


def test_saves_backlog_and_sla(week: dict[str, Any]) -> None:
    # then the at-risk cases closed in the week: the late-shipment cases of o3 and o7 (saved:
    # they shipped) and the three cancel requests (cancelled or converted: not saved)
    assert week["save_rate"] == r(2, 5)
    assert week["revenue_saved"] == [{"amount": "200.00", "currency": "USD"}]
    # and open at the end of the week: o10's payment (20 minutes old), o1's dispute (61 h),
    # o5's refund leakage (62 h) and o9's cancel after shipment (85 h)
    backlog = week["exception_backlog"]
    assert backlog["by_category"] == {"chargeback": 1, "drift": 2, "payment_failed": 1}
    assert backlog["by_age"] == {"<4h": 1, "4-24h": 0, "24-72h": 2, ">72h": 1}
    assert (backlog["open"], backlog["older_than_24h"]) == (4, 3)
    # and the first-touch clocks of the six cases closed in the week (business hours 09:00-17:00
    # in New York): o3's late-shipment case opened at 15:00 local and shipped at 16:00, past
    # its first-touch time; o7's opened after hours, so its clock had not started running when
    # it shipped; o1's delivery delay (Thursday 10:00 local, 4 working hours) was delivered
    # late on Friday night. Only that delivery case has a resolution clock (8 working hours).
    assert week["first_touch_sla_attainment"] == r(4, 6)
    assert week["resolution_sla_attainment"] == r(0, 1)
    assert segment(week, "amazon", "in_house")["first_touch_sla_attainment"] == r(2, 2)


def test_chargeback_ratio_against_the_previous_months_settled_payments(
    week: dict[str, Any],
) -> None:
    # then one dispute in November against two captured payments in October
    figure = week["chargeback_ratio"]
    assert {k: figure[k] for k in ("value", "numerator", "denominator")} == r(1, 2)
    assert (figure["month"], figure["settled_month"], figure["computable"]) == (
        "2026-11",
        "2026-10",
        True,
    )


def test_no_payment_data_makes_the_chargeback_ratio_not_computable(
    sqlite_desk: tuple[str, Path],
) -> None:
    # given the same desk; when the figures of a week in October are asked (September has no
    # captured payment)
    url, folder = sqlite_desk
    result = kpi_cli(url, "--merchant", MERCHANT, "--week", "2026-W42", cwd=folder)
    assert result.returncode == 0, result.stderr
    figure = json.loads(result.stdout)["chargeback_ratio"]
    # then the ratio says it cannot be computed, and why
    assert (figure["computable"], figure["value"]) == (False, None)
    assert "2026-09" in figure["reason"]


def test_a_date_range_covers_whole_local_days(sqlite_desk: tuple[str, Path]) -> None:
    # given the same desk; when Tuesday alone is asked for
    url, folder = sqlite_desk
    args = ["--merchant", MERCHANT, "--from", "2026-11-24", "--to", "2026-11-24"]
    result = kpi_cli(url, *args, cwd=folder)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    # then the nine orders placed on Tuesday count
    assert figures["orders"] == 9
    assert figures["period"]["from"] == "2026-11-24T05:00:00+00:00"


def test_csv_has_one_row_per_figure_and_segment(sqlite_desk: tuple[str, Path]) -> None:
    url, folder = sqlite_desk
    result = kpi_cli(
        url, "--merchant", MERCHANT, "--week", "2026-W48", "--format", "csv", cwd=folder
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["key", "segment", "value", "numerator", "denominator"]
    found = {(row["key"], row["segment"]): row for row in rows}
    overall = found[("cancellation_rate", "all")]
    assert (overall["value"], overall["numerator"], overall["denominator"]) == ("0.3", "3", "10")
    late = found[("late_delivery_rate", "amazon/in_house")]
    assert (late["value"], late["numerator"], late["denominator"]) == ("1.0", "1", "1")
    assert found[("refund_leakage.amount.USD", "all")]["value"] == "100.00"
    assert found[("orders", "shopify/in_house")]["value"] == "3"


def test_html_report_is_self_contained(sqlite_desk: tuple[str, Path], tmp_path: Path) -> None:
    url, folder = sqlite_desk
    out = tmp_path / "week.html"
    args = ["--merchant", MERCHANT, "--week", "2026-W48", "--format", "html", "--out", str(out)]
    result = kpi_cli(url, *args, cwd=folder)
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    # then the page has its charts inline, and nothing to fetch: no script, no outside link
    assert page.count("<svg") >= 5
    assert "<script" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "2.5% marketplace line" in page
    assert "payments (PSP)" in page or "Root causes" in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--merchant", MERCHANT, "--week", "2026-48"], "YYYY-Www"),
        (["--merchant", MERCHANT, "--week", "2026-W54"], "no ISO week 54"),
        (["--merchant", "nobody", "--week", "2026-W48"], "no merchant named 'nobody'"),
        (["--merchant", MERCHANT, "--from", "2026-11-24"], "both from and to"),
        (["--merchant", MERCHANT, "--week", "2026-W48", "--format", "pdf"], "json, csv or html"),
    ],
)
def test_bad_requests_exit_1_with_one_line(
    sqlite_desk: tuple[str, Path], args: list[str], message: str
) -> None:
    url, folder = sqlite_desk
    result = kpi_cli(url, *args, cwd=folder)
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_api_answers_json_csv_and_html_and_422_for_a_bad_week(live: LiveDesk) -> None:
    # given a desk behind the API with a merchant's token
    token = live.token("apikpis")
    client = live.client(token)
    # when the week's figures are asked for
    answer = client.get("/api/v1/kpis", params={"week": "2026-W48"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["orders"] == 0
    assert answer.json()["merchant"] == "apikpis"
    csv_answer = client.get("/api/v1/kpis", params={"week": "2026-W48", "format": "csv"})
    assert csv_answer.headers["content-type"].startswith("text/csv")
    html = client.get(
        "/api/v1/kpis", params={"from": "2026-11-01", "to": "2026-11-30", "format": "html"}
    )
    assert html.status_code == 200
    assert "<svg" in html.text
    # then a bad week is the caller's fault, in the error shape
    bad = client.get("/api/v1/kpis", params={"week": "2026-W99"})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_input"
    # and without a token nothing is shown
    assert httpx.get(f"{live.base_url}/api/v1/kpis?week=2026-W48").status_code == 401


def test_the_api_figures_match_the_cli(live: LiveDesk, tmp_path: Path) -> None:
    # given the stream replayed into the database behind a running API
    url = live.desk.settings.database_url
    build_desk(url, tmp_path)
    client = live.client(live.token(MERCHANT, role="lead"))
    # when the token's merchant asks for the week
    answer = client.get("/api/v1/kpis", params={"week": "2026-W48"})
    # then it gets the figures the command line prints
    assert answer.status_code == 200, answer.text
    cli = kpi_cli(url, "--merchant", MERCHANT, "--week", "2026-W48", cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert answer.json() == {**json.loads(cli.stdout), "merchant": MERCHANT}


def _ingest_in_arrival_order(
    db_url: str, folder: Path, batches: list[list[dict[str, Any]]]
) -> None:
    """Each batch ingested as it arrives, whatever the events' own times."""
    config = folder / "merchant.yaml"
    config.write_text(CONFIG)
    clock = SimulatedClock(simulation_start())
    recorded = RecordedActions(clock)
    desk = bootstrap(
        Settings(database_url=db_url),
        clock=clock,
        email=RecordingEmail(recorded),
        chat=RecordingChat(recorded),
        outside=RecordingOutside(recorded),
    )
    try:
        desk.upgrade()
        with desk.uow() as uow:
            admin.add_merchant(uow, clock=clock, name=MERCHANT, config=config)
            uow.commit()
        with desk.reader() as uow:
            merchant = admin.require_merchant(uow, MERCHANT)
        for number, batch in enumerate(batches):
            stream = folder / f"batch-{number}.jsonl"
            stream.write_text("".join(json.dumps(event) + "\n" for event in batch))
            items = [item for _, item in read_events(stream) if isinstance(item, IncomingEvent)]
            desk.ingest(merchant, items)
    finally:
        desk.close()


def simulation_start() -> datetime:
    return datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'desk.db'}"
        return
    pg_server: str = request.getfixturevalue("pg_server")
    name = f"rd_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as server:
        server.execute(f'CREATE DATABASE "{name}"')
    base = pg_server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with psycopg.connect(pg_server, autocommit=True) as server:
        server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_case_opened_before_its_order_arrived_counts_under_the_orders_segment(
    empty_db: str, tmp_path: Path
) -> None:
    # given a payment failure that arrives (and opens a case) before its order's placement,
    # which arrives later with the channel, fulfilment type and value
    failed = ev("psp:x1-fail", "payment.failed", u(24, "14:10"), "x1", reason="card_declined")
    late = placed("x1", "amazon", "3pl", u(24, "14:00"))
    _ingest_in_arrival_order(empty_db, tmp_path, [[failed], [late]])
    # when the week's figures are computed
    engine = create_engine(empty_db)
    try:
        with engine.connect() as db:
            merchant_id, zone = kpis.merchant_named(db, MERCHANT)
            figures = kpis.compute(db, merchant_id, week_period("2026-W48", zone))
            copies = db.execute(
                select(
                    cases.c.order_channel,
                    cases.c.order_fulfillment_type,
                    cases.c.order_value,
                    cases.c.order_currency,
                ).where(cases.c.order_ref == "x1")
            ).all()
    finally:
        engine.dispose()
    # then the case carries its order's segment and value, as the order has them now
    assert copies == [("amazon", "3pl", Decimal("100.00"), "USD")]
    # and the open case and its revenue at risk count under the order's segment, not unknown
    assert [(s["channel"], s["fulfillment_type"]) for s in figures["by_segment"]] == [
        ("amazon", "3pl")
    ]
    assert figures["cases_opened"] == 1
    assert figures["exception_backlog"]["open"] == 1
    assert figures["revenue_at_risk"] == [{"amount": "100.00", "currency": "USD"}]


@pytest.mark.parametrize(
    "zone", ["UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham"]
)
def test_sqlite_local_dates_agree_with_the_time_zone_database(zone: str) -> None:
    # given stored UTC times around every offset change near a week, the last microsecond of
    # local days, and times far outside the span worked out in SQL
    period = week_period("2026-W44", zone)
    moments = [period.start + timedelta(hours=h, microseconds=999_999) for h in range(-24, 24)]
    moments += [
        period.start + timedelta(days=d, seconds=s) for d in range(-400, 500, 7) for s in (-1, 0)
    ]
    moments += [
        datetime(2026, m, 1, tzinfo=UTC) + timedelta(seconds=s)
        for m in range(1, 13)
        for s in range(-3600 * 14, 3600 * 15, 1800)
    ]
    stored = [m.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") for m in moments]
    engine = create_engine("sqlite://")
    with engine.connect() as db:
        db.exec_driver_sql("CREATE TABLE times (at TEXT)")
        db.execute(text("INSERT INTO times VALUES (:at)"), [{"at": s} for s in stored])
        times = table("times", column("at"))
        # when the SQL computes each time's local date
        found = dict(db.execute(select(times.c.at, local_date(db, times.c.at, zone, period))).all())
    # then it is the date zoneinfo gives
    expected = {
        s: m.astimezone(ZoneInfo(zone)).date().isoformat()
        for s, m in zip(stored, moments, strict=True)
    }
    assert found == expected


@pytest.fixture(params=["sqlite", "postgresql"])
def replayed_url(request: pytest.FixtureRequest, sqlite_desk: tuple[str, Path]) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_desk"))
    return sqlite_desk[0]


def test_every_case_carries_its_orders_segment_and_value(replayed_url: str) -> None:
    # given the stream replayed (cases opened, changed and closed as events arrived)
    engine = create_engine(replayed_url)
    copies = (
        cases.c.order_channel,
        cases.c.order_fulfillment_type,
        cases.c.order_value,
        cases.c.order_currency,
    )
    same_order = and_(
        orders.c.merchant_id == cases.c.merchant_id, orders.c.ref == cases.c.order_ref
    )
    try:
        with engine.connect() as db:
            # when each case is read beside its order
            rows = db.execute(
                select(
                    cases.c.order_ref,
                    *copies,
                    orders.c.channel,
                    orders.c.fulfillment_type,
                    orders.c.value,
                    orders.c.currency,
                ).select_from(cases.outerjoin(orders, same_order))
            ).all()
    finally:
        engine.dispose()
    # then every case's copy is its order's segment and value as they are now
    assert len(rows) >= 5
    assert [row for row in rows if tuple(row[1:5]) != tuple(row[5:9])] == []
