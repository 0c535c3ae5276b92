"""The playbook engine's plan: where each step stands, from the playbook, the facts and now."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from recoverydesk.domain.playbooks import (
    Anchor,
    Mode,
    Playbook,
    Step,
    StepPlan,
    StepState,
    plan,
)

OPENED = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)

RETRY = Step("retry", "command", after=HOUR, every=6 * HOUR, times=3)
MESSAGE = Step("message", "message", after=2 * HOUR)
CAPTURE = Step("capture", "command", anchor=Anchor.AUTHORIZATION_EXPIRES, after=timedelta(days=-1))
CANCEL = Step("cancel", "stopship", mode=Mode.SUGGESTED, after=timedelta(days=1))
CHECK = Step("check", "check", mode=Mode.MANUAL)
FOLLOW = Step("follow", "message", after_step="retry")
PLAYBOOK = Playbook("payment_recovery", 1, (RETRY, MESSAGE, CAPTURE, CANCEL, CHECK, FOLLOW))


def planned(
    now: datetime,
    *,
    done: Mapping[str, int] | None = None,
    not_holding: frozenset[str] = frozenset(),
    missing: Mapping[str, str] | None = None,
    anchors: Mapping[str, datetime | None] | None = None,
) -> dict[str, StepPlan]:
    steps = plan(
        PLAYBOOK,
        case_opened_at=OPENED,
        anchors=anchors or {},
        done=done or {},
        holds=lambda name: name not in not_holding,
        missing=(missing or {}).get,
        now=now,
    )
    return {step.step: step for step in steps}


def test_an_automatic_step_is_scheduled_until_its_time_then_due() -> None:
    # given a case opened at 09:00 and a retry one hour later
    # when it is 09:30, then the retry is scheduled for 10:00
    early = planned(OPENED + HOUR / 2)["retry"]
    assert (early.state, early.attempt, early.due_at) == (StepState.SCHEDULED, 1, OPENED + HOUR)
    # when it is 10:00, then it is due
    assert planned(OPENED + HOUR)["retry"].state is StepState.DUE


def test_a_retry_schedule_gives_each_attempt_its_own_time_and_stops_after_the_last() -> None:
    # given one retry taken, the second is due six hours after the first
    second = planned(OPENED + 2 * HOUR, done={"retry": 1})["retry"]
    assert (second.state, second.attempt, second.due_at) == (
        StepState.SCHEDULED,
        2,
        OPENED + 7 * HOUR,
    )
    third = planned(OPENED + 13 * HOUR, done={"retry": 2})["retry"]
    assert (third.state, third.attempt, third.due_at) == (StepState.DUE, 3, OPENED + 13 * HOUR)
    # when all three were taken, then the step is done
    done = planned(OPENED + 30 * HOUR, done={"retry": 3})["retry"]
    assert (done.state, done.attempt, done.due_at) == (StepState.DONE, 3, None)


def test_a_step_whose_condition_does_not_hold_is_not_applicable() -> None:
    step = planned(OPENED + 3 * HOUR, not_holding=frozenset({"message"}))["message"]
    assert step.state is StepState.NOT_APPLICABLE
    # and it applies again as soon as its condition holds
    assert planned(OPENED + 3 * HOUR)["message"].state is StepState.DUE


def test_a_step_without_its_anchor_is_blocked_with_the_reason() -> None:
    # given no authorization on the order: the capture check has nothing to count from
    step = planned(OPENED)["capture"]
    assert (step.state, step.reason) == (StepState.BLOCKED, "no authorization_expires yet")
    # given an authorization that expires in a week, it is scheduled a day before
    expires = OPENED + timedelta(days=7)
    later = planned(OPENED, anchors={"authorization_expires": expires})["capture"]
    assert (later.state, later.due_at) == (StepState.SCHEDULED, expires - timedelta(days=1))


def test_a_step_missing_the_data_it_requires_is_blocked_with_the_reason() -> None:
    step = planned(OPENED + 3 * HOUR, missing={"message": "needs order.customer_email"})
    assert (step["message"].state, step["message"].reason) == (
        StepState.BLOCKED,
        "needs order.customer_email",
    )


def test_suggested_and_manual_steps_wait_for_a_person_whatever_the_time() -> None:
    steps = planned(OPENED + timedelta(days=3))
    assert steps["cancel"].state is StepState.SUGGESTED
    assert steps["check"].state is StepState.MANUAL
    # and a ticked checklist is done
    assert planned(OPENED, done={"check": 1})["check"].state is StepState.DONE


def test_a_step_after_another_waits_until_that_one_ran() -> None:
    waiting = planned(OPENED + 3 * HOUR)["follow"]
    assert (waiting.state, waiting.reason) == (StepState.NOT_APPLICABLE, "waits for retry")
    assert planned(OPENED + 3 * HOUR, done={"retry": 1})["follow"].state is StepState.DUE


def test_the_same_facts_give_the_same_plan() -> None:
    now = OPENED + 5 * HOUR
    assert planned(now, done={"retry": 1}) == planned(now, done={"retry": 1})
