"""The chargeback evidence pack: a disputed order's story put in Stripe's evidence fields, judged
against the dispute's reason, and the playbook step that stages it on the dispute.

Orders are canonical events folded as the desk folds them (``domain.casebook``), so the chargeback
case carries what a real ``dispute.opened`` leaves on it."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from recoverydesk.connectors.stripe_payments import EVIDENCE_TEXT_FIELDS
from recoverydesk.domain.casebook import fold, sync_cases
from recoverydesk.domain.cases import Case, Category, TimelineEntry
from recoverydesk.domain.events import CanonicalEvent
from recoverydesk.domain.orders import OrderView
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.evidence_pack import (
    FIELD_CHARS,
    TOTAL_CHARS,
    EvidencePack,
    assemble_evidence,
    evidence_step,
)
from recoverydesk.services.playbook_kinds import StepContext
from recoverydesk.services.policy import Policy
from recoverydesk.services.ports import Merchant

PLACED = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
NOW = PLACED + timedelta(days=20)
POLICIES = {
    "refund": "Unworn items can be returned within 30 days for a full refund.",
    "cancellation": "Orders can be cancelled until they ship.",
}
ADDRESS = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "address1": "12 Analytical Row",
    "city": "Springfield",
    "province_code": "IL",
    "zip": "62704",
    "country_code": "US",
}


def _event(event_type: str, at: datetime, source: str = "shopify", **data: Any) -> CanonicalEvent:
    return parse_event(
        {
            "id": f"{source}:1001:{event_type}:{at.isoformat()}",
            "source": source,
            "type": event_type,
            "occurred_at": at.isoformat(),
            "order": {"ref": "1001"},
            "data": data,
        }
    )


def _placed(**order: Any) -> CanonicalEvent:
    facts = {
        "ref": "1001",
        "channel": "shopify",
        "value": "129.00",
        "currency": "USD",
        "placed_at": PLACED.isoformat(),
        "customer": {"id": "c-77", "email": "ada@example.com"},
        "lines": [{"sku": "BOOT-42", "qty": 1, "price": "129.00"}],
        "shipping_address": ADDRESS,
        "ids": {"stripe_payment_intent": "pi_123"},
        **order,
    }
    return parse_event(
        {
            "id": "shopify:1001:placed",
            "source": "shopify",
            "type": "order.placed",
            "occurred_at": PLACED.isoformat(),
            "order": facts,
        }
    )


def _paid(**checks: str) -> list[CanonicalEvent]:
    return [
        _event("payment.authorized", PLACED + timedelta(minutes=1), "psp", amount="129.00"),
        _event("payment.captured", PLACED + timedelta(minutes=2), "psp", amount="129.00", **checks),
    ]


def _delivered() -> list[CanonicalEvent]:
    scan = {"tracking": "1Z999AA10123456784", "carrier": "ups"}
    return [
        _event("fulfillment.shipped", PLACED + timedelta(days=1), "wms", **scan),
        _event(
            "fulfillment.shipped",
            PLACED + timedelta(days=2),
            "carrier",
            **scan,
            message="Arrived at facility, Chicago IL",
        ),
        _event(
            "fulfillment.delivered",
            PLACED + timedelta(days=3, hours=5),
            "carrier",
            **scan,
            message="Delivered, front porch",
        ),
    ]


def _dispute(reason: str, due_by: datetime = NOW + timedelta(days=7)) -> CanonicalEvent:
    return _event(
        "dispute.opened",
        NOW - timedelta(days=1),
        "psp",
        amount="129.00",
        currency="USD",
        reason=reason,
        due_by=due_by.isoformat(),
        dispute_id="dp_1001",
    )


def _desk(
    events: Sequence[CanonicalEvent], category: str = Category.CHARGEBACK
) -> tuple[OrderView, Case]:
    """The order and its case of that category, as the desk folds the events."""
    order, episodes = fold("1001", events)
    cases = sync_cases("1001", episodes, [], at=NOW)
    [case] = [c for c in cases if c.category == category]
    return order, case


def _pack(events: Sequence[CanonicalEvent], **extra: Any) -> EvidencePack:
    order, case = _desk(events)
    return assemble_evidence(
        order=order,
        events=events,
        case=case,
        policies=extra.pop("policies", POLICIES),
        reason=str(case.data["reason"]),
        **extra,
    )


# -- the pack ------------------------------------------------------------------------------------


def test_a_delivered_order_answers_product_not_received_strongly():
    # given a paid order shipped with UPS, scanned in transit and delivered, then disputed
    events = [_placed(), *_paid(), *_delivered(), _dispute("product_not_received")]
    # when the desk assembles the evidence
    pack = _pack(events)
    # then every proof the reason needs is there, under Stripe's field names
    assert (pack.strength, pack.missing) == ("strong", [])
    fields = pack.fields
    assert fields["shipping_carrier"] == "UPS"
    assert fields["shipping_tracking_number"] == "1Z999AA10123456784"
    assert fields["shipping_date"] == "2026-11-03"
    assert fields["shipping_address"] == (
        "Ada Lovelace, 12 Analytical Row, Springfield, IL, 62704, US"
    )
    assert fields["product_description"].startswith("1 x BOOT-42 at 129.00 USD")
    assert fields["customer_email_address"] == "ada@example.com"
    assert fields["customer_name"] == "Ada Lovelace"
    # and the summary tells the story a bank reads: placed, paid, shipped with tracking, delivered
    summary = pack.summary
    assert summary == fields["uncategorized_text"]
    assert "Order 1001 was placed on 2026-11-02 09:30 UTC for 129.00 USD" in summary
    assert "Payment captured on 2026-11-02 09:32 UTC." in summary
    assert "Shipped on 2026-11-03 09:30 UTC by UPS, tracking 1Z999AA10123456784" in summary
    assert "Delivered on 2026-11-05 14:30 UTC." in summary
    assert "Delivered, front porch" in summary
    assert "Arrived at facility, Chicago IL" in summary
    assert pack.due_by == NOW + timedelta(days=7)
    assert pack.submit_by == NOW + timedelta(days=5)
    assert pack.dispute_id == "dp_1001"
    # only Stripe's text fields travel: its file fields (customer_communication ...) are not sent
    assert set(fields) <= EVIDENCE_TEXT_FIELDS


def test_a_fraud_claim_without_card_checks_is_partial_and_names_what_is_missing():
    # given a delivered order whose payment events report no address or security-code check
    events = [_placed(), *_paid(), *_delivered(), _dispute("fraudulent")]
    # when the desk assembles the evidence
    pack = _pack(events)
    # then the pack is partial: the AVS and CVC results are missing
    assert pack.strength == "partial"
    assert pack.missing == ["avs_check", "cvc_check"]
    assert "Card checks" not in pack.summary


def test_passed_card_checks_make_the_fraud_answer_strong():
    # given the same order, its capture reporting Stripe's card checks as passed
    checks = {"address_line1_check": "pass", "address_postal_code_check": "pass"}
    events = [
        _placed(),
        *_paid(checks={**checks, "cvc_check": "pass"}),
        *_delivered(),
        _dispute("fraudulent"),
    ]
    # when the desk assembles the evidence
    pack = _pack(events)
    # then nothing is missing, and the summary states the checks
    assert (pack.strength, pack.missing) == ("strong", [])
    assert "address_line1_check: pass" in pack.summary
    assert "cvc_check: pass" in pack.summary


def test_a_failed_address_check_is_no_proof():
    events = [_placed(), *_paid(avs_result="fail", cvc_check="pass"), *_delivered()]
    pack = _pack([*events, _dispute("fraudulent")])
    assert pack.missing == ["avs_check"]
    assert "avs_result: fail" in pack.summary


def test_an_unshipped_order_is_a_weak_answer_to_not_received():
    # given a paid order that never shipped, disputed as not received
    events = [_placed(), *_paid(), _dispute("product_not_received")]
    # when the desk assembles the evidence
    pack = _pack(events)
    # then the pack is weak: no carrier, tracking, shipping or delivery date
    assert pack.strength == "weak"
    assert pack.missing == [
        "shipping_carrier",
        "shipping_tracking_number",
        "shipping_date",
        "delivery_date",
    ]
    assert "The order has not shipped." in pack.summary
    assert "shipping_date" not in pack.fields


def test_messages_with_the_customer_and_the_policies_answer_product_unacceptable():
    # given a delivered order, a ticket, the customer's reply and a message the desk sent
    events = [
        _placed(),
        *_paid(),
        *_delivered(),
        _event(
            "ticket.created",
            PLACED + timedelta(days=6),
            "helpdesk",
            ticket_id="T-88",
            subject="Boots too small",
        ),
        _event(
            "customer.replied",
            PLACED + timedelta(days=7),
            "helpdesk",
            ticket_id="T-88",
            message="I'll keep them after all, thanks.",
        ),
        _dispute("product_unacceptable"),
    ]
    sent = TimelineEntry(
        at=PLACED + timedelta(days=6, hours=1),
        kind="decision_offered",
        actor="ana",
        detail={"template": "exchange_offer", "choices": ["reship", "refund"]},
    )
    note = TimelineEntry(PLACED + timedelta(days=6), "note", "ana", {"text": "internal only"})
    # when the desk assembles the evidence with the merchant's policies and the case's timeline
    pack = _pack(events, timeline=[sent, note])
    # then the refund policy is disclosed, the messages are on file, and the pack is strong
    assert (pack.strength, pack.missing) == ("strong", [])
    assert pack.fields["refund_policy_disclosure"] == POLICIES["refund"]
    assert "cancellation_policy_disclosure" not in pack.fields  # not what this reason asks
    assert pack.communication.splitlines() == [
        "2026-11-08 09:30 UTC ticket T-88 opened: Boots too small",
        "2026-11-08 10:30 UTC merchant sent the message 'exchange_offer'",
        "2026-11-09 09:30 UTC customer wrote: I'll keep them after all, thanks.",
    ]
    assert "I'll keep them after all" in pack.summary
    assert "internal only" not in pack.summary


def test_a_persons_statement_fills_what_the_desk_cannot_know():
    # given a subscription dispute, the policies, and a rebuttal a person wrote
    events = [_placed(), *_paid(), _dispute("subscription_canceled")]
    rebuttal = "The customer used the service after the date they say they cancelled."
    # when the desk assembles the evidence without any message on file
    pack = _pack(events, statements={"cancellation_rebuttal": rebuttal, "receipt": "file_1"})
    # then the rebuttal and the cancellation policy are sent; a file field never is
    assert pack.fields["cancellation_rebuttal"] == rebuttal
    assert pack.fields["cancellation_policy_disclosure"] == POLICIES["cancellation"]
    assert "receipt" not in pack.fields
    assert (pack.strength, pack.missing) == ("partial", ["customer_communication"])


def test_the_text_stays_within_stripes_limits():
    # given an order with a long history and merchant policies far longer than Stripe takes
    scans = [
        _event(
            "fulfillment.shipped",
            PLACED + timedelta(days=1, minutes=n),
            "carrier",
            tracking="1Z999AA10123456784",
            carrier="ups",
            message=f"Scan {n}: " + "departed facility " * 10,
        )
        for n in range(300)
    ]
    policies = {"refund": "Refunds within 30 days. " * 2000, "cancellation": "Never. " * 5000}
    events = [_placed(), *_paid(), *scans, *_delivered(), _dispute("credit_not_processed")]
    # when the desk assembles the evidence
    pack = _pack(events, policies=policies)
    # then every field and the whole pack stay within the limits, the short facts whole
    lengths = {name: len(text) for name, text in pack.fields.items()}
    assert max(lengths.values()) <= FIELD_CHARS
    assert sum(lengths.values()) <= TOTAL_CHARS
    assert pack.fields["customer_email_address"] == "ada@example.com"
    assert pack.fields["shipping_tracking_number"] == "1Z999AA10123456784"
    assert pack.fields["refund_policy_disclosure"].endswith("…")
    assert pack.summary.startswith("Order 1001 was placed")


# -- the playbook step ---------------------------------------------------------------------------


class _Events:
    def __init__(self, events: Sequence[CanonicalEvent]) -> None:
        self._events = list(events)

    def history(self, merchant_id: int, refs: Collection[str]) -> dict[str, list[CanonicalEvent]]:
        return {ref: [e for e in self._events if e.order.ref == ref] for ref in refs}


class _Cases:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def timeline(self, merchant_id: int, case_id: int) -> list[dict[str, Any]]:
        return self.rows


class _Uow:
    """The two stores the step reads: the order's events and the case's stored timeline."""

    def __init__(self, events: Sequence[CanonicalEvent], rows: list[dict[str, Any]]) -> None:
        self.events = _Events(events)
        self.cases = _Cases(rows)


def _context(
    events: Sequence[CanonicalEvent],
    *,
    now: datetime = NOW,
    params: dict[str, Any] | None = None,
    rows: list[dict[str, Any]] | None = None,
    category: str = Category.CHARGEBACK,
) -> StepContext:
    order, case = _desk(events, category)
    case.id = 42
    return StepContext(
        uow=_Uow(events, rows or []),  # type: ignore[arg-type]
        merchant=Merchant(id=1, name="acme", time_zone="UTC", config_version=1),
        policy=Policy.model_construct(),  # the step reads only its policy texts
        case=case,
        order=order,
        step="evidence",
        params=params if params is not None else {"policies": POLICIES},
        key="playbook:acme:42:evidence:1",
        actor="playbook:chargeback@v1",
        now=now,
    )


def test_the_step_stages_the_pack_on_the_dispute():
    # given a chargeback case on a delivered order, and a message sent earlier (stored timeline)
    events = [_placed(), *_paid(), *_delivered(), _dispute("product_not_received")]
    rows = [
        {
            "at": PLACED + timedelta(days=8),
            "kind": "decision_offered",
            "actor": "ana",
            "event_id": None,
            "detail": {"template": "where_is_my_order"},
        }
    ]
    # when the evidence step runs
    outcome = evidence_step(_context(events, rows=rows))
    # then it asks the payments connector to stage the evidence (not submit) on that dispute
    assert outcome.blocked is None
    [call] = outcome.calls
    assert (call.system, call.action, call.key_suffix) == (
        "payments",
        "dispute_evidence",
        ":evidence",
    )
    assert call.params["submit"] is False
    assert call.params["dispute"] == "dp_1001"
    evidence = call.params["evidence"]
    assert set(evidence) <= EVIDENCE_TEXT_FIELDS
    assert evidence["shipping_tracking_number"] == "1Z999AA10123456784"
    assert "merchant sent the message 'where_is_my_order'" in evidence["uncategorized_text"]
    # and its facts tell the case how good the pack is and when it is due
    assert outcome.facts == {
        "reason": "product_not_received",
        "strength": "strong",
        "missing": [],
        "due_by": (NOW + timedelta(days=7)).isoformat(),
        "submit_by": (NOW + timedelta(days=5)).isoformat(),
        "fields": sorted(evidence),
        "submit": False,
        "dispute": "dp_1001",
    }


def test_the_step_submits_only_when_asked():
    events = [_placed(), *_paid(), *_delivered(), _dispute("product_not_received")]
    outcome = evidence_step(_context(events, params={"submit": True}))
    [call] = outcome.calls
    assert call.params["submit"] is True
    assert outcome.facts["submit"] is True


def test_the_step_is_blocked_without_a_dispute():
    # given a delivery-exception case on an order no dispute was opened on
    events = [
        _placed(),
        *_paid(),
        _event("delivery.exception", PLACED + timedelta(days=2), "carrier", kind="lost"),
    ]
    context = _context(events, category=Category.DELIVERY_EXCEPTION)
    # when the evidence step runs
    outcome = evidence_step(context)
    # then nothing is sent, and the step says why
    assert (outcome.calls, outcome.blocked) == ((), "no dispute on this case")


def test_the_step_is_blocked_past_the_response_deadline():
    events = [_placed(), *_paid(), *_delivered(), _dispute("fraudulent", due_by=NOW)]
    outcome = evidence_step(_context(events, now=NOW + timedelta(seconds=1)))
    assert (outcome.calls, outcome.blocked) == ((), "past the response deadline")
    assert outcome.facts == {"due_by": NOW.isoformat()}
    # and at the deadline itself it still stages the pack
    assert evidence_step(_context(events, now=NOW)).calls
