"""Intake: store each event once and fold it into its order 360 and cases, in one transaction.

Events that arrive in order are folded onto the stored snapshot (the fast path); an event older
than what the order has already seen makes the desk refold that order's whole history, so the
result never depends on arrival order.

A carrier event that knows only a parcel's tracking number (``TRACKING_NUMBER``) is first moved to
the order that shipped under that number, from the desk's record of tracking numbers or from an
event of the same batch; the event keeps its id, so a redelivery is still a duplicate.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import structlog

from recoverydesk.domain.casebook import CaseRules, Episode, fold, step, sync_cases
from recoverydesk.domain.cases import Case
from recoverydesk.domain.drift import CHECK_JOB, due_checks
from recoverydesk.domain.events import CanonicalEvent
from recoverydesk.domain.orders import FULFILLMENT_EVENTS, OrderView
from recoverydesk.services import stopship
from recoverydesk.services.clock import Clock
from recoverydesk.services.ports import (
    IncomingEvent,
    JobRequest,
    Merchant,
    TransientConflict,
    UnitOfWork,
    UnitOfWorkFactory,
)
from recoverydesk.services.triage import run_triage, stage_timers, triage_for

log = structlog.get_logger("recoverydesk.intake")

SHIP_BY_CHECK = "order.ship_by_check"
# The ``order.ids`` key of a parcel's tracking number. Equal to ``order.ref``, it says the event
# knows no order reference (a carrier webhook carries only the tracking number): the ref is a
# stand-in that intake replaces by the order that shipped under that number.
TRACKING_NUMBER = "tracking_number"


@dataclass(slots=True)
class IngestReport:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    refolded_orders: int = 0
    cases_opened: int = 0
    cases_closed: int = 0
    stored_by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)
    stored_ids: set[str] = field(default_factory=set)

    def add(self, other: IngestReport) -> None:
        for name in (
            "received",
            "stored",
            "duplicates",
            "refolded_orders",
            "cases_opened",
            "cases_closed",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.stored_by_kind.update(other.stored_by_kind)
        self.stored_ids |= other.stored_ids


def ingest(
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    merchant: Merchant,
    events: Sequence[IncomingEvent],
) -> IngestReport:
    """Ingest a batch of validated events for one merchant in one unit of work."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with uow_factory() as uow:
                report = ingest_within(uow, merchant=merchant, events=events, now=clock.now())
                uow.commit()
            return report
        except TransientConflict:
            if attempt == _ATTEMPTS:
                raise
            log.info("ingest retried after a database conflict", attempt=attempt)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


_ATTEMPTS = 5


def ingest_within(
    uow: UnitOfWork, *, merchant: Merchant, events: Sequence[IncomingEvent], now: datetime
) -> IngestReport:
    """The same, inside a unit of work the caller commits (jobs use this)."""
    batch = list({item.event.id: item for item in reversed(events)}.values())[::-1]
    batch = _link_to_orders(uow, merchant, batch)
    report = IngestReport(received=len(events))
    new_ids = uow.events.add_new(merchant.id, batch, received_at=now) if batch else set()
    fresh = [item.event for item in batch if item.event.id in new_ids]
    report.stored = len(fresh)
    report.stored_ids = {event.id for event in fresh}
    report.duplicates = report.received - report.stored
    report.stored_by_kind.update((e.source.value, e.type.value) for e in fresh)
    if fresh:
        _fold_into_orders(uow, merchant, fresh, now, report)
    return report


def tracking_only(event: CanonicalEvent) -> str | None:
    """The tracking number the event's ref stands in for; None when the ref names an order."""
    code = (event.order.ids or {}).get(TRACKING_NUMBER)
    return code if code is not None and code == event.order.ref else None


def _link_to_orders(
    uow: UnitOfWork, merchant: Merchant, batch: list[IncomingEvent]
) -> list[IncomingEvent]:
    """Each event that knows only a tracking number, moved to the order shipped under it; one
    for a number no order has yet stays under the number."""
    codes = {code for item in batch if (code := tracking_only(item.event)) is not None}
    if not codes:
        return batch
    shipped = {**_shipped_in(batch, codes), **uow.orders.by_tracking(merchant.id, codes)}
    return [_linked(item, shipped, merchant) for item in batch]


def _linked(item: IncomingEvent, shipped: Mapping[str, str], merchant: Merchant) -> IncomingEvent:
    code = tracking_only(item.event)
    if code is None:
        return item
    if code not in shipped:
        log.info(
            "carrier event for an unknown tracking number",
            merchant_id=merchant.id,
            event_id=item.event.id,
            tracking=code,
        )
        return item
    order = replace(item.event.order, ref=shipped[code])
    return IncomingEvent(replace(item.event, order=order), item.raw)


def _shipped_in(batch: Sequence[IncomingEvent], codes: Collection[str]) -> Mapping[str, str]:
    """The tracking numbers among ``codes`` that a fulfilment event of the batch gives its
    order (the first, in fold order), as the order view will learn them."""
    shipped: dict[str, str] = {}
    for event in sorted((item.event for item in batch), key=lambda e: e.sort_key):
        code = str(event.data.get("tracking") or "")
        if code in codes and event.type in FULFILLMENT_EVENTS and tracking_only(event) is None:
            shipped.setdefault(code, event.order.ref)
    return shipped


def _fold_into_orders(
    uow: UnitOfWork,
    merchant: Merchant,
    fresh: list[CanonicalEvent],
    now: datetime,
    report: IngestReport,
) -> None:
    by_order: dict[str, list[CanonicalEvent]] = defaultdict(list)
    for event in sorted(fresh, key=lambda e: e.sort_key):
        by_order[event.order.ref].append(event)
    rules = triage_for(uow, merchant).case_rules
    orders = uow.orders.lock(merchant.id, sorted(by_order))
    # An order seen for the first time has no cases and no cancellation to read back.
    known = {ref for ref, order in orders.items() if order.last_key is not None}
    ship_by_before = {ref: order.ship_by for ref, order in orders.items()}
    late = {ref for ref, evs in by_order.items() if not orders[ref].accepts_in_order(evs[0])}
    in_order = [ref for ref in by_order if ref not in late]
    touched: list[Case] = []
    open_cases = uow.cases.for_orders(
        merchant.id, [ref for ref in in_order if ref in known], open_only=True
    )
    for ref in in_order:
        touched += _fold_fast(orders[ref], open_cases.get(ref, []), by_order[ref], now, rules)
    if late:
        histories = uow.events.history(merchant.id, late)
        all_cases = uow.cases.for_orders(merchant.id, late, open_only=False)
        for ref in late:
            orders[ref], cases = _refold(ref, histories[ref], all_cases.get(ref, []), now, rules)
            touched += cases
        report.refolded_orders = len(late)
        log.info("orders refolded after late events", merchant_id=merchant.id, orders=len(late))
    batch_events = {event.id: event for event in fresh}
    changed = [case for case in touched if case.dirty]
    clocked = run_triage(uow, merchant, cases=changed, orders=orders, events=batch_events, now=now)
    new = {id(case) for case in changed if case.id is None}
    report.cases_opened = len(new)
    report.cases_closed = sum(1 for case in changed if not case.is_open)
    uow.orders.save(merchant.id, list(orders.values()), at=now)
    uow.cases.save(merchant.id, changed)
    timers = _order_timers(merchant, orders, ship_by_before, uow)
    calendar = triage_for(uow, merchant).calendar
    for case in clocked:
        timers += stage_timers(merchant.id, case, calendar)
    uow.jobs.enqueue(timers, now=now)
    stopship.on_intake(
        uow, merchant, orders=orders, fresh=fresh, cases=changed, now=now, known=known
    )
    for case in changed:
        log.info(
            "case opened" if id(case) in new else "case changed",
            merchant=merchant.name,
            order_ref=case.order_ref,
            case_id=case.id,
            category=str(case.category),
            status=case.status.value,
        )


def _fold_fast(
    order: OrderView,
    cases: list[Case],
    events: list[CanonicalEvent],
    now: datetime,
    rules: CaseRules,
) -> list[Case]:
    episodes = [Episode.of_case(case) for case in cases]
    for event in events:
        step(order, episodes, event, rules)
    return cases + sync_cases(order.ref, episodes, cases, at=now)


def _refold(
    ref: str,
    history: list[CanonicalEvent],
    cases: list[Case],
    now: datetime,
    rules: CaseRules,
) -> tuple[OrderView, list[Case]]:
    order, episodes = fold(ref, history, rules)
    return order, cases + sync_cases(ref, episodes, cases, at=now)


def _order_timers(
    merchant: Merchant,
    orders: dict[str, OrderView],
    before: dict[str, datetime | None],
    uow: UnitOfWork,
) -> list[JobRequest]:
    """A timer at each new ship-by time of an order that has not shipped yet, and one for each
    timed drift rule the order needs (``domain.drift.due_checks``; a repeated key is ignored)."""
    timers = []
    for ref, order in orders.items():
        if order.ship_by is None or order.ship_by == before.get(ref):
            continue
        if order.shipped or order.cancelled:
            continue
        timers.append(
            JobRequest(
                merchant_id=merchant.id,
                kind=SHIP_BY_CHECK,
                key=f"ship-by:{ref}:{order.ship_by.isoformat()}",
                due_at=order.ship_by,
                payload={"order_ref": ref, "ship_by": order.ship_by.isoformat()},
            )
        )
    limits = triage_for(uow, merchant).policy.drift
    for order in orders.values():
        timers += [
            JobRequest(merchant.id, CHECK_JOB, check.key, check.due_at, dict(check.payload))
            for check in due_checks(order, limits)
        ]
    return timers
