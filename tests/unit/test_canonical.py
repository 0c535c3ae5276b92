"""Validation of canonical events: bad input is refused with a message naming the field."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from recoverydesk.domain.errors import InvalidEvent, InvalidInput
from recoverydesk.domain.events import EventSource, EventType, HoldType
from recoverydesk.services.canonical import (
    MAX_EVENT_BYTES,
    event_to_dict,
    parse_event,
    parse_json_event,
)

VALID: dict[str, Any] = {
    "id": "shopify:evt-8812",
    "source": "shopify",
    "type": "payment.captured",
    "occurred_at": "2026-11-20T14:03:11Z",
    "order": {"ref": "1001", "value": "129.00", "currency": "USD"},
    "data": {"amount": "129.00"},
}

RICH: dict[str, Any] = {
    "id": "shopify:evt-9001",
    "source": "shopify",
    "type": "hold.placed",
    "occurred_at": "2026-11-20T15:03:11.250+01:00",
    "merchant": "acme",
    "order": {
        "ref": "1001",
        "channel": "shopify",
        "fulfillment_type": "3pl",
        "value": "129.00",
        "currency": "USD",
        "placed_at": "2026-11-20T13:00:00Z",
        "ship_by": "2026-11-21T17:00:00-05:00",
        "promised_by": "2026-11-25T00:00:00Z",
        "customer": {"id": "c-77", "email": "ann@example.com", "tier": "vip"},
        "lines": [{"sku": "A", "qty": 1, "price": "100.00"}, {"sku": "B"}],
        "shipping_address": {"line1": "1 Main St", "zip": "10001"},
        "ids": {"shopify": "5551", "netsuite": "SO-9"},
    },
    "data": {
        "hold_type": "fraud",
        "reason": "risk score 91",
        "lines": [{"sku": "A", "qty": 1}],
        "score": 91,
    },
}


def variant(change: Callable[[dict[str, Any]], object], base: dict[str, Any] = VALID) -> dict:
    event = copy.deepcopy(base)
    change(event)
    return event


def field_error(field: str) -> str:
    """A pattern for an InvalidEvent message that starts with the field's dotted path."""
    return "^" + re.escape(field) + ": "


def test_the_valid_examples_are_valid():
    # given the events the other tests spoil
    # when parsed
    plain, rich = parse_event(VALID), parse_event(RICH)
    # then they are accepted, with UTC times and Decimal money
    assert (plain.type, plain.source) == (EventType.PAYMENT_CAPTURED, EventSource.SHOPIFY)
    assert plain.order.value == Decimal("129.00")
    assert rich.occurred_at == datetime(2026, 11, 20, 14, 3, 11, 250000, tzinfo=UTC)
    assert rich.order.ship_by == datetime(2026, 11, 21, 22, 0, tzinfo=UTC)
    assert rich.data["hold_type"] == HoldType.FRAUD.value


# --- the JSON text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["{", '{"id": }', "", "   ", '{"id": "a"} trailing', "[" * 100_000, b"\xff\xfe{"],
    ids=["open-brace", "no-value", "empty", "blank", "trailing", "deep-nesting", "bad-utf8"],
)
def test_malformed_json_is_refused(text):
    # given text that is not one JSON document
    # when it is parsed
    with pytest.raises(InvalidEvent, match=r"^event: malformed JSON"):
        parse_json_event(text)
    # then an InvalidEvent says the JSON is malformed (asserted by the raise)


@pytest.mark.parametrize(
    ("text", "kind"), [("[1, 2]", "list"), ("null", "NoneType"), ('"event"', "str"), ("42", "int")]
)
def test_json_that_is_not_an_object_is_refused(text, kind):
    # given valid JSON that is not an object
    # when parsed
    with pytest.raises(InvalidEvent, match=rf"^event: must be a JSON object, got {kind}"):
        parse_json_event(text)
    # then the message says what was sent instead (asserted by the raise)


@pytest.mark.parametrize("raw", [None, [VALID], "event", 3])
def test_parse_event_refuses_what_is_not_a_mapping(raw):
    # given a decoded value that is not an object
    # when parsed
    with pytest.raises(InvalidEvent, match="must be a JSON object"):
        parse_event(raw)


def test_an_event_larger_than_the_limit_is_refused_before_decoding():
    # given a 300 KB event (a long note in its data)
    event = variant(lambda e: e["data"].update(note="x" * 300_000))
    text = json.dumps(event)
    assert len(text.encode()) > MAX_EVENT_BYTES
    # when parsed as text or as bytes
    # then both are refused as too large
    with pytest.raises(InvalidEvent, match=r"^event: larger than"):
        parse_json_event(text)
    with pytest.raises(InvalidEvent, match=r"^event: larger than"):
        parse_json_event(text.encode())


def test_the_size_limit_counts_bytes_for_text_too():
    # given a 300 KB event whose note is 100,000 three-byte characters
    text = json.dumps(
        variant(lambda e: e["data"].update(note="\u20ac" * 100_000)), ensure_ascii=False
    )
    assert len(text.encode()) > MAX_EVENT_BYTES
    # when parsed as text
    # then it is refused as too large, as the same bytes would be
    with pytest.raises(InvalidEvent, match=r"^event: larger than"):
        parse_json_event(text)


def test_an_integer_with_thousands_of_digits_is_an_invalid_event():
    # given a 5 KB event whose order value is a 5000-digit integer
    text = json.dumps(VALID).replace('"129.00"', "1" * 5000, 1)
    assert len(text) < MAX_EVENT_BYTES
    # when parsed
    # then it is refused as an invalid event (not a crash)
    with pytest.raises(InvalidEvent):
        parse_json_event(text)


@pytest.mark.parametrize("value", ["1e999999", "-1e999999", "1E+400"])
def test_a_huge_exponent_in_the_json_text_is_refused(value):
    # given a JSON number with a huge exponent as the order value
    text = json.dumps(VALID).replace('"129.00"', value, 1)
    # when parsed
    with pytest.raises(InvalidEvent, match=field_error("order.value")):
        parse_json_event(text)
    # then the message names order.value (asserted by the raise)


# --- the envelope --------------------------------------------------------------------------------

ENVELOPE_ERRORS = [
    ("unknown-type", lambda e: e.update(type="payment.exploded"), "type"),
    ("unknown-source", lambda e: e.update(source="ebay"), "source"),
    ("missing-id", lambda e: e.pop("id"), "id"),
    ("blank-id", lambda e: e.update(id="   "), "id"),
    ("id-not-a-string", lambda e: e.update(id=8812), "id"),
    ("id-too-long", lambda e: e.update(id="x" * 1000), "id"),
    ("missing-order", lambda e: e.pop("order"), "order"),
    ("order-not-an-object", lambda e: e.update(order="1001"), "order"),
    ("missing-order-ref", lambda e: e["order"].pop("ref"), "order.ref"),
    ("missing-occurred-at", lambda e: e.pop("occurred_at"), "occurred_at"),
    ("naive-occurred-at", lambda e: e.update(occurred_at="2026-11-20T14:03:11"), "occurred_at"),
    ("not-a-time", lambda e: e.update(occurred_at="yesterday"), "occurred_at"),
    ("naive-ship-by", lambda e: e["order"].update(ship_by="2026-11-21T10:00:00"), "order.ship_by"),
    ("data-not-an-object", lambda e: e.update(data=[1]), "data"),
    ("unknown-top-level-field", lambda e: e.update(priority="P1"), "priority"),
    ("unknown-order-field", lambda e: e["order"].update(colour="red"), "order.colour"),
    ("lines-not-a-list", lambda e: e["order"].update(lines="A"), "order.lines"),
    (
        "qty-not-a-number",
        lambda e: e["order"].update(lines=[{"sku": "A", "qty": "two"}]),
        "order.lines.0.qty",
    ),
    (
        "negative-qty",
        lambda e: e["order"].update(lines=[{"sku": "A", "qty": -1}]),
        "order.lines.0.qty",
    ),
    ("line-without-sku", lambda e: e["order"].update(lines=[{"qty": 1}]), "order.lines.0.sku"),
    ("bad-tier", lambda e: e["order"].update(customer={"tier": "gold"}), "order.customer.tier"),
    (
        "bad-fulfilment-type",
        lambda e: e["order"].update(fulfillment_type="teleport"),
        "order.fulfillment_type",
    ),
    ("value-huge-exponent", lambda e: e["order"].update(value="1e999999"), "order.value"),
    ("value-10-to-the-30", lambda e: e["order"].update(value=10**30), "order.value"),
    ("value-nan", lambda e: e["order"].update(value="NaN"), "order.value"),
    ("value-infinity", lambda e: e["order"].update(value="Infinity"), "order.value"),
    ("value-not-a-number", lambda e: e["order"].update(value="lots"), "order.value"),
    ("value-negative", lambda e: e["order"].update(value="-1.00"), "order.value"),
    (
        "line-price-negative",
        lambda e: e["order"].update(lines=[{"sku": "A", "price": "-3"}]),
        "order.lines.0.price",
    ),
    ("amount-negative", lambda e: e["data"].update(amount="-5.00"), "data.amount"),
    ("amount-10-to-the-30", lambda e: e["data"].update(amount=10**30), "data.amount"),
    ("amount-too-precise", lambda e: e["data"].update(amount="1.0000001"), "data.amount"),
    ("currency-lowercase", lambda e: e["order"].update(currency="usd"), "order.currency"),
    ("currency-too-long", lambda e: e["order"].update(currency="EURO"), "order.currency"),
    ("currency-too-short", lambda e: e["order"].update(currency="US"), "order.currency"),
    ("currency-digits", lambda e: e["order"].update(currency="840"), "order.currency"),
]


@pytest.mark.parametrize(
    ("change", "field"),
    [(c, f) for _, c, f in ENVELOPE_ERRORS],
    ids=[name for name, _, _ in ENVELOPE_ERRORS],
)
def test_a_bad_envelope_is_refused_naming_the_field(change, field):
    # given a valid event spoiled in one place
    event = variant(change)
    # when it is parsed as an object and as JSON text
    # then both raise an InvalidEvent whose message starts with the field
    with pytest.raises(InvalidEvent, match=field_error(field)):
        parse_event(event)
    with pytest.raises(InvalidEvent, match=field_error(field)):
        parse_json_event(json.dumps(event))


def test_an_invalid_event_is_an_input_error_with_a_stable_code():
    # given an event without id
    # when parsed
    with pytest.raises(InvalidEvent) as raised:
        parse_event(variant(lambda e: e.pop("id")))
    # then the error is the caller's fault, with the invalid_event code and a one-line message
    assert isinstance(raised.value, InvalidInput)
    assert raised.value.code == "invalid_event"
    assert "\n" not in raised.value.message


def test_the_currency_message_tells_the_real_rule():
    # given a lowercase currency
    # when parsed
    with pytest.raises(InvalidEvent) as raised:
        parse_event(variant(lambda e: e["order"].update(currency="usd")))
    # then the message does not claim that lowercase letters are expected
    assert "[a-z]" not in raised.value.message


# --- type-specific data ---------------------------------------------------------------------------

DATA_ERRORS = [
    ("hold-without-type", "hold.placed", {}, "data.hold_type"),
    ("hold-unknown-type", "hold.placed", {"hold_type": "vibes"}, "data.hold_type"),
    ("release-unknown-type", "hold.released", {"hold_type": "vibes"}, "data.hold_type"),
    ("refund-without-id", "payment.refunded", {"amount": "5.00"}, "data.refund_id"),
    ("refund-without-amount", "payment.refunded", {"refund_id": "r-1"}, "data.amount"),
    ("refund-negative", "payment.refunded", {"refund_id": "r-1", "amount": "-5"}, "data.amount"),
    ("refund-huge", "payment.refunded", {"refund_id": "r-1", "amount": "1e999999"}, "data.amount"),
    ("inventory-without-sku", "inventory.short", {"available": 0}, "data.sku"),
    ("inventory-negative", "inventory.short", {"sku": "A", "available": -1}, "data.available"),
    ("exception-without-kind", "delivery.exception", {}, "data.kind"),
    ("exception-unknown-kind", "delivery.exception", {"kind": "stolen"}, "data.kind"),
    ("cancel-without-requester", "cancel.requested", {"reason": "late"}, "data.requested_by"),
    ("cancel-bad-requester", "cancel.requested", {"requested_by": "cat"}, "data.requested_by"),
    ("change-without-kind", "change.requested", {}, "data.change"),
    ("dispute-without-amount", "dispute.opened", {"reason": "fraudulent"}, "data.amount"),
    (
        "dispute-naive-due",
        "dispute.opened",
        {"amount": "5", "due_by": "2026-12-01T00:00:00"},
        "data.due_by",
    ),
    ("data-line-without-sku", "fulfillment.shipped", {"lines": [{"qty": 1}]}, "data.lines.0.sku"),
    (
        "data-line-unknown-field",
        "fulfillment.shipped",
        {"lines": [{"sku": "A", "x": 1}]},
        "data.lines.0.x",
    ),
    ("tracking-not-text", "fulfillment.shipped", {"tracking": ["1Z"]}, "data.tracking"),
]


@pytest.mark.parametrize(
    ("kind", "data", "field"),
    [(k, d, f) for _, k, d, f in DATA_ERRORS],
    ids=[name for name, _, _, _ in DATA_ERRORS],
)
def test_type_specific_data_is_checked_naming_the_field(kind, data, field):
    # given an event of this type with bad or missing data
    event = variant(lambda e: e.update(type=kind, data=data))
    # when parsed
    with pytest.raises(InvalidEvent, match=field_error(field)):
        parse_event(event)
    # then the message names the data field (asserted by the raise)


def test_the_message_for_a_missing_hold_type_names_it():
    # given a hold without hold_type
    # when parsed
    with pytest.raises(InvalidEvent) as raised:
        parse_event(variant(lambda e: e.update(type="hold.placed", data={})))
    # then the message names data.hold_type and says it is missing
    assert "data.hold_type" in raised.value.message
    assert "required" in raised.value.message


# --- round trip ----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [VALID, RICH], ids=["plain", "rich"])
def test_a_valid_event_round_trips_unchanged(raw):
    # given a parsed event
    event = parse_event(raw)
    # when it is written back to its canonical form and parsed again (as object and as JSON)
    again = parse_event(event_to_dict(event))
    from_text, kept = parse_json_event(json.dumps(event_to_dict(event)))
    # then it is the same event, and the raw text is kept as given
    assert again == event
    assert from_text == event
    assert json.loads(kept) == event_to_dict(event)


def test_the_canonical_form_is_utc_and_decimal_strings():
    # given the rich event, given with local offsets
    doc = event_to_dict(parse_event(RICH))
    # then times are written in UTC and money as decimal strings
    assert doc["occurred_at"] == "2026-11-20T14:03:11.250000+00:00"
    assert doc["order"]["ship_by"] == "2026-11-21T22:00:00+00:00"
    assert doc["order"]["value"] == "129.00"
    assert doc["order"]["lines"] == [{"sku": "A", "qty": 1, "price": "100.00"}, {"sku": "B"}]
    assert doc["data"]["score"] == 91
    assert doc["merchant"] == "acme"


def test_a_json_number_keeps_its_exact_decimal_value():
    # given an amount written as a JSON number with a binary-unfriendly value
    text = json.dumps(VALID).replace('"129.00"', "0.10", 1)
    # when parsed
    event, _ = parse_json_event(text)
    # then it is exactly 0.10 (no float rounding)
    assert event.order.value == Decimal("0.10")


def test_a_cancel_request_for_zero_units_of_a_line_is_refused():
    # given a cancel request naming a line with quantity 0 (a partial cancel of nothing)
    request = {
        **VALID,
        "type": "cancel.requested",
        "data": {"requested_by": "customer", "lines": [{"sku": "A", "qty": 0}]},
    }
    # then it is refused at the edge, naming the field, instead of cancelling one unit
    with pytest.raises(InvalidEvent, match=field_error("data.lines.0.qty")):
        parse_event(request)
    # and a line without a quantity is still accepted (the whole line)
    request["data"]["lines"] = [{"sku": "A"}]
    assert parse_event(request).data["lines"] == [{"sku": "A"}]
