"""Playbooks end to end on SQLite: the desk plans a case's steps, runs the due ones from the
job queue on the simulated clock, and lets a person run the others."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from recoverydesk.bootstrap import Desk, bootstrap
from recoverydesk.config import Settings
from recoverydesk.domain.cases import Case
from recoverydesk.domain.errors import Conflict, InvalidConfig
from recoverydesk.entrypoints.api.app import create_app
from recoverydesk.services import merchants as admin
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.casework import CaseAction, DeskAction, act_on_case
from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.ports import IncomingEvent, Merchant

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
BASE = "merchant: acme\ntime_zone: UTC\n"
VERSION_2 = (
    BASE
    + """
playbooks:
  payment_recovery:
    version: 2
    categories: [payment_failed]
    steps:
      - {name: retry_authorization, do: command, after: PT1H, every: PT2H, times: 2,
         params: {system: payments, action: retry_payment}}
"""
)


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[tuple[Desk, SimulatedClock, Merchant, Path]]:
    clock = SimulatedClock(T0)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'desk.db'}",
        public_url="https://desk.example",
        decision_secret="a-long-enough-decision-secret",
    )
    app = bootstrap(settings, clock=clock)
    app.upgrade()
    path = tmp_path / "acme.yaml"
    path.write_text(BASE)
    with app.uow() as uow:
        admin.add_merchant(uow, clock=clock, name="acme", config=path)
        uow.commit()
    with app.reader() as uow:
        merchant = uow.merchants.by_name("acme")
    assert merchant is not None
    try:
        yield app, clock, merchant, path
    finally:
        app.close()


def event(event_id: str, kind: str, at: datetime, **data: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "source": "shopify",
        "type": kind,
        "occurred_at": at.isoformat(),
        "order": {
            "ref": "1001",
            "value": "80.00",
            "currency": "USD",
            "channel": "web",
            "placed_at": T0.isoformat(),
            "customer": {"id": "c-1", "email": "kim@example.com"},
        },
        "data": data,
    }


def ingest(app: Desk, merchant: Merchant, *events: dict[str, Any]) -> None:
    app.ingest(merchant, [IncomingEvent(parse_event(e), json.dumps(e)) for e in events])


def run_until(app: Desk, clock: SimulatedClock, moment: datetime) -> None:
    clock.advance_to(moment)
    runner = app.job_runner("test")
    while runner.run_due(limit=50).done:
        pass


def the_case(app: Desk, merchant: Merchant) -> Case:
    """The order's payment case (a stop-ship opens a change-request case beside it)."""
    with app.reader() as uow:
        found = uow.cases.for_orders(merchant.id, ["1001"], open_only=False)["1001"]
    paid = [case for case in found if str(case.category) == "payment_failed"]
    assert len(paid) == 1
    return paid[0]


def timeline(app: Desk, merchant: Merchant, kind: str) -> list[dict[str, Any]]:
    case = the_case(app, merchant)
    with app.reader() as uow:
        rows = uow.cases.timeline(merchant.id, case.id or 0)
    return [row for row in rows if row["kind"] == kind]


def outbox_keys(app: Desk, step: str) -> list[str]:
    with app.reader() as uow:
        listed = uow.jobs.listing(status=None, limit=1000)  # type: ignore[attr-defined]
    return sorted(
        str(row["key"])
        for row in listed
        if row["kind"] == "outbound.send" and f":{step}:" in str(row["key"])
    )


def payment_failed(app: Desk, merchant: Merchant) -> Case:
    ingest(
        app,
        merchant,
        event("shopify:1", "order.placed", T0),
        event("stripe:1", "payment.failed", T0, reason="card_declined"),
    )
    case = the_case(app, merchant)
    assert str(case.category) == "payment_failed"
    return case


def test_payment_retries_run_on_their_schedule_once_each_and_stop_when_paid(
    desk: tuple[Desk, SimulatedClock, Merchant, Path],
) -> None:
    app, clock, merchant, _ = desk
    # given a payment that failed at 09:00
    case = payment_failed(app, merchant)
    key = f"outbound:playbook:acme:{case.id}:retry_authorization"
    # when nothing is due yet, then nothing is sent
    run_until(app, clock, T0 + 30 * timedelta(minutes=1))
    assert outbox_keys(app, "retry_authorization") == []
    # when 10:00 comes, then the first retry goes out under its attempt's key
    run_until(app, clock, T0 + HOUR + timedelta(minutes=1))
    assert outbox_keys(app, "retry_authorization") == [f"{key}:1"]
    # and at 11:00 the customer is asked to pay again, by email
    run_until(app, clock, T0 + 2 * HOUR + timedelta(minutes=1))
    assert outbox_keys(app, "payment_update") == [
        f"outbound:playbook:acme:{case.id}:payment_update:1:message"
    ]
    # when the same events come again and the timers run again, then nothing repeats
    ingest(app, merchant, event("stripe:1", "payment.failed", T0, reason="card_declined"))
    ingest(app, merchant, event("stripe:2", "payment.failed", T0 + 3 * HOUR, reason="again"))
    run_until(app, clock, T0 + 4 * HOUR)
    assert outbox_keys(app, "retry_authorization") == [f"{key}:1"]
    # when 16:00 comes, the second retry goes out
    run_until(app, clock, T0 + 7 * HOUR + timedelta(minutes=1))
    assert outbox_keys(app, "retry_authorization") == [f"{key}:1", f"{key}:2"]
    steps = timeline(app, merchant, "playbook_step")
    retries = [row for row in steps if row["detail"]["step"] == "retry_authorization"]
    assert [row["detail"]["attempt"] for row in retries] == [1, 2]
    assert retries[0]["actor"] == "playbook:payment_recovery@v1"
    assert retries[0]["detail"]["calls"][0]["idempotency_key"] == (
        f"playbook:acme:{case.id}:retry_authorization:1"
    )
    # and the payment system's answers are on the timeline
    answers = timeline(app, merchant, "playbook_answer")
    assert {row["detail"]["step"] for row in answers} >= {"retry_authorization", "payment_update"}
    # when the payment is authorized, the case closes and no third retry is made
    ingest(app, merchant, event("stripe:3", "payment.authorized", T0 + 8 * HOUR, amount="80.00"))
    assert not the_case(app, merchant).is_open
    run_until(app, clock, T0 + 30 * HOUR)
    assert outbox_keys(app, "retry_authorization") == [f"{key}:1", f"{key}:2"]


def test_a_suggested_step_runs_only_when_a_person_runs_it(
    desk: tuple[Desk, SimulatedClock, Merchant, Path],
) -> None:
    app, clock, merchant, _ = desk
    # given a failed payment whose playbook suggests cancelling the unpaid order
    case = payment_failed(app, merchant)
    assert [row["detail"]["step"] for row in timeline(app, merchant, "playbook_suggested")] == [
        "cancel_unpaid"
    ]
    # when days pass, then the desk does not cancel on its own
    run_until(app, clock, T0 + 3 * 24 * HOUR)
    with app.reader() as uow:
        assert uow.cancellations.for_order(merchant.id, "1001") == []
    # when a person runs the step, then the stop-ship workflow starts, in the person's name
    with app.uow() as uow:
        act_on_case(
            uow,
            merchant=merchant,
            case_id=case.id or 0,
            command=CaseAction(DeskAction.RUN_STEP, actor="ana", step="cancel_unpaid"),
            now=clock.now(),
        )
        uow.commit()
    with app.reader() as uow:
        assert len(uow.cancellations.for_order(merchant.id, "1001")) == 1
    runs = [r for r in timeline(app, merchant, "playbook_step") if r["actor"] == "ana"]
    assert [r["detail"]["step"] for r in runs] == ["cancel_unpaid"]
    # and it is done: running it again is refused
    with app.uow() as uow, pytest.raises(Conflict) as refused:
        act_on_case(
            uow,
            merchant=merchant,
            case_id=case.id or 0,
            command=CaseAction(DeskAction.RUN_STEP, actor="ana", step="cancel_unpaid"),
            now=clock.now(),
        )
    assert refused.value.code == "step_not_available"


def test_a_step_that_does_not_apply_is_not_available(
    desk: tuple[Desk, SimulatedClock, Merchant, Path],
) -> None:
    app, clock, merchant, _ = desk
    case = payment_failed(app, merchant)
    # the capture check applies only to an authorized payment
    with app.uow() as uow, pytest.raises(Conflict) as refused:
        act_on_case(
            uow,
            merchant=merchant,
            case_id=case.id or 0,
            command=CaseAction(DeskAction.RUN_STEP, actor="ana", step="capture_check"),
            now=clock.now(),
        )
    assert refused.value.code == "step_not_available"
    assert "not_applicable" in refused.value.message


def test_a_changed_playbook_drives_the_later_steps_and_the_timeline_names_its_version(
    desk: tuple[Desk, SimulatedClock, Merchant, Path],
) -> None:
    app, clock, merchant, path = desk
    case = payment_failed(app, merchant)
    run_until(app, clock, T0 + HOUR + timedelta(minutes=1))
    # when the merchant applies version 2 of the playbook (two retries, two hours apart)
    path.write_text(VERSION_2)
    with app.uow() as uow:
        assert admin.apply_settings(uow, clock=clock, name="acme", config=path) == 2
        uow.commit()
    run_until(app, clock, T0 + 30 * HOUR)
    # then the second retry was made under version 2, and no third one
    retries = [
        row["detail"] | {"actor": row["actor"]}
        for row in timeline(app, merchant, "playbook_step")
        if row["detail"]["step"] == "retry_authorization"
    ]
    assert [(r["attempt"], r["version"], r["config_version"]) for r in retries] == [
        (1, 1, 1),
        (2, 2, 2),
    ]
    assert retries[1]["actor"] == "playbook:payment_recovery@v2"
    key = f"outbound:playbook:acme:{case.id}:retry_authorization"
    assert outbox_keys(app, "retry_authorization") == [f"{key}:1", f"{key}:2"]
    # and version 2 has no message step: none was sent
    assert outbox_keys(app, "payment_update") == []


@pytest.mark.parametrize(
    ("playbook", "where"),
    [
        (
            "  payment_recovery:\n    categories: [payment_failed]\n    steps:\n"
            "      - {name: a, do: command, params: {system: payments, action: x}}\n"
            "      - {name: b, do: command, params: {system: payments, action: x}}\n"
            "      - {name: c, do: check, checklist: [x], when: 'order.value >'}\n",
            "playbooks.payment_recovery.steps.2.when",
        ),
        (
            "  payment_recovery:\n    categories: [payment_failed]\n    steps:\n"
            "      - {name: a, do: teleport}\n",
            "playbooks.payment_recovery.steps.0.do",
        ),
        (
            "  payment_recovery:\n    categories: [payment_failed]\n    steps:\n"
            "      - {name: a, do: message, params: {template: no_such_template}}\n",
            "playbooks.payment_recovery.steps.0.params.template",
        ),
        (
            "  payment_recovery:\n    categories: [payment_failed]\n    steps:\n"
            "      - {name: a, do: check, checklist: [x]}\n"
            "      - {name: a, do: check, checklist: [x]}\n",
            "playbooks.payment_recovery.steps.1.name",
        ),
        (
            "  payment_recovery:\n    categories: [payment_failed]\n    steps:\n"
            "      - {name: a, do: check, checklist: [x], after_step: nowhere}\n",
            "playbooks.payment_recovery.steps.0.after_step",
        ),
        (
            "  payment_recovery:\n    categories: [no_such_category]\n    steps: []\n",
            "playbooks.payment_recovery.categories.0",
        ),
    ],
)
def test_a_bad_playbook_is_refused_naming_its_path(playbook: str, where: str) -> None:
    with pytest.raises(InvalidConfig) as refused:
        admin.parse_settings(BASE + "playbooks:\n" + playbook, "acme.yaml")
    assert f": {where}: " in refused.value.message, refused.value.message


def test_the_api_shows_the_plan_and_runs_a_step(
    desk: tuple[Desk, SimulatedClock, Merchant, Path],
) -> None:
    app, clock, merchant, _ = desk
    case = payment_failed(app, merchant)
    with app.uow() as uow:
        token = admin.create_token(uow, clock=clock, merchant_name="acme", role="agent")
        uow.commit()
    asyncio.run(_plan_and_run_over_http(app, token, case.id or 0))


async def _plan_and_run_over_http(app: Desk, token: str, case_id: int) -> None:
    transport = httpx.ASGITransport(app=create_app(app))
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="https://desk.example", headers=headers
    ) as http:
        # when the desk reads the case, then it sees its playbook and where each step stands
        body = (await http.get(f"/api/v1/cases/{case_id}")).json()
        assert (body["playbook"]["name"], body["playbook"]["version"]) == ("payment_recovery", 1)
        plan = {step["step"]: step for step in body["playbook"]["steps"]}
        assert plan["retry_authorization"]["state"] == "scheduled"
        assert plan["retry_authorization"]["due_at"] == (T0 + HOUR).isoformat()
        assert (plan["capture_check"]["state"], plan["cancel_unpaid"]["state"]) == (
            "not_applicable",
            "suggested",
        )
        assert plan["cancel_unpaid"]["label"] == "Cancel the unpaid order"
        # when an agent runs the suggested step, then it is done and on the timeline
        run = {"action": "run_step", "step": "cancel_unpaid", "actor": "ana"}
        answer = await http.post(f"/api/v1/cases/{case_id}/actions", json=run)
        assert answer.status_code == 200, answer.text
        plan = {step["step"]: step for step in answer.json()["playbook"]["steps"]}
        assert plan["cancel_unpaid"]["state"] == "done"
        ran = [row for row in answer.json()["timeline"] if row["kind"] == "playbook_step"]
        assert [(row["actor"], row["detail"]["step"]) for row in ran] == [("ana", "cancel_unpaid")]
        # when it runs a step that does not apply, then it is told why, as a conflict
        other = {"action": "run_step", "step": "capture_check"}
        refused = await http.post(f"/api/v1/cases/{case_id}/actions", json=other)
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "step_not_available"
