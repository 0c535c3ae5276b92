"""The sandbox traffic generator: valid, deterministic, realistic canonical event streams."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from recoverydesk.domain.events import EventSource, EventType
from recoverydesk.sandbox.traffic import generate_orders, to_jsonl
from recoverydesk.services.canonical import parse_event

START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
EXCEPTIONS = {
    EventType.PAYMENT_FAILED,
    EventType.HOLD_PLACED,
    EventType.ADDRESS_INVALID,
    EventType.INVENTORY_SHORT,
    EventType.CANCEL_REQUESTED,
    EventType.DELIVERY_EXCEPTION,
    EventType.DISPUTE_OPENED,
}


@pytest.fixture(scope="module")
def stream() -> list[dict[str, Any]]:
    return generate_orders(orders=500, seed=7, start=START, merchant="acme")


def test_every_event_is_a_valid_canonical_event(stream: list[dict[str, Any]]) -> None:
    # given a 500-order stream
    # when each event is validated as the desk does
    parsed = [parse_event(event) for event in stream]
    # then every event passes, for the merchant, at or after the start
    assert len(parsed) == len(stream)
    assert all(event.merchant == "acme" for event in parsed)
    assert min(event.occurred_at for event in parsed) >= START


def test_the_stream_is_json_ready_and_sorted_by_time(stream: list[dict[str, Any]]) -> None:
    # given the stream
    # when it goes through JSON and back
    decoded = json.loads(json.dumps(stream))
    # then nothing changed, and the events come in time order
    assert decoded == stream
    times = [parse_event(event).occurred_at for event in stream]
    assert times == sorted(times)


def test_the_same_seed_gives_the_same_stream_and_another_seed_another(
    stream: list[dict[str, Any]],
) -> None:
    # given the stream of seed 7
    # when it is generated again, and with seed 8
    again = generate_orders(orders=500, seed=7, start=START, merchant="acme")
    other = generate_orders(orders=500, seed=8, start=START, merchant="acme")
    # then the first is identical and the second is not
    assert again == stream
    assert other != stream


def test_the_mix_has_about_five_events_per_order_and_some_exceptions(
    stream: list[dict[str, Any]],
) -> None:
    # given the stream of 500 orders
    orders = {event["order"]["ref"] for event in stream}
    # when events and orders with an exception are counted
    with_exception = {e["order"]["ref"] for e in stream if e["type"] in EXCEPTIONS}
    # then an order has between 4 and 6.5 events on average, and 15-40% have an exception
    assert len(orders) == 500
    assert 4 <= len(stream) / len(orders) <= 6.5
    assert 0.15 <= len(with_exception) / len(orders) <= 0.40


def test_each_exception_kind_occurs_and_most_are_resolved(stream: list[dict[str, Any]]) -> None:
    # given the stream
    kinds = Counter(event["type"] for event in stream)
    # when the exception kinds and their resolutions are counted
    missing = {kind for kind in EXCEPTIONS if kinds[kind] == 0}
    # then every exception kind is there, and holds are mostly released
    assert not missing
    assert kinds[EventType.HOLD_RELEASED] >= kinds[EventType.HOLD_PLACED] / 2
    assert kinds[EventType.ORDER_CANCELLED] > 0
    assert kinds[EventType.ORDER_PLACED] == 500


def test_ids_are_unique_and_prefixed_with_their_source(stream: list[dict[str, Any]]) -> None:
    # given the stream
    ids = [event["id"] for event in stream]
    # when the ids are checked
    # then they are unique, and each starts with its event's source
    assert len(set(ids)) == len(ids)
    assert all(event["id"].startswith(f"{event['source']}:") for event in stream)
    assert {event["source"] for event in stream} <= {source.value for source in EventSource}


def test_placed_orders_carry_consistent_facts(stream: list[dict[str, Any]]) -> None:
    # given the order.placed events
    placed = [event["order"] for event in stream if event["type"] == EventType.ORDER_PLACED]
    # when their facts are read
    for order in placed:
        lines_total = sum(Decimal(line["price"]) * line["qty"] for line in order["lines"])
        ship_by = datetime.fromisoformat(order["ship_by"])
        placed_at = datetime.fromisoformat(order["placed_at"])
        # then the lines add up to the value, and ship-by is one to two days later
        assert Decimal(order["value"]) == lines_total
        assert timedelta(days=1) <= ship_by - placed_at <= timedelta(days=2)
        assert 1 <= len(order["lines"]) <= 3
    vip = sum(1 for order in placed if order["customer"]["tier"] == "vip")
    assert 0 < vip < len(placed) * 0.15


def test_an_offset_start_gives_utc_times_and_a_naive_one_is_refused() -> None:
    # given a start with a -05:00 offset
    start = datetime(2026, 11, 2, 3, 0, tzinfo=timezone(timedelta(hours=-5)))
    # when a stream is generated from it
    events = generate_orders(orders=3, start=start, channels=("shopify",))
    # then its times are in UTC, without a merchant; and a naive start is refused
    assert events[0]["occurred_at"].endswith("Z")
    assert parse_event(events[0]).occurred_at >= start
    assert all("merchant" not in event for event in events)
    with pytest.raises(ValueError, match="timezone-aware"):
        generate_orders(orders=1, start=datetime(2026, 11, 2))


def test_to_jsonl_writes_one_object_a_line(stream: list[dict[str, Any]], tmp_path: Path) -> None:
    # given the stream
    path = tmp_path / "events.jsonl"
    # when it is written as JSONL
    written = to_jsonl(stream, path)
    # then each line is one of the events, in order
    lines = path.read_text(encoding="utf-8").splitlines()
    assert written == len(lines) == len(stream)
    assert [json.loads(line) for line in lines] == stream
