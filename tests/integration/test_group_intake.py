"""Group commit for webhook intake, on a real database: many concurrent deliveries, one writer.

Every delivery is answered with its own share (stored or duplicate) only after it is committed;
an event carried by two deliveries is stored once and counted once; a delivery that fails its
batch fails alone, and the rest of the batch is stored; closing finishes what is queued.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from recoverydesk.bootstrap import Desk, bootstrap
from recoverydesk.config import Settings
from recoverydesk.domain.errors import InvalidEvent
from recoverydesk.services import merchants as admin
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.group_intake import GroupIntake
from recoverydesk.services.intake import IngestReport
from recoverydesk.services.ports import IncomingEvent, Merchant

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def desk(db_url: str) -> Iterator[tuple[Desk, Merchant]]:
    desk = bootstrap(Settings(database_url=db_url), clock=SimulatedClock(T0))
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


def placed(n: int, *, event_id: str | None = None) -> IncomingEvent:
    raw: dict[str, Any] = {
        "id": event_id or f"shopify:order-{n}",
        "source": "shopify",
        "type": "order.placed",
        "occurred_at": (T0 - timedelta(minutes=n)).isoformat(),
        "order": {"ref": f"#{n}", "value": "40.00", "currency": "EUR", "channel": "web"},
        "data": {},
    }
    return IncomingEvent(parse_event({**raw, "merchant": "acme"}), json.dumps(raw))


def counts(desk: Desk) -> tuple[int, int]:
    with desk.engine.connect() as db:
        stored = db.execute(text("SELECT count(*) FROM events")).scalar_one()
        orders = db.execute(text("SELECT count(*) FROM orders WHERE event_count > 0")).scalar_one()
    return stored, orders


def test_concurrent_deliveries_are_each_answered_with_their_own_share(
    desk: tuple[Desk, Merchant],
) -> None:
    subject, merchant = desk
    # 60 deliveries from 12 threads; deliveries 0-9 are each sent twice (a vendor's retry).
    deliveries = [[placed(n)] for n in range(50)] + [[placed(n)] for n in range(10)]
    answers: list[Future[IngestReport]] = []
    lock = threading.Lock()

    def send(chunk: list[list[IncomingEvent]]) -> None:
        for items in chunk:
            future = subject.ingest_grouped(merchant, items)
            with lock:
                answers.append(future)

    threads = [threading.Thread(target=send, args=(deliveries[i::12],)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    reports = [future.result(timeout=30) for future in answers]
    assert sum(r.stored for r in reports) == 50
    assert sum(r.duplicates for r in reports) == 10
    assert all(r.received == 1 and r.stored + r.duplicates == 1 for r in reports)
    assert counts(subject) == (50, 50)


class GatedIngest:
    """The desk's own ingest, held at its first call until the test lets it go, and refusing
    any delivery that carries a poisoned event (as a database refusing a row would)."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[int] = []

    def __call__(self, merchant: Merchant, items: Sequence[IncomingEvent]) -> IngestReport:
        if not self.calls:
            self.entered.set()
            self.gate.wait(10)
        self.calls.append(len(items))
        if any(item.event.id.endswith("poison") for item in items):
            raise InvalidEvent("refused by the database")
        return self.desk.ingest(merchant, items)


def test_a_failing_delivery_fails_alone_and_the_rest_of_its_batch_is_stored(
    desk: tuple[Desk, Merchant],
) -> None:
    subject, merchant = desk
    ingest = GatedIngest(subject)
    group = GroupIntake(ingest, linger=0.001)
    try:
        first = group.submit(merchant, [placed(0)])  # the writer holds this one at the gate
        assert ingest.entered.wait(10)
        rest = [group.submit(merchant, [placed(n)]) for n in range(1, 5)]
        poisoned = group.submit(merchant, [placed(99, event_id="shopify:poison")])
        ingest.gate.set()
        assert first.result(timeout=10).stored == 1
        assert [f.result(timeout=10).stored for f in rest] == [1, 1, 1, 1]
        with pytest.raises(InvalidEvent, match="refused"):
            poisoned.result(timeout=10)
    finally:
        group.close()
    # the five queued deliveries were tried as one batch, then one by one
    assert ingest.calls == [1, 5, 1, 1, 1, 1, 1]
    assert counts(subject) == (5, 5)


def test_closing_finishes_what_is_queued(desk: tuple[Desk, Merchant]) -> None:
    subject, merchant = desk
    ingest = GatedIngest(subject)
    group = GroupIntake(ingest)
    answers = [group.submit(merchant, [placed(n)]) for n in range(20)]
    ingest.gate.set()
    group.close()
    assert all(future.done() for future in answers)
    assert sum(future.result().stored for future in answers) == 20
    with pytest.raises(RuntimeError, match="closed"):
        group.submit(merchant, [placed(21)])
