"""The AfterShip emulator's API over real HTTP, and its carriers' time, without a desk.

The desk-facing half (signed webhooks that open and close cases on SQLite and PostgreSQL) is in
``tests/e2e/test_aftership_emulator.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from recoverydesk.connectors import normalize as vendors
from recoverydesk.sandbox.aftership_emulator import (
    DELIVERED,
    LOST,
    TEST_API_KEY,
    AfterShipEmulator,
    Step,
    TrackingExists,
    running_aftership_emulator,
)
from recoverydesk.services.clock import SimulatedClock

VENDORS = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "vendors"
START = datetime(2026, 3, 2, 9, tzinfo=UTC)


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(START)


@pytest.fixture
def emulator(clock: SimulatedClock) -> AfterShipEmulator:
    return AfterShipEmulator(clock=clock.now)


@pytest.fixture
def api(emulator: AfterShipEmulator) -> Iterator[httpx.Client]:
    with (
        running_aftership_emulator(emulator) as running,
        httpx.Client(
            base_url=running.base_url, headers={"as-api-key": TEST_API_KEY}, timeout=10
        ) as client,
    ):
        yield client


def _create(api: httpx.Client, number: str, slug: str = "ups", **more: Any) -> httpx.Response:
    return api.post(
        "/trackings", json={"tracking": {"tracking_number": number, "slug": slug, **more}}
    )


def test_a_tracking_is_created_pending_and_read_back(api: httpx.Client) -> None:
    created = _create(api, "1Z001", order_number="A-1001", title="Mug")
    assert created.status_code == 201, created.text
    assert created.json()["meta"] == {"code": 201}
    tracking = created.json()["data"]["tracking"]
    assert (tracking["tag"], tracking["subtag"], tracking["checkpoints"]) == (
        "Pending",
        "Pending_001",
        [],
    )
    assert (tracking["order_number"], tracking["title"], tracking["active"]) == (
        "A-1001",
        "Mug",
        True,
    )
    assert len(tracking["id"]) == 24
    assert int(tracking["id"], 16) >= 0
    # the same tracking at the root and under /v4, with the other header name too
    for path in ("/trackings/ups/1Z001", "/v4/trackings/ups/1Z001"):
        found = api.get(path, headers={"aftership-api-key": TEST_API_KEY})
        assert found.json() == {"meta": {"code": 200}, "data": {"tracking": tracking}}


def test_a_duplicate_is_refused_with_the_existing_id(
    api: httpx.Client, emulator: AfterShipEmulator
) -> None:
    first = _create(api, "1Z002").json()["data"]["tracking"]
    again = _create(api, "1Z002", order_number="other")
    assert again.status_code == 400
    assert again.json()["meta"] == {
        "code": 4003,
        "message": "Tracking already exists.",
        "type": "BadRequest",
    }
    assert again.json()["data"]["tracking"]["id"] == first["id"]
    # the same number with another courier is another tracking
    assert _create(api, "1Z002", slug="fedex").status_code == 201
    with pytest.raises(TrackingExists):
        emulator.add_tracking("1Z002", "ups")


def test_unknown_trackings_and_bad_requests_get_aftership_errors(api: httpx.Client) -> None:
    missing = api.get("/trackings/ups/nope")
    assert (missing.status_code, missing.json()["meta"]["code"]) == (404, 4004)
    assert missing.json()["meta"]["type"] == "NotFound"
    one = {"tracking_number": "1Z9", "slug": "ups"}
    cases = [
        (b"not json", 4001),
        (b'{"trackings": {}}', 4006),
        (b'{"tracking": {"slug": "ups"}}', 4007),
        (b'{"tracking": {"tracking_number": "1Z9"}}', 4012),
        (
            json.dumps({"tracking": {**one, "custom_fields": {"emulator_script": "x"}}}).encode(),
            4008,
        ),
    ]
    for body, code in cases:
        answer = api.post("/trackings", content=body)
        assert (answer.status_code, answer.json()["meta"]["code"]) == (400, code), body


def test_without_the_key_it_is_aftership_s_401(api: httpx.Client) -> None:
    expected = json.loads((VENDORS / "aftership" / "api-error-401.json").read_text())
    for headers in ({"as-api-key": ""}, {"as-api-key": "wrong"}):
        for answer in (
            api.get("/trackings", headers=headers),
            api.post("/trackings", headers=headers, json={"tracking": {}}),
        ):
            assert (answer.status_code, answer.json()) == (401, expected)


def test_injected_failures_come_first_then_answers_resume(
    api: httpx.Client, emulator: AfterShipEmulator
) -> None:
    emulator.fail_next(429)
    emulator.fail_next(503)
    limited, down = api.get("/trackings"), api.get("/trackings")
    assert (limited.status_code, limited.json()["meta"]["type"]) == (429, "TooManyRequests")
    assert (down.status_code, down.json()["meta"]["type"]) == (503, "InternalError")
    assert api.get("/trackings").status_code == 200


def test_the_list_filters_by_tag_and_slug_newest_first(
    api: httpx.Client, emulator: AfterShipEmulator, clock: SimulatedClock
) -> None:
    emulator.plan("LOST-1", LOST)
    _create(api, "LOST-1")
    clock.advance(timedelta(minutes=1))
    _create(api, "OK-1", slug="fedex")
    clock.advance(timedelta(minutes=1))
    _create(api, "OK-2", custom_fields={"emulator_script": "lost"})
    # when two days pass for the carriers
    clock.advance(timedelta(hours=49))

    def listed(**params: str) -> list[str]:
        answer = api.get("/trackings", params=params).json()["data"]
        assert answer["count"] == len(answer["trackings"])
        return [t["tracking_number"] for t in answer["trackings"]]

    assert listed() == ["OK-2", "OK-1", "LOST-1"]
    assert listed(tag="Exception") == ["OK-2", "LOST-1"]
    assert listed(tag="Delivered,Pending") == ["OK-1"]
    assert listed(slug="fedex") == ["OK-1"]
    assert listed(tag="InTransit") == []
    page = api.get("/trackings", params={"limit": "1", "page": "2"}).json()["data"]
    assert (page["count"], [t["tracking_number"] for t in page["trackings"]]) == (3, ["OK-1"])
    assert api.get("/trackings", params={"page": "0"}).status_code == 400


def test_scripts_play_over_time_with_one_webhook_per_change_of_tag(
    emulator: AfterShipEmulator,
) -> None:
    emulator.add_tracking("1Z100", "ups", order_number="A-7")
    # nothing has happened yet for the carrier
    assert emulator.deliver_due(START + timedelta(minutes=30)) == []
    # two scans of the same tag (picked up, departed) make one webhook; the desk is not set
    early = emulator.deliver_due(START + timedelta(hours=10))
    assert [(r.topic, r.status_code, r.error) for r in early] == [
        ("InfoReceived", None, "no desk configured"),
        ("InTransit", None, "no desk configured"),
    ]
    tracking = emulator.tracking("ups", "1Z100")
    assert tracking is not None
    assert (tracking["tag"], tracking["subtag"]) == ("InTransit", "InTransit_007")
    assert [c["subtag"] for c in tracking["checkpoints"]] == [
        "InfoReceived_001",
        "InTransit_002",
        "InTransit_007",
    ]
    # a day later the rest comes; undelivered webhooks wait, oldest first
    later = emulator.deliver_due(START + timedelta(days=2))
    assert [r.topic for r in later] == ["InfoReceived", "InTransit", "OutForDelivery", "Delivered"]
    bodies = [json.loads(o.body) for o in emulator.webhooks_waiting]
    assert [b["msg"]["tag"] for b in bodies] == [
        "InfoReceived",
        "InTransit",
        "OutForDelivery",
        "Delivered",
    ]
    # each body is the tracking as it was at that step, with its own time
    transit = bodies[1]
    assert transit["event"] == "tracking_update"
    assert transit["is_tracking_first_tag"] is True
    assert transit["ts"] == int((START + timedelta(hours=4)).timestamp())
    assert [c["subtag"] for c in transit["msg"]["checkpoints"]] == [
        "InfoReceived_001",
        "InTransit_002",
    ]
    assert bodies[-1]["msg"]["active"] is False
    assert len({b["event_id"] for b in bodies}) == 4


def test_webhook_bodies_are_what_the_desk_reads_as_carrier_facts(
    emulator: AfterShipEmulator,
) -> None:
    emulator.add_tracking("1Z200", "dhl", order_id="A-8", script=LOST)
    emulator.deliver_due(START + timedelta(days=3))
    facts = []
    for outgoing in emulator.webhooks_waiting:
        payload = json.loads(outgoing.body)
        facts += vendors.normalize("aftership", payload, headers={}, received_at=START).events
    assert [(f["type"], f["data"]["subtag"]) for f in facts] == [
        ("fulfillment.shipped", "InTransit_002"),
        ("delivery.exception", "Exception_013"),
    ]
    lost = facts[-1]
    assert (lost["order"]["ref"], lost["data"]["kind"]) == ("A-8", "lost")
    assert lost["occurred_at"] == (START + timedelta(hours=48)).isoformat()


def test_the_same_run_gives_the_same_ids_and_a_tag_seen_again_is_not_first(
    clock: SimulatedClock,
) -> None:
    script = (
        Step(timedelta(hours=1), "InTransit", "InTransit_001", "In transit"),
        Step(timedelta(hours=2), "Exception", "Exception_005", "Weather delay"),
        Step(timedelta(hours=3), "InTransit", "InTransit_001", "In transit again"),
    )

    def run() -> list[tuple[str, bool]]:
        emulator = AfterShipEmulator(clock=clock.now, script=script)
        emulator.add_tracking("1Z300", "ups")
        emulator.deliver_due(START + timedelta(hours=5))
        bodies = [json.loads(o.body) for o in emulator.webhooks_waiting]
        return [(b["event_id"], b["is_tracking_first_tag"]) for b in bodies]

    first = run()
    assert first == run()
    assert [seen for _, seen in first] == [True, True, False]


def test_bad_scripts_and_late_plans_are_refused(emulator: AfterShipEmulator) -> None:
    backwards = (DELIVERED[1], DELIVERED[0])
    wrong_tag = (Step(timedelta(hours=1), "Lost", "Lost_001", "?"),)
    wrong_subtag = (Step(timedelta(hours=1), "Exception", "InTransit_001", "?"),)
    for script in (backwards, wrong_tag, wrong_subtag):
        with pytest.raises(ValueError, match=r"script|tag"):
            emulator.plan("1Z400", script)
    emulator.add_tracking("1Z400", "ups")
    with pytest.raises(ValueError, match="plan it before"):
        emulator.plan("1Z400", LOST)
