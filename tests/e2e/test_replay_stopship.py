"""The stop-ship workflow (STOPSHIP.md) end to end: ``recoverydesk replay`` over one stream per
branch, checked against the commands the desk sent (``actions.json``: which calls, in which order,
with which idempotency keys and parameters) and the cancellation on the case (``cases.json``).

In replay nothing answers on its own: the warehouse's acknowledgment or rejection, a shipment, a
refund made elsewhere and a received return only come from the stream. Every stream is about
order 1001 (merchant 1, cancellation 1) on Monday 2026-11-23, inside the default business hours
(Mon-Fri 09:00-17:00 UTC), unless a scenario says otherwise.
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
DAY = "2026-11-23"  # a Monday
KEY_PARAMS = ("amount", "currency", "template", "status_action", "lines", "carrier", "tracking")
Call = tuple[str, str, str, str, dict[str, Any]]


def t(hhmm: str, day: str = DAY) -> str:
    """An event time (UTC)."""
    return f"{day}T{hhmm}:00Z"


def at(hhmm: str, day: str = DAY) -> str:
    """The same moment as the desk writes it."""
    return f"{day}T{hhmm}:00+00:00"


def ev(eid: str, kind: str, when: str, ref: str = "1001", **data: Any) -> dict[str, Any]:
    """An event; its source is the prefix of its id."""
    return {
        "id": eid,
        "source": eid.split(":", 1)[0],
        "type": kind,
        "occurred_at": when,
        "order": {"ref": ref},
        "data": data,
    }


def placed(ref: str = "1001", when: str = t("10:00")) -> dict[str, Any]:
    """An order of 120.00: two A at 40.00 and one B at 40.00."""
    event = ev(f"shopify:{ref}-placed", "order.placed", when, ref)
    event["order"].update(
        value="120.00",
        currency="USD",
        placed_at=when,
        customer={"email": "ann@example.com"},
        lines=[{"sku": "A", "qty": 2, "price": "40.00"}, {"sku": "B", "qty": 1, "price": "40.00"}],
    )
    return event


def captured(ref: str = "1001", when: str = t("10:01")) -> dict[str, Any]:
    return ev(f"psp:{ref}-cap", "payment.captured", when, ref, amount="120.00")


def authorized(ref: str = "1001", when: str = t("10:01")) -> dict[str, Any]:
    return ev(f"psp:{ref}-auth", "payment.authorized", when, ref, amount="120.00")


def picking(when: str = t("10:50"), ref: str = "1001") -> dict[str, Any]:
    """The warehouse started picking; 10 minutes before an 11:00 request it is still fresh."""
    return ev(f"wms:{ref}-picking", "fulfillment.picking", when, ref)


def cancel(eid: str = "shopify:c1", when: str = t("11:00"), **data: Any) -> dict[str, Any]:
    return ev(eid, "cancel.requested", when, **{"requested_by": "customer", **data})


def ack(when: str, eid: str = "wms:ack1") -> dict[str, Any]:
    return ev(eid, "stopship.acknowledged", when)


def key(step: str) -> str:
    """The idempotency key of a workflow step (merchant 1, cancellation 1, attempt 1)."""
    return f"stopship:1:1:{step}:1"


def money_key(action: str, amount: str) -> str:
    return f"rd:1:cancellation-1:1:{action}:{amount}"


@dataclass(frozen=True)
class Replayed:
    actions: list[dict[str, Any]]
    cases: list[dict[str, Any]]
    kpis: dict[str, Any]

    def calls(self) -> list[Call]:
        """actions.json, reduced to what a scenario checks: when, where, what, key, params."""
        return [
            (
                a["at"],
                a["system"],
                a["action"],
                a["idempotency_key"],
                {k: a["params"][k] for k in KEY_PARAMS if k in a["params"]},
            )
            for a in self.actions
        ]

    @property
    def case(self) -> dict[str, Any]:
        """The one case of the cancel request."""
        found = [c for c in self.cases if c["cancellation"] is not None]
        assert len(found) == 1, [(c["category"], c["opened_by"]) for c in self.cases]
        return found[0]

    @property
    def cancellation(self) -> dict[str, Any]:
        workflow: dict[str, Any] = self.case["cancellation"]
        return workflow

    @property
    def times(self) -> dict[str, str | None]:
        stamps: dict[str, str | None] = self.cancellation["timestamps"]
        return stamps

    def timeline(self, kind: str) -> list[dict[str, Any]]:
        return [entry for entry in self.case["timeline"] if entry["kind"] == kind]


def replay(
    tmp_path: Path,
    events: list[dict[str, Any]],
    *extra: str,
    config: str | None = None,
    out: str = "out",
) -> Replayed:
    """Write the stream (and a merchant configuration), replay it, read the three files."""
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    args = [*CLI, "replay", str(path), "--out", str(tmp_path / out), *extra]
    if config is not None:
        (tmp_path / "merchant.yaml").write_text(config)
        args += ["--config", str(tmp_path / "merchant.yaml")]
    result = subprocess.run(
        args,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RECOVERYDESK_DATABASE_URL": f"sqlite:///{tmp_path / 'desk.db'}"},
        check=False,
    )
    assert result.returncode == 0, result.stderr

    def load(name: str) -> Any:
        return json.loads((tmp_path / out / name).read_text())

    return Replayed(
        load("actions.json"), load("cases.json"), load("kpis.json")["merchants"]["replay"]
    )


def stop_commands(when: str) -> list[Call]:
    """Hold and cancel at the 3PL (the stop of a released, picking or packed order)."""
    return [
        (when, "wms", "wms_hold", key("wms_hold"), {}),
        (when, "wms", "wms_cancel", key("wms_cancel"), {}),
    ]


def confirmed(when: str, amount: str = "120.00", status_action: str = "close") -> list[Call]:
    """After the stop is confirmed: ERP, refund of the captured amount, customer message."""
    return [
        (when, "erp", "erp_update", key("erp_update"), {"status_action": status_action}),
        (
            when,
            "payments",
            "refund",
            money_key("refund", amount.removesuffix(".00")),
            {"amount": amount, "currency": "USD"},
        ),
        (when, "email", "send_message", key("notify"), {"template": "cancellation_confirmed"}),
    ]


# -- 1. not released --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("erp_status", "payment", "status_action", "money_call"),
    [
        pytest.param(
            "pending_approval",
            authorized(),
            "cancel",
            ("void", money_key("void", "120")),
            id="pending_approval-authorized",
        ),
        pytest.param(
            None, captured(), "close", ("refund", money_key("refund", "120")), id="captured"
        ),
    ],
)
def test_not_released_order_is_held_as_a_precaution_then_cancelled_in_the_erp(
    tmp_path: Path,
    erp_status: str | None,
    payment: dict[str, Any],
    status_action: str,
    money_call: tuple[str, str],
) -> None:
    # given an order the warehouse never reported on (NetSuite may say Pending Approval)
    stream = [placed(), payment]
    if erp_status is not None:
        stream.append(ev("netsuite:u1", "order.updated", t("10:02"), erp_status=erp_status))
    # when the customer asks to cancel it, and the warehouse does not answer the status query
    done = replay(tmp_path, [*stream, cancel()])
    # then the desk asks the 3PL, places a precautionary hold (a release may be queued), and,
    # with no acknowledgment to wait for, cancels in the ERP (cancel while Pending Approval,
    # close otherwise), voids an authorization or refunds a capture, and tells the customer
    action, money = money_call
    erp = {"status_action": status_action}
    if erp_status is not None:
        assert done.actions[2]["params"]["erp_status"] == erp_status
    assert done.calls() == [
        (at("11:00"), "wms", "wms_status", key("wms_status"), {}),
        (at("11:00"), "wms", "wms_hold", key("precaution_hold"), {}),
        (at("11:00"), "erp", "erp_update", key("erp_update"), erp),
        (at("11:00"), "payments", action, money, {"amount": "120.00", "currency": "USD"}),
        (
            at("11:00"),
            "email",
            "send_message",
            key("notify"),
            {"template": "cancellation_confirmed"},
        ),
    ]
    assert done.actions[2]["params"]["reason_code"] == "customer_request"
    workflow = done.cancellation
    assert (workflow["branch"], workflow["state_from"], workflow["hold_first"]) == (
        "not_released",
        "desk_unconfirmed",
        True,
    )
    assert (workflow["stage"], workflow["outcome"]) == ("done", "stopped")
    assert workflow["timestamps"] == {
        "requested_at": at("11:00"),
        "classified_at": at("11:00"),
        "stop_sent_at": at("11:00"),
        "stop_acknowledged_at": at("11:00"),
        "stop_rejected_at": None,
        "erp_updated_at": at("11:00"),
        "payment_action_at": at("11:00"),
        "customer_notified_at": at("11:00"),
        "final_outcome_at": at("11:00"),
    }
    # and the cancel request's case is closed as cancelled; the KPIs count the order cancelled
    assert (done.case["status"], done.case["outcome"]) == ("closed", "cancelled")
    assert done.kpis["cancellation_rate"] == {"numerator": 1, "denominator": 1, "value": 1.0}
    assert done.kpis["pre_fulfillment_cancel_rate"]["numerator"] == 1
    assert done.kpis["stop_ship_success_rate"]["numerator"] == 1


# -- 2. picking, acknowledged -----------------------------------------------------------------


def test_picking_order_is_held_and_cancelled_and_refunded_only_after_the_acknowledgment(
    tmp_path: Path,
) -> None:
    # given a captured order the warehouse is picking (reported 10 minutes ago: fresh)
    # when the customer cancels at 11:00 and the warehouse acknowledges the stop at 11:40
    done = replay(tmp_path, [placed(), captured(), picking(), cancel(), ack(t("11:40"))])
    # then hold + cancel go to the 3PL at once (no status query: the state is fresh), and the
    # ERP, the refund of the captured 120.00 and the message only follow the acknowledgment
    assert done.calls() == stop_commands(at("11:00")) + confirmed(at("11:40"))
    workflow = done.cancellation
    assert (workflow["branch"], workflow["state_used"], workflow["state_from"]) == (
        "at_warehouse",
        "picking",
        "order",
    )
    assert (workflow["outcome"], workflow["acknowledged_by"]) == ("stopped", "wms:ack1")
    assert workflow["ack_due_at"] == at("12:00")  # 1 working hour
    assert done.times == {
        "requested_at": at("11:00"),
        "classified_at": at("11:00"),
        "stop_sent_at": at("11:00"),
        "stop_acknowledged_at": at("11:40"),
        "stop_rejected_at": None,
        "erp_updated_at": at("11:40"),
        "payment_action_at": at("11:40"),
        "customer_notified_at": at("11:40"),
        "final_outcome_at": at("11:40"),
    }
    assert (done.case["status"], done.case["outcome"]) == ("closed", "cancelled")
    assert done.case["ledger"]["balance"]["refunded"] == "120.00"


# -- 3. packed, acknowledged ------------------------------------------------------------------

NO_PICKED_RULE = """
rules:
  priority:
    - {name: picked_waiting_for_warehouse, when: "false", then: P3}
"""


def test_packed_order_is_raised_to_p2_and_has_two_working_hours_to_acknowledge(
    tmp_path: Path,
) -> None:
    # given a packed order whose cancel request triage alone would leave at P3
    stream = [placed(), captured(), ev("wms:pk", "fulfillment.packed", t("10:50")), cancel()]
    # when the warehouse acknowledges 90 minutes after the stop (past a picking window of 1 h)
    done = replay(tmp_path, [*stream, ack(t("12:30"))], config=NO_PICKED_RULE)
    # then the stop raised the case to P2 because the hold may fail
    assert [(e["detail"]["from"], e["detail"]["to"]) for e in done.timeline("priority_raised")] == [
        ("P3", "P2")
    ]
    assert done.case["priority"] == "P2"
    # and the window is 2 working hours: no exception, no escalation, the stop went through
    workflow = done.cancellation
    assert (workflow["branch"], workflow["ack_due_at"]) == ("packed", at("13:00"))
    assert done.timeline("stopship_exception") == []
    assert done.case["escalations"] == []
    assert done.calls() == stop_commands(at("11:00")) + confirmed(at("12:30"))
    assert (workflow["outcome"], done.times["stop_acknowledged_at"]) == ("stopped", at("12:30"))


# -- 4. picking, no acknowledgment, in business hours -----------------------------------------

NEW_YORK = """
calendar:
  time_zone: America/New_York
  hours:
    mon: ["09:00-17:00"]
    tue: ["09:00-17:00"]
    wed: ["09:00-17:00"]
    thu: ["09:00-17:00"]
    fri: ["09:00-17:00"]
"""
FRIDAY, MONDAY = "2026-11-27", "2026-11-30"


def friday_late_cancel() -> list[dict[str, Any]]:
    """A picking order cancelled on Friday at 16:30 New York time (21:30 UTC), half an hour
    before closing: the 1-working-hour window ends on Monday at 09:30 (14:30 UTC)."""
    return [
        placed(when=t("20:00", FRIDAY)),
        captured(when=t("20:01", FRIDAY)),
        picking(t("21:20", FRIDAY)),
        cancel(when=t("21:30", FRIDAY)),
    ]


def test_no_acknowledgment_within_the_business_hours_window_is_an_escalated_exception(
    tmp_path: Path,
) -> None:
    # given a stop sent half an hour before the merchant's Friday closing time
    # when the warehouse never answers (replayed until Monday 15:00 UTC)
    done = replay(tmp_path, friday_late_cancel(), "--until", t("15:00", MONDAY), config=NEW_YORK)
    # then the window ran in business hours: the exception came on Monday at 09:30 local,
    # not on Friday evening
    workflow = done.cancellation
    assert workflow["ack_due_at"] == at("14:30", MONDAY)
    assert [e["at"] for e in done.timeline("stopship_exception")] == [at("14:30", MONDAY)]
    assert (workflow["stage"], workflow["outcome"], workflow["exception_reason"]) == (
        "exception",
        "exception",
        "no_acknowledgment",
    )
    # and the case is escalated and raised to P1; it stays open
    assert [
        (e["clock"], e["stage"], e["reason"], e["fired_at"]) for e in done.case["escalations"]
    ] == [("stopship", "exception", "no_acknowledgment", at("14:30", MONDAY))]
    assert (done.case["priority"], done.case["status"], done.case["outcome"]) == (
        "P1",
        "triaged",
        None,
    )
    # and nothing beyond the stop was done: no ERP update, no payment, no customer message
    assert done.calls() == stop_commands(at("21:30", FRIDAY))
    assert {name: value for name, value in done.times.items() if value} == {
        "requested_at": at("21:30", FRIDAY),
        "classified_at": at("21:30", FRIDAY),
        "stop_sent_at": at("21:30", FRIDAY),
    }
    assert done.kpis["stop_ship_exceptions_open"] == 1
    assert done.kpis["cancellation_rate"]["numerator"] == 0


def test_a_late_acknowledgment_resumes_the_exception_to_stopped(tmp_path: Path) -> None:
    # given the Friday stop that went into exception on Monday at 14:30 UTC
    # when the warehouse's acknowledgment finally comes on Monday at 16:00 UTC
    late = ack(t("16:00", MONDAY))
    done = replay(tmp_path, [*friday_late_cancel(), late], config=NEW_YORK)
    # then the workflow resumes: ERP, refund and message only now, and the order is stopped
    assert [e["at"] for e in done.timeline("stopship_exception")] == [at("14:30", MONDAY)]
    assert done.calls() == stop_commands(at("21:30", FRIDAY)) + confirmed(at("16:00", MONDAY))
    workflow = done.cancellation
    assert (workflow["stage"], workflow["outcome"], workflow["exception_reason"]) == (
        "done",
        "stopped",
        None,
    )
    assert done.times["stop_acknowledged_at"] == at("16:00", MONDAY)
    assert done.times["final_outcome_at"] == at("16:00", MONDAY)
    assert (done.case["status"], done.case["outcome"]) == ("closed", "cancelled")
    assert done.kpis["stop_ship_exceptions_open"] == 0


# -- 5. rejected, then shipped ----------------------------------------------------------------


def test_a_rejected_stop_is_an_exception_until_the_shipment_converts_it_to_a_return(
    tmp_path: Path,
) -> None:
    # given a picking order whose stop the warehouse rejects at 11:10
    rejected = ev("wms:rej1", "stopship.rejected", t("11:10"), message="already on the truck")
    stream = [placed(), captured(), picking(), cancel(), rejected]
    # when the warehouse then ships it at 11:40
    shipped = ev("wms:ship1", "fulfillment.shipped", t("11:40"), tracking="1Z999")
    done = replay(tmp_path, [*stream, shipped])
    # then the rejection put the workflow in exception (escalated, the 3PL's message kept)
    workflow = done.cancellation
    assert (workflow["rejection"], done.times["stop_rejected_at"]) == (
        "already on the truck",
        at("11:10"),
    )
    assert [e["at"] for e in done.timeline("stopship_exception")] == [at("11:10")]
    assert [(e["clock"], e["reason"]) for e in done.case["escalations"]] == [
        ("stopship", "stop_rejected")
    ]
    # and the shipment converted it to a return: authorization and return instructions, no
    # refund before the return comes back, the customer never told "cancelled"
    assert done.calls() == [
        *stop_commands(at("11:00")),
        (at("11:40"), "erp", "return_authorize", key("return_authorize"), {}),
        (
            at("11:40"),
            "email",
            "send_message",
            key("notify_return"),
            {"template": "return_instructions"},
        ),
    ]
    assert (workflow["branch"], workflow["stage"], workflow["outcome"]) == (
        "shipped",
        "awaiting_return",
        "converted_to_return",
    )
    assert done.times["stop_acknowledged_at"] is None
    assert (done.times["final_outcome_at"], done.times["payment_action_at"]) == (at("11:40"), None)
    assert (done.case["status"], done.case["outcome"]) == ("closed", "converted_to_return")


# -- 6. already shipped -----------------------------------------------------------------------


def shipped_before_cancel(carrier: str = "UPS") -> list[dict[str, Any]]:
    shipped = ev("wms:ship1", "fulfillment.shipped", t("10:50"), tracking="1Z999", carrier=carrier)
    return [placed(), captured(), shipped, cancel()]


RETURN_FLOW = [
    (at("11:00"), "erp", "return_authorize", key("return_authorize"), {}),
    (
        at("11:00"),
        "email",
        "send_message",
        key("notify_return"),
        {"template": "return_instructions"},
    ),
]


def refund_flow(when: str) -> list[Call]:
    return [
        (
            when,
            "payments",
            "refund",
            money_key("refund", "120"),
            {"amount": "120.00", "currency": "USD"},
        ),
        (when, "email", "send_message", key("notify_refund"), {"template": "refund_issued"}),
    ]


def test_a_shipped_order_is_converted_to_a_return_and_refunded_when_the_return_arrives(
    tmp_path: Path,
) -> None:
    # given an order that shipped before the customer asked to cancel it
    # when the return is received at 15:00
    returned = ev("wms:ret1", "return.received", t("15:00"))
    done = replay(tmp_path, [*shipped_before_cancel(), returned])
    # then nothing is cancelled at the warehouse: a return is authorized and the customer gets
    # return instructions at once, the refund (and its message) only when the return is back
    assert done.calls() == RETURN_FLOW + refund_flow(at("15:00"))
    workflow = done.cancellation
    assert (workflow["branch"], workflow["stage"], workflow["outcome"]) == (
        "shipped",
        "done",
        "converted_to_return",
    )
    assert done.times["stop_sent_at"] is None
    assert (done.times["final_outcome_at"], done.times["payment_action_at"]) == (
        at("11:00"),
        at("15:00"),
    )
    # and the case is closed as converted to a return (whatever the request's id sorts like)
    assert (done.case["status"], done.case["outcome"]) == ("closed", "converted_to_return")
    assert done.kpis["cancellation_rate"]["numerator"] == 0
    assert done.kpis["late_cancel_requests"] == 1


def test_without_a_return_a_converted_cancellation_is_never_refunded(tmp_path: Path) -> None:
    # given the same shipped order; when no return arrives
    done = replay(tmp_path, shipped_before_cancel(), "--until", t("16:00", "2026-11-25"))
    # then no refund is sent (a refund on an order still out is refund leakage)
    assert done.calls() == RETURN_FLOW
    assert done.cancellation["stage"] == "awaiting_return"
    assert done.case["ledger"]["entries"] == []


@pytest.mark.parametrize(("carrier", "intercepted"), [("UPS", True), ("FedEx", False)])
def test_a_carrier_intercept_is_attempted_where_the_merchant_allows_it(
    tmp_path: Path, carrier: str, intercepted: bool
) -> None:
    # given a merchant whose intercepts go through UPS only
    config = "stopship: {intercept_carriers: [ups]}\n"
    # when a cancel arrives for an order shipped with the carrier
    done = replay(tmp_path, shipped_before_cancel(carrier), config=config)
    # then an intercept is attempted for a UPS parcel only, with its tracking number, and the
    # return way is taken as well (the intercept may fail)
    intercept: list[Call] = [
        (
            at("11:00"),
            "carrier",
            "carrier_intercept",
            key("carrier_intercept"),
            {"carrier": "ups", "tracking": ["1Z999"]},
        )
    ]
    assert done.calls() == (intercept if intercepted else []) + RETURN_FLOW


def test_refund_on_conversion_refunds_at_once(tmp_path: Path) -> None:
    # given a merchant who refunds as soon as a shipped cancel is converted
    config = "stopship: {refund_on: conversion}\n"
    # when a cancel arrives for an order already shipped (and no return ever comes)
    done = replay(tmp_path, shipped_before_cancel(), config=config)
    # then the refund goes out right after the return instructions
    assert done.calls() == RETURN_FLOW + refund_flow(at("11:00"))
    assert done.cancellation["outcome"] == "converted_to_return"
    assert done.times["payment_action_at"] == at("11:00")


# -- 7. partial cancel ------------------------------------------------------------------------


def test_a_partial_cancel_stops_refunds_and_cancels_only_the_requested_lines(
    tmp_path: Path,
) -> None:
    # given a captured 120.00 order (2 x A at 40.00, 1 x B) the warehouse is picking
    # when the customer cancels both A (not B) and the warehouse acknowledges
    lines = [{"sku": "A", "qty": 2}]
    done = replay(tmp_path, [placed(), captured(), picking(), cancel(lines=lines), ack(t("11:20"))])
    # then every stop, ERP and message call names the lines, the ERP closes those lines, and
    # the refund is 2 x 40.00
    assert done.calls() == [
        (at("11:00"), "wms", "wms_hold", key("wms_hold"), {"lines": lines}),
        (at("11:00"), "wms", "wms_cancel", key("wms_cancel"), {"lines": lines}),
        (
            at("11:20"),
            "erp",
            "erp_update",
            key("erp_update"),
            {"status_action": "close_lines", "lines": lines},
        ),
        (
            at("11:20"),
            "payments",
            "refund",
            money_key("refund", "80"),
            {"amount": "80.00", "currency": "USD"},
        ),
        (
            at("11:20"),
            "email",
            "send_message",
            key("notify"),
            {"template": "partial_cancellation_confirmed", "lines": lines},
        ),
    ]
    assert (done.cancellation["outcome"], done.cancellation["lines"]) == ("stopped", {"A": 2})
    assert done.case["ledger"]["balance"]["refundable"] == "40.00"
    # and the order is partially, not fully, cancelled
    assert done.kpis["partial_cancellation_rate"]["numerator"] == 1
    assert done.kpis["cancellation_rate"]["numerator"] == 0


# -- 8. fraud ---------------------------------------------------------------------------------


def test_a_fraud_cancel_voids_the_authorization_before_anything_else(tmp_path: Path) -> None:
    # given an authorized-only order the warehouse is picking (last reported 40 minutes ago)
    stream = [placed(), authorized(), picking(t("10:20"))]
    # when ops cancel it for fraud, and the warehouse acknowledges the stop at 11:20
    fraud = cancel("desk:c1", requested_by="ops", reason="fraud")
    done = replay(tmp_path, [*stream, fraud, ack(t("11:20"))])
    # then the void is the very first call, before the status query and the stop; no second
    # payment action follows the acknowledgment
    assert done.calls() == [
        (
            at("11:00"),
            "payments",
            "void",
            "rd:1:cancellation-1:1:fraud_void:void:120",  # its own intent: the fraud void
            {"amount": "120.00", "currency": "USD"},
        ),
        (at("11:00"), "wms", "wms_status", key("wms_status"), {}),
        *stop_commands(at("11:00")),
        (at("11:20"), "erp", "erp_update", key("erp_update"), {"status_action": "close"}),
        (
            at("11:20"),
            "email",
            "send_message",
            key("notify"),
            {"template": "cancellation_confirmed"},
        ),
    ]
    assert done.actions[4]["params"]["reason_code"] == "fraud"
    workflow = done.cancellation
    assert (workflow["fraud"], workflow["reason_code"], workflow["outcome"]) == (
        True,
        "fraud",
        "cancelled_fraud",
    )
    assert (done.times["payment_action_at"], done.times["stop_acknowledged_at"]) == (
        at("11:00"),
        at("11:20"),
    )
    assert done.kpis["cancellation_rate"]["numerator"] == 1


# -- 9. refunded elsewhere --------------------------------------------------------------------


def test_a_refund_made_in_the_storefront_is_never_refunded_again(tmp_path: Path) -> None:
    # given a stop in progress on a captured order
    stream = [placed(), captured(), picking(), cancel()]
    # when the storefront admin refunds the full 120.00 before the warehouse acknowledges
    elsewhere = ev("shopify:rf1", "payment.refunded", t("11:10"), amount="120.00", refund_id="re_1")
    done = replay(tmp_path, [*stream, elsewhere, ack(t("11:20"))])
    # then the desk's payment step finds nothing left to refund: no refund call at all
    assert done.calls() == [
        *stop_commands(at("11:00")),
        (at("11:20"), "erp", "erp_update", key("erp_update"), {"status_action": "close"}),
        (
            at("11:20"),
            "email",
            "send_message",
            key("notify"),
            {"template": "cancellation_confirmed"},
        ),
    ]
    assert [a for a in done.actions if a["system"] == "payments"] == []
    assert done.cancellation["outcome"] == "stopped"
    assert done.times["payment_action_at"] is None
    balance = done.case["ledger"]["balance"]
    assert (balance["refunded_elsewhere"], balance["refundable"]) == ("120.00", "0.00")
    assert len(done.timeline("nothing_left_to_refund")) == 1


# -- 10. duplicates ---------------------------------------------------------------------------


def test_duplicate_events_and_a_second_request_make_one_workflow_and_one_set_of_calls(
    tmp_path: Path,
) -> None:
    # given a cancel request delivered twice, a second request from the helpdesk 5 minutes
    # later, the acknowledgment delivered twice, and the first request replayed once more
    first = cancel()
    again = cancel("helpdesk:c2", t("11:05"))
    done = replay(
        tmp_path,
        [
            placed(),
            captured(),
            picking(),
            first,
            first,
            again,
            ack(t("11:20")),
            ack(t("11:20")),
            first,
        ],
    )
    # then there is one workflow (the second request joined it) and every call is made once
    assert done.calls() == stop_commands(at("11:00")) + confirmed(at("11:20"))
    assert [c["category"] for c in done.cases] == ["change_request"]
    assert done.cancellation["requests"] == ["shopify:c1", "helpdesk:c2"]
    assert done.cancellation["outcome"] == "stopped"
    assert len(done.case["ledger"]["entries"]) == 1


# -- 11. out of order -------------------------------------------------------------------------


def test_an_acknowledgment_stored_before_the_request_arrived_confirms_the_stop(
    tmp_path: Path,
) -> None:
    # given the warehouse's acknowledgment (occurred 11:20) arrives before the cancel request
    # it answers (occurred 11:00, forwarded late, so it arrives at 11:20)
    stream = [placed(), captured(), picking(), ack(t("11:20")), cancel()]
    # when the request arrives
    done = replay(tmp_path, stream)
    # then the workflow finds the stored answer: the stop is confirmed at once, nothing waits
    # for an acknowledgment that already came, and no second stop is sent (the desk's picking
    # state was 30 minutes old, so the 3PL was asked for it first)
    assert done.calls() == [
        (at("11:20"), "wms", "wms_status", key("wms_status"), {}),
        *confirmed(at("11:20")),
    ]
    workflow = done.cancellation
    assert (workflow["outcome"], workflow["acknowledged_by"]) == ("stopped", "wms:ack1")
    assert (done.times["requested_at"], done.times["classified_at"]) == (at("11:00"), at("11:20"))
    assert (done.times["stop_sent_at"], done.times["stop_acknowledged_at"]) == (None, at("11:20"))
    assert done.case["escalations"] == []


def test_an_acknowledgment_older_than_the_request_does_not_confirm_it(tmp_path: Path) -> None:
    # given an acknowledgment from 10:55 (of some earlier stop) and a cancel request at 11:00
    stream = [placed(), captured(), picking(), ack(t("10:55"), "wms:old-ack"), cancel()]
    # when nothing else comes (replayed until 12:30)
    done = replay(tmp_path, stream, "--until", t("12:30"))
    # then the old answer is not taken for this request's: the stop is sent and, unanswered,
    # it ends in exception at 12:00, with no payment and no message
    assert done.calls() == stop_commands(at("11:00"))
    workflow = done.cancellation
    assert (workflow["acknowledged_at"], workflow["outcome"]) == (None, "exception")
    assert [e["at"] for e in done.timeline("stopship_exception")] == [at("12:00")]


# -- 12. determinism --------------------------------------------------------------------------


def test_replaying_the_same_stream_twice_sends_the_same_calls(tmp_path: Path) -> None:
    # given one stream with a picking stop, a shipped conversion and a fraud cancel
    stream = [
        placed(),
        captured(),
        picking(),
        cancel(),
        placed("1002"),
        captured("1002"),
        ev("wms:ship2", "fulfillment.shipped", t("10:30"), "1002", tracking="1Z2"),
        ev("helpdesk:c2", "cancel.requested", t("11:00"), "1002", requested_by="customer"),
        placed("1003"),
        authorized("1003"),
        ev("desk:c3", "cancel.requested", t("11:05"), "1003", requested_by="ops", reason="fraud"),
        ack(t("11:30")),
        ev("wms:ret2", "return.received", t("13:00"), "1002"),
    ]
    # when it is replayed twice
    first = replay(tmp_path, stream, out="a")
    replay(tmp_path, stream, out="b")
    # then both runs sent the same calls, byte for byte, and decided the same outcomes
    assert len(first.actions) == 14  # 5 for 1001, 4 for 1002, 5 for 1003
    assert (tmp_path / "a" / "actions.json").read_bytes() == (
        tmp_path / "b" / "actions.json"
    ).read_bytes()
    assert (tmp_path / "a" / "cases.json").read_bytes() == (
        tmp_path / "b" / "cases.json"
    ).read_bytes()
    outcomes = {c["order_ref"]: c["cancellation"]["outcome"] for c in first.cases}
    assert outcomes == {"1001": "stopped", "1002": "converted_to_return", "1003": "cancelled_fraud"}
