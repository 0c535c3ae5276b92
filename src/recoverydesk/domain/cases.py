"""The case aggregate: one exception on one order, driven to a verified outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from recoverydesk.domain.errors import Conflict, InvalidTransition
from recoverydesk.domain.sla import ClockName, SlaClock


def category_of(code: str) -> str:
    """A stored category code: the built-in ``Category`` when it is one, else the code itself."""
    try:
        return Category(code)
    except ValueError:
        return code


class Category(StrEnum):
    PAYMENT_FAILED = "payment_failed"
    FRAUD_HOLD = "fraud_hold"
    ADDRESS_INVALID = "address_invalid"
    INVENTORY_MISMATCH = "inventory_mismatch"
    SPLIT_SHIPMENT = "split_shipment"
    LATE_SHIPMENT_RISK = "late_shipment_risk"
    CHANGE_REQUEST = "change_request"
    WMS_EXCEPTION = "wms_exception"
    DELIVERY_EXCEPTION = "delivery_exception"
    REFUND_REQUEST = "refund_request"
    CONCESSION_REQUEST = "concession_request"
    CHARGEBACK = "chargeback"
    DRIFT = "drift"


PRE_FULFILMENT = frozenset(
    {
        Category.PAYMENT_FAILED,
        Category.FRAUD_HOLD,
        Category.ADDRESS_INVALID,
        Category.INVENTORY_MISMATCH,
        Category.SPLIT_SHIPMENT,
        Category.LATE_SHIPMENT_RISK,
        Category.CHANGE_REQUEST,
        Category.WMS_EXCEPTION,
    }
)


class Outcome(StrEnum):
    RELEASED = "released"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"
    SUBSTITUTED = "substituted"
    SPLIT = "split"
    REROUTED = "rerouted"
    RESHIPPED = "reshipped"
    RETURNED = "returned"
    CONCESSION = "concession"
    DENIED = "denied"
    CONVERTED_TO_RETURN = "converted_to_return"


SAVED_OUTCOMES = frozenset(
    {
        Outcome.RELEASED,
        Outcome.SHIPPED,
        Outcome.DELIVERED,
        Outcome.SUBSTITUTED,
        Outcome.SPLIT,
        Outcome.REROUTED,
        Outcome.RESHIPPED,
    }
)


class ReasonCode(StrEnum):
    STOCKOUT = "stockout"
    FRAUD = "fraud"
    ADDRESS = "address"
    LEAD_TIME = "lead_time"
    CUSTOMER_REQUEST = "customer_request"
    DUPLICATE_ORDER = "duplicate_order"
    PAYMENT_TIMEOUT = "payment_timeout"
    PAYMENT_DECLINED = "payment_declined"
    PRICE_ERROR = "price_error"
    CARRIER_RESTRICTION = "carrier_restriction"
    OTHER = "other"

    @classmethod
    def parse(cls, text: object) -> ReasonCode:
        try:
            return cls(str(text))
        except ValueError:
            return cls.OTHER


class CaseStatus(StrEnum):
    NEW = "new"
    TRIAGED = "triaged"
    IN_PROGRESS = "in_progress"
    WAITING_CUSTOMER = "waiting_customer"
    WAITING_PARTNER = "waiting_partner"
    RESOLVED = "resolved"
    CLOSED = "closed"

    @property
    def is_open(self) -> bool:
        return self not in (CaseStatus.RESOLVED, CaseStatus.CLOSED)


_WORKING = {CaseStatus.IN_PROGRESS, CaseStatus.WAITING_CUSTOMER, CaseStatus.WAITING_PARTNER}
TRANSITIONS: dict[CaseStatus, frozenset[CaseStatus]] = {
    CaseStatus.NEW: frozenset({CaseStatus.TRIAGED, CaseStatus.IN_PROGRESS, CaseStatus.RESOLVED}),
    CaseStatus.TRIAGED: frozenset({*_WORKING, CaseStatus.RESOLVED}),
    CaseStatus.IN_PROGRESS: frozenset({*_WORKING, CaseStatus.RESOLVED} - {CaseStatus.IN_PROGRESS}),
    CaseStatus.WAITING_CUSTOMER: frozenset({CaseStatus.IN_PROGRESS, CaseStatus.RESOLVED}),
    CaseStatus.WAITING_PARTNER: frozenset({CaseStatus.IN_PROGRESS, CaseStatus.RESOLVED}),
    # A reopened case goes back to work: in progress once touched, else to its queue (triaged).
    CaseStatus.RESOLVED: frozenset({CaseStatus.CLOSED, CaseStatus.IN_PROGRESS, CaseStatus.TRIAGED}),
    CaseStatus.CLOSED: frozenset({CaseStatus.IN_PROGRESS, CaseStatus.TRIAGED}),
}

# Outcomes no source system reports: only a person can decide them, and close an open case so.
PERSON_OUTCOMES = frozenset({Outcome.DENIED, Outcome.CONCESSION})


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime
    kind: str
    actor: str
    detail: dict[str, Any]
    event_id: str | None = None


SOURCE = "source"  # the actor for changes the source systems confirmed
# ``Case.data`` key: the person who decided the outcome of a case no source system closed.
DECIDED_BY = "decided_by"
ROOT_CAUSE_NEEDED = "root cause needed"
_FIRST_RESPONSE = frozenset({ClockName.FIRST_TOUCH.value, ClockName.MARKETPLACE_REPLY.value})


@dataclass(slots=True)
class Case:
    """A case. ``id`` is None until stored; ``pending`` holds timeline rows not yet written."""

    order_ref: str
    category: str  # a built-in ``Category`` or a code from the merchant's taxonomy
    opened_at: datetime
    opened_by: str
    id: int | None = None
    status: CaseStatus = CaseStatus.NEW
    hold_type: str | None = None
    classification: str | None = None
    priority: str | None = None
    queue: str | None = None
    outcome: Outcome | None = None
    reason_code: ReasonCode | None = None
    root_cause: str | None = None
    closed_at: datetime | None = None
    event_ids: list[str] = field(default_factory=list)
    rule: str = ""  # the drift rule of a drift case; one open case per order, category and rule
    data: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None
    config_version: int | None = None
    deadline: datetime | None = None  # the operational deadline: ship cutoff, promised delivery
    revenue_at_risk: Decimal | None = None
    first_touched_at: datetime | None = None
    clocks: dict[str, SlaClock] = field(default_factory=dict)
    escalations: list[dict[str, Any]] = field(default_factory=list)
    pending: list[TimelineEntry] = field(default_factory=list)
    dirty: bool = False

    @classmethod
    def open(
        cls,
        *,
        order_ref: str,
        category: str,
        opened_at: datetime,
        opened_by: str,
        hold_type: str | None,
        recorded_at: datetime,
        rule: str = "",
        data: dict[str, Any] | None = None,
    ) -> Case:
        case = cls(
            order_ref=order_ref,
            category=category,
            opened_at=opened_at,
            opened_by=opened_by,
            hold_type=hold_type,
            event_ids=[opened_by],
            rule=rule,
            data=dict(data or {}),
        )
        detail: dict[str, Any] = {"category": str(category), "occurred_at": opened_at.isoformat()}
        if rule:
            detail["rule"] = rule
        case.record(recorded_at, "opened", SOURCE, detail, event_id=opened_by)
        return case

    @property
    def is_open(self) -> bool:
        return self.status.is_open

    def record(
        self,
        at: datetime,
        kind: str,
        actor: str,
        detail: dict[str, Any],
        event_id: str | None = None,
    ) -> None:
        self.pending.append(TimelineEntry(at, kind, actor, detail, event_id))
        self.dirty = True

    def move_to(self, status: CaseStatus, *, at: datetime, actor: str, note: str = "") -> None:
        if status not in TRANSITIONS[self.status]:
            raise InvalidTransition(
                f"case {self.id} cannot go from {self.status.value} to {status.value}"
            )
        detail = {"from": self.status.value, "to": status.value}
        if note:
            detail["note"] = note
        self.status = status
        self.record(at, "status_changed", actor, detail)

    def attach(self, event_id: str, event_type: str, occurred_at: datetime, at: datetime) -> None:
        if event_id in self.event_ids:
            return
        self.event_ids.append(event_id)
        self.record(
            at,
            "event",
            SOURCE,
            {"type": event_type, "occurred_at": occurred_at.isoformat()},
            event_id=event_id,
        )

    def detach_all_but(self, event_ids: list[str], at: datetime) -> None:
        """Events a late arrival moved to another case leave this one (on the timeline too)."""
        keep = set(event_ids)
        for event_id in [e for e in self.event_ids if e not in keep]:
            self.event_ids.remove(event_id)
            self.record(
                at,
                "event_moved",
                SOURCE,
                {"reason": "a late event split the case"},
                event_id=event_id,
            )

    def confirm_outcome(
        self,
        outcome: Outcome,
        *,
        reason_code: ReasonCode | None,
        confirmed_at: datetime,
        event_id: str,
        at: datetime,
        root_cause: str | None,
    ) -> None:
        """The source system confirmed an outcome: resolve the case and close it with its root
        cause (``domain.root_causes``: the first match of the merchant's list). Without one it
        stays resolved, "root cause needed" on its timeline, until a person closes it. A case
        that had a root cause keeps it (a person may have set it)."""
        if not self.is_open and (self.outcome, self.closed_at) == (outcome, confirmed_at):
            return
        if self.is_open:
            self.move_to(CaseStatus.RESOLVED, at=at, actor=SOURCE)
        self.outcome, self.reason_code, self.closed_at = outcome, reason_code, confirmed_at
        self.root_cause = self.root_cause or root_cause
        self.record(
            at,
            "outcome",
            SOURCE,
            {
                "outcome": outcome.value,
                "reason_code": reason_code.value if reason_code else None,
                "confirmed_at": confirmed_at.isoformat(),
                "root_cause": self.root_cause,
            },
            event_id=event_id,
        )
        if self.status is not CaseStatus.RESOLVED:
            return
        if self.root_cause is not None:
            self.move_to(CaseStatus.CLOSED, at=at, actor=SOURCE)
            return
        detail = {
            "text": ROOT_CAUSE_NEEDED,
            "category": str(self.category),
            "reason_code": reason_code.value if reason_code else None,
        }
        self.record(at, "root_cause_needed", SOURCE, detail)

    def close(self, outcome: Outcome, *, root_cause: str, at: datetime, actor: str) -> None:
        """A person closes the case with its root cause. A case closes on an outcome the source
        systems confirmed (F15): a resolved case closes on that outcome; an open case only on
        an outcome no source system reports (``PERSON_OUTCOMES``: denied, concession)."""
        if self.status is CaseStatus.CLOSED:
            raise InvalidTransition(
                f"case {self.id} is already closed (set_root_cause corrects its root cause)"
            )
        if self.status is CaseStatus.RESOLVED and outcome is not self.outcome:
            confirmed = self.outcome.value if self.outcome else "nothing"
            raise Conflict(
                f"case {self.id}: the source systems confirmed {confirmed}, not {outcome.value}",
                code="outcome_not_verified",
            )
        if self.is_open:
            self._decide(outcome, at=at, actor=actor)
        self.record(at, "root_cause", actor, {"from": self.root_cause, "to": root_cause})
        self.root_cause = root_cause
        self.move_to(CaseStatus.CLOSED, at=at, actor=actor)

    def _decide(self, outcome: Outcome, *, at: datetime, actor: str) -> None:
        if outcome not in PERSON_OUTCOMES:
            raise Conflict(
                f"case {self.id} is {self.status.value}: it closes when the source systems "
                f"confirm its outcome; a person closes an open case only as "
                f"{' or '.join(sorted(o.value for o in PERSON_OUTCOMES))}",
                code="outcome_not_verified",
            )
        self.touch(at=at, actor=actor)
        self.move_to(CaseStatus.RESOLVED, at=at, actor=actor)
        self.outcome, self.reason_code, self.closed_at = outcome, None, at
        self.data = {**self.data, DECIDED_BY: actor}
        self.record(at, "outcome", actor, {"outcome": outcome.value, "decided_by": actor})

    @property
    def decided_by_person(self) -> bool:
        """Closed on an outcome a person decided: no source event closes it in the fold."""
        return not self.is_open and bool(self.data.get(DECIDED_BY))

    def set_root_cause(self, root_cause: str, *, at: datetime, actor: str) -> None:
        """A person corrects the root cause of a closed case."""
        if self.status is not CaseStatus.CLOSED:
            raise InvalidTransition(
                f"case {self.id} is {self.status.value}: only a closed case's root cause is "
                "corrected (close a resolved case with its root cause)"
            )
        if root_cause == self.root_cause:
            return
        self.record(at, "root_cause", actor, {"from": self.root_cause, "to": root_cause})
        self.root_cause = root_cause

    def touch(self, *, at: datetime, actor: str) -> None:
        """The first human (or playbook) action on the case stops its first-touch clock."""
        if self.first_touched_at is None:
            self.first_touched_at = at
            self.record(at, "first_touch", actor, {})
        if self.status in (CaseStatus.NEW, CaseStatus.TRIAGED):
            self.move_to(CaseStatus.IN_PROGRESS, at=at, actor=actor)

    def assign(self, owner: str | None, *, at: datetime, actor: str, reason: str) -> None:
        if owner == self.owner:
            return
        self.record(at, "assigned", actor, {"from": self.owner, "to": owner, "reason": reason})
        self.owner = owner

    def reopen(
        self,
        *,
        at: datetime,
        actor: str,
        reason: str,
        to: CaseStatus = CaseStatus.IN_PROGRESS,
        event_id: str | None = None,
    ) -> None:
        """Back to work: the outcome, its root cause and the stopped clocks are forgotten (the
        timeline keeps them; the clocks start again with the case's next triage), except the
        first-response clocks of a case someone already touched."""
        if self.is_open:
            raise InvalidTransition(f"case {self.id} is already open")
        detail = {
            "reason": reason,
            "outcome": self.outcome.value if self.outcome else None,
            "root_cause": self.root_cause,
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
        }
        self.record(at, "reopened", actor, detail, event_id=event_id)
        self.move_to(to, at=at, actor=actor, note=reason)
        self.outcome, self.reason_code, self.closed_at = None, None, None
        self.root_cause = None
        answered = _FIRST_RESPONSE if self.first_touched_at is not None else frozenset()
        self.clocks = {
            name: clock
            for name, clock in self.clocks.items()
            if clock.stopped_at is None or name in answered
        }
        self.data = {k: v for k, v in self.data.items() if k != DECIDED_BY}

    def rekey(self, opened_by: str, opened_at: datetime, at: datetime) -> None:
        """An earlier event that belongs to this case arrived late: it now opens the case."""
        self.record(
            at,
            "reopened_earlier",
            SOURCE,
            {
                "opened_by": opened_by,
                "previous_opened_by": self.opened_by,
                "opened_at": opened_at.isoformat(),
                "previous_opened_at": self.opened_at.isoformat(),
            },
            event_id=opened_by,
        )
        self.opened_by, self.opened_at = opened_by, opened_at
        if opened_by not in self.event_ids:
            self.event_ids.insert(0, opened_by)
