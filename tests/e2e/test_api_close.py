"""Closing cases through the API (F15, F16), over real HTTP, on SQLite and PostgreSQL.

A case closes on an outcome the source systems confirmed, with a root cause from the merchant's
list: ``close`` finishes a resolved case (its outcome verified, no root cause matched), refuses
an open case (``outcome_not_verified``) unless the outcome is one only a person decides (denied,
concession), and refuses a root cause not in the list (``unknown_root_cause``).
``set_root_cause`` corrects a closed case's. Each is on the timeline with who did it.
"""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent
from typing import Any

import httpx

from recoverydesk.services import merchants as admin
from tests.e2e.conftest import LiveDesk

# The merchant's own list replaces the defaults: ``customer_card_declined`` is not in it.
CONFIG = dedent(
    """\
    merchant: acme
    taxonomy:
      categories:
        - code: gift_card_issue
          phase: post-fulfilment
    openers:
      - name: gift_card_ticket
        when: event.type == "ticket.created" && has(event.data.topic)
              && event.data.topic == "gift_card"
        category: gift_card_issue
        closed_by: {payment.refunded: refunded}
    members:
      - name: ann
    root_causes:
      - code: card_declined
        label: Card declined
        owner: payments team
        categories: [payment_failed]
      - code: gift_card_not_activated
        label: The gift card was sold but never activated
        owner: ann
        categories: [gift_card_issue]
        outcomes: [substituted]
      - code: gift_card_expired
        label: The gift card had expired
        owner: merchandising
        categories: [gift_card_issue]
        outcomes: [substituted]
      - code: swap_out_of_policy
        label: The customer asked for a swap the policy does not allow
        owner: CX
        categories: [change_request]
        outcomes: [cancelled]
    """
)


def event(eid: str, kind: str, at: str, ref: str, **data: Any) -> dict[str, Any]:
    return {
        "id": eid,
        "source": eid.split(":", 1)[0],
        "type": kind,
        "occurred_at": f"2026-11-20T{at}:00Z",
        "order": {"ref": ref},
        "data": data,
    }


def placed(ref: str) -> dict[str, Any]:
    body = event(f"shopify:{ref}", "order.placed", "10:00", ref)
    body["order"].update(value="50.00", currency="USD", placed_at="2026-11-20T10:00:00Z")
    return body


def merchant_with_list(live: LiveDesk, tmp_path: Path) -> str:
    """A token of merchant acme, whose configuration has its own root-cause list."""
    token = live.token("acme")
    path = tmp_path / "acme.yaml"
    path.write_text(CONFIG)
    with live.desk.uow() as uow:
        admin.apply_settings(uow, clock=live.desk.clock, name="acme", config=path)
        uow.commit()
    return token


def case_of(http: httpx.Client, ref: str, category: str) -> dict[str, Any]:
    found = http.get("/api/v1/cases", params={"order": ref, "category": category}).json()
    (case,) = found["cases"]
    detail: dict[str, Any] = http.get(f"/api/v1/cases/{case['id']}").json()
    return detail


def act(http: httpx.Client, case_id: int, **body: Any) -> httpx.Response:
    return http.post(f"/api/v1/cases/{case_id}/actions", json=body)


def test_a_resolved_case_is_closed_by_a_person_with_a_root_cause(
    live: LiveDesk, tmp_path: Path
) -> None:
    http = live.client(merchant_with_list(live, tmp_path))
    # given a gift-card case refunded by the PSP: outcome verified, but no root cause matched
    batch = [
        placed("3001"),
        event("helpdesk:t1", "ticket.created", "10:05", "3001", ticket_id="T1", topic="gift_card"),
        event("psp:re1", "payment.refunded", "10:30", "3001", refund_id="re_1", amount="50.00"),
    ]
    assert http.post("/api/v1/events", json=batch).status_code == 200
    case = case_of(http, "3001", "gift_card_issue")
    assert (case["status"], case["outcome"], case["root_cause"]) == ("resolved", "refunded", None)
    assert "root_cause_needed" in [row["kind"] for row in case["timeline"]]
    # when it is closed with a root cause the merchant's list does not have
    unknown = act(
        http, case["id"], action="close", outcome="refunded", root_cause="customer_card_declined"
    )
    missing = act(http, case["id"], action="close", outcome="refunded")
    # then both are refused with unknown_root_cause, naming the list
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_root_cause"
    assert "gift_card_not_activated" in unknown.json()["error"]["message"]
    assert (missing.status_code, missing.json()["error"]["code"]) == (422, "unknown_root_cause")
    # and on an outcome other than the verified one it is refused as not verified
    other = act(
        http, case["id"], action="close", outcome="concession", root_cause="gift_card_expired"
    )
    assert (other.status_code, other.json()["error"]["code"]) == (409, "outcome_not_verified")
    assert case_of(http, "3001", "gift_card_issue")["status"] == "resolved"
    # when ann closes it on its verified outcome with a root cause from the list
    done = act(
        http,
        case["id"],
        action="close",
        outcome="refunded",
        root_cause="gift_card_not_activated",
        actor="ann",
        note="activation job was down",
    )
    # then it is closed with that root cause, at the time the refund was confirmed
    assert done.status_code == 200, done.text
    closed = done.json()
    assert (closed["status"], closed["outcome"], closed["root_cause"]) == (
        "closed",
        "refunded",
        "gift_card_not_activated",
    )
    assert closed["closed_at"] == "2026-11-20T10:30:00+00:00"
    # and the timeline says who named the root cause and closed it
    rows = [(r["kind"], r["actor"], r["detail"]) for r in closed["timeline"]][-3:]
    assert rows == [
        ("root_cause", "ann", {"from": None, "to": "gift_card_not_activated"}),
        ("status_changed", "ann", {"from": "resolved", "to": "closed"}),
        ("note", "ann", {"text": "activation job was down"}),
    ]
    # when the lead corrects its root cause
    fixed = act(http, case["id"], action="set_root_cause", root_cause="gift_card_expired")
    # then the case has the new one, and the correction is on the timeline
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["root_cause"] == "gift_card_expired"
    last = fixed.json()["timeline"][-1]
    assert (last["kind"], last["actor"], last["detail"]) == (
        "root_cause",
        "agent@acme",
        {"from": "gift_card_not_activated", "to": "gift_card_expired"},
    )
    # and closing it again is a conflict
    again = act(http, case["id"], action="close", outcome="refunded", root_cause="card_declined")
    assert again.status_code == 409


def test_an_open_case_does_not_close_on_a_click(live: LiveDesk, tmp_path: Path) -> None:
    http = live.client(merchant_with_list(live, tmp_path))
    # given an open payment case and an open change request
    batch = [
        placed("3002"),
        event("psp:f1", "payment.failed", "10:05", "3002", reason="card_declined"),
        placed("3003"),
        event("helpdesk:ch1", "change.requested", "10:06", "3003", change="swap"),
    ]
    assert http.post("/api/v1/events", json=batch).status_code == 200
    payment = case_of(http, "3002", "payment_failed")
    change = case_of(http, "3003", "change_request")
    # when an agent closes the payment case as released, which the PSP has not confirmed
    refused = act(
        http, payment["id"], action="close", outcome="released", root_cause="card_declined"
    )
    # then it is refused: the outcome is not verified, and the case stays open
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "outcome_not_verified"
    assert case_of(http, "3002", "payment_failed")["status"] == "triaged"
    # and its root cause cannot be set while it is open
    early = act(http, payment["id"], action="set_root_cause", root_cause="card_declined")
    assert early.status_code == 409
    # and an outcome the desk does not know is a bad request
    bad = act(http, payment["id"], action="close", outcome="vanished", root_cause="card_declined")
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_request")
    # when the lead denies the swap, an outcome only a person decides
    denied = act(
        http,
        change["id"],
        action="close",
        outcome="denied",
        root_cause="swap_out_of_policy",
        actor="ann",
    )
    # then the change request is closed as denied, by ann, with that root cause
    assert denied.status_code == 200, denied.text
    body = denied.json()
    assert (body["status"], body["outcome"], body["root_cause"]) == (
        "closed",
        "denied",
        "swap_out_of_policy",
    )
    assert body["closed_at"] is not None
    by_ann = [(r["kind"], r["detail"].get("to")) for r in body["timeline"] if r["actor"] == "ann"]
    assert by_ann == [
        ("first_touch", None),
        ("status_changed", "in_progress"),
        ("status_changed", "resolved"),
        ("outcome", None),
        ("root_cause", "swap_out_of_policy"),
        ("status_changed", "closed"),
    ]
    # and a missing case is a 404
    assert act(http, 999_999, action="close", outcome="denied", root_cause="x").status_code == 404
