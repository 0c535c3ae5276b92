"""Timer handlers: what the desk does when a due time comes."""

from __future__ import annotations

import json
from datetime import datetime

from recoverydesk.domain.errors import NotFound
from recoverydesk.domain.events import CanonicalEvent, EventSource, EventType, OrderFacts
from recoverydesk.services.canonical import event_to_dict
from recoverydesk.services.intake import SHIP_BY_CHECK, ingest_within
from recoverydesk.services.jobs import JobHandler
from recoverydesk.services.ports import IncomingEvent, Job, UnitOfWork


def check_ship_by(uow: UnitOfWork, job: Job, now: datetime) -> None:
    """At an order's ship-by time: if it has not shipped, the desk records that it missed it.

    The desk event has a deterministic id, so a repeated run stores it once.
    """
    merchant = uow.merchants.by_id(job.merchant_id)
    if merchant is None:
        raise NotFound(f"merchant {job.merchant_id} of job {job.id} is gone")
    ref = str(job.payload["order_ref"])
    order = uow.orders.get(merchant.id, ref)
    if order is None or order.shipped or order.cancelled or order.ship_by is None:
        return
    if order.ship_by.isoformat() != job.payload["ship_by"]:
        return  # the ship-by time moved; the timer for the new time decides
    event = CanonicalEvent(
        id=f"desk:ship-by-missed:{ref}:{order.ship_by.isoformat()}",
        source=EventSource.DESK,
        type=EventType.SHIP_BY_MISSED,
        occurred_at=order.ship_by,
        order=OrderFacts(ref=ref),
        data={"ship_by": order.ship_by.isoformat(), "fulfillment": order.fulfillment.value},
    )
    raw = json.dumps(event_to_dict(event))
    ingest_within(uow, merchant=merchant, events=[IncomingEvent(event, raw)], now=now)


HANDLERS: dict[str, JobHandler] = {SHIP_BY_CHECK: check_ship_by}
