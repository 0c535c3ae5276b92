"""The default playbooks around the warehouse and after the parcel leaves (issue 6): warehouse
exception, delivery exception, refund acceleration, concessions and chargeback, each replayed
with ``recoverydesk replay`` over a stream with an order the playbook saves and one it cannot,
and checked on ``actions.json`` and ``cases.json`` (see ``test_replay_playbooks.py``)."""

from __future__ import annotations

from textwrap import dedent

import pytest

from tests.e2e.playbook_replay import (
    Replayed,
    assert_playbook_actor,
    at,
    ev,
    key,
    order,
    placed,
    rows,
    run_replay,
    steps_run,
    t,
)

DAY_2, DAY_3, DAY_4 = "2026-11-24", "2026-11-25", "2026-11-26"


def shipped(ref: str) -> dict[str, object]:
    tracking = f"1Z{ref}"
    return ev(f"wms:{ref}-shipped", "fulfillment.shipped", t("12:00"), ref, tracking=tracking)


# -- warehouse exception ---------------------------------------------------------------------

LABEL_JAM, LATE = order("6001"), order("6002", ship_by=t("18:00"))
WMS_STREAM = [
    placed(LABEL_JAM),
    placed(LATE),
    ev(
        "wms:6001-hold",
        "hold.placed",
        t("09:05"),
        "6001",
        hold_type="warehouse",
        reason="label printer jam",
    ),
    ev("wms:6001-released", "hold.released", t("10:00"), "6001", hold_type="warehouse"),
    ev("shopify:6002-cancel", "order.cancelled", t("12:00", DAY_2), "6002", reason="lead_time"),
]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    return run_replay(tmp_path_factory.mktemp("wms"), WMS_STREAM)


def test_a_label_exception_is_asked_about_the_label_reprinted_and_the_hold_released(
    warehouse: Replayed,
) -> None:
    case = warehouse.case("6001", "wms_exception")
    # then the warehouse was asked for the order's status and to reprint the label, once each,
    # the reprint naming the exception's reason
    assert warehouse.calls("6001") == [
        ("wms", "wms_status", key(case, "wms_status")),
        ("wms", "label_reprint", key(case, "label_reprint")),
    ]
    assert warehouse.sent("6001")[1]["params"] == {"reason": "label printer jam"}
    # and the warehouse's release closed the case; no delay message (not a late shipment)
    assert (case["status"], case["outcome"], case["closed_at"]) == (
        "closed",
        "released",
        at("10:00"),
    )
    assert steps_run(case) == [("wms_status", 1), ("label_reprint", 1)]
    assert_playbook_actor(case, "wms_exception")


def test_a_missed_ship_by_asks_the_warehouse_tells_the_customer_once_and_ends_cancelled(
    warehouse: Replayed,
) -> None:
    # given 6002 was due to ship by 18:00 and never did
    case = warehouse.case("6002", "late_shipment_risk")
    assert case["opened_at"] == at("18:00")
    # then at 18:00 the warehouse was asked and the customer told of the delay, once; no
    # label was reprinted (nothing said label)
    sent = warehouse.sent("6002")
    assert [(a["at"], a["system"], a["action"]) for a in sent] == [
        (at("18:00"), "wms", "wms_status"),
        (at("18:00"), "email", "send_message"),
    ]
    assert (sent[1]["params"]["template"], sent[1]["params"]["to"]) == (
        "delay_update",
        "buyer6002@example.com",
    )
    assert sent[1]["idempotency_key"] == key(case, "delay_notice") + ":message"
    # and the merchant cancelled it the next day: the case closed cancelled
    assert (case["status"], case["outcome"]) == ("closed", "cancelled")
    assert steps_run(case) == [("wms_status", 1), ("delay_notice", 1)]
    assert_playbook_actor(case, "wms_exception")


# -- delivery exception ----------------------------------------------------------------------

LOST_SMALL, DAMAGED_LARGE = order("7001", "80.00"), order("7002", "300.00")
DELIVERY_STREAM = [
    placed(LOST_SMALL),
    placed(DAMAGED_LARGE),
    ev("psp:7001-captured", "payment.captured", t("09:01"), "7001", amount="80.00"),
    ev("psp:7002-captured", "payment.captured", t("09:01"), "7002", amount="300.00"),
    ev(
        "wms:7001-shipped",
        "fulfillment.shipped",
        t("12:00"),
        "7001",
        tracking="1Z7001",
        carrier="ups",
    ),
    ev(
        "wms:7002-shipped",
        "fulfillment.shipped",
        t("12:00"),
        "7002",
        tracking="1Z7002",
        carrier="ups",
    ),
    ev("carrier:7001-lost", "delivery.exception", t("10:00", DAY_3), "7001", kind="lost"),
    ev("carrier:7002-damaged", "delivery.exception", t("10:00", DAY_3), "7002", kind="damaged"),
    # the carrier reports the loss again: a duplicate, nothing is reshipped twice
    ev("carrier:7001-lost", "delivery.exception", t("10:00", DAY_3), "7001", kind="lost"),
    ev("carrier:7001-delivered", "fulfillment.delivered", t("12:00", DAY_4), "7001"),
    ev("wms:7002-returned", "return.received", t("16:00", DAY_4), "7002"),
]


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    return run_replay(tmp_path_factory.mktemp("delivery"), DELIVERY_STREAM)


def test_a_lost_parcel_under_100_is_reshipped_and_claimed_then_delivered(
    deliveries: Replayed,
) -> None:
    case = deliveries.case("7001", "delivery_exception")
    # then the warehouse reshipped the order's lines and the carrier got a claim with the
    # tracking number, once each, when the loss was reported
    reship, claim = deliveries.sent("7001")
    assert (reship["at"], reship["system"], reship["action"], reship["idempotency_key"]) == (
        at("10:00", DAY_3),
        "wms",
        "reship",
        key(case, "replacement_or_refund"),
    )
    assert reship["params"] == {"lines": [{"sku": "SKU-7001", "qty": 1}], "reason": "lost"}
    assert (claim["system"], claim["action"], claim["idempotency_key"]) == (
        "carrier",
        "claim",
        key(case, "carrier_claim"),
    )
    assert (claim["params"]["tracking"], claim["params"]["carrier"]) == ("1Z7001", "ups")
    (concession,) = rows(case, "playbook_step", "replacement_or_refund")
    assert (concession["detail"]["facts"]["remedy"], concession["detail"]["facts"]["rule"]) == (
        "reship",
        0,
    )
    # and the delivery closed the case; nothing was refunded
    assert (case["status"], case["outcome"]) == ("closed", "delivered")
    assert steps_run(case) == [("replacement_or_refund", 1), ("carrier_claim", 1)]
    assert_playbook_actor(case, "delivery_exception")


def test_a_damaged_parcel_of_300_is_refunded_from_the_ledger_and_claimed(
    deliveries: Replayed,
) -> None:
    case = deliveries.case("7002", "delivery_exception")
    sent = deliveries.sent("7002")
    # then no reshipment: the whole order was refunded through the ledger, and claimed
    assert [(a["system"], a["action"]) for a in sent] == [
        ("payments", "refund"),
        ("carrier", "claim"),
    ]
    assert (sent[0]["params"]["amount"], sent[0]["params"]["currency"]) == ("300.00", "USD")
    (concession,) = rows(case, "playbook_step", "replacement_or_refund")
    facts = concession["detail"]["facts"]
    assert (facts["remedy"], facts["amount"], facts["ledger_key"]) == (
        "refund",
        "300.00",
        sent[0]["idempotency_key"],
    )
    # and the returned parcel closed the case
    assert (case["status"], case["outcome"]) == ("closed", "returned")
    assert_playbook_actor(case, "delivery_exception")


# -- refund acceleration ---------------------------------------------------------------------

REFUNDED, WAITING = order("8001"), order("8002")
REFUND_STREAM = [
    placed(REFUNDED),
    placed(WAITING),
    *(shipped(ref) for ref in ("8001", "8002")),
    ev(
        "helpdesk:8001-ticket",
        "ticket.created",
        t("10:00"),
        "8001",
        ticket_id="T-8001",
        topic="refund",
    ),
    ev(
        "helpdesk:8002-ticket",
        "ticket.created",
        t("10:00"),
        "8002",
        ticket_id="T-8002",
        topic="refund_status",
    ),
    ev("psp:8001-refund", "payment.refunded", t("15:00"), "8001", refund_id="re_1", amount="80.00"),
    ev("desk:tick", "order.updated", t("10:00", DAY_3), "8002"),
]


@pytest.fixture(scope="module")
def refunds(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    return run_replay(tmp_path_factory.mktemp("refund"), REFUND_STREAM)


def test_a_refund_ticket_is_looked_up_answered_on_the_ticket_and_closed_by_the_refund(
    refunds: Replayed,
) -> None:
    # given a helpdesk ticket about a refund (the desk's default opener: topic refund)
    case = refunds.case("8001", "refund_request")
    # then the payment provider was asked where the refund is, and the customer answered on
    # the ticket (helpdesk, not email), once each
    lookup, message = refunds.sent("8001")
    assert (lookup["system"], lookup["action"], lookup["idempotency_key"]) == (
        "payments",
        "refund_lookup",
        key(case, "refund_status"),
    )
    assert (message["system"], message["action"], message["params"]["template"]) == (
        "helpdesk",
        "send_message",
        "refund_status",
    )
    assert message["params"]["ticket"] == "T-8001"
    # and the refund closed the case
    assert (case["status"], case["outcome"], case["root_cause"]) == (
        "closed",
        "refunded",
        "refund_delay",
    )
    assert steps_run(case) == [("refund_status", 1), ("refund_status_message", 1)]
    assert_playbook_actor(case, "refund_acceleration")


def test_a_refund_that_never_comes_is_left_to_a_person_without_repeating_itself(
    refunds: Replayed,
) -> None:
    case = refunds.case("8002", "refund_request")
    # then two days on, still one lookup and one message: the desk sends no refund itself,
    # it suggests a person refunds from the ledger
    assert [a["action"] for a in refunds.sent("8002")] == ["refund_lookup", "send_message"]
    assert [r["detail"]["step"] for r in rows(case, "playbook_suggested")] == ["refund"]
    assert case["status"] not in {"closed", "resolved"}
    assert case["outcome"] is None


# -- concessions -----------------------------------------------------------------------------

SMALL_BUDGET = dedent(
    """\
    concessions:
      monthly_budget: "20.00"
    """
)
LATE_ONE, LATE_TWO = order("8101", "120.00"), order("8102", "120.00")


def complaint(ref: str, when: str) -> dict[str, object]:
    return ev(
        f"helpdesk:{ref}-ticket",
        "ticket.created",
        when,
        ref,
        ticket_id=f"T-{ref}",
        topic="compensation",
        kind="late",
    )


CONCESSION_STREAM = [
    placed(LATE_ONE),
    placed(LATE_TWO),
    ev("psp:8101-captured", "payment.captured", t("09:01"), "8101", amount="120.00"),
    ev("psp:8102-captured", "payment.captured", t("09:01"), "8102", amount="120.00"),
    *(shipped(ref) for ref in ("8101", "8102")),
    ev("carrier:8101-delivered", "fulfillment.delivered", t("12:00", DAY_3), "8101"),
    ev("carrier:8102-delivered", "fulfillment.delivered", t("12:00", DAY_3), "8102"),
    complaint("8101", t("09:00", DAY_4)),
    complaint("8102", t("10:00", DAY_4)),
    ev(
        "psp:8101-refund",
        "payment.refunded",
        t("15:00", DAY_4),
        "8101",
        refund_id="re_81",
        amount="18.00",
    ),
]


@pytest.fixture(scope="module")
def concessions(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    return run_replay(tmp_path_factory.mktemp("concessions"), CONCESSION_STREAM, SMALL_BUDGET)


def test_a_late_delivery_complaint_within_budget_is_refunded_in_part_from_the_ledger(
    concessions: Replayed,
) -> None:
    # given a compensation ticket (the desk's default opener) about a late delivery
    case = concessions.case("8101", "concession_request")
    # then 15% of the order went back through the ledger's refund, once
    (refund,) = concessions.sent("8101")
    assert (refund["system"], refund["action"], refund["at"]) == (
        "payments",
        "refund",
        at("09:00", DAY_4),
    )
    assert (refund["params"]["amount"], refund["params"]["currency"]) == ("18.00", "USD")
    (step,) = rows(case, "playbook_step", "concession")
    facts = step["detail"]["facts"]
    assert (facts["remedy"], facts["kind"], facts["budget_left"], facts["ledger_key"]) == (
        "partial_refund",
        "late",
        "2.00",
        refund["idempotency_key"],
    )
    # and the refund closed the case with its root cause
    assert (case["status"], case["outcome"], case["root_cause"]) == (
        "closed",
        "refunded",
        "concession_after_complaint",
    )
    assert steps_run(case) == [("concession", 1)]
    assert_playbook_actor(case, "concessions")


def test_a_concession_over_the_months_budget_goes_to_a_lead_and_pays_nothing(
    concessions: Replayed,
) -> None:
    case = concessions.case("8102", "concession_request")
    # then no money moved: the concession step found the budget spent and a lead was asked
    assert concessions.sent("8102") == []
    (step,) = rows(case, "playbook_step", "concession")
    assert (step["detail"]["facts"]["remedy"], step["detail"]["facts"]["escalate"]) == (
        "escalate",
        True,
    )
    assert steps_run(case) == [("concession", 1), ("escalate_concession", 1)]
    playbook_escalations = [e for e in case["escalations"] if e["clock"] == "playbook"]
    assert [(e["key"], e["to"]) for e in playbook_escalations] == [
        (key(case, "escalate_concession"), "finance")
    ]
    assert case["status"] not in {"closed", "resolved"}
    assert_playbook_actor(case, "concessions")


# -- chargeback ------------------------------------------------------------------------------

DELIVERED, NEVER_SHIPPED = order("9001"), order("9002")
DUE = "2026-12-10T00:00:00Z"
CHARGEBACK_STREAM = [
    placed(DELIVERED),
    placed(NEVER_SHIPPED),
    ev(
        "wms:9001-shipped",
        "fulfillment.shipped",
        t("12:00"),
        "9001",
        tracking="1Z9001",
        carrier="ups",
    ),
    ev("carrier:9001-delivered", "fulfillment.delivered", t("12:00", DAY_3), "9001"),
    *(
        ev(
            f"psp:{ref}-dispute",
            "dispute.opened",
            t("10:00", "2026-12-01"),
            ref,
            amount="80.00",
            reason="product_not_received",
            due_by=DUE,
        )
        for ref in ("9001", "9002")
    ),
    ev("desk:tick", "order.updated", t("12:00", "2026-12-08"), "9001"),
]


@pytest.fixture(scope="module")
def chargebacks(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    return run_replay(tmp_path_factory.mktemp("chargeback"), CHARGEBACK_STREAM)


def test_a_dispute_on_a_delivered_order_stages_strong_evidence_and_suggests_submitting(
    chargebacks: Replayed,
) -> None:
    case = chargebacks.case("9001", "chargeback")
    # then the evidence was staged on the dispute at once (not submitted), with the shipment's
    # tracking, carrier and date
    staged = [a for a in chargebacks.sent("9001") if a["action"] == "dispute_evidence"]
    assert len(staged) == 1
    (evidence,) = staged
    assert (evidence["at"], evidence["idempotency_key"]) == (
        at("10:00", "2026-12-01"),
        key(case, "evidence") + ":evidence",
    )
    assert evidence["params"]["submit"] is False
    fields = evidence["params"]["evidence"]
    assert (fields["shipping_tracking_number"], fields["shipping_date"]) == ("1Z9001", "2026-11-23")
    assert fields["shipping_carrier"].lower() == "ups"
    (step,) = rows(case, "playbook_step", "evidence")
    assert step["detail"]["facts"]["missing"] == []
    # and submitting is left to a person, and finance is told 48 hours before the deadline
    assert [r["detail"]["step"] for r in rows(case, "playbook_suggested")] == ["submit_evidence"]
    playbook_escalations = [e for e in case["escalations"] if e["clock"] == "playbook"]
    assert [(e["fired_at"], e["to"]) for e in playbook_escalations] == [
        (at("00:00", "2026-12-08"), "finance")
    ]
    assert_playbook_actor(case, "chargeback")


def test_a_dispute_on_an_order_that_never_shipped_has_weak_evidence_naming_what_is_missing(
    chargebacks: Replayed,
) -> None:
    case = chargebacks.case("9002", "chargeback")
    (evidence,) = [a for a in chargebacks.sent("9002") if a["action"] == "dispute_evidence"]
    assert evidence["params"]["submit"] is False
    assert "shipping_tracking_number" not in evidence["params"]["evidence"]
    (step,) = rows(case, "playbook_step", "evidence")
    facts = step["detail"]["facts"]
    assert facts["strength"] == "weak"
    assert {"shipping_tracking_number", "shipping_carrier"} <= set(facts["missing"])
    assert case["status"] not in {"closed", "resolved"}
