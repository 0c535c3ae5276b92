"""The concession matrix (``domain.concessions``) and its configuration
(``services.concessions.ConcessionPolicy``): which remedy a problem gets, for how much, and when
the budget, the per-order cap or a customer's earlier concessions send it to a lead instead."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from recoverydesk.domain.concessions import (
    OVER_BUDGET,
    REPEAT_CONCESSIONS,
    ConcessionDecision,
    ConcessionMatrix,
    ConcessionRule,
    OverBudget,
    ProblemKind,
    Remedy,
    decide,
    month_start,
    problem_of,
    window_start,
)
from recoverydesk.domain.errors import InvalidConfig
from recoverydesk.services.concessions import ConcessionPolicy

D = Decimal


def rule(kinds: str, remedy: Remedy, **more: Any) -> ConcessionRule:
    return ConcessionRule(when_kinds=frozenset(kinds.split()), remedy=remedy, **more)


RULES = (
    rule("lost damaged", Remedy.RESHIP, max_value=D("100"), name="small_loss"),
    rule("lost damaged", Remedy.REFUND),
    rule("late", Remedy.PARTIAL_REFUND, share=D("0.15")),
    rule("not_as_described", Remedy.CREDIT, share=D("0.5"), tiers=frozenset({"vip"})),
    rule("not_as_described", Remedy.DENY),
    rule("wrong_item", Remedy.ESCALATE),
)


def matrix(**more: Any) -> ConcessionMatrix:
    settings: dict[str, Any] = {
        "rules": RULES,
        "monthly_budget": D("1000.00"),
        "currency": "USD",
        "max_per_customer": 3,
    }
    return ConcessionMatrix(**{**settings, **more})


def decision(
    m: ConcessionMatrix | None = None,
    *,
    kind: str = "lost",
    value: str | None = "80.00",
    tier: str | None = None,
    spent: str = "0",
    earlier: int = 0,
    currency: str | None = "USD",
) -> ConcessionDecision:
    return decide(
        m or matrix(),
        kind=kind,
        order_value=D(value) if value is not None else None,
        tier=tier,
        spent_this_month=D(spent),
        customer_concessions_in_window=earlier,
        currency=currency,
    )


# -- the first fitting rule --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "tier", "expected"),
    [
        pytest.param("lost", "80.00", None, (Remedy.RESHIP, D("40.00"), 0), id="small-loss-reship"),
        pytest.param("damaged", "99.99", None, (Remedy.RESHIP, D("50.00"), 0), id="under-100"),
        pytest.param("lost", "100.00", None, (Remedy.REFUND, D("100.00"), 1), id="at-100-refund"),
        pytest.param("late", "33.33", None, (Remedy.PARTIAL_REFUND, D("5.00"), 2), id="late-15pc"),
        pytest.param(
            "not_as_described", "90.00", "vip", (Remedy.CREDIT, D("45.00"), 3), id="vip-credit"
        ),
        pytest.param(
            "not_as_described", "90.00", "standard", (Remedy.DENY, D("0"), 4), id="others-deny"
        ),
        pytest.param(
            "not_as_described", "90.00", None, (Remedy.DENY, D("0"), 4), id="no-tier-deny"
        ),
        pytest.param("wrong_item", "90.00", None, (Remedy.ESCALATE, D("0"), 5), id="lead-rule"),
    ],
)
def test_the_first_rule_that_fits_the_problem_decides_the_remedy_and_its_cost(
    kind: str, value: str, tier: str | None, expected: tuple[Remedy, Decimal, int]
) -> None:
    # given the matrix (reship a small loss, refund a larger one, 15% for a late parcel ...)
    # when a problem of this kind on an order of this value and customer tier is decided
    got = decision(kind=kind, value=value, tier=tier)
    # then the first fitting rule's remedy is given, at its cost in cents
    assert (got.remedy, got.amount, got.rule_index) == expected
    assert got.amount == got.amount.quantize(D("0.01"))


def test_a_rule_names_itself_in_the_reason_or_is_named_by_its_place() -> None:
    # given a named first rule and unnamed others
    # when a small loss and a large loss are decided
    # then the reason says which rule gave the remedy
    assert decision(kind="lost", value="80.00").reason == "small_loss"
    assert decision(kind="lost", value="180.00").reason == "rule 1"


def test_a_rule_without_kinds_fits_every_problem() -> None:
    # given a matrix whose only rule names no kind
    m = matrix(rules=(rule("", Remedy.PARTIAL_REFUND, share=D("0.1")),))
    # when an unusual problem is decided
    got = decision(m, kind="other", value="50.00")
    # then that rule gives its remedy
    assert (got.remedy, got.amount) == (Remedy.PARTIAL_REFUND, D("5.00"))


def test_a_problem_no_rule_covers_goes_to_a_lead() -> None:
    # given the matrix, which says nothing about missing items
    # when a missing item is decided
    got = decision(kind="missing_item")
    # then a lead decides, and no rule is named
    assert (got.remedy, got.amount, got.rule_index) == (Remedy.ESCALATE, D("0"), None)
    assert got.reason == "no concession rule covers missing_item"


def test_an_order_of_unknown_value_goes_to_a_lead_rather_than_a_guess() -> None:
    # given an order whose value the desk never learned
    # when a loss is decided (the small-loss rule cannot fit an unknown value)
    got = decision(kind="lost", value=None)
    # then the refund rule fits, but a lead decides the amount
    assert (got.remedy, got.rule_index) == (Remedy.ESCALATE, 1)
    assert got.reason == "the order's value is unknown"


def test_an_order_in_another_currency_than_the_budget_goes_to_a_lead() -> None:
    # given a budget in USD
    # when a loss on an order in EUR is decided
    got = decision(currency="EUR")
    # then a lead decides (the desk never mixes currencies)
    assert got.remedy is Remedy.ESCALATE
    assert got.reason == "the order is in EUR, the concession budget in USD"


# -- the limits --------------------------------------------------------------------------------


def test_a_customer_with_as_many_concessions_as_allowed_in_the_window_goes_to_a_lead() -> None:
    # given a customer limit of 3 concessions in the window
    # when a customer who had 2 asks, and one who had 3 asks
    fine, repeat = decision(earlier=2), decision(earlier=3)
    # then the first gets the rule's remedy, the second goes to a lead
    assert fine.remedy is Remedy.RESHIP
    assert (repeat.remedy, repeat.reason, repeat.rule_index) == (
        Remedy.ESCALATE,
        REPEAT_CONCESSIONS,
        0,
    )


def test_without_a_customer_limit_earlier_concessions_do_not_count() -> None:
    # given no limit per customer
    # when a customer with many earlier concessions asks
    got = decision(matrix(max_per_customer=None), earlier=40)
    # then the rule decides
    assert got.remedy is Remedy.RESHIP


def test_a_denial_or_a_lead_rule_is_not_turned_into_a_repeat_escalation() -> None:
    # given a customer over the limit
    # when a problem the matrix denies is decided
    got = decision(kind="not_as_described", earlier=9)
    # then it is still denied
    assert got.remedy is Remedy.DENY


def test_a_partial_refund_or_credit_above_the_per_order_cap_is_cut_to_the_cap() -> None:
    # given a cap of 10.00 per order
    m = matrix(per_order_cap=D("10"))
    # when a late parcel on a 200.00 order (15% = 30.00) and a vip credit (50% of 90) are decided
    late = decision(m, kind="late", value="200.00")
    credit = decision(m, kind="not_as_described", value="90.00", tier="vip")
    # then both are given at the cap, and the reason says so
    assert (late.remedy, late.amount) == (Remedy.PARTIAL_REFUND, D("10.00"))
    assert (credit.remedy, credit.amount) == (Remedy.CREDIT, D("10.00"))
    assert "capped at 10" in late.reason


@pytest.mark.parametrize(("value", "what"), [("150.00", "refund"), ("90.00", "reship")])
def test_a_refund_or_reship_costing_more_than_the_cap_goes_to_a_lead(value: str, what: str) -> None:
    # given a cap of 30.00 per order
    m = matrix(per_order_cap=D("30"))
    # when a loss is decided (a 150.00 refund, or a 90.00 order's reship costing 45.00)
    got = decision(m, kind="lost", value=value)
    # then a lead decides: the desk does not give a partial refund for a lost parcel
    assert got.remedy is Remedy.ESCALATE, what
    assert got.reason == "over the per-order cap of 30 USD"


def test_a_concession_costing_more_than_is_left_this_month_goes_to_a_lead() -> None:
    # given a budget of 1000.00 of which 950.00 was spent this month
    # when a 100.00 refund is decided
    got = decision(kind="lost", value="100.00", spent="950.00")
    # then a lead decides, because it is over budget
    assert (got.remedy, got.amount, got.reason, got.rule_index) == (
        Remedy.ESCALATE,
        D("0"),
        OVER_BUDGET,
        1,
    )


def test_a_merchant_may_deny_what_is_over_budget_instead() -> None:
    # given a matrix that denies what the budget cannot pay
    m = matrix(over_budget=OverBudget.DENY)
    # when a reship costing 40.00 is decided with 30.00 left
    got = decision(m, kind="lost", value="80.00", spent="970.00")
    # then it is denied, over budget
    assert (got.remedy, got.reason) == (Remedy.DENY, OVER_BUDGET)


def test_a_concession_costing_exactly_what_is_left_is_given() -> None:
    # given 40.00 left this month
    # when a reship costing 40.00 is decided
    got = decision(kind="lost", value="80.00", spent="960.00")
    # then it is given, and the budget is used up
    assert (got.remedy, got.amount) == (Remedy.RESHIP, D("40.00"))
    assert matrix().budget_left(D("1000.00")) == D("0.00")


def test_an_overspent_month_leaves_nothing_rather_than_a_negative_budget() -> None:
    # given a month already overspent (refunds made by hand)
    # when what is left is asked, and a small partial refund is decided
    left = matrix().budget_left(D("1200.00"))
    got = decision(kind="late", value="10.00", spent="1200.00")
    # then nothing is left, and even 1.50 goes to a lead
    assert left == D("0.00")
    assert (got.remedy, got.reason) == (Remedy.ESCALATE, OVER_BUDGET)


def test_the_reship_cost_share_is_configurable() -> None:
    # given reships that cost 80% of the order value
    m = matrix(reship_cost_share=D("0.8"))
    # when a small loss is decided
    got = decision(m, kind="lost", value="80.00")
    # then the reship costs 64.00
    assert (got.remedy, got.amount) == (Remedy.RESHIP, D("64.00"))


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"monthly_budget": D("-1")}, id="negative-budget"),
        pytest.param({"per_order_cap": D("-1")}, id="negative-cap"),
        pytest.param({"reship_cost_share": D("1.5")}, id="share-over-1"),
        pytest.param({"repeat_window_days": 0}, id="empty-window"),
    ],
)
def test_a_matrix_with_impossible_limits_is_refused(settings: dict[str, Any]) -> None:
    # given impossible limits, when a matrix is built, then it is refused
    with pytest.raises(InvalidConfig):
        matrix(**settings)


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"share": D("0")}, id="zero-share"),
        pytest.param({"share": D("1.2")}, id="share-over-1"),
        pytest.param({"max_value": D("0")}, id="zero-max-value"),
    ],
)
def test_a_rule_with_an_impossible_share_or_value_is_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(InvalidConfig):
        rule("late", Remedy.PARTIAL_REFUND, **settings)


# -- problems and periods ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("lost", ProblemKind.LOST),
        ("damaged", ProblemKind.DAMAGED),
        ("delay", ProblemKind.LATE),
        ("failed_attempt", ProblemKind.OTHER),
        ("returned_to_sender", ProblemKind.OTHER),
        ("Wrong_Item", ProblemKind.WRONG_ITEM),
        ("no street number", ProblemKind.OTHER),
        (None, ProblemKind.OTHER),
    ],
)
def test_a_case_fact_names_a_problem_kind(text: str | None, kind: ProblemKind) -> None:
    # given a case fact (a delivery exception's kind, a concession kind or free text)
    # when it is read as a problem, then it is the matching kind or "other"
    assert problem_of(text) is kind


def test_the_budget_month_starts_at_midnight_of_the_first_in_the_merchants_time_zone() -> None:
    # given 23:30 UTC on 30 November, which is already 1 December in Berlin
    now = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    # when the month's start is asked in UTC and in Berlin
    # then UTC's month is November, Berlin's began an hour before midnight UTC
    assert month_start(now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert month_start(now, "Europe/Berlin") == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    assert window_start(now, 30) == datetime(2026, 10, 31, 23, 30, tzinfo=UTC)


# -- the configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "remedy", "amount"),
    [
        ("lost", "99.00", Remedy.RESHIP, "49.50"),
        ("damaged", "100.00", Remedy.REFUND, "100.00"),
        ("late", "60.00", Remedy.PARTIAL_REFUND, "9.00"),
        ("not_as_described", "49.99", Remedy.REFUND, "49.99"),
        ("not_as_described", "50.00", Remedy.ESCALATE, "0"),
        ("missing_item", "70.00", Remedy.RESHIP, "35.00"),
        ("other", "70.00", Remedy.ESCALATE, "0"),
    ],
)
def test_the_default_concession_policy(kind: str, value: str, remedy: Remedy, amount: str) -> None:
    # given a merchant's file with no concessions section
    m = ConcessionPolicy().matrix()
    # when a problem is decided, then the defaults of issue 6 apply, with a 2000.00 USD budget
    got = decision(m, kind=kind, value=value)
    assert (got.remedy, got.amount) == (remedy, D(amount))
    assert (m.monthly_budget, m.currency, m.over_budget) == (D("2000.00"), "USD", "escalate")


def test_a_merchants_concessions_section_replaces_the_defaults() -> None:
    # given a file's section, as YAML gives it (numbers as floats)
    section = {
        "monthly_budget": 500.0,
        "currency": "EUR",
        "over_budget": "deny",
        "per_order_cap": 75,
        "rules": [
            {"when_kinds": ["late"], "remedy": "credit", "share": 0.2, "tiers": ["vip"]},
            {"remedy": "deny"},
        ],
    }
    # when it is read
    m = ConcessionPolicy.model_validate(section).matrix()
    # then it is the merchant's matrix, money exact
    assert (m.monthly_budget, m.currency, m.per_order_cap) == (D("500"), "EUR", D("75"))
    late_vip = decision(m, kind="late", value="100.00", tier="vip", currency="EUR")
    assert (late_vip.remedy, late_vip.amount) == (Remedy.CREDIT, D("20.00"))
    assert decision(m, kind="lost", currency="EUR").remedy is Remedy.DENY


@pytest.mark.parametrize(
    "section",
    [
        pytest.param({"rules": [{"when_kinds": ["stolen"], "remedy": "refund"}]}, id="kind"),
        pytest.param({"rules": [{"remedy": "apologise"}]}, id="remedy"),
        pytest.param({"rules": [{"remedy": "credit", "share": 0}]}, id="share"),
        pytest.param({"monthly_budget": -5}, id="budget"),
        pytest.param({"currency": "usd"}, id="currency"),
        pytest.param({"over_budget": "refund"}, id="over-budget"),
        pytest.param({"budget": 100}, id="unknown-key"),
    ],
)
def test_a_wrong_concessions_section_is_refused_when_the_file_is_read(
    section: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError):
        ConcessionPolicy.model_validate(section)
