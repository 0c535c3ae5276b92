"""A plain message to the customer from a case (``send_message``), over real HTTP, on SQLite
and PostgreSQL: the merchant's template rendered for the order, sent through the outbox (the
helpdesk ticket when the order has one, else email), on the case's timeline with who sent it;
a double click is one message; an order nobody can be written to is refused.

The outside systems are the desk's default ones (no connector configured): every message is
accepted and logged in the order's ``outbound_calls``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn

from recoverydesk.bootstrap import bootstrap
from recoverydesk.config import Settings
from recoverydesk.entrypoints.api.app import create_app
from recoverydesk.services.clock import SimulatedClock
from tests.e2e.conftest import LiveDesk

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def live(db_url: str) -> Iterator[LiveDesk]:
    """A live desk whose clock stands still (moved by hand): two clicks fall in one second."""
    desk = bootstrap(Settings(database_url=db_url), clock=SimulatedClock(NOW))
    desk.upgrade()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(desk), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the desk did not start"
        time.sleep(0.02)
    live_desk = LiveDesk(desk, f"http://127.0.0.1:{port}")
    try:
        yield live_desk
    finally:
        for client in live_desk.clients:
            client.close()
        server.should_exit = True
        thread.join(timeout=10)
        desk.close()


def _clock(live: LiveDesk) -> SimulatedClock:
    clock = live.desk.clock
    assert isinstance(clock, SimulatedClock)
    return clock


def _at(minutes_ago: int) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat()


def _late_order(ref: str, customer: dict[str, str]) -> list[dict[str, Any]]:
    """An order with an item out of stock: the desk opens a case on it."""
    placed: dict[str, Any] = {
        "id": f"shopify:placed-{ref}",
        "source": "shopify",
        "type": "order.placed",
        "occurred_at": _at(600),
        "order": {
            "ref": ref,
            "channel": "shopify",
            "value": "80.00",
            "currency": "USD",
            "customer": customer,
            "lines": [{"sku": "MUG", "qty": 2, "price": "40.00"}],
            "shipping_address": {"first_name": "Kim", "city": "Berlin"},
        },
    }
    return [placed, *_delay(ref)]


def _delay(ref: str) -> list[dict[str, Any]]:
    return [
        {
            "id": f"wms:short-{ref}",
            "source": "wms",
            "type": "inventory.short",
            "occurred_at": _at(30),
            "order": {"ref": ref},
            "data": {"sku": "MUG", "available": 0},
        }
    ]


def _case_id(http: httpx.Client, ref: str) -> int:
    found = http.get("/api/v1/cases", params={"order": ref, "state": "open"}).json()["cases"]
    assert found, f"no open case on order {ref}"
    return int(found[0]["id"])


def _send(http: httpx.Client, case_id: int, **body: Any) -> httpx.Response:
    return http.post(f"/api/v1/cases/{case_id}/actions", json={"action": "send_message", **body})


def _work(live: LiveDesk) -> None:
    runner = live.desk.job_runner("test-worker")
    for _ in range(20):
        if runner.run_due(limit=50).done == 0:
            return


def _messages(http: httpx.Client, ref: str) -> list[dict[str, Any]]:
    calls = http.get(f"/api/v1/orders/{ref}").json()["outbound_calls"]
    return [call for call in calls if call["action"] == "send_message"]


def test_an_agent_sends_a_plain_message_by_email_once(live: LiveDesk) -> None:
    # given an order with a customer email and an open case on it
    agent = live.client(live.token("acme", "agent"))
    customer = {"id": "c-1", "email": "kim@example.com"}
    assert agent.post("/api/v1/events", json=_late_order("5001", customer)).status_code == 200
    case_id = _case_id(agent, "5001")
    # when the agent sends the delay update twice in the same second (a double click)
    first = _send(agent, case_id, template="delay_update", actor="ana")
    again = _send(agent, case_id, template="delay_update", actor="ana")
    # then the case shows the message once, sent by the agent, and the case is being worked
    assert first.status_code == 200, first.text
    assert again.status_code == 200, again.text
    case = again.json()
    sent = [row for row in case["timeline"] if row["kind"] == "message_sent"]
    assert len(sent) == 1
    assert sent[0]["actor"] == "ana"
    assert sent[0]["detail"]["template"] == "delay_update"
    assert sent[0]["detail"]["system"] == "email"
    assert sent[0]["detail"]["subject"] == "Your order #5001 is delayed"
    assert case["status"] == "in_progress"
    # when the worker runs the outbox
    _work(live)
    # then the customer got one message by email, rendered from the template for this order
    messages = _messages(agent, "5001")
    assert len(messages) == 1
    message = messages[0]
    assert (message["system"], message["result"]) == ("email", "accepted")
    assert message["params"]["to"] == "kim@example.com"
    assert message["params"]["subject"] == "Your order #5001 is delayed"
    assert message["params"]["body"].startswith("Hi Kim,\n\nYour order #5001 is running late.")
    assert message["params"]["body"].endswith("Thanks,\nacme\n")
    key = sent[0]["detail"]["idempotency_key"]
    assert key == f"message:acme:{case_id}:delay_update:{NOW.strftime('%Y%m%dT%H%M%SZ')}"
    assert message["idempotency_key"] == key


def test_the_same_template_a_second_later_is_a_second_message(live: LiveDesk) -> None:
    # given a message sent on a case
    agent = live.client(live.token("acme", "agent"))
    customer = {"id": "c-1", "email": "kim@example.com"}
    agent.post("/api/v1/events", json=_late_order("5002", customer))
    case_id = _case_id(agent, "5002")
    assert _send(agent, case_id, template="refund_status").status_code == 200
    # when the agent sends it again a second later
    _clock(live).advance(timedelta(seconds=1))
    assert _send(agent, case_id, template="refund_status").status_code == 200
    _work(live)
    # then the customer got two messages, and the timeline shows both
    assert len(_messages(agent, "5002")) == 2
    timeline = agent.get(f"/api/v1/cases/{case_id}").json()["timeline"]
    assert sum(row["kind"] == "message_sent" for row in timeline) == 2


def test_an_order_with_a_ticket_is_answered_on_the_ticket(live: LiveDesk) -> None:
    # given an order the customer wrote about (a helpdesk ticket), with an open case
    agent = live.client(live.token("acme", "agent"))
    customer = {"id": "c-1", "email": "kim@example.com"}
    ticket = {
        "id": "helpdesk:ticket-5003",
        "source": "helpdesk",
        "type": "ticket.created",
        "occurred_at": _at(100),
        "order": {"ref": "5003"},
        "data": {"ticket_id": "ZD-77"},
    }
    events = [*_late_order("5003", customer), ticket]
    assert agent.post("/api/v1/events", json=events).status_code == 200
    case_id = _case_id(agent, "5003")
    # when the agent sends a message
    answer = _send(agent, case_id, template="backorder_confirmed")
    assert answer.status_code == 200, answer.text
    _work(live)
    # then it went to the helpdesk, on the order's ticket
    message = _messages(agent, "5003")[0]
    assert (message["system"], message["params"]["ticket"]) == ("helpdesk", "ZD-77")
    assert message["params"]["subject"] == "Your order #5003: we will ship it all together"
    sent = next(row for row in answer.json()["timeline"] if row["kind"] == "message_sent")
    assert sent["detail"]["system"] == "helpdesk"


def test_a_message_nobody_can_receive_or_that_asks_a_decision_is_refused(
    live: LiveDesk,
) -> None:
    # given an order with no email and no helpdesk ticket, with an open case
    agent = live.client(live.token("acme", "agent"))
    assert agent.post("/api/v1/events", json=_late_order("5004", {"id": "c-2"})).status_code == 200
    case_id = _case_id(agent, "5004")
    # when the agent sends a message, then it is refused with no_recipient and nothing is sent
    refused = _send(agent, case_id, template="delay_update")
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "no_recipient"
    # and a template that asks the customer to choose, or none at all, is refused too
    decision = _send(agent, case_id, template="stock_decision")
    assert (decision.status_code, decision.json()["error"]["code"]) == (422, "decision_template")
    unknown = _send(agent, case_id, template="nope")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (422, "no_template")
    assert _send(agent, case_id).status_code == 422
    _work(live)
    assert _messages(agent, "5004") == []
    timeline = agent.get(f"/api/v1/cases/{case_id}").json()["timeline"]
    assert not any(row["kind"] == "message_sent" for row in timeline)
