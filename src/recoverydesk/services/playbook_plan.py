"""Where a case's playbook stands: the merchant's playbooks compiled once per configuration
version, the facts a step's condition sees, and the plan of ``domain.playbooks.plan``.

A step's condition sees what a triage rule sees (``services.triage.rule_context``; the event is
empty: a plan is made at any time), ``case.choice`` (the customer's latest decision answer) and
``steps``: for each step of the playbook ``done``, ``attempts`` and the facts it found.
The attempts taken are counted in ``case.data["steps"][<step>]["attempts"]``, written in the
same transaction as the step's ``playbook_step`` timeline row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

import cel

from recoverydesk.domain.cases import Case
from recoverydesk.domain.errors import Conflict
from recoverydesk.domain.orders import OrderView
from recoverydesk.domain.playbooks import Playbook, StepPlan, StepState, plan
from recoverydesk.services.playbook_config import PlaybookSpec, StepSpec
from recoverydesk.services.ports import Merchant, UnitOfWork
from recoverydesk.services.triage import Triage, rule_context, triage_for

STEPS = "steps"  # ``case.data`` key: facts and attempts per step
NOTES = "playbook_notes"  # ``case.data`` key: what was last said of each step (once each)
CHOICE = "choice"  # ``case.data`` key: the customer's latest decision answer


@dataclass(frozen=True, slots=True)
class ActivePlaybook:
    name: str
    spec: PlaybookSpec
    playbook: Playbook
    conditions: dict[str, Any]  # step name -> compiled CEL program (None: always)

    def step(self, name: str) -> StepSpec | None:
        return next((s for s in self.spec.steps if s.name == name), None)

    def actor(self) -> str:
        return f"playbook:{self.name}@v{self.spec.version}"


class Playbooks:
    """A merchant's playbooks at one configuration version, by the category they drive."""

    def __init__(self, playbooks: Mapping[str, PlaybookSpec]) -> None:
        self.by_category: dict[str, ActivePlaybook] = {}
        for name, spec in playbooks.items():
            conditions = {s.name: cel.compile(s.when) if s.when else None for s in spec.steps}
            active = ActivePlaybook(name, spec, spec.as_playbook(name), conditions)
            for category in spec.categories:
                self.by_category[category] = active


_COMPILED: WeakKeyDictionary[Triage, Playbooks] = WeakKeyDictionary()


def active_for(triage: Triage, case: Case) -> ActivePlaybook | None:
    """The playbook that drives the case's category, if any."""
    return _playbooks(triage).by_category.get(str(case.category))


def playbook_for(uow: UnitOfWork, merchant: Merchant, case: Case) -> tuple[Triage, ActivePlaybook]:
    """The merchant's playbook for the case's category (``step_not_available`` when none)."""
    triage = triage_for(uow, merchant)
    found = _playbooks(triage).by_category.get(str(case.category))
    if found is None:
        raise Conflict(f"no playbook drives {case.category!s} cases", code="step_not_available")
    return triage, found


def _playbooks(triage: Triage) -> Playbooks:
    compiled = _COMPILED.get(triage)
    if compiled is None:
        compiled = _COMPILED[triage] = Playbooks(triage.policy.playbooks)
    return compiled


# -- the plan ------------------------------------------------------------------------------------


def current_plan(
    triage: Triage, active: ActivePlaybook, case: Case, order: OrderView, now: datetime
) -> list[StepPlan]:
    context: list[Any] = []

    def holds(name: str) -> bool:
        program = active.conditions.get(name)
        if program is None:
            return True
        if not context:
            context.append(_cel_context(triage, active, case, order, now))
        try:
            return program.execute(context[0]) is True
        except (KeyError, TypeError, ValueError, RuntimeError):
            return False  # a fact the condition reads is not there (yet)

    def missing(name: str) -> str | None:
        spec = active.step(name)
        needs = spec.requires if spec else ()
        return next((f"needs {path}" for path in needs if not _has(order, path)), None)

    return plan(
        active.playbook,
        case_opened_at=case.opened_at,
        anchors=_anchors(triage, case, order),
        done={name: int(facts.get("attempts", 0)) for name, facts in steps_of(case).items()},
        holds=holds,
        missing=missing,
        now=now,
    )


def _cel_context(
    triage: Triage, active: ActivePlaybook, case: Case, order: OrderView, now: datetime
) -> Any:
    values = rule_context(case, order, None, now, triage.policy)
    values["case"]["data"].setdefault(STEPS, {})
    seen = values["case"]["data"][STEPS]
    values["steps"] = {
        step.name: {"done": False, "attempts": 0, **seen.get(step.name, {})}
        for step in active.spec.steps
    }
    context = cel.Context()
    for name, value in values.items():
        context.add_variable(name, value)
    return context


def steps_of(case: Case) -> dict[str, dict[str, Any]]:
    found = case.data.get(STEPS)
    return found if isinstance(found, dict) else {}


def _anchors(triage: Triage, case: Case, order: OrderView) -> dict[str, datetime | None]:
    placed = order.placed_at
    authorized = order.payment.authorized > 0 and placed is not None
    valid_for = triage.policy.thresholds.authorization_valid_for
    return {
        "order_placed": placed,
        "ship_by": order.ship_by,
        "promised_by": order.promised_by,
        "dispute_due": _moment(case.data.get("due_by")),
        "authorization_expires": placed + valid_for if authorized and placed else None,
    }


def _moment(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _has(order: OrderView, path: str) -> bool:
    if path.startswith("order.ids."):
        return bool(order.system_ids.get(path.removeprefix("order.ids.")))
    found = {
        "order.customer_email": order.customer_email,
        "order.customer_contact": order.customer_email or order.tickets,
        "order.ticket": order.tickets,
        "order.tracking": order.tracking,
        "order.shipping_address": order.shipping_address,
        "order.placed_at": order.placed_at,
        "order.ship_by": order.ship_by,
        "order.lines": order.lines,
    }.get(path)
    return bool(found)


def plan_view(
    uow: UnitOfWork, merchant: Merchant, case: Case, now: datetime
) -> dict[str, Any] | None:
    """The case's playbook and where each step stands, for the desk (None: no playbook)."""
    triage = triage_for(uow, merchant)
    active = active_for(triage, case)
    if active is None:
        return None
    order = uow.orders.get(merchant.id, case.order_ref) or OrderView(ref=case.order_ref)
    notes = case.data.get(NOTES) or {}
    steps = []
    for step_plan in current_plan(triage, active, case, order, now):
        spec = active.step(step_plan.step)
        assert spec is not None
        state, reason = step_plan.state.value, step_plan.reason
        said = str(notes.get(spec.name, ""))
        if step_plan.state is StepState.DUE and said.startswith(
            f"playbook_blocked:{step_plan.attempt}:"
        ):
            state, reason = StepState.BLOCKED.value, said.split(":", 2)[2]
        steps.append(
            {
                "step": spec.name,
                "label": spec.label,
                "mode": spec.mode.value,
                "do": spec.do,
                "state": state,
                "reason": reason or None,
                "attempt": step_plan.attempt,
                "due_at": step_plan.due_at.isoformat() if step_plan.due_at else None,
                "checklist": list(spec.checklist),
                "open": case.is_open,
            }
        )
    return {"name": active.name, "version": active.spec.version, "steps": steps}
