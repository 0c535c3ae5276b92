"""The Order 360 fold (domain only): one order merged from every system's events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from recoverydesk.domain.casebook import fold
from recoverydesk.domain.events import (
    CanonicalEvent,
    EventSource,
    EventType,
    LineFacts,
    OrderFacts,
)
from recoverydesk.domain.orders import FulfillmentStatus, OrderView, PaymentStatus

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
REF = "1001"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(
    kind: str,
    minute: float,
    *,
    eid: str | None = None,
    source: EventSource = EventSource.SHOPIFY,
    data: dict[str, Any] | None = None,
    **facts: Any,
) -> CanonicalEvent:
    """An event on order REF, ``minute`` minutes after T0; ``facts`` become its order facts."""
    return CanonicalEvent(
        id=eid or f"{source.value}:{kind}:{minute}",
        source=source,
        type=EventType(kind),
        occurred_at=at(minute),
        order=OrderFacts(ref=REF, **facts),
        data=data or {},
    )


def lines(*skus: str) -> tuple[LineFacts, ...]:
    return tuple(LineFacts(sku=sku, qty=1, price=Decimal("10.00")) for sku in skus)


def view(*events: CanonicalEvent) -> OrderView:
    """Fold events the way the desk does: in ``sort_key`` order, whatever order they are given."""
    order = OrderView(ref=REF)
    for event in sorted(events, key=lambda e: e.sort_key):
        order.apply(event)
    return order


def placed(minute: float = 0, *skus: str, value: str = "129.00") -> CanonicalEvent:
    return ev(
        "order.placed", minute, value=Decimal(value), currency="USD", lines=lines(*skus) or None
    )


# --- payment -------------------------------------------------------------------------------------


def test_a_new_order_has_no_payment():
    # given an order that only was placed
    order = view(placed())
    # then nothing is authorized, captured or refunded
    assert order.payment.status is PaymentStatus.NONE
    assert order.payment.authorized == order.payment.captured == order.payment.refunded == 0


def test_authorization_takes_the_amount_of_the_event():
    # given an order of 129.00 authorized for 100.00
    order = view(placed(), ev("payment.authorized", 1, data={"amount": "100.00"}))
    # then 100.00 is authorized
    assert order.payment.authorized == Decimal("100.00")
    assert order.payment.status is PaymentStatus.AUTHORIZED


def test_authorization_without_an_amount_is_for_the_order_value():
    # given an authorization that names no amount
    order = view(placed(value="129.00"), ev("payment.authorized", 1))
    # then the order value is authorized
    assert order.payment.authorized == Decimal("129.00")


def test_captures_are_summed_and_a_partial_capture_is_reported_as_such():
    # given 129.00 authorized and 50.00 captured
    events = [
        placed(),
        ev("payment.authorized", 1, data={"amount": "129.00"}),
        ev("payment.captured", 2, data={"amount": "50.00"}),
    ]
    # then the payment is partially captured
    partial = view(*events)
    assert partial.payment.captured == Decimal("50.00")
    assert partial.payment.status is PaymentStatus.PARTIALLY_CAPTURED
    # when the remaining 79.00 is captured
    full = view(*events, ev("payment.captured", 3, data={"amount": "79.00"}))
    # then both captures count
    assert full.payment.captured == Decimal("129.00")
    assert full.payment.status is PaymentStatus.CAPTURED


def test_a_capture_without_an_amount_captures_what_was_authorized():
    # given 80.00 authorized and a capture naming no amount
    order = view(
        placed(), ev("payment.authorized", 1, data={"amount": "80.00"}), ev("payment.captured", 2)
    )
    # then 80.00 is captured
    assert order.payment.captured == Decimal("80.00")
    assert order.payment.status is PaymentStatus.CAPTURED


def test_a_capture_above_the_authorization_raises_the_authorized_amount():
    # given 50.00 authorized but 60.00 captured
    order = view(
        placed(),
        ev("payment.authorized", 1, data={"amount": "50.00"}),
        ev("payment.captured", 2, data={"amount": "60.00"}),
    )
    # then the authorization is at least what was captured, and the capture is full
    assert order.payment.authorized == Decimal("60.00")
    assert order.payment.status is PaymentStatus.CAPTURED


def test_a_refund_reported_by_two_systems_counts_once():
    # given a captured order and refund r-1 of 20.00 reported by Shopify and by the PSP
    order = view(
        placed(),
        ev("payment.captured", 1, data={"amount": "129.00"}),
        ev(
            "payment.refunded",
            5,
            source=EventSource.SHOPIFY,
            data={"amount": "20.00", "refund_id": "r-1"},
        ),
        ev(
            "payment.refunded",
            6,
            source=EventSource.PSP,
            data={"amount": "20.00", "refund_id": "r-1"},
        ),
    )
    # then 20.00 is refunded, not 40.00
    assert order.payment.refunded == Decimal("20.00")
    assert order.payment.refunds == {"r-1": Decimal("20.00")}
    assert order.payment.status is PaymentStatus.PARTIALLY_REFUNDED


def test_different_refunds_are_added_up_to_a_full_refund():
    # given refunds r-1 (29.00) and r-2 (100.00), r-1 reported twice, of a 129.00 capture
    order = view(
        placed(),
        ev("payment.captured", 1, data={"amount": "129.00"}),
        ev("payment.refunded", 5, data={"amount": "29.00", "refund_id": "r-1"}),
        ev(
            "payment.refunded",
            6,
            source=EventSource.PSP,
            data={"amount": "29.00", "refund_id": "r-1"},
        ),
        ev("payment.refunded", 7, data={"amount": "100.00", "refund_id": "r-2"}),
    )
    # then 129.00 is refunded and the payment reads refunded
    assert order.payment.refunded == Decimal("129.00")
    assert order.payment.status is PaymentStatus.REFUNDED


def test_a_refund_arriving_in_any_order_counts_once():
    # given the same refund reported twice, the later report folded first by arrival
    refund_psp = ev(
        "payment.refunded", 6, source=EventSource.PSP, data={"amount": "20.00", "refund_id": "r-1"}
    )
    refund_shop = ev("payment.refunded", 5, data={"amount": "20.00", "refund_id": "r-1"})
    capture = ev("payment.captured", 1, data={"amount": "129.00"})
    # when folded through the casebook (which sorts whatever the arrival order)
    order, _ = fold(REF, [refund_psp, capture, refund_shop, placed()])
    # then it is counted once
    assert order.payment.refunded == Decimal("20.00")


def test_a_voided_authorization_reads_voided_until_authorized_again():
    # given an authorization that was voided
    events = [placed(), ev("payment.authorized", 1), ev("payment.voided", 2)]
    voided = view(*events)
    # then the payment is voided
    assert voided.payment.voided is True
    assert voided.payment.status is PaymentStatus.VOIDED
    # when a new authorization comes after the void
    again = view(*events, ev("payment.authorized", 3))
    # then the payment is authorized again
    assert again.payment.voided is False
    assert again.payment.status is PaymentStatus.AUTHORIZED


def test_failures_are_counted_with_the_last_reason():
    # given two payment failures
    order = view(
        placed(),
        ev("payment.failed", 1, data={"reason": "card_declined"}),
        ev("payment.failed", 2, source=EventSource.PSP, data={"code": "insufficient"}),
    )
    # then both count, the last reason is kept and the status is failed
    assert order.payment.failures == 2
    assert order.payment.last_failure == "insufficient"
    assert order.payment.status is PaymentStatus.FAILED


def test_a_failure_followed_by_an_authorization_reads_authorized():
    # given a failure, then a successful authorization
    order = view(placed(), ev("payment.failed", 1), ev("payment.authorized", 2))
    # then the payment is authorized (the failure is history)
    assert order.payment.status is PaymentStatus.AUTHORIZED
    assert order.payment.failures == 1


# --- fulfilment ----------------------------------------------------------------------------------


def test_fulfilment_moves_forward_through_every_stage():
    # given an order with two lines
    events = [placed(0, "A", "B")]
    stages = [
        ("fulfillment.released", FulfillmentStatus.RELEASED),
        ("fulfillment.picking", FulfillmentStatus.PICKING),
        ("fulfillment.packed", FulfillmentStatus.PACKED),
        ("fulfillment.shipped", FulfillmentStatus.SHIPPED),
        ("fulfillment.delivered", FulfillmentStatus.DELIVERED),
    ]
    for minute, (kind, status) in enumerate(stages, start=1):
        # when the next stage is reported for the whole order
        events.append(ev(kind, minute, source=EventSource.WMS))
        order = view(*events)
        # then the order and every line are at that stage, with its time
        assert order.fulfillment is status
        assert {line.fulfillment for line in order.lines.values()} == {status}
        assert order.fulfillment_times[status.value] == at(minute)
    assert order.shipped


def test_a_packed_reported_after_shipped_leaves_the_order_shipped():
    # given an order shipped at minute 5 and a WMS "packed" stamped later, at minute 6
    order = view(
        placed(0, "A"),
        ev("fulfillment.shipped", 5, data={"tracking": "1Z1"}),
        ev("fulfillment.packed", 6, source=EventSource.WMS),
    )
    # then the order and its line stay shipped
    assert order.fulfillment is FulfillmentStatus.SHIPPED
    assert order.lines["A"].fulfillment is FulfillmentStatus.SHIPPED
    assert order.shipped


def test_a_late_arriving_packed_applied_after_shipped_does_not_move_back():
    # given a view that has already folded the shipment
    order = view(placed(0, "A"), ev("fulfillment.shipped", 5))
    # when an older "packed" is applied afterwards (incremental path, arrival order)
    order.apply(ev("fulfillment.packed", 3, source=EventSource.WMS))
    # then nothing moves backwards
    assert order.fulfillment is FulfillmentStatus.SHIPPED
    assert order.lines["A"].fulfillment is FulfillmentStatus.SHIPPED
    # and the packed time is still recorded
    assert order.fulfillment_times["packed"] == at(3)


def test_fulfilment_by_line_moves_only_the_named_lines():
    # given an order with lines A and B, where only A is shipped
    order = view(
        placed(0, "A", "B"),
        ev("fulfillment.released", 1, source=EventSource.WMS),
        ev("fulfillment.shipped", 2, data={"lines": [{"sku": "A", "qty": 1}]}),
    )
    # then A is shipped, B still released, and the order shows the furthest stage
    assert order.lines["A"].fulfillment is FulfillmentStatus.SHIPPED
    assert order.lines["B"].fulfillment is FulfillmentStatus.RELEASED
    assert order.fulfillment is FulfillmentStatus.SHIPPED


def test_a_line_stage_never_moves_back_either():
    # given line A shipped and line B picked
    order = view(
        placed(0, "A", "B"),
        ev("fulfillment.shipped", 2, data={"lines": [{"sku": "A"}]}),
        ev("fulfillment.picking", 3, source=EventSource.WMS, data={"lines": [{"sku": "B"}]}),
        # when a later whole-order "packed" arrives
        ev("fulfillment.packed", 4, source=EventSource.WMS),
    )
    # then A stays shipped while B moves on to packed
    assert order.lines["A"].fulfillment is FulfillmentStatus.SHIPPED
    assert order.lines["B"].fulfillment is FulfillmentStatus.PACKED
    assert order.fulfillment is FulfillmentStatus.SHIPPED


def test_a_fulfilment_event_for_an_unknown_line_adds_that_line():
    # given an order whose lines are unknown, and a shipment of sku C
    order = view(placed(0), ev("fulfillment.shipped", 2, data={"lines": [{"sku": "C"}]}))
    # then line C exists and is shipped
    assert order.lines["C"].fulfillment is FulfillmentStatus.SHIPPED


def test_tracking_numbers_are_kept_once_each_and_the_first_time_of_a_stage_wins():
    # given two shipments (one reported twice) by two systems
    order = view(
        placed(0, "A", "B"),
        ev("fulfillment.shipped", 2, data={"tracking": "1Z1", "lines": [{"sku": "A"}]}),
        ev("fulfillment.shipped", 3, source=EventSource.CARRIER, data={"tracking": "1Z1"}),
        ev(
            "fulfillment.shipped",
            4,
            source=EventSource.WMS,
            data={"tracking": "1Z2", "lines": [{"sku": "B"}]},
        ),
    )
    # then each tracking number is listed once, in the order shipped
    assert order.tracking == ["1Z1", "1Z2"]
    # and the order shipped when its first parcel did
    assert order.fulfillment_times["shipped"] == at(2)


# --- holds ---------------------------------------------------------------------------------------


def test_holds_are_placed_and_released_by_type():
    # given a fraud hold and an address hold
    events = [
        placed(),
        ev("hold.placed", 1, data={"hold_type": "fraud", "reason": "score 91"}),
        ev("hold.placed", 2, data={"hold_type": "address"}),
    ]
    both = view(*events)
    # then both are active
    assert both.active_holds == ["address", "fraud"]
    assert both.holds["fraud"].reason == "score 91"
    assert both.holds["fraud"].placed_at == at(1)
    # when the fraud hold is released
    one = view(*events, ev("hold.released", 3, data={"hold_type": "fraud"}))
    # then only the address hold stays active, and the release time is kept
    assert one.active_holds == ["address"]
    assert one.holds["fraud"].active is False
    assert one.holds["fraud"].released_at == at(3)
    assert one.holds["address"].released_at is None


def test_a_release_without_a_type_releases_every_hold():
    # given three holds
    order = view(
        placed(),
        ev("hold.placed", 1, data={"hold_type": "fraud"}),
        ev("hold.placed", 2, data={"hold_type": "payment"}),
        ev("hold.placed", 3, data={"hold_type": "warehouse"}),
        # when a release names no hold type
        ev("hold.released", 4),
    )
    # then no hold is active and each has the release time
    assert order.active_holds == []
    assert {h.released_at for h in order.holds.values()} == {at(4)}


def test_a_hold_placed_again_after_its_release_is_active():
    # given a fraud hold released, then placed again
    order = view(
        placed(),
        ev("hold.placed", 1, data={"hold_type": "fraud"}),
        ev("hold.released", 2, data={"hold_type": "fraud"}),
        ev("hold.placed", 3, eid="shopify:fraud-again", data={"hold_type": "fraud"}),
    )
    # then it is active again, placed at the later time
    assert order.active_holds == ["fraud"]
    assert order.holds["fraud"].placed_at == at(3)
    assert order.holds["fraud"].released_at is None


# --- address -------------------------------------------------------------------------------------


def test_address_status_is_unverified_until_something_is_said():
    # given an order placed with an address
    order = view(ev("order.placed", 0, shipping_address={"line1": "1 Main St"}))
    # then its status is unverified
    assert order.address_status == "unverified"
    assert order.shipping_address == {"line1": "1 Main St"}


def test_an_invalid_address_report_marks_it_invalid():
    # given an address reported invalid by the carrier
    order = view(
        ev("order.placed", 0, shipping_address={"line1": "1 Main St"}),
        ev("address.invalid", 1, source=EventSource.CARRIER),
    )
    # then the order says so
    assert order.address_status == "invalid"


def test_a_different_address_marks_it_changed_and_the_same_one_does_not():
    # given an address repeated unchanged by a later event
    same = view(
        ev("order.placed", 0, shipping_address={"line1": "1 Main St"}),
        ev("order.updated", 1, shipping_address={"line1": "1 Main St"}),
    )
    # then the status stays unverified
    assert same.address_status == "unverified"
    # when a later event carries a corrected address
    changed = view(
        ev("order.placed", 0, shipping_address={"line1": "1 Main St"}),
        ev("address.invalid", 1, source=EventSource.CARRIER),
        ev("order.updated", 2, shipping_address={"line1": "1 Main St", "apt": "4B"}),
    )
    # then the new address is kept and marked changed
    assert changed.address_status == "changed"
    assert changed.shipping_address == {"line1": "1 Main St", "apt": "4B"}


# --- cancellation --------------------------------------------------------------------------------


def test_cancelling_some_lines_is_a_partial_cancel():
    # given an order with lines A and B, where line A is cancelled
    order = view(
        placed(0, "A", "B"),
        ev("order.cancelled", 1, data={"lines": [{"sku": "A"}], "reason": "stockout"}),
    )
    # then only line A is cancelled and the order is partially cancelled
    assert order.lines["A"].cancelled is True
    assert order.lines["B"].cancelled is False
    assert order.partially_cancelled is True
    assert order.cancelled is False


def test_cancelling_the_whole_order_cancels_every_line():
    # given an order with two lines, cancelled without naming lines
    order = view(
        placed(0, "A", "B"),
        ev("cancel.requested", 1, data={"requested_by": "customer"}),
        ev("order.cancelled", 2, data={"reason": "customer_request"}),
    )
    # then every line and the order are cancelled, with time and reason
    assert all(line.cancelled for line in order.lines.values())
    assert order.cancelled is True
    assert order.partially_cancelled is False
    assert order.cancelled_at == at(2)
    assert order.cancel_reason == "customer_request"
    assert order.cancel_requested_at == at(1)


def test_cancelling_the_remaining_lines_completes_the_cancel():
    # given line A cancelled first, then line B
    order = view(
        placed(0, "A", "B"),
        ev("order.cancelled", 1, data={"lines": [{"sku": "A"}]}),
        ev("order.cancelled", 2, eid="shopify:cancel-b", data={"lines": [{"sku": "B"}]}),
    )
    # then the order is fully cancelled
    assert order.cancelled is True
    assert order.partially_cancelled is False


def test_a_whole_cancel_before_the_lines_are_known_still_covers_them():
    # given an order cancelled before any event told its lines
    order = view(
        ev("order.cancelled", 1, data={"reason": "fraud"}),
        # when a later event brings the lines
        ev("order.updated", 2, lines=lines("A", "B")),
    )
    # then the lines are cancelled too and no placeholder line is left
    assert set(order.lines) == {"A", "B"}
    assert all(line.cancelled for line in order.lines.values())
    assert order.cancelled is True


def test_a_line_cancel_on_an_order_with_unknown_lines_is_not_a_full_cancel():
    # given an order whose lines were never sent, and a cancel of line A only
    order = view(
        ev("order.placed", 0, value=Decimal("50.00")),
        ev("order.cancelled", 1, data={"lines": [{"sku": "A"}]}),
    )
    # then the order is not (fully) cancelled; line A is
    assert order.cancelled is False
    assert order.lines["A"].cancelled is True


def test_the_first_cancel_request_time_is_kept():
    # given two cancel requests
    order = view(
        placed(),
        ev("cancel.requested", 3, data={"requested_by": "customer"}),
        ev("cancel.requested", 5, source=EventSource.HELPDESK, data={"requested_by": "ops"}),
    )
    # then the first one counts
    assert order.cancel_requested_at == at(3)


# --- ids, tickets, facts -------------------------------------------------------------------------


def test_system_ids_and_tickets_are_merged_from_every_system():
    # given ids from the shop and the ERP, and two tickets (one reported twice)
    order = view(
        ev("order.placed", 0, ids={"shopify": "5551"}),
        ev("order.updated", 1, source=EventSource.NETSUITE, ids={"netsuite": "SO-9"}),
        ev("ticket.created", 2, source=EventSource.HELPDESK, data={"ticket_id": "T-1"}),
        ev("ticket.created", 3, source=EventSource.HELPDESK, data={"ticket_id": "T-1"}),
        ev("ticket.created", 4, source=EventSource.HELPDESK, data={"ticket_id": "T-2"}),
    )
    # then all ids are known and each ticket is listed once
    assert order.system_ids == {"shopify": "5551", "netsuite": "SO-9"}
    assert order.tickets == ["T-1", "T-2"]


def test_later_events_update_facts_and_silence_does_not_erase_them():
    # given an order placed with its facts
    order = view(
        ev(
            "order.placed",
            0,
            channel="shopify",
            value=Decimal("129.00"),
            currency="USD",
            customer_id="c-77",
            customer_tier="standard",
            ship_by=at(600),
            lines=(LineFacts("A", 1, Decimal("100.00")), LineFacts("B", 2, Decimal("14.50"))),
        ),
        # when a later update changes the value, the tier, the ship-by and A's quantity only
        ev(
            "order.updated",
            10,
            value=Decimal("229.00"),
            customer_tier="vip",
            ship_by=at(900),
            lines=(LineFacts("A", 2),),
        ),
        # and an event that says nothing about the order comes after
        ev("payment.authorized", 20, source=EventSource.PSP),
    )
    # then the later facts win and the unmentioned ones are kept
    assert order.value == Decimal("229.00")
    assert order.customer_tier == "vip"
    assert order.ship_by == at(900)
    assert order.channel == "shopify"
    assert order.currency == "USD"
    assert order.customer_id == "c-77"
    assert (order.lines["A"].qty, order.lines["A"].price) == (2, Decimal("100.00"))
    assert (order.lines["B"].qty, order.lines["B"].price) == (2, Decimal("14.50"))
    # and the authorization, later, took the updated value
    assert order.payment.authorized == Decimal("229.00")


def test_event_count_and_last_key_follow_the_folded_events():
    # given three events
    events = [
        placed(0),
        ev("payment.authorized", 2),
        ev("hold.placed", 1, data={"hold_type": "fraud"}),
    ]
    order = view(*events)
    # then all are counted and the last key is the latest event's
    assert order.event_count == 3
    assert order.last_key == (at(2), events[1].id)
    # and only an event after it is accepted in order
    assert order.accepts_in_order(ev("payment.captured", 3))
    assert not order.accepts_in_order(ev("payment.captured", 1))


def test_the_fold_does_not_depend_on_the_order_events_are_given_in():
    # given a realistic history
    events = [
        placed(0, "A", "B"),
        ev("payment.failed", 1, source=EventSource.PSP),
        ev("payment.authorized", 2, source=EventSource.PSP),
        ev("hold.placed", 3, data={"hold_type": "fraud"}),
        ev("hold.released", 4, data={"hold_type": "fraud"}),
        ev("fulfillment.packed", 5, source=EventSource.WMS),
        ev("fulfillment.shipped", 6, data={"tracking": "1Z9", "lines": [{"sku": "A"}]}),
        ev("order.cancelled", 7, data={"lines": [{"sku": "B"}]}),
    ]
    # when folded in opposite arrival orders
    forward, _ = fold(REF, events)
    backward, _ = fold(REF, reversed(events))
    # then the views are equal
    assert forward == backward
    assert forward.lines["A"].fulfillment is FulfillmentStatus.SHIPPED
    assert forward.lines["B"].cancelled is True
