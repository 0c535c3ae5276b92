"""Playbooks at work: run the due steps of a case's playbook, schedule the rest.

- ``advance_playbook``: the plan of the case's playbook (``services.playbook_plan``) at ``now``;
  each due automatic step runs (``STEP_KINDS``), its outside calls written as ``outbound.send``
  jobs under the attempt's key ``playbook:{merchant}:{case}:{step}:{attempt}``, its run on the
  timeline (``playbook_step``) and its facts and attempts in ``case.data["steps"][step]`` (in the
  same transaction, so a re-run never repeats an attempt; the outbox's unique job key is the
  second guard). A step due later gets a ``playbook.step`` timer; a blocked step is noted once
  per reason (``playbook_blocked``), a suggested step once per attempt (``playbook_suggested``).
- Intake (``after_intake``) plans the changed cases without running anything: a due step gets
  a ``playbook.step`` job due now, so intake stays fast and the step runs in its own unit of
  work, where the worker knows how to sign decision links.
- ``run_step``: a person runs a suggested or manual step (or an automatic one early).
- ``on_answer``: the outside system's answer to a playbook call (``playbook_answer``); a refusal
  leaves the step to a person (``case.data["steps"][step]["refused"]``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from recoverydesk.domain.cases import Case
from recoverydesk.domain.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from recoverydesk.domain.events import CanonicalEvent, EventType
from recoverydesk.domain.orders import OrderView
from recoverydesk.domain.playbooks import RUNNABLE, Mode, StepPlan, StepState
from recoverydesk.services.address_check import address_step
from recoverydesk.services.concessions import concession_step
from recoverydesk.services.decisions import DecisionLinks
from recoverydesk.services.evidence_pack import evidence_step
from recoverydesk.services.jobs import JobHandler
from recoverydesk.services.playbook_kinds import OutsideCall, StepContext, StepKind, StepOutcome
from recoverydesk.services.playbook_plan import (
    CHOICE,
    NOTES,
    STEPS,
    ActivePlaybook,
    active_for,
    current_plan,
    playbook_for,
    steps_of,
)
from recoverydesk.services.playbook_steps import (
    check_step,
    command_step,
    decision_step,
    escalate_step,
    message_step,
    stopship_step,
)
from recoverydesk.services.ports import Job, JobRequest, Merchant, UnitOfWork
from recoverydesk.services.triage import Triage, stage_timers, triage_for

PLAYBOOK_STEP = "playbook.step"  # the timer job: advance the case's playbook
SEND = "outbound.send"

STEP_KINDS: dict[str, StepKind] = {
    "command": command_step,
    "message": message_step,
    "decision": decision_step,
    "stopship": stopship_step,
    "escalate": escalate_step,
    "check": check_step,
    "address_check": address_step,
    "evidence_pack": evidence_step,
    "concession": concession_step,
}

LinksProvider = Callable[[], DecisionLinks | None]


@dataclass(frozen=True, slots=True)
class StepRun:
    """What running steps of one case's playbook needs (the case itself may be read again)."""

    uow: UnitOfWork
    merchant: Merchant
    triage: Triage
    active: ActivePlaybook
    order: OrderView
    now: datetime
    links: DecisionLinks | None

    def plan(self, case: Case) -> list[StepPlan]:
        return current_plan(self.triage, self.active, case, self.order, self.now)


def advance_playbook(
    uow: UnitOfWork,
    merchant: Merchant,
    case: Case,
    order: OrderView,
    now: datetime,
    *,
    links: DecisionLinks | None,
    run: bool = True,
) -> Case:
    """Advance the (locked, open) case's playbook: run the due automatic steps (unless
    ``run`` is false: then they get a job due now), set timers for later steps, note blocked
    and suggested steps once. Returns the case as it is now (a step that acted through intake
    may have saved it: it is read again). The caller saves it."""
    triage = triage_for(uow, merchant)
    active = active_for(triage, case)
    if active is None or not case.is_open or case.id is None:
        return case
    job = StepRun(uow, merchant, triage, active, order, now, links)
    tried: set[str] = set()
    plans = job.plan(case)
    while run and case.is_open:
        due = next((p for p in plans if p.state is StepState.DUE and p.step not in tried), None)
        if due is None:
            break
        tried.add(due.step)
        case, _ = execute_step(job, case, due, actor=active.actor())
        plans = job.plan(case)
    if case.is_open:
        wanted = [p for p in plans if p.state is StepState.SCHEDULED]
        wanted += [p for p in plans if p.state is StepState.DUE and p.step not in tried]
        uow.jobs.enqueue([_timer(merchant, case, p) for p in wanted], now=now)
        for step_plan in plans:
            _note(job, case, step_plan)
    return case


def _timer(merchant: Merchant, case: Case, step_plan: StepPlan) -> JobRequest:
    """A timer per attempt and due time: a moved due time asks for a new one, and the old one
    finds nothing to do."""
    assert step_plan.due_at is not None
    moment = step_plan.due_at.isoformat()
    return JobRequest(
        merchant_id=merchant.id,
        kind=PLAYBOOK_STEP,
        key=f"playbook:{case.id}:{step_plan.step}:{step_plan.attempt}:timer:{moment}",
        due_at=step_plan.due_at,
        payload={"case_id": case.id, "step": step_plan.step, "attempt": step_plan.attempt},
    )


_NOT_FACTS = frozenset({"reference", "message", "skipped"})


def _replan(
    merchant: Merchant, case: Case, payload: Mapping[str, Any], now: datetime
) -> JobRequest:
    """A ``playbook.step`` job due now, once per answered call."""
    return JobRequest(
        merchant_id=merchant.id,
        kind=PLAYBOOK_STEP,
        key=f"playbook:{case.id}:answer:{payload.get('key')}",
        due_at=now,
        payload={"case_id": case.id, "step": None, "attempt": None},
    )


def _note(job: StepRun, case: Case, step_plan: StepPlan) -> None:
    """A blocked step once per reason, a suggested step once per attempt."""
    if step_plan.state is StepState.BLOCKED:
        _say_once(job, case, step_plan, "playbook_blocked", step_plan.reason)
    elif step_plan.state is StepState.SUGGESTED:
        _say_once(job, case, step_plan, "playbook_suggested", "")


def _say_once(job: StepRun, case: Case, step_plan: StepPlan, kind: str, reason: str) -> None:
    step = step_plan.step
    said = f"{kind}:{step_plan.attempt}:{reason}"
    notes = dict(case.data.get(NOTES) or {})
    if notes.get(step) == said:
        return
    case.data = {**case.data, NOTES: {**notes, step: said}}
    detail = {**_header(job, step), "reason": reason or None}
    spec = job.active.step(step)
    if spec is not None and spec.label:
        detail["label"] = spec.label
    case.record(job.now, kind, job.active.actor(), detail)


def _header(job: StepRun, step: str) -> dict[str, Any]:
    return {
        "playbook": job.active.name,
        "version": job.active.spec.version,
        "config_version": job.triage.version,
        "step": step,
    }


def execute_step(
    job: StepRun,
    case: Case,
    step_plan: StepPlan,
    *,
    actor: str,
    checked: tuple[str, ...] = (),
) -> tuple[Case, str | None]:
    """Run one attempt of a step; returns the case as it is now and why the step could not
    run (None when it ran)."""
    spec = job.active.step(step_plan.step)
    assert spec is not None
    kind = STEP_KINDS.get(spec.do)
    if kind is None:
        return case, _blocked(job, case, step_plan, f"the {spec.do} kind is not available")
    key = f"playbook:{job.merchant.name}:{case.id}:{spec.name}:{step_plan.attempt}"
    if case.dirty:
        job.uow.cases.save(job.merchant.id, [case])  # a kind acting through intake reads it
    before = _snapshot(case)
    params = {**spec.params, "checklist": list(spec.checklist)} if spec.checklist else spec.params
    outcome = kind(
        StepContext(
            job.uow, job.merchant, job.triage.policy, case, job.order, spec.name, params, key,
            actor, job.now, links=job.links, checked=checked,
        )
    )  # fmt: skip
    case = _read_again(job, case, before)
    if outcome.blocked is not None:
        return case, _blocked(job, case, step_plan, outcome.blocked)
    _record_run(job, case, step_plan, outcome, key=key, actor=actor)
    return case, None


def _blocked(job: StepRun, case: Case, step_plan: StepPlan, reason: str) -> str:
    _say_once(job, case, step_plan, "playbook_blocked", reason)
    return reason


def _snapshot(case: Case) -> tuple[Any, ...]:
    return (case.status, tuple(case.event_ids), repr(case.data), len(case.escalations))


def _read_again(job: StepRun, case: Case, before: tuple[Any, ...]) -> Case:
    """The case as stored, when a kind's work through intake saved it meanwhile; the kind's
    own changes to it (timeline rows, status, escalations) are carried over."""
    fresh = job.uow.cases.lock(job.merchant.id, case.id or 0)
    if fresh is None or _snapshot(fresh) == before:
        return case
    fresh.pending.extend(case.pending)
    fresh.escalations = [*fresh.escalations, *case.escalations[before[3] :]]
    if case.status is not before[0]:
        fresh.status = case.status
    fresh.dirty = True
    return fresh


def _record_run(
    job: StepRun, case: Case, step_plan: StepPlan, outcome: StepOutcome, *, key: str, actor: str
) -> None:
    """The attempt on the timeline and in the case's data, its calls in the outbox."""
    spec = job.active.step(step_plan.step)
    assert spec is not None
    marker = {**_header(job, spec.name), "attempt": step_plan.attempt}
    marker["name"] = marker.pop("playbook")
    jobs = [_send_job(job, case, call, f"{key}{call.key_suffix}", marker) for call in outcome.calls]
    job.uow.jobs.enqueue(jobs, now=job.now)
    calls = [
        {"system": p["system"], "action": p["action"], "idempotency_key": p["key"]}
        for p in (j.payload for j in jobs)
    ]
    detail = {
        **_header(job, spec.name),
        "attempt": step_plan.attempt,
        "mode": spec.mode.value,
        "do": spec.do,
        "calls": calls,
        "facts": outcome.facts,
    }
    case.record(job.now, "playbook_step", actor, detail)
    steps = dict(steps_of(case))
    earlier = steps.get(spec.name, {})
    ran = {"attempts": step_plan.attempt, "done": True, "at": job.now.isoformat()}
    steps[spec.name] = {**earlier, **outcome.facts, **ran}
    case.data = {**case.data, STEPS: steps}
    if spec.mode is not Mode.AUTOMATIC or not actor.startswith("playbook:"):
        case.touch(at=job.now, actor=actor)


def _send_job(
    job: StepRun, case: Case, call: OutsideCall, key: str, marker: dict[str, Any]
) -> JobRequest:
    """An ``outbound.send`` job, as the stop-ship workflow's and the decisions' are, naming the
    case and the playbook step it comes from."""
    return JobRequest(
        merchant_id=job.merchant.id,
        kind=SEND,
        key=f"outbound:{key}",
        due_at=job.now,
        payload={
            "cancellation_id": None,
            "order_ref": job.order.ref,
            "system": call.system,
            "action": call.action,
            "key": key,
            "params": dict(call.params),
            "case_id": case.id,
            "playbook": marker,
        },
    )


# -- where it is called from ---------------------------------------------------------------------


def after_intake(
    uow: UnitOfWork,
    merchant: Merchant,
    *,
    cases: list[Case],
    orders: Mapping[str, OrderView],
    events: Mapping[str, CanonicalEvent],
    now: datetime,
) -> None:
    """Intake saved these cases: note the customer's answers, plan their playbooks and ask for
    a ``playbook.step`` job for each step due (nothing runs inside intake)."""
    triage = triage_for(uow, merchant)
    changed = []
    for case in cases:
        if case.id is None or not case.is_open or active_for(triage, case) is None:
            continue
        _note_choice(case, events)
        order = orders.get(case.order_ref) or OrderView(ref=case.order_ref)
        advance_playbook(uow, merchant, case, order, now, links=None, run=False)
        if case.dirty:
            changed.append(case)
    if changed:
        uow.cases.save(merchant.id, changed)


def _note_choice(case: Case, events: Mapping[str, CanonicalEvent]) -> None:
    replies = [
        events[i]
        for i in case.event_ids
        if i in events and events[i].type is EventType.CUSTOMER_REPLIED
    ]
    choice = next((e.data.get("choice") for e in reversed(replies) if e.data.get("choice")), None)
    if choice is not None and case.data.get(CHOICE) != str(choice):
        case.data = {**case.data, CHOICE: str(choice)}
        case.dirty = True


def handlers(links: LinksProvider) -> dict[str, JobHandler]:
    """``playbook.step``: a step's time came (or intake found one due): if the case is still
    open, its playbook advances."""

    def advance(uow: UnitOfWork, job: Job, now: datetime) -> None:
        merchant = uow.merchants.by_id(job.merchant_id)
        if merchant is None:
            raise NotFound(f"merchant {job.merchant_id} of job {job.id} is gone")
        found = uow.cases.get(merchant.id, int(job.payload["case_id"]))
        if found is None or not found.is_open:
            return
        order = uow.orders.lock(merchant.id, [found.order_ref])[found.order_ref]
        case = uow.cases.lock(merchant.id, found.id or 0)
        if case is None or not case.is_open:
            return
        case = advance_playbook(uow, merchant, case, order, now, links=links())
        _save(uow, merchant, case, order, now)

    return {PLAYBOOK_STEP: advance}


def _save(uow: UnitOfWork, merchant: Merchant, case: Case, order: OrderView, now: datetime) -> None:
    triage = triage_for(uow, merchant)
    if triage.keep_clocks(case, order, now):
        case.dirty = True
    if case.dirty:
        uow.cases.save(merchant.id, [case])
        uow.jobs.enqueue(stage_timers(merchant.id, case, triage.calendar), now=now)


def run_step(
    uow: UnitOfWork,
    merchant: Merchant,
    *,
    case_id: int,
    step: str,
    checked: tuple[str, ...],
    actor: str,
    now: datetime,
    links: DecisionLinks | None,
) -> Case:
    """A person runs a step of the case's playbook (the case action ``run_step``);
    ``step_not_available`` when the plan says it is not applicable, blocked or done."""
    found = uow.cases.get(merchant.id, case_id)
    if found is None:
        raise NotFound(f"no case {case_id}", code="case_not_found")
    order = uow.orders.lock(merchant.id, [found.order_ref])[found.order_ref]
    case = uow.cases.lock(merchant.id, case_id) or found
    if not case.is_open:
        raise InvalidTransition(f"case {case_id} is {case.status.value}: reopen it first")
    triage, active = playbook_for(uow, merchant, case)
    job = StepRun(uow, merchant, triage, active, order, now, links)
    step_plan = _runnable(job, case, step, checked)
    case, blocked = execute_step(job, case, step_plan, actor=actor, checked=checked)
    if blocked is not None:
        raise Conflict(f"step {step} cannot run: {blocked}", code="step_not_available")
    case = advance_playbook(uow, merchant, case, order, now, links=links)
    _save(uow, merchant, case, order, now)
    return case


def _runnable(job: StepRun, case: Case, step: str, checked: tuple[str, ...]) -> StepPlan:
    spec = job.active.step(step)
    if spec is None:
        names = ", ".join(s.name for s in job.active.spec.steps)
        raise InvalidInput(f"step: no step {step!r} in {job.active.name} ({names})")
    unknown = [item for item in checked if item not in spec.checklist]
    if unknown:
        raise InvalidInput(f"checked: {unknown[0]!r} is not on the step's checklist")
    step_plan = next(p for p in job.plan(case) if p.step == step)
    if step_plan.state not in RUNNABLE:
        why = f": {step_plan.reason}" if step_plan.reason else ""
        raise Conflict(f"step {step} is {step_plan.state.value}{why}", code="step_not_available")
    return step_plan


def on_answer(
    uow: UnitOfWork,
    merchant: Merchant,
    payload: Mapping[str, Any],
    *,
    accepted: bool,
    answer: Mapping[str, Any],
    now: datetime,
) -> None:
    """The outside system answered a playbook's call (the outbox's ``record`` calls this)."""
    marker = payload.get("playbook") or {}
    case = uow.cases.lock(merchant.id, int(payload.get("case_id") or 0))
    if case is None or not marker:
        return
    step, actor = str(marker.get("step")), f"playbook:{marker.get('name')}@v{marker.get('version')}"
    why = answer.get("message") or answer.get("skipped")
    detail = {
        "playbook": marker.get("name"),
        "version": marker.get("version"),
        "step": step,
        "attempt": marker.get("attempt"),
        "system": payload.get("system"),
        "action": payload.get("action"),
        "idempotency_key": payload.get("key"),
        "accepted": accepted,
        "reference": answer.get("reference"),
        "message": why,
    }
    facts = {k: v for k, v in answer.items() if k not in _NOT_FACTS and v is not None}
    if facts:
        detail["facts"] = facts
    case.record(now, "playbook_answer", str(payload.get("system")), detail)
    steps = dict(steps_of(case))
    # What the system answered (the stock it found, a second decline ...) is a fact later
    # steps' conditions read: ``steps.locate_stock.answer.locations``.
    steps[step] = {**steps.get(step, {}), "answer": facts}
    if not accepted:
        steps[step]["refused"] = str(why or "refused")
        text = f"{payload.get('system')} refused step {step} ({why or 'no reason given'}): "
        case.record(now, "note", actor, {"text": text + "a person takes it from here"})
    case.data = {**case.data, STEPS: steps}
    if case.is_open:  # the answer may make a step apply: plan again now
        uow.jobs.enqueue([_replan(merchant, case, payload, now)], now=now)
    uow.cases.save(merchant.id, [case])
