"""How events open and close cases, as a deterministic fold over an order's events.

Every opening event opens a case of its category, or joins the one already open; every closing
event closes the open cases it confirms. Because openers and closers never depend on arrival
order, folding an order's events in ``sort_key`` order gives the same cases whatever order they
arrived in; ``sync_cases`` then brings the stored cases in line with the fold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from recoverydesk.domain.cases import (
    PRE_FULFILMENT,
    Case,
    Category,
    Outcome,
    ReasonCode,
)
from recoverydesk.domain.events import CanonicalEvent, EventType, HoldType
from recoverydesk.domain.orders import OrderView

HOLD_CATEGORY: dict[str, Category] = {
    HoldType.FRAUD: Category.FRAUD_HOLD,
    HoldType.ADDRESS: Category.ADDRESS_INVALID,
    HoldType.PAYMENT: Category.PAYMENT_FAILED,
    HoldType.INVENTORY: Category.INVENTORY_MISMATCH,
    HoldType.WAREHOUSE: Category.WMS_EXCEPTION,
    HoldType.CUSTOMER_REQUEST: Category.CHANGE_REQUEST,
}

_OPENS: dict[EventType, Category] = {
    EventType.PAYMENT_FAILED: Category.PAYMENT_FAILED,
    EventType.ADDRESS_INVALID: Category.ADDRESS_INVALID,
    EventType.INVENTORY_SHORT: Category.INVENTORY_MISMATCH,
    EventType.CANCEL_REQUESTED: Category.CHANGE_REQUEST,
    EventType.CHANGE_REQUESTED: Category.CHANGE_REQUEST,
    EventType.DELIVERY_EXCEPTION: Category.DELIVERY_EXCEPTION,
    EventType.DISPUTE_OPENED: Category.CHARGEBACK,
    EventType.SHIP_BY_MISSED: Category.LATE_SHIPMENT_RISK,
}

_SHIPPING_CLOSES = PRE_FULFILMENT - {Category.CHANGE_REQUEST}


@dataclass(frozen=True, slots=True)
class Closure:
    categories: frozenset[Category]
    outcome: Outcome
    reason_code: ReasonCode | None = None
    holds_only: bool = False  # only cases that a hold opened (a release of every hold)

    def confirms(self, episode: Episode) -> bool:
        if not episode.is_open or episode.category not in self.categories:
            return False
        return episode.hold_type is not None or not self.holds_only


@dataclass(slots=True)
class Episode:
    """One case as the fold sees it: which events opened, joined and closed it."""

    category: Category
    opened_by: str
    opened_at: datetime
    hold_type: str | None = None
    rule: str = ""  # drift rule of a drift episode
    data: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str, datetime]] = field(default_factory=list)
    outcome: Outcome | None = None
    reason_code: ReasonCode | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    @property
    def event_ids(self) -> list[str]:
        return [event_id for event_id, _, _ in self.events]

    @classmethod
    def of_case(cls, case: Case) -> Episode:
        episode = cls(
            case.category, case.opened_by, case.opened_at, case.hold_type, case.rule, case.data
        )
        episode.events = [(event_id, "", case.opened_at) for event_id in case.event_ids]
        return episode

    def close(self, closure: Closure, event: CanonicalEvent) -> None:
        self.outcome, self.reason_code = closure.outcome, closure.reason_code
        self.closed_at, self.closed_by = event.occurred_at, event.id


def opening_category(event: CanonicalEvent) -> Category | None:
    if event.type is EventType.HOLD_PLACED:
        return HOLD_CATEGORY[str(event.data["hold_type"])]
    return _OPENS.get(event.type)


_CONFIRMS: dict[EventType, Closure] = {
    EventType.PAYMENT_AUTHORIZED: Closure(frozenset({Category.PAYMENT_FAILED}), Outcome.RELEASED),
    EventType.PAYMENT_CAPTURED: Closure(frozenset({Category.PAYMENT_FAILED}), Outcome.RELEASED),
    EventType.FULFILLMENT_SHIPPED: Closure(_SHIPPING_CLOSES, Outcome.SHIPPED),
    EventType.FULFILLMENT_DELIVERED: Closure(
        _SHIPPING_CLOSES | {Category.DELIVERY_EXCEPTION}, Outcome.DELIVERED
    ),
    EventType.RETURN_RECEIVED: Closure(frozenset({Category.DELIVERY_EXCEPTION}), Outcome.RETURNED),
    EventType.PAYMENT_REFUNDED: Closure(frozenset({Category.REFUND_REQUEST}), Outcome.REFUNDED),
}


def closures(event: CanonicalEvent) -> list[Closure]:
    """The outcomes an event confirms, and for which categories."""
    if event.type in _CONFIRMS:
        return [_CONFIRMS[event.type]]
    if event.type is EventType.HOLD_RELEASED:
        hold_type = event.data.get("hold_type")
        if hold_type:
            return [Closure(frozenset({HOLD_CATEGORY[str(hold_type)]}), Outcome.RELEASED)]
        return [Closure(frozenset(HOLD_CATEGORY.values()), Outcome.RELEASED, holds_only=True)]
    if event.type is EventType.ORDER_CANCELLED and not event.data.get("lines"):
        reason = ReasonCode.parse(event.data.get("reason_code") or event.data.get("reason"))
        return [Closure(PRE_FULFILMENT, Outcome.CANCELLED, reason)]
    return []


def _already_settled(order: OrderView, category: Category) -> Closure | None:
    """A pre-fulfilment exception raised on an order that already shipped or was cancelled."""
    if category not in PRE_FULFILMENT:
        return None
    if order.cancelled:
        return Closure(PRE_FULFILMENT, Outcome.CANCELLED, ReasonCode.parse(order.cancel_reason))
    if order.shipped and category in _SHIPPING_CLOSES:
        return Closure(_SHIPPING_CLOSES, Outcome.SHIPPED)
    return None


def step(order: OrderView, episodes: list[Episode], event: CanonicalEvent) -> None:
    """Fold one event into the order and its episodes (mutates both)."""
    stamp = (event.id, event.type.value, event.occurred_at)
    for closure in closures(event):
        for episode in episodes:
            if closure.confirms(episode):
                episode.events.append(stamp)
                episode.close(closure, event)
    order.apply(event)
    category = opening_category(event)
    current = {ep.category: ep for ep in episodes if ep.is_open}
    if category is not None and category not in current:
        hold = event.data.get("hold_type")
        episode = Episode(
            category, event.id, event.occurred_at, str(hold) if hold else None, data=_facts(event)
        )
        episode.events.append(stamp)
        episodes.append(episode)
        settled = _already_settled(order, category)
        if settled is not None:
            episode.close(settled, event)
        return
    for episode in current.values():
        if stamp not in episode.events:
            episode.events.append(stamp)


_CASE_FACTS = ("due_by", "amount", "reason", "kind", "sku", "available", "change", "requested_by")


def _facts(event: CanonicalEvent) -> dict[str, Any]:
    """The opening event's facts a case keeps (a dispute's due date, a short SKU ...)."""
    return {key: str(event.data[key]) for key in _CASE_FACTS if event.data.get(key) is not None}


def fold(ref: str, events: Iterable[CanonicalEvent]) -> tuple[OrderView, list[Episode]]:
    """The order 360 and its episodes from the whole history, whatever the arrival order."""
    order = OrderView(ref=ref)
    episodes: list[Episode] = []
    for event in sorted(events, key=lambda e: e.sort_key):
        step(order, episodes, event)
    return order, episodes


def sync_cases(
    order_ref: str, episodes: list[Episode], cases: list[Case], *, at: datetime
) -> list[Case]:
    """Bring stored ``cases`` in line with ``episodes``; returns the cases to create."""
    created: list[Case] = []
    unclaimed = [case for case in cases if case.opened_by]
    for episode in episodes:
        case = _claim(episode, unclaimed)
        if case is None:
            case = Case.open(
                order_ref=order_ref,
                category=episode.category,
                opened_at=episode.opened_at,
                opened_by=episode.opened_by,
                hold_type=episode.hold_type,
                recorded_at=at,
                rule=episode.rule,
                data=episode.data,
            )
            created.append(case)
        elif case.opened_by != episode.opened_by:
            case.rekey(episode.opened_by, episode.opened_at, at)
        case.hold_type = episode.hold_type
        for event_id, event_type, occurred_at in episode.events:
            case.attach(event_id, event_type, occurred_at, at)
        case.detach_all_but(episode.event_ids, at)
        if episode.closed_at is not None and episode.outcome is not None:
            case.confirm_outcome(
                episode.outcome,
                reason_code=episode.reason_code,
                confirmed_at=episode.closed_at,
                event_id=episode.closed_by or episode.opened_by,
                at=at,
            )
    return created


def _claim(episode: Episode, unclaimed: list[Case]) -> Case | None:
    ids = set(episode.event_ids)
    for match in (lambda c: c.opened_by == episode.opened_by, lambda c: c.opened_by in ids):
        for case in unclaimed:
            if case.category == episode.category and match(case):
                unclaimed.remove(case)
                return case
    return None
