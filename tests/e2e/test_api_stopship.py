"""The stop-ship workflow and the refund ledger through the HTTP API, on SQLite and PostgreSQL.

The outside systems are the desk's default ones until connectors are configured: every command
is accepted and logged (``outbound_calls``); the warehouse answers by posting an event.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.e2e.conftest import LiveDesk


def _at(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def _event(
    eid: str, etype: str, minutes_ago: int, ref: str = "2001", **data: Any
) -> dict[str, Any]:
    return {
        "id": eid,
        "source": "wms" if etype.startswith(("fulfillment", "stopship")) else "shopify",
        "type": etype,
        "occurred_at": _at(minutes_ago),
        "order": {"ref": ref},
        "data": data,
    }


def _placed(ref: str, minutes_ago: int) -> dict[str, Any]:
    return {
        "id": f"shopify:placed-{ref}",
        "source": "shopify",
        "type": "order.placed",
        "occurred_at": _at(minutes_ago),
        "order": {
            "ref": ref,
            "channel": "shopify",
            "fulfillment_type": "3pl",
            "value": "150.00",
            "currency": "USD",
            "placed_at": _at(minutes_ago),
            "customer": {"id": "c-9", "email": "kim@example.com", "tier": "standard"},
            "lines": [
                {"sku": "LAMP", "qty": 1, "price": "100.00"},
                {"sku": "BULB", "qty": 2, "price": "25.00"},
            ],
        },
    }


def _captured_and_picking(ref: str) -> list[dict[str, Any]]:
    return [
        _placed(ref, 120),
        _event(f"psp:cap-{ref}", "payment.captured", 119, ref, amount="150.00", capture_id="ch"),
        _event(f"wms:pick-{ref}", "fulfillment.picking", 5, ref),
    ]


def _work(live: LiveDesk) -> None:
    """Run every due job (the worker of a real desk does this on its own)."""
    runner = live.desk.job_runner("test-worker")
    for _ in range(20):
        if runner.run_due(limit=50).done == 0:
            return


def _case_of(http: httpx.Client, ref: str) -> dict[str, Any]:
    found = http.get("/api/v1/cases", params={"order": ref, "category": "change_request"}).json()
    case_id = found["cases"][0]["id"]
    detail: dict[str, Any] = http.get(f"/api/v1/cases/{case_id}").json()
    return detail


def test_a_cancellation_stops_the_warehouse_then_refunds_once(live: LiveDesk) -> None:
    # given an order that is being picked, its payment captured
    agent = live.client(live.token("acme", "agent"))
    assert agent.post("/api/v1/events", json=_captured_and_picking("2001")).status_code == 200
    # when an agent starts a cancellation, and the same request is retried
    body = {"requested_by": "customer", "reason": "changed_mind", "request_id": "tkt-5"}
    first = agent.post("/api/v1/orders/2001/cancellations", json=body)
    again = agent.post("/api/v1/orders/2001/cancellations", json=body)
    # then one workflow exists: the retry joins it (200, joined) instead of starting a second
    assert first.status_code == 201, first.text
    assert (again.status_code, again.json()["joined"]) == (200, True)
    assert again.json()["id"] == first.json()["id"]
    assert first.json()["classification"] == "customer"
    # when the worker runs: the warehouse is asked to hold and cancel, nothing else yet
    _work(live)
    case = _case_of(agent, "2001")
    progress = case["cancellation"]
    assert progress["stage"] == "stopping"
    assert progress["timestamps"]["stop_sent_at"] is not None
    assert progress["timestamps"]["payment_action_at"] is None  # no refund before the stop
    assert progress["timestamps"]["customer_notified_at"] is None
    # when the warehouse acknowledges the stop
    ack = _event("wms:ack-2001", "stopship.acknowledged", 0, "2001")
    assert agent.post("/api/v1/events", json=ack).status_code == 200
    _work(live)
    # then the ERP is updated, the captured amount refunded once, the customer told, and the
    # case closed as cancelled, with every step on the timeline
    case = _case_of(agent, "2001")
    progress = case["cancellation"]
    assert (progress["stage"], progress["outcome"]) == ("done", "stopped")
    assert all(progress["timestamps"][name] for name in ("erp_updated_at", "payment_action_at"))
    assert (
        progress["timestamps"]["customer_notified_at"]
        >= progress["timestamps"]["stop_acknowledged_at"]
    )
    assert (case["status"], case["outcome"]) == ("closed", "cancelled")
    entries = case["ledger"]["entries"]
    assert [(e["kind"], e["amount"], e["status"]) for e in entries] == [
        ("refund", "150.00", "sent")
    ]
    assert case["ledger"]["balance"]["refundable"] == "0.00"
    kinds = [row["kind"] for row in case["timeline"]]
    assert {"stop_rule", "command_answered", "outcome"} <= set(kinds)
    # and the order 360 lists every outside call with its idempotency key
    order = agent.get("/api/v1/orders/2001").json()
    calls = [(c["system"], c["action"]) for c in order["outbound_calls"]]
    assert calls[-3:] == [("erp", "erp_update"), ("payments", "refund"), ("email", "send_message")]
    assert len({c["idempotency_key"] for c in order["outbound_calls"]}) == len(calls)
    assert order["fully_cancelled"] is True


def test_payment_actions_are_refused_with_the_rule_that_forbids_them(live: LiveDesk) -> None:
    # given a cancelled and refunded order (as in the previous test)
    agent = live.client(live.token("acme", "agent"))
    finance = live.client(live.token("acme", "finance"))
    agent.post("/api/v1/events", json=_captured_and_picking("2002"))
    agent.post("/api/v1/orders/2002/cancellations", json={"reason": "changed_mind"})
    _work(live)
    agent.post("/api/v1/events", json=_event("wms:ack-2002", "stopship.acknowledged", 0, "2002"))
    _work(live)
    case_id = _case_of(agent, "2002")["id"]
    url = f"/api/v1/cases/{case_id}/actions"
    # when an agent asks for a refund: finance-only
    refused = agent.post(url, json={"action": "refund", "amount": "10.00"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "role_forbidden"
    # when finance asks for more than is left, a void of a captured payment, a retry of nothing
    for action, code in (
        ({"action": "refund", "amount": "10.00"}, "refund_exceeds_captured"),
        ({"action": "void"}, "payment_captured"),
        ({"action": "retry_step"}, "no_open_cancellation"),
        ({"action": "mark_converted"}, "no_open_cancellation"),
    ):
        answer = finance.post(url, json=action)
        # then each is refused with a clear code, and nothing is sent
        assert answer.status_code == 409, (action, answer.text)
        assert answer.json()["error"]["code"] == code
    for amount in (None, "-5", "1e9999", "NaN", "abc", "0.001"):
        bad: dict[str, Any] = {"action": "refund", "amount": amount}
        assert finance.post(url, json=bad).status_code == 422, bad
    order = agent.get("/api/v1/orders/2002").json()
    assert [c["action"] for c in order["outbound_calls"]].count("refund") == 1


def test_a_refund_on_an_order_that_still_ships_needs_to_be_a_concession(live: LiveDesk) -> None:
    # given a shipped order with a captured payment and an open delivery exception
    agent = live.client(live.token("acme", "agent"))
    finance = live.client(live.token("acme", "finance"))
    events = [
        _placed("2003", 300),
        _event("psp:cap-2003", "payment.captured", 299, "2003", amount="150.00"),
        _event("wms:ship-2003", "fulfillment.shipped", 200, "2003", tracking="1Z9"),
        _event("carrier:late-2003", "delivery.exception", 100, "2003", kind="delay"),
    ]
    agent.post("/api/v1/events", json=events)
    found = agent.get("/api/v1/cases", params={"order": "2003"}).json()["cases"]
    url = f"/api/v1/cases/{found[0]['id']}/actions"
    # when finance refunds without saying it is a concession: that would be refund leakage
    leak = finance.post(url, json={"action": "refund", "amount": "20.00"})
    assert leak.status_code == 409
    assert leak.json()["error"]["code"] == "refund_would_leak"
    # when it is a concession, asked twice (a double click)
    body = {"action": "refund", "amount": "20.00", "concession": True, "note": "late parcel"}
    assert finance.post(url, json=body).status_code == 200
    assert finance.post(url, json=body).status_code == 200
    _work(live)
    # then one refund went out, with its provider answer on the case timeline
    detail = agent.get(f"/api/v1/cases/{found[0]['id']}").json()
    entries = detail["ledger"]["entries"]
    assert [(e["kind"], e["amount"], e["status"]) for e in entries] == [("refund", "20.00", "sent")]
    actions = [row for row in detail["timeline"] if row["kind"] == "payment_action"]
    assert [(a["detail"]["amount"], a["detail"]["result"]) for a in actions] == [("20.00", "sent")]
    order = agent.get("/api/v1/orders/2003").json()
    payments = [c["action"] for c in order["outbound_calls"] if c["system"] == "payments"]
    assert payments == ["refund"]  # once; the delay message the playbook sent is not money


def test_cancellation_requests_that_cannot_start_are_refused(live: LiveDesk) -> None:
    agent = live.client(live.token("acme", "agent"))
    other = live.client(live.token("globex", "agent"))
    agent.post("/api/v1/events", json=_captured_and_picking("2004"))
    # an unknown order, another merchant's order, a malformed body
    missing = agent.post("/api/v1/orders/nope/cancellations", json={})
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "order_not_found")
    foreign = other.post("/api/v1/orders/2004/cancellations", json={})
    assert foreign.status_code == 404
    malformed: list[dict[str, Any]] = [
        {"requested_by": "robot"},
        {"lines": []},
        {"lines": [{"sku": "LAMP", "qty": 0}]},
        {"surprise": 1},
    ]
    for bad in malformed:
        answer = agent.post("/api/v1/orders/2004/cancellations", json=bad)
        assert answer.status_code == 422, bad
        assert answer.json()["error"]["code"] == "invalid_request"
    # a partial cancel names its lines
    answer = agent.post(
        "/api/v1/orders/2004/cancellations", json={"lines": [{"sku": "LAMP", "qty": 1}]}
    )
    assert answer.status_code == 201
    assert answer.json()["lines"] == {"LAMP": 1}
