"""Defects found in the Stripe, Zendesk and AfterShip normalizers while emulators sent them real
webhooks: each test failed before its fix."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from recoverydesk.connectors.normalize import normalize

VENDORS = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "vendors"
PI, CH, RE = "pi_3Order", "ch_3Order", "re_3Order"


def _load(name: str) -> Any:
    return json.loads((VENDORS / name).read_text(encoding="utf-8"))


def _one(provider: str, payload: Any) -> dict[str, Any]:
    result = normalize(provider, payload)
    assert result.not_an_exception is None, result.not_an_exception
    (item,) = result.events
    return item


# -- Stripe --------------------------------------------------------------------------------------


def _stripe(kind: str, obj: dict[str, Any], created: int = 1700000000) -> dict[str, Any]:
    return {
        "id": f"evt_{kind}",
        "object": "event",
        "type": kind,
        "created": created,
        "data": {"object": obj},
    }


def _charge(**more: Any) -> dict[str, Any]:
    return {
        "id": CH,
        "object": "charge",
        "amount": 4200,
        "amount_captured": 4200,
        "amount_refunded": 0,
        "captured": True,
        "currency": "usd",
        "payment_intent": PI,
        "status": "succeeded",
        "metadata": {},
        "created": 1700000000,
        **more,
    }


def _intent(**more: Any) -> dict[str, Any]:
    return {
        "id": PI,
        "object": "payment_intent",
        "amount": 4200,
        "amount_received": 4200,
        "currency": "usd",
        "status": "succeeded",
        "latest_charge": CH,
        "last_payment_error": None,
        "metadata": {},
        "created": 1700000000,
        **more,
    }


def _refund(**more: Any) -> dict[str, Any]:
    return {
        "id": RE,
        "object": "refund",
        "amount": 1200,
        "charge": CH,
        "payment_intent": PI,
        "currency": "usd",
        "metadata": {},
        "reason": None,
        "status": "succeeded",
        "created": 1700000100,
        **more,
    }


def _declined() -> tuple[dict[str, Any], dict[str, Any]]:
    """One declined attempt, as ``charge.failed`` and ``payment_intent.payment_failed``."""
    meta = {"order_ref": "1001"}
    charge = _charge(
        status="failed",
        captured=False,
        amount_captured=0,
        failure_code="card_declined",
        failure_message="Your card has insufficient funds.",
        metadata=meta,
    )
    error = {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds.",
        "charge": CH,
    }
    intent = _intent(
        status="requires_payment_method",
        amount_received=0,
        last_payment_error=error,
        metadata=meta,
    )
    return _stripe("charge.failed", charge), _stripe("payment_intent.payment_failed", intent)


def test_one_decline_reported_by_the_charge_and_its_payment_intent_is_one_fact() -> None:
    # given Stripe's two webhooks of one declined attempt
    by_charge, by_intent = _declined()
    # when both are normalized
    failed_charge, failed_intent = _one("stripe", by_charge), _one("stripe", by_intent)
    # then they are one fact (one id), of the same order and payment
    assert failed_charge["id"] == failed_intent["id"] == f"psp:stripe:{PI}:failed:{CH}"
    assert failed_charge["order"] == failed_intent["order"]
    assert failed_charge["order"]["ref"] == "1001"
    assert failed_charge["data"]["payment_id"] == failed_intent["data"]["payment_id"] == PI


def test_a_failed_charge_without_payment_intent_is_named_after_the_charge() -> None:
    charge = _charge(status="failed", captured=False, payment_intent=None)
    failed = _one("stripe", _stripe("charge.failed", charge))
    assert failed["id"] == f"psp:stripe:{CH}:failed"
    assert failed["order"] == {"ref": CH, "ids": {"stripe_charge": CH}, "currency": "USD"}


def test_charge_refunded_without_its_refunds_list_leaves_the_refund_to_refund_events() -> None:
    # given charge.refunded as API versions from 2022-11-15 send it: no refunds list
    charge = _charge(amount_refunded=1200, refunded=False, metadata={"order_ref": "3003"})
    result = normalize("stripe", _stripe("charge.refunded", charge))
    # then it is no fact, and says which events carry the refund
    assert result.events == []
    assert result.not_an_exception is not None
    assert "refund.created" in result.not_an_exception
    assert "refund.updated" in result.not_an_exception


def test_refund_created_and_refund_updated_are_the_one_refund() -> None:
    # given a refund that Stripe creates pending, then reports succeeded
    pending = normalize("stripe", _stripe("refund.created", _refund(status="pending")))
    succeeded = _one("stripe", _stripe("refund.updated", _refund(), 1700000200))
    created = _one("stripe", _stripe("refund.created", _refund()))
    # then only the succeeded refund is a fact, under one id whatever event reports it
    assert pending.events == []
    assert pending.not_an_exception is not None
    assert "pending" in pending.not_an_exception
    assert succeeded["id"] == created["id"] == f"psp:stripe:{RE}"
    assert succeeded["type"] == "payment.refunded"
    assert succeeded["data"]["amount"] == "12.00"
    assert succeeded["order"] == created["order"]


def test_a_refund_first_reported_by_refund_created_names_the_payment_as_a_stand_in() -> None:
    # given the same refund through charge.refunded (older API versions list the refunds on
    # the charge, whose metadata names the order) and through refund.created (no metadata)
    charge = _charge(
        amount_refunded=1200,
        metadata={"order_ref": "3003"},
        refunds={"object": "list", "data": [_refund()], "has_more": False},
    )
    by_charge = _one("stripe", _stripe("charge.refunded", charge))
    by_refund = _one("stripe", _stripe("refund.created", _refund()))
    # then both are one fact, both name the payment intent and the charge, and the refund's
    # ref is the payment intent, marked as a stand-in (ids.stripe_payment_intent == ref)
    assert by_charge["id"] == by_refund["id"] == f"psp:stripe:{RE}"
    payment = {"stripe_payment_intent": PI, "stripe_charge": CH}
    assert by_charge["order"] == {"ref": "3003", "ids": payment, "currency": "USD"}
    assert by_refund["order"] == {"ref": PI, "ids": payment, "currency": "USD"}


def test_a_refund_of_a_charge_without_payment_intent_stands_in_under_the_charge() -> None:
    refund = _one("stripe", _stripe("refund.created", _refund(payment_intent=None)))
    assert refund["order"]["ref"] == CH
    assert refund["order"]["ids"] == {"stripe_charge": CH}


def test_a_dispute_names_its_payment_even_when_stripe_expands_it() -> None:
    # given a dispute read with expand[]=charge&expand[]=payment_intent
    dispute = _load("stripe/djstripe-dispute-needs-response.json")
    dispute["charge"] = _charge()
    dispute["payment_intent"] = _intent()
    # when normalized
    opened = _one("stripe", _stripe("charge.dispute.created", dispute))
    # then the payment ids are read from the objects, and the ref stands in for the intent
    assert opened["order"]["ids"] == {"stripe_payment_intent": PI, "stripe_charge": CH}
    assert opened["order"]["ref"] == PI


def test_an_early_fraud_warning_names_its_payment_intent_and_charge() -> None:
    warning = {
        **_load("stripe/object-radar-early-fraud-warning.json"),
        "charge": CH,
        "payment_intent": PI,
    }
    hold = _one("stripe", _stripe("radar.early_fraud_warning.created", warning))
    assert hold["order"] == {"ref": PI, "ids": {"stripe_payment_intent": PI, "stripe_charge": CH}}


def _every_stripe_fact(meta: dict[str, str]) -> list[dict[str, Any]]:
    """One webhook of each fact the normalizer maps, their objects with ``meta`` as metadata."""
    by_charge, by_intent = _declined()
    for body in (by_charge, by_intent):
        body["data"]["object"]["metadata"] = dict(meta)
    dispute = {**_load("stripe/djstripe-dispute-needs-response.json"), "charge": CH}
    dispute["payment_intent"] = PI
    review = {**_load("stripe/object-review.json"), "charge": CH, "payment_intent": PI}
    warning = {
        **_load("stripe/object-radar-early-fraud-warning.json"),
        "charge": CH,
        "payment_intent": PI,
    }
    return [
        _stripe("charge.succeeded", _charge(metadata=dict(meta))),
        _stripe("charge.succeeded", _charge(captured=False, metadata=dict(meta))),
        _stripe("charge.expired", _charge(captured=False, metadata=dict(meta))),
        _stripe("payment_intent.succeeded", _intent(metadata=dict(meta))),
        _stripe("payment_intent.amount_capturable_updated", _intent(metadata=dict(meta))),
        _stripe("payment_intent.canceled", _intent(status="canceled", metadata=dict(meta))),
        by_charge,
        by_intent,
        _stripe("refund.created", _refund(metadata=dict(meta))),
        _stripe("charge.dispute.created", dispute),
        _stripe("review.opened", review),
        _stripe("radar.early_fraud_warning.created", warning),
    ]


@pytest.mark.parametrize("index", range(12))
def test_every_stripe_fact_names_its_payment_and_marks_a_stand_in_ref(index: int) -> None:
    # given a Stripe webhook whose objects name no order
    body = _every_stripe_fact({})[index]
    # when normalized
    item = _one("stripe", body)
    # then order.ids names the payment intent and the charge, and the ref is the payment
    # intent: a stand-in, as ids.stripe_payment_intent == ref says
    assert item["order"]["ids"] == {"stripe_payment_intent": PI, "stripe_charge": CH}, body["type"]
    assert item["order"]["ref"] == item["order"]["ids"]["stripe_payment_intent"]


@pytest.mark.parametrize("index", range(9))  # the facts whose objects carry metadata
def test_a_stripe_fact_naming_its_order_keeps_the_payment_ids_beside_it(index: int) -> None:
    item = _one("stripe", _every_stripe_fact({"order_ref": "1001"})[index])
    assert item["order"]["ref"] == "1001"
    assert item["order"]["ids"] == {"stripe_payment_intent": PI, "stripe_charge": CH}


# -- Zendesk -------------------------------------------------------------------------------------

REQUESTER, AGENT, DESK, OTHER_AGENT = 30001, 20014182, 20014183, 20014184


def _ticket() -> dict[str, Any]:
    return {
        "id": 77,
        "subject": "Where is my order #5005?",
        "status": "new",
        "requester_id": REQUESTER,
        "submitter_id": REQUESTER,
        "assignee_id": None,
        "tags": [],
        "via": {"channel": "email"},
        "created_at": "2026-03-02T09:00:00Z",
    }


def _comment(cid: int, author: int, *, public: bool = True, body: str = "…") -> dict[str, Any]:
    return {"id": cid, "type": "Comment", "author_id": author, "body": body, "public": public}


def _audit(aid: int, at: str, author: int, channel: str, *events: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": aid,
        "ticket_id": 77,
        "created_at": at,
        "author_id": author,
        "via": {"channel": channel},
        "events": list(events),
    }


def _creation_audit() -> dict[str, Any]:
    return _audit(
        1,
        "2026-03-02T09:00:00Z",
        REQUESTER,
        "email",
        _comment(11, REQUESTER, body="It has not arrived yet."),
        {"id": 12, "type": "Create", "field_name": "subject", "value": "Where is my order #5005?"},
        {"id": 13, "type": "Create", "field_name": "requester_id", "value": str(REQUESTER)},
        {"id": 14, "type": "Create", "field_name": "status", "value": "new"},
    )


def test_a_ticket_with_its_creation_audit_is_no_reply() -> None:
    # given a ticket as its creation answers it: the ticket and the audit that created it
    body = {"ticket": _ticket(), "audit": _creation_audit()}
    # when normalized
    events = normalize("zendesk", body).events
    # then the ticket is created; its description (the audit's comment) is not a reply
    assert [(e["type"], e["id"]) for e in events] == [
        ("ticket.created", "helpdesk:zendesk:ticket-77")
    ]


def test_replies_in_audits_without_the_creation_audit_are_kept() -> None:
    # given the audits of a ticket's later updates only (the requester is not named in them)
    body = {
        "audits": [
            _audit(2, "2026-03-02T10:00:00Z", AGENT, "web", _comment(21, AGENT, public=False)),
            _audit(3, "2026-03-02T10:01:00Z", AGENT, "web", _comment(31, AGENT, body="On it")),
            _audit(4, "2026-03-02T10:02:00Z", DESK, "api", _comment(41, DESK, body="Sorry!")),
            _audit(
                5,
                "2026-03-02T11:00:00Z",
                REQUESTER,
                "email",
                _comment(51, REQUESTER, body="Please cancel it."),
                {"id": 52, "type": "Change", "field_name": "status", "value": "open"},
            ),
            _audit(
                6,
                "2026-03-02T12:00:00Z",
                OTHER_AGENT,
                "web",
                {"id": 61, "type": "Change", "field_name": "assignee_id", "value": "20014184"},
                _comment(62, OTHER_AGENT, body="Taking this over"),
            ),
        ]
    }
    # when normalized
    events = normalize("zendesk", body).events
    # then the customer's public comment is a reply; the private note's author, the API's
    # author (the desk's own message) and the assignee are agents
    assert [(e["type"], e["id"]) for e in events] == [
        ("customer.replied", "helpdesk:zendesk:comment-51")
    ]
    assert events[0]["data"]["message"] == "Please cancel it."
    assert events[0]["occurred_at"] == "2026-03-02T11:00:00+00:00"


def test_the_users_side_load_decides_who_is_the_customer() -> None:
    # given audits with the users side-load (?include=users)
    body = {
        "audits": [
            _audit(7, "2026-03-02T10:00:00Z", REQUESTER, "api", _comment(71, REQUESTER)),
            _audit(8, "2026-03-02T10:05:00Z", AGENT, "web", _comment(81, AGENT)),
        ],
        "users": [{"id": REQUESTER, "role": "end-user"}, {"id": AGENT, "role": "agent"}],
    }
    events = normalize("zendesk", body).events
    assert [e["id"] for e in events] == ["helpdesk:zendesk:comment-71"]


def test_with_the_requester_known_only_the_requesters_comments_are_replies() -> None:
    # given the creation audit and a later public comment by someone else, through the web
    body = {
        "audits": [
            _creation_audit(),
            _audit(9, "2026-03-02T10:00:00Z", AGENT, "web", _comment(91, AGENT)),
            _audit(10, "2026-03-02T11:00:00Z", REQUESTER, "web", _comment(101, REQUESTER)),
        ]
    }
    events = normalize("zendesk", body).events
    assert [(e["type"], e["id"]) for e in events] == [
        ("ticket.created", "helpdesk:zendesk:ticket-77"),
        ("customer.replied", "helpdesk:zendesk:comment-101"),
    ]


# -- AfterShip -----------------------------------------------------------------------------------


def _tracking(tag: str, subtag: str, *scans: tuple[str, str, str]) -> dict[str, Any]:
    """The fixture's tracking, now at ``tag``/``subtag`` after ``scans`` (time, tag, subtag)."""
    tracking = copy.deepcopy(
        _load("aftership/api-tracking-exception-shipment-lost.json")["data"]["tracking"]
    )
    tracking.update(tag=tag, subtag=subtag, subtag_message=None)
    tracking["checkpoints"] = [
        {"checkpoint_time": at, "tag": t, "subtag": s, "message": s} for at, t, s in scans
    ]
    return tracking


def _envelope(tracking: dict[str, Any], event_id: str, kind: str = "tracking_update") -> Any:
    return {"event": kind, "event_id": event_id, "msg": tracking, "ts": 1772442000}


FIRST_TRY = [
    ("2026-03-02T09:00:00+00:00", "InTransit", "InTransit_002"),
    ("2026-03-03T14:00:00+00:00", "AttemptFail", "AttemptFail_001"),
]
SECOND_TRY = [
    *FIRST_TRY,
    ("2026-03-04T08:00:00+00:00", "OutForDelivery", "OutForDelivery_001"),
    ("2026-03-04T15:00:00+00:00", "AttemptFail", "AttemptFail_001"),
]


def test_a_second_failed_attempt_is_a_second_fact_and_a_redelivery_is_not() -> None:
    # given two failed attempts a day apart (the same subtag), each its own webhook
    first = _envelope(_tracking("AttemptFail", "AttemptFail_001", *FIRST_TRY), "e-1")
    second = _envelope(_tracking("AttemptFail", "AttemptFail_001", *SECOND_TRY), "e-2")
    # when normalized, and the first delivered again
    one, two, again = (_one("aftership", body) for body in (first, second, copy.deepcopy(first)))
    # then the two attempts are two facts, and the redelivery is the first again
    tid = one["order"]["ids"]["aftership_tracking"]
    assert one["id"] == f"carrier:aftership:{tid}:AttemptFail_001:e-1"
    assert two["id"] == f"carrier:aftership:{tid}:AttemptFail_001:e-2"
    assert again["id"] == one["id"]
    assert (one["occurred_at"], two["occurred_at"]) == (
        "2026-03-03T14:00:00+00:00",
        "2026-03-04T15:00:00+00:00",
    )


def test_without_an_event_id_the_latest_checkpoint_time_names_the_fact() -> None:
    # given the same two attempts read from the Tracking API (no envelope, no event_id)
    first = {"data": {"tracking": _tracking("AttemptFail", "AttemptFail_001", *FIRST_TRY)}}
    second = {"data": {"tracking": _tracking("AttemptFail", "AttemptFail_001", *SECOND_TRY)}}
    one, two, again = (_one("aftership", body) for body in (first, second, copy.deepcopy(first)))
    # then each is named by the time of its latest checkpoint, as AfterShip writes it
    assert one["id"].endswith(":AttemptFail_001:2026-03-03T14:00:00+00:00")
    assert two["id"].endswith(":AttemptFail_001:2026-03-04T15:00:00+00:00")
    assert again["id"] == one["id"]


def test_the_shops_order_id_comes_before_the_order_number() -> None:
    # given a tracking AfterShip's Shopify integration made: the Shopify order id and its name
    tracking = _tracking("Exception", "Exception_013", *FIRST_TRY)
    tracking.update(order_id="450789469", order_number="#1001")
    # when normalized
    lost = _one("aftership", _envelope(tracking, "e-3", "tracking_update"))
    # then the ref is the order id (what the shopify normalizer keys the order by), and the
    # order number is kept among the ids
    assert lost["order"]["ref"] == "450789469"
    assert lost["order"]["ids"]["aftership_order_number"] == "#1001"
    assert lost["order"]["ids"]["tracking_number"] == tracking["tracking_number"]


def test_the_order_number_names_the_order_when_there_is_no_order_id() -> None:
    tracking = _tracking("Exception", "Exception_013", *FIRST_TRY)
    tracking.update(order_id=None, order_number="A-1001")
    lost = _one("aftership", _envelope(tracking, "e-4"))
    assert lost["order"]["ref"] == "A-1001"
    assert "aftership_order_number" not in lost["order"]["ids"]


@pytest.mark.parametrize("kind", ["edd_revise", "tracking_pending_time"])
def test_envelope_events_other_than_tracking_update_report_no_status(kind: str) -> None:
    # given an AfterShip webhook of another event, whose tracking is in an exception
    body = _envelope(_tracking("Exception", "Exception_013", *FIRST_TRY), "e-5", kind)
    # when normalized, then it is no fact, and says why
    result = normalize("aftership", body)
    assert result.events == []
    assert result.not_an_exception is not None
    assert kind in result.not_an_exception
    assert "tracking_update" in result.not_an_exception


def test_a_tracking_update_and_an_envelope_without_event_report_the_tag() -> None:
    tracking = _tracking("Exception", "Exception_013", *FIRST_TRY)
    bare = {"event_id": "e-6", "msg": tracking, "ts": 1772442000}
    for body in (_envelope(tracking, "e-6"), bare):
        lost = _one("aftership", body)
        assert (lost["type"], lost["data"]["kind"]) == ("delivery.exception", "lost")
