"""Playbooks: the steps a case of a category goes through, and where each step stands now.

A playbook is a versioned list of steps. Each step has a mode (``automatic``: the desk runs it
when it is due; ``suggested``: a person runs it; ``manual``: a checklist a person ticks), a
condition (evaluated by the services, given here as ``holds``), the data it needs (``missing``),
and a schedule: attempt ``k`` (1-based) is due at ``anchor + after + (k - 1) * every``, for
``times`` attempts.

``plan`` is pure and deterministic: the same playbook, facts and moment give the same plan.
Rules, in order, for each step:

1. every attempt taken (``done[step] >= times``) -> ``done``;
2. the step it comes after has not run yet, or its condition does not hold -> ``not_applicable``
   (re-evaluated at every advance);
3. its anchor is unknown -> ``blocked`` ("no ship_by yet");
4. data it requires is missing -> ``blocked`` ("needs order.customer_email");
5. ``suggested`` -> ``suggested``; ``manual`` -> ``manual``;
6. automatic: due at or before ``now`` -> ``due``, else ``scheduled``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Mode(StrEnum):
    AUTOMATIC = "automatic"
    SUGGESTED = "suggested"
    MANUAL = "manual"


class Anchor(StrEnum):
    CASE_OPENED = "case_opened"
    ORDER_PLACED = "order_placed"
    SHIP_BY = "ship_by"
    PROMISED_BY = "promised_by"
    DISPUTE_DUE = "dispute_due"
    AUTHORIZATION_EXPIRES = "authorization_expires"


class StepState(StrEnum):
    DUE = "due"
    SCHEDULED = "scheduled"
    SUGGESTED = "suggested"
    MANUAL = "manual"
    BLOCKED = "blocked"
    DONE = "done"
    NOT_APPLICABLE = "not_applicable"


# States in which a person may run the step (``run_step``).
RUNNABLE = frozenset({StepState.DUE, StepState.SCHEDULED, StepState.SUGGESTED, StepState.MANUAL})


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    do: str
    mode: Mode = Mode.AUTOMATIC
    anchor: Anchor = Anchor.CASE_OPENED
    after: timedelta = timedelta(0)
    every: timedelta | None = None
    times: int = 1
    after_step: str | None = None
    label: str = ""

    def due_at(self, anchor: datetime, attempt: int) -> datetime:
        """When attempt ``attempt`` (1-based) is due."""
        repeat = (self.every or timedelta(0)) * (attempt - 1)
        return anchor + self.after + repeat


@dataclass(frozen=True, slots=True)
class Playbook:
    name: str
    version: int
    steps: tuple[Step, ...]

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)


@dataclass(frozen=True, slots=True)
class StepPlan:
    step: str
    mode: Mode
    attempt: int  # the next attempt; for a done step, the attempts taken
    due_at: datetime | None
    state: StepState
    reason: str = ""


def plan(
    playbook: Playbook,
    *,
    case_opened_at: datetime,
    anchors: Mapping[str, datetime | None],
    done: Mapping[str, int],
    holds: Callable[[str], bool],
    missing: Callable[[str], str | None],
    now: datetime,
) -> list[StepPlan]:
    """Where each step of the playbook stands at ``now`` (see the module's rules)."""
    moments = {**anchors, Anchor.CASE_OPENED.value: case_opened_at}
    return [
        _one(step, moments=moments, done=done, holds=holds, missing=missing, now=now)
        for step in playbook.steps
    ]


def _one(
    step: Step,
    *,
    moments: Mapping[str, datetime | None],
    done: Mapping[str, int],
    holds: Callable[[str], bool],
    missing: Callable[[str], str | None],
    now: datetime,
) -> StepPlan:
    taken = done.get(step.name, 0)
    if taken >= step.times:
        return StepPlan(step.name, step.mode, taken, None, StepState.DONE)
    attempt = taken + 1
    if step.after_step is not None and done.get(step.after_step, 0) == 0:
        reason = f"waits for {step.after_step}"
        return StepPlan(step.name, step.mode, attempt, None, StepState.NOT_APPLICABLE, reason)
    if not holds(step.name):
        return StepPlan(step.name, step.mode, attempt, None, StepState.NOT_APPLICABLE)
    anchor = moments.get(step.anchor.value)
    if anchor is None:
        reason = f"no {step.anchor.value} yet"
        return StepPlan(step.name, step.mode, attempt, None, StepState.BLOCKED, reason)
    due_at = step.due_at(anchor, attempt)
    needs = missing(step.name)
    state = StepState.BLOCKED if needs is not None else _ready(step, due_at, now)
    return StepPlan(step.name, step.mode, attempt, due_at, state, needs or "")


def _ready(step: Step, due_at: datetime, now: datetime) -> StepState:
    if step.mode is Mode.SUGGESTED:
        return StepState.SUGGESTED
    if step.mode is Mode.MANUAL:
        return StepState.MANUAL
    return StepState.DUE if due_at <= now else StepState.SCHEDULED
