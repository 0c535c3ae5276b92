"""The generic 3PL REST connector against the 3PL emulator, over real HTTP on loopback, and the
whole stop-ship round trip with a live desk: the desk asks, holds and cancels at the emulator,
and the emulator answers with a signed webhook."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from recoverydesk.bootstrap import Desk, bootstrap
from recoverydesk.config import Settings
from recoverydesk.connectors.outbound import OutsideRouter
from recoverydesk.connectors.threepl import ThreePLConnector
from recoverydesk.entrypoints.api.app import create_app
from recoverydesk.sandbox.recorders import AcceptingOutside
from recoverydesk.sandbox.threepl_emulator import (
    LATE,
    AckBehaviour,
    RunningEmulator,
    ThreePLEmulator,
    serve_emulator,
)
from recoverydesk.services import merchants as admin
from recoverydesk.services.ports import OutsideCommand, OutsideUnavailable

API_KEY = "k"
SECRET = "s3cret"


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def emulator() -> ThreePLEmulator:
    return ThreePLEmulator(api_key=API_KEY, read_only_keys=["ro"])


@pytest.fixture
def warehouse(emulator: ThreePLEmulator) -> Iterator[RunningEmulator]:
    with serve_emulator(emulator) as running:
        yield running


@pytest.fixture
def connector() -> Iterator[ThreePLConnector]:
    found = ThreePLConnector(timeout=5.0)
    yield found
    found.close()


def _command(
    base_url: str,
    action: str,
    ref: str = "1001",
    *,
    key: str = "key-1",
    api_key: str = API_KEY,
    **params: Any,
) -> OutsideCommand:
    return OutsideCommand(
        merchant_id=1,
        order_ref=ref,
        system="wms",
        action=action,
        key=key,
        params=params,
        connection={"kind": "wms_rest", "base_url": base_url, "api_key": api_key},
    )


# -- the connector -------------------------------------------------------------------------------


def test_status_comes_from_the_warehouse(
    emulator: ThreePLEmulator, warehouse: RunningEmulator, connector: ThreePLConnector
) -> None:
    emulator.add_order("1001", status="picking", lines={"LAMP": 1})
    answer = connector.send(_command(warehouse.base_url, "wms_status"))
    assert answer.accepted
    assert answer.facts == {"status": "picking", "held": False, "cancelled": False}


def test_the_warehouse_order_id_is_used_when_the_desk_knows_it(
    emulator: ThreePLEmulator, warehouse: RunningEmulator, connector: ThreePLConnector
) -> None:
    emulator.add_order("WH-77 a", status="packed")
    command = _command(warehouse.base_url, "wms_status", "1001")
    command = OutsideCommand(**{**_fields(command), "order_ids": {"wms": "WH-77 a"}})
    assert connector.send(command).facts["status"] == "packed"


def _fields(command: OutsideCommand) -> dict[str, Any]:
    return {name: getattr(command, name) for name in command.__dataclass_fields__}


def test_hold_and_cancel_are_taken_with_the_commands_key(
    emulator: ThreePLEmulator, warehouse: RunningEmulator, connector: ThreePLConnector
) -> None:
    emulator.add_order("1001", status="released", lines={"LAMP": 1, "BULB": 2})
    lines = [{"sku": "BULB", "qty": 1}]
    hold = connector.send(_command(warehouse.base_url, "wms_hold", key="h-1", lines=lines))
    cancel = connector.send(
        _command(warehouse.base_url, "wms_cancel", key="c-1", lines=lines, reason="changed_mind")
    )
    assert hold.accepted
    assert cancel.accepted
    assert hold.reference
    assert cancel.reference
    assert hold.reference != cancel.reference
    taken = [(r.action, r.key, r.body) for r in emulator.received]
    assert taken == [
        ("hold", "h-1", {"lines": lines}),
        ("cancel", "c-1", {"lines": lines, "reason": "changed_mind"}),
    ]


def test_a_repeat_is_the_same_request_answered_the_same(
    emulator: ThreePLEmulator, warehouse: RunningEmulator, connector: ThreePLConnector
) -> None:
    emulator.add_order("1001", status="picking")
    first = connector.send(_command(warehouse.base_url, "wms_cancel", key="same"))
    again = connector.send(_command(warehouse.base_url, "wms_cancel", key="same"))
    assert first == again
    assert first.accepted
    assert len(emulator.received) == 1
    # the same key for another request is refused, with the warehouse's words
    other = connector.send(
        _command(warehouse.base_url, "wms_cancel", key="same", lines=[{"sku": "X", "qty": 1}])
    )
    assert not other.accepted
    assert other.message == "Idempotency-Key same was used for another request"
    assert other.facts == {"http_status": 422, "code": "idempotency_key_reused"}


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_temporary_failures_are_retried_later(
    emulator: ThreePLEmulator,
    warehouse: RunningEmulator,
    connector: ThreePLConnector,
    status: int,
) -> None:
    emulator.add_order("1001", status="picking")
    emulator.fail_next(status, message="try again")
    with pytest.raises(OutsideUnavailable, match=f"HTTP {status}: try again"):
        connector.send(_command(warehouse.base_url, "wms_hold"))
    assert emulator.received == []
    # the retry (the same key) goes through, once
    assert connector.send(_command(warehouse.base_url, "wms_hold")).accepted
    assert len(emulator.received) == 1


def test_timeouts_and_unreachable_warehouses_are_retried_later(
    emulator: ThreePLEmulator, warehouse: RunningEmulator, connector: ThreePLConnector
) -> None:
    emulator.add_order("1001", status="picking")
    emulator.latency = 1.0
    slow = _command(warehouse.base_url, "wms_status")
    slow = OutsideCommand(
        **{**_fields(slow), "connection": {**slow.connection, "timeout_seconds": 0.2}}
    )
    with pytest.raises(OutsideUnavailable, match="timed out"):
        connector.send(slow)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(OutsideUnavailable, match="ConnectError"):
        connector.send(_command(closed, "wms_status"))


@pytest.mark.parametrize(
    ("action", "ref", "api_key", "params", "status", "message"),
    [
        ("wms_hold", "1001", "wrong", {}, 401, "invalid or missing API key"),
        ("wms_hold", "1001", "ro", {}, 403, "this API key is read-only"),
        ("wms_status", "nope", API_KEY, {}, 404, "order nope is not known here"),
        ("wms_cancel", "nope", API_KEY, {}, 404, "order nope is not known here"),
        ("wms_hold", "shipped", API_KEY, {}, 409, "order shipped has already shipped"),
        (
            "wms_cancel",
            "1001",
            API_KEY,
            {"lines": [{"sku": "SOFA", "qty": 1}]},
            422,
            "order 1001 has no line SOFA",
        ),
    ],
)
def test_refusals_carry_the_warehouses_message(
    emulator: ThreePLEmulator,
    warehouse: RunningEmulator,
    connector: ThreePLConnector,
    action: str,
    ref: str,
    api_key: str,
    params: dict[str, Any],
    status: int,
    message: str,
) -> None:
    emulator.add_order("1001", status="picking", lines={"LAMP": 1})
    emulator.add_order("shipped", status="shipped")
    answer = connector.send(_command(warehouse.base_url, action, ref, api_key=api_key, **params))
    assert (answer.accepted, answer.message) == (False, message)
    assert answer.facts["http_status"] == status
    assert emulator.received == []


def test_a_connection_without_its_settings_or_an_unknown_action_is_refused(
    warehouse: RunningEmulator, connector: ThreePLConnector
) -> None:
    bare = OutsideCommand(1, "1001", "wms", "wms_hold", "k-1", {}, connection={"kind": "wms_rest"})
    assert connector.send(bare).message == "the wms_rest connection needs base_url and api_key"
    odd = connector.send(_command(warehouse.base_url, "wms_release"))
    assert (odd.accepted, odd.facts) == (False, {"code": "unsupported_action"})


# -- the emulator's own time ---------------------------------------------------------------------


@dataclass
class ManualClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


def test_orders_move_over_time_and_pause_while_a_stop_waits(connector: ThreePLConnector) -> None:
    clock = ManualClock(datetime(2026, 3, 2, 9, tzinfo=UTC))
    emulator = ThreePLEmulator(clock=clock, ack=AckBehaviour("late"))
    emulator.add_order("7", status="released", step_every=timedelta(minutes=10))
    # no desk configured: the events wait in the outbox
    results = emulator.deliver_due(clock.now + timedelta(minutes=25))
    assert [(r.event_type, r.ok, r.error) for r in results] == [
        ("fulfillment.picking", False, "no desk configured"),
        ("fulfillment.packed", False, "no desk configured"),
    ]
    order = emulator.order("7")
    assert order is not None
    assert order["status"] == "packed"
    # a late answer is not due within the desk's acknowledgment window, and the order waits
    clock.now += timedelta(minutes=25)
    with serve_emulator(emulator) as running:
        assert connector.send(_command(running.base_url, "wms_hold", "7")).accepted
    pending = emulator.pending_deliveries()
    assert {p.get("request_id") for p in pending} >= {"hold-7-1"}
    emulator.deliver_due(clock.now + LATE - timedelta(minutes=1))
    assert emulator.order("7") == {**order, "status": "packed"}
    emulator.deliver_due(clock.now + LATE)
    kinds = [p.get("type") for p in emulator.pending_deliveries()]
    assert kinds.count("stopship.acknowledged") == 1
    assert emulator.order("7") == {**order, "held": True}


# -- with a live desk ----------------------------------------------------------------------------


@dataclass
class LiveDesk:
    desk: Desk
    base_url: str

    def work(self) -> None:
        """Run every due job, as the desk's worker would."""
        runner = self.desk.job_runner("w")
        for _ in range(20):
            if runner.run_due(limit=50).done == 0:
                return


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveDesk]:
    connector = ThreePLConnector(timeout=5.0)
    desk = bootstrap(
        Settings(database_url=f"sqlite:///{tmp_path / 'desk.db'}"),
        outside=OutsideRouter({"wms_rest": connector}, AcceptingOutside()),
    )
    desk.upgrade()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(desk), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    try:
        yield LiveDesk(desk, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        connector.close()
        desk.close()


def _merchant(live: LiveDesk, warehouse_url: str, tmp_path: Path) -> httpx.Client:
    config = tmp_path / "acme.yaml"
    config.write_text(
        f"""
merchant: acme
connectors:
  webhooks:
    wms: {{secrets: [{SECRET}]}}
  outbound:
    wms: {{kind: wms_rest, base_url: "{warehouse_url}", api_key: {API_KEY}}}
""",
        encoding="utf-8",
    )
    clock = live.desk.clock
    with live.desk.uow() as uow:
        admin.add_merchant(uow, clock=clock, name="acme")
        admin.apply_settings(uow, clock=clock, name="acme", config=config)
        token = admin.create_token(uow, clock=clock, merchant_name="acme", role="agent")
        uow.commit()
    return httpx.Client(
        base_url=live.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def _placed(ref: str) -> dict[str, Any]:
    at = (datetime.now(UTC) - timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    return {
        "id": f"shopify:placed-{ref}",
        "source": "shopify",
        "type": "order.placed",
        "occurred_at": at,
        "order": {
            "ref": ref,
            "channel": "shopify",
            "fulfillment_type": "3pl",
            "value": "100.00",
            "currency": "USD",
            "placed_at": at,
            "customer": {"id": "c-1", "email": "kim@example.com", "tier": "standard"},
            "lines": [{"sku": "LAMP", "qty": 1, "price": "100.00"}],
        },
    }


def _cancel_at_the_warehouse(
    live: LiveDesk, emulator: ThreePLEmulator, api: httpx.Client, ref: str
) -> dict[str, Any]:
    """An order being picked at the warehouse, a cancellation, the worker's jobs: the desk asks
    the warehouse for the state, then sends hold + cancel, and waits for the answer."""
    emulator.add_order(ref, status="picking", lines={"LAMP": 1})
    assert api.post("/api/v1/events", json=[_placed(ref)]).status_code == 200
    started = api.post(
        f"/api/v1/orders/{ref}/cancellations",
        json={"requested_by": "customer", "reason": "changed_mind"},
    )
    assert started.status_code == 201, started.text
    live.work()
    assert sorted(r.action for r in emulator.received) == ["cancel", "hold"]
    workflow = _workflow(api, ref)
    assert (workflow["stage"], workflow["state_used"], workflow["state_from"]) == (
        "stopping",
        "picking",
        "wms",
    )
    sent = {c["action"]: c["idempotency_key"] for c in workflow["commands"]}
    assert {r.key for r in emulator.received} == {sent["wms_hold"], sent["wms_cancel"]}
    return workflow


def _workflow(api: httpx.Client, ref: str) -> dict[str, Any]:
    found = api.get("/api/v1/cases", params={"order": ref, "category": "change_request"})
    case_id = found.json()["cases"][0]["id"]
    detail = api.get(f"/api/v1/cases/{case_id}")
    assert detail.status_code == 200, detail.text
    workflow: dict[str, Any] = detail.json()["cancellation"]
    return workflow


def test_the_warehouse_acknowledges_and_the_cancellation_ends_stopped(
    live: LiveDesk, tmp_path: Path
) -> None:
    emulator = ThreePLEmulator(api_key=API_KEY)
    with (
        serve_emulator(emulator) as warehouse,
        _merchant(live, warehouse.base_url, tmp_path) as api,
    ):
        emulator.configure_desk(live.base_url, "acme", SECRET)
        _cancel_at_the_warehouse(live, emulator, api, "3001")
        # when the warehouse sends its signed acknowledgments
        results = emulator.deliver_due()
        assert [(r.event_type, r.status_code) for r in results] == [
            ("stopship.acknowledged", 200),
            ("stopship.acknowledged", 200),
        ]
        live.work()
        # then the stop is confirmed and the cancellation ends stopped
        workflow = _workflow(api, "3001")
        assert (workflow["stage"], workflow["outcome"]) == ("done", "stopped")
        assert workflow["acknowledged_by"].startswith("wms:")
        assert workflow["timestamps"]["stop_acknowledged_at"] is not None
        order = emulator.order("3001")
        assert order is not None
        assert (order["held"], order["cancelled"]) == (True, True)
        calls = api.get("/api/v1/orders/3001").json()["outbound_calls"]
        wms = [(c["action"], c["result"]) for c in calls if c["system"] == "wms"]
        assert sorted(wms) == [
            ("wms_cancel", "accepted"),
            ("wms_hold", "accepted"),
            ("wms_status", "accepted"),
        ]
        # a repeated delivery is taken and changes nothing
        assert emulator.deliver_due() == []


def test_the_warehouse_rejects_and_the_cancellation_is_an_exception(
    live: LiveDesk, tmp_path: Path
) -> None:
    emulator = ThreePLEmulator(api_key=API_KEY, ack=AckBehaviour("reject"))
    with (
        serve_emulator(emulator) as warehouse,
        _merchant(live, warehouse.base_url, tmp_path) as api,
    ):
        emulator.configure_desk(live.base_url, "acme", SECRET)
        _cancel_at_the_warehouse(live, emulator, api, "3002")
        results = emulator.deliver_due()
        assert all(r.ok for r in results), results
        assert {r.event_type for r in results} == {"fulfillment.packed", "stopship.rejected"}
        live.work()
        workflow = _workflow(api, "3002")
        assert (workflow["stage"], workflow["outcome"]) == ("exception", "exception")
        assert workflow["exception_reason"] == "stop_rejected"
        assert workflow["rejection"] == "already packed"
        assert workflow["timestamps"]["customer_notified_at"] is None
