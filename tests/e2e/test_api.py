"""The HTTP API end to end, over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import LiveDesk


def event(eid: str, kind: str, at: str, ref: str = "1001", **data: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": eid,
        "source": "shopify",
        "type": kind,
        "occurred_at": at,
        "order": {"ref": ref},
        "data": data,
    }
    return body


PLACED = {
    "id": "shopify:1",
    "source": "shopify",
    "type": "order.placed",
    "occurred_at": "2026-11-20T10:00:00Z",
    "order": {
        "ref": "1001",
        "channel": "shopify",
        "fulfillment_type": "3pl",
        "value": "129.00",
        "currency": "USD",
        "placed_at": "2026-11-20T10:00:00Z",
        "customer": {"id": "c-1", "tier": "vip"},
        "lines": [{"sku": "MUG", "qty": 1, "price": "129.00"}],
        "ids": {"erp": "SO-77"},
    },
}


def test_health_openapi_and_docs(live: LiveDesk) -> None:
    with live.client() as http:
        assert http.get("/healthz").json()["status"] == "ok"
        paths = http.get("/openapi.json").json()["paths"]
        assert {
            "/api/v1/events",
            "/api/v1/cases",
            "/api/v1/cases/{case_id}",
            "/api/v1/orders/{ref}",
        } <= set(paths)
        assert http.get("/docs").status_code == 200


def test_events_open_and_close_cases_and_build_the_order_360(live: LiveDesk) -> None:
    # given a merchant's token
    http = live.client(live.token("acme"))
    # when the storefront and the PSP report an order, a failed payment and then a capture
    batch = [PLACED, event("psp:1", "payment.failed", "2026-11-20T10:01:00Z", reason="declined")]
    first = http.post("/api/v1/events", json=batch)
    # then both are stored and a payment_failed case is open
    assert first.status_code == 200
    assert first.json() == {
        "received": 2,
        "stored": 2,
        "duplicates": 0,
        "cases_opened": 1,
        "cases_closed": 0,
    }
    open_cases = http.get("/api/v1/cases", params={"state": "open"}).json()
    assert [c["category"] for c in open_cases["cases"]] == ["payment_failed"]
    # when the capture arrives (twice: at-least-once delivery)
    capture = event("psp:2", "payment.captured", "2026-11-20T11:00:00Z", amount="129.00")
    assert http.post("/api/v1/events", json=capture).json()["cases_closed"] == 1
    again = http.post("/api/v1/events", json=capture).json()
    assert (again["stored"], again["duplicates"]) == (0, 1)
    # then the case is closed as released, with its timeline
    case_id = open_cases["cases"][0]["id"]
    case = http.get(f"/api/v1/cases/{case_id}").json()
    assert (case["status"], case["outcome"]) == ("closed", "released")
    assert case["closed_at"] == "2026-11-20T11:00:00+00:00"
    kinds = [row["kind"] for row in case["timeline"]]
    assert kinds[:3] == ["opened", "triaged", "status_changed"]
    assert kinds[-3:] == ["status_changed", "outcome", "status_changed"]
    assert "event" in kinds
    # and the order 360 merges what every system said
    order = http.get("/api/v1/orders/1001").json()
    assert order["payment"]["status"] == "captured"
    assert order["payment"]["captured"] == "129.00"
    assert order["customer"]["tier"] == "vip"
    assert order["system_ids"] == {"erp": "SO-77"}
    assert [e["event_id"] for e in order["events"]] == ["shopify:1", "psp:1", "psp:2"]
    assert [c["outcome"] for c in order["cases"]] == ["released"]


def test_case_filters(live: LiveDesk) -> None:
    http = live.client(live.token("acme"))
    http.post(
        "/api/v1/events",
        json=[
            event("a", "address.invalid", "2026-11-20T10:00:00Z", ref="1"),
            event("b", "hold.placed", "2026-11-20T10:00:00Z", ref="2", hold_type="fraud"),
            event("c", "hold.released", "2026-11-20T12:00:00Z", ref="2", hold_type="fraud"),
        ],
    )
    by = lambda **p: [c["order_ref"] for c in http.get("/api/v1/cases", params=p).json()["cases"]]  # noqa: E731
    assert by(category="fraud_hold") == ["2"]
    assert by(status="closed") == ["2"]
    assert by(state="open") == ["1"]
    assert by(order="1") == ["1"]
    assert http.get("/api/v1/cases", params={"limit": 0}).json()["error"]["code"] == (
        "invalid_request"
    )


def test_a_token_never_sees_another_merchants_data(live: LiveDesk) -> None:
    # given two merchants with one case each
    acme, other = live.client(live.token("acme")), live.client(live.token("globex"))
    acme.post("/api/v1/events", json=event("x", "payment.failed", "2026-11-20T10:00:00Z"))
    case_id = acme.get("/api/v1/cases").json()["cases"][0]["id"]
    # then the other merchant's token sees none of it
    assert other.get("/api/v1/cases").json()["total"] == 0
    assert other.get(f"/api/v1/cases/{case_id}").status_code == 404
    assert other.get("/api/v1/orders/1001").status_code == 404
    # and cannot post events in the first merchant's name
    forged = {**event("y", "payment.failed", "2026-11-20T10:00:00Z"), "merchant": "acme"}
    answer = other.post("/api/v1/events", json=forged)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "merchant_mismatch"
    # and the same event id in two merchants is two events
    assert (
        other.post(
            "/api/v1/events", json=event("x", "payment.failed", "2026-11-20T10:00:00Z")
        ).json()["stored"]
        == 1
    )


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer rd_nope"}, {"Authorization": "Basic abc"}]
)
def test_missing_or_wrong_tokens_are_401(live: LiveDesk, headers: dict[str, str]) -> None:
    with live.client() as http:
        answer = http.get("/api/v1/cases", headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("body", "status", "code", "names"),
    [
        (b"{not json", 422, "invalid_event", "malformed json"),
        (json.dumps({**PLACED, "type": "order.exploded"}).encode(), 422, "invalid_event", "type"),
        (
            json.dumps({k: v for k, v in PLACED.items() if k != "id"}).encode(),
            422,
            "invalid_event",
            "event.id",
        ),
        (json.dumps({**PLACED, "occurred_at": 12}).encode(), 422, "invalid_event", "occurred_at"),
        (
            json.dumps({**PLACED, "order": {"ref": "1", "value": "1e999999"}}).encode(),
            422,
            "invalid_event",
            "order.value",
        ),
        (
            json.dumps([PLACED, {**PLACED, "id": "2", "type": "hold.placed"}]).encode(),
            422,
            "invalid_event",
            "events[1].data.hold_type",
        ),
        (json.dumps([]).encode(), 422, "invalid_event", "empty"),
        (
            json.dumps(
                [event(str(n), "order.placed", "2026-11-20T10:00:00Z") for n in range(201)]
            ).encode(),
            413,
            "payload_too_large",
            "at most 200",
        ),
        (
            b"[" + b",".join([json.dumps(PLACED).encode()] * 300) + b"]",
            413,
            "payload_too_large",
            "bytes",
        ),
    ],
)
def test_bad_input_gets_a_clear_4xx_and_stores_nothing(
    live: LiveDesk, body: bytes, status: int, code: str, names: str
) -> None:
    http = live.client(live.token("acme"))
    answer = http.post("/api/v1/events", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code
    assert names in answer.json()["error"]["message"].lower()
    assert http.get("/api/v1/orders/1001").status_code == 404


def test_metrics_report_events_duplicates_and_open_cases(live: LiveDesk) -> None:
    http = live.client(live.token("acme"))
    failed = event("m1", "payment.failed", "2026-11-20T10:00:00Z")
    http.post("/api/v1/events", json=[failed])
    http.post("/api/v1/events", json=[failed])
    text = http.get("/metrics").text
    assert 'recoverydesk_events_stored_total{source="shopify",type="payment.failed"} 1.0' in text
    assert "recoverydesk_events_duplicate_total 1.0" in text
    assert 'recoverydesk_open_cases{category="payment_failed"' in text


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "id": st.text(max_size=5),
                "type": st.sampled_from(["order.placed", "hold.placed"]),
                "source": st.sampled_from(["shopify", "x"]),
                "occurred_at": st.text(max_size=25),
                "order": json_values,
                "data": json_values,
            }
        ),
    )
)
def test_no_input_makes_the_api_fail_with_a_500(live: LiveDesk, body: Any) -> None:
    http = live.client(live.token("acme"))
    answer = http.post("/api/v1/events", json=body)
    assert answer.status_code < 500
    if answer.status_code >= 400:
        assert set(answer.json()["error"]) == {"code", "message"}


def test_a_queue_lists_in_priority_order_and_an_agent_acts_on_a_case(live: LiveDesk) -> None:
    # given a merchant's token and three exceptions: a low-value failed payment (P3),
    # an invalid address (P2) and a VIP's failed payment (P1)
    token = live.token("acme")
    low = {**PLACED, "id": "shopify:2", "order": {"ref": "2002", "value": "20.00"}}
    with live.client(token) as http:
        batch = [
            PLACED,
            low,
            event("psp:1", "payment.failed", "2026-11-20T10:01:00Z", ref="2002"),
            event("carrier:1", "address.invalid", "2026-11-20T10:02:00Z", ref="2002"),
            event("psp:2", "payment.failed", "2026-11-20T10:03:00Z"),
        ]
        assert http.post("/api/v1/events", json=batch).status_code == 200
        # when the lead lists the pre-fulfilment queue
        page = http.get("/api/v1/cases", params={"queue": "pre_fulfilment", "state": "open"})
        # then the P1 comes first, then the P2, then the P3
        listed = [(c["order_ref"], c["category"], c["priority"]) for c in page.json()["cases"]]
        assert listed == [
            ("1001", "payment_failed", "P1"),
            ("2002", "address_invalid", "P2"),
            ("2002", "payment_failed", "P3"),
        ]
        first = page.json()["cases"][0]
        assert first["sla"]["clocks"]["first_touch"]["due_at"] is not None
        case_id = first["id"]
        # when an agent acknowledges it with a note, then waits on the customer
        done = http.post(
            f"/api/v1/cases/{case_id}/actions", json={"action": "acknowledge", "note": "on it"}
        )
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "in_progress"
        assert done.json()["sla"]["clocks"]["first_touch"]["stopped_at"] is not None
        waiting = http.post(f"/api/v1/cases/{case_id}/actions", json={"action": "wait_customer"})
        # then the case waits on the customer
        assert waiting.json()["status"] == "waiting_customer"
        kinds = [row["kind"] for row in waiting.json()["timeline"]]
        assert {"first_touch", "note", "status_changed"} <= set(kinds)
        # and bad actions get clear errors in the contract's shape, never a 500
        wrong = http.post(f"/api/v1/cases/{case_id}/actions", json={"action": "explode"})
        assert wrong.status_code == 422
        assert "error" in wrong.json()
        nobody = http.post(
            f"/api/v1/cases/{case_id}/actions", json={"action": "assign", "owner": "zed"}
        )
        assert nobody.status_code == 422
        assert "zed" in nobody.json()["error"]["message"]
        missing = http.post("/api/v1/cases/999999/actions", json={"action": "acknowledge"})
        assert missing.status_code == 404
    # and another merchant's token cannot act on the case
    with live.client(live.token("globex")) as other:
        stranger = other.post(f"/api/v1/cases/{case_id}/actions", json={"action": "acknowledge"})
        assert stranger.status_code == 404
