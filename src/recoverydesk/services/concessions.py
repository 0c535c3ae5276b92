"""Concessions control (issue 6, F11): a merchant's reship / refund / deny matrix with a monthly
budget, and the playbook step kind that applies it to a case.

``ConcessionPolicy`` is the ``concessions`` part of a merchant's file (``Policy.concessions``);
``matrix()`` turns it into the domain's ``ConcessionMatrix``. What was already spent comes from
the refund ledger: concession refunds reserved, sent or confirmed this calendar month (in the
merchant's time zone), and the same customer's concession refunds within the repeat window.

``concession_step`` (``do: concession``) decides and acts in the step's unit of work:

- refund / partial refund: through ``stopship.pay_by_hand`` with ``concession=True``: the
  ledger's guards (never more than captured), its intent key (one refund per case and amount,
  however often the step runs) and its outbox job; never an ``OutsideCall`` for money;
- reship: an ``OutsideCall`` to the warehouse (``wms`` / ``reship``) with the order's lines;
- credit: an ``OutsideCall`` to the storefront (``storefront`` / ``store_credit``);
- deny: facts only (the message to the customer is a later step);
- escalate: facts with ``escalate: true`` and the reason, for a lead.

The facts: ``remedy``, ``amount``, ``currency``, ``reason``, ``kind``, ``rule`` and
``budget_left`` (what is left of the month's budget after this concession).

Imports of the playbook interface and of ``stopship`` are made where they are used: both reach
``services.policy``, which imports this module for ``Policy.concessions``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from recoverydesk.domain.cases import Case
from recoverydesk.domain.concessions import (
    DELIVERY_PROBLEMS,
    ConcessionDecision,
    ConcessionMatrix,
    ConcessionRule,
    OverBudget,
    ProblemKind,
    Remedy,
    cents,
    decide,
    month_start,
    problem_of,
    window_start,
)
from recoverydesk.domain.ledger import EntryKind, LedgerEntry, LedgerRefusal
from recoverydesk.domain.money import ZERO
from recoverydesk.domain.orders import OrderView
from recoverydesk.services.ports import UnitOfWork

if TYPE_CHECKING:
    from recoverydesk.services.playbook_kinds import OutsideCall, StepContext, StepOutcome

Share = Annotated[Decimal, Field(gt=0, le=1, max_digits=6)]
Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConcessionRuleSpec(_Strict):
    """One row of the matrix; the first row that fits a problem decides it."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9_]{0,60}$")] = ""
    when_kinds: tuple[ProblemKind, ...] = ()  # empty: any kind
    max_value: Annotated[Decimal, Field(gt=0, max_digits=18)] | None = None  # orders under it
    tiers: tuple[str, ...] | None = None  # None: any customer tier
    remedy: Remedy
    share: Share = Decimal("1")  # of the order value, for a partial refund or a credit

    def as_rule(self) -> ConcessionRule:
        return ConcessionRule(
            when_kinds=frozenset(k.value for k in self.when_kinds),
            remedy=self.remedy,
            max_value=self.max_value,
            tiers=frozenset(self.tiers) if self.tiers is not None else None,
            share=self.share,
            name=self.name,
        )


def _row(name: str, kinds: str, remedy: Remedy, **more: Any) -> ConcessionRuleSpec:
    when = tuple(ProblemKind(k) for k in kinds.split())
    return ConcessionRuleSpec(name=name, when_kinds=when, remedy=remedy, **more)


LOST_OR_DAMAGED = "lost damaged"
DEFAULT_CONCESSION_RULES = (
    _row("reship_small_loss", LOST_OR_DAMAGED, Remedy.RESHIP, max_value=Decimal("100")),
    _row("refund_large_loss", LOST_OR_DAMAGED, Remedy.REFUND),
    _row("late_partial_refund", "late", Remedy.PARTIAL_REFUND, share=Decimal("0.15")),
    _row("refund_small_mismatch", "not_as_described", Remedy.REFUND, max_value=Decimal("50")),
    _row("lead_decides_mismatch", "not_as_described", Remedy.ESCALATE),
    _row("reship_missing_or_wrong", "missing_item wrong_item", Remedy.RESHIP),
    _row("lead_decides_other", "other", Remedy.ESCALATE),
)


class ConcessionPolicy(_Strict):
    """The ``concessions`` section of a merchant's file."""

    rules: tuple[ConcessionRuleSpec, ...] = DEFAULT_CONCESSION_RULES
    monthly_budget: Money = Decimal("2000.00")
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    per_order_cap: Money | None = None
    reship_cost_share: Annotated[Decimal, Field(ge=0, le=1, max_digits=6)] = Decimal("0.5")
    repeat_window_days: Annotated[int, Field(ge=1, le=366)] = 90
    max_per_customer: Annotated[int, Field(ge=1)] | None = 3
    over_budget: OverBudget = OverBudget.ESCALATE

    def matrix(self) -> ConcessionMatrix:
        return ConcessionMatrix(
            rules=tuple(spec.as_rule() for spec in self.rules),
            monthly_budget=self.monthly_budget,
            currency=self.currency,
            per_order_cap=self.per_order_cap,
            repeat_window_days=self.repeat_window_days,
            max_per_customer=self.max_per_customer,
            reship_cost_share=self.reship_cost_share,
            over_budget=self.over_budget,
        )


def concession_policy(policy: object) -> ConcessionPolicy:
    """The merchant's concession settings: ``Policy.concessions``, else the defaults."""
    found = getattr(policy, "concessions", None)
    return found if isinstance(found, ConcessionPolicy) else ConcessionPolicy()


# -- what was already given -------------------------------------------------------------------


def spent_this_month(
    uow: UnitOfWork,
    merchant_id: int,
    now: datetime,
    *,
    currency: str = "USD",
    time_zone: str = "UTC",
    except_case: int | None = None,
) -> Decimal:
    """Concession refunds in ``currency`` reserved, sent or confirmed since the start of
    ``now``'s calendar month in ``time_zone`` (less those of ``except_case``)."""
    entries = uow.ledger.concessions(merchant_id, since=month_start(now, time_zone))
    spent = sum(
        (e.amount for e in _others(entries, except_case) if e.currency == currency),
        ZERO,
    )
    return cents(spent)


def customer_concessions(
    uow: UnitOfWork,
    merchant_id: int,
    order: OrderView,
    now: datetime,
    *,
    days: int,
    except_case: int | None = None,
) -> int:
    """How many concessions (cases with a concession refund) the order's customer had in the
    last ``days`` days, on any of their orders; 0 when the order names no customer."""
    if order.customer_id is None and order.customer_email is None:
        return 0
    entries = uow.ledger.concessions(
        merchant_id,
        since=window_start(now, days),
        customer_id=order.customer_id,
        customer_email=None if order.customer_id is not None else order.customer_email,
    )
    return len({(e.case_id, e.order_ref) for e in _others(entries, except_case)})


def _others(entries: list[LedgerEntry], except_case: int | None) -> list[LedgerEntry]:
    return [e for e in entries if except_case is None or e.case_id != except_case]


# -- the playbook step ------------------------------------------------------------------------


def problem_for(params: Mapping[str, Any], case: Case) -> ProblemKind | None:
    """The step's ``kind`` param (a concession or delivery exception kind; None when it is
    neither), else the case's own facts (a delivery exception's ``kind``, a request's
    ``reason``, a ticket's ``topic``), else ``other``."""
    given = params.get("kind")
    if given is None:
        found = (problem_of(case.data.get(fact)) for fact in ("kind", "reason", "topic"))
        return next((kind for kind in found if kind is not ProblemKind.OTHER), ProblemKind.OTHER)
    text = str(given)
    if text in DELIVERY_PROBLEMS:
        return DELIVERY_PROBLEMS[text]
    try:
        return ProblemKind(text)
    except ValueError:
        return None


def concession_step(ctx: StepContext) -> StepOutcome:
    """``do: concession``: decide the remedy for the case's problem and act on it."""
    from recoverydesk.services.playbook_kinds import StepOutcome

    kind = problem_for(ctx.params, ctx.case)
    if kind is None:
        return StepOutcome(blocked=f"unknown concession kind {ctx.params.get('kind')!r}")
    settings = concession_policy(ctx.policy)
    booked = _booked(ctx)
    if booked:
        return StepOutcome(facts=_booked_facts(ctx, settings, kind, booked))
    decision, spent = _decision(ctx, settings, kind)
    facts = _facts(settings, kind, decision, spent)
    if decision.remedy in (Remedy.REFUND, Remedy.PARTIAL_REFUND):
        return _refund(ctx, decision, facts)
    return StepOutcome(calls=_calls(ctx, settings, kind, decision), facts=facts)


def _decision(
    ctx: StepContext, settings: ConcessionPolicy, kind: ProblemKind
) -> tuple[ConcessionDecision, Decimal]:
    merchant, case, order = ctx.merchant, ctx.case, ctx.order
    spent = spent_this_month(
        ctx.uow,
        merchant.id,
        ctx.now,
        currency=settings.currency,
        time_zone=merchant.time_zone or "UTC",
        except_case=case.id,
    )
    repeats = customer_concessions(
        ctx.uow, merchant.id, order, ctx.now, days=settings.repeat_window_days, except_case=case.id
    )
    decision = decide(
        settings.matrix(),
        kind=kind.value,
        order_value=order.value,
        tier=order.customer_tier,
        spent_this_month=spent,
        customer_concessions_in_window=repeats,
        currency=order.currency,
    )
    return decision, spent


def _facts(
    settings: ConcessionPolicy, kind: ProblemKind, decision: ConcessionDecision, spent: Decimal
) -> dict[str, Any]:
    left = settings.matrix().budget_left(spent)
    if decision.remedy.costs_money:
        left = cents(max(left - decision.amount, ZERO))
    facts: dict[str, Any] = {
        "remedy": decision.remedy.value,
        "amount": str(decision.amount),
        "currency": settings.currency,
        "reason": decision.reason,
        "kind": kind.value,
        "rule": decision.rule_index,
        "budget_left": str(left),
    }
    if decision.remedy is Remedy.ESCALATE:
        facts["escalate"] = True
    return facts


def _refund(ctx: StepContext, decision: ConcessionDecision, facts: dict[str, Any]) -> StepOutcome:
    from recoverydesk.services import stopship
    from recoverydesk.services.playbook_kinds import StepOutcome

    try:
        entry, new = stopship.pay_by_hand(
            ctx.uow,
            ctx.merchant,
            ctx.case,
            kind=EntryKind.REFUND,
            amount=decision.amount,
            concession=True,
            actor=ctx.actor,
            now=ctx.now,
        )
    except LedgerRefusal as refusal:
        return StepOutcome(facts=facts, blocked=f"the ledger refused the refund: {refusal}")
    return StepOutcome(facts={**facts, "ledger_key": entry.key, "booked_now": new})


def _calls(
    ctx: StepContext, settings: ConcessionPolicy, kind: ProblemKind, decision: ConcessionDecision
) -> tuple[OutsideCall, ...]:
    from recoverydesk.services.playbook_kinds import OutsideCall

    if decision.remedy is Remedy.RESHIP:
        lines = ctx.params.get("lines") or _lines(ctx.order)
        return (OutsideCall("wms", "reship", {"lines": lines, "reason": kind.value}),)
    if decision.remedy is Remedy.CREDIT:
        params = {"amount": str(decision.amount), "currency": settings.currency}
        return (OutsideCall("storefront", "store_credit", {**params, "reason": kind.value}),)
    return ()


def _lines(order: OrderView) -> list[dict[str, Any]]:
    return [
        {"sku": sku, "qty": line.qty or 1}
        for sku, line in sorted(order.lines.items())
        if not line.cancelled
    ]


def _booked(ctx: StepContext) -> list[LedgerEntry]:
    """This case's concession refunds already in the ledger (a step run again)."""
    entries = ctx.uow.ledger.for_order(ctx.merchant.id, ctx.case.order_ref)
    return [
        e
        for e in entries
        if e.case_id == ctx.case.id and e.detail.get("concession") == "yes" and e.status.holds_money
    ]


def _booked_facts(
    ctx: StepContext, settings: ConcessionPolicy, kind: ProblemKind, booked: list[LedgerEntry]
) -> dict[str, Any]:
    amount = cents(sum((e.amount for e in booked), ZERO))
    whole = ctx.order.value is not None and amount >= ctx.order.value
    spent = spent_this_month(
        ctx.uow,
        ctx.merchant.id,
        ctx.now,
        currency=settings.currency,
        time_zone=ctx.merchant.time_zone or "UTC",
    )
    return {
        "remedy": (Remedy.REFUND if whole else Remedy.PARTIAL_REFUND).value,
        "amount": str(amount),
        "currency": booked[0].currency,
        "reason": "already booked",
        "kind": kind.value,
        "rule": None,
        "budget_left": str(settings.matrix().budget_left(spent)),
        "ledger_key": booked[0].key,
        "booked_now": False,
    }
