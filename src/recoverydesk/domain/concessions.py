"""Concessions: what the desk gives a customer whose order went wrong (issue 6, F11).

A merchant's concession matrix is an ordered list of rules: the first rule whose problem kinds,
order value and customer tier fit says the remedy (reship, refund, partial refund, store credit,
deny, or escalate to a lead). Two limits stand above the rules:

- a monthly budget: a remedy that costs money (a refund or credit of its amount, a reship of
  ``order value x reship_cost_share``) and costs more than what is left of this month's budget
  is not given: it goes to a lead (``over_budget: escalate``, the default) or is denied;
- repeat concessions: a customer who already had ``max_per_customer`` concessions within
  ``repeat_window_days`` goes to a lead, whatever the rule says.

``per_order_cap`` caps one concession: a partial refund or a credit is cut to the cap, a full
refund or a reship that would cost more goes to a lead. Amounts are ``Decimal``, in cents.
Pure: time and the money already spent are passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from recoverydesk.domain.errors import InvalidConfig
from recoverydesk.domain.money import ZERO

CENT = Decimal("0.01")
ONE = Decimal("1")
OVER_BUDGET = "over budget"
REPEAT_CONCESSIONS = "repeat concessions"


class ProblemKind(StrEnum):
    """What went wrong with the order, as the concession rules name it."""

    LOST = "lost"
    DAMAGED = "damaged"
    LATE = "late"
    NOT_AS_DESCRIBED = "not_as_described"
    MISSING_ITEM = "missing_item"
    WRONG_ITEM = "wrong_item"
    OTHER = "other"


class Remedy(StrEnum):
    RESHIP = "reship"
    REFUND = "refund"
    PARTIAL_REFUND = "partial_refund"
    CREDIT = "credit"  # store credit of ``order value x share``
    DENY = "deny"
    ESCALATE = "escalate"  # a lead decides

    @property
    def costs_money(self) -> bool:
        return self not in (Remedy.DENY, Remedy.ESCALATE)


class OverBudget(StrEnum):
    """What a remedy that would overspend the month's budget becomes."""

    ESCALATE = "escalate"
    DENY = "deny"


# The delivery exception kinds of CONTRACT.md (``delivery.exception`` ``data.kind``), as problems.
DELIVERY_PROBLEMS: dict[str, ProblemKind] = {
    "lost": ProblemKind.LOST,
    "damaged": ProblemKind.DAMAGED,
    "delay": ProblemKind.LATE,
    "failed_attempt": ProblemKind.OTHER,
    "returned_to_sender": ProblemKind.OTHER,
}


def problem_of(text: object) -> ProblemKind:
    """A problem kind from a case's facts: a concession kind, a delivery exception kind, or
    ``other``."""
    value = str(text or "").strip().lower()
    if value in DELIVERY_PROBLEMS:
        return DELIVERY_PROBLEMS[value]
    try:
        return ProblemKind(value)
    except ValueError:
        return ProblemKind.OTHER


@dataclass(frozen=True, slots=True)
class ConcessionRule:
    """``when_kinds`` empty: any kind. ``max_value``: orders worth less than it only.
    ``tiers`` None: any customer tier. ``share``: of the order value, for a partial refund or a
    credit."""

    when_kinds: frozenset[str]
    remedy: Remedy
    max_value: Decimal | None = None
    tiers: frozenset[str] | None = None
    share: Decimal = ONE
    name: str = ""

    def __post_init__(self) -> None:
        if not ZERO < self.share <= ONE:
            raise InvalidConfig(f"a concession share must be above 0 and at most 1: {self.share}")
        if self.max_value is not None and self.max_value <= ZERO:
            raise InvalidConfig(f"a rule's max_value must be positive: {self.max_value}")

    def fits(self, *, kind: str, order_value: Decimal | None, tier: str | None) -> bool:
        if self.when_kinds and kind not in self.when_kinds:
            return False
        if self.tiers is not None and tier not in self.tiers:
            return False
        if self.max_value is None:
            return True
        return order_value is not None and order_value < self.max_value


@dataclass(frozen=True, slots=True)
class ConcessionMatrix:
    rules: tuple[ConcessionRule, ...]
    monthly_budget: Decimal
    currency: str
    per_order_cap: Decimal | None = None
    repeat_window_days: int = 90
    max_per_customer: int | None = None
    reship_cost_share: Decimal = Decimal("0.5")
    over_budget: OverBudget = OverBudget.ESCALATE

    def __post_init__(self) -> None:
        if self.monthly_budget < ZERO:
            raise InvalidConfig(f"the monthly budget cannot be negative: {self.monthly_budget}")
        if self.per_order_cap is not None and self.per_order_cap < ZERO:
            raise InvalidConfig(f"the per-order cap cannot be negative: {self.per_order_cap}")
        if not ZERO <= self.reship_cost_share <= ONE:
            raise InvalidConfig(f"reship_cost_share must be in [0, 1]: {self.reship_cost_share}")
        if self.repeat_window_days < 1:
            raise InvalidConfig("repeat_window_days must be at least 1")

    def budget_left(self, spent_this_month: Decimal) -> Decimal:
        return cents(max(self.monthly_budget - spent_this_month, ZERO))


@dataclass(frozen=True, slots=True)
class ConcessionDecision:
    """``amount``: what the remedy costs: the refund or credit, a reship's cost; zero for a
    denial or an escalation. ``rule_index``: the rule that decided, None when a limit did."""

    remedy: Remedy
    amount: Decimal
    reason: str
    rule_index: int | None = None


def cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def first_rule(
    rules: Sequence[ConcessionRule], *, kind: str, order_value: Decimal | None, tier: str | None
) -> tuple[int, ConcessionRule] | None:
    for index, rule in enumerate(rules):
        if rule.fits(kind=kind, order_value=order_value, tier=tier):
            return index, rule
    return None


def decide(
    matrix: ConcessionMatrix,
    *,
    kind: str,
    order_value: Decimal | None,
    tier: str | None,
    spent_this_month: Decimal,
    customer_concessions_in_window: int,
    currency: str | None = None,
) -> ConcessionDecision:
    """The remedy for one problem: the first fitting rule, within the customer and budget limits."""
    if currency is not None and currency != matrix.currency:
        return _escalate(f"the order is in {currency}, the concession budget in {matrix.currency}")
    found = first_rule(matrix.rules, kind=kind, order_value=order_value, tier=tier)
    if found is None:
        return _escalate(f"no concession rule covers {kind}")
    index, rule = found
    if not rule.remedy.costs_money:
        return ConcessionDecision(rule.remedy, ZERO, rule.name or f"rule {index}", index)
    return _within_limits(
        matrix,
        index,
        order_value=order_value,
        spent_this_month=spent_this_month,
        customer_concessions_in_window=customer_concessions_in_window,
    )


def _within_limits(
    matrix: ConcessionMatrix,
    index: int,
    *,
    order_value: Decimal | None,
    spent_this_month: Decimal,
    customer_concessions_in_window: int,
) -> ConcessionDecision:
    """A rule's remedy that costs money, given only within the customer, cap and budget limits."""
    rule = matrix.rules[index]
    if order_value is None:
        return _escalate("the order's value is unknown", index)
    limit = matrix.max_per_customer
    if limit is not None and customer_concessions_in_window >= limit:
        return _escalate(REPEAT_CONCESSIONS, index)
    amount, reason = _cost(matrix, rule, order_value), rule.name or f"rule {index}"
    cap = matrix.per_order_cap
    if cap is not None and amount > cap:
        if rule.remedy not in (Remedy.PARTIAL_REFUND, Remedy.CREDIT):
            return _escalate(f"over the per-order cap of {cap} {matrix.currency}", index)
        amount, reason = cents(cap), f"{reason} (capped at {cap} {matrix.currency})"
    if amount > matrix.budget_left(spent_this_month):
        return ConcessionDecision(Remedy(matrix.over_budget.value), ZERO, OVER_BUDGET, index)
    return ConcessionDecision(rule.remedy, amount, reason, index)


def _cost(matrix: ConcessionMatrix, rule: ConcessionRule, order_value: Decimal) -> Decimal:
    if rule.remedy is Remedy.REFUND:
        return cents(order_value)
    if rule.remedy is Remedy.RESHIP:
        return cents(order_value * matrix.reship_cost_share)
    return cents(order_value * rule.share)


def _escalate(reason: str, rule_index: int | None = None) -> ConcessionDecision:
    return ConcessionDecision(Remedy.ESCALATE, ZERO, reason, rule_index)


def month_start(now: datetime, time_zone: str = "UTC") -> datetime:
    """The start of ``now``'s calendar month in ``time_zone``, as aware UTC."""
    local = now.astimezone(ZoneInfo(time_zone))
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return first.astimezone(UTC)


def window_start(now: datetime, days: int) -> datetime:
    return (now - timedelta(days=days)).astimezone(UTC)
