"""The AfterShip emulator's signed webhooks into a live desk, on SQLite and PostgreSQL.

A parcel's scans play out in the emulator's time; each change of tag reaches
``POST /webhooks/aftership/{merchant}`` as AfterShip sends it, and the desk opens (lost, a failed
attempt) or closes (delivered) the order's delivery-exception case. A delivery the desk does not
take is sent again with the same ``event_id`` and stored once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from recoverydesk.connectors.signatures import sign
from recoverydesk.sandbox.aftership_emulator import (
    FAILED_ATTEMPT,
    LOST,
    TEST_API_KEY,
    AfterShipEmulator,
    Step,
    running_aftership_emulator,
)
from recoverydesk.sandbox.serving import free_port
from recoverydesk.services import merchants as admin
from recoverydesk.services.clock import SimulatedClock
from tests.e2e.conftest import LiveDesk

SECRET = "as_webhook_secret"
CONFIG = f"""
merchant: acme
connectors:
  webhooks:
    aftership: {{secrets: [{SECRET}]}}
"""
# The carriers' time starts three days ago, so every scan of a script is in the desk's past.
START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)


@pytest.fixture
def api(live: LiveDesk, tmp_path: Path) -> httpx.Client:
    """A lead's client of merchant ``acme``, which takes AfterShip webhooks."""
    token = live.token("acme", "lead")
    path = tmp_path / "acme.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    with live.desk.uow() as uow:
        admin.apply_settings(uow, clock=live.desk.clock, name="acme", config=path)
        uow.commit()
    return live.client(token)


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(START)


def _place(api: httpx.Client, ref: str) -> None:
    placed = (START - timedelta(hours=1)).isoformat()
    order = {
        "ref": ref,
        "channel": "shopify",
        "fulfillment_type": "3pl",
        "value": "59.00",
        "currency": "USD",
        "placed_at": placed,
        "lines": [{"sku": "MUG", "qty": 1, "price": "59.00"}],
    }
    event = {
        "id": f"shopify:{ref}",
        "source": "shopify",
        "type": "order.placed",
        "occurred_at": placed,
        "order": order,
    }
    answer = api.post("/api/v1/events", json=[event])
    assert answer.status_code == 200, answer.text


def _create(emulator: AfterShipEmulator, number: str, order_number: str) -> str:
    """Create the tracking over the emulator's API, as a merchant's shop does; its id."""
    with (
        running_aftership_emulator(emulator) as running,
        httpx.Client(base_url=running.base_url, headers={"as-api-key": TEST_API_KEY}) as http,
    ):
        body = {
            "tracking": {"tracking_number": number, "slug": "ups", "order_number": order_number}
        }
        created = http.post("/trackings", json=body)
    assert created.status_code == 201, created.text
    tracking_id: str = created.json()["data"]["tracking"]["id"]
    return tracking_id


def _open_cases(api: httpx.Client, ref: str) -> list[dict[str, Any]]:
    answer = api.get("/api/v1/cases", params={"order": ref, "state": "open"})
    assert answer.status_code == 200, answer.text
    cases: list[dict[str, Any]] = answer.json()["cases"]
    return cases


def _carrier_events(api: httpx.Client, ref: str) -> list[str]:
    order = api.get(f"/api/v1/orders/{ref}").json()
    return [e["event_id"] for e in order["events"] if e["source"] == "carrier"]


def test_a_lost_parcel_opens_a_delivery_exception_case(
    live: LiveDesk, api: httpx.Client, clock: SimulatedClock
) -> None:
    # given an order the desk knows, and its parcel, which the carrier will lose
    _place(api, "A-1001")
    emulator = AfterShipEmulator(
        clock=clock.now, desk_url=live.base_url, merchant="acme", secret=SECRET
    )
    emulator.plan("1ZLOST", LOST)
    tracking_id = _create(emulator, "1ZLOST", "A-1001")
    # when the parcel is picked up: the desk takes both webhooks, and nothing is wrong yet
    picked_up = emulator.deliver_due(START + timedelta(hours=5))
    assert [(r.topic, r.status_code) for r in picked_up] == [
        ("InfoReceived", 200),
        ("InTransit", 200),
    ]
    assert _open_cases(api, "A-1001") == []
    # when the carrier declares it lost two days after
    assert emulator.deliver_due(START + timedelta(hours=47)) == []
    lost = emulator.deliver_due(START + timedelta(hours=48))
    # then the desk stored the carrier's facts (each named by its webhook's event_id) and
    # opened a delivery exception for the order
    assert [(r.topic, r.status_code) for r in lost] == [("Exception", 200)]
    _, transit, exception = (body["event_id"] for body in emulator.webhooks_sent)
    assert _carrier_events(api, "A-1001") == [
        f"carrier:aftership:{tracking_id}:InTransit_002:{transit}",
        f"carrier:aftership:{tracking_id}:Exception_013:{exception}",
    ]
    cases = _open_cases(api, "A-1001")
    assert [c["category"] for c in cases] == ["delivery_exception"]
    assert f"carrier:aftership:{tracking_id}:Exception_013:{exception}" in cases[0]["event_ids"]
    assert emulator.webhooks_waiting == []


def test_a_delivered_parcel_leaves_no_case_open(
    live: LiveDesk, api: httpx.Client, clock: SimulatedClock
) -> None:
    _place(api, "A-1002")
    emulator = AfterShipEmulator(
        clock=clock.now, desk_url=live.base_url, merchant="acme", secret=SECRET
    )
    _create(emulator, "1ZHAPPY", "A-1002")
    results = emulator.deliver_due(START + timedelta(hours=30))
    assert [(r.topic, r.status_code) for r in results] == [
        ("InfoReceived", 200),
        ("InTransit", 200),
        ("OutForDelivery", 200),
        ("Delivered", 200),
    ]
    assert _open_cases(api, "A-1002") == []
    order = api.get("/api/v1/orders/A-1002").json()
    assert order["fulfillment"]["status"] == "delivered"


def test_a_failed_attempt_opens_a_case_that_the_redelivery_closes(
    live: LiveDesk, api: httpx.Client, clock: SimulatedClock
) -> None:
    _place(api, "A-1004")
    redelivered = Step(timedelta(hours=50), "Delivered", "Delivered_001", "Delivered")
    emulator = AfterShipEmulator(
        clock=clock.now,
        desk_url=live.base_url,
        merchant="acme",
        secret=SECRET,
        script=(*FAILED_ATTEMPT, redelivered),
    )
    _create(emulator, "1ZRETRY", "A-1004")
    emulator.deliver_due(START + timedelta(hours=27))
    assert [c["category"] for c in _open_cases(api, "A-1004")] == ["delivery_exception"]
    assert [
        (r.topic, r.status_code) for r in emulator.deliver_due(START + timedelta(hours=50))
    ] == [("Delivered", 200)]
    assert _open_cases(api, "A-1004") == []
    closed = api.get("/api/v1/cases", params={"order": "A-1004"}).json()["cases"]
    assert [(c["category"], c["outcome"]) for c in closed] == [("delivery_exception", "delivered")]


def test_a_second_failed_attempt_the_next_day_is_a_fact_of_its_own(
    live: LiveDesk, api: httpx.Client, clock: SimulatedClock
) -> None:
    # given a parcel the carrier fails to deliver twice, a day apart (the same subtag)
    _place(api, "A-1005")
    again = (
        Step(timedelta(hours=44), "OutForDelivery", "OutForDelivery_001", "On vehicle again"),
        Step(timedelta(hours=50), "AttemptFail", "AttemptFail_001", "Customer not available"),
    )
    emulator = AfterShipEmulator(
        clock=clock.now,
        desk_url=live.base_url,
        merchant="acme",
        secret=SECRET,
        script=(*FAILED_ATTEMPT, *again),
    )
    _create(emulator, "1ZTWICE", "A-1005")
    # when the carrier's scans reach the desk
    sent = emulator.deliver_due(START + timedelta(hours=51))
    assert [r.topic for r in sent][-3:] == ["AttemptFail", "OutForDelivery", "AttemptFail"]
    assert {r.status_code for r in sent} == {200}
    # then both failed attempts are stored, each under its webhook's event_id
    attempts = [e for e in _carrier_events(api, "A-1005") if ":AttemptFail_001:" in e]
    failed = [b["event_id"] for b in emulator.webhooks_sent if b["msg"]["tag"] == "AttemptFail"]
    assert [e.rsplit(":", 1)[1] for e in attempts] == failed
    assert len(set(failed)) == 2


def test_an_unreachable_desk_gets_the_same_event_later_and_stores_it_once(
    live: LiveDesk, api: httpx.Client, clock: SimulatedClock
) -> None:
    # given the desk is down (nothing listens where the webhooks go)
    _place(api, "A-1003")
    nowhere = f"http://127.0.0.1:{free_port()}"
    emulator = AfterShipEmulator(clock=clock.now, desk_url=nowhere, merchant="acme", secret=SECRET)
    emulator.add_tracking("1ZDOWN", "ups", order_number="A-1003", script=LOST)
    lost_at = START + timedelta(hours=48)
    down = emulator.deliver_due(lost_at)
    ids = [r.delivery_id for r in down]
    assert [(r.topic, r.status_code) for r in down] == [
        ("InfoReceived", None),
        ("InTransit", None),
        ("Exception", None),
    ]
    # when it is back but signs with a stale secret (refused), then with the right one
    emulator.configure_desk(live.base_url, "acme", "an-old-secret")
    assert [r.status_code for r in emulator.deliver_due(lost_at)] == [401, 401, 401]
    emulator.configure_desk(live.base_url, "acme", SECRET)
    up = emulator.deliver_due(lost_at + timedelta(minutes=5))
    # then the same events arrive, with the same ids, and are stored once
    assert [(r.delivery_id, r.status_code) for r in up] == [(i, 200) for i in ids]
    assert emulator.deliver_due(lost_at + timedelta(minutes=10)) == []
    sent = emulator.outbox.sent
    assert [(o.delivery_id, o.attempts) for o in sent] == [(i, 3) for i in ids]
    assert [body["event_id"] for body in emulator.webhooks_sent] == ids
    assert len(_carrier_events(api, "A-1003")) == 2
    assert [c["category"] for c in _open_cases(api, "A-1003")] == ["delivery_exception"]
    # and a redelivery of what the desk already took is answered 2xx, a duplicate
    body = sent[-1].body
    headers = sign("aftership", body=body, secret=SECRET, now=datetime.now(UTC))
    with live.client() as http:
        again = http.post("/webhooks/aftership/acme", content=body, headers=headers)
    assert again.status_code == 200, again.text
    assert (again.json()["delivery"], again.json()["stored"], again.json()["duplicates"]) == (
        ids[-1],
        0,
        1,
    )
    assert len(_carrier_events(api, "A-1003")) == 2
