"""Timer handlers: what the desk does when a due time comes."""

from __future__ import annotations

import json
from datetime import datetime

from recoverydesk.domain.casebook import fold
from recoverydesk.domain.drift import CHECK_JOB, DriftRule, recheck
from recoverydesk.domain.errors import NotFound
from recoverydesk.domain.events import CanonicalEvent, EventSource, EventType, OrderFacts
from recoverydesk.services.canonical import event_to_dict, parse_event
from recoverydesk.services.decisions import DEFAULT_JOB as DECISION_DEFAULT
from recoverydesk.services.decisions import apply_default
from recoverydesk.services.intake import SHIP_BY_CHECK, ingest_within
from recoverydesk.services.jobs import JobHandler
from recoverydesk.services.ports import IncomingEvent, Job, Merchant, UnitOfWork


def _merchant_of(uow: UnitOfWork, job: Job) -> Merchant:
    merchant = uow.merchants.by_id(job.merchant_id)
    if merchant is None:
        raise NotFound(f"merchant {job.merchant_id} of job {job.id} is gone")
    return merchant


def _raise(uow: UnitOfWork, merchant: Merchant, event: CanonicalEvent, now: datetime) -> None:
    """Ingest a desk event as any other event is (its deterministic id makes a repeat a no-op)."""
    raw = json.dumps(event_to_dict(event))
    ingest_within(uow, merchant=merchant, events=[IncomingEvent(event, raw)], now=now)


def check_ship_by(uow: UnitOfWork, job: Job, now: datetime) -> None:
    """At an order's ship-by time: if it has not shipped, the desk records that it missed it.

    The desk event has a deterministic id, so a repeated run stores it once.
    """
    merchant = _merchant_of(uow, job)
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
    _raise(uow, merchant, event, now)


def check_drift(uow: UnitOfWork, job: Job, now: datetime) -> None:
    """At a timed drift rule's due time: if its contradiction stood then, the desk records it.

    The order is folded from its history up to the due time (so the answer does not depend on
    when the worker ran), and the desk event that opens the case has a deterministic id.
    """
    merchant = _merchant_of(uow, job)
    ref, rule = str(job.payload["order_ref"]), DriftRule(str(job.payload["rule"]))
    due = datetime.fromisoformat(str(job.payload["due_at"]))
    event_id = f"desk:{job.key}"
    history = uow.events.history(merchant.id, [ref]).get(ref, [])
    order, _ = fold(ref, [event for event in history if event.sort_key < (due, event_id)])
    finding = recheck(order, rule, job.payload)
    if finding is None:
        return
    draft = CanonicalEvent(
        id=event_id,
        source=EventSource.DESK,
        type=EventType.DRIFT_DETECTED,
        occurred_at=due,
        order=OrderFacts(ref=ref),
        data=finding.as_data(),
    )
    _raise(uow, merchant, parse_event(event_to_dict(draft)), now)


HANDLERS: dict[str, JobHandler] = {
    SHIP_BY_CHECK: check_ship_by,
    CHECK_JOB: check_drift,
    DECISION_DEFAULT: apply_default,  # a customer decision's window closed
}
