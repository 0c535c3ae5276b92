"""Drift detection (F3), domain level: the rules that notice contradictions between systems.

State rules run inside the fold, timed rules through due checks and the desk's ``drift.detected``
event; every scenario is in simulated time (minutes after T0), nothing sleeps.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from recoverydesk.domain import drift
from recoverydesk.domain.casebook import Episode, fold, step, sync_cases
from recoverydesk.domain.cases import Case, CaseStatus, Category
from recoverydesk.domain.drift import DriftRule
from recoverydesk.domain.errors import InvalidEvent
from recoverydesk.domain.events import (
    CanonicalEvent,
    EventSource,
    EventType,
    LineFacts,
    OrderFacts,
)
from recoverydesk.domain.orders import OrderView
from recoverydesk.services.canonical import event_to_dict, parse_event
from recoverydesk.services.policy import DriftLimits
from recoverydesk.services.views import order_from_dict, order_to_dict

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
REF = "1001"
HOUR = 60  # minutes


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(
    eid: str, kind: str, minute: float, data: dict[str, Any] | None = None, **facts: Any
) -> CanonicalEvent:
    """An event on order REF; its source is the prefix of its id."""
    return CanonicalEvent(
        id=eid,
        source=EventSource(eid.split(":", 1)[0]),
        type=EventType(kind),
        occurred_at=at(minute),
        order=OrderFacts(ref=REF, **facts),
        data=data or {},
    )


def placed(minute: float = 0, value: str = "80.00", **facts: Any) -> CanonicalEvent:
    return ev(
        "shopify:placed", "order.placed", minute, value=Decimal(value), currency="USD", **facts
    )


def captured(minute: float, amount: str = "80.00", eid: str = "psp:capture") -> CanonicalEvent:
    return ev(eid, "payment.captured", minute, {"amount": amount})


def refunded(
    minute: float, refund_id: str, amount: str = "80.00", *, eid: str = "", intent: str = ""
) -> CanonicalEvent:
    data: dict[str, Any] = {"refund_id": refund_id, "amount": amount}
    if intent:
        data["intent"] = intent
    return ev(eid or f"psp:{refund_id}", "payment.refunded", minute, data)


def cancelled(minute: float, eid: str = "netsuite:c1", **data: Any) -> CanonicalEvent:
    return ev(eid, "order.cancelled", minute, data)


def shipped(minute: float, eid: str = "wms:s1") -> CanonicalEvent:
    return ev(eid, "fulfillment.shipped", minute, {"tracking": "1Z"})


def detected(rule: DriftRule, minute: float, **data: Any) -> CanonicalEvent:
    """The desk event a timed rule's due check raises."""
    body = {"rule": rule.value, "evidence": {"raised_by": "test"}, **data}
    return ev(f"desk:drift:{rule.value}:{minute}", "drift.detected", minute, body)


def drift_cases(events: Iterable[CanonicalEvent]) -> list[tuple[Any, ...]]:
    """The drift episodes the fold gives: rule, opener, evidence, outcome (in opening order)."""
    _, episodes = fold(REF, list(events))
    return [
        (ep.rule, ep.opened_by, ep.data.get("evidence"), ep.outcome and ep.outcome.value)
        for ep in episodes
        if ep.category is Category.DRIFT
    ]


LIMITS = DriftLimits()  # the default policy: holds 48 h (fraud 24 h), ack 2 h, refund 24 h

CANCEL_AND_SHIP = {"cancelled_by": "netsuite:c1", "shipped_by": "wms:s1"}

# --- state rules, in the fold --------------------------------------------------------------------

STATE_RULES = [
    # cancelled_but_shipped
    pytest.param(
        [placed(), cancelled(10), shipped(20)],
        [("cancelled_but_shipped", "wms:s1", CANCEL_AND_SHIP, None)],
        id="cancelled-then-shipped",
    ),
    pytest.param(
        [placed(), shipped(10), cancelled(20)],
        [("cancelled_but_shipped", "netsuite:c1", CANCEL_AND_SHIP, None)],
        id="shipped-then-cancelled",
    ),
    pytest.param(
        [placed(), ev("carrier:d1", "fulfillment.delivered", 10), cancelled(20)],
        [
            (
                "cancelled_but_shipped",
                "netsuite:c1",
                {"cancelled_by": "netsuite:c1", "shipped_by": "carrier:d1"},
                None,
            )
        ],
        id="delivered-without-a-shipped-event-then-cancelled",
    ),
    pytest.param([placed(), cancelled(10)], [], id="no-drift-cancelled-only"),
    pytest.param([placed(), shipped(10)], [], id="no-drift-shipped-only"),
    pytest.param(
        [
            placed(lines=(LineFacts("A", 1), LineFacts("B", 1))),
            cancelled(10, lines=[{"sku": "A"}]),
            shipped(20),
        ],
        [],
        id="no-drift-some-lines-cancelled",
    ),
    # refund_while_shipped (refund leakage)
    pytest.param(
        [placed(), captured(1), shipped(10), refunded(20, "r-1")],
        [
            (
                "refund_while_shipped",
                "psp:r-1",
                {"refunded_by": "psp:r-1", "shipped_by": "wms:s1"},
                None,
            )
        ],
        id="full-refund-after-shipment",
    ),
    pytest.param(
        [placed(), captured(1), refunded(10, "r-1"), shipped(20)],
        [
            (
                "refund_while_shipped",
                "wms:s1",
                {"refunded_by": "psp:r-1", "shipped_by": "wms:s1"},
                None,
            )
        ],
        id="shipment-after-a-full-refund",
    ),
    pytest.param(
        [placed(), shipped(10), refunded(20, "r-1")],
        [
            (
                "refund_while_shipped",
                "psp:r-1",
                {"refunded_by": "psp:r-1", "shipped_by": "wms:s1"},
                None,
            )
        ],
        id="no-capture-seen-refund-of-the-order-value",
    ),
    pytest.param(
        [placed(), captured(1), shipped(10), refunded(20, "r-1", "30.00")],
        [],
        id="no-drift-partial-refund-is-a-concession",
    ),
    pytest.param(
        [
            placed(),
            captured(1),
            shipped(10),
            ev("wms:ret", "return.received", 15),
            refunded(20, "r-1"),
        ],
        [],
        id="no-drift-return-received-before-the-refund",
    ),
    pytest.param(
        [
            placed(),
            captured(1),
            shipped(10),
            ev("carrier:rts", "delivery.exception", 15, {"kind": "returned_to_sender"}),
            refunded(20, "r-1"),
        ],
        [],
        id="no-drift-return-in-flight",
    ),
    pytest.param(
        [
            placed(),
            captured(1),
            shipped(10),
            refunded(20, "r-1"),
            ev("wms:ret", "return.received", 30),
        ],
        [
            (
                "refund_while_shipped",
                "psp:r-1",
                {"refunded_by": "psp:r-1", "shipped_by": "wms:s1"},
                "returned",
            )
        ],
        id="closed-when-the-return-arrives",
    ),
    # double_refund
    pytest.param(
        [
            placed(),
            captured(1),
            refunded(10, "r-1", "30.00", intent="cancel-line-a"),
            refunded(20, "r-2", "30.00", intent="cancel-line-a"),
        ],
        [
            (
                "double_refund",
                "psp:r-2",
                {"first_refund": "psp:r-1", "second_refund": "psp:r-2"},
                None,
            )
        ],
        id="two-refunds-for-one-intent",
    ),
    pytest.param(
        [placed(), captured(1), refunded(10, "r-1", "50.00"), refunded(20, "r-2", "50.00")],
        [
            (
                "double_refund",
                "psp:r-2",
                {"first_refund": "psp:r-1", "second_refund": "psp:r-2"},
                None,
            )
        ],
        id="two-refunds-beyond-the-capture",
    ),
    pytest.param(
        [
            placed(),
            captured(1),
            refunded(10, "r-1", eid="shopify:r-1"),
            refunded(11, "r-1", eid="psp:r-1"),
        ],
        [],
        id="no-drift-one-refund-reported-by-two-systems",
    ),
    pytest.param(
        [
            placed(),
            captured(1),
            refunded(10, "r-1", "30.00", intent="line-a"),
            refunded(20, "r-2", "50.00", intent="line-b"),
        ],
        [],
        id="no-drift-two-partial-refunds-within-the-capture",
    ),
]


@pytest.mark.parametrize(("events", "expected"), STATE_RULES)
def test_state_rules_open_drift_cases_from_the_fold(events, expected):
    # given an order's events (listed in time order)
    # when they are folded, in that order and in reverse arrival order
    # then the drift cases name the rule, the opener and the events on both sides
    assert drift_cases(events) == expected
    assert drift_cases(reversed(events)) == expected


def test_one_event_can_open_two_drift_rules_each_its_own_case():
    # given a cancelled order whose payment was fully refunded, and then the warehouse ships
    events = [placed(), captured(1), cancelled(10), refunded(20, "r-1"), shipped(30)]
    # when folded and synced to stored cases
    _, episodes = fold(REF, events)
    cases = sync_cases(REF, episodes, [], at=NOW)
    # then the shipment opened two drift cases, one per rule, both open
    drift_of = [c for c in cases if c.category is Category.DRIFT]
    assert sorted((c.rule, c.opened_by, c.is_open) for c in drift_of) == [
        ("cancelled_but_shipped", "wms:s1", True),
        ("refund_while_shipped", "wms:s1", True),
    ]
    assert all(c.data["rule"] == c.rule for c in drift_of)
    # and syncing the same fold again claims them by rule: nothing new, nothing mixed up
    assert sync_cases(REF, fold(REF, events)[1], cases, at=NOW) == []
    assert sorted(c.rule for c in cases if c.category is Category.DRIFT) == [
        "cancelled_but_shipped",
        "refund_while_shipped",
    ]


def test_other_categories_keep_one_open_case_while_drift_rules_stack():
    # given two payment failures and two drift rules on one order
    events = [
        placed(),
        ev("psp:f1", "payment.failed", 1),
        ev("psp:f2", "payment.failed", 2),
        captured(3),
        cancelled(10),
        refunded(20, "r-1", "50.00"),
        refunded(21, "r-2", "50.00"),
        shipped(30),
    ]
    # when folded
    _, episodes = fold(REF, events)
    # then the failures share one payment case, and each drift rule has its own case
    summary = sorted((ep.category.value, ep.rule) for ep in episodes)
    assert summary == [
        ("drift", "cancelled_but_shipped"),
        ("drift", "double_refund"),
        ("drift", "refund_while_shipped"),
        ("payment_failed", ""),
    ]


def test_a_missed_ship_by_names_its_rule_and_keeps_its_category():
    # given an order still unfulfilled when the desk records its missed ship-by
    events = [placed(), ev("desk:ship-by-missed:1001", "fulfillment.ship_by_missed", 60)]
    # when folded
    _, episodes = fold(REF, events)
    # then it is a late-shipment case (not a drift case) that names the rule in its data
    (episode,) = episodes
    assert (episode.category, episode.rule) == (Category.LATE_SHIPMENT_RISK, "")
    assert episode.data["rule"] == "unfulfilled_past_cutoff"


# --- arrival order: the desk's incremental path with stored snapshots -----------------------------


def ingest_one_by_one(arrival: Iterable[CanonicalEvent]) -> list[Case]:
    """What intake does, one event per batch: the snapshot is stored and read back between
    events, in-order events take the fast path, anything else refolds the whole history."""
    history: list[CanonicalEvent] = []
    cases: list[Case] = []
    snapshot: dict[str, Any] | None = None
    for event in arrival:
        if event.id in {e.id for e in history}:
            continue  # a duplicate delivery is acknowledged and ignored
        history.append(event)
        order = order_from_dict(snapshot) if snapshot else OrderView(ref=REF)
        if order.accepts_in_order(event):
            open_cases = [case for case in cases if case.is_open]
            episodes = [Episode.of_case(case) for case in open_cases]
            step(order, episodes, event)
            cases += sync_cases(REF, episodes, open_cases, at=NOW)
        else:
            order, episodes = fold(REF, history)
            cases += sync_cases(REF, episodes, cases, at=NOW)
        snapshot = order_to_dict(order)
    return cases


def summary(cases: list[Case]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            c.category.value,
            c.rule,
            c.opened_by,
            c.opened_at,
            c.status.value,
            c.outcome and c.outcome.value,
            c.closed_at,
            repr(sorted(c.data.items())),
        )
        for c in cases
    )


ARRIVALS = [
    pytest.param(
        [placed(), cancelled(10), shipped(20), ev("shopify:u", "order.updated", 30)],
        id="cancelled-but-shipped",
    ),
    pytest.param(
        [
            placed(),
            captured(1),
            shipped(10),
            refunded(20, "r-1"),
            ev("wms:ret", "return.received", 30),
        ],
        id="refund-while-shipped-then-returned",
    ),
    pytest.param(
        [
            placed(),
            captured(1),
            refunded(10, "r-1", "50.00", eid="shopify:r-1"),
            refunded(11, "r-1", "50.00"),
            refunded(20, "r-2", "50.00"),
        ],
        id="double-refund",
    ),
    pytest.param(
        [
            placed(),
            ev("shopify:hold", "hold.placed", 1, {"hold_type": "fraud"}),
            ev("shopify:release", "hold.released", 10 * HOUR, {"hold_type": "fraud"}),
            detected(
                DriftRule.HOLD_TOO_OLD, 25 * HOUR, hold_type="fraud", placed_at=at(1).isoformat()
            ),
        ],
        id="hold-released-before-the-due-time-arrives-late",
    ),
]


@pytest.mark.parametrize("events", ARRIVALS)
def test_any_arrival_order_gives_the_same_drift_cases(events):
    # given a stream ingested in time order, one event at a time
    reference = summary(ingest_one_by_one(events))
    assert any(row[0] == "drift" for row in reference)
    # when it arrives in every other order (each event a batch, the snapshot read back between),
    # and with a duplicate delivered again
    for arrival in itertools.permutations(events):
        cases = ingest_one_by_one([*arrival, arrival[0]])
        # then the cases are the same: opener, times, status, outcome and evidence
        assert summary(cases) == reference, [e.id for e in arrival]


def test_an_order_read_back_keeps_its_drift_evidence_and_the_fast_path():
    # given a shipped order stored and read back (the snapshot keeps the drift evidence)
    order = OrderView(ref=REF)
    for event in (placed(), shipped(10)):
        order.apply(event)
    restored = order_from_dict(order_to_dict(order))
    # then the evidence is whole, names the shipment, and a later event takes the fast path
    assert restored.evidence_complete
    assert restored.evidence == order.evidence
    assert restored.accepts_in_order(refunded(20, "r-1"))


def test_an_order_stored_before_evidence_was_kept_is_refolded():
    # given a shipped order whose stored snapshot has no drift evidence (an older snapshot)
    order = OrderView(ref=REF)
    for event in (placed(), shipped(10)):
        order.apply(event)
    doc = order_to_dict(order)
    del doc["evidence"]
    restored = order_from_dict(doc)
    # then a later event takes the refold path, so the rules can name the shipment
    assert not restored.evidence_complete
    assert not restored.accepts_in_order(refunded(20, "r-1"))
    # and an order with nothing a drift rule compares keeps the fast path
    quiet = OrderView(ref=REF)
    quiet.apply(placed())
    quiet_doc = order_to_dict(quiet)
    del quiet_doc["evidence"]
    assert order_from_dict(quiet_doc).accepts_in_order(captured(5))


def test_a_drift_case_a_late_event_shows_never_stood_is_closed_not_removed():
    # given a full refund on a shipped order, and a return scanned before it that arrives late
    ret = ev("wms:ret", "return.received", 15)
    events = [placed(), captured(1), shipped(10), refunded(20, "r-1")]
    # when the desk sees the refund first and the return afterwards
    cases = ingest_one_by_one([*events, ret])
    # then the leakage case it opened is closed (kept for the audit trail), not left open
    (case,) = [c for c in cases if c.category is Category.DRIFT]
    assert (case.rule, case.status, case.outcome) == (
        "refund_while_shipped",
        CaseStatus.CLOSED,
        drift.WITHDRAWN,
    )
    assert any(row.kind == "drift_withdrawn" for row in case.pending)
    # and in time order there never was a contradiction
    assert ingest_one_by_one(sorted([*events, ret], key=lambda e: e.sort_key)) == []


# --- timed rules: due checks ---------------------------------------------------------------------


def checks(events: list[CanonicalEvent]) -> list[tuple[str, datetime, str]]:
    order, _ = fold(REF, events)
    return [(c.rule.value, c.due_at, c.key) for c in drift.due_checks(order, LIMITS)]


HOLD = ev("shopify:hold", "hold.placed", 5, {"hold_type": "fraud"})

DUE_CHECKS = [
    pytest.param(
        [placed(), captured(1), cancelled(10)],
        [
            (
                "captured_on_cancelled",
                at(10 + 24 * HOUR),
                f"drift:captured_on_cancelled:1001:{at(10).isoformat()}",
            )
        ],
        id="captured-then-cancelled",
    ),
    pytest.param(
        [placed(), cancelled(10), captured(30)],
        [
            (
                "captured_on_cancelled",
                at(30 + 24 * HOUR),
                f"drift:captured_on_cancelled:1001:{at(30).isoformat()}",
            )
        ],
        id="captured-after-the-cancel-counts-from-the-capture",
    ),
    pytest.param([placed(), captured(1), cancelled(10), refunded(20, "r-1")], [], id="refunded"),
    pytest.param([placed(), cancelled(10)], [], id="nothing-captured"),
    pytest.param(
        [placed(), ev("helpdesk:cr", "cancel.requested", 10, {"requested_by": "customer"})],
        [
            (
                "cancel_not_acknowledged",
                at(10 + 2 * HOUR),
                f"drift:cancel_not_acknowledged:1001:{at(10).isoformat()}",
            )
        ],
        id="cancel-requested",
    ),
    pytest.param(
        [
            placed(),
            ev("helpdesk:cr", "cancel.requested", 10, {"requested_by": "customer"}),
            ev("wms:ack", "stopship.acknowledged", 20),
        ],
        [],
        id="cancel-acknowledged",
    ),
    pytest.param(
        [placed(), HOLD],
        [("hold_too_old", at(5 + 24 * HOUR), f"drift:hold_too_old:1001:fraud:{at(5).isoformat()}")],
        id="fraud-hold-has-its-own-limit",
    ),
    pytest.param(
        [placed(), ev("shopify:hold", "hold.placed", 5, {"hold_type": "address"})],
        [
            (
                "hold_too_old",
                at(5 + 48 * HOUR),
                f"drift:hold_too_old:1001:address:{at(5).isoformat()}",
            )
        ],
        id="other-holds-take-the-default-limit",
    ),
    pytest.param(
        [placed(), HOLD, ev("shopify:rel", "hold.released", 60, {"hold_type": "fraud"})],
        [],
        id="hold-released",
    ),
    pytest.param([placed(), HOLD, cancelled(60)], [], id="hold-on-a-cancelled-order"),
]


@pytest.mark.parametrize(("events", "expected"), DUE_CHECKS)
def test_due_checks_ask_for_a_timer_per_timed_rule(events, expected):
    # given an order's events
    # when the desk asks which timed rules it needs
    # then each has its due time and a key that the same state always gives again
    assert checks(events) == expected
    assert checks(list(reversed(events))) == expected


ACK = ev("wms:ack", "stopship.acknowledged", 60)
REJECT = ev("wms:rej", "stopship.rejected", 60, {"message": "already packed"})
RELEASED = ev("wms:rel", "fulfillment.released", 5)
REQUEST = ev("helpdesk:cr", "cancel.requested", 10, {"requested_by": "customer"})

RECHECKS = [
    pytest.param(
        DriftRule.CAPTURED_ON_CANCELLED,
        [placed(), captured(1), cancelled(10)],
        {},
        {"cancelled_by": "netsuite:c1", "captured_by": "psp:capture"},
        id="captured-on-cancelled",
    ),
    pytest.param(
        DriftRule.CAPTURED_ON_CANCELLED,
        [placed(), captured(1), cancelled(10), refunded(30, "r-1", "40.00")],
        {},
        {"cancelled_by": "netsuite:c1", "captured_by": "psp:capture"},
        id="captured-on-cancelled-partly-refunded",
    ),
    pytest.param(
        DriftRule.CAPTURED_ON_CANCELLED,
        [placed(), captured(1), cancelled(10), refunded(30, "r-1")],
        {},
        None,
        id="no-drift-refunded-in-time",
    ),
    pytest.param(
        DriftRule.CAPTURED_ON_CANCELLED,
        [placed(), captured(1), cancelled(10), shipped(20)],
        {},
        None,
        id="no-drift-shipped-is-cancelled-but-shipped",
    ),
    pytest.param(
        DriftRule.CANCEL_NOT_ACKNOWLEDGED,
        [placed(), RELEASED, REQUEST],
        {},
        {"cancel_requested_by": "helpdesk:cr"},
        id="cancel-not-acknowledged",
    ),
    pytest.param(
        DriftRule.CANCEL_NOT_ACKNOWLEDGED,
        [placed(), RELEASED, REQUEST, ACK],
        {},
        None,
        id="no-drift-acknowledged",
    ),
    pytest.param(
        DriftRule.CANCEL_NOT_ACKNOWLEDGED,
        [placed(), RELEASED, REQUEST, REJECT],
        {},
        None,
        id="no-drift-a-rejection-is-an-answer",
    ),
    pytest.param(
        DriftRule.CANCEL_NOT_ACKNOWLEDGED,
        [placed(), REQUEST],
        {},
        None,
        id="no-drift-never-released-needs-no-stop",
    ),
    pytest.param(
        DriftRule.HOLD_TOO_OLD,
        [placed(), HOLD],
        {"hold_type": "fraud", "placed_at": at(5).isoformat()},
        {"hold_placed_by": "shopify:hold"},
        id="hold-too-old",
    ),
    pytest.param(
        DriftRule.HOLD_TOO_OLD,
        [placed(), HOLD, ev("shopify:rel", "hold.released", 60)],
        {"hold_type": "fraud", "placed_at": at(5).isoformat()},
        None,
        id="no-drift-hold-released",
    ),
    pytest.param(
        DriftRule.HOLD_TOO_OLD,
        [placed(), HOLD, ev("shopify:hold2", "hold.placed", 60, {"hold_type": "fraud"})],
        {"hold_type": "fraud", "placed_at": at(5).isoformat()},
        None,
        id="no-drift-hold-placed-again-has-its-own-check",
    ),
    pytest.param(
        DriftRule.HOLD_TOO_OLD,
        [placed(), HOLD, shipped(60)],
        {"hold_type": "fraud", "placed_at": at(5).isoformat()},
        None,
        id="no-drift-hold-on-a-shipped-order",
    ),
]


@pytest.mark.parametrize(("rule", "events", "details", "evidence"), RECHECKS)
def test_a_due_check_finds_the_contradiction_only_if_it_still_stands(
    rule, events, details, evidence
):
    # given the order as it was at the due time
    order, _ = fold(REF, events)
    # when the due check looks again
    finding = drift.recheck(order, rule, details)
    # then it names the events behind the contradiction, or finds none
    assert (finding and dict(finding.evidence)) == evidence


CLOSERS = [
    pytest.param(
        [placed(), captured(1), cancelled(10), detected(DriftRule.CAPTURED_ON_CANCELLED, 1450)],
        refunded(1500, "r-1"),
        "refunded",
        id="refund-closes-captured-on-cancelled",
    ),
    pytest.param(
        [placed(), RELEASED, REQUEST, detected(DriftRule.CANCEL_NOT_ACKNOWLEDGED, 130)],
        ev("wms:ack", "stopship.acknowledged", 200),
        "cancelled",
        id="acknowledgment-closes-cancel-not-acknowledged",
    ),
    pytest.param(
        [placed(), RELEASED, REQUEST, detected(DriftRule.CANCEL_NOT_ACKNOWLEDGED, 130)],
        ev("wms:rej", "stopship.rejected", 200),
        "denied",
        id="rejection-closes-cancel-not-acknowledged",
    ),
    pytest.param(
        [
            placed(),
            HOLD,
            detected(DriftRule.HOLD_TOO_OLD, 1445, hold_type="fraud", placed_at=at(5).isoformat()),
        ],
        ev("shopify:rel", "hold.released", 1500, {"hold_type": "fraud"}),
        "released",
        id="release-closes-hold-too-old",
    ),
]


@pytest.mark.parametrize(("events", "closer", "outcome"), CLOSERS)
def test_a_timed_drift_case_opens_from_the_desk_event_and_closes_on_its_resolution(
    events, closer, outcome
):
    # given a timed rule's desk event, raised while the contradiction stood
    opened = drift_cases(events)
    (rule, opener, evidence, still_open) = opened[0]
    assert (len(opened), opener, evidence, still_open) == (
        1,
        events[-1].id,
        {"raised_by": "test"},
        None,
    )
    assert rule == events[-1].data["rule"]
    # when the event that resolves it arrives
    # then the case closes with the outcome the source system confirmed
    assert drift_cases([*events, closer]) == [(rule, opener, evidence, outcome)]


def test_a_desk_event_after_the_contradiction_ended_opens_and_closes_at_once():
    # given a hold released at minute 60 and a desk event for it at its due time (late to learn
    # of the release)
    raised = detected(DriftRule.HOLD_TOO_OLD, 1445, hold_type="fraud", placed_at=at(5).isoformat())
    release = ev("shopify:rel", "hold.released", 60, {"hold_type": "fraud"})
    # when folded
    # then the drift case is opened and closed by the desk event, as released
    assert drift_cases([placed(), HOLD, release, raised]) == [
        ("hold_too_old", raised.id, {"raised_by": "test"}, "released")
    ]


# --- the desk event in the canonical format ------------------------------------------------------


def desk_event(**changes: Any) -> dict[str, Any]:
    raised = detected(DriftRule.HOLD_TOO_OLD, 1445, hold_type="fraud", placed_at=at(5).isoformat())
    return {**event_to_dict(raised), **changes}


def test_the_desk_event_round_trips_through_the_canonical_format():
    # given a desk event, when it is written and read back, then it is the same event
    document = desk_event()
    assert event_to_dict(parse_event(document)) == document


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"source": "shopify"}, "source: drift.detected is raised by the desk only"),
        ({"data": {"rule": "no_such_rule"}}, "data.rule"),
        ({"data": {"rule": "double_refund"}}, "not a timed drift rule"),
        ({"type": "drift.guessed"}, "type: unknown value 'drift.guessed'"),
    ],
)
def test_canonical_validation_refuses_a_bad_desk_event(changes, message):
    # given a desk event with one thing wrong, when it is validated, then it is refused
    with pytest.raises(InvalidEvent) as error:
        parse_event(desk_event(**changes))
    assert message in str(error.value)
