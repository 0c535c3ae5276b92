"""Triage: run a merchant's rules on a case, route it, assign it and keep its SLA clocks.

Rules are CEL programs compiled once per merchant configuration version. ``decide`` gives the
classification (first matching rule), the priority (the highest priority among matching rules:
"any one is enough") and the queue; ``keep_clocks`` starts, pauses, resumes and stops the case's
clocks; ``stage_timers`` asks for a timer at every stage a running clock has not reached yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import cel
import structlog

from recoverydesk.domain.calendar import BusinessCalendar
from recoverydesk.domain.casebook import Closure
from recoverydesk.domain.cases import Case, CaseStatus
from recoverydesk.domain.events import CanonicalEvent, EventType
from recoverydesk.domain.orders import FulfillmentStatus, OrderView
from recoverydesk.domain.sla import ClockName, SlaClock, Stage
from recoverydesk.domain.triage import (
    Classification,
    Decision,
    Priority,
    apply_decision,
    revenue_at_risk,
)
from recoverydesk.services.calendars import build_calendar
from recoverydesk.services.policy import Deadline, Member, Policy, Queue, Rule
from recoverydesk.services.ports import JobRequest, Merchant, UnitOfWork

log = structlog.get_logger("recoverydesk.triage")

SLA_CHECK = "sla.check"
NO_DEADLINE_HOURS = 1e9


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: Rule
    program: Any

    def matches(self, context: Any) -> bool:
        """Whether the rule holds in ``context`` (a ``cel_context``; a plain mapping works too)."""
        try:
            return self.program.execute(context) is True
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            log.warning("rule failed to evaluate", rule=self.rule.name, error=str(error))
            return False


def cel_context(values: Mapping[str, Any]) -> Any:
    """The variables converted to CEL once, so every rule of one decision reuses them (the
    conversion costs far more than evaluating a rule)."""
    context = cel.Context()
    for name, value in values.items():
        context.add_variable(name, value)
    return context


def _compile(rules: tuple[Rule, ...]) -> list[CompiledRule]:
    return [CompiledRule(rule, cel.compile(rule.when)) for rule in rules]


class MerchantCaseRules:
    """The merchant's configured openers, closers and root-cause list, as the fold asks for
    them."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self.root_causes = tuple(cause.as_root_cause() for cause in policy.root_causes)
        self._openers = [
            CompiledRule(Rule(name=o.name, when=o.when, then=o.category), cel.compile(o.when))
            for o in policy.openers
        ]
        self._closers: dict[str, list[Closure]] = {}
        for opener in policy.openers:
            for event_type, outcome in opener.closed_by.items():
                closure = Closure(frozenset({opener.category}), outcome)
                self._closers.setdefault(event_type, []).append(closure)

    def opens(self, event: CanonicalEvent, order: OrderView) -> list[tuple[str, str]]:
        if not self._openers:
            return []
        blank = Case(order_ref=order.ref, category="", opened_at=event.occurred_at, opened_by="")
        context = cel_context(rule_context(blank, order, event, event.occurred_at, self._policy))
        return [(o.rule.then, o.rule.name) for o in self._openers if o.matches(context)]

    def closes(self, event: CanonicalEvent) -> list[Closure]:
        return list(self._closers.get(event.type.value, ()))


class Triage:
    """A merchant's compiled policy at one configuration version."""

    def __init__(self, policy: Policy, version: int | None) -> None:
        self.policy, self.version = policy, version
        self.calendar: BusinessCalendar = build_calendar(policy.calendar)
        self._priority = _compile(policy.rules.effective_priority())
        self._classification = _compile(policy.rules.effective_classification())
        self._routing = _compile(policy.rules.routing)
        self._likelihood = policy.taxonomy.loss_likelihood()
        self.case_rules = MerchantCaseRules(policy)

    def decide(
        self, case: Case, order: OrderView, event: CanonicalEvent | None, now: datetime
    ) -> Decision:
        context = cel_context(rule_context(case, order, event, now, self.policy))
        rules: dict[str, str] = {}
        priority = self.policy.rules.priority_default
        for compiled in self._priority:
            candidate = Priority(compiled.rule.then)
            if candidate.rank < priority.rank and compiled.matches(context):
                priority, rules["priority"] = candidate, compiled.rule.name
        classification = self.policy.rules.classification_default
        for compiled in self._classification:
            if compiled.matches(context):
                classification = Classification(compiled.rule.then)
                rules["classification"] = compiled.rule.name
                break
        queue = self._route(case, context, rules)
        return Decision(
            classification=classification,
            priority=priority,
            queue=queue,
            rules=rules,
            deadline=self.deadline(case, order, queue),
            revenue_at_risk=revenue_at_risk(order.value, str(case.category), self._likelihood),
        )

    def _route(self, case: Case, context: Any, rules: dict[str, str]) -> str:
        if case.queue is not None:
            return case.queue
        for compiled in self._routing:
            if compiled.matches(context):
                rules["queue"] = compiled.rule.name
                return compiled.rule.then
        return self.policy.queue_for(str(case.category))

    def deadline(self, case: Case, order: OrderView, queue: str) -> datetime | None:
        """The operational deadline: the one the queue's SLA names (less its margin), else the
        earliest of the ship cutoff (until shipped) and the promised delivery (until delivered)."""
        sla = self.policy.sla_for(queue)
        moment: datetime | None
        if sla.deadline is Deadline.DISPUTE_DUE:
            due = case.data.get("due_by")
            moment = _aware(due) if isinstance(due, str) else None
        elif sla.deadline is Deadline.PROMISED_BY:
            moment = order.promised_by
        elif sla.deadline is Deadline.SHIP_BY:
            moment = order.ship_by
        else:
            open_ends = [
                order.ship_by if not order.shipped else None,
                order.promised_by if order.fulfillment is not FulfillmentStatus.DELIVERED else None,
            ]
            moment = min((m for m in open_ends if m is not None), default=None)
        return moment - sla.deadline_margin if moment is not None else None

    def keep_clocks(self, case: Case, order: OrderView, now: datetime) -> bool:
        """Start, adjust, pause, resume or stop the case's clocks; True when any changed."""
        if not case.is_open:
            stop_at = max(case.closed_at or now, case.opened_at)
            return _any(clock.stop(stop_at, self.calendar) for clock in case.clocks.values())
        changed = self._start_missing(case, order, now)
        if case.first_touched_at is not None:
            for name in (ClockName.FIRST_TOUCH, ClockName.MARKETPLACE_REPLY):
                clock = case.clocks.get(name)
                changed |= bool(clock and clock.stop(case.first_touched_at, self.calendar))
        changed |= self._first_touch_target(case, now)
        changed |= self._follow_deadline(case, now)
        waiting = case.status is CaseStatus.WAITING_CUSTOMER
        for clock in case.clocks.values():
            moved = clock.pause(now, self.calendar) if waiting else clock.resume(now, self.calendar)
            changed |= moved
        return changed

    def _start_missing(self, case: Case, order: OrderView, now: datetime) -> bool:
        sla, priority = self.policy.sla_for(case.queue or ""), Priority(case.priority or "P3")
        wanted: dict[ClockName, tuple[timedelta, bool, bool]] = {
            ClockName.FIRST_TOUCH: (sla.first_touch.target(priority), True, True)
        }
        if sla.resolution_within is not None:
            wanted[ClockName.RESOLUTION] = (sla.resolution_within, True, True)
        if case.deadline is not None:
            wanted[ClockName.OPERATIONAL] = (case.deadline - now, False, False)
        if order.channel in self.policy.marketplace.channels:
            wanted[ClockName.MARKETPLACE_REPLY] = (
                self.policy.marketplace.reply_within,
                False,
                False,
            )
        started = False
        for name, (target, business, pausable) in wanted.items():
            if name.value not in case.clocks:
                case.clocks[name.value] = SlaClock.start(
                    name,
                    at=now,
                    target=target,
                    business=business,
                    pausable=pausable,
                    calendar=self.calendar,
                )
                started = True
        return started

    def _follow_deadline(self, case: Case, now: datetime) -> bool:
        """The operational clock runs to the order's current deadline: a moved ship cutoff or
        promised date moves it (stages already fired stay fired)."""
        clock = case.clocks.get(ClockName.OPERATIONAL)
        if clock is None or clock.stopped_at is not None or case.deadline is None:
            return False
        target = max(case.deadline - clock.started_at, timedelta(0))
        if target == clock.target:
            return False
        clock.target = target
        clock.due_at = clock.moment(Stage.BREACH, self.calendar)
        detail = {"clock": clock.name.value, "due_at": case.deadline.isoformat()}
        case.record(now, "clock_changed", "triage", detail)
        return True

    def _first_touch_target(self, case: Case, now: datetime) -> bool:
        """A raised priority shortens the running first-touch clock."""
        clock = case.clocks.get(ClockName.FIRST_TOUCH)
        if clock is None or clock.stopped_at is not None:
            return False
        sla = self.policy.sla_for(case.queue or "")
        target = sla.first_touch.target(Priority(case.priority or "P3"))
        if target >= clock.target:
            return False
        clock.target = target
        if clock.running_since is not None:
            clock.due_at = clock.moment(Stage.BREACH, self.calendar)
        case.record(
            now, "clock_changed", "triage", {"clock": clock.name.value, "target": str(target)}
        )
        return True

    def assign(self, case: Case, load: Mapping[str, int], last: str | None, now: datetime) -> None:
        """Give an unowned case to a member of its queue who is not away."""
        queue = self.policy.queue(case.queue or "")
        if queue is None or case.owner is not None or not queue.members:
            return
        owner = choose_member(queue, self.members(), load, last, now=now)
        if owner is not None:
            case.assign(owner, at=now, actor="triage", reason=queue.assignment.value)

    def members(self) -> dict[str, Member]:
        return {member.name: member for member in self.policy.members}


def choose_member(
    queue: Queue,
    members: Mapping[str, Member],
    load: Mapping[str, int],
    last: str | None,
    *,
    now: datetime,
    skip: str | None = None,
) -> str | None:
    """Round robin after ``last``, or the least-loaded member; away members are skipped."""
    present = [
        name
        for name in queue.members
        if name != skip and not any(a.start <= now < a.end for a in members[name].away)
    ]
    if not present or queue.assignment.value == "none":
        return None
    if queue.assignment.value == "load_balanced":
        return min(present, key=lambda name: (load.get(name, 0), queue.members.index(name)))
    order = list(queue.members)
    start = order.index(last) + 1 if last in order else 0
    for offset in range(len(order)):
        name = order[(start + offset) % len(order)]
        if name in present:
            return name
    return None


def stage_timers(merchant_id: int, case: Case, calendar: BusinessCalendar) -> list[JobRequest]:
    """One timer per clock stage still ahead; the key carries the moment, so a moved clock
    asks for a new timer and the old one finds nothing to do."""
    timers = []
    for clock in case.clocks.values():
        for stage in Stage:
            moment = clock.moment(stage, calendar)
            if moment is None or stage.value in clock.fired:
                continue
            timers.append(
                JobRequest(
                    merchant_id=merchant_id,
                    kind=SLA_CHECK,
                    key=f"sla:{case.id}:{clock.name.value}:{stage.value}:{moment.isoformat()}",
                    due_at=moment,
                    payload={"case_id": case.id, "clock": clock.name.value, "stage": stage.value},
                )
            )
    return timers


def rule_context(
    case: Case, order: OrderView, event: CanonicalEvent | None, now: datetime, policy: Policy
) -> dict[str, Any]:
    """What a rule's condition sees. Times are hours from ``now``; money is a number."""
    return {
        "case": {
            "category": str(case.category),
            "hold_type": case.hold_type or "",
            "rule": case.rule,
            "status": case.status.value,
            "age_hours": _hours(now - case.opened_at),
            "data": _plain(case.data),
            # the customer's latest decision answer (``services.playbooks``), else ""
            "choice": str(case.data.get("choice") or ""),
        },
        "order": _order_context(order, now),
        "event": {
            "type": event.type.value if event else "",
            "source": event.source.value if event else "",
            "data": _plain(dict(event.data)) if event else {},
        },
        "customer": {"tier": order.customer_tier or "standard"},
        "thresholds": {
            "high_value": float(policy.thresholds.high_value),
            "payment_recovery_hours": float(policy.thresholds.payment_recovery_hours),
        },
    }


def _order_context(order: OrderView, now: datetime) -> dict[str, Any]:
    return {
        "value": float(order.value or Decimal(0)),
        "currency": order.currency or "",
        "channel": order.channel or "",
        "fulfillment_type": order.fulfillment_type or "",
        "fulfillment": order.fulfillment.value,
        "payment": order.payment.status.value,
        "shipped": order.shipped,
        "delivered": order.fulfillment is FulfillmentStatus.DELIVERED,
        "cancelled": order.cancelled,
        "active_holds": order.active_holds,
        "has_ship_by": order.ship_by is not None,
        "hours_to_ship_by": _hours(order.ship_by - now) if order.ship_by else NO_DEADLINE_HOURS,
        "hours_to_promised": (
            _hours(order.promised_by - now) if order.promised_by else NO_DEADLINE_HOURS
        ),
    }


def _aware(text: str) -> datetime | None:
    """A date-time from event data; one without a zone is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _hours(span: timedelta) -> float:
    return span.total_seconds() / 3600


def _plain(value: Any) -> Any:
    """Event data as CEL values: Decimals become numbers, other odd types strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _any(results: Any) -> bool:
    return any(list(results))


_COMPILED: dict[int, tuple[object, Triage]] = {}
_DEFAULT: list[Triage] = []


def triage_for(uow: UnitOfWork, merchant: Merchant) -> Triage:
    """The merchant's policy at its current configuration version, compiled once per stored
    version (the store hands out the same settings object for a version; one process may serve
    several databases: tests, replays)."""
    from recoverydesk.services.merchants import settings_from_stored

    version = merchant.config_version or None
    stored = uow.merchants.config(merchant.id, version) if version else None
    if stored is None:
        if not _DEFAULT:
            _DEFAULT.append(Triage(settings_from_stored(None), None))
        return _DEFAULT[0]
    entry = _COMPILED.get(id(stored))
    if entry is None or entry[0] is not stored:
        if len(_COMPILED) > 256:
            _COMPILED.clear()
        entry = (stored, Triage(settings_from_stored(stored), version))
        _COMPILED[id(stored)] = entry
    return entry[1]


def run_triage(
    uow: UnitOfWork,
    merchant: Merchant,
    *,
    cases: list[Case],
    orders: Mapping[str, OrderView],
    events: Mapping[str, CanonicalEvent],
    now: datetime,
) -> list[Case]:
    """Triage, route, assign and keep the clocks of changed cases; returns those whose clocks
    moved (they need stage timers once they have ids)."""
    triage = triage_for(uow, merchant)
    assignment: dict[str, tuple[dict[str, int], str | None]] = {}
    clocked = []
    for case in cases:
        order = orders.get(case.order_ref) or OrderView(ref=case.order_ref)
        if case.is_open or case.priority is None:  # a case closed on arrival is triaged too
            _customer_answered(case, events, now)
            event = next((events[i] for i in reversed(case.event_ids) if i in events), None)
            decision = triage.decide(case, order, event, now)
            apply_decision(case, decision, at=now, version=triage.version)
        if case.is_open:
            _assign(uow, merchant, triage=triage, case=case, state=assignment, now=now)
        if triage.keep_clocks(case, order, now):
            case.dirty = True
            clocked.append(case)
    return clocked


def _customer_answered(case: Case, events: Mapping[str, CanonicalEvent], now: datetime) -> None:
    """A reply from the customer moves a case that waits on them back to work (clocks resume)."""
    if case.status is not CaseStatus.WAITING_CUSTOMER:
        return
    replied = [
        events[i]
        for i in case.event_ids
        if i in events and events[i].type is EventType.CUSTOMER_REPLIED
    ]
    if replied:
        case.move_to(
            CaseStatus.IN_PROGRESS, at=now, actor="customer", note=f"replied ({replied[-1].id})"
        )


def _assign(
    uow: UnitOfWork,
    merchant: Merchant,
    *,
    triage: Triage,
    case: Case,
    state: dict[str, tuple[dict[str, int], str | None]],
    now: datetime,
) -> None:
    if case.owner is not None or case.queue is None:
        return
    queue = triage.policy.queue(case.queue)
    if queue is None or not queue.members:
        return
    if case.queue not in state:
        state[case.queue] = uow.cases.assignment_state(merchant.id, case.queue)
    load, last = state[case.queue]
    triage.assign(case, load, last, now)
    if case.owner is not None:
        load[case.owner] = load.get(case.owner, 0) + 1
        state[case.queue] = (load, case.owner)
