"""Close and verify (F15) and root causes (F16), domain and configuration level.

The matching of a case to the merchant's root-cause list, the list in the merchant's file, the
fold that names a closed case's root cause and reopens a case whose outcome an event contradicts,
and the closes only a person makes. Simulated time (minutes after T0); nothing sleeps.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from textwrap import dedent
from typing import Any

import pytest

from recoverydesk.domain.casebook import Closure, Episode, fold, step, sync_cases
from recoverydesk.domain.cases import (
    DECIDED_BY,
    Case,
    CaseStatus,
    Category,
    Outcome,
    ReasonCode,
)
from recoverydesk.domain.errors import Conflict, InvalidConfig, InvalidTransition
from recoverydesk.domain.events import CanonicalEvent, EventSource, EventType, OrderFacts
from recoverydesk.domain.orders import OrderView
from recoverydesk.domain.root_causes import DEFAULT_ROOT_CAUSES, RootCause, root_cause_for
from recoverydesk.domain.sla import ClockName, SlaClock
from recoverydesk.services.merchants import parse_settings
from recoverydesk.services.policy import CODE, Policy
from recoverydesk.services.triage import MerchantCaseRules
from recoverydesk.services.views import order_from_dict, order_to_dict

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
REF = "1001"
SOURCE = "acme.yaml"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(eid: str, event_type: str, minute: float, **data: Any) -> CanonicalEvent:
    """An event on order REF; its source is the prefix of its id."""
    return CanonicalEvent(
        id=eid,
        source=EventSource(eid.split(":", 1)[0]),
        type=EventType(event_type),
        occurred_at=at(minute),
        order=OrderFacts(ref=REF),
        data=data,
    )


def placed() -> CanonicalEvent:
    event = ev("shopify:placed", "order.placed", 0)
    order = OrderFacts(ref=REF, value=Decimal("80.00"), currency="USD", placed_at=at(0))
    return CanonicalEvent(event.id, event.source, event.type, event.occurred_at, order)


def hold(minute: float, eid: str, hold_type: str = "fraud") -> CanonicalEvent:
    return ev(eid, "hold.placed", minute, hold_type=hold_type)


def release(minute: float, eid: str, hold_type: str = "fraud") -> CanonicalEvent:
    return ev(eid, "hold.released", minute, hold_type=hold_type)


@dataclass(frozen=True)
class Rules:
    """A merchant's case rules with only a root-cause list (the fold's ``CaseRules``)."""

    root_causes: Sequence[RootCause]

    def opens(self, event: CanonicalEvent, order: OrderView) -> list[tuple[str, str]]:
        return []

    def closes(self, event: CanonicalEvent) -> list[Closure]:
        return []


# --- matching ------------------------------------------------------------------------------------

CARD = RootCause("card", "Card declined", "payments", frozenset({"payment_failed"}))
FRAUD_CANCEL = RootCause(
    "fraud", "Fraud", "risk", frozenset({"fraud_hold"}), reason_codes=frozenset({"fraud"})
)
LATE = RootCause(
    "late", "Late ask", "cx", frozenset({"change_request"}), outcomes=frozenset({"denied"})
)
ANYTHING = RootCause("other", "Anything else", "ops lead")


@pytest.mark.parametrize(
    ("category", "reason", "outcome", "expected"),
    [
        pytest.param("payment_failed", None, "released", "card", id="category"),
        pytest.param("fraud_hold", "fraud", "cancelled", "fraud", id="category-and-reason"),
        pytest.param("fraud_hold", None, "released", "other", id="reason-must-hold-too"),
        pytest.param("change_request", None, "denied", "late", id="category-and-outcome"),
        pytest.param("change_request", "customer_request", "cancelled", "other", id="fallback"),
    ],
)
def test_the_first_entry_whose_every_named_part_holds_is_the_root_cause(
    category, reason, outcome, expected
):
    # given a list whose last entry names nothing (it matches every case)
    causes = [CARD, FRAUD_CANCEL, LATE, ANYTHING]
    # when a case is matched
    found = root_cause_for(causes, category=category, reason_code=reason, outcome=outcome)
    # then the first entry whose categories, reason codes and outcomes all hold is chosen
    assert found is not None
    assert found.code == expected


def test_no_entry_matching_gives_no_root_cause():
    assert root_cause_for([CARD], category="fraud_hold", reason_code=None, outcome=None) is None


@pytest.mark.parametrize("category", list(Category))
def test_the_defaults_give_every_built_in_category_a_root_cause_with_an_owner(category):
    # given the default list, and a case of each built-in category
    for outcome in Outcome:
        # when it closes on any outcome
        found = root_cause_for(
            DEFAULT_ROOT_CAUSES, category=category, reason_code=None, outcome=outcome.value
        )
        # then it has a root cause, and an owner of the fix
        assert found is not None, (category, outcome)
        assert found.owner


@pytest.mark.parametrize(
    ("category", "reason", "outcome", "expected", "owner"),
    [
        ("payment_failed", None, "released", "customer_card_declined", "payments (PSP)"),
        ("fraud_hold", None, "released", "fraud_screening_false_positive", "risk"),
        ("fraud_hold", "fraud", "cancelled", "confirmed_fraud", "risk"),
        ("address_invalid", None, "released", "address_not_validated_at_checkout", "storefront"),
        (
            "inventory_mismatch",
            "stockout",
            "cancelled",
            "inventory_sync_lag",
            "ERP/WMS integration",
        ),
        ("wms_exception", None, "shipped", "warehouse_pick_error", "3PL"),
        ("delivery_exception", None, "delivered", "carrier_exception", "carrier"),
        ("change_request", "customer_request", "cancelled", "customer_changed_mind", None),
        ("change_request", "customer_request", "denied", "late_cancel_request", "CX"),
        ("change_request", "duplicate_order", "cancelled", "duplicate_order", "storefront"),
    ],
)
def test_the_defaults_name_the_usual_root_causes(category, reason, outcome, expected, owner):
    found = root_cause_for(
        DEFAULT_ROOT_CAUSES, category=category, reason_code=reason, outcome=outcome
    )
    assert found is not None
    assert found.code == expected
    assert owner is None or found.owner == owner


def test_default_codes_are_unique_and_look_like_codes():
    codes = [cause.code for cause in DEFAULT_ROOT_CAUSES]
    assert len(codes) == len(set(codes))
    assert all(re.match(CODE, code) for code in codes)


# --- the list in the merchant's configuration ----------------------------------------------------


def test_a_merchant_without_a_list_gets_the_defaults():
    # given a merchant file that says nothing about root causes
    settings = parse_settings("merchant: acme\n", SOURCE)
    # then its list is the default one, in the same order
    causes = tuple(cause.as_root_cause() for cause in settings.root_causes)
    assert causes == DEFAULT_ROOT_CAUSES
    assert MerchantCaseRules(settings).root_causes == DEFAULT_ROOT_CAUSES


def test_a_merchant_list_replaces_the_defaults():
    # given a file with its own list (over a category of its own taxonomy too)
    settings = parse_settings(
        dedent(
            """\
            merchant: acme
            taxonomy:
              categories: [{code: gift_card_issue}]
              reason_codes: [gift_card_expired]
            members: [{name: ann}]
            root_causes:
              - code: gift_card_expired_at_checkout
                label: The checkout took an expired gift card
                owner: ann
                categories: [gift_card_issue]
                reason_codes: [gift_card_expired]
              - code: card_declined
                label: Card declined
                owner: payments team
                categories: [payment_failed]
                outcomes: [released, cancelled]
            """
        ),
        SOURCE,
    )
    # then only its entries are used, in its order
    rules = MerchantCaseRules(settings)
    assert [cause.code for cause in rules.root_causes] == [
        "gift_card_expired_at_checkout",
        "card_declined",
    ]
    assert rules.root_causes[1].outcomes == {"released", "cancelled"}
    assert settings.root_cause("card_declined") is not None
    assert settings.root_cause("customer_card_declined") is None


ENTRY = "    label: x\n    owner: y\n"


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        pytest.param(
            f"root_causes:\n  - code: a\n{ENTRY}  - code: a\n{ENTRY}",
            5,
            "root_causes.1.code: root cause 'a' is defined twice",
            id="duplicate-code",
        ),
        pytest.param(
            f"root_causes:\n  - code: Card-Declined\n{ENTRY}",
            2,
            "root_causes.0.code: String should match pattern",
            id="code-not-a-code",
        ),
        pytest.param(
            f"root_causes:\n  - code: a\n{ENTRY}    categories: [gift_card_issue]\n",
            5,
            "root_causes.0.categories: 'gift_card_issue' is not one of",
            id="category-not-in-taxonomy",
        ),
        pytest.param(
            f"root_causes:\n  - code: a\n{ENTRY}    reason_codes: [weather]\n",
            5,
            "root_causes.0.reason_codes: 'weather' is not one of",
            id="reason-code-unknown",
        ),
        pytest.param(
            f"root_causes:\n  - code: a\n{ENTRY}    outcomes: [vanished]\n",
            5,
            "root_causes.0.outcomes.0: Input should be",
            id="outcome-unknown",
        ),
        pytest.param(
            "root_causes:\n  - code: a\n    label: x\n",
            2,
            "root_causes.0.owner: Field required",
            id="owner-missing",
        ),
    ],
)
def test_a_bad_root_cause_list_is_refused_naming_file_line_and_field(text, line, says):
    with pytest.raises(InvalidConfig) as raised:
        parse_settings(text, SOURCE)
    message = raised.value.message
    assert message.startswith(f"{SOURCE}:{line}: "), message
    assert says in message


# --- the fold names the root cause of an automatic closure ----------------------------------------


def test_a_recovered_payment_closes_with_the_first_matching_root_cause():
    # given a failed payment recovered by a capture
    events = [placed(), ev("psp:fail", "payment.failed", 1), ev("psp:cap", "payment.captured", 5)]
    # when the history is folded and the case synced
    _, episodes = fold(REF, events)
    (case,) = sync_cases(REF, episodes, [], at=NOW)
    # then the case is closed, released, with the default root cause of a card decline
    assert (case.status, case.outcome, case.root_cause) == (
        CaseStatus.CLOSED,
        Outcome.RELEASED,
        "customer_card_declined",
    )
    outcome_row = next(row for row in case.pending if row.kind == "outcome")
    assert outcome_row.detail["root_cause"] == "customer_card_declined"


def test_the_merchant_list_given_to_the_fold_decides():
    # given a merchant whose list knows cancellations for fraud only
    rules = Rules([FRAUD_CANCEL])
    events = [
        placed(),
        hold(1, "shopify:h1"),
        ev("shopify:c", "order.cancelled", 5, reason="fraud"),
    ]
    # when the history is folded with the merchant's rules
    _, episodes = fold(REF, events, rules)
    # then the cancelled fraud hold has that root cause
    assert [(ep.outcome, ep.root_cause) for ep in episodes] == [(Outcome.CANCELLED, "fraud")]


def test_a_closure_no_entry_matches_stays_resolved_until_a_person_closes_it():
    # given a merchant whose list has nothing for fraud holds released
    rules = Rules([CARD])
    events = [placed(), hold(1, "shopify:h1"), release(5, "shopify:r1")]
    _, episodes = fold(REF, events, rules)
    # when the case is synced
    (case,) = sync_cases(REF, episodes, [], at=NOW)
    # then its outcome is verified but it stays resolved, "root cause needed" on its timeline
    assert (case.status, case.outcome, case.root_cause) == (
        CaseStatus.RESOLVED,
        Outcome.RELEASED,
        None,
    )
    assert case.pending[-1].kind == "root_cause_needed"
    assert case.pending[-1].detail["text"] == "root cause needed"
    # and syncing the same history again changes nothing
    case.pending.clear()
    assert sync_cases(REF, fold(REF, events, rules)[1], [case], at=NOW) == []
    assert case.pending == []
    # when a person closes it on the verified outcome with a root cause
    case.close(Outcome.RELEASED, root_cause="other", at=NOW, actor="lead:ann")
    # then it is closed, and the row names who did it
    assert (case.status, case.root_cause) == (CaseStatus.CLOSED, "other")
    assert [(r.kind, r.actor) for r in case.pending] == [
        ("root_cause", "lead:ann"),
        ("status_changed", "lead:ann"),
    ]
    # and a refold of the same history leaves the person's close alone
    case.pending.clear()
    sync_cases(REF, fold(REF, events, rules)[1], [case], at=NOW)
    assert (case.status, case.root_cause, case.pending) == (CaseStatus.CLOSED, "other", [])


def test_a_withdrawn_drift_case_closes_with_the_withdrawal_root_cause():
    # given a refund while shipped, whose return turns out to have come first
    events = [
        placed(),
        ev("psp:cap", "payment.captured", 1, amount="80.00"),
        ev("wms:s1", "fulfillment.shipped", 10, tracking="1Z"),
        ev("psp:r1", "payment.refunded", 20, refund_id="r1", amount="80.00"),
    ]
    cases = sync_cases(REF, fold(REF, events)[1], [], at=NOW)
    assert [c.rule for c in cases if c.is_open] == ["refund_while_shipped"]
    # when the return that came before the refund arrives late
    late = [*events, ev("wms:ret", "return.received", 15)]
    sync_cases(REF, fold(REF, late)[1], cases, at=NOW)
    # then the drift case is closed, with the withdrawal root cause
    (drift_case,) = [c for c in cases if c.rule == "refund_while_shipped"]
    assert (drift_case.status, drift_case.root_cause) == (CaseStatus.CLOSED, "drift_withdrawn")


# --- closes only a person makes -------------------------------------------------------------------


def open_case(status: CaseStatus = CaseStatus.TRIAGED) -> Case:
    case = Case.open(
        order_ref=REF,
        category=Category.CHANGE_REQUEST,
        opened_at=at(0),
        opened_by="helpdesk:ask",
        hold_type=None,
        recorded_at=NOW,
    )
    case.id, case.status = 9, status
    case.pending.clear()
    return case


@pytest.mark.parametrize("outcome", [o for o in Outcome if o not in {"denied", "concession"}])
def test_an_open_case_does_not_close_on_a_click(outcome):
    # given an open case
    case = open_case()
    # when a person closes it on an outcome the source systems report
    with pytest.raises(Conflict) as raised:
        case.close(outcome, root_cause="late", at=NOW, actor="agent:bob")
    # then it is refused: that outcome must be observed, not clicked
    assert raised.value.code == "outcome_not_verified"
    assert (case.status, case.outcome, case.pending) == (CaseStatus.TRIAGED, None, [])


@pytest.mark.parametrize("outcome", [Outcome.DENIED, Outcome.CONCESSION])
def test_a_person_closes_an_open_case_on_an_outcome_only_a_person_decides(outcome):
    # given an open case
    case = open_case()
    # when a person closes it as denied (or a concession) with a root cause
    case.close(outcome, root_cause="late", at=at(30), actor="lead:ann")
    # then it is closed then and there, and every step is on the timeline with the person
    assert (case.status, case.outcome, case.closed_at) == (CaseStatus.CLOSED, outcome, at(30))
    assert (case.root_cause, case.data[DECIDED_BY]) == ("late", "lead:ann")
    assert [(r.kind, r.actor) for r in case.pending] == [
        ("first_touch", "lead:ann"),
        ("status_changed", "lead:ann"),
        ("status_changed", "lead:ann"),
        ("outcome", "lead:ann"),
        ("root_cause", "lead:ann"),
        ("status_changed", "lead:ann"),
    ]
    # and the fold, which sees only events, sees its episode open
    assert Episode.of_case(case).is_open


def test_a_resolved_case_closes_only_on_its_verified_outcome():
    # given a case resolved as cancelled, no root cause found
    case = open_case()
    case.confirm_outcome(
        Outcome.CANCELLED,
        reason_code=ReasonCode.CUSTOMER_REQUEST,
        confirmed_at=at(5),
        event_id="shopify:c",
        at=NOW,
        root_cause=None,
    )
    assert case.status is CaseStatus.RESOLVED
    # when a person closes it as anything else, then it is refused
    with pytest.raises(Conflict, match="confirmed cancelled, not denied") as raised:
        case.close(Outcome.DENIED, root_cause="late", at=NOW, actor="agent:bob")
    assert raised.value.code == "outcome_not_verified"
    # and on the verified outcome it closes, keeping the source's close time
    case.close(Outcome.CANCELLED, root_cause="changed_mind", at=NOW, actor="agent:bob")
    assert (case.status, case.closed_at, case.root_cause) == (
        CaseStatus.CLOSED,
        at(5),
        "changed_mind",
    )
    # and closing it again is refused
    with pytest.raises(InvalidTransition, match="already closed"):
        case.close(Outcome.CANCELLED, root_cause="late", at=NOW, actor="agent:bob")


def test_a_closed_case_root_cause_is_corrected_on_the_timeline():
    # given a closed case
    case = open_case()
    case.close(Outcome.DENIED, root_cause="late", at=NOW, actor="agent:bob")
    case.pending.clear()
    # when the lead corrects its root cause
    case.set_root_cause("changed_mind", at=NOW, actor="lead:ann")
    # then it has the new one, and the timeline says from what to what, and who
    assert case.root_cause == "changed_mind"
    (row,) = case.pending
    assert (row.kind, row.actor, row.detail) == (
        "root_cause",
        "lead:ann",
        {"from": "late", "to": "changed_mind"},
    )


def test_only_a_closed_case_has_its_root_cause_corrected():
    with pytest.raises(InvalidTransition, match="only a closed case"):
        open_case().set_root_cause("late", at=NOW, actor="lead:ann")


# --- reopening on contradiction -------------------------------------------------------------------


def test_a_hold_placed_again_after_its_release_reopens_the_case():
    # given a fraud hold placed, released, then placed again
    events = [placed(), hold(1, "shopify:h1"), release(5, "shopify:r1"), hold(9, "shopify:h2")]
    # when the history is folded
    _, episodes = fold(REF, events)
    # then one episode holds all three events, open again, reopened by the second hold
    (episode,) = episodes
    assert episode.is_open
    assert episode.event_ids == ["shopify:h1", "shopify:r1", "shopify:h2"]
    assert [stamp[0] for stamp in episode.reopened] == ["shopify:h2"]
    assert (episode.outcome, episode.root_cause) == (None, None)
    # and a second release closes it again
    _, episodes = fold(REF, [*events, release(12, "shopify:r2")])
    assert [(ep.outcome, ep.closed_by) for ep in episodes] == [(Outcome.RELEASED, "shopify:r2")]


def test_the_stored_closed_case_reopens_naming_the_event():
    # given a fraud hold case closed as released, stored
    events = [placed(), hold(1, "shopify:h1"), release(5, "shopify:r1")]
    (case,) = sync_cases(REF, fold(REF, events)[1], [], at=NOW)
    assert case.status is CaseStatus.CLOSED
    case.pending.clear()
    case.clocks = {"first_touch": stopped_clock()}
    # when the same hold is placed again and the order's events are folded on the stored case
    order, _ = fold(REF, events)
    episodes = [Episode.of_case(case)]
    step(order, episodes, hold(9, "shopify:h2"))
    created = sync_cases(REF, episodes, [case], at=NOW)
    # then no second case opens: the closed one is back in its queue, without outcome
    assert created == []
    assert (case.status, case.outcome, case.closed_at, case.root_cause) == (
        CaseStatus.TRIAGED,
        None,
        None,
        None,
    )
    # and the timeline names the event that contradicted the release, and what it undid
    reopened = next(row for row in case.pending if row.kind == "reopened")
    assert reopened.event_id == "shopify:h2"
    assert reopened.detail["outcome"] == "released"
    assert reopened.detail["root_cause"] == "fraud_screening_false_positive"
    assert "hold.placed (shopify:h2) contradicts released" in reopened.detail["reason"]
    # and its stopped clocks are dropped, to start again at its next triage
    assert case.clocks == {}


def stopped_clock() -> SlaClock:
    clock = SlaClock.start(
        ClockName.FIRST_TOUCH,
        at=at(1),
        target=timedelta(hours=1),
        business=False,
        pausable=True,
        calendar=_Wall(),
    )
    clock.stop(at(5), _Wall())
    return clock


class _Wall:
    def add(self, start: datetime, duration: timedelta) -> datetime:
        return start + duration

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        return end - start


def test_a_touched_case_reopens_in_progress():
    # given a case someone worked on before the source closed it
    events = [placed(), hold(1, "shopify:h1")]
    (case,) = sync_cases(REF, fold(REF, events)[1], [], at=NOW)
    case.touch(at=at(2), actor="agent:bob")
    closed = [*events, release(5, "shopify:r1")]
    sync_cases(REF, fold(REF, closed)[1], [case], at=NOW)
    assert case.status is CaseStatus.CLOSED
    case.clocks = {"first_touch": stopped_clock(), "resolution": stopped_clock()}
    # when the hold comes back
    sync_cases(REF, fold(REF, [*closed, hold(9, "shopify:h2")])[1], [case], at=NOW)
    # then the case is back in progress; its first touch stays answered, the resolution clock
    # starts again (at its next triage)
    assert case.status is CaseStatus.IN_PROGRESS
    assert list(case.clocks) == ["first_touch"]


def test_a_delivery_exception_after_delivery_reopens_the_delivery_case():
    events = [
        placed(),
        ev("wms:s1", "fulfillment.shipped", 1, tracking="1Z"),
        ev("carrier:x1", "delivery.exception", 2, kind="delay"),
        ev("carrier:d1", "fulfillment.delivered", 5),
        ev("carrier:x2", "delivery.exception", 9, kind="damaged"),
    ]
    _, episodes = fold(REF, events)
    (episode,) = [ep for ep in episodes if ep.category is Category.DELIVERY_EXCEPTION]
    assert episode.is_open
    assert [stamp[0] for stamp in episode.reopened] == ["carrier:x2"]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [
                ev("psp:f1", "payment.failed", 1),
                ev("psp:a1", "payment.authorized", 2),
                ev("psp:f2", "payment.failed", 3),
            ],
            [("psp:f1", Outcome.RELEASED), ("psp:f2", None)],
            id="a-new-payment-failure-is-a-new-attempt",
        ),
        pytest.param(
            [
                hold(1, "shopify:h1"),
                release(2, "shopify:r1"),
                ev("shopify:c", "order.cancelled", 3, reason="stockout"),
                hold(4, "shopify:h2"),
            ],
            [("shopify:h1", Outcome.RELEASED), ("shopify:h2", Outcome.CANCELLED)],
            id="a-hold-on-a-cancelled-order-contradicts-nothing",
        ),
        pytest.param(
            [
                hold(1, "shopify:h1", "address"),
                release(2, "shopify:r1", "address"),
                hold(3, "shopify:h2", "fraud"),
            ],
            [("shopify:h1", Outcome.RELEASED), ("shopify:h2", None)],
            id="a-hold-of-another-type-is-another-case",
        ),
        pytest.param(
            [
                ev("carrier:x1", "delivery.exception", 1, kind="delay"),
                ev("wms:ret", "return.received", 2),
                ev("carrier:x2", "delivery.exception", 3, kind="lost"),
            ],
            [("carrier:x1", Outcome.RETURNED), ("carrier:x2", None)],
            id="only-delivered-is-undone-by-a-delivery-exception",
        ),
    ],
)
def test_what_opens_a_new_case_instead_of_reopening(events, expected):
    _, episodes = fold(REF, [placed(), *events])
    found = [(ep.opened_by, ep.outcome) for ep in episodes if ep.category != Category.DRIFT]
    assert found == expected
    assert not any(ep.reopened for ep in episodes)


def test_a_cancelled_order_that_ships_is_a_drift_case_and_the_closed_cases_stay_closed():
    # given a cancel request closed by the cancellation, then the warehouse ships anyway
    events = [
        placed(),
        ev("helpdesk:ask", "cancel.requested", 1, requested_by="customer"),
        ev("netsuite:c", "order.cancelled", 2, reason="customer_request"),
        ev("wms:s1", "fulfillment.shipped", 3, tracking="1Z"),
    ]
    _, episodes = fold(REF, events)
    # then the contradiction is the drift rule's own case; the cancel request keeps its outcome
    summary = [(ep.category, ep.rule, ep.outcome) for ep in episodes]
    assert summary == [
        (Category.CHANGE_REQUEST, "", Outcome.CANCELLED),
        (Category.DRIFT, "cancelled_but_shipped", None),
    ]


# --- order independence: the desk's incremental path ----------------------------------------------


def ingest_one_by_one(arrival: Iterable[CanonicalEvent], rules: Rules | None = None) -> list[Case]:
    """What intake does, one event per batch, with every stored case of the order read back
    for the fast path (closed ones too: an event may reopen one); a late event refolds the
    whole history. Triage moves a new case to ``triaged``."""
    history: list[CanonicalEvent] = []
    cases: list[Case] = []
    snapshot: dict[str, Any] | None = None
    for event in arrival:
        if event.id in {e.id for e in history}:
            continue
        history.append(event)
        order = order_from_dict(snapshot) if snapshot else OrderView(ref=REF)
        if order.accepts_in_order(event):
            episodes = [Episode.of_case(case) for case in cases]
            step(order, episodes, event, rules)
        else:
            order, episodes = fold(REF, history, rules)
        cases += sync_cases(REF, episodes, cases, at=NOW)
        for case in cases:
            if case.status is CaseStatus.NEW:
                case.move_to(CaseStatus.TRIAGED, at=NOW, actor="triage")
        snapshot = order_to_dict(order)
    return cases


def summary(cases: list[Case]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            str(c.category),
            c.opened_by,
            c.status.value,
            c.outcome and c.outcome.value,
            c.closed_at,
            c.root_cause,
            tuple(sorted(c.event_ids)),
        )
        for c in cases
    )


REOPENING = [
    pytest.param(
        [placed(), hold(1, "shopify:h1"), release(5, "shopify:r1"), hold(9, "shopify:h2")],
        id="hold-placed-released-placed",
    ),
    pytest.param(
        [
            placed(),
            hold(1, "shopify:h1"),
            release(5, "shopify:r1"),
            hold(9, "shopify:h2"),
            release(12, "shopify:r2"),
        ],
        id="hold-placed-released-placed-released",
    ),
    pytest.param(
        [
            placed(),
            ev("wms:s1", "fulfillment.shipped", 1, tracking="1Z"),
            ev("carrier:x1", "delivery.exception", 2, kind="delay"),
            ev("carrier:d1", "fulfillment.delivered", 5),
            ev("carrier:x2", "delivery.exception", 9, kind="damaged"),
        ],
        id="delivered-then-damaged",
    ),
]


@pytest.mark.parametrize("events", REOPENING)
def test_any_arrival_order_gives_the_same_reopened_cases(events):
    # given a stream with a contradiction ingested in time order, one event at a time
    reference = summary(ingest_one_by_one(events))
    assert len([row for row in reference if row[0] != "drift"]) == 1
    # when it arrives in every other order (and with a duplicate)
    for arrival in itertools.permutations(events):
        cases = ingest_one_by_one([*arrival, arrival[0]])
        # then the cases are the same: one case, same status, outcome, root cause and events
        assert summary(cases) == reference, [e.id for e in arrival]


def test_the_root_cause_does_not_depend_on_arrival_with_a_merchant_list():
    rules = Rules([ANYTHING])
    events = REOPENING[1].values[0]
    reference = summary(ingest_one_by_one(events, rules))
    assert [row[5] for row in reference] == ["other"]
    for arrival in itertools.permutations(events):
        assert summary(ingest_one_by_one(arrival, rules)) == reference


def test_policy_defaults_are_the_domain_defaults():
    assert tuple(c.as_root_cause() for c in Policy().root_causes) == DEFAULT_ROOT_CAUSES
