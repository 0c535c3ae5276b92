"""``recoverydesk demo`` wired to the sandbox emulators, in-process: the demo's setup starts the
3PL, Stripe, Shopify, AfterShip and Zendesk emulators, configures the demo merchant against them
and seeds them from the generated stream's past; a cancellation through the API then runs against
the emulators for real, and the stream's live events reach the desk as the vendors' webhooks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from recoverydesk.bootstrap import bootstrap
from recoverydesk.config import Settings
from recoverydesk.entrypoints.demo import DemoSandbox, banner, setup_demo
from recoverydesk.sandbox.serving import free_port

SEED, ORDERS = 13, 200  # a stream with captured and rejecting orders at the warehouse now
AT_WAREHOUSE = ("released", "picking", "packed")


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[DemoSandbox]:
    desk = bootstrap(Settings(database_url=f"sqlite:///{tmp_path / 'desk.db'}"))
    desk.upgrade()
    port = free_port()
    found = setup_demo(
        desk,
        host="127.0.0.1",
        port=port,
        orders=ORDERS,
        seed=SEED,
        pump_every=None,
        ack_delay=(0, 0),
    )
    try:
        found.serve_in_background(host="127.0.0.1", port=port, run_worker=False)
        yield found
    finally:
        found.close()
        desk.close()


@pytest.fixture
def api(sandbox: DemoSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=sandbox.desk_url,
        headers={"Authorization": f"Bearer {sandbox.token}"},
        timeout=30,
    ) as client:
        yield client


def _candidates(sandbox: DemoSandbox, mode: str, *, captured: bool) -> list[str]:
    seeded = sandbox.seeded
    return sorted(
        ref
        for ref, status in seeded.statuses.items()
        if status in AT_WAREHOUSE
        and ref not in seeded.asked
        and seeded.behaviours[ref].mode == mode
        and (ref in seeded.captured) == captured
    )


def _workflow(api: httpx.Client, ref: str) -> dict[str, Any]:
    found = api.get("/api/v1/cases", params={"order": ref, "category": "change_request"})
    case_id = found.json()["cases"][0]["id"]
    detail = api.get(f"/api/v1/cases/{case_id}")
    assert detail.status_code == 200, detail.text
    workflow: dict[str, Any] = detail.json()["cancellation"]
    return workflow


def _cancel_until_finished(sandbox: DemoSandbox, api: httpx.Client, ref: str) -> dict[str, Any]:
    started = api.post(
        f"/api/v1/orders/{ref}/cancellations",
        json={"requested_by": "customer", "reason": "changed_mind"},
    )
    assert started.status_code == 201, started.text
    runner = sandbox.desk.job_runner("test-worker")
    deadline = time.monotonic() + 60
    while True:
        for _ in range(30):
            if runner.run_due(limit=100).done == 0:
                break
        workflow = _workflow(api, ref)
        if workflow["stage"] in ("done", "exception"):
            return workflow
        assert time.monotonic() < deadline, workflow
        sandbox.warehouse.deliver_due()  # the emulator's pump


def _stops(sandbox: DemoSandbox, ref: str) -> list[tuple[str, str]]:
    return sorted((r.action, r.key) for r in sandbox.warehouse.received if r.ref == ref)


def _sent_keys(workflow: dict[str, Any]) -> list[tuple[str, str]]:
    sent = {c["action"]: c["idempotency_key"] for c in workflow["commands"]}
    return sorted([("cancel", sent["wms_cancel"]), ("hold", sent["wms_hold"])])


def test_the_demo_names_its_emulators_and_seeds_them(sandbox: DemoSandbox) -> None:
    assert sandbox.warehouse_url.startswith("http://127.0.0.1:")
    assert sandbox.payments_url.startswith("http://127.0.0.1:")
    assert sandbox.stored > 0
    seeded = sandbox.seeded
    assert seeded.lines
    assert {b.mode for b in seeded.behaviours.values()} >= {"ack", "late", "reject", "never"}
    for ref in seeded.lines:
        order = sandbox.warehouse.order(ref)
        assert order is not None
    for ref, intent in seeded.intents.items():
        status = sandbox.payments.payment_intent(intent)["status"]
        if ref in seeded.awaiting:  # the customer pays later: the merchant day confirms it
            assert status == "requires_payment_method"
        else:
            assert status == ("succeeded" if ref in seeded.captured else "requires_capture")


def test_an_acknowledged_stop_of_a_captured_order_is_refunded_once_at_stripe(
    sandbox: DemoSandbox, api: httpx.Client
) -> None:
    ref = _candidates(sandbox, "ack", captured=True)[0]
    workflow = _cancel_until_finished(sandbox, api, ref)
    # the warehouse took hold + cancel under the desk's keys, and acknowledged them
    assert _stops(sandbox, ref) == _sent_keys(workflow)
    assert (workflow["stage"], workflow["outcome"]) == ("done", "stopped"), workflow
    order = sandbox.warehouse.order(ref)
    assert order is not None
    assert (order["held"], order["cancelled"]) == (True, True)
    # and Stripe holds exactly one refund of the order's payment
    intent = sandbox.seeded.intents[ref]
    refunds = [r for r in sandbox.payments.refunds() if r["payment_intent"] == intent]
    assert len(refunds) == 1, refunds
    assert refunds[0]["metadata"]["order_ref"] == ref
    amount = sandbox.payments.payment_intent(intent)["amount_received"]
    assert refunds[0]["amount"] == amount
    assert amount > 0


def test_a_rejected_stop_ends_as_an_exception_without_a_refund(
    sandbox: DemoSandbox, api: httpx.Client
) -> None:
    refs = _candidates(sandbox, "reject", captured=True) + _candidates(
        sandbox, "reject", captured=False
    )
    ref = refs[0]
    workflow = _cancel_until_finished(sandbox, api, ref)
    assert _stops(sandbox, ref) == _sent_keys(workflow)
    assert (workflow["stage"], workflow["outcome"]) == ("exception", "exception"), workflow
    assert workflow["exception_reason"] == "stop_rejected"
    intent = sandbox.seeded.intents.get(ref)
    assert [r for r in sandbox.payments.refunds() if r["payment_intent"] == intent] == []


def test_the_demo_names_every_emulator_it_runs(sandbox: DemoSandbox) -> None:
    shown = banner(sandbox, sandbox.desk_url, 1.0)
    for name, url in {**sandbox.vendors.urls(), "3PL": sandbox.warehouse_url}.items():
        assert f"{name}" in shown
        assert url in shown


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["occurred_at"]).replace("Z", "+00:00"))


def test_live_events_reach_the_desk_as_the_vendors_webhooks(
    sandbox: DemoSandbox, api: httpx.Client
) -> None:
    # given the demo's next forty minutes, handed to the merchant day as the feeder does
    start = sandbox.future[0].event.occurred_at
    soon = [
        json.loads(i.raw)
        for i in sandbox.future
        if i.event.occurred_at <= start + timedelta(minutes=40)
    ]
    # when the merchant day plays them and the pump delivers what is due
    sandbox.day.play(soon)
    sandbox.day.deliver_due(_at(soon[-1]))
    # then the vendors took them, and the desk every webhook they sent
    tally = sandbox.day.tally
    assert not tally.refused, tally.refused
    assert tally.delivered["shopify"] > 0
    assert tally.delivered["stripe"] > 0
    # and a Shopify order placed live is known by its Shopify id, paid through Stripe
    paid = {e["order"]["ref"] for e in soon if e["type"] == "payment.authorized"}
    placed = next(
        e
        for e in soon
        if (e["source"], e["type"]) == ("shopify", "order.placed") and e["order"]["ref"] in paid
    )
    ref = sandbox.day.desk_ref(placed["order"]["ref"])
    assert ref != placed["order"]["ref"]
    answer = api.get(f"/api/v1/orders/{ref}")
    assert answer.status_code == 200, answer.text
    order = answer.json()
    assert (order["channel"], order["fulfillment_type"]) == (
        "shopify",
        placed["order"]["fulfillment_type"],
    )
    assert _at({"occurred_at": order["ship_by"]}) == _at(
        {"occurred_at": placed["order"]["ship_by"]}
    )
    assert Decimal(order["payment"]["authorized"]) == Decimal(placed["order"]["value"])
    assert order["system_ids"]["stripe_payment_intent"].startswith("pi_")
    sources = {e["source"] for e in order["events"]}
    assert {"shopify", "psp"} <= sources
    assert not any(e["event_id"] == placed["id"] for e in order["events"])
