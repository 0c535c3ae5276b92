"""Drift detection (F3) end to end: ``recoverydesk replay`` over a stream per drift rule.

Each scenario is a real process on a real SQLite file; replay fires the timed rules' due checks in
simulated time (up to the last event, or ``--until``). The default policy routes category ``drift``
to queue ``drift`` at P2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-m", "recoverydesk.entrypoints.cli"]
DAY1, DAY2 = "2026-11-20", "2026-11-21"


def replay(tmp_path: Path, events: list[dict[str, Any]], *extra: str) -> list[dict[str, Any]]:
    """Write the stream, replay it, and return cases.json."""
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    out = tmp_path / "out"
    result = subprocess.run(
        [*CLI, "replay", str(path), "--out", str(out), *extra],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RECOVERYDESK_DATABASE_URL": f"sqlite:///{tmp_path / 'desk.db'}"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    cases: list[dict[str, Any]] = json.loads((out / "cases.json").read_text())
    return cases


def ev(eid: str, kind: str, when: str, ref: str = "1001", **data: Any) -> dict[str, Any]:
    """An event; its source is the prefix of its id, ``when`` an ISO time."""
    return {
        "id": eid,
        "source": eid.split(":", 1)[0],
        "type": kind,
        "occurred_at": when,
        "order": {"ref": ref},
        "data": data,
    }


def placed(ref: str = "1001", when: str = f"{DAY1}T10:00:00Z", **order: Any) -> dict[str, Any]:
    event = ev(f"shopify:{ref}-placed", "order.placed", when, ref)
    event["order"].update(value="80.00", currency="USD", placed_at=when, **order)
    return event


def drift_of(cases: list[dict[str, Any]], ref: str) -> list[dict[str, Any]]:
    return [c for c in cases if c["order_ref"] == ref and c["category"] == "drift"]


@dataclass(frozen=True)
class Expected:
    rule: str
    opened_by: str
    opened_at: str
    evidence: dict[str, str]
    status: str = "triaged"
    outcome: str | None = None


SCENARIOS = [
    pytest.param(
        # the ERP cancels at 11:00 and the warehouse ships at 12:00; the cancel arrives last
        [
            placed(),
            ev("wms:s1", "fulfillment.shipped", f"{DAY1}T12:00:00Z", tracking="1Z1"),
            ev("shopify:u1", "order.updated", f"{DAY1}T13:00:00Z"),
            ev("netsuite:c1", "order.cancelled", f"{DAY1}T11:00:00Z", reason="stockout"),
        ],
        (),
        Expected(
            "cancelled_but_shipped",
            "wms:s1",
            f"{DAY1}T12:00:00+00:00",
            {"cancelled_by": "netsuite:c1", "shipped_by": "wms:s1"},
        ),
        id="cancelled_but_shipped",
    ),
    pytest.param(
        # 1001 is refunded in full after it shipped; 1002 only after its return came back
        [
            placed(),
            placed("1002"),
            ev("psp:cap1", "payment.captured", f"{DAY1}T10:05:00Z", amount="80.00"),
            ev("psp:cap2", "payment.captured", f"{DAY1}T10:05:00Z", "1002", amount="80.00"),
            ev("wms:s1", "fulfillment.shipped", f"{DAY1}T12:00:00Z", tracking="1Z1"),
            ev("wms:s2", "fulfillment.shipped", f"{DAY1}T12:00:00Z", "1002", tracking="1Z2"),
            ev("wms:ret2", "return.received", f"{DAY1}T13:00:00Z", "1002"),
            ev("psp:rf1", "payment.refunded", f"{DAY1}T14:00:00Z", amount="80.00", refund_id="r1"),
            ev(
                "psp:rf2",
                "payment.refunded",
                f"{DAY1}T14:00:00Z",
                "1002",
                amount="80.00",
                refund_id="r2",
            ),
        ],
        (),
        Expected(
            "refund_while_shipped",
            "psp:rf1",
            f"{DAY1}T14:00:00+00:00",
            {"refunded_by": "psp:rf1", "shipped_by": "wms:s1"},
        ),
        id="refund_while_shipped",
    ),
    pytest.param(
        # two systems refund the same cancellation; 1002's one refund is reported twice
        [
            placed(),
            placed("1002"),
            ev("psp:cap1", "payment.captured", f"{DAY1}T10:05:00Z", amount="80.00"),
            ev(
                "psp:rf1",
                "payment.refunded",
                f"{DAY1}T11:00:00Z",
                amount="40.00",
                refund_id="re_1",
                intent="cancel-line-a",
            ),
            ev(
                "shopify:rf2",
                "payment.refunded",
                f"{DAY1}T11:05:00Z",
                amount="40.00",
                refund_id="sh_2",
                intent="cancel-line-a",
            ),
            ev(
                "shopify:x2",
                "payment.refunded",
                f"{DAY1}T11:00:00Z",
                "1002",
                amount="40.00",
                refund_id="re_9",
            ),
            ev(
                "psp:x2",
                "payment.refunded",
                f"{DAY1}T11:01:00Z",
                "1002",
                amount="40.00",
                refund_id="re_9",
            ),
        ],
        (),
        Expected(
            "double_refund",
            "shopify:rf2",
            f"{DAY1}T11:05:00+00:00",
            {"first_refund": "psp:rf1", "second_refund": "shopify:rf2"},
        ),
        id="double_refund",
    ),
    pytest.param(
        # 1001 is cancelled with its payment captured and never refunded; 1002 is refunded in time
        [
            placed(),
            placed("1002"),
            ev("psp:cap1", "payment.captured", f"{DAY1}T10:05:00Z", amount="80.00"),
            ev("psp:cap2", "payment.captured", f"{DAY1}T10:05:00Z", "1002", amount="80.00"),
            ev("netsuite:c1", "order.cancelled", f"{DAY1}T11:00:00Z", reason="stockout"),
            ev("netsuite:c2", "order.cancelled", f"{DAY1}T11:00:00Z", "1002", reason="stockout"),
            ev(
                "psp:rf2",
                "payment.refunded",
                f"{DAY1}T15:00:00Z",
                "1002",
                amount="80.00",
                refund_id="r2",
            ),
        ],
        ("--until", f"{DAY2}T12:00:00Z"),
        Expected(
            "captured_on_cancelled",
            f"desk:drift:captured_on_cancelled:1001:{DAY1}T11:00:00+00:00",
            f"{DAY2}T11:00:00+00:00",
            {"cancelled_by": "netsuite:c1", "captured_by": "psp:cap1"},
        ),
        id="captured_on_cancelled",
    ),
    pytest.param(
        # three released orders get a cancel request at 11:00; only 1001's warehouse stays silent
        [
            placed(),
            placed("1002"),
            placed("1003"),
            ev("wms:r1", "fulfillment.released", f"{DAY1}T10:30:00Z"),
            ev("wms:r2", "fulfillment.released", f"{DAY1}T10:30:00Z", "1002"),
            ev("wms:r3", "fulfillment.released", f"{DAY1}T10:30:00Z", "1003"),
            ev("helpdesk:cr1", "cancel.requested", f"{DAY1}T11:00:00Z", requested_by="customer"),
            ev(
                "helpdesk:cr2",
                "cancel.requested",
                f"{DAY1}T11:00:00Z",
                "1002",
                requested_by="customer",
            ),
            ev(
                "helpdesk:cr3",
                "cancel.requested",
                f"{DAY1}T11:00:00Z",
                "1003",
                requested_by="customer",
            ),
            ev("wms:ack2", "stopship.acknowledged", f"{DAY1}T12:00:00Z", "1002"),
            ev("wms:rej3", "stopship.rejected", f"{DAY1}T12:00:00Z", "1003", message="packed"),
        ],
        ("--until", f"{DAY1}T14:00:00Z"),
        Expected(
            "cancel_not_acknowledged",
            f"desk:drift:cancel_not_acknowledged:1001:{DAY1}T11:00:00+00:00",
            f"{DAY1}T13:00:00+00:00",
            {"cancel_requested_by": "helpdesk:cr1"},
        ),
        id="cancel_not_acknowledged",
    ),
    pytest.param(
        # a fraud hold (limit 24 h) stays on 1001; 1002's address hold (48 h) is released in time
        [
            placed(),
            placed("1002"),
            ev("shopify:h1", "hold.placed", f"{DAY1}T10:00:00Z", hold_type="fraud"),
            ev("shopify:h2", "hold.placed", f"{DAY1}T10:00:00Z", "1002", hold_type="address"),
            ev("shopify:rel2", "hold.released", f"{DAY2}T09:00:00Z", "1002", hold_type="address"),
        ],
        ("--until", f"{DAY2}T12:00:00Z"),
        Expected(
            "hold_too_old",
            f"desk:drift:hold_too_old:1001:fraud:{DAY1}T10:00:00+00:00",
            f"{DAY2}T10:00:00+00:00",
            {"hold_placed_by": "shopify:h1"},
        ),
        id="hold_too_old",
    ),
]


@pytest.mark.parametrize(("events", "options", "expected"), SCENARIOS)
def test_replay_opens_one_drift_case_per_rule_and_triages_it(
    tmp_path: Path, events: list[dict[str, Any]], options: tuple[str, ...], expected: Expected
) -> None:
    # given a stream in which order 1001 has the contradiction and the other orders do not
    # when it is replayed through the CLI
    cases = replay(tmp_path, events, *options)
    # then 1001 has one drift case, naming its rule and the events on both sides
    (case,) = drift_of(cases, "1001")
    assert (case["rule"], case["data"]["rule"]) == (expected.rule, expected.rule)
    assert case["data"]["evidence"] == expected.evidence
    assert (case["opened_by"], case["opened_at"]) == (expected.opened_by, expected.opened_at)
    assert (case["status"], case["outcome"]) == (expected.status, expected.outcome)
    # and triage put it in the drift queue at P2
    assert (case["queue"], case["priority"]) == ("drift", "P2")
    assert case["timeline"][0]["detail"]["rule"] == expected.rule
    # and the counterexamples have no drift case
    assert {c["order_ref"] for c in cases if c["category"] == "drift"} == {"1001"}


def test_timed_drift_cases_close_when_the_source_system_resolves_them(tmp_path: Path) -> None:
    # given a cancelled order refunded a day late, a silent warehouse that acknowledges late,
    # and a fraud hold released after its limit
    events = [
        placed(),
        placed("1002"),
        placed("1003"),
        ev("psp:cap1", "payment.captured", f"{DAY1}T10:05:00Z", amount="80.00"),
        ev("netsuite:c1", "order.cancelled", f"{DAY1}T11:00:00Z", reason="stockout"),
        ev("wms:r2", "fulfillment.released", f"{DAY1}T10:30:00Z", "1002"),
        ev("helpdesk:cr2", "cancel.requested", f"{DAY1}T11:00:00Z", "1002", requested_by="ops"),
        ev("shopify:h3", "hold.placed", f"{DAY1}T10:00:00Z", "1003", hold_type="fraud"),
        ev("wms:ack2", "stopship.acknowledged", f"{DAY1}T15:00:00Z", "1002"),
        ev("psp:rf1", "payment.refunded", f"{DAY2}T12:00:00Z", amount="80.00", refund_id="r1"),
        ev("shopify:rel3", "hold.released", f"{DAY2}T13:00:00Z", "1003", hold_type="fraud"),
    ]
    # when it is replayed
    cases = replay(tmp_path, events)
    # then each drift case was opened at its due time and closed by the resolving event
    closed = sorted(
        (c["order_ref"], c["rule"], c["status"], c["outcome"], c["opened_at"], c["closed_at"])
        for c in cases
        if c["category"] == "drift"
    )
    assert closed == [
        (
            "1001",
            "captured_on_cancelled",
            "closed",
            "refunded",
            f"{DAY2}T11:00:00+00:00",
            f"{DAY2}T12:00:00+00:00",
        ),
        (
            "1002",
            "cancel_not_acknowledged",
            "closed",
            "cancelled",
            f"{DAY1}T13:00:00+00:00",
            f"{DAY1}T15:00:00+00:00",
        ),
        (
            "1003",
            "hold_too_old",
            "closed",
            "released",
            f"{DAY2}T10:00:00+00:00",
            f"{DAY2}T13:00:00+00:00",
        ),
    ]


def test_an_order_past_its_ship_cutoff_is_a_late_shipment_case_naming_its_rule(
    tmp_path: Path,
) -> None:
    # given an order due to ship by 18:00 that never ships
    events = [
        placed(ship_by=f"{DAY1}T18:00:00Z"),
        ev("shopify:u", "order.updated", f"{DAY1}T19:00:00Z"),
    ]
    # when it is replayed past its cutoff
    cases = replay(tmp_path, events)
    # then the ship-by timer opened a late-shipment case (its own category) naming the rule
    (case,) = cases
    assert (case["category"], case["rule"]) == ("late_shipment_risk", None)
    assert case["data"]["rule"] == "unfulfilled_past_cutoff"


def test_replaying_a_drift_stream_twice_gives_the_same_cases(tmp_path: Path) -> None:
    # given every drift scenario's stream in one file (each order renamed apart)
    events = []
    for number, scenario in enumerate(SCENARIOS):
        for original in scenario.values[0]:
            event = json.loads(json.dumps(original))
            event["id"] = f"{event['id']}-{number}"
            event["order"]["ref"] = f"{number}-{event['order']['ref']}"
            events.append(event)
    events.append(ev("shopify:end", "order.updated", f"{DAY2}T12:00:00Z", "end"))
    # when it is replayed twice
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
    first, second = replay(tmp_path / "a", events), replay(tmp_path / "b", events)
    # then the cases are the same, with one drift case per rule
    assert first == second
    rules = sorted(c["rule"] for c in first if c["category"] == "drift")
    assert rules == sorted(str(s.values[2].rule) for s in SCENARIOS)
