"""A customer decision end to end, over real HTTP, on SQLite and PostgreSQL: an agent offers it
on a case, the message goes out with its links, the customer opens the page and chooses, and
the choice lands on the case; a link that was forged or has expired is refused; and when nobody
answers, the default applies at the window's end.

The outside systems are the desk's default ones (no connector configured): every message is
accepted and logged in the order's ``outbound_calls``, which is where the test reads the link.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.decisions import Decision, DecisionLinks
from recoverydesk.services.jobs import JobRunner
from tests.e2e.conftest import LiveDesk

SECRET = "a-long-random-test-secret-for-decision-links"
CHOICES = ["substitute", "split", "wait", "cancel"]


@pytest.fixture(autouse=True)
def _decision_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """The desk's signing secret, set before the live desk reads its settings (PostgreSQL
    requires one)."""
    monkeypatch.setenv("RECOVERYDESK_DECISION_SECRET", SECRET)


def _at(minutes_ago: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


def _short_order(ref: str) -> list[dict[str, Any]]:
    return [
        {
            "id": f"shopify:placed-{ref}",
            "source": "shopify",
            "type": "order.placed",
            "occurred_at": _at(60),
            "order": {
                "ref": ref,
                "channel": "shopify",
                "value": "129.00",
                "currency": "USD",
                "customer": {"id": "c-1", "email": "kim@example.com"},
                "lines": [{"sku": "LAMP", "qty": 1, "price": "129.00"}],
                "shipping_address": {"first_name": "Kim", "city": "Berlin"},
            },
        },
        {
            "id": f"wms:short-{ref}",
            "source": "wms",
            "type": "inventory.short",
            "occurred_at": _at(30),
            "order": {"ref": ref},
            "data": {"sku": "LAMP", "available": 0},
        },
    ]


def _work(live: LiveDesk, clock: SimulatedClock | None = None) -> None:
    """Run every due job (at ``clock``'s time when given), as the desk's worker does."""
    runner = (
        JobRunner(
            uow_factory=live.desk.uow,
            clock=clock,
            handlers=live.desk.handlers,
            worker="later-worker",
        )
        if clock
        else live.desk.job_runner("test-worker")
    )
    for _ in range(20):
        if runner.run_due(limit=50).done == 0:
            return


def _case_id(http: httpx.Client, ref: str) -> int:
    found = http.get("/api/v1/cases", params={"order": ref, "category": "inventory_mismatch"})
    return int(found.json()["cases"][0]["id"])


def _offer(http: httpx.Client, case_id: int, **changes: Any) -> dict[str, Any]:
    body = {
        "action": "offer_decision",
        "template": "stock_decision",
        "choices": CHOICES,
        "default": "wait",
        "window": "PT48H",
        **changes,
    }
    answer = http.post(f"/api/v1/cases/{case_id}/actions", json=body)
    assert answer.status_code == 200, answer.text
    detail: dict[str, Any] = answer.json()
    return detail


def _message(http: httpx.Client, ref: str) -> dict[str, Any]:
    calls = http.get(f"/api/v1/orders/{ref}").json()["outbound_calls"]
    sent = [call for call in calls if call["action"] == "send_message"]
    assert len(sent) == 1, calls
    return sent[0]


def _link(body: str, choice: str) -> str:
    found = re.search(rf"(http://\S+/decide/[A-Za-z0-9._-]+)\?choice={choice}\b", body)
    assert found, body
    return found.group(1)


def test_the_customer_chooses_on_the_page_and_the_choice_moves_the_case(live: LiveDesk) -> None:
    # given an order with a short item, and its stock case
    agent = live.client(live.token("acme", "agent"))
    assert agent.post("/api/v1/events", json=_short_order("3001")).status_code == 200
    case_id = _case_id(agent, "3001")
    # when the agent offers the customer a decision
    offered = _offer(agent, case_id)
    # then the case waits on the customer, and the offer is on its timeline
    assert offered["status"] == "waiting_customer"
    offer = next(row for row in offered["timeline"] if row["kind"] == "decision_offered")
    assert (offer["detail"]["choices"], offer["detail"]["default"]) == (CHOICES, "wait")
    # when the worker sends it: one email to the customer, with a link per choice
    _work(live)
    message = _message(agent, "3001")
    assert (message["system"], message["result"]) == ("email", "accepted")
    params = message["params"]
    assert params["to"] == "kim@example.com"
    assert params["subject"] == "Your order #3001: an item is out of stock"
    assert params["body"].startswith("Hi Kim,")
    page = _link(params["body"], "wait")
    assert all(f"{page}?choice={choice}" in params["body"] for choice in CHOICES)

    customer = live.client()  # no token: the link is the capability
    # when the customer opens the page
    shown = customer.get(page)
    # then it is a small HTML page with one form (and button) per choice, and no script
    assert shown.status_code == 200
    assert shown.headers["content-type"].startswith("text/html")
    assert shown.headers["cache-control"] == "no-store"
    assert shown.text.count('<form method="post"') == 4
    for choice in CHOICES:
        assert f'name="choice" value="{choice}"' in shown.text
    assert "<script" not in shown.text
    assert "Wait and ship everything together" in shown.text
    # and a link with a choice asks to confirm that one
    assert "Confirm: Wait and ship everything together" in customer.get(f"{page}?choice=wait").text

    # when the customer chooses to wait
    chosen = customer.post(page, data={"choice": "wait"})
    # then the page thanks them, and the case is back at work with the choice on its timeline
    assert chosen.status_code == 200
    assert "You chose: <strong>Wait and ship everything together" in chosen.text
    case = agent.get(f"/api/v1/cases/{case_id}").json()
    assert case["status"] == "in_progress"
    event_id = f"desk:decision:{case_id}:{offer['detail']['decision']}"
    assert event_id in case["event_ids"]
    rows = {row["kind"]: row for row in case["timeline"] if row["event_id"] == event_id}
    assert rows["event"]["detail"]["type"] == "customer.replied"
    assert rows["decision_answered"]["detail"] == {
        "decision": offer["detail"]["decision"],
        "choice": "wait",
        "defaulted": False,
    }
    events = agent.get("/api/v1/orders/3001").json()["events"]
    assert [e["type"] for e in events if e["event_id"] == event_id] == ["customer.replied"]

    # when the customer clicks again (the same choice, then another one)
    again = customer.post(page, data={"choice": "wait"})
    other = customer.post(page, data={"choice": "cancel"})
    # then the first answer stands, and the page says so
    assert again.status_code == 200
    assert "You already chose: <strong>Wait and ship everything together" in again.text
    assert other.status_code == 409
    assert "You already chose: <strong>Wait and ship everything together" in other.text
    assert "You already chose" in customer.get(page).text
    timeline = agent.get(f"/api/v1/cases/{case_id}").json()["timeline"]
    assert sum(row["kind"] == "decision_answered" for row in timeline) == 1


def test_forged_expired_and_wrong_answers_are_refused(live: LiveDesk) -> None:
    # given a decision offered on a stock case
    agent = live.client(live.token("acme", "agent"))
    agent.post("/api/v1/events", json=_short_order("3002"))
    case_id = _case_id(agent, "3002")
    _offer(agent, case_id, choices=["wait", "cancel"], default="cancel")
    _work(live)
    page = _link(_message(agent, "3002")["params"]["body"], "wait")
    customer = live.client()
    # when the customer sends a choice the decision did not offer
    wrong = customer.post(page, data={"choice": "refund"})
    # then it is refused and nothing is recorded
    assert wrong.status_code == 422
    assert "Not one of the choices" in wrong.text
    assert agent.get(f"/api/v1/cases/{case_id}").json()["status"] == "waiting_customer"

    # when the link is tampered with, or made up
    token = page.rsplit("/", 1)[1]
    tampered = page[: -len(token)] + token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for forged in (tampered, f"{live.base_url}/decide/not-a-token"):
        # then the page is not found, for a GET and a POST alike
        assert customer.get(forged).status_code == 404
        refused = customer.post(forged, data={"choice": "wait"})
        assert refused.status_code == 404
        assert "This link is not valid" in refused.text

    # when a link signed by the desk has expired
    with live.desk.reader() as uow:
        merchant = uow.merchants.by_name("acme")
    assert merchant is not None
    past = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    expired = DecisionLinks(SECRET, live.base_url).page(
        Decision(merchant.id, case_id, "old-one", ("wait", "cancel"), "cancel", past)
    )
    # then the page says so and what happens now, and an answer is refused
    shown = customer.get(expired)
    assert shown.status_code == 410
    assert "This link has expired" in shown.text
    assert "are going ahead with: <strong>Cancel my order" in shown.text
    assert customer.post(expired, data={"choice": "wait"}).status_code == 410
    assert agent.get(f"/api/v1/cases/{case_id}").json()["status"] == "waiting_customer"


def test_the_default_applies_when_nobody_answers(live: LiveDesk) -> None:
    # given a decision with a one-hour window that the customer never answers
    agent = live.client(live.token("acme", "agent"))
    agent.post("/api/v1/events", json=_short_order("3003"))
    case_id = _case_id(agent, "3003")
    offered = _offer(agent, case_id, window="PT1H", decision="stock-3003")
    _work(live)
    page = _link(_message(agent, "3003")["params"]["body"], "cancel")
    expires_at = next(
        row["detail"]["expires_at"]
        for row in offered["timeline"]
        if row["kind"] == "decision_offered"
    )
    # when the worker runs after the window has closed
    _work(live, SimulatedClock(datetime.now(UTC) + timedelta(hours=2)))
    # then the default was recorded as the customer's answer, marked as a default
    case = agent.get(f"/api/v1/cases/{case_id}").json()
    assert case["status"] == "in_progress"
    answered = [row for row in case["timeline"] if row["kind"] == "decision_answered"]
    assert [row["detail"] for row in answered] == [
        {"decision": "stock-3003", "choice": "wait", "defaulted": True}
    ]
    event_id = f"desk:decision:{case_id}:stock-3003"
    stored = [
        e for e in agent.get("/api/v1/orders/3003").json()["events"] if e["event_id"] == event_id
    ]
    assert len(stored) == 1
    assert datetime.fromisoformat(stored[0]["occurred_at"]) == datetime.fromisoformat(expires_at)
    # and the link now says the time ran out and what the desk did
    customer = live.client()
    late = customer.post(page, data={"choice": "cancel"})
    assert late.status_code == 410
    assert "went ahead with: <strong>Wait and ship everything together" in late.text
    # and running the timer again changes nothing
    _work(live, SimulatedClock(datetime.now(UTC) + timedelta(hours=3)))
    timeline = agent.get(f"/api/v1/cases/{case_id}").json()["timeline"]
    assert sum(row["kind"] == "decision_answered" for row in timeline) == 1


def test_an_offer_with_a_mistake_is_refused_with_its_field(live: LiveDesk) -> None:
    agent = live.client(live.token("acme", "agent"))
    agent.post("/api/v1/events", json=_short_order("3004"))
    case_id = _case_id(agent, "3004")
    url = f"/api/v1/cases/{case_id}/actions"
    base = {"action": "offer_decision", "template": "stock_decision", "choices": ["wait"]}
    for body, code, field in [
        ({**base, "default": "cancel"}, "invalid_input", "default"),
        ({**base, "default": "wait", "template": "nope"}, "no_template", "template"),
        ({**base, "default": "wait", "window": "PT1M"}, "invalid_input", "window"),
        ({**base, "default": "wait", "choices": ["teleport"]}, "invalid_input", "choices"),
    ]:
        answer = agent.post(url, json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == code
        assert answer.json()["error"]["message"].startswith(field)
    # and nothing was sent or changed
    assert agent.get(f"/api/v1/cases/{case_id}").json()["status"] != "waiting_customer"
