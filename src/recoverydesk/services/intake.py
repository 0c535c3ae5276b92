"""Intake: store each event once and fold it into its order 360 and cases, in one transaction.

Events that arrive in order are folded onto the stored snapshot (the fast path); an event older
than what the order has already seen makes the desk refold that order's whole history, so the
result never depends on arrival order.

An event that knows no order reference, only an outside system's id of the order (a carrier's
tracking number, a PSP's payment intent: ``ports.LINK_KEYS``), carries that id as a stand-in ref
(``order.ref == order.ids[kind]``). Intake first moves it to the order that knows the key, from
the desk's record of order keys or from an event of the same batch; the event keeps its id, so a
redelivery is still a duplicate. One that no order knows yet stands under its key until an order
learns it: saving that order records the key, and intake then moves the stand-in's stored events
and cases to it, removes the stand-in order and refolds the order from its whole history.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import structlog

from recoverydesk.domain.casebook import CaseRules, Episode, fold, step, sync_cases
from recoverydesk.domain.cases import Case, CaseStatus
from recoverydesk.domain.drift import CHECK_JOB, due_checks
from recoverydesk.domain.events import CanonicalEvent
from recoverydesk.domain.orders import FULFILLMENT_EVENTS, OrderView
from recoverydesk.services import playbooks, ports, stopship
from recoverydesk.services.clock import Clock
from recoverydesk.services.ports import (
    LINK_KEYS,
    IncomingEvent,
    JobRequest,
    Merchant,
    OrderKey,
    TransientConflict,
    UnitOfWork,
    UnitOfWorkFactory,
)
from recoverydesk.services.triage import run_triage, stage_timers, triage_for

log = structlog.get_logger("recoverydesk.intake")

SHIP_BY_CHECK = "order.ship_by_check"
# The ``order.ids`` kind of a parcel's tracking number (normalizers name it from here).
TRACKING_NUMBER = ports.TRACKING_NUMBER
# A case of a stand-in order that, moving to its order, found a case of its category open there:
# closed, it names that case (``data``), and takes no part in the order's refolds.
MERGED_INTO = "merged_into"
LINKER = "intake"  # the actor of the timeline rows of cases moved from a stand-in order
_LINK_KINDS = tuple(sorted(LINK_KEYS))


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
    batch, known = _link_to_orders(uow, merchant, batch)
    report = IngestReport(received=len(events))
    new_ids = uow.events.add_new(merchant.id, batch, received_at=now) if batch else set()
    fresh = [item.event for item in batch if item.event.id in new_ids]
    report.stored = len(fresh)
    report.stored_ids = {event.id for event in fresh}
    report.duplicates = report.received - report.stored
    report.stored_by_kind.update((e.source.value, e.type.value) for e in fresh)
    if fresh:
        learned = _fold_into_orders(uow, merchant, fresh, now, report)
        # ``known``: a stand-in stored while another transaction recorded its key moves too
        _adopt_stand_ins(uow, merchant, {**known, **learned}, now, report)
    return report


def stand_in(event: CanonicalEvent) -> OrderKey | None:
    """The key (kind, key) that the event's ref stands in for; None when the ref names an
    order."""
    ids = event.order.ids or {}
    ref = event.order.ref
    return next(((kind, ref) for kind in _LINK_KINDS if ids.get(kind) == ref), None)


def tracking_only(event: CanonicalEvent) -> str | None:
    """The tracking number the event's ref stands in for; None when it stands for none."""
    own = stand_in(event)
    return own[1] if own is not None and own[0] == TRACKING_NUMBER else None


def _stand_in_keys(event: CanonicalEvent) -> list[OrderKey]:
    """Every key by which a stand-in event can reach its order: its stand-in key first."""
    own = stand_in(event)
    if own is None:
        return []
    ids = event.order.ids or {}
    return [own, *sorted((k, v) for k, v in ids.items() if k in LINK_KEYS and (k, v) != own)]


def _keys_named(event: CanonicalEvent) -> list[OrderKey]:
    """The keys an event (not a stand-in) teaches its order, as the order view learns them:
    its ``order.ids`` of the linkable kinds, and a fulfilment's tracking number."""
    if stand_in(event) is not None:
        return []
    ids = event.order.ids or {}
    keys = [(kind, key) for kind, key in sorted(ids.items()) if kind in LINK_KEYS]
    code = str(event.data.get("tracking") or "")
    if code and event.type in FULFILLMENT_EVENTS:
        keys.append((TRACKING_NUMBER, code))
    return [(kind, key) for kind, key in keys if key and key != event.order.ref]


def _link_to_orders(
    uow: UnitOfWork, merchant: Merchant, batch: list[IncomingEvent]
) -> tuple[list[IncomingEvent], dict[OrderKey, str]]:
    """Each stand-in event moved to the order that knows its key; one whose keys no order
    knows yet stays under its stand-in ref. Also returns the keys found in the desk's record."""
    wanted = {pair for item in batch for pair in _stand_in_keys(item.event)}
    if not wanted:
        return batch, {}
    known = uow.orders.by_keys(merchant.id, wanted)
    owners = {**_named_in(batch, wanted), **known}
    return [_linked(item, owners, merchant) for item in batch], known


def _linked(
    item: IncomingEvent, owners: Mapping[OrderKey, str], merchant: Merchant
) -> IncomingEvent:
    keys = _stand_in_keys(item.event)
    if not keys:
        return item
    ref = next((owners[pair] for pair in keys if pair in owners), None)
    if ref is None:
        log.info(
            "event for an order key no order has yet",
            merchant_id=merchant.id,
            event_id=item.event.id,
            kind=keys[0][0],
            key=keys[0][1],
        )
        return item
    order = replace(item.event.order, ref=ref)
    return IncomingEvent(replace(item.event, order=order), item.raw)


def _named_in(batch: Sequence[IncomingEvent], wanted: Collection[OrderKey]) -> dict[OrderKey, str]:
    """The keys among ``wanted`` that an event of the batch teaches its order (the first, in
    fold order), as the order view will learn them."""
    owners: dict[OrderKey, str] = {}
    for event in sorted((item.event for item in batch), key=lambda e: e.sort_key):
        for pair in _keys_named(event):
            if pair in wanted:
                owners.setdefault(pair, event.order.ref)
    return owners


def _fold_into_orders(
    uow: UnitOfWork,
    merchant: Merchant,
    fresh: list[CanonicalEvent],
    now: datetime,
    report: IngestReport,
    *,
    refold: Collection[str] = (),
) -> dict[OrderKey, str]:
    """Fold ``fresh`` into their orders (those of ``refold`` from their whole history) and
    cases; returns the order keys recorded for the first time."""
    by_order: dict[str, list[CanonicalEvent]] = defaultdict(list)
    for event in sorted(fresh, key=lambda e: e.sort_key):
        by_order[event.order.ref].append(event)
    rules = triage_for(uow, merchant).case_rules
    orders = uow.orders.lock(merchant.id, sorted(by_order))
    # An order seen for the first time has no cases and no cancellation to read back.
    known = {ref for ref, order in orders.items() if order.last_key is not None}
    ship_by_before = {ref: order.ship_by for ref, order in orders.items()}
    late = {
        ref
        for ref, evs in by_order.items()
        if ref in refold or not orders[ref].accepts_in_order(evs[0])
    }
    in_order = [ref for ref in by_order if ref not in late]
    touched: list[Case] = []
    # Closed cases too: an event that contradicts a closed outcome reopens its case, as a refold
    # from history would.
    seen_cases = uow.cases.for_orders(
        merchant.id, [ref for ref in in_order if ref in known], open_only=False
    )
    for ref in in_order:
        touched += _fold_fast(orders[ref], seen_cases.get(ref, []), by_order[ref], now, rules)
    if late:
        histories = uow.events.history(merchant.id, late)
        all_cases = uow.cases.for_orders(merchant.id, late, open_only=False)
        for ref in late:
            orders[ref], cases = _refold(ref, histories[ref], all_cases.get(ref, []), now, rules)
            touched += cases
        report.refolded_orders += len(late)
        log.info("orders refolded after late events", merchant_id=merchant.id, orders=len(late))
    batch_events = {event.id: event for event in fresh}
    changed = [case for case in touched if case.dirty]
    clocked = run_triage(uow, merchant, cases=changed, orders=orders, events=batch_events, now=now)
    new = {id(case) for case in changed if case.id is None}
    report.cases_opened += len(new)
    report.cases_closed += sum(1 for case in changed if not case.is_open)
    learned = uow.orders.save(merchant.id, list(orders.values()), at=now)
    uow.cases.save(merchant.id, changed)
    playbooks.after_intake(
        uow, merchant, cases=changed, orders=orders, events=batch_events, now=now
    )
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
    return learned


def _adopt_stand_ins(
    uow: UnitOfWork,
    merchant: Merchant,
    links: Mapping[OrderKey, str],
    now: datetime,
    report: IngestReport,
) -> None:
    """Orders that now know a key whose stand-in has stored events take them: the events and
    the stand-in's cases move to the order, the stand-in order is removed, and the order is
    refolded from its whole history (which may teach it further keys: they are adopted too)."""
    while links:
        moved = uow.events.relink(merchant.id, links)
        if not moved:
            return
        into = {stand_in: events[0].order.ref for stand_in, events in moved.items()}
        uow.orders.lock(merchant.id, sorted({*into, *into.values()}))
        # stored under a stand-in by a transaction that committed while this one waited
        straggling = {pair: ref for pair, ref in links.items() if pair[1] in into}
        for ref, events in uow.events.relink(merchant.id, straggling).items():
            moved.setdefault(ref, []).extend(events)
        _move_cases(uow, merchant, into, now)
        uow.orders.remove(merchant.id, into)
        log.info("stand-in orders joined their orders", merchant_id=merchant.id, orders=into)
        events = [event for stand_in in sorted(moved) for event in moved[stand_in]]
        links = _fold_into_orders(uow, merchant, events, now, report, refold=set(into.values()))


def _move_cases(
    uow: UnitOfWork, merchant: Merchant, into: Mapping[str, str], now: datetime
) -> None:
    """A stand-in's cases move to its order; one whose category (and rule) is already open
    there is closed as that case's duplicate, so the order keeps one open case of each."""
    found = uow.cases.for_orders(merchant.id, sorted(into), open_only=False)
    if not found:
        return
    open_on = uow.cases.for_orders(merchant.id, sorted(set(into.values())), open_only=True)
    slots = {(ref, case.category, case.rule): case for ref, cs in open_on.items() for case in cs}
    moving: dict[str, list[Case]] = defaultdict(list)
    for stand_in in sorted(found):
        ref = into[stand_in]
        for case in found[stand_in]:
            case.record(now, "order_linked", LINKER, {"from": stand_in, "to": ref})
            kept = slots.get((ref, case.category, case.rule)) if case.is_open else None
            if kept is not None:
                _close_as_duplicate(case, kept, now)
            elif case.is_open:
                slots[ref, case.category, case.rule] = case
            moving[ref].append(case)
    for ref, cases in moving.items():
        uow.cases.move(merchant.id, cases, to_ref=ref)


def _close_as_duplicate(case: Case, kept: Case, now: datetime) -> None:
    """Closed without an outcome of its own (the case it duplicates will have one)."""
    note = f"duplicate of case {kept.id}"
    case.move_to(CaseStatus.RESOLVED, at=now, actor=LINKER, note=note)
    case.move_to(CaseStatus.CLOSED, at=now, actor=LINKER, note=note)
    case.closed_at = now
    case.data = {**case.data, MERGED_INTO: kept.id}


def _fold_fast(
    order: OrderView,
    cases: list[Case],
    events: list[CanonicalEvent],
    now: datetime,
    rules: CaseRules,
) -> list[Case]:
    cases = [case for case in cases if MERGED_INTO not in case.data]
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
    cases = [case for case in cases if MERGED_INTO not in case.data]
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
