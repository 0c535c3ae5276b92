"""Events that know only an outside system's id of their order reach it, on real databases.

An EasyPost tracker (or an AfterShip tracking without an order number) names no order, only the
parcel's tracking number; a Stripe dispute without order metadata names only the payment
intent. The desk records the keys its orders know (``order_keys``), and at intake moves such an
event to the order that knows its key: a delivery exception or a chargeback opens its case on
the real order, not on an order named after the key. An event that came before its order
learned the key stands under the key until then, and then moves, with its cases, to the order.
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
from recoverydesk.persistence.tables import case_timeline, events, order_keys, orders
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
    unknown = [e for e in logs if e["event"] == "event for an order key no order has yet"]
    assert [(e["kind"], e["key"], e["event_id"]) for e in unknown] == [
        ("tracking_number", "1Z000", "carrier:easypost:trk_1:failure")
    ]
    # and order 1001 has no case; the number is no order's in the desk's record
    found = cases_of(app, merchant, "1001", "1Z000")
    assert "1001" not in found
    assert [c.category for c in found["1Z000"]] == [Category.DELIVERY_EXCEPTION]
    assert key_record(app) == {("tracking_number", "1Z999"): "1001"}


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


def key_record(desk: Desk) -> dict[tuple[str, str], str]:
    query = select(order_keys.c.kind, order_keys.c.key, order_keys.c.order_ref)
    with desk.engine.connect() as db:
        return {(row.kind, row.key): row.order_ref for row in db.execute(query)}


def test_the_migration_records_the_keys_of_orders_already_stored(
    desk: tuple[Desk, Merchant], db_url: str
) -> None:
    app, merchant = desk
    # given order 1001 shipped under 1Z999 and paid with intent pi_123, and carrier and PSP
    # events standing under keys no order knows (1Z000, pi_000)
    app.ingest(merchant, [*SHIPPED_1Z999, stripe("psp:stripe:pi_123:captured", "1001", "pi_123")])
    app.ingest(merchant, carrier("easypost", easypost_tracker("1Z000", "in_transit")))
    app.ingest(merchant, [stripe_dispute("psp:stripe:dp_0", "pi_000")])
    # when the schema goes back to before the record, and forward again
    app.engine.dispose()
    downgrade(db_url, "0005")
    with app.engine.connect() as db:
        orders_kept = db.execute(text("SELECT count(*) FROM orders")).scalar_one()
    upgrade(db_url)
    # then the record is filled from the stored orders: 1001's keys; the stand-ins' are no one's
    assert orders_kept == 3
    assert key_record(app) == {
        ("tracking_number", "1Z999"): "1001",
        ("stripe_payment_intent", "pi_123"): "1001",
    }


# ----------------------------------------------------------------- events before the key is known


def stripe(event_id: str, ref: str, intent: str, minutes: int = 5) -> IncomingEvent:
    """A payment captured through Stripe, for order ``ref``, under payment intent ``intent``."""
    raw = {
        "id": event_id,
        "source": "psp",
        "type": "payment.captured",
        "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "order": {"ref": ref, "currency": "EUR", "ids": {"stripe_payment_intent": intent}},
        "data": {"amount": "80.00"},
    }
    return IncomingEvent(parse_event(raw), json.dumps(raw))


def stripe_dispute(event_id: str, intent: str, minutes: int = 120) -> IncomingEvent:
    """A Stripe dispute without order metadata: it names only the payment intent (a stand-in)."""
    raw = {
        "id": event_id,
        "source": "psp",
        "type": "dispute.opened",
        "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "order": {"ref": intent, "currency": "EUR", "ids": {"stripe_payment_intent": intent}},
        "data": {"amount": "80.00", "reason": "fraudulent"},
    }
    return IncomingEvent(parse_event(raw), json.dumps(raw))


def order_refs(desk: Desk, merchant: Merchant) -> list[str]:
    query = select(orders.c.ref).where(orders.c.merchant_id == merchant.id)
    with desk.engine.connect() as db:
        return sorted(db.execute(query.order_by(orders.c.ref)).scalars())


def counts(desk: Desk) -> tuple[int, int, int]:
    """Events, cases and timeline rows stored."""
    with desk.engine.connect() as db:
        return tuple(  # type: ignore[return-value]
            db.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()
            for name in ("events", "cases", "case_timeline")
        )


def timeline_kinds(desk: Desk, case_id: int | None) -> list[str]:
    query = select(case_timeline.c.kind).where(case_timeline.c.case_id == case_id)
    with desk.engine.connect() as db:
        return list(db.execute(query.order_by(case_timeline.c.id)).scalars())


def test_a_carrier_exception_before_the_shipment_joins_the_order_when_it_ships(
    desk: tuple[Desk, Merchant],
) -> None:
    app, merchant = desk
    placed, shipped = SHIPPED_1Z999
    exception = carrier("easypost", easypost_tracker("1Z999", "return_to_sender"))
    # given order 1001, and the carrier's return of parcel 1Z999 before the 3PL reports it
    app.ingest(merchant, [placed])
    app.ingest(merchant, exception)
    before = cases_of(app, merchant, "1Z999")["1Z999"]
    assert stored_refs(app, merchant, exception[0].event.id) == ["1Z999"]
    # when the 3PL reports order 1001 shipped under 1Z999
    report = app.ingest(merchant, [shipped])
    # then the carrier's event is order 1001's, in the events table and in its payload
    assert report.stored == 1
    assert stored_refs(app, merchant, exception[0].event.id) == ["1001"]
    with app.reader() as uow:
        history = uow.events.history(merchant.id, ["1001", "1Z999"])
        order = uow.orders.get(merchant.id, "1001")
    assert [e.id for e in history["1001"]] == [
        placed.event.id,
        shipped.event.id,
        exception[0].event.id,
    ]
    assert all(e.order.ref == "1001" for e in history["1001"])
    assert "1Z999" not in history
    # and the order is refolded with it; no order is named after the parcel any more
    assert order is not None
    assert order.event_count == 3
    assert order.evidence.return_in_flight_by == exception[0].event.id
    assert order_refs(app, merchant) == ["1001"]
    # and the delivery exception case moved, with its timeline, to order 1001
    found = cases_of(app, merchant, "1001", "1Z999")
    assert "1Z999" not in found
    (case,) = found["1001"]
    assert (case.id, case.category, case.is_open) == (
        before[0].id,
        Category.DELIVERY_EXCEPTION,
        True,
    )
    assert exception[0].event.id in case.event_ids
    assert "order_linked" in timeline_kinds(app, case.id)
    # when the same deliveries come again
    stored = counts(app)
    again = [app.ingest(merchant, items) for items in ([placed], exception, [shipped])]
    # then nothing is stored and nothing changes
    assert [r.stored for r in again] == [0, 0, 0]
    assert counts(app) == stored
    assert stored_refs(app, merchant, exception[0].event.id) == ["1001"]
    assert order_refs(app, merchant) == ["1001"]


def test_a_dispute_naming_only_the_payment_intent_opens_its_case_on_the_order(
    desk: tuple[Desk, Merchant],
) -> None:
    app, merchant = desk
    # given order 1001, paid with Stripe payment intent pi_123
    app.ingest(merchant, [SHIPPED_1Z999[0], stripe("psp:stripe:pi_123:captured", "1001", "pi_123")])
    # when Stripe reports a dispute that names only the payment intent
    report = app.ingest(merchant, [stripe_dispute("psp:stripe:dp_1", "pi_123")])
    # then the dispute is order 1001's, and so is the chargeback case
    assert report.stored == 1
    assert stored_refs(app, merchant, "psp:stripe:dp_1") == ["1001"]
    found = cases_of(app, merchant, "1001", "pi_123")
    assert [c.category for c in found["1001"]] == [Category.CHARGEBACK]
    assert "pi_123" not in found
    assert order_refs(app, merchant) == ["1001"]


def test_a_dispute_before_the_payment_joins_the_order_when_its_payment_arrives(
    desk: tuple[Desk, Merchant],
) -> None:
    app, merchant = desk
    # given a dispute naming only payment intent pi_123, before the desk saw the payment
    app.ingest(merchant, [stripe_dispute("psp:stripe:dp_1", "pi_123")])
    assert [c.category for c in cases_of(app, merchant, "pi_123")["pi_123"]] == [
        Category.CHARGEBACK
    ]
    # when order 1001 arrives, and its payment under pi_123
    app.ingest(merchant, [SHIPPED_1Z999[0]])
    app.ingest(merchant, [stripe("psp:stripe:pi_123:captured", "1001", "pi_123")])
    # then the dispute and its chargeback case are order 1001's; the stand-in is gone
    assert stored_refs(app, merchant, "psp:stripe:dp_1") == ["1001"]
    found = cases_of(app, merchant, "1001", "pi_123")
    assert [(c.category, c.is_open) for c in found["1001"]] == [(Category.CHARGEBACK, True)]
    assert "pi_123" not in found
    assert order_refs(app, merchant) == ["1001"]
    assert key_record(app) == {("stripe_payment_intent", "pi_123"): "1001"}
    # and a later dispute naming the intent goes straight to the order, its case joined
    app.ingest(merchant, [stripe_dispute("psp:stripe:dp_1:updated", "pi_123", minutes=180)])
    assert stored_refs(app, merchant, "psp:stripe:dp_1:updated") == ["1001"]
    assert len(cases_of(app, merchant, "1001")["1001"]) == 1


def test_a_stand_in_case_of_a_category_open_on_the_order_closes_as_its_duplicate(
    desk: tuple[Desk, Merchant],
) -> None:
    app, merchant = desk
    # given order 1001 shipped under 1Z999, with a delivery exception open for that parcel
    app.ingest(merchant, SHIPPED_1Z999)
    app.ingest(merchant, carrier("easypost", easypost_tracker("1Z999", "failure")))
    # and a second parcel 1Z222 reported lost before the 3PL says it is 1001's
    lost = carrier("easypost", easypost_tracker("1Z222", "return_to_sender"))
    app.ingest(merchant, lost)
    (stand_in_case,) = cases_of(app, merchant, "1Z222")["1Z222"]
    # when the 3PL reports 1001's second shipment, under 1Z222
    second = canonical("wms:1001-shipped-2", "fulfillment.shipped", 90, tracking="1Z222")
    app.ingest(merchant, [second])
    # then order 1001 has one open delivery exception case, holding both parcels' events, and
    # the stand-in's case moved to it closed, naming the case it duplicates
    found = cases_of(app, merchant, "1001", "1Z222")
    assert "1Z222" not in found
    open_cases = [c for c in found["1001"] if c.is_open]
    (kept,) = open_cases
    assert kept.category == Category.DELIVERY_EXCEPTION
    assert lost[0].event.id in kept.event_ids
    (duplicate,) = [c for c in found["1001"] if c.id == stand_in_case.id]
    assert not duplicate.is_open
    assert duplicate.outcome is None
    assert duplicate.data["merged_into"] == kept.id
    assert order_refs(app, merchant) == ["1001"]
    # when a late event makes the desk refold the order again
    late = canonical("wms:1001-packed", "fulfillment.packed", 30)
    app.ingest(merchant, [late])
    # then the duplicate stays closed and the kept case open
    again = {c.id: c.is_open for c in cases_of(app, merchant, "1001")["1001"]}
    assert again == {kept.id: True, duplicate.id: False}
