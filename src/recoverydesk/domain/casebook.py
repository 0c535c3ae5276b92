"""How events open and close cases, as a deterministic fold over an order's events.

Every opening event opens a case of its category, or joins the one already open; every closing
event closes the open cases it confirms. Because openers and closers never depend on arrival
order, folding an order's events in ``sort_key`` order gives the same cases whatever order they
arrived in; ``sync_cases`` then brings the stored cases in line with the fold.

Drift rules (``domain.drift``) run in the same fold, after each event is applied to the order:
a rule opens a ``drift`` case when the event makes its contradiction start to hold, and closes it
when the contradiction is resolved. Open drift cases are keyed by rule as well as category.

Root cause (F16). An episode closed by an event takes the root cause of the first entry of the
merchant's list (``CaseRules.root_causes``; the defaults without rules) that matches its category,
reason code and outcome (``domain.root_causes``). Without a match the case resolves but stays
open to a person ("root cause needed"), who closes it with one.

Reopening on contradiction (F15: "a contradicting event reopens it"). When an opening event
finds no open case of its category, it reopens the latest case of that category if it undoes the
outcome that case closed on, instead of opening a second case:
- a ``hold.placed`` of a hold type after the case of its category closed ``released``;
- a ``delivery.exception`` after the delivery exception case closed ``delivered``.
A new case is the right episode instead when:
- the order is already settled for the category (cancelled, or shipped for a pre-fulfilment
  exception): the event contradicts nothing; its case opens closed, as before;
- a new problem of the same kind is reported after a recovery (a ``payment.failed`` after the
  payment was authorized or captured, a new ``address.invalid``, ``inventory.short``, a new
  cancel or change request, a second dispute): a new attempt or ask, with its own case;
- two systems contradict each other (the ERP cancelled but the warehouse shipped, a refund while
  shipped ...): the drift rule's own case opens with the evidence (F3); closed cases keep their
  outcome.
Both follow from the events alone (the latest case by close time, then opening), so the fold
stays deterministic and independent of arrival order; ``sync_cases`` reopens the stored case
(timeline: ``reopened``, naming the event) when the fold reopened its episode. A case a person
closed on an outcome no event reports (denied, concession) is open to the fold, which sees only
events: later events of its category join it, and only a source-confirmed outcome changes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from recoverydesk.domain import drift
from recoverydesk.domain.cases import (
    PRE_FULFILMENT,
    SOURCE,
    Case,
    CaseStatus,
    Category,
    Outcome,
    ReasonCode,
)
from recoverydesk.domain.events import CanonicalEvent, EventType, HoldType
from recoverydesk.domain.orders import OrderView
from recoverydesk.domain.root_causes import (
    DEFAULT_ROOT_CAUSES,
    DRIFT_WITHDRAWN,
    RootCause,
    root_cause_for,
)

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

# A helpdesk ticket opens a case by its ``data.topic`` (the desk's default openers; a merchant's
# own ``openers`` can open cases of its own categories from other topics).
_TICKET_TOPICS: dict[str, Category] = {
    "refund": Category.REFUND_REQUEST,
    "refund_status": Category.REFUND_REQUEST,
    **dict.fromkeys(
        ("reship", "compensation", "concession", "damaged", "missing_item"),
        Category.CONCESSION_REQUEST,
    ),
}

_SHIPPING_CLOSES = PRE_FULFILMENT - {Category.CHANGE_REQUEST}

Stamp = tuple[str, str, datetime]  # an event on an episode: id, type, when it happened


@dataclass(frozen=True, slots=True)
class Closure:
    categories: frozenset[str]
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

    category: str
    opened_by: str
    opened_at: datetime
    hold_type: str | None = None
    rule: str = ""  # drift rule of a drift episode
    data: dict[str, Any] = field(default_factory=dict)
    events: list[Stamp] = field(default_factory=list)
    outcome: Outcome | None = None
    reason_code: ReasonCode | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    root_cause: str | None = None
    reopened: list[Stamp] = field(default_factory=list)  # the events that reopened it

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    @property
    def event_ids(self) -> list[str]:
        return [event_id for event_id, _, _ in self.events]

    @classmethod
    def of_case(cls, case: Case) -> Episode:
        """A stored case as the fold left it: a closed case is a closed episode (an event may
        contradict its outcome), except one a person decided, which the fold sees open."""
        episode = cls(
            case.category, case.opened_by, case.opened_at, case.hold_type, case.rule, case.data
        )
        episode.events = [(event_id, "", case.opened_at) for event_id in case.event_ids]
        if not case.is_open and not case.decided_by_person:
            episode.outcome, episode.reason_code = case.outcome, case.reason_code
            episode.closed_at, episode.root_cause = case.closed_at, case.root_cause
        return episode

    def close(self, closure: Closure, event: CanonicalEvent) -> None:
        self.outcome, self.reason_code = closure.outcome, closure.reason_code
        self.closed_at, self.closed_by = event.occurred_at, event.id

    def reopen(self, stamp: Stamp) -> None:
        """An event contradicted the outcome: the episode is open again and takes the event."""
        self.outcome, self.reason_code, self.root_cause = None, None, None
        self.closed_at, self.closed_by = None, None
        self.reopened.append(stamp)
        self.events.append(stamp)


def opening_category(event: CanonicalEvent) -> Category | None:
    if event.type is EventType.HOLD_PLACED:
        return HOLD_CATEGORY[str(event.data["hold_type"])]
    if event.type is EventType.TICKET_CREATED:
        return _TICKET_TOPICS.get(str(event.data.get("topic") or "").strip().lower())
    return _OPENS.get(event.type)


_CONFIRMS: dict[EventType, Closure] = {
    EventType.PAYMENT_AUTHORIZED: Closure(frozenset({Category.PAYMENT_FAILED}), Outcome.RELEASED),
    EventType.PAYMENT_CAPTURED: Closure(frozenset({Category.PAYMENT_FAILED}), Outcome.RELEASED),
    EventType.FULFILLMENT_SHIPPED: Closure(_SHIPPING_CLOSES, Outcome.SHIPPED),
    EventType.FULFILLMENT_DELIVERED: Closure(
        _SHIPPING_CLOSES | {Category.DELIVERY_EXCEPTION}, Outcome.DELIVERED
    ),
    EventType.RETURN_RECEIVED: Closure(frozenset({Category.DELIVERY_EXCEPTION}), Outcome.RETURNED),
    EventType.PAYMENT_REFUNDED: Closure(
        frozenset({Category.REFUND_REQUEST, Category.CONCESSION_REQUEST}), Outcome.REFUNDED
    ),
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
    if event.type is EventType.STOPSHIP_FINISHED:
        return _stopship_closures(event)
    return []


_CANCEL_REQUESTS = frozenset({Category.CHANGE_REQUEST})
_STOPSHIP_OUTCOMES = {
    "stopped": Outcome.CANCELLED,
    "cancelled_fraud": Outcome.CANCELLED,
    "converted_to_return": Outcome.CONVERTED_TO_RETURN,
    "not_stopped_shipped": Outcome.DENIED,
}


def _stopship_closures(event: CanonicalEvent) -> list[Closure]:
    """A finished stop-ship workflow closes the cancel request's case; a whole-order cancel
    closes every pre-fulfilment case, as ``order.cancelled`` does."""
    outcome = _STOPSHIP_OUTCOMES.get(str(event.data.get("outcome")))
    if outcome is None:
        return []
    reason = ReasonCode.parse(event.data.get("reason_code"))
    whole = outcome is Outcome.CANCELLED and not event.data.get("lines")
    return [Closure(PRE_FULFILMENT if whole else _CANCEL_REQUESTS, outcome, reason)]


def _already_settled(order: OrderView, category: str) -> Closure | None:
    """A pre-fulfilment exception raised on an order that already shipped or was cancelled."""
    if category not in PRE_FULFILMENT:
        return None
    if order.cancelled:
        return Closure(PRE_FULFILMENT, Outcome.CANCELLED, ReasonCode.parse(order.cancel_reason))
    if order.shipped and category in _SHIPPING_CLOSES:
        return Closure(_SHIPPING_CLOSES, Outcome.SHIPPED)
    return None


class CaseRules(Protocol):
    """A merchant's own openers and closers (from its configuration). Both must depend only on
    the event and the order as folded so far, so the fold stays independent of arrival order."""

    def opens(self, event: CanonicalEvent, order: OrderView) -> list[tuple[str, str]]:
        """(category, rule name) of each case the event opens."""
        ...

    def closes(self, event: CanonicalEvent) -> list[Closure]: ...

    @property
    def root_causes(self) -> Sequence[RootCause]:
        """The merchant's root-cause list, in matching order."""
        ...


def step(
    order: OrderView,
    episodes: list[Episode],
    event: CanonicalEvent,
    rules: CaseRules | None = None,
) -> None:
    """Fold one event into the order and its episodes (mutates both)."""
    _fold_event(order, episodes, event, rules)
    causes = rules.root_causes if rules is not None else DEFAULT_ROOT_CAUSES
    for episode in episodes:
        if episode.closed_by == event.id:
            found = root_cause_for(
                causes,
                category=episode.category,
                reason_code=episode.reason_code.value if episode.reason_code else None,
                outcome=episode.outcome.value if episode.outcome else None,
            )
            episode.root_cause = found.code if found else None


def _fold_event(
    order: OrderView, episodes: list[Episode], event: CanonicalEvent, rules: CaseRules | None
) -> None:
    stamp = (event.id, event.type.value, event.occurred_at)
    for closure in closures(event) + (rules.closes(event) if rules else []):
        for episode in episodes:
            if closure.confirms(episode):
                episode.events.append(stamp)
                episode.close(closure, event)
    standing = drift.standing(order)
    order.apply(event)
    _open_or_join(order, episodes, event, stamp)
    if rules is not None:
        _open_merchant_cases(rules.opens(event, order), episodes, event, stamp)
    _settle_drift(order, episodes, event, stamp)
    _detect_drift(order, episodes, event, stamp, standing)


def _open_or_join(
    order: OrderView, episodes: list[Episode], event: CanonicalEvent, stamp: Stamp
) -> None:
    """Open a case of the event's category (or reopen the one whose outcome it contradicts), or
    join the open one; every other open case of the order takes the event too. Open cases are
    keyed by category and rule: several drift rules can be open on one order, every other
    category has one open case at a time."""
    category = opening_category(event)
    current = {(ep.category, ep.rule): ep for ep in episodes if ep.is_open}
    if category is not None and (category, "") not in current:
        settled = _already_settled(order, category)
        contradicted = _contradicted(episodes, event, category) if settled is None else None
        if contradicted is not None:
            contradicted.reopen(stamp)
            return
        hold = event.data.get("hold_type")
        episode = Episode(
            category, event.id, event.occurred_at, str(hold) if hold else None, data=_facts(event)
        )
        episode.events.append(stamp)
        episodes.append(episode)
        if settled is not None:
            episode.close(settled, event)
        return
    for episode in current.values():
        if stamp not in episode.events:
            episode.events.append(stamp)


# The outcome an opening event undoes (the rule book is in the module's docstring).
_CONTRADICTS: dict[EventType, Outcome] = {
    EventType.HOLD_PLACED: Outcome.RELEASED,
    EventType.DELIVERY_EXCEPTION: Outcome.DELIVERED,
}


def _contradicted(episodes: list[Episode], event: CanonicalEvent, category: str) -> Episode | None:
    """The closed case an opening event reopens: the latest of its category (by close time,
    then opening), when the event undoes the outcome it closed on. A stored case closed without
    an outcome (none of the fold's) is no part of this."""
    undone = _CONTRADICTS.get(event.type)
    same = [
        ep
        for ep in episodes
        if ep.category == category and not ep.rule and ep.outcome is not None and not ep.is_open
    ]
    if undone is None or not same:
        return None
    latest = max(same, key=lambda ep: (ep.closed_at or ep.opened_at, ep.opened_at, ep.opened_by))
    return latest if latest.outcome is undone else None


def _open_merchant_cases(
    opened: list[tuple[str, str]], episodes: list[Episode], event: CanonicalEvent, stamp: Stamp
) -> None:
    """Cases of the merchant's own categories, opened by its configured openers."""
    current = {ep.category for ep in episodes if ep.is_open and not ep.rule}
    for category, opener in opened:
        if category in current:
            continue
        data = {**_facts(event), "opener": opener}
        episode = Episode(category, event.id, event.occurred_at, data=data)
        episode.events.append(stamp)
        episodes.append(episode)
        current.add(category)


_DRIFT_CLOSURES = frozenset({Category.DRIFT})


def _settle_drift(
    order: OrderView, episodes: list[Episode], event: CanonicalEvent, stamp: Stamp
) -> None:
    """Close the open drift cases whose contradiction the event resolved."""
    for episode in episodes:
        if not episode.is_open or episode.category is not Category.DRIFT:
            continue
        resolved = drift.resolution(order, event, episode.rule, episode.data)
        if resolved is not None:
            if stamp not in episode.events:
                episode.events.append(stamp)
            episode.close(Closure(_DRIFT_CLOSURES, *resolved), event)


def _detect_drift(
    order: OrderView,
    episodes: list[Episode],
    event: CanonicalEvent,
    stamp: Stamp,
    standing: frozenset[drift.DriftRule],
) -> None:
    """Open a drift case for each rule the event made start to hold (one open case per rule)."""
    for finding in drift.findings(order, standing):
        _open_drift(episodes, event, stamp, finding)
    raised = drift.raised(order, event)
    if raised is None:
        return
    finding, settled = raised
    episode = _open_drift(episodes, event, stamp, finding)
    if settled is not None and episode.opened_by == event.id:
        episode.close(Closure(_DRIFT_CLOSURES, *settled), event)


def _open_drift(
    episodes: list[Episode], event: CanonicalEvent, stamp: Stamp, finding: drift.Finding
) -> Episode:
    rule = finding.rule.value
    current = [ep for ep in episodes if ep.is_open and ep.category is Category.DRIFT]
    joined = next((ep for ep in current if ep.rule == rule), None)
    if joined is not None:
        if stamp not in joined.events:
            joined.events.append(stamp)
        return joined
    data = finding.as_data()
    episode = Episode(Category.DRIFT, event.id, event.occurred_at, rule=rule, data=data)
    episode.events.append(stamp)
    episodes.append(episode)
    return episode


_CASE_FACTS = (
    *("due_by", "amount", "reason", "kind", "sku", "available", "change", "requested_by"),
    *("topic", "substitute"),  # a ticket's topic, the substitute a warehouse names for a sku
)


def _facts(event: CanonicalEvent) -> dict[str, Any]:
    """The opening event's facts a case keeps (a dispute's due date, a short SKU ...); a missed
    ship-by names the drift rule it stands for (its case keeps its own category)."""
    facts = {key: str(event.data[key]) for key in _CASE_FACTS if event.data.get(key) is not None}
    if event.type is EventType.SHIP_BY_MISSED:
        facts["rule"] = drift.UNFULFILLED_PAST_CUTOFF
    return facts


def fold(
    ref: str, events: Iterable[CanonicalEvent], rules: CaseRules | None = None
) -> tuple[OrderView, list[Episode]]:
    """The order 360 and its episodes from the whole history, whatever the arrival order."""
    order = OrderView(ref=ref)
    episodes: list[Episode] = []
    for event in sorted(events, key=lambda e: e.sort_key):
        step(order, episodes, event, rules)
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
        _sync_case(case, episode, at)
    _withdraw_drift(unclaimed, episodes, at)
    return created


def _sync_case(case: Case, episode: Episode, at: datetime) -> None:
    case.hold_type = episode.hold_type
    _reopen_contradicted(case, episode, at)
    for event_id, event_type, occurred_at in episode.events:
        case.attach(event_id, event_type, occurred_at, at)
    case.detach_all_but(episode.event_ids, at)
    if episode.category is Category.DRIFT:
        _refresh_evidence(case, episode, at)
    if episode.closed_at is not None and episode.outcome is not None:
        case.confirm_outcome(
            episode.outcome,
            reason_code=episode.reason_code,
            confirmed_at=episode.closed_at,
            event_id=episode.closed_by or episode.opened_by,
            at=at,
            root_cause=episode.root_cause,
        )


def _reopen_contradicted(case: Case, episode: Episode, at: datetime) -> None:
    """The fold reopened the episode of a closed case: an event the case has not taken yet
    contradicted its outcome. Back to work: in progress once touched, else to its queue."""
    fresh = [stamp for stamp in episode.reopened if stamp[0] not in case.event_ids]
    if not fresh or case.is_open:
        return
    event_id, event_type, _ = fresh[0]
    outcome = case.outcome.value if case.outcome else "its outcome"
    case.reopen(
        at=at,
        actor=SOURCE,
        reason=f"{event_type} ({event_id}) contradicts {outcome}",
        to=CaseStatus.IN_PROGRESS if case.first_touched_at is not None else CaseStatus.TRIAGED,
        event_id=event_id,
    )


def _refresh_evidence(case: Case, episode: Episode, at: datetime) -> None:
    """A late event can change which events a drift rule names (an earlier shipment ...)."""
    changed = {k: v for k, v in episode.data.items() if case.data.get(k) != v}
    if changed:
        case.data = {**case.data, **changed}
        case.record(at, "drift_evidence", SOURCE, {"data": changed})


def _withdraw_drift(unclaimed: list[Case], episodes: list[Episode], at: datetime) -> None:
    """An open drift case that the refolded history no longer finds: a late event showed the
    contradiction never stood (a return scanned before the refund ...). Cases are kept for the
    audit trail, so it is closed, not removed."""
    times = [occurred_at for episode in episodes for _, _, occurred_at in episode.events]
    for case in unclaimed:
        if case.category is not Category.DRIFT or not case.rule or not case.is_open:
            continue
        case.record(at, "drift_withdrawn", SOURCE, {"rule": case.rule})
        case.confirm_outcome(
            drift.WITHDRAWN,
            reason_code=None,
            confirmed_at=max([case.opened_at, *times]),
            event_id=case.opened_by,
            at=at,
            root_cause=DRIFT_WITHDRAWN,
        )


def _claim(episode: Episode, unclaimed: list[Case]) -> Case | None:
    ids = set(episode.event_ids)
    for match in (lambda c: c.opened_by == episode.opened_by, lambda c: c.opened_by in ids):
        for case in unclaimed:
            if (case.category, case.rule) == (episode.category, episode.rule) and match(case):
                unclaimed.remove(case)
                return case
    return None
