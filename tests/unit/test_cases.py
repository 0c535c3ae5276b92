"""The case state machine and the casebook (how events open, join and close cases)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from recoverydesk.domain.casebook import Episode, fold, opening_category, sync_cases
from recoverydesk.domain.cases import (
    TRANSITIONS,
    Case,
    CaseStatus,
    Category,
    Outcome,
    ReasonCode,
)
from recoverydesk.domain.errors import InvalidTransition
from recoverydesk.domain.events import (
    CanonicalEvent,
    EventSource,
    EventType,
    HoldType,
    LineFacts,
    OrderFacts,
)

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
REF = "1001"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(
    kind: str,
    minute: float,
    *,
    eid: str | None = None,
    data: dict[str, Any] | None = None,
    **facts: Any,
) -> CanonicalEvent:
    return CanonicalEvent(
        id=eid or f"{kind}@{minute}",
        source=EventSource.SHOPIFY,
        type=EventType(kind),
        occurred_at=at(minute),
        order=OrderFacts(ref=REF, **facts),
        data=data or {},
    )


def new_case(status: CaseStatus = CaseStatus.NEW) -> Case:
    case = Case.open(
        order_ref=REF,
        category=Category.PAYMENT_FAILED,
        opened_at=at(0),
        opened_by="psp:pf1",
        hold_type=None,
        recorded_at=NOW,
    )
    case.id = 7
    case.status = status
    case.pending.clear()
    return case


def stored(cases: list[Case]) -> list[Case]:
    """What the case store does after a save: ids assigned, pending timeline rows written."""
    for n, case in enumerate(cases, start=1):
        case.id = case.id or n
        case.pending.clear()
        case.dirty = False
    return cases


def cases_for(events: list[CanonicalEvent], existing: list[Case] | None = None) -> list[Case]:
    """Fold events and sync the stored cases; returns every case (existing first)."""
    _, episodes = fold(REF, events)
    existing = existing or []
    return existing + sync_cases(REF, episodes, existing, at=NOW)


def only(episodes: list[Episode], category: Category) -> list[Episode]:
    return [ep for ep in episodes if ep.category is category]


# --- the state machine ---------------------------------------------------------------------------

ALLOWED = [(src, dst) for src, targets in TRANSITIONS.items() for dst in sorted(targets)]
FORBIDDEN = [
    (src, dst)
    for src, dst in itertools.product(CaseStatus, CaseStatus)
    if dst not in TRANSITIONS[src]
]


def test_the_table_covers_every_status_and_forbids_some_moves():
    # given the transition table
    # then every status has an entry, closed cases can only be reopened (back to work, or
    # back to the queue when nobody touched them), and new cases cannot wait on anyone before
    # triage
    assert set(TRANSITIONS) == set(CaseStatus)
    assert TRANSITIONS[CaseStatus.CLOSED] == {CaseStatus.IN_PROGRESS, CaseStatus.TRIAGED}
    assert CaseStatus.WAITING_CUSTOMER not in TRANSITIONS[CaseStatus.NEW]
    assert len(FORBIDDEN) > 20


@pytest.mark.parametrize(("src", "dst"), ALLOWED, ids=[f"{s}->{d}" for s, d in ALLOWED])
def test_every_allowed_transition_works_and_is_on_the_timeline(src, dst):
    # given a case in status src
    case = new_case(src)
    # when it moves to dst
    case.move_to(dst, at=NOW, actor="agent:ann", note="because")
    # then it is in dst and the timeline says who moved it from where
    assert case.status is dst
    entry = case.pending[-1]
    assert (entry.kind, entry.actor, entry.at) == ("status_changed", "agent:ann", NOW)
    assert entry.detail == {"from": src.value, "to": dst.value, "note": "because"}
    assert case.dirty


@pytest.mark.parametrize(("src", "dst"), FORBIDDEN, ids=[f"{s}->{d}" for s, d in FORBIDDEN])
def test_a_forbidden_transition_raises_and_changes_nothing(src, dst):
    # given a case in status src
    case = new_case(src)
    # when it is asked to move to dst
    with pytest.raises(InvalidTransition, match=f"from {src.value} to {dst.value}"):
        case.move_to(dst, at=NOW, actor="agent:ann")
    # then it stays where it was and nothing is recorded
    assert case.status is src
    assert case.pending == []


def test_opening_a_case_records_the_opener():
    # given a case opened by a payment failure
    case = Case.open(
        order_ref=REF,
        category=Category.PAYMENT_FAILED,
        opened_at=at(1),
        opened_by="psp:pf1",
        hold_type=None,
        recorded_at=NOW,
    )
    # then it is new, lists its opener, and has an "opened" row
    assert case.status is CaseStatus.NEW
    assert case.is_open
    assert case.event_ids == ["psp:pf1"]
    assert [(e.kind, e.event_id, e.at) for e in case.pending] == [("opened", "psp:pf1", NOW)]
    assert case.pending[0].detail["category"] == "payment_failed"


def test_attaching_an_event_twice_records_it_once():
    # given an open case
    case = new_case()
    # when the same event is attached twice
    case.attach("psp:pf2", "payment.failed", at(2), NOW)
    case.attach("psp:pf2", "payment.failed", at(2), NOW)
    # then it is listed and recorded once
    assert case.event_ids == ["psp:pf1", "psp:pf2"]
    assert [e.event_id for e in case.pending if e.kind == "event"] == ["psp:pf2"]


def test_confirm_outcome_resolves_then_closes_with_timeline_rows():
    # given an open case
    case = new_case(CaseStatus.IN_PROGRESS)
    # when the source confirms it was released
    case.confirm_outcome(
        Outcome.RELEASED,
        reason_code=None,
        confirmed_at=at(5),
        event_id="psp:cap",
        at=NOW,
        root_cause="customer_card_declined",
    )
    # then it is closed with outcome and time
    assert case.status is CaseStatus.CLOSED
    assert not case.is_open
    assert (case.outcome, case.closed_at, case.reason_code) == (Outcome.RELEASED, at(5), None)
    # and the timeline shows resolved, the outcome, then closed
    rows = [(e.kind, e.detail.get("to"), e.detail.get("outcome")) for e in case.pending]
    assert rows == [
        ("status_changed", "resolved", None),
        ("outcome", None, "released"),
        ("status_changed", "closed", None),
    ]
    assert case.pending[1].event_id == "psp:cap"


def test_confirming_the_same_outcome_again_changes_nothing():
    # given a case closed as cancelled for stockout
    case = new_case()
    case.confirm_outcome(
        Outcome.CANCELLED,
        reason_code=ReasonCode.STOCKOUT,
        confirmed_at=at(5),
        event_id="shopify:c",
        at=NOW,
        root_cause="inventory_sync_lag",
    )
    case.pending.clear()
    # when the same confirmation comes again
    case.confirm_outcome(
        Outcome.CANCELLED,
        reason_code=ReasonCode.STOCKOUT,
        confirmed_at=at(5),
        event_id="shopify:c",
        at=NOW,
        root_cause="inventory_sync_lag",
    )
    # then nothing is recorded
    assert case.pending == []
    assert case.reason_code is ReasonCode.STOCKOUT


def test_a_closed_case_can_be_reopened_and_forgets_its_outcome():
    # given a closed case
    case = new_case()
    case.confirm_outcome(
        Outcome.RELEASED,
        reason_code=None,
        confirmed_at=at(5),
        event_id="psp:cap",
        at=NOW,
        root_cause="customer_card_declined",
    )
    # when an agent reopens it
    case.reopen(at=NOW, actor="agent:ann", reason="customer says still charged")
    # then it is in progress, without outcome, and the reason is on the timeline
    assert case.status is CaseStatus.IN_PROGRESS
    assert (case.outcome, case.reason_code, case.closed_at) == (None, None, None)
    last = case.pending[-1]
    assert (last.actor, last.detail) == (
        "agent:ann",
        {"from": "closed", "to": "in_progress", "note": "customer says still charged"},
    )


def test_reopening_an_open_case_is_refused():
    # given an open case
    case = new_case(CaseStatus.TRIAGED)
    # when it is reopened
    with pytest.raises(InvalidTransition, match="already open"):
        case.reopen(at=NOW, actor="agent:ann", reason="oops")
    # then it is unchanged
    assert case.status is CaseStatus.TRIAGED


# --- openers -------------------------------------------------------------------------------------

OPENERS = [
    ("payment.failed", {}, Category.PAYMENT_FAILED),
    ("address.invalid", {}, Category.ADDRESS_INVALID),
    ("inventory.short", {"sku": "A", "available": 0}, Category.INVENTORY_MISMATCH),
    ("cancel.requested", {"requested_by": "customer"}, Category.CHANGE_REQUEST),
    ("change.requested", {"change": "swap"}, Category.CHANGE_REQUEST),
    ("delivery.exception", {"kind": "damaged"}, Category.DELIVERY_EXCEPTION),
    ("dispute.opened", {"amount": "129.00", "reason": "fraudulent"}, Category.CHARGEBACK),
    ("fulfillment.ship_by_missed", {}, Category.LATE_SHIPMENT_RISK),
]

HOLDS = [
    ("fraud", Category.FRAUD_HOLD),
    ("address", Category.ADDRESS_INVALID),
    ("payment", Category.PAYMENT_FAILED),
    ("inventory", Category.INVENTORY_MISMATCH),
    ("warehouse", Category.WMS_EXCEPTION),
    ("customer_request", Category.CHANGE_REQUEST),
]


@pytest.mark.parametrize(("kind", "data", "category"), OPENERS, ids=[o[0] for o in OPENERS])
def test_each_opener_opens_a_case_of_its_category(kind, data, category):
    # given a placed order and one exception event
    opener = ev(kind, 5, data=data)
    # when the order's events are folded
    _, episodes = fold(REF, [ev("order.placed", 0), opener])
    # then exactly one open case of the category exists, opened by that event
    assert opening_category(opener) is category
    assert [(ep.category, ep.opened_by, ep.opened_at, ep.is_open) for ep in episodes] == [
        (category, opener.id, at(5), True)
    ]


@pytest.mark.parametrize(("hold_type", "category"), HOLDS, ids=[h[0] for h in HOLDS])
def test_each_hold_type_opens_its_category(hold_type, category):
    # given a hold of this type
    hold = ev("hold.placed", 5, data={"hold_type": hold_type})
    # when folded
    _, episodes = fold(REF, [hold])
    # then a case of the matching category is open, and it remembers the hold type
    assert [(ep.category, ep.hold_type, ep.is_open) for ep in episodes] == [
        (category, hold_type, True)
    ]


def test_every_hold_type_is_mapped():
    # given the hold types of the taxonomy
    # then each one opens a case
    for hold_type in HoldType:
        assert opening_category(ev("hold.placed", 1, data={"hold_type": hold_type.value}))


@pytest.mark.parametrize(
    "kind",
    [
        "order.placed",
        "order.updated",
        "payment.authorized",
        "fulfillment.packed",
        "ticket.created",
        "customer.replied",
    ],
)
def test_ordinary_events_open_nothing(kind):
    # given an ordinary event
    # when folded
    _, episodes = fold(REF, [ev(kind, 1)])
    # then no case opens
    assert episodes == []


def test_a_second_failure_joins_the_open_payment_case():
    # given two payment failures and a payment hold, nothing in between
    events = [
        ev("payment.failed", 1, eid="psp:pf1"),
        ev("payment.failed", 2, eid="shopify:pf2"),
        ev("hold.placed", 3, eid="shopify:hold", data={"hold_type": "payment"}),
    ]
    # when folded and synced
    cases = cases_for(events)
    # then there is one payment case holding all three events
    assert len(cases) == 1
    assert (cases[0].category, cases[0].opened_by) == (Category.PAYMENT_FAILED, "psp:pf1")
    assert cases[0].event_ids == ["psp:pf1", "shopify:pf2", "shopify:hold"]


def test_cases_of_different_categories_are_separate():
    # given a payment failure and a fraud hold on the same order
    _, episodes = fold(
        REF, [ev("payment.failed", 1), ev("hold.placed", 2, data={"hold_type": "fraud"})]
    )
    # then there are two cases
    assert sorted(ep.category for ep in episodes) == [Category.FRAUD_HOLD, Category.PAYMENT_FAILED]


# --- closers -------------------------------------------------------------------------------------


def closed(episode: Episode) -> tuple[Any, ...]:
    return (episode.outcome, episode.reason_code, episode.closed_at, episode.closed_by)


@pytest.mark.parametrize("kind", ["payment.captured", "payment.authorized"])
def test_a_recovered_payment_releases_the_payment_case(kind):
    # given a payment failure, then a successful capture (or authorization)
    _, episodes = fold(REF, [ev("payment.failed", 1), ev(kind, 2, eid="psp:ok")])
    # then the case is closed as released by that event
    assert [closed(ep) for ep in episodes] == [(Outcome.RELEASED, None, at(2), "psp:ok")]
    assert episodes[0].event_ids == ["payment.failed@1", "psp:ok"]


def test_a_failure_after_recovery_opens_a_new_case():
    # given failure, capture, failure again
    cases = cases_for([ev("payment.failed", 1), ev("payment.captured", 2), ev("payment.failed", 3)])
    # then the first case is closed and a second one is open
    assert [(c.opened_by, c.status, c.outcome) for c in cases] == [
        ("payment.failed@1", CaseStatus.CLOSED, Outcome.RELEASED),
        ("payment.failed@3", CaseStatus.NEW, None),
    ]


def test_a_hold_release_of_that_type_closes_only_that_case():
    # given a fraud hold and an address hold, and the fraud hold released
    _, episodes = fold(
        REF,
        [
            ev("hold.placed", 1, data={"hold_type": "fraud"}),
            ev("hold.placed", 2, data={"hold_type": "address"}),
            ev("hold.released", 3, data={"hold_type": "fraud"}),
        ],
    )
    # then the fraud case is released and the address case is still open
    (fraud,) = only(episodes, Category.FRAUD_HOLD)
    (address,) = only(episodes, Category.ADDRESS_INVALID)
    assert closed(fraud) == (Outcome.RELEASED, None, at(3), "hold.released@3")
    assert address.is_open


def test_a_hold_release_without_a_type_closes_every_hold_case():
    # given a fraud hold, a warehouse hold and a dispute
    _, episodes = fold(
        REF,
        [
            ev("hold.placed", 1, data={"hold_type": "fraud"}),
            ev("hold.placed", 2, data={"hold_type": "warehouse"}),
            ev("dispute.opened", 3, data={"amount": "5"}),
            ev("hold.released", 4),
        ],
    )
    # then both hold cases are released; the chargeback stays open
    outcomes = {ep.category: ep.outcome for ep in episodes}
    assert outcomes == {
        Category.FRAUD_HOLD: Outcome.RELEASED,
        Category.WMS_EXCEPTION: Outcome.RELEASED,
        Category.CHARGEBACK: None,
    }


def test_shipping_closes_pre_fulfilment_cases_but_not_change_requests():
    # given an address problem, a late-shipment risk and a change request, then a shipment
    _, episodes = fold(
        REF,
        [
            ev("address.invalid", 1),
            ev("fulfillment.ship_by_missed", 2),
            ev("change.requested", 3, data={"change": "edit"}),
            ev("fulfillment.shipped", 4, eid="wms:ship"),
        ],
    )
    # then the address and late-shipment cases are closed as shipped, the change request is not
    outcomes = {ep.category: (ep.outcome, ep.closed_by) for ep in episodes}
    assert outcomes == {
        Category.ADDRESS_INVALID: (Outcome.SHIPPED, "wms:ship"),
        Category.LATE_SHIPMENT_RISK: (Outcome.SHIPPED, "wms:ship"),
        Category.CHANGE_REQUEST: (None, None),
    }


def test_delivery_closes_a_delivery_exception_and_shipping_does_not():
    # given a delivery exception, another shipment, then the delivery
    events = [
        ev("fulfillment.shipped", 1),
        ev("delivery.exception", 2, data={"kind": "delay"}),
        ev("fulfillment.shipped", 3, eid="carrier:reship"),
    ]
    _, before = fold(REF, events)
    assert before[0].is_open
    _, after = fold(REF, [*events, ev("fulfillment.delivered", 4)])
    # then the exception is closed as delivered at the delivery time
    assert closed(after[0]) == (Outcome.DELIVERED, None, at(4), "fulfillment.delivered@4")


def test_a_received_return_closes_a_delivery_exception_as_returned():
    # given a lost parcel that came back
    _, episodes = fold(
        REF,
        [
            ev("delivery.exception", 1, data={"kind": "returned_to_sender"}),
            ev("return.received", 2),
        ],
    )
    # then the case is closed as returned
    assert closed(episodes[0]) == (Outcome.RETURNED, None, at(2), "return.received@2")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"reason_code": "stockout"}, ReasonCode.STOCKOUT),
        ({"reason": "payment_declined"}, ReasonCode.PAYMENT_DECLINED),
        ({"reason": "the customer changed their mind"}, ReasonCode.OTHER),
    ],
)
def test_a_cancelled_order_closes_its_pre_fulfilment_cases_with_a_reason_code(data, reason):
    # given an inventory shortage, a cancel request and a chargeback, then the order cancelled
    _, episodes = fold(
        REF,
        [
            ev("inventory.short", 1, data={"sku": "A"}),
            ev("cancel.requested", 2, data={"requested_by": "customer"}),
            ev("dispute.opened", 3, data={"amount": "5"}),
            ev("order.cancelled", 4, data=data),
        ],
    )
    # then the pre-fulfilment cases are cancelled with that reason; the chargeback stays open
    result = {ep.category: (ep.outcome, ep.reason_code, ep.closed_at) for ep in episodes}
    assert result == {
        Category.INVENTORY_MISMATCH: (Outcome.CANCELLED, reason, at(4)),
        Category.CHANGE_REQUEST: (Outcome.CANCELLED, reason, at(4)),
        Category.CHARGEBACK: (None, None, None),
    }


def test_cancelling_some_lines_closes_nothing():
    # given an inventory shortage and a cancel of the short line only
    _, episodes = fold(
        REF,
        [
            ev("order.placed", 0, lines=(LineFacts("A"), LineFacts("B"))),
            ev("inventory.short", 1, data={"sku": "A"}),
            ev("order.cancelled", 2, data={"lines": [{"sku": "A"}]}),
        ],
    )
    # then the inventory case is still open
    assert episodes[0].is_open


def test_an_exception_raised_after_shipping_is_settled_at_once():
    # given a shipped order, then a (stale) address problem
    _, episodes = fold(
        REF, [ev("fulfillment.shipped", 1), ev("address.invalid", 2, eid="carrier:addr")]
    )
    # then the case is opened and closed as shipped by the same event
    assert closed(episodes[0]) == (Outcome.SHIPPED, None, at(2), "carrier:addr")


def test_an_exception_raised_after_a_cancel_is_settled_as_cancelled():
    # given an order cancelled for fraud, then a fraud hold
    _, episodes = fold(
        REF,
        [
            ev("order.cancelled", 1, data={"reason": "fraud"}),
            ev("hold.placed", 2, eid="shopify:hold", data={"hold_type": "fraud"}),
        ],
    )
    # then the case is closed as cancelled for fraud, at once
    assert closed(episodes[0]) == (Outcome.CANCELLED, ReasonCode.FRAUD, at(2), "shopify:hold")


def test_a_settled_case_takes_the_reason_code_of_the_cancel():
    # given an order cancelled with reason code fraud (as closures() reads it), then a fraud hold
    _, episodes = fold(
        REF,
        [
            ev("order.cancelled", 1, data={"reason_code": "fraud"}),
            ev("hold.placed", 2, data={"hold_type": "fraud"}),
        ],
    )
    # then the case gets the same reason code a case open at the cancel would have got
    assert (episodes[0].outcome, episodes[0].reason_code) == (Outcome.CANCELLED, ReasonCode.FRAUD)


# --- sync with stored cases ----------------------------------------------------------------------


def test_sync_opens_cases_with_their_events_and_outcome():
    # given a failure recovered, folded for the first time
    cases = cases_for(
        [ev("payment.failed", 1, eid="psp:pf1"), ev("payment.captured", 2, eid="psp:cap")]
    )
    # then one closed case exists with both events and the opened/outcome rows
    (case,) = cases
    assert (case.status, case.outcome, case.closed_at) == (
        CaseStatus.CLOSED,
        Outcome.RELEASED,
        at(2),
    )
    assert case.event_ids == ["psp:pf1", "psp:cap"]
    kinds = [e.kind for e in case.pending]
    assert kinds[0] == "opened"
    assert "outcome" in kinds


def test_syncing_the_same_history_again_changes_nothing():
    # given the cases of a history, stored
    events = [
        ev("payment.failed", 1),
        ev("hold.placed", 2, data={"hold_type": "fraud"}),
        ev("hold.released", 3, data={"hold_type": "fraud"}),
    ]
    existing = stored(cases_for(events))
    # when the same history is folded and synced again
    created = sync_cases(REF, fold(REF, events)[1], existing, at=NOW)
    # then nothing is created or recorded
    assert created == []
    assert [c.pending for c in existing] == [[], []]


def test_a_late_earlier_opener_rekeys_the_existing_case():
    # given a case opened by a failure at minute 5
    existing = stored(cases_for([ev("payment.failed", 5, eid="psp:pf2")]))
    # when an earlier failure, at minute 1, arrives late and the history is refolded
    everything = cases_for(
        [ev("payment.failed", 5, eid="psp:pf2"), ev("payment.failed", 1, eid="psp:pf1")], existing
    )
    # then no second case is opened; the existing one now starts with the earlier failure
    assert len(everything) == 1
    case = everything[0]
    assert (case.opened_by, case.opened_at) == ("psp:pf1", at(1))
    assert case.event_ids == ["psp:pf1", "psp:pf2"]
    assert [e.kind for e in case.pending] == ["reopened_earlier"]
    assert case.pending[0].detail["previous_opened_by"] == "psp:pf2"


def test_a_late_closer_splits_the_case_in_two():
    # given one open case holding failures at minutes 1 and 5
    existing = stored(
        cases_for([ev("payment.failed", 1, eid="psp:pf1"), ev("payment.failed", 5, eid="psp:pf2")])
    )
    # when a capture at minute 3 arrives late
    everything = cases_for(
        [
            ev("payment.failed", 1, eid="psp:pf1"),
            ev("payment.captured", 3, eid="psp:cap"),
            ev("payment.failed", 5, eid="psp:pf2"),
        ],
        existing,
    )
    # then the first case is closed at minute 3 and a second case is opened by the later failure
    first, second = everything
    assert (first.opened_by, first.status, first.outcome, first.closed_at) == (
        "psp:pf1",
        CaseStatus.CLOSED,
        Outcome.RELEASED,
        at(3),
    )
    assert (second.id, second.opened_by, second.opened_at, second.status) == (
        None,
        "psp:pf2",
        at(5),
        CaseStatus.NEW,
    )
    assert second.event_ids == ["psp:pf2"]


def test_after_a_split_the_closed_case_no_longer_lists_the_moved_event():
    # given one open case holding failures at minutes 1 and 5
    existing = stored(
        cases_for([ev("payment.failed", 1, eid="psp:pf1"), ev("payment.failed", 5, eid="psp:pf2")])
    )
    # when a capture at minute 3 arrives late
    first, _ = cases_for(
        [
            ev("payment.failed", 1, eid="psp:pf1"),
            ev("payment.captured", 3, eid="psp:cap"),
            ev("payment.failed", 5, eid="psp:pf2"),
        ],
        existing,
    )
    # then the first case holds what it would hold had the events come in order
    assert first.event_ids == ["psp:pf1", "psp:cap"]


def test_a_late_closer_before_an_unrelated_opener_opens_the_missing_case():
    # given a case opened at minute 5 (the only failure seen so far)
    existing = stored(cases_for([ev("payment.failed", 5, eid="psp:pf2")]))
    # when an earlier failure and its recovery arrive late
    everything = cases_for(
        [
            ev("payment.failed", 1, eid="psp:pf1"),
            ev("payment.captured", 3, eid="psp:cap"),
            ev("payment.failed", 5, eid="psp:pf2"),
        ],
        existing,
    )
    # then the existing case is untouched and the earlier episode becomes its own closed case
    kept, added = everything
    assert (kept.opened_by, kept.status) == ("psp:pf2", CaseStatus.NEW)
    assert kept.pending == []
    assert (added.opened_by, added.status, added.outcome) == (
        "psp:pf1",
        CaseStatus.CLOSED,
        Outcome.RELEASED,
    )
