"""The default playbooks before the parcel leaves (issue 6): payment recovery, fraud hold, address
fix, inventory mismatch and change request, each replayed with ``recoverydesk replay`` over a
stream with an order the playbook saves and one it cannot, and checked on ``actions.json`` (what
was sent, to whom, in which order, once) and ``cases.json`` (outcome, status, and every automatic
step on the timeline with the playbook version that took it).

The modules after shipping are in ``test_replay_playbooks_after_shipping.py``.
"""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from tests.e2e.playbook_replay import (
    ADDRESS,
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

NEXT_DAY = "2026-11-24"

# -- payment recovery ------------------------------------------------------------------------

PAID_LATER, NEVER_PAID = order("1001"), order("1002", email="ines@example.com")
PAYMENT_STREAM = [
    placed(PAID_LATER),
    placed(NEVER_PAID),
    ev("psp:1001-fail", "payment.failed", t("09:05"), "1001", reason="card_declined"),
    ev("psp:1002-fail", "payment.failed", t("09:05"), "1002", reason="card_declined"),
    ev("psp:1001-auth", "payment.authorized", t("10:30"), "1001", amount="80.00"),
    # the payment provider delivers the first failure again: a duplicate, ignored
    ev("psp:1002-fail", "payment.failed", t("09:05"), "1002", reason="card_declined"),
    ev("shopify:1002-cancel", "order.cancelled", t("12:00", NEXT_DAY), "1002", reason="payment"),
]


@pytest.fixture(scope="module")
def payments(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    return run_replay(tmp_path_factory.mktemp("payment"), PAYMENT_STREAM)


def test_a_failed_payment_is_retried_once_and_the_authorization_closes_the_case(
    payments: Replayed,
) -> None:
    # given 1001's payment failed at 09:05 and was authorized at 10:30
    case = payments.case("1001", "payment_failed")
    # then one retry went to the payment provider at 10:05, under the attempt's key, with the
    # order's amount; nothing after the authorization (no second retry, no pay-again message)
    assert payments.sent("1001") == [
        {
            "at": at("10:05"),
            "order_ref": "1001",
            "system": "payments",
            "action": "retry_payment",
            "params": {"amount": "80.00", "currency": "USD"},
            "idempotency_key": key(case, "retry_authorization"),
            "result": "accepted",
        }
    ]
    # and the case closed by itself on the authorization, released, with its root cause
    assert (case["status"], case["outcome"], case["root_cause"]) == (
        "closed",
        "released",
        "customer_card_declined",
    )
    assert case["closed_at"] == at("10:30")
    # and the retry is on the timeline, taken by the playbook's version 1, with its answer
    assert steps_run(case) == [("retry_authorization", 1)]
    assert_playbook_actor(case, "payment_recovery")
    (answer,) = rows(case, "playbook_answer")
    assert (answer["detail"]["idempotency_key"], answer["detail"]["accepted"]) == (
        key(case, "retry_authorization"),
        True,
    )


def test_retries_run_out_the_customer_is_asked_once_and_the_cancel_is_left_to_a_person(
    payments: Replayed,
) -> None:
    # given 1002's payment failed and was never made good (its failure delivered twice)
    case = payments.case("1002", "payment_failed")
    # then three retries went out, six hours apart, each once; the customer was asked to pay
    # again once, by email; the desk did not cancel the order itself
    sent = payments.sent("1002")
    assert [(a["at"], a["system"], a["action"], a["idempotency_key"]) for a in sent] == [
        (at("10:05"), "payments", "retry_payment", key(case, "retry_authorization", 1)),
        (at("11:05"), "email", "send_message", key(case, "payment_update") + ":message"),
        (at("16:05"), "payments", "retry_payment", key(case, "retry_authorization", 2)),
        (at("22:05"), "payments", "retry_payment", key(case, "retry_authorization", 3)),
    ]
    message = sent[1]["params"]
    assert (message["template"], message["to"]) == ("payment_retry_link", "ines@example.com")
    assert "#1002" in message["subject"] + message["body"]
    # and the cancel was suggested to a person, never run by the desk
    assert [r["detail"]["step"] for r in rows(case, "playbook_suggested")] == ["cancel_unpaid"]
    assert not [a for a in sent if a["action"] in {"wms_cancel", "void", "order_cancel"}]
    # and when the merchant cancelled the unpaid order the case closed cancelled
    assert (case["status"], case["outcome"]) == ("closed", "cancelled")
    assert case["closed_at"] == at("12:00", NEXT_DAY)
    assert steps_run(case) == [
        ("retry_authorization", 1),
        ("payment_update", 1),
        ("retry_authorization", 2),
        ("retry_authorization", 3),
    ]
    assert_playbook_actor(case, "payment_recovery")


VERSION_2 = dedent(
    """\
    playbooks:
      payment_recovery:
        version: 2
        categories: [payment_failed]
        steps:
          - {name: retry_authorization, do: command, after: PT30M, every: PT2H, times: 2,
             params: {system: payments, action: retry_payment}}
    """
)


def test_a_merchants_own_playbook_version_drives_the_retries_and_is_named(
    tmp_path: Path,
) -> None:
    # given the merchant's version 2 of payment recovery: two retries, 30 minutes then 2 hours
    # after the failure, and no message
    stream = [event for event in PAYMENT_STREAM if event["order"]["ref"] != "1001"]
    # when the never-paid order is replayed with it
    replayed = run_replay(tmp_path, stream, VERSION_2)
    case = replayed.case("1002", "payment_failed")
    # then the retries followed version 2's schedule, and nothing else was sent
    assert [(a["at"], a["action"], a["idempotency_key"]) for a in replayed.sent("1002")] == [
        (at("09:35"), "retry_payment", key(case, "retry_authorization", 1)),
        (at("11:35"), "retry_payment", key(case, "retry_authorization", 2)),
    ]
    # and the timeline names version 2 as the one that took them
    assert steps_run(case) == [("retry_authorization", 1), ("retry_authorization", 2)]
    assert_playbook_actor(case, "payment_recovery", version=2)
    assert {r["detail"]["config_version"] for r in rows(case, "playbook_step")} == {1}


# -- fraud hold ------------------------------------------------------------------------------

VIP_SMALL, STRANGER_LARGE = order("2001", "60.00", tier="vip"), order("2002", "900.00")
FRAUD_STREAM = [
    placed(VIP_SMALL),
    placed(STRANGER_LARGE),
    ev(
        "shopify:2001-hold", "hold.placed", t("09:05"), "2001", hold_type="fraud", reason="score 71"
    ),
    ev(
        "shopify:2002-hold", "hold.placed", t("09:05"), "2002", hold_type="fraud", reason="score 96"
    ),
    ev("shopify:2001-released", "hold.released", t("09:30"), "2001", hold_type="fraud"),
    ev("shopify:2002-cancel", "order.cancelled", t("15:00"), "2002", reason="fraud"),
]


@pytest.fixture(scope="module")
def fraud(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    return run_replay(tmp_path_factory.mktemp("fraud"), FRAUD_STREAM)


def test_a_small_order_of_a_vip_is_released_safely_and_the_release_closes_the_case(
    fraud: Replayed,
) -> None:
    case = fraud.case("2001", "fraud_hold")
    # then the desk released the hold in the storefront right away, once
    assert fraud.calls("2001") == [("storefront", "release_hold", key(case, "safe_release"))]
    assert fraud.sent("2001")[0]["at"] == at("09:05")
    # and the storefront's release closed the case as a false positive
    assert (case["status"], case["outcome"], case["root_cause"]) == (
        "closed",
        "released",
        "fraud_screening_false_positive",
    )
    assert steps_run(case) == [("safe_release", 1)]
    assert_playbook_actor(case, "fraud_hold")
    # and what a person may do instead was suggested once each, never run
    suggested = [r["detail"]["step"] for r in rows(case, "playbook_suggested")]
    assert suggested == ["fraud_verification", "cancel_fraud"]


def test_a_large_order_stays_held_goes_to_the_risk_owner_and_is_cancelled_as_fraud(
    fraud: Replayed,
) -> None:
    case = fraud.case("2002", "fraud_hold")
    # then nothing was released: a person decides (release, verification, cancel suggested)
    assert fraud.sent("2002") == []
    suggested = {r["detail"]["step"] for r in rows(case, "playbook_suggested")}
    assert suggested == {"fraud_verification", "release_hold", "cancel_fraud"}
    # and four hours after the hold the playbook escalated the case to the risk owner
    (escalation,) = rows(case, "playbook_step")
    assert (escalation["at"], escalation["detail"]["step"], escalation["detail"]["facts"]) == (
        at("13:05"),
        "escalate_risk_owner",
        {"role": "fraud", "to": "fraud"},
    )
    playbook_escalations = [e for e in case["escalations"] if e["clock"] == "playbook"]
    assert [(e["key"], e["to"]) for e in playbook_escalations] == [
        (key(case, "escalate_risk_owner"), "fraud")
    ]
    assert_playbook_actor(case, "fraud_hold")
    # and the merchant's cancel closed it cancelled as fraud
    assert (case["status"], case["outcome"], case["reason_code"]) == (
        "closed",
        "cancelled",
        "fraud",
    )


VERIFY_BY_DECISION = dedent(
    """\
    playbooks:
      fraud_hold:
        version: 2
        categories: [fraud_hold]
        steps:
          - {name: fraud_verification, do: decision,
             params: {template: fraud_verification, choices: [verify_identity, cancel],
                      default: cancel, window: PT6H}}
          - {name: cancel_on_request, do: stopship, when: 'case.choice == "cancel"',
             params: {reason: fraud}}
    """
)


def test_a_verification_nobody_answers_defaults_to_cancel_and_the_order_is_stopped(
    tmp_path: Path,
) -> None:
    # given a merchant whose fraud playbook asks the customer to verify within six hours,
    # cancelling when nobody answers
    stream = [e for e in FRAUD_STREAM if e["order"]["ref"] == "2002" and "cancel" not in e["id"]]
    stream.append(ev("desk:tick", "order.updated", t("20:00"), "2002"))
    replayed = run_replay(tmp_path, stream, VERIFY_BY_DECISION)
    case = replayed.case("2002", "fraud_hold")
    # then the customer was asked once, with the decision's choices, by email
    sent = replayed.sent("2002")
    ask = sent[0]
    assert (ask["at"], ask["system"], ask["action"]) == (at("09:05"), "email", "send_message")
    assert (ask["params"]["template"], ask["params"]["to"]) == (
        "fraud_verification",
        "buyer2002@example.com",
    )
    assert "/decide/" in ask["params"]["body"]
    (offered,) = rows(case, "decision_offered")
    assert (offered["detail"]["choices"], offered["detail"]["default"]) == (
        ["verify_identity", "cancel"],
        "cancel",
    )
    # and at the end of the window the default (cancel) stopped the order through the stop-ship
    # workflow: the warehouse asked, held, the ERP told, the customer told once
    (default,) = rows(case, "decision_answered")
    assert (default["at"], default["detail"]["choice"], default["detail"]["defaulted"]) == (
        at("15:05"),
        "cancel",
        True,
    )
    after = [(a["system"], a["action"]) for a in sent[1:]]
    assert ("wms", "wms_hold") in after
    assert ("erp", "erp_update") in after
    assert [a["params"].get("template") for a in sent if a["action"] == "send_message"] == [
        "fraud_verification",
        "cancellation_confirmed",
    ]
    assert all(a["at"] == at("15:05") for a in sent[1:])
    assert (case["status"], case["outcome"], case["reason_code"]) == (
        "closed",
        "cancelled",
        "fraud",
    )
    assert steps_run(case) == [("fraud_verification", 1), ("cancel_on_request", 1)]
    assert_playbook_actor(case, "fraud_hold", version=2)


# -- address fix -----------------------------------------------------------------------------

SLOPPY = {**ADDRESS, "address1": "12 Oak Ave", "province_code": "tx", "zip": " 78701 "}
PO_BOX = {**ADDRESS, "address1": "PO Box 123"}
FIXABLE, BOX_CONFIRMED, BOX_CANCELLED = (
    order("3001", address=SLOPPY),
    order("3002", address=PO_BOX),
    order("3003", address=PO_BOX),
)
ADDRESS_STREAM = [
    placed(FIXABLE),
    placed(BOX_CONFIRMED),
    placed(BOX_CANCELLED),
    *(
        ev(f"shopify:{ref}-bad", "address.invalid", t("09:05"), ref, reason="not deliverable")
        for ref in ("3001", "3002", "3003")
    ),
    ev("helpdesk:3002-reply", "customer.replied", t("11:00"), "3002", choice="confirm_address"),
    ev("helpdesk:3003-reply", "customer.replied", t("11:00"), "3003", choice="cancel"),
    ev("wms:3001-shipped", "fulfillment.shipped", t("15:00"), "3001", tracking="1Z3001"),
    ev("wms:3002-shipped", "fulfillment.shipped", t("16:00"), "3002", tracking="9400-3002"),
]
SHIPS_WITH_UPS = "address:\n  default_carrier: ups\n"


@pytest.fixture(scope="module")
def addresses(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    return run_replay(tmp_path_factory.mktemp("address"), ADDRESS_STREAM, SHIPS_WITH_UPS)


def test_a_fixable_address_is_corrected_in_the_storefront_and_the_order_ships(
    addresses: Replayed,
) -> None:
    case = addresses.case("3001", "address_invalid")
    # then the corrected address went to the storefront at once: state upper-cased, postcode
    # trimmed, nothing asked of the customer
    (update,) = addresses.sent("3001")
    assert (update["system"], update["action"], update["idempotency_key"]) == (
        "storefront",
        "address_update",
        key(case, "validate_address"),
    )
    corrected = update["params"]["address"]
    assert (corrected["province_code"], corrected["zip"], corrected["address1"]) == (
        "TX",
        "78701",
        "12 Oak Ave",
    )
    (check,) = rows(case, "playbook_step", "validate_address")
    assert check["detail"]["facts"]["needs_customer"] is False
    assert not rows(case, "decision_offered")
    # and the shipment closed the case
    assert (case["status"], case["outcome"], case["closed_at"]) == (
        "closed",
        "shipped",
        at("15:00"),
    )
    assert_playbook_actor(case, "address_fix")


def test_a_po_box_for_ups_is_confirmed_by_the_customer_before_it_ships(
    addresses: Replayed,
) -> None:
    case = addresses.case("3002", "address_invalid")
    # then the customer was asked (not the storefront told): confirm, correct or cancel
    (ask,) = addresses.sent("3002")
    assert (ask["system"], ask["action"], ask["params"]["template"]) == (
        "email",
        "send_message",
        "address_confirm",
    )
    (offered,) = rows(case, "decision_offered")
    assert offered["detail"]["choices"] == ["confirm_address", "correct_address", "cancel"]
    (check,) = rows(case, "playbook_step", "validate_address")
    assert (check["detail"]["facts"]["po_box"], check["detail"]["facts"]["needs_customer"]) == (
        True,
        True,
    )
    # and after the customer confirmed, nothing more was sent; the shipment closed the case
    assert (case["status"], case["outcome"]) == ("closed", "shipped")
    assert steps_run(case) == [("validate_address", 1), ("confirm_address", 1)]
    assert_playbook_actor(case, "address_fix")


def test_a_customer_who_cancels_instead_of_fixing_the_address_has_the_order_stopped(
    addresses: Replayed,
) -> None:
    case = addresses.case("3003", "address_invalid")
    sent = addresses.sent("3003")
    # then: the question, then the stop-ship workflow once, on the customer's answer
    assert sent[0]["params"]["template"] == "address_confirm"
    assert {a["at"] for a in sent[1:]} == {at("11:00")}
    assert ("erp", "erp_update") in [(a["system"], a["action"]) for a in sent[1:]]
    assert len({a["idempotency_key"] for a in sent}) == len(sent)
    assert (case["status"], case["outcome"]) == ("closed", "cancelled")
    assert steps_run(case)[-1] == ("cancel_on_request", 1)


# -- inventory mismatch ----------------------------------------------------------------------

TWO_LINES = [
    {"sku": "MUG-RED", "qty": 1, "price": "40.00"},
    {"sku": "CUP-2", "qty": 2, "price": "20.00"},
]
SWAPPED, CANCELLED, WAITED = (
    order("4001", lines=TWO_LINES),
    order("4002", lines=TWO_LINES),
    order("4003", lines=TWO_LINES),
)


def short(ref: str, **more: Any) -> dict[str, Any]:
    return ev(
        f"wms:{ref}-short", "inventory.short", t("09:05"), ref, sku="MUG-RED", available=0, **more
    )


INVENTORY_STREAM = [
    placed(SWAPPED),
    placed(CANCELLED),
    placed(WAITED),
    short("4001", substitute="MUG-BLUE"),
    short("4002"),
    short("4003"),
    ev("helpdesk:4001-reply", "customer.replied", t("11:00"), "4001", choice="substitute"),
    ev("helpdesk:4002-reply", "customer.replied", t("11:00"), "4002", choice="cancel"),
    # the same answer delivered again: a duplicate, nothing happens twice
    ev("helpdesk:4001-reply", "customer.replied", t("11:00"), "4001", choice="substitute"),
    ev("wms:4001-shipped", "fulfillment.shipped", t("15:00"), "4001", tracking="1Z4001"),
    ev("desk:tick", "order.updated", t("12:00", "2026-11-25"), "4003"),
]


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    return run_replay(tmp_path_factory.mktemp("inventory"), INVENTORY_STREAM)


def test_a_short_line_is_looked_up_offered_and_swapped_then_the_order_ships(
    inventory: Replayed,
) -> None:
    case = inventory.case("4001", "inventory_mismatch")
    sent = inventory.sent("4001")
    # then: the stock looked up for the short sku, the customer asked with the decision's
    # choices, and on the answer the substitute swapped in, each once
    assert [(a["at"], a["system"], a["action"]) for a in sent] == [
        (at("09:05"), "wms", "inventory_lookup"),
        (at("09:05"), "email", "send_message"),
        (at("11:00"), "storefront", "line_swap"),
    ]
    assert sent[0]["params"] == {"sku": "MUG-RED", "qty": 1}
    assert sent[0]["idempotency_key"] == key(case, "locate_stock")
    assert sent[1]["params"]["template"] == "stock_decision"
    assert sent[1]["params"]["to"] == "buyer4001@example.com"
    (offered,) = rows(case, "decision_offered")
    assert offered["detail"]["choices"] == ["substitute", "split", "wait", "cancel"]
    assert sent[2]["params"] == {"sku": "MUG-RED", "substitute": "MUG-BLUE", "qty": 1}
    assert sent[2]["idempotency_key"] == key(case, "substitute")
    # and the shipment closed the case
    assert (case["status"], case["outcome"]) == ("closed", "shipped")
    assert steps_run(case) == [("locate_stock", 1), ("stock_decision", 1), ("substitute", 1)]
    assert_playbook_actor(case, "inventory_mismatch")


def test_a_customer_who_cancels_a_short_order_has_it_stopped(inventory: Replayed) -> None:
    case = inventory.case("4002", "inventory_mismatch")
    sent = inventory.sent("4002")
    assert [a["action"] for a in sent[:2]] == ["inventory_lookup", "send_message"]
    stop = sent[2:]
    assert stop
    assert {a["at"] for a in stop} == {at("11:00")}
    assert [a["params"].get("template") for a in stop if a["action"] == "send_message"] == [
        "cancellation_confirmed"
    ]
    assert not [a for a in sent if a["action"] == "line_swap"]
    assert (case["status"], case["outcome"], case["reason_code"]) == (
        "closed",
        "cancelled",
        "stockout",
    )
    assert steps_run(case)[-1] == ("cancel_on_request", 1)


def test_an_unanswered_stock_decision_falls_back_to_waiting_and_says_so_once(
    inventory: Replayed,
) -> None:
    case = inventory.case("4003", "inventory_mismatch")
    sent = inventory.sent("4003")
    backorder = [a for a in sent if a["params"].get("template") == "backorder_confirmed"]
    # then two days on, the default (wait) was taken and the backorder confirmed once
    assert [a["at"] for a in backorder] == [at("09:05", "2026-11-25")]
    (default,) = rows(case, "decision_answered")
    assert (default["detail"]["choice"], default["detail"]["defaulted"]) == ("wait", True)
    # and the order is still open: nothing was cancelled or swapped
    assert case["status"] not in {"closed", "resolved"}
    assert not [a for a in sent if a["action"] in {"line_swap", "erp_update", "wms_cancel"}]


# -- change request --------------------------------------------------------------------------

NEW_ADDRESS = {**ADDRESS, "address1": "9 Elm St", "zip": "78702"}
BEFORE_CUTOFF, ALREADY_SHIPPED = order("5001"), order("5002")
CHANGE_STREAM = [
    placed(BEFORE_CUTOFF),
    placed(ALREADY_SHIPPED),
    ev("wms:5002-shipped", "fulfillment.shipped", t("10:00"), "5002", tracking="1Z5002"),
    ev(
        "helpdesk:5001-change",
        "change.requested",
        t("11:00"),
        "5001",
        {"ref": "5001", "shipping_address": NEW_ADDRESS},
        change="address",
    ),
    ev(
        "helpdesk:5002-change",
        "change.requested",
        t("11:00"),
        "5002",
        {"ref": "5002", "shipping_address": NEW_ADDRESS},
        change="address",
    ),
    ev(
        "wms:5001-released",
        "hold.released",
        t("12:00"),
        "5001",
        hold_type="customer_request",
    ),
]


@pytest.fixture(scope="module")
def changes(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    return run_replay(tmp_path_factory.mktemp("change"), CHANGE_STREAM)


def test_an_address_change_before_the_cutoff_holds_the_order_and_updates_it(
    changes: Replayed,
) -> None:
    case = changes.case("5001", "change_request")
    # then the warehouse held the order and the storefront got the new address, once each
    assert changes.calls("5001") == [
        ("wms", "wms_hold", key(case, "hold_before_cutoff")),
        ("storefront", "address_update", key(case, "update_address")),
    ]
    assert changes.sent("5001")[1]["params"]["address"] == NEW_ADDRESS
    # and the warehouse's release closed the case
    assert (case["status"], case["outcome"]) == ("closed", "released")
    assert steps_run(case) == [("hold_before_cutoff", 1), ("update_address", 1)]
    assert_playbook_actor(case, "change_request")


def test_an_address_change_after_shipping_is_not_sent_anywhere(changes: Replayed) -> None:
    case = changes.case("5002", "change_request")
    # then nothing went to the warehouse or the storefront: the parcel is on its way
    assert changes.sent("5002") == []
    assert steps_run(case) == []
    assert case["status"] not in {"closed", "resolved"}


# -- nothing twice ---------------------------------------------------------------------------


def test_every_event_delivered_twice_sends_nothing_twice(
    tmp_path: Path, inventory: Replayed
) -> None:
    # given the inventory stream with every event delivered twice, one right after the other
    doubled = [copy for event in INVENTORY_STREAM for copy in (event, event)]
    # when it is replayed
    replayed = run_replay(tmp_path, doubled)

    # then the same commands and messages went out, at the same times, under the same keys
    def sent(run: Replayed) -> list[tuple[str, str, str, str | None]]:
        return [(a["at"], a["system"], a["action"], a["idempotency_key"]) for a in run.actions]

    assert sent(replayed) == sent(inventory)
    assert len({a[3] for a in sent(replayed)}) == len(replayed.actions)
