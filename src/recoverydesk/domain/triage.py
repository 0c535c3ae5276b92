"""Triage results and how they land on a case: classification, priority, queue, ordering facts.

The rules that decide them live in the merchant's configuration (``services.policy``); this
module holds what the desk does with a decision: a first triage moves the case to ``triaged``, a
priority only ever rises (each rise on the timeline with the rule that raised it), and the facts
that order a queue (operational deadline, revenue at risk) follow the order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from recoverydesk.domain.cases import Case, CaseStatus, Category

SYSTEM = "triage"


class Classification(StrEnum):
    FIXABLE_NOW = "fixable_now"
    NEEDS_CUSTOMER_DECISION = "needs_customer_decision"
    MUST_CANCEL = "must_cancel"


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"

    @property
    def rank(self) -> int:
        return int(self.value[1])


# How likely an open case of each category ends in a lost order (revenue at risk = value x this).
LOSS_LIKELIHOOD: dict[str, Decimal] = {
    Category.PAYMENT_FAILED: Decimal("0.40"),
    Category.FRAUD_HOLD: Decimal("0.50"),
    Category.ADDRESS_INVALID: Decimal("0.20"),
    Category.INVENTORY_MISMATCH: Decimal("0.45"),
    Category.SPLIT_SHIPMENT: Decimal("0.25"),
    Category.LATE_SHIPMENT_RISK: Decimal("0.30"),
    Category.CHANGE_REQUEST: Decimal("0.60"),
    Category.WMS_EXCEPTION: Decimal("0.25"),
    Category.DELIVERY_EXCEPTION: Decimal("0.35"),
    Category.REFUND_REQUEST: Decimal("0.80"),
    Category.CONCESSION_REQUEST: Decimal("0.50"),
    Category.CHARGEBACK: Decimal("0.70"),
    Category.DRIFT: Decimal("0.50"),
}


@dataclass(frozen=True, slots=True)
class Decision:
    """What the merchant's rules decided for a case, and which rule decided each part."""

    classification: Classification
    priority: Priority
    queue: str
    rules: dict[str, str] = field(default_factory=dict)  # part -> rule name
    deadline: datetime | None = None
    revenue_at_risk: Decimal | None = None


def apply_decision(case: Case, decision: Decision, *, at: datetime, version: int | None) -> None:
    """Put a decision on a case: the first one triages it, later ones may only raise priority."""
    if case.priority is None:
        _first_triage(case, decision, at=at, version=version)
    else:
        _retriage(case, decision, at=at, version=version)
    if (case.deadline, case.revenue_at_risk) != (decision.deadline, decision.revenue_at_risk):
        case.deadline, case.revenue_at_risk = decision.deadline, decision.revenue_at_risk
        case.dirty = True


def _first_triage(case: Case, decision: Decision, *, at: datetime, version: int | None) -> None:
    case.classification = decision.classification.value
    case.priority = decision.priority.value
    case.queue = decision.queue
    case.config_version = version
    case.record(
        at,
        "triaged",
        SYSTEM,
        {
            "classification": decision.classification.value,
            "priority": decision.priority.value,
            "queue": decision.queue,
            "rules": dict(decision.rules),
            "config_version": version,
        },
    )
    if case.status is CaseStatus.NEW:
        case.move_to(CaseStatus.TRIAGED, at=at, actor=SYSTEM)


def _retriage(case: Case, decision: Decision, *, at: datetime, version: int | None) -> None:
    current = Priority(case.priority or Priority.P3)
    if decision.priority.rank < current.rank:
        case.priority = decision.priority.value
        case.record(
            at,
            "priority_raised",
            SYSTEM,
            {
                "from": current.value,
                "to": decision.priority.value,
                "rule": decision.rules.get("priority"),
                "config_version": version,
            },
        )
    if decision.classification.value != case.classification:
        case.record(
            at,
            "reclassified",
            SYSTEM,
            {
                "from": case.classification,
                "to": decision.classification.value,
                "rule": decision.rules.get("classification"),
                "config_version": version,
            },
        )
        case.classification = decision.classification.value


def revenue_at_risk(
    value: Decimal | None, category: str, likelihood: dict[str, Decimal]
) -> Decimal:
    if value is None:
        return Decimal("0.00")
    share = likelihood.get(category, Decimal("0.50"))
    return (value * share).quantize(Decimal("0.01"))
