"""Triage rules: every default priority and classification rule, routing, ordering and assignment.

Each default rule of ``services.policy`` is shown deciding a case and missing a near one, through
``Triage.decide`` as the desk runs it. Orders are folded from hand-made events. Expected money is
worked out by hand: revenue at risk = order value x the category's loss likelihood, in cents.
``NOW`` is Wednesday 2026-11-18 12:00 UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from recoverydesk.domain.cases import Case, CaseStatus, Category
from recoverydesk.domain.events import CanonicalEvent, EventSource, EventType, OrderFacts
from recoverydesk.domain.orders import OrderView
from recoverydesk.domain.triage import Classification, Decision, Priority, apply_decision
from recoverydesk.services.merchants import MerchantSettings
from recoverydesk.services.policy import (
    DEFAULT_CLASSIFICATION_RULES,
    DEFAULT_PRIORITY_RULES,
    DEFAULT_QUEUES,
    Assignment,
    CategorySpec,
    Member,
    Policy,
    Queue,
    Rule,
    Rules,
    Taxonomy,
    Thresholds,
)
from recoverydesk.services.triage import Triage, choose_member

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
REF = "1001"
VERSION = 3
HOUR = timedelta(hours=1)
DEFAULTS = Triage(Policy(), VERSION)

P1, P2, P3 = Priority.P1, Priority.P2, Priority.P3
FIXABLE = Classification.FIXABLE_NOW
CUSTOMER = Classification.NEEDS_CUSTOMER_DECISION
CANCEL = Classification.MUST_CANCEL


def ev(kind: str, data: dict[str, Any] | None = None, **facts: Any) -> CanonicalEvent:
    return CanonicalEvent(
        id=f"shopify:{kind}",
        source=EventSource.SHOPIFY,
        type=EventType(kind),
        occurred_at=NOW - HOUR,
        order=OrderFacts(ref=REF, **facts),
        data=data or {},
    )


def placed(value: str = "120.00", **facts: Any) -> CanonicalEvent:
    facts.setdefault("channel", "shopify")
    return ev("order.placed", value=Decimal(value), currency="EUR", **facts)


RELEASED = ev("fulfillment.released")
PICKING = ev("fulfillment.picking")
PACKED = ev("fulfillment.packed")
SHIPPED = ev("fulfillment.shipped", {"tracking": "1Z999"})
DELIVERED = ev("fulfillment.delivered")


def order_of(history: tuple[CanonicalEvent, ...]) -> OrderView:
    order = OrderView(ref=REF)
    for event in history:
        order.apply(event)
    return order


def opened(
    category: Category,
    *,
    hold_type: str | None = None,
    age_hours: float = 1.0,
    data: dict[str, Any] | None = None,
) -> Case:
    case = Case.open(
        order_ref=REF,
        category=category,
        opened_at=NOW - timedelta(hours=age_hours),
        opened_by="e0",
        hold_type=hold_type,
        recorded_at=NOW,
        data=data,
    )
    case.id = 7
    case.pending.clear()
    case.dirty = False
    return case


@dataclass(frozen=True)
class Given:
    """One case on one order, and the latest event of the case."""

    category: Category
    history: tuple[CanonicalEvent, ...] = (placed(),)
    event: CanonicalEvent | None = None
    hold_type: str | None = None
    age_hours: float = 1.0

    def decide(self, triage: Triage = DEFAULTS) -> Decision:
        case = opened(self.category, hold_type=self.hold_type, age_hours=self.age_hours)
        return triage.decide(case, order_of(self.history), self.event, NOW)


# --- priority: every default rule decides, and misses a near case ------------------------------

PRIORITY_DECIDES = [
    pytest.param(
        "high_value",
        P1,
        Given(Category.PAYMENT_FAILED, (placed("500.00"),), ev("payment.failed")),
        id="high_value-at-the-threshold",
    ),
    pytest.param(
        "suspected_fraud",
        P1,
        Given(
            Category.FRAUD_HOLD, event=ev("hold.placed", {"hold_type": "fraud"}), hold_type="fraud"
        ),
        id="suspected_fraud-fraud-hold",
    ),
    pytest.param(
        "suspected_fraud",
        P1,
        Given(Category.PAYMENT_FAILED, event=ev("payment.failed", {"fraud_suspected": True})),
        id="suspected_fraud-flag-on-the-event",
    ),
    pytest.param(
        "vip_customer",
        P1,
        Given(Category.PAYMENT_FAILED, (placed(customer_tier="vip"),), ev("payment.failed")),
        id="vip_customer",
    ),
    pytest.param(
        "shipped_but_refund_requested",
        P1,
        Given(
            Category.REFUND_REQUEST, (placed(), SHIPPED), ev("ticket.created", {"ticket_id": "9"})
        ),
        id="shipped_but_refund_requested-refund",
    ),
    pytest.param(
        "shipped_but_refund_requested",
        P1,
        Given(Category.CHANGE_REQUEST, (placed(), SHIPPED), ev("cancel.requested")),
        id="shipped_but_refund_requested-cancel-after-shipping",
    ),
    pytest.param(
        "carrier_intercept_needed",
        P1,
        Given(
            Category.CHANGE_REQUEST,
            (placed(), SHIPPED),
            ev("change.requested", {"change": "address"}),
        ),
        id="carrier_intercept_needed",
    ),
    pytest.param(
        "ship_cutoff_within_2h",
        P1,
        Given(
            Category.PAYMENT_FAILED,
            (placed(ship_by=NOW + timedelta(hours=1, minutes=59)),),
            ev("payment.failed"),
        ),
        id="ship_cutoff_within_2h-1h59-left",
    ),
    pytest.param(
        "ship_cutoff_within_2h",
        P1,
        Given(
            Category.LATE_SHIPMENT_RISK,
            (placed(ship_by=NOW - timedelta(minutes=30)),),
            ev("fulfillment.ship_by_missed"),
        ),
        id="ship_cutoff_within_2h-already-missed",
    ),
    pytest.param(
        "picked_waiting_for_warehouse",
        P2,
        Given(
            Category.WMS_EXCEPTION,
            (placed(), RELEASED, PICKING, PACKED),
            ev("hold.placed", {"hold_type": "warehouse"}),
            hold_type="warehouse",
        ),
        id="picked_waiting_for_warehouse-packed",
    ),
    pytest.param(
        "picked_waiting_for_warehouse",
        P2,
        Given(
            Category.CHANGE_REQUEST,
            (placed(), RELEASED, PICKING),
            ev("change.requested", {"change": "swap"}),
        ),
        id="picked_waiting_for_warehouse-change-while-picking",
    ),
    pytest.param(
        "address_fix",
        P2,
        Given(Category.ADDRESS_INVALID, event=ev("address.invalid")),
        id="address_fix",
    ),
    pytest.param(
        "split_shipment",
        P2,
        Given(Category.SPLIT_SHIPMENT, event=ev("inventory.short", {"sku": "A", "available": 1})),
        id="split_shipment",
    ),
    pytest.param(
        "delivery_exception",
        P2,
        Given(
            Category.DELIVERY_EXCEPTION,
            (placed(), SHIPPED),
            ev("delivery.exception", {"kind": "delay"}),
        ),
        id="delivery_exception",
    ),
    pytest.param(
        "change_on_released_order",
        P2,
        Given(
            Category.CHANGE_REQUEST,
            (placed(), RELEASED),
            ev("change.requested", {"change": "edit"}),
        ),
        id="change_on_released_order",
    ),
    pytest.param(
        "chargeback_deadline",
        P2,
        Given(
            Category.CHARGEBACK,
            (placed(), SHIPPED, DELIVERED),
            ev("dispute.opened", {"amount": "120.00", "reason": "fraudulent"}),
        ),
        id="chargeback_deadline",
    ),
    pytest.param(
        "drift_between_systems",
        P2,
        Given(Category.DRIFT),
        id="drift_between_systems",
    ),
]

PRIORITY_NEAR_MISSES = [
    pytest.param(
        "high_value",
        Given(Category.PAYMENT_FAILED, (placed("499.99"),), ev("payment.failed")),
        id="high_value-a-cent-below",
    ),
    pytest.param(
        "suspected_fraud",
        Given(Category.PAYMENT_FAILED, event=ev("payment.failed", {"fraud_suspected": False})),
        id="suspected_fraud-flag-false",
    ),
    pytest.param(
        "vip_customer",
        Given(Category.PAYMENT_FAILED, (placed(customer_tier="gold"),), ev("payment.failed")),
        id="vip_customer-gold-tier",
    ),
    pytest.param(
        "shipped_but_refund_requested",
        Given(
            Category.REFUND_REQUEST, (placed(), RELEASED), ev("ticket.created", {"ticket_id": "9"})
        ),
        id="shipped_but_refund_requested-not-shipped-yet",
    ),
    pytest.param(
        "carrier_intercept_needed",
        Given(
            Category.CHANGE_REQUEST,
            (placed(), SHIPPED, DELIVERED),
            ev("change.requested", {"change": "address"}),
        ),
        id="carrier_intercept_needed-already-delivered",
    ),
    pytest.param(
        "ship_cutoff_within_2h",
        Given(Category.PAYMENT_FAILED, (placed(ship_by=NOW + 2 * HOUR),), ev("payment.failed")),
        id="ship_cutoff_within_2h-exactly-2h-left",
    ),
    pytest.param(
        "ship_cutoff_within_2h",
        Given(
            Category.PAYMENT_FAILED,
            (placed(ship_by=NOW - HOUR), SHIPPED),
            ev("payment.failed"),
        ),
        id="ship_cutoff_within_2h-shipped-already",
    ),
    pytest.param(
        "picked_waiting_for_warehouse",
        Given(
            Category.WMS_EXCEPTION,
            (placed(), RELEASED),
            ev("hold.placed", {"hold_type": "warehouse"}),
            hold_type="warehouse",
        ),
        id="picked_waiting_for_warehouse-only-released",
    ),
    pytest.param(
        "address_fix",
        Given(Category.PAYMENT_FAILED, (placed(), ev("address.invalid")), ev("payment.failed")),
        id="address_fix-bad-address-but-a-payment-case",
    ),
    pytest.param(
        "split_shipment",
        Given(
            Category.INVENTORY_MISMATCH, event=ev("inventory.short", {"sku": "A", "available": 0})
        ),
        id="split_shipment-plain-shortage",
    ),
    pytest.param(
        "delivery_exception",
        Given(Category.CONCESSION_REQUEST, (placed(), SHIPPED), ev("ticket.created")),
        id="delivery_exception-concession-after-shipping",
    ),
    pytest.param(
        "change_on_released_order",
        Given(Category.CHANGE_REQUEST, event=ev("change.requested", {"change": "edit"})),
        id="change_on_released_order-not-released",
    ),
    pytest.param(
        "chargeback_deadline",
        Given(Category.PAYMENT_FAILED, event=ev("dispute.opened", {"amount": "120.00"})),
        id="chargeback_deadline-dispute-event-on-a-payment-case",
    ),
    pytest.param(
        "drift_between_systems",
        Given(Category.LATE_SHIPMENT_RISK),
        id="drift_between_systems-late-shipment",
    ),
]


def _rule_names(table: list[Any]) -> set[str]:
    return {param.values[0] for param in table}


def test_the_tables_cover_every_default_priority_rule():
    # given the default priority rules
    names = {rule.name for rule in DEFAULT_PRIORITY_RULES}
    # then each one is shown deciding and missing
    assert _rule_names(PRIORITY_DECIDES) == names
    assert _rule_names(PRIORITY_NEAR_MISSES) == names


@pytest.mark.parametrize(("rule", "priority", "given"), PRIORITY_DECIDES)
def test_each_default_priority_rule_decides_its_case(rule, priority, given):
    # given a case the rule is written for
    # when triage decides
    decision = given.decide()
    # then the rule sets the priority and is named for it
    assert decision.priority is priority
    assert decision.rules["priority"] == rule


@pytest.mark.parametrize(("rule", "given"), PRIORITY_NEAR_MISSES)
def test_each_default_priority_rule_misses_a_near_case(rule, given):
    # given a case one fact away from the rule
    # when triage decides
    decision = given.decide()
    # then no rule raises it above the default P3
    assert decision.priority is P3
    assert "priority" not in decision.rules


# --- classification: every default rule decides, and misses a near case ------------------------

CLASSIFICATION_DECIDES = [
    pytest.param(
        "confirmed_fraud",
        CANCEL,
        Given(
            Category.FRAUD_HOLD,
            event=ev("hold.placed", {"hold_type": "fraud", "fraud_confirmed": True}),
            hold_type="fraud",
        ),
        id="confirmed_fraud",
    ),
    pytest.param(
        "payment_not_recovered",
        CANCEL,
        Given(Category.PAYMENT_FAILED, event=ev("payment.failed"), age_hours=72),
        id="payment_not_recovered-72h",
    ),
    pytest.param(
        "discontinued_without_substitute",
        CANCEL,
        Given(
            Category.INVENTORY_MISMATCH,
            event=ev("inventory.short", {"sku": "A", "discontinued": True}),
        ),
        id="discontinued_without_substitute",
    ),
    pytest.param(
        "options_for_the_customer",
        CUSTOMER,
        Given(Category.INVENTORY_MISMATCH, event=ev("inventory.short", {"sku": "A"})),
        id="options_for_the_customer-backorder",
    ),
    pytest.param(
        "options_for_the_customer",
        CUSTOMER,
        Given(Category.SPLIT_SHIPMENT, event=ev("inventory.short", {"sku": "A", "available": 1})),
        id="options_for_the_customer-split",
    ),
    pytest.param(
        "options_for_the_customer",
        CUSTOMER,
        Given(Category.CHANGE_REQUEST, event=ev("change.requested", {"change": "swap"})),
        id="options_for_the_customer-change",
    ),
    pytest.param(
        "address_needs_confirmation",
        CUSTOMER,
        Given(Category.ADDRESS_INVALID, event=ev("address.invalid")),
        id="address_needs_confirmation",
    ),
    pytest.param(
        "replacement_or_refund",
        CUSTOMER,
        Given(
            Category.DELIVERY_EXCEPTION,
            (placed(), SHIPPED),
            ev("delivery.exception", {"kind": "damaged"}),
        ),
        id="replacement_or_refund-damaged",
    ),
    pytest.param(
        "replacement_or_refund",
        CUSTOMER,
        Given(
            Category.DELIVERY_EXCEPTION,
            (placed(), SHIPPED),
            ev("delivery.exception", {"kind": "lost"}),
        ),
        id="replacement_or_refund-lost",
    ),
]

CLASSIFICATION_NEAR_MISSES = [
    pytest.param(
        "confirmed_fraud",
        FIXABLE,
        None,
        Given(
            Category.FRAUD_HOLD,
            event=ev("hold.placed", {"hold_type": "fraud", "fraud_confirmed": False}),
            hold_type="fraud",
        ),
        id="confirmed_fraud-only-suspected",
    ),
    pytest.param(
        "payment_not_recovered",
        FIXABLE,
        None,
        Given(Category.PAYMENT_FAILED, event=ev("payment.failed"), age_hours=71.5),
        id="payment_not_recovered-71h30",
    ),
    pytest.param(
        "discontinued_without_substitute",
        CUSTOMER,
        "options_for_the_customer",
        Given(
            Category.INVENTORY_MISMATCH,
            event=ev("inventory.short", {"sku": "A", "discontinued": False}),
        ),
        id="discontinued_without_substitute-still-made",
    ),
    pytest.param(
        "options_for_the_customer",
        FIXABLE,
        None,
        Given(Category.LATE_SHIPMENT_RISK, event=ev("fulfillment.ship_by_missed")),
        id="options_for_the_customer-late-shipment",
    ),
    pytest.param(
        "address_needs_confirmation",
        FIXABLE,
        None,
        Given(
            Category.ADDRESS_INVALID,
            event=ev("address.invalid", {"suggestion": {"line1": "Hauptstr. 1"}}),
        ),
        id="address_needs_confirmation-validation-suggests-a-fix",
    ),
    pytest.param(
        "replacement_or_refund",
        FIXABLE,
        None,
        Given(
            Category.DELIVERY_EXCEPTION,
            (placed(), SHIPPED),
            ev("delivery.exception", {"kind": "delay"}),
        ),
        id="replacement_or_refund-only-delayed",
    ),
]


def test_the_tables_cover_every_default_classification_rule():
    # given the default classification rules
    names = {rule.name for rule in DEFAULT_CLASSIFICATION_RULES}
    # then each one is shown deciding and missing
    assert _rule_names(CLASSIFICATION_DECIDES) == names
    assert _rule_names(CLASSIFICATION_NEAR_MISSES) == names


@pytest.mark.parametrize(("rule", "classification", "given"), CLASSIFICATION_DECIDES)
def test_each_default_classification_rule_decides_its_case(rule, classification, given):
    # given a case the rule is written for
    # when triage decides
    decision = given.decide()
    # then the rule classifies it and is named for it
    assert decision.classification is classification
    assert decision.rules["classification"] == rule


@pytest.mark.parametrize(
    ("rule", "classification", "decided_by", "given"), CLASSIFICATION_NEAR_MISSES
)
def test_each_default_classification_rule_misses_a_near_case(
    rule, classification, decided_by, given
):
    # given a case one fact away from the rule
    # when triage decides
    decision = given.decide()
    # then another rule (or the default, fixable now) classifies it
    assert decision.classification is classification
    assert decision.rules.get("classification") == decided_by
    assert decided_by != rule


@pytest.mark.parametrize(
    ("given", "priority", "classification", "rules"),
    [
        pytest.param(
            Given(Category.PAYMENT_FAILED, (placed("200.00"),), ev("payment.failed"), age_hours=24),
            P1,
            CANCEL,
            {"priority": "high_value", "classification": "payment_not_recovered"},
            id="at-the-merchant-thresholds",
        ),
        pytest.param(
            Given(
                Category.PAYMENT_FAILED, (placed("199.99"),), ev("payment.failed"), age_hours=23.9
            ),
            P3,
            FIXABLE,
            {},
            id="just-below-them",
        ),
    ],
)
def test_rules_read_the_merchant_thresholds(given, priority, classification, rules):
    # given a merchant whose high value is 200 and who gives payments 24 hours to recover
    triage = Triage(
        Policy(thresholds=Thresholds(high_value=Decimal("200"), payment_recovery_hours=24)), 1
    )
    # when a payment case is triaged
    decision = given.decide(triage)
    # then the rules compare with the merchant's thresholds, not the defaults (500, 72 h)
    assert (decision.priority, decision.classification, decision.rules) == (
        priority,
        classification,
        rules,
    )


# --- any one is enough ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "rule"),
    [
        pytest.param(
            Given(Category.ADDRESS_INVALID, (placed("750.00"),), ev("address.invalid")),
            "high_value",
            id="address-fix-P2-and-high-value-P1",
        ),
        pytest.param(
            Given(
                Category.CHANGE_REQUEST,
                (placed(customer_tier="vip"), RELEASED),
                ev("change.requested", {"change": "edit"}),
            ),
            "vip_customer",
            id="change-on-released-P2-and-vip-P1",
        ),
        pytest.param(
            Given(
                Category.FRAUD_HOLD,
                (placed("900.00", customer_tier="vip", ship_by=NOW + HOUR),),
                ev("hold.placed", {"hold_type": "fraud"}),
                hold_type="fraud",
            ),
            "high_value",
            id="four-P1-rules-the-first-is-named",
        ),
    ],
)
def test_the_highest_priority_among_matching_rules_wins(given, rule):
    # given a case that several default rules match
    # when triage decides
    decision = given.decide()
    # then any P1 rule is enough, and the first matching P1 rule is the one named
    assert decision.priority is P1
    assert decision.rules["priority"] == rule


def test_a_higher_priority_rule_wins_even_when_listed_after_a_lower_one():
    # given a merchant whose P2 rule is listed before its P1 rule, and a case both match
    rules = Rules(
        priority=(
            Rule(name="any_address_problem", when='case.category == "address_invalid"', then="P2"),
            Rule(name="big_basket", when="order.value >= 300.0", then="P1"),
        )
    )
    triage = Triage(Policy(rules=rules), 1)
    given = Given(Category.ADDRESS_INVALID, (placed("300.00"),), ev("address.invalid"))
    # when triage decides
    decision = given.decide(triage)
    # then the P1 rule decides, not the first match
    assert (decision.priority, decision.rules["priority"]) == (P1, "big_basket")


# --- ordering facts ------------------------------------------------------------------------------

SHIP_BY = datetime(2026, 11, 19, 15, 0, tzinfo=UTC)
PROMISED = datetime(2026, 11, 21, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("category", "history", "data", "queue", "deadline", "at_risk"),
    [
        pytest.param(
            Category.PAYMENT_FAILED,
            (placed("129.99", ship_by=SHIP_BY, promised_by=PROMISED),),
            {},
            "pre_fulfilment",
            SHIP_BY,
            Decimal("52.00"),  # 129.99 x 0.40 = 51.996
            id="hold-runs-to-the-ship-cutoff",
        ),
        pytest.param(
            Category.CHANGE_REQUEST,
            (placed("80.00", ship_by=SHIP_BY), RELEASED),
            {},
            "cancel_edit",
            SHIP_BY,
            Decimal("48.00"),  # 80.00 x 0.60
            id="cancel-before-the-warehouse-cutoff",
        ),
        pytest.param(
            Category.DELIVERY_EXCEPTION,
            (placed("129.99", ship_by=NOW - HOUR, promised_by=PROMISED), SHIPPED),
            {},
            "delivery",
            PROMISED,
            Decimal("45.50"),  # 129.99 x 0.35 = 45.4965; shipped, so the ship-by is over
            id="shipped-order-runs-to-promised-delivery",
        ),
        pytest.param(
            Category.CHARGEBACK,
            (placed("59.90"), SHIPPED, DELIVERED),
            {"due_by": "2026-11-30T12:00:00+00:00"},
            "chargebacks",
            datetime(2026, 11, 28, 12, 0, tzinfo=UTC),  # evidence 2 days before the due date
            Decimal("41.93"),  # 59.90 x 0.70
            id="chargeback-two-days-before-the-processor",
        ),
        pytest.param(
            Category.DRIFT,
            (placed("1000.00", promised_by=PROMISED), SHIPPED),
            {},
            "drift",
            PROMISED,
            Decimal("500.00"),  # 1000.00 x 0.50
            id="drift-earliest-open-end",
        ),
        pytest.param(
            Category.REFUND_REQUEST,
            (),
            {},
            "refunds",
            None,
            Decimal("0.00"),  # no value known yet
            id="unknown-order",
        ),
    ],
)
def test_the_decision_carries_the_ordering_facts(category, history, data, queue, deadline, at_risk):
    # given a case on an order
    case = opened(category, data=data)
    # when triage decides
    decision = DEFAULTS.decide(case, order_of(history), None, NOW)
    # then the queue, operational deadline and revenue at risk (cents) are set
    assert (decision.queue, decision.deadline, decision.revenue_at_risk) == (
        queue,
        deadline,
        at_risk,
    )
    assert isinstance(decision.revenue_at_risk, Decimal)
    assert decision.revenue_at_risk.as_tuple().exponent == -2


def test_a_merchant_loss_likelihood_changes_the_revenue_at_risk():
    # given a merchant that loses few orders to failed payments (15%)
    taxonomy = Taxonomy(
        categories=(CategorySpec(code="payment_failed", loss_likelihood=Decimal("0.15")),)
    )
    triage = Triage(Policy(taxonomy=taxonomy), 1)
    # when a 129.99 order's payment case is triaged
    decision = Given(Category.PAYMENT_FAILED, (placed("129.99"),)).decide(triage)
    # then 129.99 x 0.15 = 19.4985 is at risk, in cents
    assert decision.revenue_at_risk == Decimal("19.50")


# --- apply_decision ------------------------------------------------------------------------------


def rows(case: Case) -> list[tuple[str, str, dict[str, Any]]]:
    return [(entry.kind, entry.actor, entry.detail) for entry in case.pending]


def triaged(category: Category, history: tuple[CanonicalEvent, ...], event: CanonicalEvent) -> Case:
    """A case after its first triage, with its timeline written."""
    case = opened(category)
    decision = DEFAULTS.decide(case, order_of(history), event, NOW)
    apply_decision(case, decision, at=NOW, version=VERSION)
    case.pending.clear()
    case.dirty = False
    return case


def test_the_first_triage_moves_a_new_case_to_triaged_and_names_the_rules():
    # given a new address case on a 120.00 order with a ship cutoff
    case = opened(Category.ADDRESS_INVALID)
    order = order_of((placed(ship_by=SHIP_BY),))
    decision = DEFAULTS.decide(case, order, ev("address.invalid"), NOW)
    # when the decision is applied
    apply_decision(case, decision, at=NOW, version=VERSION)
    # then the case is triaged with the decision, and the timeline says which rules and version
    assert (case.status, case.classification, case.priority, case.queue) == (
        CaseStatus.TRIAGED,
        "needs_customer_decision",
        "P2",
        "pre_fulfilment",
    )
    assert (case.config_version, case.deadline, case.revenue_at_risk) == (
        VERSION,
        SHIP_BY,
        Decimal("24.00"),  # 120.00 x 0.20
    )
    assert rows(case) == [
        (
            "triaged",
            "triage",
            {
                "classification": "needs_customer_decision",
                "priority": "P2",
                "queue": "pre_fulfilment",
                "rules": {
                    "priority": "address_fix",
                    "classification": "address_needs_confirmation",
                },
                "config_version": VERSION,
            },
        ),
        ("status_changed", "triage", {"from": "new", "to": "triaged"}),
    ]
    assert case.dirty


def test_a_later_higher_priority_raises_it_with_the_rule_on_the_timeline():
    # given an address case triaged P2
    case = triaged(Category.ADDRESS_INVALID, (placed(),), ev("address.invalid"))
    # when the order grows to 900.00 and triage runs again
    grown = order_of((placed(), ev("order.updated", value=Decimal("900.00"))))
    decision = DEFAULTS.decide(case, grown, ev("address.invalid"), NOW + HOUR)
    apply_decision(case, decision, at=NOW + HOUR, version=VERSION)
    # then it is P1, still triaged in the same queue, and the rise names the rule
    assert (case.priority, case.status, case.queue) == ("P1", CaseStatus.TRIAGED, "pre_fulfilment")
    assert rows(case) == [
        (
            "priority_raised",
            "triage",
            {"from": "P2", "to": "P1", "rule": "high_value", "config_version": VERSION},
        )
    ]
    assert case.revenue_at_risk == Decimal("180.00")  # 900.00 x 0.20


def test_a_later_lower_priority_never_lowers_it():
    # given a VIP's address case triaged P1
    case = triaged(Category.ADDRESS_INVALID, (placed(customer_tier="vip"),), ev("address.invalid"))
    assert case.priority == "P1"
    # when the customer is no longer VIP and triage runs again (the rules now say P2)
    standard = order_of(
        (placed(customer_tier="vip"), ev("order.updated", customer_tier="standard"))
    )
    decision = DEFAULTS.decide(case, standard, ev("address.invalid"), NOW + HOUR)
    assert decision.priority is P2
    apply_decision(case, decision, at=NOW + HOUR, version=VERSION)
    # then it stays P1 and nothing is written
    assert case.priority == "P1"
    assert rows(case) == []
    assert not case.dirty


def test_a_changed_classification_is_on_the_timeline():
    # given an address case waiting for the customer's confirmation
    case = triaged(Category.ADDRESS_INVALID, (placed(),), ev("address.invalid"))
    # when address validation suggests a fix and triage runs again
    event = ev("address.invalid", {"suggestion": {"line1": "Hauptstr. 1"}})
    decision = DEFAULTS.decide(case, order_of((placed(),)), event, NOW + HOUR)
    apply_decision(case, decision, at=NOW + HOUR, version=VERSION)
    # then it is fixable now, and the timeline says so (by the default: no rule)
    assert case.classification == "fixable_now"
    assert rows(case) == [
        (
            "reclassified",
            "triage",
            {
                "from": "needs_customer_decision",
                "to": "fixable_now",
                "rule": None,
                "config_version": VERSION,
            },
        )
    ]


# --- a merchant's own rules ----------------------------------------------------------------------

AMAZON_FIRST = Rule(name="amazon_orders_first", when='order.channel == "amazon"', then="P1")


@pytest.mark.parametrize(
    ("rules", "channel", "value", "priority", "rule"),
    [
        pytest.param((AMAZON_FIRST,), "amazon", "20.00", P1, "amazon_orders_first", id="own-rule"),
        pytest.param((AMAZON_FIRST,), "shopify", "900.00", P1, "high_value", id="defaults-kept"),
        pytest.param(
            (AMAZON_FIRST, *DEFAULT_PRIORITY_RULES),
            "amazon",
            "900.00",
            P1,
            "amazon_orders_first",
            id="own-rule-before-defaults",
        ),
        pytest.param(
            (AMAZON_FIRST, *DEFAULT_PRIORITY_RULES),
            "shopify",
            "120.00",
            P2,
            "address_fix",
            id="defaults-kept-after-own-rule",
        ),
    ],
)
def test_a_merchant_rule_overrides_the_defaults(rules, channel, value, priority, rule):
    # given a merchant whose own priority rules come ahead of the defaults
    triage = Triage(Policy(rules=Rules(priority=rules)), 1)
    # when an address case is triaged
    given = Given(
        Category.ADDRESS_INVALID, (placed(value, channel=channel),), ev("address.invalid")
    )
    decision = given.decide(triage)
    # then the merchant's list decides
    assert decision.priority is priority
    assert decision.rules.get("priority") == rule


def test_a_merchant_can_drop_the_default_rules():
    # given a merchant whose priority rules are its own alone (include_defaults: false)
    rules = Rules(priority=(AMAZON_FIRST,), include_defaults=False)
    triage = Triage(Policy(rules=rules), 1)
    # when a high-value address case from the web shop is triaged
    given = Given(
        Category.ADDRESS_INVALID, (placed("900.00", channel="shopify"),), ev("address.invalid")
    )
    decision = given.decide(triage)
    # then no default rule raises it: it stays at the default priority
    assert decision.priority is P3
    assert decision.rules.get("priority") is None


def test_merchant_settings_from_a_file_drive_triage():
    # given merchant settings (as read from a file) with an own CEL rule
    settings = MerchantSettings.model_validate(
        {
            "merchant": "acme",
            "rules": {
                "priority": [
                    {"name": "marketplace_first", "when": 'order.channel == "amazon"', "then": "P1"}
                ]
            },
        }
    )
    # when an amazon order's payment case is triaged
    given = Given(Category.PAYMENT_FAILED, (placed(channel="amazon"),), ev("payment.failed"))
    decision = given.decide(Triage(settings, 2))
    # then the merchant's rule decided
    assert (decision.priority, decision.rules["priority"]) == (P1, "marketplace_first")


def test_a_rule_that_fails_to_evaluate_does_not_match():
    # given a merchant rule that reads an event field without has()
    rule = Rule(name="lost_parcels", when='event.data.kind == "lost"', then="P1")
    triage = Triage(Policy(rules=Rules(priority=(rule,))), 1)
    # when the event has no such field
    decision = Given(Category.PAYMENT_FAILED, event=ev("payment.failed")).decide(triage)
    # then the rule simply does not match
    assert (decision.priority, decision.rules) == (P3, {})


# --- routing -------------------------------------------------------------------------------------

MARKETPLACE = Queue(name="marketplace")
ROUTED = Triage(
    Policy(
        queues=(*DEFAULT_QUEUES, MARKETPLACE),
        rules=Rules(
            routing=(
                Rule(
                    name="amazon_to_marketplace",
                    when='order.channel == "amazon"',
                    then="marketplace",
                ),
            )
        ),
    ),
    1,
)


@pytest.mark.parametrize(
    ("channel", "queue", "rules"),
    [
        ("amazon", "marketplace", {"queue": "amazon_to_marketplace"}),
        ("shopify", "pre_fulfilment", {}),
    ],
)
def test_a_routing_rule_sends_a_case_to_another_queue(channel, queue, rules):
    # given a merchant that routes amazon orders to its marketplace queue
    given = Given(Category.PAYMENT_FAILED, (placed(channel=channel),), ev("payment.failed"))
    # when a payment case is triaged
    decision = given.decide(ROUTED)
    # then the routing rule picks the queue; otherwise the queue listing the category does
    assert decision.queue == queue
    assert {k: v for k, v in decision.rules.items() if k == "queue"} == rules


def test_a_routed_case_stays_in_its_queue():
    # given a case already in the cancel/edit queue
    case = opened(Category.PAYMENT_FAILED)
    case.queue = "cancel_edit"
    # when triage runs again on an amazon order
    decision = ROUTED.decide(case, order_of((placed(channel="amazon"),)), None, NOW)
    # then the queue is not changed
    assert decision.queue == "cancel_edit"
    assert "queue" not in decision.rules


# --- assignment ----------------------------------------------------------------------------------

AWAY_FROM, AWAY_TO = NOW - HOUR, NOW + timedelta(days=1)
MEMBERS = {
    "ann": Member(name="ann", email="ann@acme.example"),
    "bob": Member.model_validate({"name": "bob", "away": [{"from": AWAY_FROM, "to": AWAY_TO}]}),
    "cid": Member(name="cid"),
}


def desk(assignment: Assignment) -> Queue:
    return Queue(
        name="pre_fulfilment",
        categories=("payment_failed",),
        members=("ann", "bob", "cid"),
        assignment=assignment,
    )


@pytest.mark.parametrize(
    ("last", "now", "expected"),
    [
        pytest.param(None, NOW, "ann", id="first-member-to-start"),
        pytest.param("ann", NOW, "cid", id="skips-away-bob"),
        pytest.param("bob", NOW, "cid", id="after-the-away-member"),
        pytest.param("cid", NOW, "ann", id="wraps-around"),
        pytest.param("zoe", NOW, "ann", id="last-not-in-queue-starts-over"),
        pytest.param("ann", AWAY_FROM, "cid", id="away-from-the-start-of-the-window"),
        pytest.param("ann", AWAY_TO, "bob", id="back-at-the-end-of-the-window"),
    ],
)
def test_round_robin_takes_the_next_present_member(last, now, expected):
    # given a round-robin queue of ann, bob and cid, with bob away for a day
    # when a case is assigned after `last`
    chosen = choose_member(desk(Assignment.ROUND_ROBIN), MEMBERS, {}, last, now=now)
    # then the next member who is not away gets it
    assert chosen == expected


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        pytest.param({}, "ann", id="no-load-queue-order"),
        pytest.param({"ann": 2, "bob": 0, "cid": 1}, "cid", id="least-loaded-present"),
        pytest.param({"ann": 1, "cid": 1}, "ann", id="tie-queue-order"),
        pytest.param({"ann": 5, "cid": 4}, "cid", id="fewest-open-cases"),
    ],
)
def test_load_balancing_takes_the_least_loaded_present_member(load, expected):
    # given a load-balanced queue with bob away
    # when a case is assigned
    chosen = choose_member(desk(Assignment.LOAD_BALANCED), MEMBERS, load, "ann", now=NOW)
    # then the present member with the fewest open cases gets it
    assert chosen == expected


@pytest.mark.parametrize(
    ("assignment", "skip", "expected"),
    [
        pytest.param(Assignment.ROUND_ROBIN, "cid", "ann", id="skip-wraps-past-everyone"),
        pytest.param(Assignment.LOAD_BALANCED, "ann", "cid", id="skip-the-current-owner"),
        pytest.param(Assignment.NONE, None, None, id="no-assignment"),
    ],
)
def test_skip_and_no_assignment(assignment, skip, expected):
    # given the queue, bob away, and the last case given to ann
    # when a case is reassigned away from `skip`
    chosen = choose_member(desk(assignment), MEMBERS, {}, "ann", now=NOW, skip=skip)
    # then that member is passed over too
    assert chosen == expected


def test_nobody_present_means_nobody_chosen():
    # given everybody in the queue away
    away = {"from": AWAY_FROM, "to": AWAY_TO}
    members = {n: Member.model_validate({"name": n, "away": [away]}) for n in MEMBERS}
    # when a case is assigned
    chosen = choose_member(desk(Assignment.ROUND_ROBIN), members, {}, None, now=NOW)
    # then nobody is chosen
    assert chosen is None


def test_triage_assigns_an_unowned_case_and_records_it():
    # given a merchant whose pre-fulfilment queue is staffed round robin, bob away
    policy = Policy(
        members=tuple(MEMBERS.values()),
        queues=(desk(Assignment.ROUND_ROBIN), *DEFAULT_QUEUES[1:]),
    )
    triage = Triage(policy, 1)
    case = triaged(Category.PAYMENT_FAILED, (placed(),), ev("payment.failed"))
    # when the case is assigned after ann's last case
    triage.assign(case, {}, "ann", NOW)
    # then cid owns it and the timeline says why
    assert case.owner == "cid"
    assert rows(case) == [
        ("assigned", "triage", {"from": None, "to": "cid", "reason": "round_robin"})
    ]
    # and an owned case is not assigned again
    case.pending.clear()
    triage.assign(case, {}, "cid", NOW)
    assert (case.owner, rows(case)) == ("cid", [])
