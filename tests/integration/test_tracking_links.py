"""Carrier events that know only a tracking number reach their order, on real databases.

An EasyPost tracker (or an AfterShip tracking without an order number) names no order, only the
parcel's tracking number. The desk records the tracking numbers its orders shipped under, and at
intake moves such an event to the order shipped under its number: a delivery exception opens its
case on the real order, not on an order named after the tracking number.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from structlog.testing import capture_logs

from recoverydesk.bootstrap import Desk, bootstrap
from recoverydesk.config import Settings
from recoverydesk.connectors.normalize import normalize
from recoverydesk.domain.cases import Case, Category
from recoverydesk.persistence.migrate import downgrade, upgrade
from recoverydesk.persistence.tables import events, tracking_numbers
from recoverydesk.services import merchants as admin
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.intake import IngestReport
from recoverydesk.services.ports import IncomingEvent, Merchant

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
VENDORS = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "vendors"


@pytest.fixture
def desk(db_url: str) -> Iterator[tuple[Desk, Merchant]]:
    desk = bootstrap(Settings(database_url=db_url), clock=SimulatedClock(T0 + timedelta(hours=3)))
    desk.upgrade()
    with desk.uow() as uow:
        admin.add_merchant(uow, clock=desk.clock, name="acme")
        uow.commit()
    with desk.reader() as uow:
        merchant = uow.merchants.by_name("acme")
    assert merchant is not None
    try:
        yield desk, merchant
    finally:
        desk.close()


def canonical(event_id: str, kind: str, minutes: int, **data: Any) -> IncomingEvent:
    raw = {
        "id": event_id,
        "source": event_id.split(":", 1)[0],
        "type": kind,
        "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "order": {"ref": "1001", "value": "80.00", "currency": "EUR", "channel": "web"},
        "data": data,
    }
    return IncomingEvent(parse_event(raw), json.dumps(raw))


SHIPPED_1Z999 = [
    canonical("shopify:1001-placed", "order.placed", 0),
    canonical("wms:1001-shipped", "fulfillment.shipped", 60, tracking="1Z999", carrier="UPS"),
]


def easypost_tracker(code: str, status: str, detail: str | None = None) -> dict[str, Any]:
    """The EasyPost ``tracker.updated`` webhook body, for parcel ``code`` now at ``status``."""
    body: dict[str, Any] = json.loads(
        (VENDORS / "easypost" / "webhook-event-tracker-updated.json").read_text(encoding="utf-8")
    )
    body["result"].update(
        tracking_code=code,
        status=status,
        status_detail=detail,
        updated_at=(T0 + timedelta(hours=2)).isoformat(),
    )
    return body


def carrier(provider: str, payload: dict[str, Any]) -> list[IncomingEvent]:
    """A carrier's webhook body through its normalizer, as the webhook endpoint takes it."""
    result = normalize(provider, payload, headers={}, received_at=T0 + timedelta(hours=3))
    return [IncomingEvent(parse_event(item), json.dumps(payload)) for item in result.events]


def cases_of(desk: Desk, merchant: Merchant, *refs: str) -> dict[str, list[Case]]:
    with desk.reader() as uow:
        return uow.cases.for_orders(merchant.id, list(refs), open_only=False)


def stored_refs(desk: Desk, merchant: Merchant, event_id: str) -> list[str]:
    query = select(events.c.order_ref).where(
        events.c.merchant_id == merchant.id, events.c.event_id == event_id
    )
    with desk.engine.connect() as db:
        return list(db.execute(query).scalars())


def test_a_carrier_exception_for_a_shipped_parcel_opens_its_case_on_the_real_order(
    desk: tuple[Desk, Merchant],
) -> None:
    app, merchant = desk
    # given order 1001, shipped by the 3PL under tracking number 1Z999
    app.ingest(merchant, SHIPPED_1Z999)
    # when EasyPost reports that parcel returned to sender
    tracker = carrier("easypost", easypost_tracker("1Z999", "return_to_sender"))
    report = app.ingest(merchant, tracker)
    # then the event is stored once, under order 1001, with the id the normalizer gave it
    assert (report.stored, report.duplicates) == (1, 0)
    assert stored_refs(app, merchant, "carrier:easypost:trk_1:return_to_sender") == ["1001"]
    # and the delivery exception case is open on order 1001; no order is named after 1Z999
    found = cases_of(app, merchant, "1001", "1Z999")
    assert [c.category for c in found["1001"]] == [Category.DELIVERY_EXCEPTION]
    assert found["1001"][0].is_open
    assert "1Z999" not in found
    with app.reader() as uow:
        assert uow.orders.get(merchant.id, "1Z999") is None
        order = uow.orders.get(merchant.id, "1001")
    assert order is not None
    assert order.evidence.return_in_flight_by == "carrier:easypost:trk_1:return_to_sender"


def test_a_redelivered_carrier_webhook_is_stored_once(desk: tuple[Desk, Merchant]) -> None:
    app, merchant = desk
    # given order 1001 shipped under 1Z999, and EasyPost's failure report for that parcel
    app.ingest(merchant, SHIPPED_1Z999)
    payload = easypost_tracker("1Z999", "failure", "lost")
    first = app.ingest(merchant, carrier("easypost", payload))
    # when EasyPost delivers the same webhook again
    again = app.ingest(merchant, carrier("easypost", payload))
    # then the second is a duplicate: one event, one case, on order 1001
    assert (first.stored, again.stored, again.duplicates) == (1, 0, 1)
    assert stored_refs(app, merchant, "carrier:easypost:trk_1:failure") == ["1001"]
    assert len(cases_of(app, merchant, "1001")["1001"]) == 1


def test_a_carrier_event_for_an_unknown_tracking_number_stays_under_the_number(
    desk: tuple[Desk, Merchant],
) -> None:
    app, merchant = desk
    # given order 1001 shipped under 1Z999
    app.ingest(merchant, SHIPPED_1Z999)
    # when EasyPost reports a lost parcel whose number no order has
    with capture_logs() as logs:
        report = app.ingest(merchant, carrier("easypost", easypost_tracker("1Z000", "failure")))
    # then it is stored under the tracking number, and the desk says why
    assert report.stored == 1
    assert stored_refs(app, merchant, "carrier:easypost:trk_1:failure") == ["1Z000"]
    unknown = [e for e in logs if e["event"] == "carrier event for an unknown tracking number"]
    assert [(e["tracking"], e["event_id"]) for e in unknown] == [
        ("1Z000", "carrier:easypost:trk_1:failure")
    ]
    # and order 1001 has no case; the number is no order's in the desk's record
    found = cases_of(app, merchant, "1001", "1Z000")
    assert "1001" not in found
    assert [c.category for c in found["1Z000"]] == [Category.DELIVERY_EXCEPTION]
    assert tracking_record(app) == {"1Z999": "1001"}


def test_a_shipment_and_its_carrier_exception_in_one_batch_meet_on_the_order(
    desk: tuple[Desk, Merchant],
) -> None:
    app, merchant = desk
    # given an AfterShip tracking created without an order number, for parcel 1Z777
    payload = json.loads(
        (VENDORS / "aftership" / "api-tracking-exception-shipment-lost.json").read_text("utf-8")
    )
    payload["data"]["tracking"]["tracking_number"] = "1Z777"
    lost = carrier("aftership", payload)
    # when the order, its shipment under 1Z777 and the lost parcel arrive together
    shipped = canonical("wms:1001-shipped", "fulfillment.shipped", 60, tracking="1Z777")
    report: IngestReport = app.ingest(merchant, [SHIPPED_1Z999[0], *lost, shipped])
    # then the lost parcel is order 1001's
    assert report.stored == 3
    assert stored_refs(app, merchant, lost[0].event.id) == ["1001"]
    found = cases_of(app, merchant, "1001", "1Z777")
    assert [c.category for c in found["1001"]] == [Category.DELIVERY_EXCEPTION]
    assert "1Z777" not in found


def tracking_record(desk: Desk) -> dict[str, str]:
    query = select(tracking_numbers.c.tracking, tracking_numbers.c.order_ref)
    with desk.engine.connect() as db:
        return {row.tracking: row.order_ref for row in db.execute(query)}


def test_the_migration_records_the_tracking_numbers_of_orders_already_stored(
    desk: tuple[Desk, Merchant], db_url: str
) -> None:
    app, merchant = desk
    # given order 1001 shipped under 1Z999, and a carrier event standing under unknown 1Z000
    app.ingest(merchant, SHIPPED_1Z999)
    app.ingest(merchant, carrier("easypost", easypost_tracker("1Z000", "in_transit")))
    # when the schema goes back to before the record, and forward again
    app.engine.dispose()
    downgrade(db_url, "0005")
    with app.engine.connect() as db:
        orders_kept = db.execute(text("SELECT count(*) FROM orders")).scalar_one()
    upgrade(db_url)
    # then the record is filled from the stored orders: 1Z999 is 1001's, 1Z000 no order's
    assert orders_kept == 2
    assert tracking_record(app) == {"1Z999": "1001"}
